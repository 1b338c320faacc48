"""Domain mixing: the sampler's shares, schedules, determinism and DDP shards, and the datamodule
that feeds it from real bitext files (general vs. domain pools)."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import FIXTURES, SW_BITEXT

from optical_lightning.data.datamodule import BitextDataModule
from optical_lightning.data.mixing import MixtureSampler
from optical_lightning.utils.errors import ConfigError

MIXED = FIXTURES / "train.mixed.en-sw.tsv"  # 6 sources x 30 rows, with a `source` column
SOFTWARE = ["kolibri", "django", "mediawiki", "wordpress"]


def domain_share(indices: list[int], n_general: int) -> float:
    return sum(i >= n_general for i in indices) / len(indices)


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("n_domain", [150, 20_000])  # a small pool (repeated) and a large one
def test_domain_share_matches_the_ratio_over_an_epoch(ratio, n_domain):
    sampler = MixtureSampler(8_000, n_domain, ratio, epoch_size=6_000, seed=3)
    indices = list(sampler)
    assert len(indices) == 6_000
    assert abs(domain_share(indices, 8_000) - ratio) <= 0.02
    assert all(0 <= i < 8_000 + n_domain for i in indices)


def test_the_mixture_is_spread_over_the_epoch_not_clumped():
    indices = list(MixtureSampler(5_000, 500, 0.3, epoch_size=6_000, seed=0))
    for start in range(0, 6_000, 1_000):  # every sixth of the epoch carries about the same share
        assert abs(domain_share(indices[start:start + 1_000], 5_000) - 0.3) < 0.06


@pytest.mark.parametrize("ratio,expected", [(0.0, 0.0), (1.0, 1.0)])
def test_ratio_zero_and_one_are_exact(ratio, expected):
    indices = list(MixtureSampler(300, 40, ratio, epoch_size=5_000, seed=1))
    assert domain_share(indices, 300) == expected


def test_a_small_domain_pool_is_repeated_evenly():
    counts = Counter(i for i in MixtureSampler(1_000, 30, 0.5, epoch_size=1_000, seed=2) if i >= 1_000)
    assert len(counts) == 30 and max(counts.values()) - min(counts.values()) <= 1  # 500 draws: 16 or 17 each


def test_general_pairs_are_not_repeated_while_the_pool_suffices():
    general = [i for i in MixtureSampler(10_000, 50, 0.2, epoch_size=5_000, seed=4) if i < 10_000]
    assert len(general) == len(set(general)) == 4_000


def test_sequential_schedule_serves_general_then_domain():
    indices = list(MixtureSampler(2_000, 100, 0.25, epoch_size=4_000, schedule="sequential", seed=5))
    is_domain = [i >= 2_000 for i in indices]
    assert is_domain == [False] * 3_000 + [True] * 1_000


def test_same_seed_same_order_new_epoch_new_order():
    a, b = MixtureSampler(500, 50, 0.3, 1_000, seed=7), MixtureSampler(500, 50, 0.3, 1_000, seed=7)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b) and abs(domain_share(list(b), 500) - 0.3) < 1e-9
    assert list(MixtureSampler(500, 50, 0.3, 1_000, seed=8)) != list(a)


@pytest.mark.parametrize("schedule", ["mixed", "sequential"])
def test_ddp_ranks_get_disjoint_shards_of_one_mixture(schedule):
    world = 3
    full = MixtureSampler(700, 60, 0.4, epoch_size=3_001, schedule=schedule, seed=9).global_order().tolist()
    shards = [list(MixtureSampler(700, 60, 0.4, 3_001, schedule, seed=9, num_replicas=world, rank=r))
              for r in range(world)]
    assert {len(s) for s in shards} == {1_001}  # 3,001 padded to 3,003 so every rank steps equally
    interleaved = [shards[i % world][i // world] for i in range(3_001)]
    assert interleaved == full  # position k of the mixture goes to rank k % world
    if schedule == "sequential":  # each rank also sees general first, then domain
        for shard in shards:
            flags = [i >= 700 for i in shard]
            assert flags == sorted(flags)


@pytest.mark.parametrize("kwargs,message", [
    ({"ratio": 1.5}, r"domain\.ratio=1\.5: must be in \[0, 1\]"),
    ({"ratio": -0.1}, r"domain\.ratio=-0\.1"),
    ({"schedule": "interleaved"}, r"domain\.schedule='interleaved': choose from"),
    ({"n_domain": 0}, r"the domain has no pairs"),
    ({"epoch_size": 0}, r"domain\.epoch_size=0"),
])
def test_impossible_mixtures_fail_with_one_line(kwargs, message):
    args = {"n_general": 100, "n_domain": 10, "ratio": 0.5, "epoch_size": 100, "schedule": "mixed"} | kwargs
    with pytest.raises(ConfigError, match=message):
        MixtureSampler(**args)


# ---------------------------------------------------------------------------- the datamodule
def test_domain_sources_move_from_the_general_pool_to_the_domain_pool():
    dm = BitextDataModule(MIXED, "sw", val_size=0, domain_files=[MIXED], domain_sources=SOFTWARE,
                          domain_ratio=0.5, domain_val_size=10, epoch_size=200)
    dm.setup()
    general_sources = {p.source.split(":")[-1] for p in dm.train_pairs}
    domain_sources = {p.source.split(":")[-1] for p in dm.domain_pairs + dm.domain_val_pairs}
    assert general_sources == {"ntrex128", "babel"} and domain_sources == set(SOFTWARE)
    assert len(dm.domain_val_pairs) == 10 and len(dm.train_pairs) == 60 and len(dm.domain_pairs) == 110
    assert dm.val_prefixes == ["val_domain"]
    pairs = dm.train_pairs + dm.domain_pairs
    batches = list(dm.train_dataloader())
    assert sum(len(b) for b in batches) == 200
    served = [p for b in batches for p in b]
    assert sum(p in dm.domain_pairs for p in served) == 100
    assert set(map(id, served)) <= set(map(id, pairs))


def test_a_domain_file_is_mixed_into_general_bitext_and_removed_from_it():
    # the general file here also contains the domain rows: they must only be served as domain pairs
    dm = BitextDataModule([MIXED, SW_BITEXT], "sw", val_size=20, domain_files=[SW_BITEXT],
                          domain_ratio=0.25, domain_val_size=0.1, epoch_size=400, seed=1)
    dm.setup()
    assert len(dm.domain_pairs) + len(dm.domain_val_pairs) == 200 and len(dm.domain_val_pairs) == 20
    assert len(dm.train_pairs) + len(dm.val_pairs) == 180
    summary = dm.summary()
    assert summary["domain"]["train_pairs"] == 180 and summary["domain"]["ratio"] == 0.25
    assert dm.val_prefixes == ["val", "val_domain"]


def test_budget_sets_the_epoch_when_no_size_is_given():
    dm = BitextDataModule(MIXED, "sw", val_size=0, domain_files=[SW_BITEXT], domain_ratio=0.1)
    dm.setup()
    assert dm.resolved_epoch_size() == 380  # all pairs once, without a trainer's step budget


def test_missing_domain_rows_name_the_fix():
    dm = BitextDataModule(MIXED, "sw", domain_files=[MIXED], domain_sources=["kolibri_typo"], domain_ratio=0.5)
    with pytest.raises(Exception, match=r"no domain pairs with source in \['kolibri_typo'\].*domain\.sources"):
        dm.setup()


def _bucketed_module(**kwargs) -> BitextDataModule:
    dm = BitextDataModule(str(SW_BITEXT), "sw", val_size=8, batch_size=8, seed=3, epoch_size=192, **kwargs)
    dm.setup()
    return dm


def _step_lengths(dm: BitextDataModule, order: list[int]) -> list[list[int]]:
    lengths = [max(len(p.en), len(p.tgt)) for p in dm.train_pairs]
    return [[lengths[i] for i in order[s:s + dm.batch_size]] for s in range(0, len(order), dm.batch_size)]


def test_length_buckets_keep_the_epoch_and_cut_the_padding():
    plain, bucketed = _bucketed_module(), _bucketed_module(bucket_batches=6)
    plain_order, bucketed_order = list(plain.train_sampler()), list(bucketed.train_sampler())
    assert Counter(plain_order) == Counter(bucketed_order)  # the same pairs, as often
    plain_steps, bucketed_steps = _step_lengths(plain, plain_order), _step_lengths(bucketed, bucketed_order)
    # within each window of 6 steps the steps hold disjoint length ranges
    for w in range(0, len(bucketed_steps), 6):
        ranges = sorted((min(s), max(s)) for s in bucketed_steps[w:w + 6])
        assert all(hi <= lo for (_, hi), (lo, _) in zip(ranges, ranges[1:]))
    padded = lambda steps: sum(len(s) * max(s) for s in steps)  # noqa: E731 - characters after padding
    assert padded(bucketed_steps) < 0.8 * padded(plain_steps)


def test_length_buckets_shard_whole_steps_under_ddp():
    dm = _bucketed_module(bucket_batches=4)
    sampler = lambda rank: MixtureSampler(len(dm.train_pairs), 0, 0.0, 192, seed=3, num_replicas=2, rank=rank,  # noqa: E731
                                          lengths=[len(p.en) for p in dm.train_pairs], batch_size=8, bucket_batches=4)
    global_order = sampler(0).global_order().tolist()
    shards = [list(sampler(r)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == sorted(global_order)
    # each optimizer step's 16 global indices are split 8/8 between the ranks
    for step in range(len(global_order) // 16):
        assert sorted(shards[0][step * 8:(step + 1) * 8] + shards[1][step * 8:(step + 1) * 8]) == \
            sorted(global_order[step * 16:(step + 1) * 16])


def test_bad_bucket_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"data\.bucket_batches=-1"):
        BitextDataModule(str(SW_BITEXT), "sw", bucket_batches=-1)
    with pytest.raises(ConfigError, match="needs one length per training pair"):
        MixtureSampler(10, 0, 0.0, 10, bucket_batches=2)
