"""The token-budget, length-bucketed, shard-by-shard batch sampler's invariants."""

from __future__ import annotations

import random

import numpy as np
import pytest

from seq2seq.data.sampler import MemoryShard, TokenBatchSampler
from seq2seq.errors import UserError


def random_lengths(n: int, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    src = [rng.randint(1, 30) for _ in range(n)]
    # Few distinct lengths as well as many, so ties (shuffled per epoch) are common.
    tgt = [max(1, s + rng.randint(-3, 3)) for s in src]
    return src, tgt


def shards_of(src: list[int], tgt: list[int], size: int) -> list[MemoryShard]:
    """The pairs cut into shards of ``size`` (the last may be smaller), indices global."""
    return [
        MemoryShard(np.array(src[a : a + size]), np.array(tgt[a : a + size]), start=a)
        for a in range(0, len(src), size)
    ]


def make(src: list[int], tgt: list[int], size: int = 10_000, **kwargs: int) -> TokenBatchSampler:
    options = {"batch_tokens": 150, "shuffle": True, "seed": 1, **kwargs}
    return TokenBatchSampler(shards_of(src, tgt, size), **options)  # type: ignore[arg-type]


def epoch(sampler: TokenBatchSampler, number: int, shard: int = 0, batch: int = 0) -> list:
    sampler.set_epoch(number, shard, batch)
    return list(sampler)


@pytest.mark.parametrize("shard_size", [500, 120])
def test_every_example_once_per_epoch_within_budget(shard_size: int) -> None:
    src, tgt = random_lengths(500, seed=0)
    sampler = make(src, tgt, shard_size, batch_tokens=200)
    for number in range(3):
        batches = epoch(sampler, number)
        assert sorted(i for b in batches for i in b) == list(range(500))
        for b in batches:  # the padded cost, computed naively
            assert len(b) * (max(src[i] for i in b) + max(tgt[i] for i in b) + 1) <= 200
        padded = sum(
            len(b) * (max(src[i] for i in b) + max(tgt[i] for i in b) + 1) for b in batches
        )
        assert padded <= 1.3 * sum(s + t + 1 for s, t in zip(src, tgt, strict=True))  # bucketing


def test_shards_are_visited_whole_in_a_seeded_order() -> None:
    src, tgt = random_lengths(600, seed=6)
    sampler = make(src, tgt, 100, seed=3)
    orders = []
    for number in range(4):
        sampler.set_epoch(number)
        order = sampler.shard_order()
        shard_of = [i // 100 for b in list(sampler) for i in b]
        # every batch within one shard, and the shards one after the other in that order
        visited = [s for k, s in enumerate(shard_of) if k == 0 or shard_of[k - 1] != s]
        assert visited == order and sorted(order) == list(range(6))
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1  # the order changes with the epoch ...
    again = make(src, tgt, 100, seed=3)
    again.set_epoch(2)
    assert again.shard_order() == orders[2]  # ... and is the same for the same seed and epoch


def test_order_is_a_function_of_seed_and_epoch() -> None:
    src, tgt = random_lengths(300, seed=1)
    first = epoch(make(src, tgt, seed=3), 0)
    assert epoch(make(src, tgt, seed=3), 0) == first  # a fresh sampler (after a restart) agrees
    assert epoch(make(src, tgt, seed=3), 1) != first
    assert epoch(make(src, tgt, seed=4), 0) != first
    # Batch contents change across epochs too (ties are reshuffled), not only their order.
    second = {tuple(sorted(b)) for b in epoch(make(src, tgt, seed=3), 1)}
    assert second != {tuple(sorted(b)) for b in first}


def test_resume_at_shard_and_batch_equals_the_tail() -> None:
    src, tgt = random_lengths(400, seed=2)
    sampler = make(src, tgt, 100, seed=5)
    full = epoch(sampler, 4)
    for consumed in (0, 7, 9, 25, len(full) - 1):  # within and across shard boundaries
        sampler.set_epoch(4)
        list(sampler)  # counts every shard
        shard, batch = sampler.advance(0, 0, consumed)
        assert epoch(make(src, tgt, 100, seed=5), 4, shard, batch) == full[consumed:]


def test_without_shuffle_is_length_sorted() -> None:
    src, tgt = random_lengths(200, seed=3)
    sampler = make(src, tgt, shuffle=False, seed=0)
    batches = epoch(sampler, 0)
    assert epoch(sampler, 9) == batches
    flat = [i for b in batches for i in b]
    assert [src[i] + tgt[i] for i in flat] == sorted(src[i] + tgt[i] for i in range(200))


@pytest.mark.parametrize(("n", "shard_size"), [(240, 1000), (241, 1000), (241, 60)])
def test_replicas_are_disjoint_equal_and_complete(n: int, shard_size: int) -> None:
    src, tgt = random_lengths(n, seed=4)
    single = epoch(make(src, tgt, shard_size, batch_tokens=120, seed=2), 1)
    ranks = [
        make(src, tgt, shard_size, batch_tokens=120, seed=2, num_replicas=2, rank=r) for r in (0, 1)
    ]
    per_rank = [epoch(r, 1) for r in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) >= len(single) / 2
    assert {i for batches in per_rank for b in batches for i in b} == set(range(n))
    seen = [tuple(b) for batches in per_rank for b in batches]
    # Only the wrap-around padding (at most one batch per shard) is seen twice.
    assert len(seen) - len(set(seen)) == 2 * len(per_rank[0]) - len(single)
    assert len(seen) - len(set(seen)) <= len(ranks[0].shards)
    assert sorted(set(seen)) == sorted(tuple(b) for b in single)
    shard, batch = ranks[1].advance(0, 0, 3)
    assert epoch(ranks[1], 1, shard, batch) == per_rank[1][3:]


def test_example_over_budget_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"#1, needs 101 tokens.*data\.batch_tokens"):
        TokenBatchSampler([MemoryShard.of([3, 60, 4], [3, 40, 4])], 100, shuffle=True, seed=0)
    with pytest.raises(UserError, match="corpus is empty"):
        TokenBatchSampler([MemoryShard.of([], [])], 100, shuffle=True, seed=0)
