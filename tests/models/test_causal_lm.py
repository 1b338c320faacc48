"""A causal LM as teacher and student (models/causal_lm.py), on the tiny Qwen2 of models/tiny.py and real TICO-19
sentences: only the first ``align_layer`` layers run, the teacher stays the base model while the student's LoRA
adapters train on the same weights, the saved student is a PEFT adapter folder, and a real run trains one."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, SW_BITEXT, compose_config, run_cli
from peft import PeftModel

from optical_lightning.data.bitext import read_bitext
from optical_lightning.data.teacher_cache import TeacherTokenCache
from optical_lightning.losses.terms import InBatchInfoNCETerm
from optical_lightning.models import registry
from optical_lightning.models.causal_lm import CausalLMEncoder, adapt_student, load_causal_lm
from optical_lightning.models.tiny import bpe_tokenizer, tiny_causal_lm, tiny_encoder
from optical_lightning.training.module import DistillationModule
from optical_lightning.utils.config import build
from optical_lightning.utils.errors import ConfigError

PAIRS = read_bitext(SW_BITEXT, "sw")[:24]
EN = [p.en for p in PAIRS]
SW = [p.tgt for p in PAIRS]
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
# PEFT's own loader asks transformers a deprecated question; our builders silence it, the tests call PEFT directly
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


def pair(**teacher_kwargs) -> tuple[CausalLMEncoder, CausalLMEncoder]:
    teacher = tiny_causal_lm(seed=0, **teacher_kwargs)
    return teacher, adapt_student(teacher, lora=LORA)


def train_one_step(student: CausalLMEncoder, lr: float = 1e-2) -> None:
    """One AdamW step that pulls the student's Swahili pooled vectors to a fixed direction: moves every adapter."""
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    out = student(student.tokenize(SW[:8]))
    loss = (1 - out.pooled @ F.normalize(torch.ones(student.dim), dim=0)).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("final_norm", [True, False])
def test_forward_runs_only_align_layer_layers_and_gives_that_layers_hidden_states(final_norm):
    teacher = tiny_causal_lm(seed=0, align_layer=2, final_norm=final_norm)
    decoder = teacher.base_lm.model
    calls = [0] * len(decoder.layers)
    hooks = [layer.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, layer in enumerate(decoder.layers)]
    batch = teacher.tokenize(SW[:6])
    with torch.no_grad():
        out = teacher(batch)
    assert calls == [1, 1, 0, 0]  # the layers above align_layer never run
    with torch.no_grad():
        full = teacher.base_lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               output_hidden_states=True)
    for hook in hooks:
        hook.remove()
    assert calls == [2, 2, 1, 1]
    expected = full.hidden_states[2]
    if final_norm:
        expected = decoder.norm(expected)
    expected = F.normalize(expected, dim=-1)
    mask = batch["attention_mask"].bool()
    assert out.tokens.shape == (6, batch["input_ids"].shape[1], 64) and out.tokens.dtype == torch.float32
    torch.testing.assert_close(out.tokens[mask], expected[mask], atol=1e-6, rtol=0)
    m = mask.unsqueeze(-1).float()
    torch.testing.assert_close(out.pooled, F.normalize((expected * m).sum(1) / m.sum(1), dim=-1), atol=1e-6, rtol=0)
    # right padding: a sentence's states do not depend on the batch it is padded in
    alone = teacher(teacher.tokenize(SW[:1]))
    n = int(mask[0].sum())
    torch.testing.assert_close(alone.tokens[0, :n], out.tokens[0, :n], atol=1e-5, rtol=0)


def test_content_mask_leaves_out_padding_special_tokens_and_the_prefix():
    teacher = tiny_causal_lm(seed=0, query_prefix="Swali: ")
    assert teacher.tokenizer.pad_token is not None
    batch = teacher.tokenize(["habari <|im_end|>", "Wahudumu wa afya walitembelea kijiji leo."], "query")
    ids, content = batch["input_ids"], batch["content_mask"]
    eos = teacher.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert not content[ids == eos].any() and not content[batch["attention_mask"] == 0].any()
    prefix_tokens = len(teacher.tokenizer("Swali:")["input_ids"])
    assert not content[:, :prefix_tokens].any() and content[1, prefix_tokens:].all()
    assert tiny_causal_lm(seed=0).tokenize(["habari"], "passage")["content_mask"].all()  # no prefix by default
    # a tokenizer without a pad token pads with EOS (never attended to: right padding)
    tokenizer = bpe_tokenizer()
    tokenizer.pad_token = None
    padded = CausalLMEncoder(teacher.base_lm, tokenizer, align_layer=2).tokenize(["habari", "habari za asubuhi"])
    assert tokenizer.pad_token == "<|im_end|>" and padded["attention_mask"][0, -1] == 0


