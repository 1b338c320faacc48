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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

from optical_lightning.utils.errors import ConfigError

SCHEDULES = ("mixed", "sequential")


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

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        super().set_epoch(epoch)

    def global_order(self) -> torch.Tensor:
        """The epoch's indices before sharding (identical on every rank)."""
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

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        pad = self.total_size - len(order)
        if pad > 0:  # repeat the last few so every rank takes as many steps (and sequential stays sorted)
            order = torch.cat([order, order[len(order) - pad:]])
        return iter(order[self.rank : self.total_size : self.num_replicas][self.skip :].tolist())

    def __len__(self) -> int:
        # the epoch's full length even when resuming: Lightning counts a resumed epoch's batches
        # from where it stopped, so it expects exactly the skipped ones to be missing at the end
        return self.num_samples
