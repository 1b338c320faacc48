"""The stages a run evaluates, in order: which encoder reads the queries, and how.

A stage's value is its name in ``results.json``, ``per_query.json`` and ``mcqa.json``. Stages compare equal
to those names and format as them, so records written before the enum existed read the same.
"""

from __future__ import annotations

from enum import Enum


class Stage(str, Enum):
    TEACHER_EN = "teacher_en"  # the teacher on the English versions of the queries: the upper bound
    TRANSLATE_DENSE = "translate_dense"  # word-by-word translated queries, then the teacher
    TRANSLATE_BM25 = "translate_bm25"  # word-by-word translated queries, then BM25
    ZERO_SHOT = "zero_shot"  # the untrained student
    TRAINED = "trained"  # the student after distillation

    # plain names in f-strings and JSON on every Python version (3.11 formats mixed-in enums as Stage.X)
    __str__ = str.__str__
    __format__ = str.__format__
