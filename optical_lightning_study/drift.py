"""What training moves: the relative change of each block of a student's weights (experiments/DIAGNOSIS.md).

For a parameter group G with start weights W0 and trained weights W the drift is
``||W - W0||_F / ||W0||_F`` over all tensors of G. Groups: the token embeddings, the embedding
LayerNorm, per transformer layer its attention and feed-forward blocks and its LayerNorms, and the projection into
the teacher's space (which starts as the identity, so its drift is its distance from it).
Mean pooling and L2 normalisation have no weights: they cannot drift.
"""

from __future__ import annotations

import re
from collections import defaultdict

import torch

from optical_lightning.models.encoder import Encoder

_LAYER = re.compile(r"\.layer\.(\d+)\.(attention|intermediate|output)\.")


def group_of(name: str) -> str:
    """The block a parameter name belongs to (BERT/XLM-R naming)."""
    if name.startswith("projection."):
        return "projection"
    if match := _LAYER.search(name):
        # LayerNorm gains and biases apart: the last one sets every output token, so it can shift them all at once
        block = "layernorm" if "LayerNorm" in name else "attention" if match.group(2) == "attention" else "ffn"
        return f"layer{int(match.group(1)):02d}.{block}"
    if "embeddings.word_embeddings" in name:
        return "embeddings.tokens"
    if "embeddings" in name:
        return "embeddings.other"
    if "pooler" in name:
        return "pooler (unused)"
    return "other"


@torch.no_grad()
def weight_drift(start: Encoder, trained: Encoder) -> dict[str, dict[str, float]]:
    """Group -> {drift, delta_norm, start_norm, params}, in the order of the network."""
    before = dict(start.named_parameters())
    delta2: dict[str, float] = defaultdict(float)
    norm2: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for name, w in trained.named_parameters():
        if name not in before:
            raise ValueError(f"{name}: not a parameter of the start model (a different architecture?)")
        w0 = before[name].float()
        g = group_of(name)
        delta2[g] += float((w.float() - w0).pow(2).sum())
        norm2[g] += float(w0.pow(2).sum())
        count[g] += w.numel()
    return {g: {"drift": (delta2[g] / norm2[g]) ** 0.5 if norm2[g] else float("nan"), "delta_norm": delta2[g] ** 0.5,
                "start_norm": norm2[g] ** 0.5, "params": count[g]} for g in sorted(count)}
