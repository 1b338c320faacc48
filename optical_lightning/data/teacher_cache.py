"""On-disk cache of the frozen teacher's token embeddings of English training sentences.

The teacher never changes during distillation, so its forward pass over a sentence gives the same
token cloud in every step, run and sweep job. With ``data.teacher_cache=true`` a run first looks up
the English sentences its sampler will visit, encodes only the missing ones (length-sorted batches,
inference mode) and appends them to the cache as a new shard; training then reads the clouds
instead of running the teacher.

Layout: ``<cache_dir>/<teacher fingerprint>-<precision>/shard-*.safetensors``. A shard is immutable
and holds, packed, each sentence's full token sequence (``tokens`` (T, D), ``content`` and
``input_ids`` (T,)), its pooled vector and, in the file's metadata, the sentences' hashes. New
shards are written to a temporary name and renamed into place, so concurrent writers (sweep jobs,
DDP ranks) never clash and a reader never sees a partial shard; at worst two jobs encode the same
sentence once each.

The same cache holds the base model's states of the *target-language* sentences when a loss term reads them
(losses/base_plan.py): the teacher is the student's model with its adapters off, so, reading the student's text
as the student does (``training.module.reads_like_its_teacher``), it gives exactly those states.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from optical_lightning.utils.atomic import public_mode
from optical_lightning.utils.precision import autocast, inference_dtype

if TYPE_CHECKING:
    from optical_lightning.models.encoder import Encoder

log = logging.getLogger(__name__)


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


class TeacherTokenCache:
    def __init__(self, cache_dir: str | os.PathLike, teacher: Encoder, role: str = "query", precision: str = "32",
                 batch_size: int = 64) -> None:
        dtype = inference_dtype(precision, next(teacher.parameters()).device.type)
        self.dir = Path(cache_dir) / f"{teacher.fingerprint()}-{role}-{str(dtype or torch.float32).split('.')[-1]}"
        self.teacher, self.role, self.precision, self.batch_size = teacher, role, precision, batch_size
        self.entries: dict[str, tuple[Tensor, Tensor, Tensor, Tensor]] = {}  # key -> tokens, content, ids, pooled

    # ------------------------------------------------------------------ building
    def _shard_keys(self) -> dict[Path, list[str]]:
        shards = {}
        for path in sorted(self.dir.glob("shard-*.safetensors")):
            try:
                with safe_open(str(path), framework="pt") as f:
                    shards[path] = json.loads(f.metadata()["keys"])
            except Exception:  # unreadable shard: ignore it, its sentences are encoded again
                log.warning("teacher cache shard %s is unreadable; ignoring it", path)
        return shards

    def prepare(self, texts: Iterable[str]) -> dict[str, int]:
        """Make every text available in memory, encoding (and storing) the ones not cached yet."""
        wanted = {text_key(t): t for t in texts}
        found = 0
        for path, keys in self._shard_keys().items():
            hits = [i for i, k in enumerate(keys) if k in wanted and k not in self.entries]
            if not hits:
                continue
            packed = load_file(path)
            offsets = packed["offsets"].tolist()
            for i in hits:
                a, b = offsets[i], offsets[i + 1]
                self.entries[keys[i]] = (packed["tokens"][a:b], packed["content"][a:b].bool(),
                                         packed["input_ids"][a:b], packed["pooled"][i])
                found += 1
        missing = [t for k, t in wanted.items() if k not in self.entries]
        if missing:
            self._encode_and_store(missing)
        return {"cached": found, "encoded": len(missing)}

    @torch.inference_mode()
    def _encode_and_store(self, texts: list[str]) -> None:
        teacher, device = self.teacher, next(self.teacher.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        keys, tokens, content, ids, pooled = [], [], [], [], []
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = {k: v.to(device) for k, v in teacher.tokenize([texts[i] for i in idx], self.role).items()}
            with autocast(self.precision, device.type):
                out = teacher(batch)
            for row, i in enumerate(idx):
                real = batch["attention_mask"][row].bool()
                keys.append(text_key(texts[i]))
                tokens.append(out.tokens[row][real].cpu())
                content.append(out.content_mask[row][real].cpu())
                ids.append(batch["input_ids"][row][real].cpu())
                pooled.append(out.pooled[row].cpu())
        for k, t, c, i, p in zip(keys, tokens, content, ids, pooled):
            self.entries[k] = (t, c, i, p)
        lengths = torch.tensor([len(t) for t in tokens])
        packed = {"tokens": torch.cat(tokens).contiguous(), "content": torch.cat(content).to(torch.uint8),
                  "input_ids": torch.cat(ids).to(torch.int64), "pooled": torch.stack(pooled).contiguous(),
                  "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])}
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".shard-", suffix=".tmp", dir=self.dir)
        os.close(fd)
        public_mode(tmp)
        try:
            save_file(packed, tmp, metadata={"keys": json.dumps(keys)})
            os.replace(tmp, self.dir / f"shard-{uuid.uuid4().hex[:12]}.safetensors")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # ------------------------------------------------------------------ serving
    def batch(self, texts: list[str]) -> dict[str, Tensor]:
        """The teacher's outputs for ``texts`` as a padded batch: what ``teacher(tokenize(texts))``
        returns, plus ``input_ids`` (the idf marginals need them)."""
        rows = [self.entries[text_key(t)] for t in texts]
        tokens = pad_sequence([r[0] for r in rows], batch_first=True)
        lengths = torch.tensor([len(r[0]) for r in rows])
        attention = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
        return {"tokens": tokens, "attention_mask": attention.long(),
                "content_mask": pad_sequence([r[1] for r in rows], batch_first=True),
                "input_ids": pad_sequence([r[2] for r in rows], batch_first=True,
                                          padding_value=self.teacher.tokenizer.pad_token_id or 0),
                "pooled": torch.stack([r[3] for r in rows])}
