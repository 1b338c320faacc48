"""Encoding shared by the ranks of a DDP job: each rank encodes every ``world``-th text and the
pieces are gathered, so evaluation after training costs 1/world per process and every rank ends
with the same embeddings. Without an initialised process group it is a plain ``encode``."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def encode_shared(encoder: Any, texts: list[str], role: str = "query", batch_size: int = 64, tokens: bool = False,
                  progress: bool = False, precision: str = "32") -> Tensor | tuple[Tensor, list[Tensor]]:
    """``encoder.encode`` over all ranks (same arguments, same result on every rank)."""
    rank, world = rank_and_world()
    if world == 1:
        return encoder.encode(texts, role, batch_size, tokens=tokens, progress=progress, precision=precision)
    mine = list(range(rank, len(texts), world))
    out = encoder.encode([texts[i] for i in mine], role, batch_size, tokens=tokens, progress=progress and rank == 0,
                         precision=precision)
    pieces: list[Any] = [None] * world
    dist.all_gather_object(pieces, (mine, out))
    pooled: Tensor | None = None
    token_list: list[Tensor] = [torch.empty(0)] * len(texts)
    for indices, part in pieces:
        part_pooled, part_tokens = part if tokens else (part, None)
        if pooled is None:
            pooled = torch.empty(len(texts), part_pooled.shape[1], dtype=part_pooled.dtype)
        pooled[indices] = part_pooled
        if part_tokens is not None:
            for i, t in zip(indices, part_tokens):
                token_list[i] = t
    return (pooled, token_list) if tokens else pooled
