"""On-disk cache of document embeddings of a frozen encoder.

Encoding AfriQA's 5,254 passages takes minutes on two CPU cores, and every run and sweep job
would otherwise repeat it. Entries are keyed by the encoder's fingerprint (config + weights) and the
document file's hash, written to a temporary file and renamed into place: concurrent writers
(sweep jobs, DDP ranks) at worst compute the same entry twice, and a reader never sees a partial file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

if TYPE_CHECKING:
    from optical_lightning.models.encoder import Encoder
from optical_lightning.evaluation.distributed import encode_shared
from optical_lightning.utils.atomic import public_mode
from optical_lightning.utils.precision import inference_dtype

log = logging.getLogger(__name__)


class EmbeddingCache:
    def __init__(self, cache_dir: str | os.PathLike | None) -> None:
        self.dir = Path(cache_dir) if cache_dir else None
        self.hits = self.misses = 0  # whether a run found its embeddings cached (warm) or computed them (cold)

    def path(self, key: dict) -> Path | None:
        if self.dir is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return self.dir / f"{digest}.safetensors"

    def get_or_compute(self, key: dict, compute: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        path = self.path(key)
        if path is not None and path.is_file():
            try:
                tensors = load_file(path)
                self.hits += 1
                return tensors
            except Exception:  # a corrupt entry (e.g. disk full) is recomputed, never trusted
                log.warning("embedding cache entry %s is unreadable; recomputing it", path)
        self.misses += 1
        tensors = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            os.close(fd)
            public_mode(tmp)
            try:
                save_file({k: v.contiguous() for k, v in tensors.items()}, tmp,
                          metadata={"key": json.dumps(key, sort_keys=True)})
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return tensors


def pack(token_list: list[Tensor]) -> dict[str, Tensor]:
    """Variable-length token matrices as one (T, D) float16 tensor plus offsets (N + 1)."""
    lengths = torch.tensor([len(t) for t in token_list], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    return {"tokens": torch.cat(token_list).half(), "offsets": offsets}


def unpack(packed: dict[str, Tensor]) -> list[Tensor]:
    tokens, offsets = packed["tokens"].float(), packed["offsets"].tolist()
    return [tokens[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def document_embeddings(encoder: Encoder, texts: list[str], docs_key: str, cache: EmbeddingCache,
                        with_tokens: bool, batch_size: int = 64,
                        precision: str = "32") -> dict[str, Tensor | list[Tensor] | None]:
    """``{"pooled": (N, D), "maxsim": [(L_i, D)] or None}`` for a collection, cached per encoder and file.

    Token matrices are large, so they are computed and stored only when max-sim scoring needs them.
    """
    dtype = inference_dtype(precision, next(encoder.parameters()).device.type)
    key = {"encoder": encoder.fingerprint(), "docs": docs_key, "n": len(texts), "tokens": with_tokens,
           "dtype": str(dtype or torch.float32)}

    def compute() -> dict[str, Tensor]:
        out = encode_shared(encoder, texts, "passage", batch_size, tokens=with_tokens, progress=len(texts) > 500,
                             precision=precision)
        return {"pooled": out[0], **pack(out[1])} if with_tokens else {"pooled": out}

    cached = cache.get_or_compute(key, compute)
    return {"pooled": cached["pooled"], "maxsim": unpack(cached) if with_tokens else None}
