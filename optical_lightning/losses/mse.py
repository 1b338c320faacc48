"""The sentence-level MSE baseline (Reimers & Gurevych, 2020, "Making monolingual sentence
embeddings multilingual using knowledge distillation").

With teacher T (English only) and student S: :math:`\\|S(tgt) - T(en)\\|^2 + \\|S(en) - T(en)\\|^2`,
averaged over the batch and the embedding dimensions. The second term keeps the student's English
in the teacher's space, so English and target-language queries land in the same place.

Scale: the mean over D dimensions is the squared distance divided by D, so beside terms that are not
divided (the contrastive term, the transport cost) the weight must be about D to count: ``distill=mse``
uses ``mse_weight: 384`` for mE5-small (experiments/DIAGNOSIS.md, finding 9). Alone, under Adam, the
scale does not matter.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pooled_mse(student_tgt: Tensor, teacher_en: Tensor, student_en: Tensor | None = None) -> Tensor:
    loss = F.mse_loss(student_tgt, teacher_en)
    if student_en is not None:
        loss = loss + F.mse_loss(student_en, teacher_en)
    return loss
