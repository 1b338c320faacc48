"""The weighted loss terms of a distillation step, each an ``nn.Module`` the Lightning module sums.

A step encodes a batch of pairs once (:class:`StepOutputs`); every term reads what it needs from it and
returns its loss and extra values to log. The module adds ``weight * loss`` of each term, in the order the
config lists them, and logs each as ``<name>_loss``. ``conf/distill/default.yaml`` lists the three terms
with their weights; a new term is one more entry there with a ``_target_`` that subclasses
:class:`LossTerm`, not a new branch in the module.

* :class:`TransportTerm`: OPTICAL's <P, C> between the token clouds (:mod:`optical_lightning.losses.ot`);
* :class:`PooledMSETerm`: the sentence-level MSE baseline (:mod:`optical_lightning.losses.mse`);
* :class:`InBatchInfoNCETerm`: in-batch contrastive term of the pooled vectors
  (:mod:`optical_lightning.losses.contrastive`);
* the English anchor, the spread term and transport along the base model's plan live in their own modules
  (:mod:`~optical_lightning.losses.anchor`, :mod:`~optical_lightning.losses.spread`,
  :mod:`~optical_lightning.losses.base_plan`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from optical_lightning.losses.contrastive import in_batch_infonce
from optical_lightning.losses.marginals import alignment_mask, token_weights
from optical_lightning.losses.mse import pooled_mse
from optical_lightning.losses.ot import OTDistillationHead, OTOutput
from optical_lightning.models.encoder import EncoderOutput
from optical_lightning.utils.errors import ConfigError


def _this_rank_only(pooled: Tensor) -> tuple[Tensor, int]:
    return pooled, 0


@dataclass
class StepOutputs:
    """What one step computed, for the loss terms to read."""

    teacher: EncoderOutput  # the teacher reading English
    student: EncoderOutput  # the student reading the target language
    teacher_ids: Tensor  # input ids of both sides (token weights, idf)
    student_ids: Tensor
    student_en: Tensor | None = None  # the student's pooled English, when a term asks for it
    student_en_out: EncoderOutput | None = None  # ... and its whole output (token clouds: losses/anchor.py)
    student_en_ids: Tensor | None = None
    teacher_idf: Tensor | None = None
    student_idf: Tensor | None = None
    base_tgt: EncoderOutput | None = None  # the base model reading the student's batch (losses/base_plan.py)
    # the teacher's pooled vectors of the global batch and this rank's first row (DDP; see contrastive.py)
    gather: Callable[[Tensor], tuple[Tensor, int]] = _this_rank_only


def checked_weight(weight: object, setting: str, off: str) -> float:
    """``weight`` if it is a finite number >= 0, else a one-line error naming ``setting`` (``off``: what 0 means)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (weight >= 0 and math.isfinite(weight)):
        raise ConfigError(f"{setting}={weight!r}: must be a finite number >= 0 (0: {off})")
    return weight


class LossTerm(nn.Module):
    """One weighted term. ``name`` labels its logs; ``needs_student_en`` asks the collator for the
    student's English side too; ``needs_base_tgt`` asks the module for the base model's states of the student's
    batch; ``settings`` names what to check when the loss stops being finite."""

    name = "term"
    needs_student_en = False
    needs_base_tgt = False
    wants_idf = False

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, out: StepOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def settings(self) -> dict[str, float]:
        return {f"{self.name} weight": self.weight}


def sentence_spread(tokens: Tensor, mask: Tensor) -> Tensor:
    """(B,) mean cosine between two different masked tokens of each row (unit-vector tokens), 0 where fewer than
    two; :math:`\\sum_{i \\ne j} \\langle y_i, y_j\\rangle = \\|\\sum_i y_i\\|^2 - \\sum_i \\|y_i\\|^2`, so it costs O(B M D)."""
    tokens = tokens.float() * mask[..., None]
    n = mask.sum(-1).float()
    within = tokens.sum(1).pow(2).sum(-1) - tokens.pow(2).sum((1, 2))
    return within / (n * (n - 1)).clamp_min(1)


def token_spread(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over the batch of :func:`sentence_spread` (rows with two tokens or more), without gradients.

    A collapse monitor: entropic OT pulls each student token towards a blurred average of the teacher's, so a
    student can lower the transport cost by making its tokens alike. On the language model that happened
    (docs/reasoning.md): this value rose far above the teacher's while the answers got worse
    (:mod:`optical_lightning.losses.spread` charges for it)."""
    keep = mask.sum(-1) > 1
    within = sentence_spread(tokens.detach(), mask)
    return within[keep].mean() if keep.any() else within.new_zeros(())


class TransportTerm(LossTerm):
    """OPTICAL: entropic OT between the alignable tokens of both sides (also draws the plan heatmaps)."""

    name = "ot"

    def __init__(self, weight: float, head: OTDistillationHead) -> None:
        super().__init__(weight)
        self.head = head
        self.wants_idf = head.marginals == "idf"

    def masks(self, out: StepOutputs) -> tuple[Tensor, Tensor]:
        """The tokens each side aligns (teacher, student): real, content, and special ones only if the head asks."""
        return tuple(alignment_mask(side.content_mask, side.attention_mask, self.head.special_tokens)
                     for side in (out.teacher, out.student))

    def plan(self, out: StepOutputs, masks: tuple[Tensor, Tensor] | None = None,
             plan_from: Tensor | None = None) -> OTOutput:
        """The head on both clouds; ``plan_from``: the plan solved on these tokens in the student's places."""
        x_mask, y_mask = masks or self.masks(out)
        a = token_weights(x_mask, out.teacher_ids, out.teacher_idf)
        b = token_weights(y_mask, out.student_ids, out.student_idf)
        return self.head(out.teacher.tokens, a, out.student.tokens, b, plan_from=plan_from)

    def forward(self, out: StepOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        masks = self.masks(out)
        ot = self.plan(out, masks)
        return ot.loss, self.monitors(out, masks, ot)

    @staticmethod
    def monitors(out: StepOutputs, masks: tuple[Tensor, Tensor], ot: OTOutput) -> dict[str, Tensor]:
        """What a transport term logs beside its loss: the cost and entropy of the student's own plan, and the
        within-sentence token cosines of both sides (the collapse monitor)."""
        x_mask, y_mask = masks
        return {"transport_cost": ot.transport_cost.mean(), "plan_entropy": ot.plan_entropy.mean(),
                "teacher_token_cos": token_spread(out.teacher.tokens, x_mask),
                "student_token_cos": token_spread(out.student.tokens, y_mask)}

    def settings(self) -> dict[str, float]:
        return {**super().settings(), "ot.blur": self.head.blur}


class PooledMSETerm(LossTerm):
    """Reimers & Gurevych's pull of the pooled vectors: student(target) and student(English) to teacher(English)."""

    name = "mse"
    needs_student_en = True

    def forward(self, out: StepOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        return pooled_mse(out.student.pooled, out.teacher.pooled, out.student_en), {}


class InBatchInfoNCETerm(LossTerm):
    """Each target-language sentence picks its own English target out of the (global) batch."""

    name = "nce"

    def __init__(self, weight: float, temperature: float) -> None:
        super().__init__(weight)
        self.temperature = temperature

    def forward(self, out: StepOutputs) -> tuple[Tensor, dict[str, Tensor]]:
        targets, offset = out.gather(out.teacher.pooled)
        return in_batch_infonce(out.student.pooled, targets, self.temperature, offset), {}

    def settings(self) -> dict[str, float]:
        return {**super().settings(), "nce temperature": self.temperature}
