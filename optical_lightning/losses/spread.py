"""A spread term: the student's tokens of a sentence may be no more alike than the teacher's tokens of its translation.

Entropic OT pulls each student token towards a blurred average of the teacher's tokens, so the student can lower
the transport cost by making all its tokens alike. On the language model that is what OT did
(docs/reasoning.md): the mean cosine between two Swahili tokens of one question rose from 0.36 to 0.64 (the
teacher's English: 0.32) while the answers got worse. This term charges for exactly that excess,

.. math:: \\mathcal{L}_{spread} = \\frac{1}{B} \\sum_b \\max(0,\\ \\bar c(S_b) - \\bar c(T_b)),\\qquad
   \\bar c(Y) = \\frac{1}{n(n-1)} \\sum_{i \\ne j} \\langle y_i, y_j \\rangle,

over the alignable tokens of each pair :math:`b` with two tokens or more a side (unit vectors; :math:`\\bar c` is
:func:`~optical_lightning.losses.terms.sentence_spread`, here with gradients). The teacher's side is a
target, not trained. A hinge, not a square: a student whose tokens are already as spread as the teacher's feels
nothing, and a collapsing one a constant pull back. With weight 0 the term is left out.

Example::

    python run.py experiment=reasoning distill.ot_weight=10 distill.spread_weight=10
"""

from __future__ import annotations

from torch import Tensor

from optical_lightning.losses.marginals import alignment_mask
from optical_lightning.losses.terms import LossTerm, StepOutputs, checked_weight, sentence_spread


class TokenSpreadTerm(LossTerm):
    """The student's within-sentence token cosine held at or below the teacher's (``distill.spread_weight``)."""

    name = "spread"

    def __init__(self, weight: float, special_tokens: bool = False) -> None:
        super().__init__(checked_weight(weight, "distill.spread_weight", "no spread term"))
        self.special_tokens = special_tokens

    def forward(self, out: StepOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        teacher_mask, student_mask = (alignment_mask(side.content_mask, side.attention_mask, self.special_tokens)
                                      for side in (out.teacher, out.student))
        keep = (teacher_mask.sum(-1) > 1) & (student_mask.sum(-1) > 1)
        student = sentence_spread(out.student.tokens, student_mask)
        teacher = sentence_spread(out.teacher.tokens.detach(), teacher_mask)
        excess = (student - teacher).clamp_min(0)[keep]
        loss = excess.mean() if keep.any() else student.sum() * 0.0
        return loss, {}
