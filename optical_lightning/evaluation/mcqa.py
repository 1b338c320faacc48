"""MMLU-style multiple-choice accuracy with retrieval encoders (no generation, no LLM).

Each question is answered by retrieval: the choice whose embedding is closest to the question's
is the prediction,

.. math:: \\hat k = \\arg\\max_k \\langle q(\\text{question}),\\ c(\\text{choice}_k) \\rangle,

with ``q`` the query encoder in the ``query`` role and ``c`` the choice encoder in the ``passage``
role (both L2-normalised, so the score is a cosine). A *reference* file, parallel by ``id`` (e.g.
AfriMMLU's English originals next to its Swahili translations), gives every question an English
version. The modes:

* ``cross``: q = student on the run's language, c = teacher on the reference's (English) choices -
  OPTICAL's search setting, student queries against teacher documents (without a reference, the
  file's own choices);
* ``same``: q = c = the encoder under test, question and choices in the run's language;
* the teacher row (stage ``teacher_en``): the teacher on the English question and English choices,
  the upper bound;
* translate-test (stage ``translate_dense``, ``eval.translate_test=true``): the teacher on the question
  translated word by word (:mod:`~optical_lightning.evaluation.translate_test`) and the English choices:
  what the student has to beat without any training.

Each is reported as accuracy with a 95% Wilson interval, the chance level (mean of 1 / number of
choices), per subject, per group (the Global-MMLU "Medical" subjects vs. the rest, when both
occur) and **agreement**: the share of questions whose prediction equals the teacher's on the
English version. Agreement isolates the cross-lingual part: near chance, accuracy hardly moves
while agreement still says whether the student answers as the teacher would.

The questions are read by :class:`~optical_lightning.evaluation.questions.QuestionSet` (Global-MMLU
columns, JSONL, CSV or a Hugging Face id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.distributed import encode_shared
from optical_lightning.evaluation.protocol import Encoders, Encoding, Metrics
from optical_lightning.evaluation.questions import (  # noqa: F401 - the readers, importable from here too
    LETTERS,
    MEDICAL_SUBJECTS,
    MCQuestion,
    QuestionSet,
    QuestionsEvaluator,
    load_hf_mcqa,
    read_mcqa,
    read_parallel,
    subsample,
)
from optical_lightning.evaluation.stages import Stage
from optical_lightning.models.encoder import Encoder
from optical_lightning.utils.errors import ConfigError, as_list

log = logging.getLogger(__name__)
#: mode -> the suffix of its result name (``afrimmlu-sw``, ``afrimmlu-sw-same``)
MODES = {"cross": "", "same": "-same"}


def predict(questions: list[MCQuestion], query_encoder: Encoder, choice_encoder: Encoder,
            batch_size: int = 64, choice_embeddings: torch.Tensor | None = None,
            precision: str = "32") -> torch.Tensor:
    """The index of the best-scoring choice for each question (``choice_embeddings``: the flat
    choices already encoded, e.g. from the teacher's cache)."""
    q = encode_shared(query_encoder, [x.question for x in questions], "query", batch_size, precision=precision)
    c = choice_embeddings
    if c is None:
        c = encode_shared(choice_encoder, [c for x in questions for c in x.choices], "passage", batch_size,
                          precision=precision)
    scores = torch.full((len(questions), max(len(x.choices) for x in questions)), float("-inf"))
    offset = 0
    for i, x in enumerate(questions):
        k = len(x.choices)
        scores[i, :k] = c[offset:offset + k] @ q[i]
        offset += k
    return scores.argmax(1)


def wilson_interval(hits: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (well behaved near 0, 1 and at small n)."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_report(questions: list[MCQuestion], predicted: torch.Tensor,
                    reference: torch.Tensor | None = None) -> dict[str, Any]:
    """Accuracy with its 95% interval, chance level, agreement with ``reference`` predictions (the
    teacher's on the English version), and per-subject / per-group breakdowns."""
    predicted_list = [int(p) for p in predicted.tolist()]
    correct = [p == q.answer for q, p in zip(questions, predicted_list)]
    agree = None if reference is None else [p == int(r) for p, r in zip(predicted_list, reference.tolist())]
    chance = sum(1 / len(q.choices) for q in questions) / len(questions)

    def table(key) -> dict[str, dict[str, float]]:
        rows: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(questions):
            rows[key(q)].append(i)
        out = {}
        for k, idx in sorted(rows.items()):
            out[k] = {"accuracy": sum(correct[i] for i in idx) / len(idx), "n": len(idx)}
            if agree is not None:
                out[k]["agreement"] = sum(agree[i] for i in idx) / len(idx)
        return out

    low, high = wilson_interval(sum(correct), len(correct))
    report: dict[str, Any] = {"accuracy": sum(correct) / len(correct), "ci95_low": low, "ci95_high": high,
                              "chance": chance, "n": len(questions)}
    if agree is not None:
        report["agreement"] = sum(agree) / len(agree)
    groups = table(lambda q: q.group)
    if len(groups) > 1:
        report.update({f"accuracy/{g}": v["accuracy"] for g, v in groups.items()})
    return {**report, "per_group": groups, "per_subject": table(lambda q: q.subject), "predicted": predicted_list}


class MCQAEvaluator(QuestionsEvaluator):
    """Multiple-choice accuracy of a run's encoders on one question set (see the module docstring).

    Args:
        name: the key under which results appear (``afrimmlu-sw``; the ``same`` mode adds ``-same``).
        questions: the questions and, when the set has one, their English reference version: the cross
            mode's choices, the teacher row, and the reference of agreement. Without it the file itself
            plays that part (meaningful when the questions are English).
        modes: any of ``cross`` (student question vs. teacher choices) and ``same`` (one encoder).
        teacher_row: also score the teacher on the English version (the run's ``teacher_en`` stage);
            set it for an English file without a reference, so that agreement is measured.
        encoding: batch size, precision and the cache of the teacher's choice embeddings.
        split: the split the paths name (recorded with the results; choose recipes on ``val``).
    """

    def __init__(self, name: str, questions: QuestionSet, modes: Sequence[str] = ("cross",), teacher_row: bool = False,
                 encoding: Encoding = Encoding(), split: str | None = None) -> None:  # noqa: B008
        modes = as_list(modes)
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise ConfigError(f"mcqa.modes={list(modes)}: choose one or more of {list(MODES)}")
        self.name, self.set, self.modes, self.teacher_row = name, questions, list(modes), teacher_row
        self.encoding, self.split = encoding, split
        self.cache = EmbeddingCache(encoding.cache_dir)
        self.skipped: dict[str, str] = {}
        self.stages: dict[str, dict[str, dict[str, Any]]] = {}  # stage -> result name -> details and predictions
        self._teacher: torch.Tensor | None = None
        self._choices: torch.Tensor | None = None

    @classmethod
    def from_settings(cls, name: str, path: str, reference: str | None = None, modes: Sequence[str] = ("cross",),
                      split: str | None = None, lang: str | None = None, languages: Sequence[str] | None = None,
                      optional: bool = False, max_questions: int | None = None, subjects: Sequence[str] | None = None,
                      teacher_row: bool = False, batch_size: int = 64, seed: int = 0, cache_dir: str | None = None,
                      precision: str = "auto") -> MCQAEvaluator:
        """The evaluator from the flat settings of ``conf/mcqa`` (``mcqa.split=val`` on the command line)."""
        questions = QuestionSet(path, reference, lang, languages, optional, max_questions, subjects, seed)
        return cls(name, questions, modes, teacher_row, Encoding(batch_size, precision, cache_dir), split)

    # ------------------------------------------------------------------ protocol
    def __call__(self, encoders: Encoders, stage: Stage | str) -> Metrics:
        """Result name -> accuracy report of ``stage`` (nothing for BM25, or the teacher row when it is off)."""
        if not self.questions:
            self.load()
        if stage == Stage.TRANSLATE_BM25 or (stage == Stage.TEACHER_EN and not self.teacher_row):
            return {}
        if stage == Stage.TRANSLATE_DENSE:
            answered = self.evaluate_translated(encoders.translator.translate, encoders.teacher, stage) \
                if encoders.translator is not None else {}
        else:
            answered = self.evaluate(encoders.for_stage(stage), encoders.teacher, stage)
        for name, report in answered.items():
            log.info("%s %s: accuracy=%.3f [%.3f, %.3f] (chance %.3f, n=%d)%s", stage, name, report["accuracy"],
                     report["ci95_low"], report["ci95_high"], report["chance"], report["n"],
                     f", agreement with the teacher in English {report['agreement']:.3f}" if "agreement" in report else "")
        return answered

    def records(self) -> dict[str, Any]:
        return {"mcqa.json": self.details()} if self.stages else {}

    def clear_records(self) -> None:
        self.stages.clear()

    def cache_counts(self) -> tuple[int, int]:
        return self.cache.hits, self.cache.misses

    def curve_values(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The learning curve follows accuracy and agreement (not the interval or the counts)."""
        return {k: float(metrics[k]) for k in ("accuracy", "agreement") if k in metrics}

    # ------------------------------------------------------------------ work
    def _teacher_choices(self, teacher: Encoder) -> torch.Tensor:
        """The frozen teacher's embeddings of the English choices: cached on disk for every job, and
        kept here for the stages of this one."""
        if self._choices is None:
            choices = [c for q in self.english for c in q.choices]
            key = hashlib.sha256("\x1e".join(choices).encode()).hexdigest()[:24]
            self._choices = document_embeddings(teacher, choices, f"mcqa:{key}", self.cache, with_tokens=False,
                                                batch_size=self.encoding.batch_size,
                                                precision=self.encoding.precision)["pooled"]
        return self._choices

    def teacher_predictions(self, teacher: Encoder) -> torch.Tensor:
        """The teacher's answers to the English questions: the teacher row, and what agreement compares with."""
        if self._teacher is None:
            self._teacher = predict(self.english, teacher, teacher, self.encoding.batch_size,
                                    choice_embeddings=self._teacher_choices(teacher), precision=self.encoding.precision)
        return self._teacher

    def _record(self, stage: str, name: str, report: dict[str, Any]) -> dict[str, Any]:
        details = {k: report.pop(k) for k in ("per_group", "per_subject", "predicted")}
        self.stages.setdefault(stage, {})[name] = details
        for subject, row in details["per_subject"].items():
            log.info("%s %s %s: accuracy=%.3f%s (n=%d)", stage, name, subject, row["accuracy"],
                     f" agreement={row['agreement']:.3f}" if "agreement" in row else "", row["n"])
        return report

    def evaluate(self, encoder: Encoder, teacher: Encoder, stage: str = Stage.TRAINED) -> Metrics:
        """Result name -> metrics of ``encoder`` (the student; the teacher itself at ``teacher_en``)."""
        if not self.questions:
            self.load()
        # agreement needs an English version: the reference file, or the file itself when it is English
        english_known = self.set.reference is not None or self.teacher_row
        reference = self.teacher_predictions(teacher) if english_known or stage == Stage.TEACHER_EN else None
        if stage == Stage.TEACHER_EN:
            return {self.name: self._record(stage, self.name, accuracy_report(self.english, reference, reference))}
        results = {}
        batch, precision = self.encoding.batch_size, self.encoding.precision
        for mode in self.modes:
            if mode == "cross":
                predicted = predict(self.questions, encoder, teacher, batch,
                                    choice_embeddings=self._teacher_choices(teacher), precision=precision)
            else:
                predicted = predict(self.questions, encoder, encoder, batch, precision=precision)
            name = self.name + MODES[mode]
            results[name] = self._record(stage, name, accuracy_report(self.questions, predicted, reference))
        return results

    def evaluate_translated(self, translate: Callable[[str], str], teacher: Encoder, stage: str = Stage.TRANSLATE_DENSE) -> Metrics:
        """The translate-test row: ``translate`` (word by word) turns each question into rough English,
        which the teacher answers against its English choices (cross mode only: the choices are English)."""
        if not self.questions:
            self.load()
        translated = [dataclasses.replace(q, question=translate(q.question)) for q in self.questions]
        predicted = predict(translated, teacher, teacher, self.encoding.batch_size,
                            choice_embeddings=self._teacher_choices(teacher), precision=self.encoding.precision)
        report = accuracy_report(self.questions, predicted, self.teacher_predictions(teacher))
        return {self.name: self._record(stage, self.name, report)}

    def details(self) -> dict[str, Any]:
        """``mcqa.json``: the per-question predictions of every stage and mode, for paired tests."""
        return {"name": self.name, "path": str(self.set.path), "reference": self.set.reference, "split": self.split,
                "modes": self.modes, "ids": [q.id for q in self.questions],
                "subjects": [q.subject for q in self.questions], "answers": [q.answer for q in self.questions],
                "teacher_en_predicted": None if self._teacher is None else self._teacher.tolist(),
                "stages": self.stages}
