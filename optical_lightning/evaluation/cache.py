"""On-disk cache of document embeddings of a frozen encoder.

Encoding AfriQA's 5,254 passages takes minutes on two CPU cores, and every run and sweep job
would otherwise repeat it. Entries are keyed by the encoder's fingerprint (config + weights) and the
document file's hash, written to a temporary file and renamed into place: concurrent writers
(sweep jobs, DDP ranks) at worst compute the same entry twice, and a reader never sees a partial file.
An entry that is unreadable or of the wrong shape is recomputed and overwritten, with a warning; a
cache folder that cannot be written is warned about once, and the run goes on without caching.
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
        self.unwritable = False  # set after a failed write: warned once, then no more tries

    def path(self, key: dict) -> Path | None:
        if self.dir is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return self.dir / f"{digest}.safetensors"

    def get_or_compute(self, key: dict, compute: Callable[[], dict[str, Tensor]],
                       check: Callable[[dict[str, Tensor]], str | None] | None = None) -> dict[str, Tensor]:
        """The cached tensors of ``key``, else ``compute()``'s (then stored). ``check`` says what is wrong
        with a cached entry (None: nothing); such an entry is recomputed and overwritten, never trusted."""
        path = self.path(key)
        if path is not None and path.is_file():
            try:
                tensors = load_file(path)
            except Exception:  # a corrupt entry (e.g. disk full) is recomputed, never trusted
                log.warning("embedding cache entry %s is unreadable; recomputing it", path)
            else:
                if (problem := check(tensors) if check is not None else None) is None:
                    self.hits += 1
                    return tensors
                log.warning("embedding cache entry %s does not fit (%s); recomputing and overwriting it", path, problem)
        self.misses += 1
        tensors = compute()
        if path is not None and not self.unwritable:
            try:
                self._store(path, key, tensors)
            except OSError as e:  # read-only or full: the embeddings are right, only not kept
                self.unwritable = True
                log.warning("cannot write the embedding cache in %s (%s); going on without caching - choose a "
                            "writable paths.cache_dir (search: --cache-dir)", self.dir, e.strerror or e)
        return tensors

    def _store(self, path: Path, key: dict, tensors: dict[str, Tensor]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            public_mode(tmp)
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp,
                      metadata={"key": json.dumps(key, sort_keys=True)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


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

    def check(cached: dict[str, Tensor]) -> str | None:
        return _shape_problem(cached, len(texts), encoder.dim, with_tokens)

    cached = cache.get_or_compute(key, compute, check)
    return {"pooled": cached["pooled"], "maxsim": unpack(cached) if with_tokens else None}


def _shape_problem(cached: dict[str, Tensor], n: int, dim: int, with_tokens: bool) -> str | None:
    """What is wrong with a cached entry for ``n`` documents of ``dim`` dimensions (None: nothing)."""
    pooled = cached.get("pooled")
    if pooled is None or tuple(pooled.shape) != (n, dim):
        return f"pooled {None if pooled is None else tuple(pooled.shape)}, expected {(n, dim)}"
    if with_tokens:
        tokens, offsets = cached.get("tokens"), cached.get("offsets")
        if tokens is None or offsets is None or tokens.dim() != 2 or tokens.shape[1] != dim:
            return f"token matrix {None if tokens is None else tuple(tokens.shape)}, expected (T, {dim})"
        if tuple(offsets.shape) != (n + 1,) or int(offsets[0]) != 0 or int(offsets[-1]) != tokens.shape[0] \
                or bool((offsets[1:] < offsets[:-1]).any()):
            return f"token offsets {tuple(offsets.shape)} do not index {n} documents in {tokens.shape[0]} tokens"
    return None
