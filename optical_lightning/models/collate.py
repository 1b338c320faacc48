"""Turns a list of bitext pairs into the tensors a distillation step needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from optical_lightning.data.bitext import BitextPair
from optical_lightning.models.encoder import Encoder

if TYPE_CHECKING:
    from optical_lightning.data.teacher_cache import TeacherTokenCache


class PairCollator:
    """Tokenises English with the teacher's tokenizer and the other side with the student's.

    ``student_en`` (English through the student) is only built when a loss needs it (the MSE
    baseline's second term), to keep OT-only batches small. Both sides are queries at search time,
    so both take the query prefix.
    """

    def __init__(self, teacher: Encoder, student: Encoder, with_student_en: bool = False,
                 teacher_cache: TeacherTokenCache | None = None) -> None:
        self.teacher, self.student, self.with_student_en = teacher, student, with_student_en
        self.teacher_cache = teacher_cache

    def __call__(self, pairs: list[BitextPair]) -> dict[str, dict[str, Tensor]]:
        en = [p.en for p in pairs]
        batch = {
            # with a teacher cache, the teacher's outputs themselves (``tokens`` ...), not its inputs
            "teacher_en": self.teacher_cache.batch(en) if self.teacher_cache else self.teacher.tokenize(en, "query"),
            "student_tgt": self.student.tokenize([p.tgt for p in pairs], "query"),
        }
        if self.with_student_en:
            batch["student_en"] = self.student.tokenize(en, "query")
        return batch
