"""Multiple choice by log-likelihood: a causal language model answers MMLU-style questions as
lm-evaluation-harness scores MMLU.

The question is written into a prompt (the template, :data:`DEFAULT_TEMPLATE`: subject, question, the four
options, ``Answer:``) and the answer is the letter whose continuation is most likely,

.. math:: \\hat k = \\arg\\max_{k \\in \\{A, B, C, D\\}} \\log p(\\text{" } k\\text{"} \\mid \\text{prompt}),

with the log-likelihood of a continuation the sum of its tokens' log-probabilities. Prompt and continuation
are tokenized as lm-evaluation-harness does (``_encode_pair``: the prompt alone, then the whole text, whose
tail after the prompt's tokens is the continuation; the tokenizer's own special tokens), so a single-token
letter is the log-softmax of the prompt's last position at that token, and numbers match the harness's.

The stages (:mod:`~optical_lightning.evaluation.stages`) of :class:`LoglikMCQA`:

* ``teacher_en``: the teacher (the base model) on the English questions: ``NAME``, the upper bound and
  the answers that agreement compares with;
* ``zero_shot``: the base model on the questions in the run's language: ``NAME``. The teacher answers it,
  since the student before training *is* the base model (its adapters start at zero);
* ``trained``: the student on the run's questions (``NAME``) and, with an English reference, on the English
  ones (``NAME-en``: what the adapters cost in English; compare with ``NAME`` at ``teacher_en``);
* ``translate_dense`` (with a dictionary): the teacher on the question and its options translated word by word; the learning curve's ``step<N>``: the student on the run's questions.

The base model's answers depend only on its weights, the template and the questions, so they are cached on
disk (JSON, keyed by all three) and later runs and sweep jobs read them instead of scoring again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from optical_lightning.evaluation.mcqa import accuracy_report
from optical_lightning.evaluation.protocol import Encoders, Metrics
from optical_lightning.evaluation.questions import LETTERS, MCQuestion, QuestionSet, QuestionsEvaluator
from optical_lightning.evaluation.stages import Stage
from optical_lightning.models.quantize import check_quantize, int8_copy
from optical_lightning.utils.atomic import atomic_write_json
from optical_lightning.utils.errors import ConfigError, require_int

log = logging.getLogger(__name__)

#: the English prompt of the first probe (../shared/notes/offline-lm.md), the same for every language
DEFAULT_TEMPLATE = ("The following is a multiple choice question about {subject}.\n\n{question}\n"
                    "A. {option_a}\nB. {option_b}\nC. {option_c}\nD. {option_d}\nAnswer:")
FIELDS = ("subject", "question", "option_a", "option_b", "option_c", "option_d")
#: what is scored after the prompt, as lm-evaluation-harness's MMLU task does
CONTINUATIONS = tuple(f" {letter}" for letter in LETTERS)
#: changes when the scoring changes, so that older cache entries are not reused
SCORING_VERSION = "harness-encode-pair-v1"


def resolve_template(template: str | None, setting: str = "mcqa.template") -> str:
    """The template (``default`` or ``None``: :data:`DEFAULT_TEMPLATE`), checked: it may name only
    :data:`FIELDS` and must name the question, so that a typo fails before any model loads."""
    if template is None or template == "default":
        return DEFAULT_TEMPLATE
    if not isinstance(template, str):
        raise ConfigError(f"{setting}={template!r}: must be a string with {{question}} and {{option_a}}..{{option_d}}")
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as e:  # an unmatched brace
        raise ConfigError(f"{setting}: {e} in {template!r}; write a literal brace as {{{{ or }}}}") from e
    unknown = sorted({n for n in names if n not in FIELDS})
    if unknown or "question" not in names:
        what = f"unknown field(s) {unknown}" if unknown else "no {question}"
        raise ConfigError(f"{setting}: {what} in {template!r}; use {{{'}, {'.join(FIELDS)}}} (or `default`)")
    return template


def format_prompt(question: MCQuestion, template: str = DEFAULT_TEMPLATE) -> str:
    """``question`` written into ``template`` (its subject with spaces: ``high school biology``)."""
    options = dict(zip(FIELDS[2:], question.choices))
    return template.format(subject=question.subject.replace("_", " "), question=question.question, **options)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as lm-evaluation-harness's ``_encode_pair`` makes them: trailing
    spaces of the context move to the continuation; the continuation is what tokenizing the whole text adds
    after the context's own tokens (the tokenizer's default special tokens, e.g. a BOS, stay in the context)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    context_ids = tokenizer.encode(context)
    whole = tokenizer.encode(context + continuation)
    return list(context_ids), list(whole[len(context_ids):])


@dataclasses.dataclass(frozen=True)
class _Row:
    """One sequence fed to the model and what is read from its logits: (prompt, continuation, position of
    the logits that predict the continuation's first token, the continuation's tokens)."""

    tokens: tuple[int, ...]
    targets: tuple[tuple[int, int, int, tuple[int, ...]], ...]


def _rows(tokenizer: Any, prompts: Sequence[str], continuations: Sequence[str]) -> list[_Row]:
    """One row per prompt when every continuation is one token after the same context (the letters of
    MMLU with a BPE tokenizer); else one row per (prompt, continuation), the context and all but the last
    continuation token, as the harness feeds them."""
    rows = []
    for i, prompt in enumerate(prompts):
        pairs = [encode_pair(tokenizer, prompt, c) for c in continuations]
        for (context, tokens), c in zip(pairs, continuations):
            if not context or not tokens:
                raise ConfigError(f"the prompt {prompt[:40]!r}... or its continuation {c!r} tokenizes to nothing; "
                                  f"check the template and the model's tokenizer")
        context = pairs[0][0]
        if all(len(tokens) == 1 and ctx == context for ctx, tokens in pairs):
            rows.append(_Row(tuple(context), tuple((i, k, len(context) - 1, tuple(tokens))
                                                   for k, (_, tokens) in enumerate(pairs))))
        else:
            rows += [_Row(tuple(ctx + tokens[:-1]), ((i, k, len(ctx) - 1, tuple(tokens)),))
                     for k, (ctx, tokens) in enumerate(pairs)]
    return rows


def _first_parameter(*holders: Any) -> torch.Tensor | None:
    """A weight of the first module that has one: a teacher's ``lm`` view (the base model with a student's adapters
    off) may hold its model without registering it, while the encoder around it does."""
    for holder in holders:
        if isinstance(holder, torch.nn.Module):
            for p in holder.parameters():
                return p
    return None


def _device(lm: Any, owner: Any = None) -> torch.device:
    p = _first_parameter(lm, owner)
    return p.device if p is not None else torch.device(getattr(lm, "device", None) or "cpu")


@contextmanager
def _eval_mode(lm: Any) -> Iterator[None]:
    """No dropout (a LoRA student's adapters have some) while scoring; the training mode is restored after."""
    was = lm.training if isinstance(lm, torch.nn.Module) else None
    if was:
        lm.eval()
    try:
        yield
    finally:
        if was:
            lm.train(True)


def continuation_logliks(lm: Any, tokenizer: Any, prompts: Sequence[str],
                         continuations: Sequence[str] = CONTINUATIONS, batch_size: int = 8,
                         progress: bool = False, device: torch.device | None = None) -> torch.Tensor:
    """The log-likelihood of each continuation after each prompt, (prompts, continuations), float32.

    ``lm(input_ids=..., attention_mask=...).logits`` is the causal LM. Rows are batched longest first and
    padded on the right: a real token never attends to a pad after it, and each continuation is read at its
    own row's positions, so a prompt scores as it would alone (in bf16, up to the last bits: other batch shapes
    may break a tie between letters the other way). Log-softmax runs in float32 on the positions read.
    ``device``: where the inputs go (default: the LM's).
    """
    require_int("batch_size", batch_size, minimum=1)
    rows = _rows(tokenizer, prompts, continuations)
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r].tokens))
    batches = [[rows[r] for r in order[start:start + batch_size]] for start in range(0, len(order), batch_size)]
    if progress and len(batches) > 1:
        from rich.progress import track

        batches = track(batches, description=f"log-likelihood of {len(prompts)} prompts", transient=True)
    pad = tokenizer.pad_token_id if getattr(tokenizer, "pad_token_id", None) is not None else 0
    out = torch.full((len(prompts), len(continuations)), float("nan"))
    device = device or _device(lm)
    with torch.inference_mode(), _eval_mode(lm):
        for batch in batches:
            width = max(len(row.tokens) for row in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, row in enumerate(batch):
                ids[b, :len(row.tokens)] = torch.tensor(row.tokens)
                mask[b, :len(row.tokens)] = 1
            # the LM head (a vocabulary-wide matmul) runs only at the positions read: far cheaper than all of them
            positions = sorted({start + j for row in batch for _, _, start, tokens in row.targets
                                for j in range(len(tokens))})
            column = {position: c for c, position in enumerate(positions)}
            logits = lm(input_ids=ids.to(device), attention_mask=mask.to(device),
                        logits_to_keep=torch.tensor(positions, device=device)).logits
            for b, row in enumerate(batch):
                read: dict[tuple[int, int], torch.Tensor] = {}  # (start, length) -> log-probabilities
                for i, k, start, tokens in row.targets:
                    span = (start, len(tokens))
                    if span not in read:
                        cols = [column[start + j] for j in range(len(tokens))]
                        read[span] = torch.log_softmax(logits[b, cols].float(), dim=-1).cpu()
                    out[i, k] = read[span].gather(1, torch.tensor(tokens)[:, None]).sum()
    return out


def question_logliks(lm: Any, tokenizer: Any, questions: Sequence[MCQuestion], template: str = DEFAULT_TEMPLATE,
                     batch_size: int = 8, progress: bool = False, device: torch.device | None = None) -> torch.Tensor:
    """(questions, 4): the log-likelihood of `` A`` .. `` D`` after each question's prompt."""
    prompts = [format_prompt(q, template) for q in questions]
    return continuation_logliks(lm, tokenizer, prompts, CONTINUATIONS, batch_size, progress, device)


def gold_probabilities(logliks: torch.Tensor | Sequence[Sequence[float]], answers: Sequence[int]) -> torch.Tensor:
    """(questions,) the right letter's share of the letters' probability mass (their likelihoods renormalised)."""
    logp = torch.log_softmax(torch.as_tensor(logliks, dtype=torch.float64), dim=1)
    return logp.exp().gather(1, torch.as_tensor(list(answers))[:, None]).squeeze(1)


def letter_distribution_report(questions: Sequence[MCQuestion], logliks: torch.Tensor,
                               reference: torch.Tensor) -> dict[str, float]:
    """Two continuous measures beside accuracy, far less noisy on a dev set of ~100 questions (an answer that
    moves from 0.24 to 0.26 of the mass counts here, not in accuracy):

    * ``gold_prob``: the mean probability of the right letter, the four letters' likelihoods renormalised;
    * ``kl_to_reference``: the mean :math:`KL(p_{ref} \\| p)` from the reference's letter distribution (the base
      model reading the English question) to this one: 0 when the model answers exactly as in English.
    """
    logp = torch.log_softmax(logliks.double(), dim=1)
    ref = torch.log_softmax(reference.double(), dim=1)
    gold_prob = gold_probabilities(logliks, [q.answer for q in questions]).mean()
    kl = (ref.exp() * (ref - logp)).sum(1).mean()
    return {"gold_prob": float(gold_prob), "kl_to_reference": float(kl)}


def questions_hash(questions: Sequence[MCQuestion]) -> str:
    """What a prompt is made of (ids, subjects, questions, options), in order: the cache key of a question list."""
    content = [[q.id, q.subject, q.question, list(q.choices)] for q in questions]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:24]


