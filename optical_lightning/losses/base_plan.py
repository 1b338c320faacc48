r"""Transport along the base model's plan: each student token is pulled to the English tokens that the
*untrained* model pairs it with.

OPTICAL solves the plan again on the student's states at every step, so a student can lower
:math:`\langle P, C\rangle` in two ways: by moving its tokens towards their counterparts, and by pairing them
with other, nearer English tokens. On the language model, the trained students kept only 0.43 of the base
model's pairings, and moved as far off their tokens' English targets as towards them (docs/reasoning.md,
finding 17). The oracle whose answers do move goes straight to the targets of the base model's plan
(findings 10 and 11).

This term fixes the plan where the base model put it. For one pair:
- :math:`x` are the teacher's English tokens;
- :math:`y^0` are the base model's target-language tokens (the student with its adapters off);
- :math:`y` are the student's tokens;
- :math:`P^0` is the head's entropic plan between :math:`x` and :math:`y^0`, with the same weights, blur and
  centring as the transport term.

.. math:: \mathcal{L}_{base\,plan} = \langle P^0, C(x, y)\rangle_F
          = \sum_j b_j \bigl(1 - \langle \bar x_j, y_j\rangle\bigr),\qquad
          \bar x_j = \frac{1}{b_j}\sum_i P^0_{ij}\, x_i .

Each student token :math:`y_j` is pulled only towards its own barycentric English target :math:`\bar x_j`,
and that target does not move as the student trains. So the student gains nothing by re-pairing. It still
gains by making its tokens alike: the targets are averages of a few English tokens, which share much of their
direction, and the quickest way towards all of them is one shift. Without the spread term
(:mod:`optical_lightning.losses.spread`) the tokens collapse as under OT alone (docs/reasoning.md, finding 19).

The base states are the teacher reading the student's own batch, up to the aligned layer. That requires a
student adapted from its teacher, that is, a language model with LoRA adapters (``student=qwen_coder_1_5b``,
``tiny_lm``). With ``data.teacher_cache=true`` (as in ``experiment=reasoning``) they are computed once per
sentence and stored beside the teacher's English clouds; otherwise each step runs one more forward pass, without
gradients. With weight 0 the term is left out.

Example::

    python run.py experiment=reasoning distill.ot_weight=0 distill.base_plan_weight=10
"""

from __future__ import annotations

import torch
from torch import Tensor

from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning.losses.terms import StepOutputs, TransportTerm, checked_weight
from optical_lightning.utils.errors import ConfigError


class BasePlanTransportTerm(TransportTerm):
    """``<P^0, C>`` with the plan solved on the base model's states (``distill.base_plan_weight``; 0: off).

    It logs ``base_plan_cost``, which is the loss, and ``transport_cost``, the cost under the student's own
    plan (what the transport term logs), so that runs with either term can be compared."""

    name = "base_plan"
    needs_base_tgt = True

    def __init__(self, weight: float, head: OTDistillationHead) -> None:
        weight = checked_weight(weight, "distill.base_plan_weight", "off")
        if weight > 0 and head.loss != "transport":
            raise ConfigError(f"ot.loss={head.loss}: distill.base_plan_weight charges <P, C> on a fixed plan only; "
                              f"use ot.loss=transport or distill.base_plan_weight=0")
        super().__init__(weight, head)

    def forward(self, out: StepOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        if out.base_tgt is None:
            raise RuntimeError("the base-plan term needs the base model's target-language states (StepOutputs.base_tgt)")
        masks = self.masks(out)
        fixed = self.plan(out, masks, plan_from=out.base_tgt.tokens)
        with torch.no_grad():
            own = self.plan(out, masks)
        return fixed.loss, {**self.monitors(out, masks, own), "base_plan_cost": fixed.transport_cost.mean()}
