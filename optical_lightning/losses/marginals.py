"""Token masses for the OT marginals: uniform over alignable tokens, or inverse document frequency.

idf down-weights tokens that occur in most sentences (punctuation, "the", "na") so the transport
budget goes to content words; it is estimated once from the training side of the bitext.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def alignment_mask(content_mask: Tensor, attention_mask: Tensor, special_tokens: bool) -> Tensor:
    """Which tokens carry mass; a row with no content token (e.g. only punctuation specials) falls
    back to all its real tokens so it never has zero mass."""
    if special_tokens:
        return attention_mask
    empty = ~content_mask.any(dim=-1, keepdim=True)
    return torch.where(empty, attention_mask, content_mask)


def idf_table(token_ids: Iterable[Iterable[int]], vocab_size: int) -> Tensor:
    """Smoothed idf per vocabulary id: ``log((1 + n) / (1 + df)) + 1`` over ``n`` sentences."""
    df = torch.zeros(vocab_size, dtype=torch.float64)
    n = 0
    for ids in token_ids:
        n += 1
        df[torch.as_tensor(sorted(set(ids)), dtype=torch.long)] += 1
    return (torch.log((1 + n) / (1 + df)) + 1).float() if n else torch.ones(vocab_size)


def token_weights(mask: Tensor, input_ids: Tensor | None = None, idf: Tensor | None = None) -> Tensor:
    """(B, L) non-negative weights: uniform over ``mask``, or idf of each token where a table is given."""
    w = mask.float()
    if idf is not None:
        w = w * idf.to(w.device)[input_ids]
    return w / w.sum(-1, keepdim=True).clamp_min(1e-12)


__all__ = ["alignment_mask", "idf_table", "token_weights"]
