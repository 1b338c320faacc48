"""In-memory cache of the student's frozen lower layers, per training sentence.

With ``student.trainable_layers=k`` the embeddings and every layer below the top ``k`` are fixed
(and run without dropout), so their output for a sentence is the same in every step. With
``data.student_cache=true`` the run computes it once per sentence the sampler will visit, and each
training step runs only the top ``k`` layers on it: the step saves the lower layers' forward pass,
the way the teacher cache saves the teacher's. Held only in memory - about
``tokens x hidden x 4`` bytes a sentence (40 tokens, 384 dims: 60 kB) - since it belongs to one
student's starting weights. A sentence not prepared (e.g. a validation pair) is encoded on first use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from optical_lightning.data.teacher_cache import text_key
from optical_lightning.utils.errors import ConfigError

if TYPE_CHECKING:
    from optical_lightning.models.encoder import Encoder


class FrozenLayersCache:
    """Maps a sentence to its hidden states (T, H) after the student's fixed lower layers."""

    def __init__(self, student: Encoder, role: str = "query", batch_size: int = 64) -> None:
        if student.frozen_below is None:
            raise ConfigError("data.student_cache=true needs fixed lower layers: set student.trainable_layers=K "
                              "(e.g. 2), or data.student_cache=false")
        self.student, self.role, self.batch_size = student, role, batch_size
        self.entries: dict[str, Tensor] = {}

    def prepare(self, texts: Iterable[str]) -> dict[str, int]:
        """Encode every text not cached yet (length-sorted batches)."""
        wanted = {text_key(t): t for t in texts}
        missing = [t for k, t in wanted.items() if k not in self.entries]
        order = sorted(missing, key=len, reverse=True)
        for start in range(0, len(order), self.batch_size):
            self._encode(order[start:start + self.batch_size])
        return {"cached": len(wanted) - len(missing), "encoded": len(missing)}

    def _encode(self, texts: list[str]) -> None:
        device = next(self.student.parameters()).device
        batch = {k: v.to(device) for k, v in self.student.tokenize(texts, self.role).items()}
        hidden = self.student.lower_hidden(batch).float().cpu()
        lengths = batch["attention_mask"].sum(1).tolist()
        for text, h, n in zip(texts, hidden, lengths):
            self.entries[text_key(text)] = h[:n].clone()

    def batch(self, texts: list[str], attention_mask: Tensor) -> Tensor:
        """The cached states of ``texts``, zero-padded to ``attention_mask``'s (B, L) layout."""
        missing = [t for t in dict.fromkeys(texts) if text_key(t) not in self.entries]
        if missing:
            self._encode(missing)
        rows = [self.entries[text_key(t)] for t in texts]
        out = torch.zeros(len(texts), attention_mask.shape[1], rows[0].shape[-1])
        for i, (row, n) in enumerate(zip(rows, attention_mask.sum(1).tolist())):
            if row.shape[0] != n:  # the same tokenizer and truncation give the same length, always
                raise RuntimeError(f"student cache: {row.shape[0]} cached tokens but {n} in the batch for {texts[i]!r}")
            out[i, :n] = row
        return out
