"""An English anchor: the student reading English should give the teacher's English token states.

Distilling only the target-language side lets the student's English drift wherever the shared weights take it.
For a language-model student (the teacher's own model with LoRA adapters, :mod:`optical_lightning.models.causal_lm`)
that drift is what its English answers are made of. The anchor holds the student's English to the teacher's:

.. math:: \\mathcal{L}_{anchor} = \\frac{1}{|M|} \\sum_{(b, i) \\in M} 1 - \\cos(S(en)_{b,i}, T(en)_{b,i})

over the content tokens :math:`M` of the batch's English sentences (the mean over tokens, not sentences).

Why per token and cosine, not MSE of the pooled vectors: the decoder layers above the aligned one read every
token's state, not their mean, so a pooled anchor would let the English tokens move as long as their mean stays;
and the states are unit vectors (``normalize``), so 1 - cosine is the same cost the OT head transports along and
is scale-free - a weight near 1 counts beside the OT and InfoNCE terms, where an MSE over D dimensions needs a
weight near D (:mod:`optical_lightning.losses.mse`). The pooled English MSE exists already, in ``distill=mse``.

Requirements: the student and the teacher tokenise English alike (the same tokenizer and prefix: a student
adapted from its teacher with ``distill.teacher_role=query``), so that token i is the same token on both sides;
a batch where they differ is a one-line :class:`~optical_lightning.utils.errors.ConfigError`. With weight 0 the
term is left out of the module, and no English batch is built or encoded for it.

Example::

    python run.py teacher=qwen_coder_1_5b student=qwen_coder_1_5b distill.anchor_weight=1.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from optical_lightning.losses.terms import LossTerm, StepOutputs, checked_weight
from optical_lightning.models.encoder import EncoderOutput
from optical_lightning.utils.errors import ConfigError


def english_anchor(student_en: EncoderOutput, teacher_en: EncoderOutput, student_ids: Tensor,
                   teacher_ids: Tensor) -> Tensor:
    """Mean over the English content tokens of ``1 - cos(student, teacher)`` (see the module docstring)."""
    same = student_ids.shape == teacher_ids.shape and torch.equal(student_en.attention_mask, teacher_en.attention_mask)
    if not same or not torch.equal(student_ids[student_en.attention_mask], teacher_ids[teacher_en.attention_mask]):
        raise ConfigError("distill.anchor_weight > 0 compares the student's and the teacher's English token by token, "
                          "but they tokenise it differently: use a student adapted from its teacher (student=tiny_lm, "
                          "qwen_coder_1_5b) with distill.teacher_role=query, or distill.anchor_weight=0")
    mask = (student_en.content_mask & teacher_en.content_mask).float()
    cos = (F.normalize(student_en.tokens.float(), dim=-1) * F.normalize(teacher_en.tokens.float(), dim=-1)).sum(-1)
    return ((1.0 - cos) * mask).sum() / mask.sum().clamp_min(1.0)


class EnglishAnchorTerm(LossTerm):
    """The student's English token states pulled to the teacher's (``distill.anchor_weight``; 0: off)."""

    name = "anchor"
    needs_student_en = True

    def __init__(self, weight: float) -> None:
        super().__init__(checked_weight(weight, "distill.anchor_weight", "no anchor"))

    def forward(self, out: StepOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        if out.student_en_out is None or out.student_en_ids is None:
            raise RuntimeError("the English anchor needs the student's English outputs (the collator's with_student_en)")
        return english_anchor(out.student_en_out, out.teacher, out.student_en_ids, out.teacher_ids), {}
