"""An in-batch contrastive term (InfoNCE, van den Oord et al. 2018) beside the pull-only losses.

For a batch of B pairs with L2-normalised pooled vectors :math:`s_i` (student, target language) and
:math:`t_j` (frozen teacher, English):

.. math::
    \\mathcal{L}_{nce} = -\\frac{1}{B} \\sum_i \\log
        \\frac{\\exp(s_i \\cdot t_i / \\tau)}{\\sum_j \\exp(s_i \\cdot t_j / \\tau)}

Why: the OT and MSE terms only *pull* each student sentence towards its own target, so the student
can move towards its targets while they crowd together and retrieval gets worse (measured before this
term: mean cosine to the targets 0.897 -> 0.941 while P@1 against the teacher's passages fell 0.980 -> 0.947).
The softmax over the batch also *pushes* each sentence away from the other 31 targets. The teacher
side is frozen, so only the student moves. Under DDP the module gathers the teacher's vectors of every
rank (they need no gradient) and passes this rank's row ``offset``: each rank's sentences are then
contrasted with the whole global batch, and the loss equals a single process's on the same global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def in_batch_infonce(student: Tensor, teacher: Tensor, temperature: float = 0.05, offset: int = 0) -> Tensor:
    """Cross-entropy of ``softmax(student @ teacher.T / temperature)`` against the diagonal.

    ``student`` is ``(B, d)``, ``teacher`` is ``(N, d)`` with ``N >= B``: row ``i`` of the student matches
    row ``offset + i`` of the teacher (``offset`` > 0 when ``teacher`` holds other ranks' targets too).
    Both are normalised here, so cosine similarity is what is contrasted. A batch of one has no
    negatives and gives 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be > 0")
    logits = F.normalize(student, dim=-1) @ F.normalize(teacher, dim=-1).T / temperature
    return F.cross_entropy(logits, offset + torch.arange(len(logits), device=logits.device))