def test_teacher_stays_the_base_model_after_the_students_step_on_the_same_weights(tmp_path):
    cfg = compose_config("teacher=tiny_lm", "student=tiny_lm", output_dir=tmp_path)
    teacher = build(cfg.teacher, "teacher", frozen=True)  # as the pipeline builds them
    student = build(cfg.student, "student", target_dim=teacher.dim, teacher=teacher)
    reference = build(cfg.teacher, "teacher", frozen=True)  # the same base model, never adapted
    # no second copy: the student's base weights are the teacher's tensors
    t_weights = dict(teacher.base_lm.named_parameters())
    s_weights = dict(student.base_lm.named_parameters())
    key = "model.layers.0.self_attn.q_proj.base_layer.weight"
    assert student.base_lm is teacher.base_lm and s_weights[key].data_ptr() == t_weights[key].data_ptr()
    assert student.model.get_base_model().model.embed_tokens.weight.data_ptr() == \
        teacher.base_lm.model.embed_tokens.weight.data_ptr()
    # only the adapters of the layers that run (below align_layer=2) train
    trainable = [n for n, p in student.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 4 * 2 and all("lora_" in n for n in trainable)
    assert {n.split(".layers.")[1].split(".")[0] for n in trainable} == {"0", "1"}
    assert not any(p.requires_grad for n, p in teacher.named_parameters() if "lora_" not in n)

    train_one_step(student)
    batch = teacher.tokenize(EN[:8])
    with torch.no_grad():
        t_out, r_out, s_out = teacher(batch), reference(batch), student(batch)
        ids = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        t_logits, r_logits, s_logits = teacher.lm(**ids).logits, reference.lm(**ids).logits, student.lm(**ids).logits
    mask = batch["attention_mask"].bool()
    assert torch.equal(t_out.tokens[mask], r_out.tokens[mask]) and torch.equal(t_out.pooled, r_out.pooled)
    assert torch.equal(t_logits, r_logits)  # the full LM too: adapters off
    assert (s_out.tokens[mask] - t_out.tokens[mask]).abs().max() > 1e-3
    assert (s_logits - t_logits).abs().max() > 1e-3
    # the teacher's view leaves the student trainable as it was
    assert [n for n, p in student.named_parameters() if p.requires_grad] == trainable
    # a teacher whose model was adapted keys caches as before; the trained student does not share its key
    assert teacher.fingerprint() == reference.fingerprint()
    assert student.fingerprint() != teacher.fingerprint()


def test_student_saves_a_peft_adapter_folder_naming_the_configured_model(tmp_path, monkeypatch):
    # the base as a "hub id" with an offline copy (models/registry.py), the way Qwen/... resolves to its cache folder
    tiny_causal_lm(seed=0).save_pretrained(tmp_path / "cache" / "tiny-qwen2")
    monkeypatch.setitem(registry.OFFLINE_COPIES, "tiny/qwen2", lambda cache_dir: str(tmp_path / "cache" / "tiny-qwen2"))
    teacher = load_causal_lm("tiny/qwen2", align_layer=2, dtype="32")
    assert teacher.name == "tiny/qwen2"
    student = adapt_student(teacher, lora=LORA)
    train_one_step(student)
    folder = student.save_pretrained(tmp_path / "student")
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "tiny/qwen2"  # not the cache folder it was loaded from
    assert adapter["layers_to_transform"] == [0, 1] and adapter["r"] == 4
    assert json.loads((folder / "optical_lm.json").read_text())["align_layer"] == 2

    batch = student.tokenize(SW[:4])
    ids = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        theirs = PeftModel.from_pretrained(tiny_causal_lm(seed=0).base_lm, str(folder))(**ids).logits
        ours = student.lm(**ids).logits
        rebuilt = CausalLMEncoder.from_pretrained(folder, frozen=True)  # its base from the name it records
        again = rebuilt(batch)
        expected = student(batch)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    torch.testing.assert_close(again.pooled, expected.pooled, atol=1e-5, rtol=0)
    assert rebuilt.align_layer == 2 and rebuilt.name == "tiny/qwen2"


def test_a_checkpoint_holds_only_the_adapters_and_a_resume_restores_them():
    def module(teacher: CausalLMEncoder, student: CausalLMEncoder) -> DistillationModule:
        return DistillationModule(student, teacher, [InBatchInfoNCETerm(1.0, 0.05)], optimizer=torch.optim.AdamW,
                                  scheduler=None)

    trained = module(*pair())
    train_one_step(trained.student)
    state = trained.state_dict()  # what Lightning writes into a checkpoint
    assert len(state) == 2 * 4 * 2 and all(k.startswith("student.") and "lora_" in k for k in state)
    resumed = module(*pair())  # a fresh run: new adapters (other random A), the same base
    resumed.load_state_dict(state)  # the teacher's view of the shared modules must not undo the student's
    for key, value in state.items():
        assert torch.equal(resumed.state_dict()[key], value), key
    batch = resumed.student.tokenize(SW[:4])
    with torch.no_grad():
        torch.testing.assert_close(resumed.student(batch).pooled, trained.student(batch).pooled, atol=1e-6, rtol=0)
        assert torch.equal(resumed.teacher(batch).pooled, tiny_causal_lm(seed=0)(batch).pooled)


def test_wrong_settings_are_one_line_config_errors(tmp_path):
    tiny_causal_lm(seed=0).save_pretrained(tmp_path / "tiny")
    with pytest.raises(ConfigError) as info:
        load_causal_lm(str(tmp_path / "tiny"), align_layer=9)
    assert "teacher.align_layer=9" in one_line(info) and "choose 1..4" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_causal_lm(str(tmp_path / "tiny"), align_layer=2, dtype="fp16")
    assert "teacher.dtype='fp16'" in one_line(info)
    with pytest.raises(ConfigError) as info:
        adapt_student(tiny_encoder(seed=0, frozen=True), lora=LORA)
    assert "teacher=qwen_coder_1_5b" in one_line(info)
    with pytest.raises(ConfigError) as info:
        adapt_student(tiny_causal_lm(seed=0), lora={**LORA, "target_modules": ["query"]})
    assert "student.lora.target_modules: query" in one_line(info) and "q_proj" in str(info.value)
    teacher, _ = pair()
    with pytest.raises(ConfigError) as info:
        adapt_student(teacher, lora=LORA)
    assert "one student per teacher" in one_line(info)


def test_teacher_cache_serves_the_lm_teacher_and_hits_on_a_second_run(tmp_path):
    teacher, _ = pair()
    cache = TeacherTokenCache(tmp_path, teacher)
    assert cache.prepare(EN) == {"cached": 0, "encoded": len(EN)}
    again, _ = pair()  # a second run builds its own teacher (and student) from the same config
    warm = TeacherTokenCache(tmp_path, again)
    assert warm.dir == cache.dir and warm.prepare(EN) == {"cached": len(EN), "encoded": 0}
    batch = again.tokenize(EN[:8])
    with torch.no_grad():
        live = again(batch)
    got = warm.batch(EN[:8])
    mask = batch["attention_mask"].bool()
    assert torch.equal(got["attention_mask"].bool(), mask) and torch.equal(got["input_ids"][mask], batch["input_ids"][mask])
    torch.testing.assert_close(got["tokens"][mask], live.tokens[mask], atol=1e-6, rtol=0)
    torch.testing.assert_close(got["pooled"], live.pooled, atol=1e-6, rtol=0)


def test_a_run_distils_the_tiny_lm_and_saves_a_peft_student(tmp_path):
    proc = run_cli("teacher=tiny_lm", "student=tiny_lm", "distill=optical", "mcqa=none", "callbacks=none",
                   "logger=csv", "trainer.enable_progress_bar=false", f"retrieval.data_dir={FIXTURES / 'eval'}",
                   "retrieval.sets=[tico19-test]", "retrieval.bitext_val=false", f"data.train={SW_BITEXT}",
                   "trainer.max_steps=3", "data.batch_size=8", "data.val_size=16", "data.teacher_cache=true",
                   "distill.base_plan_weight=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [p.parent for p in tmp_path.glob("outputs/distill/runs/*/.hydra")]
    results = json.loads((run / "results.json").read_text())
    assert set(results["metrics"]["tico19-test-sw-en"]) == {"zero_shot", "trained"}
    assert results["training"]["train/ot_loss"] > 0 and "train/nce_loss" in results["training"]
    assert results["run"]["cache"] == "cold"  # the teacher cache was filled by this run
    # the base-plan term read the base model's Swahili states from the same cache, not from a second forward
    assert results["training"]["train/base_plan_loss"] > 0 and "base_cache_s" in results["timing"]
    assert "base cache: 0 target-language sentences cached, 40 encoded" in (run / "run.log").read_text()
    folder = run / "student"
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "tiny-qwen2-h64-l4-s0"
    assert (folder / "adapter_model.safetensors").is_file() and (folder / "optical_lm.json").is_file()
    student = PeftModel.from_pretrained(tiny_causal_lm(seed=0).base_lm, str(folder))
    lora_b = [p for n, p in student.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().max() > 0 for p in lora_b)  # trained: the adapters moved from their zero start
