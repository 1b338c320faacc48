"""How the OT head's time and memory grow with cloud size N = M and batch size B.

Each case times the head's forward and backward (the step's share of the loss) on L2-normalised
random clouds; the solver runs a fixed number of Sinkhorn updates (epsilon-scaling plus
refinement), so its cost depends on the shapes, not the values. Growth exponents are least-squares
slopes in log-log space over the upper half of each sweep, where the O(B N M) work dominates the
fixed per-call overhead. Memory is the peak held by tensors the call allocates: it should be a
small multiple of one (B, N, M) float32 plan, far below a (B, N, M, D) tensor, which the head must
never build.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from optical_lightning.losses.ot import OTDistillationHead
from optical_lightning_study.bench.measure import growth_exponent, peak_memory_mb, time_call


def ot_case(head: OTDistillationHead, batch: int, tokens: int, dim: int, repeats: int,
            device: torch.device) -> dict[str, Any]:
    g = torch.Generator().manual_seed(batch * 1000 + tokens)
    x = F.normalize(torch.randn(batch, tokens, dim, generator=g), dim=-1).to(device)
    y = F.normalize(torch.randn(batch, tokens, dim, generator=g), dim=-1).to(device).requires_grad_()
    weights = torch.ones(batch, tokens, device=device)

    def forward_backward() -> None:
        head(x, weights, y, weights).loss.backward()
        y.grad = None

    timing = time_call(forward_backward, warmup=1, repeats=repeats, device=device)
    peak = peak_memory_mb(forward_backward, device)
    plan_mb = batch * tokens * tokens * 4 / 2**20
    return {"batch": batch, "tokens": tokens, "time_ms": 1000 * timing["median_s"], "peak_mb": peak,
            "plan_mb": plan_mb, "peak_over_plan": peak / plan_mb, "peak_over_bnmd": peak / (plan_mb * dim)}


def _upper_half_exponent(rows: list[dict], key: str, field: str) -> float:
    upper = rows[(len(rows) - 1) // 2:]  # 6 sizes: the largest 4; 5 batches: the largest 3
    return growth_exponent([r[key] for r in upper], [r[field] for r in upper])


def bench_ot_scaling(head: OTDistillationHead, sizes: list[int], size_batch: int, batches: list[int],
                     batch_tokens: int, dim: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Sweep N = M over ``sizes`` at B = ``size_batch``, and B over ``batches`` at N = M = ``batch_tokens``."""
    by_tokens = [ot_case(head, size_batch, n, dim, repeats, device) for n in sizes]
    by_batch = [ot_case(head, b, batch_tokens, dim, repeats, device) for b in batches]
    return {
        "dim": dim,
        "by_tokens": by_tokens,
        "by_batch": by_batch,
        "exponents": {
            "time_vs_tokens": _upper_half_exponent(by_tokens, "tokens", "time_ms"),
            "memory_vs_tokens": _upper_half_exponent(by_tokens, "tokens", "peak_mb"),
            "time_vs_batch": _upper_half_exponent(by_batch, "batch", "time_ms"),
            "memory_vs_batch": _upper_half_exponent(by_batch, "batch", "peak_mb"),
        },
        # O(BNM): at the largest clouds the peak is a bounded number of plans, never a (B,N,M,D) tensor
        "largest_peak_over_plan": by_tokens[-1]["peak_over_plan"] if by_tokens else None,
        "max_peak_over_bnmd": max((r["peak_over_bnmd"] for r in by_tokens + by_batch), default=None),
    }
