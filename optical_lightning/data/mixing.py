"""Mixing domain-specific bitext into general bitext at a chosen ratio.

The training set is the concatenation ``[general pairs..., domain pairs...]``; a
:class:`MixtureSampler` decides which indices one epoch visits:

* ``round(ratio * epoch_size)`` domain indices and the rest general ones, so the domain share of
  an epoch is ``ratio`` up to rounding (ratio 0 and 1 are exact);
* each pool is drawn by cycling through fresh random permutations: without replacement while the
  epoch needs fewer pairs than the pool holds, and evenly repeated (every pair ``floor`` or
  ``ceil`` times) when a small domain set must fill a large share - lower variance than i.i.d.
  sampling with replacement;
* ``schedule="mixed"`` shuffles both kinds together; ``"sequential"`` serves all general pairs
  first and the domain pairs last (continued distillation on the domain).

With ``bucket_batches = k > 0`` the order is then cut into windows of ``k`` optimizer steps; within a
window the pairs are sorted by length, cut into steps, and the steps shuffled. A batch then holds
sentences of similar length, so dynamic padding pads little: 32 random training pairs pad to 86
tokens on average at ``max_length`` 128, while their median is 27. Which pairs an epoch visits, and
the domain share of every window, do not change; the order within a window does.

Every rank draws the same global order from ``seed + epoch`` and keeps every ``num_replicas``-th
index from ``rank`` on, so under DDP the ranks see disjoint shards of one mixture. The sampler
subclasses :class:`~torch.utils.data.DistributedSampler` so that Lightning neither replaces it
nor forgets to call :meth:`set_epoch`. Because the order is a pure function of (seed, epoch), a run
resumed mid-epoch continues exactly where it stopped: ``skip`` drops the samples already served.

An epoch is made lazily, in blocks of :data:`BLOCK` samples, so its size costs no memory: with the
default ``epoch_size`` (the whole step budget) a large ``trainer.max_steps`` once built the whole index
list before the first batch (5.2 GB of it in one probe; 32e9 indices for 10**9 steps). An epoch of
at most one block (every run of the study: at most 1,000 steps of 32) is drawn exactly as above, so
earlier runs repeat. A longer one draws each
block on its own: its domain share is exact up to rounding at every block boundary, each pool is a
stream of fresh permutations (every pair still ``floor`` or ``ceil`` times), and the general and domain
draws are shuffled, and length-bucketed, within the block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

from optical_lightning.utils.errors import ConfigError

SCHEDULES = ("mixed", "sequential")
BLOCK = 1 << 20  # samples drawn at once (8 MiB of indices); a longer epoch is drawn block by block


def check_mixture(ratio: float, schedule: str, n_domain: int) -> None:
    """Raise a one-line :class:`ConfigError` for an impossible mixture."""
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"domain.ratio={ratio}: must be in [0, 1] (the expected share of domain pairs)")
    if schedule not in SCHEDULES:
        raise ConfigError(f"domain.schedule={schedule!r}: choose from {list(SCHEDULES)}")
    if ratio > 0 and n_domain == 0:
        raise ConfigError(f"domain.ratio={ratio} but the domain has no pairs: give domain.files, or set domain.ratio=0")


def _cycled_draw(pool: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` indices in ``[0, pool)``: concatenated random permutations, cut to length."""
    if count == 0:
        return torch.empty(0, dtype=torch.long)
    rounds = -(-count // pool)
    return torch.cat([torch.randperm(pool, generator=generator) for _ in range(rounds)])[:count]


class MixtureSampler(DistributedSampler):
    """Indices of one epoch over ``[general..., domain...]`` with a domain share of ``ratio``.

    Args:
        n_general: pairs in the general pool (indices ``0 .. n_general - 1``).
        n_domain: pairs in the domain pool (indices ``n_general ..``).
        ratio: share of domain pairs in an epoch, in [0, 1] (0 for general bitext only).
        epoch_size: samples per epoch over all ranks.
        schedule: ``mixed`` or ``sequential`` (general first, then domain).
        num_replicas, rank: the DDP world; 1 and 0 in a single process.
        skip: samples of this rank's shard to leave out at the start of the epoch (resuming).
        epoch: the epoch to start in (Lightning calls :meth:`set_epoch` for later ones).
        lengths: one length per index (characters), needed by ``bucket_batches``.
        batch_size: pairs per step and rank (the unit that ``bucket_batches`` sorts within).
        bucket_batches: steps per length-sorted window; 0 keeps the random order.
    """

    def __init__(self, n_general: int, n_domain: int, ratio: float, epoch_size: int, schedule: str = "mixed",
                 seed: int = 0, num_replicas: int = 1, rank: int = 0, skip: int = 0, epoch: int = 0,
                 lengths: Sequence[int] | None = None, batch_size: int = 1, bucket_batches: int = 0) -> None:
        check_mixture(ratio, schedule, n_domain)
        if isinstance(bucket_batches, bool) or not isinstance(bucket_batches, int) or bucket_batches < 0:
            raise ConfigError(f"data.bucket_batches={bucket_batches!r}: must be an integer >= 0 (0: no length buckets)")
        if bucket_batches and (lengths is None or len(lengths) != n_general + n_domain):
            raise ConfigError("data.bucket_batches needs one length per training pair")
        if epoch_size < 1:
            raise ConfigError(f"domain.epoch_size={epoch_size}: must be a positive integer")
        if ratio < 1 and n_general == 0:
            raise ConfigError(f"domain.ratio={ratio} < 1 but there are no general pairs: set domain.ratio=1")
        # DistributedSampler wants a dataset only for its length; we pass ours explicitly.
        super().__init__(range(n_general + n_domain), num_replicas=num_replicas, rank=rank, shuffle=True,
                         seed=seed, drop_last=False)
        self.n_general, self.n_domain = n_general, n_domain
        self.ratio, self.epoch_size, self.schedule = ratio, epoch_size, schedule
        self.n_domain_draws = round(ratio * epoch_size)
        self.num_samples = -(-epoch_size // num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.epoch = epoch
        self.skip = skip  # samples of this rank's shard already served (resume); cleared by set_epoch
        self.lengths = torch.as_tensor(lengths) if lengths is not None else None
        self.step_size = batch_size * num_replicas  # consecutive global indices that make one optimizer step
        self.bucket_batches = bucket_batches
        window = self.step_size * max(1, bucket_batches)  # blocks hold whole steps and whole bucketing windows
        self.block = max(window, BLOCK // window * window)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        super().set_epoch(epoch)

    def global_order(self) -> torch.Tensor:
        """The epoch's indices before sharding (identical on every rank); the whole epoch in memory, so
        :meth:`__iter__` and :meth:`visited` use it only for an epoch of one block."""
        if self.epoch_size > self.block:
            return torch.cat([chunk for _, chunk in self._blocks()])
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        general = _cycled_draw(self.n_general, self.epoch_size - self.n_domain_draws, g)
        domain = self.n_general + _cycled_draw(self.n_domain, self.n_domain_draws, g)
        if self.schedule == "sequential":
            return torch.cat([self._bucketed(general, g), self._bucketed(domain, g)])
        order = torch.cat([general, domain])
        return self._bucketed(order[torch.randperm(len(order), generator=g)], g)

    def _bucketed(self, order: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """``order`` with each window of ``bucket_batches`` steps sorted by length into shuffled steps."""
        if not self.bucket_batches or len(order) == 0:
            return order
        window = self.bucket_batches * self.step_size
        out = []
        for start in range(0, len(order), window):
            chunk = order[start:start + window]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            steps = list(chunk.split(self.step_size))
            out.extend(steps[i] for i in torch.randperm(len(steps), generator=g).tolist())
        return torch.cat(out)

    def visited(self) -> torch.Tensor:
        """The distinct indices the epoch visits (which sentences a cache must hold), without drawing it."""
        if self.epoch_size <= self.block:
            return self.global_order().unique()
        general = self._stream(self.n_general, 0, min(self.epoch_size - self.n_domain_draws, self.n_general), "general")
        domain = self._stream(self.n_domain, 0, min(self.n_domain_draws, self.n_domain), "domain")
        return torch.cat([general, self.n_general + domain]).unique()

    def __iter__(self) -> Iterator[int]:
        if self.epoch_size > self.block:
            return self._iter_blocks()
        order = self.global_order()
        pad = self.total_size - len(order)
        if pad > 0:  # repeat the last few so every rank takes as many steps (and sequential stays sorted)
            order = torch.cat([order, order[len(order) - pad:]])
        return iter(order[self.rank : self.total_size : self.num_replicas][self.skip :].tolist())

    # ------------------------------------------------------------------ epochs longer than one block
    def _iter_blocks(self) -> Iterator[int]:
        """This rank's shard of the epoch, one block at a time, from ``skip`` on (padded as in ``__iter__``)."""
        replicas, first = self.num_replicas, self.skip * self.num_replicas + self.rank  # first global position
        tail = torch.empty(0, dtype=torch.long)  # the order's last few indices, repeated as padding
        for start, chunk in self._blocks(first):
            begin = first - start if first > start else (self.rank - start) % replicas
            for piece in chunk[begin::replicas].split(1 << 16):
                yield from piece.tolist()
            tail = torch.cat([tail, chunk])[-replicas:]
        pad = self.total_size - self.epoch_size
        for j in range(pad):
            position = self.epoch_size + j
            if position % replicas == self.rank and position >= first:
                yield int(tail[len(tail) - pad + j])

    def _blocks(self, first: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
        """(start position, indices) of each block of the epoch that ends after position ``first``."""
        total, domain_draws = self.epoch_size, self.n_domain_draws
        if self.schedule == "sequential":  # general pairs, then domain pairs, each cut into blocks from its start
            segments = [(0, total - domain_draws, "general"), (total - domain_draws, total, "domain")]
        else:
            segments = [(0, total, "mixed")]
        for seg_start, seg_stop, kind in segments:
            for start in range(seg_start, seg_stop, self.block):
                stop = min(start + self.block, seg_stop)
                if stop > first:
                    yield start, self._block(kind, start - seg_start, stop - seg_start)

    def _block(self, kind: str, start: int, stop: int) -> torch.Tensor:
        """The indices of positions ``start:stop`` of a segment (see the module docstring)."""
        g = self._generator(f"block-{kind}", start)
        if kind == "general":
            return self._bucketed(self._stream(self.n_general, start, stop, "general"), g)
        if kind == "domain":
            return self._bucketed(self.n_general + self._stream(self.n_domain, start, stop, "domain"), g)
        d0, d1 = round(self.ratio * start), round(self.ratio * stop)  # domain draws before each boundary
        order = torch.cat([self._stream(self.n_general, start - d0, stop - d1, "general"),
                           self.n_general + self._stream(self.n_domain, d0, d1, "domain")])
        return self._bucketed(order[torch.randperm(len(order), generator=g)], g)

    def _stream(self, pool: int, start: int, stop: int, kind: str) -> torch.Tensor:
        """Items ``start:stop`` of an endless stream of random permutations of ``range(pool)``."""
        if stop <= start:
            return torch.empty(0, dtype=torch.long)
        rounds = range(start // pool, (stop - 1) // pool + 1)
        perms = torch.cat([torch.randperm(pool, generator=self._generator(kind, r)) for r in rounds])
        return perms[start - rounds.start * pool : stop - rounds.start * pool]

    def _generator(self, kind: str, number: int) -> torch.Generator:
        key = hashlib.blake2b(f"{self.seed}:{self.epoch}:{kind}:{number}".encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(key, "little") >> 1)

    def __len__(self) -> int:
        # the epoch's full length even when resuming: Lightning counts a resumed epoch's batches
        # from where it stopped, so it expects exactly the skipped ones to be missing at the end
        return self.num_samples
