"""Lightning DataModule over general bitext, optionally mixed with domain-specific bitext.

Domain pairs come from ``domain_files`` (all rows, or only the rows whose ``source`` column is in
``domain_sources``, so one union file can feed both pools); they are removed from the general pool
and mixed in at ``domain_ratio`` by :class:`~optical_lightning.data.mixing.MixtureSampler`.
A few domain pairs are held out (``domain_val_size``) for an in-domain validation loss
(``val_domain/*``) next to the general one (``val/*``).

Batches are lists of :class:`BitextPair` turned into tensors by ``collate_fn``; the collator is
injected (it owns the teacher and student tokenizers, see :mod:`optical_lightning.data.collate`)
so this module knows nothing about models and can be reused for any encoder pair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from optical_lightning.data.bitext import (
    BitextPair,
    BitextStats,
    clean_pairs,
    normalize_text,
    read_bitext,
    split_pairs,
)
from optical_lightning.data.mixing import MixtureSampler, check_mixture
from optical_lightning.utils.errors import ConfigError, DataError, as_list, require_int
from optical_lightning.utils.languages import check_language

log = logging.getLogger(__name__)
# more pairs than this share with the same text on both sides: the target column is probably English
IDENTICAL_WARNING_SHARE = 0.1


class BitextDataModule(pl.LightningDataModule):
    """Reads, cleans and splits bitext; serves shuffled, dynamically padded batches.

    Args:
        train: one path or a list of paths (TSV or JSONL) of en-``lang`` bitext.
        lang: the non-English column, e.g. ``sw``.
        val_size: held-out share (float in [0, 1)) or count (int) for the validation loss.
        batch_size: pairs per batch (per device under DDP).
        max_pairs: keep at most this many general pairs after cleaning (seeded choice), ``None`` for all.
        domain_name: the domain's name, for messages.
        domain_languages: the languages the domain has bitext for (``None``: any); another ``lang`` is
            a one-line error naming the domains to use instead.
        domain_files: bitext files of the domain (empty: no domain).
        domain_sources: keep only these ``source`` values of ``domain_files`` (and drop them from
            the general pool); ``None`` takes every row.
        domain_ratio: expected share of domain pairs per epoch, in [0, 1].
        schedule: ``mixed`` (interleaved) or ``sequential`` (general first, then domain).
        epoch_size: samples per epoch over all ranks; ``None`` makes one epoch the whole step
            budget (``max_steps`` x global batch) when the trainer has one, else all pairs once.
            (General bitext alone goes through the same sampler with ratio 0: one code path for
            single runs, DDP shards and exact mid-epoch resume.)
        domain_val_size: held-out domain pairs (share or count) for ``val_domain/*``.
        bucket_batches: sort each window of this many steps by length (less padding, faster steps;
            see :mod:`optical_lightning.data.mixing`); 0 keeps batches random.
        teacher_cache: read the teacher's token clouds of the English side from an on-disk cache
            (:mod:`optical_lightning.data.teacher_cache`) instead of running the teacher each step.
        teacher_cache_dir: where that cache lives.
        student_cache: with ``student.trainable_layers=k``, compute the student's fixed lower layers once
            per sentence and run only its top ``k`` in each step
            (:mod:`optical_lightning.data.student_cache`).
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
        domain_name: str = "domain",
        domain_languages: Sequence[str] | None = None,
        domain_files: Sequence[str] = (),
        domain_sources: Sequence[str] | None = None,
        domain_ratio: float = 0.0,
        schedule: str = "mixed",
        epoch_size: int | None = None,
        domain_val_size: float | int = 0,
        bucket_batches: int = 0,
        teacher_cache: bool = False,
        teacher_cache_dir: str | None = None,
        student_cache: bool = False,
        collate_fn: Callable[[list[BitextPair]], Any] | None = None,
    ) -> None:
        super().__init__()
        require_int("data.batch_size", batch_size, minimum=1)
        require_int("data.num_workers", num_workers, minimum=0)
        require_int("data.min_chars", min_chars, minimum=0)
        require_int("data.max_chars", max_chars, minimum=1)
        require_int("data.max_pairs", max_pairs, minimum=2, allow_none=True)  # one for training, one held out
        require_int("domain.epoch_size", epoch_size, minimum=1, allow_none=True)
        check_split_size("data.val_size", val_size)
        check_split_size("domain.val_size", domain_val_size)
        if min_chars > max_chars:
            raise ConfigError(f"data.min_chars={min_chars} > data.max_chars={max_chars}: no pair can pass")
        self.paths = [Path(p) for p in as_list(train)]  # one path or several
        if not self.paths:
            raise ConfigError("data.train is empty: give at least one bitext file (data.train=PATH)")
        self.lang = check_language(lang)
        domain_languages = as_list(domain_languages)
        if domain_languages and self.lang not in domain_languages:
            raise ConfigError(f"domain={domain_name} has bitext for {', '.join(domain_languages)} only, not "
                              f"lang={self.lang}; use domain=general, medical or software")
        self.val_size, self.batch_size, self.num_workers = val_size, batch_size, num_workers
        self.min_chars, self.max_chars, self.dedup = min_chars, max_chars, dedup
        self.max_pairs, self.seed = max_pairs, seed
        self.domain_paths = [Path(p) for p in as_list(domain_files)]
        self.domain_sources = set(domain_sources) if domain_sources else None
        check_mixture(domain_ratio, schedule, n_domain=1 if self.domain_paths else 0)
        self.domain_ratio, self.schedule, self.epoch_size = float(domain_ratio), schedule, epoch_size
        self.domain_val_size = domain_val_size
        require_int("data.bucket_batches", bucket_batches, minimum=0)
        self.bucket_batches = bucket_batches
        self.teacher_cache, self.teacher_cache_dir = teacher_cache, teacher_cache_dir
        self.student_cache = bool(student_cache)
        self.collate_fn = collate_fn
        self.train_pairs: list[BitextPair] | None = None
        self.val_pairs: list[BitextPair] = []
        self.domain_pairs: list[BitextPair] = []
        self.domain_val_pairs: list[BitextPair] = []
        self.stats = BitextStats()
        self.domain_stats = BitextStats()
        self._resume = (0, 0)  # (epoch, batches already served in it), restored from a checkpoint

    def setup(self, stage: str | None = None) -> None:
        if self.train_pairs is not None:  # already read (the pipeline reads early to fail fast)
            return
        domain = self._read_domain()
        taken = {(normalize_text(p.en), normalize_text(p.tgt)) for p in domain}
        rows = [pair for path in self.paths for pair in read_bitext(path, self.lang)
                if not self._is_domain_source(pair) and (normalize_text(pair.en), normalize_text(pair.tgt)) not in taken]
        pairs = clean_pairs(rows, min_chars=self.min_chars, max_chars=self.max_chars, dedup=self.dedup, stats=self.stats)
        if not pairs:
            s = self.stats
            fix = ("relax data.min_chars/data.max_chars" if s.too_short or s.too_long else
                   "every row is empty or a duplicate: check the file" if s.read else
                   "every row belongs to the domain (domain.files/domain.sources): give general bitext")
            raise DataError(
                f"no training pairs left in {', '.join(map(str, self.paths))} after filtering "
                f"({s.read} read: {s.empty} empty, {s.duplicates} duplicate, {s.too_short} too short, "
                f"{s.too_long} too long); {fix}"
            )
        _warn_identical(self.stats, self.paths, self.lang)
        if self.max_pairs is not None and len(pairs) > self.max_pairs:
            pairs, _ = split_pairs(pairs, len(pairs) - self.max_pairs, self.seed)
        self.train_pairs, self.val_pairs = split_pairs(pairs, _held_out(self.val_size, len(pairs), "data.val_size"),
                                                       self.seed)
        if domain:
            self.domain_pairs, self.domain_val_pairs = split_pairs(
                domain, _held_out(self.domain_val_size, len(domain), "domain.val_size"), self.seed)
        pool = len(self.train_pairs) + len(self.domain_pairs)
        if self.batch_size > pool:  # every batch would repeat pairs, and a huge one only runs out of memory
            raise ConfigError(f"data.batch_size={self.batch_size} is larger than the training set ({pool} pairs after "
                              f"holding out {len(self.val_pairs)} for validation): use data.batch_size <= {pool}")

    def _is_domain_source(self, pair: BitextPair) -> bool:
        # `make data` files tag rows "<file>:<source>"; user files are tagged with their file name.
        return self.domain_sources is not None and pair.source.rsplit(":", 1)[-1] in self.domain_sources

    def _read_domain(self) -> list[BitextPair]:
        if not self.domain_paths:
            return []
        rows = [pair for path in self.domain_paths for pair in read_bitext(path, self.lang)
                if self.domain_sources is None or self._is_domain_source(pair)]
        pairs = clean_pairs(rows, min_chars=self.min_chars, max_chars=self.max_chars, dedup=self.dedup,
                            stats=self.domain_stats)
        if not pairs and self.domain_ratio > 0:
            wanted = f" with source in {sorted(self.domain_sources)}" if self.domain_sources else ""
            raise DataError(f"no domain pairs{wanted} in {', '.join(map(str, self.domain_paths))}: check "
                            f"domain.files/domain.sources, or run `make data`")
        return pairs

    def resolved_epoch_size(self) -> int:
        """Samples per epoch over all ranks (see ``epoch_size``)."""
        if self.epoch_size is not None:
            return self.epoch_size
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps * self.batch_size * trainer.world_size * trainer.accumulate_grad_batches
        return len(self.train_pairs) + len(self.domain_pairs)

    def train_sampler(self, num_replicas: int = 1, rank: int = 0) -> MixtureSampler:
        """The epoch order (general bitext only when ``domain_ratio`` is 0), resumable mid-epoch."""
        self.setup()
        epoch, batches = self._resume
        lengths = [max(len(p.en), len(p.tgt)) for p in self.train_pairs + self.domain_pairs] \
            if self.bucket_batches else None
        return MixtureSampler(len(self.train_pairs), len(self.domain_pairs), self.domain_ratio,
                              self.resolved_epoch_size(), self.schedule, self.seed, num_replicas, rank,
                              skip=batches * self.batch_size, epoch=epoch, lengths=lengths,
                              batch_size=self.batch_size, bucket_batches=self.bucket_batches)

    def planned_pairs(self) -> list[BitextPair]:
        """Every training pair the run's step budget will visit (for precomputing teacher outputs)."""
        trainer = self.trainer
        per_epoch = -(-self.resolved_epoch_size() // self.batch_size)
        steps = trainer.max_steps * trainer.accumulate_grad_batches if trainer.max_steps and trainer.max_steps > 0 \
            else per_epoch * (trainer.max_epochs or 1)
        epochs = -(-steps // per_epoch)
        pool = self.train_pairs + self.domain_pairs
        sampler = self.train_sampler()
        seen: set[int] = set()
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            seen.update(sampler.visited().tolist())
            if len(seen) == len(pool):  # every pair already: later epochs add none
                break
        return [pool[i] for i in sorted(seen)] + self.val_pairs + self.domain_val_pairs

    # ------------------------------------------------------------------ exact resume (saved in checkpoints)
    def state_dict(self) -> dict[str, int]:
        """Where training stands in the epoch's order; Lightning stores it in every checkpoint.

        Every epoch serves the same number of batches, so the batches done in the current epoch
        follow from the optimizer steps taken (the DataLoader itself keeps no state).
        """
        trainer = self.trainer
        per_rank = -(-self.resolved_epoch_size() // trainer.world_size)
        per_epoch = -(-per_rank // self.batch_size)
        done = trainer.global_step * trainer.accumulate_grad_batches
        epoch = min(trainer.current_epoch, done // per_epoch)
        return {"epoch": epoch, "batches": done - epoch * per_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches"]))

    def _loader(self, pairs: list[BitextPair], shuffle: bool, sampler: MixtureSampler | None = None) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            pairs,  # a list is a map-style dataset
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn or list,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return self._loader(self.train_pairs + self.domain_pairs, shuffle=True, sampler=self.train_sampler(world, rank))

    def val_dataloader(self) -> list[DataLoader]:
        """General held-out pairs first, then the domain's (``val/*`` and ``val_domain/*``)."""
        self.setup()
        return [self._loader(pairs, shuffle=False) for _, pairs in self._val_sets()]

    @property
    def val_prefixes(self) -> list[str]:
        """Metric prefix of each validation loader, in order."""
        return [name for name, _ in self._val_sets()]

    def _val_sets(self) -> list[tuple[str, list[BitextPair]]]:
        return [(n, p) for n, p in (("val", self.val_pairs), ("val_domain", self.domain_val_pairs)) if p]

    def summary(self) -> dict:
        """Counts for ``results.json``: what was read, kept, held out and mixed."""
        return self.stats.as_dict() | {
            "train_pairs": len(self.train_pairs), "val_pairs": len(self.val_pairs),
            "domain": self.domain_stats.as_dict() | {"train_pairs": len(self.domain_pairs),
                                                     "val_pairs": len(self.domain_val_pairs),
                                                     "ratio": self.domain_ratio, "schedule": self.schedule},
        }


def check_split_size(key: str, size: object) -> None:
    """A held-out size is a count (int >= 0) or a share (float in [0, 1))."""
    if isinstance(size, float) and 0.0 <= size < 1.0:
        return
    if isinstance(size, float):
        raise ConfigError(f"{key}={size}: a share must lie in [0, 1) (or give a count of pairs)")
    require_int(key, size, minimum=0)


def _held_out(size: float | int, n: int, key: str) -> float | int:
    """A held-out count that leaves at least half of the ``n`` pairs for training (with a warning when
    it had to be cut: 256 held out of 200 pairs would train on one)."""
    if isinstance(size, float) or size <= n // 2:
        return size
    log.warning("%s=%d of only %d pairs: holding out %d (half) instead", key, size, n, n // 2)
    return n // 2


def _warn_identical(stats: BitextStats, paths: Sequence[Path], lang: str) -> None:
    if stats.identical > IDENTICAL_WARNING_SHARE * max(1, stats.kept):
        log.warning("%d of %d pairs in %s have the same text in en and %s (untranslated rows, or a %s column that "
                    "holds English?)", stats.identical, stats.kept, ", ".join(map(str, paths)), lang, lang)
