from __future__ import annotations

import pytest

from lorasweep.train import batching


@pytest.mark.parametrize(
    ("effective", "max_micro", "world", "micro", "accum"),
    [
        (4, 64, 1, 4, 1),
        (512, 64, 1, 64, 8),
        (128, 64, 1, 64, 2),
        (128, 48, 1, 32, 4),  # largest divisor <= max, never floored
        (96, 64, 1, 48, 2),
        (12, 5, 1, 4, 3),
        (8, 2, 2, 2, 2),
        (7, 4, 1, 1, 7),  # prime: micro 1, never a different batch
    ],
)
def test_derive_split_is_exact(effective, max_micro, world, micro, accum):
    s = batching.derive_split(effective, max_micro, world)
    assert (s.micro, s.accumulation, s.world) == (micro, accum, world)
    assert s.micro * s.accumulation * s.world == effective
    assert s.describe() == (
        f"effective batch {effective} = micro-batch {micro} x accumulation {accum} x world {world}"
    )


def test_inexact_split_is_refused():
    with pytest.raises(ValueError, match="not divisible by world size 3"):
        batching.derive_split(8, 4, 3)
    with pytest.raises(AssertionError, match="inexact"):
        batching.BatchSplit(8, 3, 2, 1)


def test_halving_keeps_the_effective_batch():
    s = batching.derive_split(64, 16).halved()
    assert (s.micro, s.accumulation, s.effective) == (8, 8, 64)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_batch_size_sees_the_same_examples_in_the_same_order(seed):
    n = 1024
    order = batching.example_order(n, seed)
    assert sorted(order) == list(range(n))
    for b in (4, 8, 16, 64, 128, 512):
        split = batching.derive_split(b, 64)
        seen = []
        for step in range(batching.steps_per_epoch(n, b)):
            idx = batching.step_indices(order, step, split)
            micro = batching.rank_micro_batches(idx, split, rank=0)
            assert all(len(m) == split.micro for m in micro)
            seen += [i for m in micro for i in m]
        assert seen == order  # identical sequence, whatever the batch size


def test_order_depends_on_seed_and_epoch():
    assert batching.example_order(100, 0) != batching.example_order(100, 1)
    assert batching.example_order(100, 0, epoch=0) != batching.example_order(100, 0, epoch=1)


def test_ranks_get_disjoint_contiguous_shards():
    split = batching.derive_split(8, 2, world=2)
    idx = list(range(8))
    assert batching.rank_micro_batches(idx, split, 0) == [[0, 1], [2, 3]]
    assert batching.rank_micro_batches(idx, split, 1) == [[4, 5], [6, 7]]


def test_partial_batch_is_dropped_and_reported():
    assert batching.steps_per_epoch(1000, 512) == 1
    assert batching.dropped_examples(1000, 512) == 488
