"""The evaluation-throughput benchmark: our evaluator's encoding vs a bare transformers forward.

Both sides get the same texts (with the role's prefix), batch size, truncation length, precision
and inference mode; the bare loop takes the texts in the order given and returns the backbone's
hidden states, as a hand-written evaluation script would. The evaluator (``Encoder.encode``)
also pools, projects, normalises and copies to the CPU, and batches by length to cut padding.
"""

from __future__ import annotations

from typing import Any

import torch

from optical_lightning.models.encoder import Encoder, Role
from optical_lightning.utils.precision import autocast
from optical_lightning_study.bench.measure import time_call


def raw_forward(encoder: Encoder, texts: list[str], role: Role, batch_size: int, precision: str) -> None:
    """Tokenise and run the bare backbone over ``texts`` in input order."""
    device = next(encoder.parameters()).device
    prefix, max_length = encoder.prefixes[role], encoder.max_lengths[role]
    with torch.inference_mode(), autocast(precision, device.type):
        for start in range(0, len(texts), batch_size):
            enc = encoder.tokenizer([prefix + t for t in texts[start:start + batch_size]], padding=True,
                                    truncation=True, max_length=max_length, return_tensors="pt").to(device)
            encoder.backbone(**enc).last_hidden_state.cpu()


def bench_encoding(encoder: Encoder, texts: list[str], role: Role, batch_size: int, precision: str,
                   repeats: int) -> dict[str, Any]:
    """Texts per second through the evaluator and through the bare forward, and their ratio."""
    device = next(encoder.parameters()).device
    warm = texts[:batch_size]  # first calls pay one-off costs (kernel selection, allocator growth)
    encoder.encode(warm, role, batch_size, precision=precision)
    raw_forward(encoder, warm, role, batch_size, precision)
    ours = time_call(lambda: encoder.encode(texts, role, batch_size, precision=precision), 0, repeats, device)
    raw = time_call(lambda: raw_forward(encoder, texts, role, batch_size, precision), 0, repeats, device)
    ours_rate, raw_rate = len(texts) / ours["median_s"], len(texts) / raw["median_s"]
    return {"texts": len(texts), "role": role, "batch_size": batch_size, "precision": precision,
            "ours_per_s": ours_rate, "raw_per_s": raw_rate, "ratio": ours_rate / raw_rate}
