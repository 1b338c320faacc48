"""Lightning DataModule over one or more bitext files.

Batches are lists of :class:`BitextPair` turned into tensors by ``collate_fn``; the collator is
injected (it owns the teacher and student tokenizers, see :mod:`optical_lightning.models.collate`)
so this module knows nothing about models and can be reused for any encoder pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from optical_lightning.data.bitext import BitextPair, BitextStats, clean_pairs, read_bitext, split_pairs
from optical_lightning.errors import ConfigError, DataError
from optical_lightning.languages import check_language


class BitextDataModule(pl.LightningDataModule):
    """Reads, cleans and splits bitext; serves shuffled, dynamically padded batches.

    Args:
        train: one path or a list of paths (TSV or JSONL) of en-``lang`` bitext.
        lang: the non-English column, e.g. ``sw``.
        val_size: held-out share (float in [0, 1)) or count (int) for the validation loss.
        batch_size: pairs per batch (per device under DDP).
        max_pairs: keep at most this many pairs after cleaning (seeded choice), ``None`` for all.
        collate_fn: turns a list of pairs into model inputs; set by the training pipeline.
    """

    def __init__(
        self,
        train: str | Sequence[str],
        lang: str,
        val_size: float | int = 0.05,
        batch_size: int = 32,
        num_workers: int = 0,
        min_chars: int = 1,
        max_chars: int = 1000,
        dedup: bool = True,
        max_pairs: int | None = None,
        seed: int = 42,
        collate_fn: Callable[[list[BitextPair]], Any] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size}: must be a positive integer")
        if min_chars > max_chars:
            raise ConfigError(f"data.min_chars={min_chars} > data.max_chars={max_chars}: no pair can pass")
        self.paths = [Path(p) for p in ([train] if isinstance(train, (str, Path)) else train)]
        if not self.paths:
            raise ConfigError("data.train is empty: give at least one bitext file (data.train=PATH)")
        self.lang = check_language(lang)
        self.val_size, self.batch_size, self.num_workers = val_size, batch_size, num_workers
        self.min_chars, self.max_chars, self.dedup = min_chars, max_chars, dedup
        self.max_pairs, self.seed = max_pairs, seed
        self.collate_fn = collate_fn
        self.train_pairs: list[BitextPair] | None = None
        self.val_pairs: list[BitextPair] = []
        self.stats = BitextStats()

    def setup(self, stage: str | None = None) -> None:
        if self.train_pairs is not None:  # already read (the pipeline reads early to fail fast)
            return
        rows = [pair for path in self.paths for pair in read_bitext(path, self.lang)]
        pairs = clean_pairs(rows, min_chars=self.min_chars, max_chars=self.max_chars, dedup=self.dedup, stats=self.stats)
        if not pairs:
            s = self.stats
            raise DataError(
                f"no training pairs left in {', '.join(map(str, self.paths))} after filtering "
                f"({s.read} read: {s.empty} empty, {s.duplicates} duplicate, {s.too_short} too short, "
                f"{s.too_long} too long); check the file or relax data.min_chars/data.max_chars"
            )
        if self.max_pairs is not None and len(pairs) > self.max_pairs:
            pairs, _ = split_pairs(pairs, len(pairs) - self.max_pairs, self.seed)
        self.train_pairs, self.val_pairs = split_pairs(pairs, self.val_size, self.seed)

    def _loader(self, pairs: list[BitextPair], shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            pairs,  # a list is a map-style dataset
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn or list,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_pairs, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader(self.val_pairs, shuffle=False) if self.val_pairs else []
