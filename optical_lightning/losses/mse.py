"""The sentence-level MSE baseline (Reimers & Gurevych, 2020, "Making monolingual sentence
embeddings multilingual using knowledge distillation").

With teacher T (English only) and student S: :math:`\\|S(tgt) - T(en)\\|^2 + \\|S(en) - T(en)\\|^2`,
averaged over the batch and the embedding dimensions. The second term keeps the student's English
in the teacher's space, so English and target-language queries land in the same place.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pooled_mse(student_tgt: Tensor, teacher_en: Tensor, student_en: Tensor | None = None) -> Tensor:
    loss = F.mse_loss(student_tgt, teacher_en)
    if student_en is not None:
        loss = loss + F.mse_loss(student_en, teacher_en)
    return loss