def model_id(encoder: Any) -> str:
    """The base weights' fingerprint where the encoder has one (so a teacher read at another layer shares the
    entries), else its full fingerprint, else its name (test doubles, plain models)."""
    fingerprint = getattr(encoder, "weights_fingerprint", None) or getattr(encoder, "fingerprint", None)
    return str(fingerprint()) if callable(fingerprint) else str(getattr(encoder, "name", type(encoder).__name__))


def _dtype(lm: Any, owner: Any = None) -> str:
    p = _first_parameter(lm, owner)
    return str(p.dtype) if p is not None else str(getattr(lm, "dtype", "unknown"))


class LoglikMCQA(QuestionsEvaluator):
    """Multiple-choice accuracy of a language-model teacher and student by letter log-likelihood (see the
    module docstring): accuracy with its 95% Wilson interval, chance, per subject and group, agreement with
    the teacher's English answers, and every question's four log-likelihoods in ``mcqa.json``.

    Args:
        name: the result name (``afrimmlu-sw``; the student in English adds ``-en``).
        questions: the questions and, when the set has one, their English reference (parallel by id).
        template: the prompt, with ``{subject}``, ``{question}``, ``{option_a}`` .. ``{option_d}``
            (``default``: :data:`DEFAULT_TEMPLATE`).
        batch_size: prompts per forward pass.
        cache_dir: where the base model's answers are kept across runs (``None``: not kept).
        split: the split the paths name (recorded with the results; choose recipes on ``val``).
        quantize: ``none`` (the weights' own dtype) or ``int8`` (:func:`~optical_lightning.models.quantize.int8_copy`:
            faster on a CPU without bf16, and further from the bf16 answers than float32; docs/benchmarks.md).
        records_file: the per-question file written beside ``results.json`` (a second evaluator, e.g. the dev
            split beside the test split, needs its own: ``mcqa-val.json``).
    """

    def __init__(self, name: str, questions: QuestionSet, template: str | None = None, batch_size: int = 8,
                 cache_dir: str | None = None, split: str | None = None, quantize: str = "none",
                 records_file: str = "mcqa.json") -> None:
        self.name, self.set, self.split = name, questions, split
        if not isinstance(records_file, str) or Path(records_file).name != records_file or not records_file.endswith(".json"):
            raise ConfigError(f"records_file={records_file!r}: a plain file name ending in .json, e.g. mcqa-val.json")
        self.records_file = records_file
        self.quantize = check_quantize(quantize)
        self.template = resolve_template(template)
        self.batch_size = require_int("mcqa.batch_size", batch_size, minimum=1)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.hits = self.misses = 0
        self._unwritable = False
        self._memo: dict[str, torch.Tensor] = {}  # cache key -> log-likelihoods of the base model, this run
        self._ids: dict[int, str] = {}  # id(teacher) -> its fingerprint (frozen weights: computed once)
        self._teacher_en: torch.Tensor | None = None
        self.skipped: dict[str, str] = {}
        self.stages: dict[str, dict[str, dict[str, Any]]] = {}  # stage -> result name -> predictions, tables

    @classmethod
    def from_settings(cls, name: str, path: str, reference: str | None = None, split: str | None = None,
                      lang: str | None = None, languages: Sequence[str] | None = None, optional: bool = False,
                      max_questions: int | None = None, subjects: Sequence[str] | None = None, seed: int = 0,
                      template: str | None = None, batch_size: int = 8,
                      cache_dir: str | None = None, quantize: str = "none",
                      records_file: str = "mcqa.json") -> LoglikMCQA:
        """The evaluator from the flat settings of ``conf/mcqa/afrimmlu_loglik.yaml`` (``mcqa.split=val``)."""
        questions = QuestionSet(path, reference, lang, languages, optional, max_questions, subjects, seed)
        return cls(name, questions, template, batch_size, cache_dir, split, quantize, records_file)

    # ------------------------------------------------------------------ protocol
    def __call__(self, encoders: Encoders, stage: Stage | str) -> Metrics:
        """Result name -> accuracy report of ``stage`` (nothing for BM25, or translate-test without a dictionary)."""
        if not self.questions:
            self.load()
        teacher, student = encoders.teacher, encoders.student
        if stage == Stage.TRANSLATE_BM25 or (stage == Stage.TRANSLATE_DENSE and encoders.translator is None):
            return {}
        reference = self.teacher_english(teacher)
        if stage == Stage.TEACHER_EN:
            scored = {self.name: (self.english, reference)}
        elif stage == Stage.ZERO_SHOT:
            scored = {self.name: (self.questions, self.base_logliks(teacher, self.questions))}
        elif stage == Stage.TRANSLATE_DENSE:
            translate = encoders.translator.translate  # the question and its options: no human translation leaks in
            translated = [dataclasses.replace(q, question=translate(q.question), choices=tuple(map(translate, q.choices)))
                          for q in self.questions]
            scored = {self.name: (self.questions, self.logliks(teacher, translated))}
        else:  # trained, and the learning curve's step<N>: the student
            scored = {self.name: (self.questions, self.logliks(student, self.questions))}
            if stage == Stage.TRAINED and self.set.reference is not None:
                scored[f"{self.name}-en"] = (self.english, self.logliks(student, self.english))
        results = {}
        for name, (questions, logliks) in scored.items():
            report = accuracy_report(questions, logliks.argmax(1), reference.argmax(1))
            report.update(letter_distribution_report(questions, logliks, reference))
            details = {k: report.pop(k) for k in ("per_group", "per_subject", "predicted")}
            self.stages.setdefault(str(stage), {})[name] = {**details, "loglik": _rounded(logliks)}
            log.info("%s %s (log-likelihood): accuracy=%.3f [%.3f, %.3f] (chance %.3f, n=%d), agreement with the "
                     "teacher in English %.3f", stage, name, report["accuracy"], report["ci95_low"],
                     report["ci95_high"], report["chance"], report["n"], report["agreement"])
            results[name] = report
        return results

    def records(self) -> dict[str, Any]:
        return {self.records_file: self.details()} if self.stages else {}

    def clear_records(self) -> None:
        self.stages.clear()

    def cache_counts(self) -> tuple[int, int]:
        return self.hits, self.misses

    def curve_values(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The learning curve follows accuracy, agreement and the two continuous measures (not the interval)."""
        return {k: float(metrics[k]) for k in ("accuracy", "agreement", "gold_prob", "kl_to_reference")
                if k in metrics}

    # ------------------------------------------------------------------ work
    def logliks(self, encoder: Any, questions: Sequence[MCQuestion]) -> torch.Tensor:
        """(questions, 4) log-likelihoods of the letters, scored by ``encoder``'s language model."""
        lm, tokenizer = getattr(encoder, "lm", None), getattr(encoder, "tokenizer", None)
        if lm is None or tokenizer is None:
            raise ConfigError(f"mcqa {self.name}: log-likelihood scoring needs language-model encoders (with .lm and "
                              f".tokenizer, e.g. teacher=qwen_coder_1_5b student=qwen_coder_1_5b), not "
                              f"{type(encoder).__name__} {getattr(encoder, 'name', '')!r}; use mcqa=afrimmlu "
                              f"for embedding encoders")
        device = _device(lm, encoder)
        if self.quantize == "int8":
            if getattr(encoder, "base_lm", None) is None:
                raise ConfigError(f"mcqa.quantize=int8 needs a causal-LM encoder with .base_lm, not {type(encoder).__name__}")
            lm = int8_copy(encoder.base_lm, merge_adapters=bool(getattr(encoder, "is_student", False)))
        return question_logliks(lm, tokenizer, questions, self.template, self.batch_size,
                                progress=len(questions) > 4 * self.batch_size, device=device)

    def teacher_english(self, teacher: Any) -> torch.Tensor:
        """The base model's log-likelihoods on the English questions: the teacher row and agreement's reference."""
        if self._teacher_en is None:
            self._teacher_en = self.base_logliks(teacher, self.english)
        return self._teacher_en

    def base_logliks(self, teacher: Any, questions: Sequence[MCQuestion]) -> torch.Tensor:
        """The base model's log-likelihoods of ``questions``, read from the disk cache when an earlier run (or
        sweep job) scored the same questions with the same weights and template, else scored and stored."""
        if id(teacher) not in self._ids:
            self._ids[id(teacher)] = model_id(teacher)
        key = {"model": self._ids[id(teacher)], "dtype": _dtype(getattr(teacher, "lm", None), teacher),
               "template": self.template, "questions": questions_hash(questions), "n": len(questions),
               "continuations": list(CONTINUATIONS), "scoring": SCORING_VERSION}
        if self.quantize != "none":  # float entries keep their keys
            key["quantize"] = self.quantize
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        if digest in self._memo:
            return self._memo[digest]
        path = self.cache_dir / f"{digest}.json" if self.cache_dir is not None else None
        logliks = self._read(path, key) if path is not None else None
        if logliks is not None:
            self.hits += 1
        else:
            self.misses += 1
            logliks = self.logliks(teacher, questions)
            if path is not None:
                self._write(path, key, questions, logliks)
        self._memo[digest] = logliks
        return logliks

    def _read(self, path: Path, key: dict[str, Any]) -> torch.Tensor | None:
        """A cache entry, or ``None`` when there is none; one that is unreadable or does not fit is warned
        about and scored again (then overwritten), never trusted."""
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            logliks = torch.tensor(entry["loglik"], dtype=torch.float32)
            if entry.get("key") != key or tuple(logliks.shape) != (key["n"], len(CONTINUATIONS)):
                raise ValueError(f"key or shape {tuple(logliks.shape)} does not match")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("log-likelihood cache entry %s is unusable (%s); scoring again", path, e)
            return None
        return logliks

    def _write(self, path: Path, key: dict[str, Any], questions: Sequence[MCQuestion], logliks: torch.Tensor) -> None:
        if self._unwritable:
            return
        try:
            atomic_write_json(path, {"key": key, "ids": [q.id for q in questions], "loglik": logliks.tolist(),
                                     "predicted": logliks.argmax(1).tolist()})
        except OSError as e:  # read-only or full: the answers are right, only not kept
            self._unwritable = True
            log.warning("cannot write the log-likelihood cache in %s (%s); going on without it - choose a writable "
                        "mcqa.cache_dir", self.cache_dir, e.strerror or e)

    def details(self) -> dict[str, Any]:
        """``mcqa.json``: per-question predictions and log-likelihoods of every stage, for paired tests
        (the shape of :meth:`MCQAEvaluator.details`, plus ``loglik`` and the template)."""
        teacher = self._teacher_en
        return {"name": self.name, "path": str(self.set.path), "reference": self.set.reference, "split": self.split,
                "scoring": "loglik", "template": self.template, "ids": [q.id for q in self.questions],
                "subjects": [q.subject for q in self.questions], "answers": [q.answer for q in self.questions],
                "teacher_en_predicted": None if teacher is None else teacher.argmax(1).tolist(),
                "teacher_en_loglik": None if teacher is None else _rounded(teacher),
                "stages": self.stages}


def _rounded(logliks: torch.Tensor) -> list[list[float]]:
    """Log-likelihoods for JSON: 6 decimals are far below any difference between letters that matters."""
    return [[round(float(x), 6) for x in row] for row in logliks.tolist()]
