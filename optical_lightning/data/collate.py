"""Turns a list of bitext pairs into the tensors a distillation step needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from optical_lightning.data.bitext import BitextPair
from optical_lightning.models.encoder import Encoder

if TYPE_CHECKING:
    from optical_lightning.data.student_cache import FrozenLayersCache
    from optical_lightning.data.teacher_cache import TeacherTokenCache


class PairCollator:
    """Tokenises English with the teacher's tokenizer and the other side with the student's.

    ``student_en`` (English through the student) is only built when a loss needs it (the MSE
    baseline's second term), to keep OT-only batches small. The student's side is a query at search
    time, so it takes the query prefix; the teacher's English side takes ``teacher_role``'s prefix:
    ``query`` (default) aims the student at the teacher's English queries, ``passage`` at the English
    documents that translation retrieval compares it with. With a ``student_cache`` the student's
    batches also carry ``lower_hidden``, the output of its fixed lower layers, so only its top runs. With a
    ``base_cache`` they carry ``base_tgt``: the base model's states of the target side (losses/base_plan.py),
    read from the teacher cache instead of a second forward pass each step.
    """

    def __init__(self, teacher: Encoder, student: Encoder, with_student_en: bool = False,
                 teacher_cache: TeacherTokenCache | None = None, teacher_role: str = "query",
                 student_cache: FrozenLayersCache | None = None, base_cache: TeacherTokenCache | None = None) -> None:
        self.teacher, self.student, self.with_student_en = teacher, student, with_student_en
        self.teacher_cache, self.teacher_role, self.student_cache = teacher_cache, teacher_role, student_cache
        self.base_cache = base_cache
        if teacher_cache is not None and teacher_cache.role != teacher_role:
            raise ValueError(f"the teacher cache holds {teacher_cache.role!r} clouds, the collator wants {teacher_role!r}")

    def __call__(self, pairs: list[BitextPair]) -> dict[str, dict[str, Tensor]]:
        en = [p.en for p in pairs]
        batch = {
            # with a teacher cache, the teacher's outputs themselves (``tokens`` ...), not its inputs
            "teacher_en": self.teacher_cache.batch(en) if self.teacher_cache else self.teacher.tokenize(en, self.teacher_role),
            "student_tgt": self._student([p.tgt for p in pairs]),
        }
        if self.with_student_en:
            batch["student_en"] = self._student(en)
        if self.base_cache is not None:
            batch["base_tgt"] = self.base_cache.batch([p.tgt for p in pairs])
        return batch

    def _student(self, texts: list[str]) -> dict[str, Tensor]:
        inputs = self.student.tokenize(texts, "query")
        if self.student_cache is not None:
            inputs["lower_hidden"] = self.student_cache.batch(texts, inputs["attention_mask"])
        return inputs
