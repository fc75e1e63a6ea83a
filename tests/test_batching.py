"""Padding into Batch tensors and the token-budget batch sampler's invariants."""

from __future__ import annotations

import random

import pytest
import torch

from seq2seq.data.batching import (
    Batch,
    ParallelDataset,
    TokenBatchSampler,
    collate,
    make_loader,
)
from seq2seq.errors import UserError
from seq2seq.special_tokens import BOS_ID, EOS_ID, PAD_ID


def test_collate_golden() -> None:
    batch = collate([(5, [7, 8, 9], [10, 11]), (2, [4], [12, 13, 14])])
    assert batch.src.tolist() == [[7, 8, 9], [4, PAD_ID, PAD_ID]]
    assert batch.src_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.tgt_in.tolist() == [[BOS_ID, 10, 11, PAD_ID], [BOS_ID, 12, 13, 14]]
    assert batch.tgt_out.tolist() == [[10, 11, EOS_ID, PAD_ID], [12, 13, 14, EOS_ID]]
    assert batch.indices.tolist() == [5, 2]
    assert batch.src.dtype == batch.tgt_in.dtype == batch.indices.dtype == torch.long
    assert batch.src_mask.dtype == torch.bool
    assert batch.num_tgt_tokens == 7  # 2 + 3 target tokens, one EOS each


def test_batch_to_and_pin_memory() -> None:
    batch = collate([(0, [4, 5], [6])])
    moved = batch.to("cpu", non_blocking=True)
    assert isinstance(moved, Batch) and torch.equal(moved.tgt_out, batch.tgt_out)
    if not torch.cuda.is_available():
        pytest.skip("pinned memory needs CUDA")
    pinned = batch.pin_memory()
    assert pinned.src.is_pinned() and pinned.src_mask.is_pinned() and pinned.indices.is_pinned()


def random_lengths(n: int, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    src = [rng.randint(1, 30) for _ in range(n)]
    # Few distinct lengths as well as many, so ties (shuffled per epoch) are common.
    tgt = [max(1, s + rng.randint(-3, 3)) for s in src]
    return src, tgt


def epoch(sampler: TokenBatchSampler, number: int, start_batch: int = 0) -> list[list[int]]:
    sampler.set_epoch(number, start_batch)
    return list(sampler)


def test_sampler_covers_every_example_once_within_budget() -> None:
    src, tgt = random_lengths(500, seed=0)
    sampler = TokenBatchSampler(src, tgt, batch_tokens=200, shuffle=True, seed=1)
    for number in range(3):
        batches = epoch(sampler, number)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(500))
        for b in batches:  # the padded cost, computed naively
            assert len(b) * (max(src[i] for i in b) + max(tgt[i] for i in b) + 1) <= 200
        padded = sum(
            len(b) * (max(src[i] for i in b) + max(tgt[i] for i in b) + 1) for b in batches
        )
        assert padded <= 1.25 * sum(
            s + t + 1 for s, t in zip(src, tgt, strict=True)
        )  # bucketing works


def test_sampler_order_is_a_function_of_seed_and_epoch() -> None:
    src, tgt = random_lengths(300, seed=1)

    def make(seed: int) -> TokenBatchSampler:
        return TokenBatchSampler(src, tgt, batch_tokens=150, shuffle=True, seed=seed)

    first = epoch(make(3), 0)
    assert epoch(make(3), 0) == first  # a fresh sampler (e.g. after a restart) agrees
    assert epoch(make(3), 1) != first
    assert epoch(make(4), 0) != first
    # Batch contents change across epochs too (ties are reshuffled), not only their order.
    assert {tuple(sorted(b)) for b in epoch(make(3), 1)} != {tuple(sorted(b)) for b in first}


def test_sampler_resume_mid_epoch_equals_tail() -> None:
    src, tgt = random_lengths(300, seed=2)
    sampler = TokenBatchSampler(src, tgt, batch_tokens=150, shuffle=True, seed=5)
    full = epoch(sampler, 4)
    assert epoch(sampler, 4, start_batch=7) == full[7:]
    assert epoch(sampler, 4, start_batch=len(full)) == []


def test_sampler_without_shuffle_is_length_sorted() -> None:
    src, tgt = random_lengths(200, seed=3)
    sampler = TokenBatchSampler(src, tgt, batch_tokens=150, shuffle=False, seed=0)
    batches = epoch(sampler, 0)
    assert epoch(sampler, 9) == batches
    flat = [i for b in batches for i in b]
    assert [src[i] + tgt[i] for i in flat] == sorted(src[i] + tgt[i] for i in range(200))


@pytest.mark.parametrize("n", [240, 241])
def test_sampler_replicas_are_disjoint_equal_and_complete(n: int) -> None:
    src, tgt = random_lengths(n, seed=4)
    single = TokenBatchSampler(src, tgt, batch_tokens=120, shuffle=True, seed=2)
    ranks = [
        TokenBatchSampler(src, tgt, batch_tokens=120, shuffle=True, seed=2, num_replicas=2, rank=r)
        for r in range(2)
    ]
    total = len(single)
    per_rank = [epoch(r, 1) for r in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0]) == -(-total // 2)
    assert {i for batches in per_rank for b in batches for i in b} == set(range(n))
    seen = [tuple(b) for batches in per_rank for b in batches]
    # Only the wrap-around padding (at most one batch here) is seen twice.
    assert len(seen) - len(set(seen)) == 2 * len(ranks[0]) - total
    first_batches = {tuple(b) for b in per_rank[0][: total // 2]}
    assert first_batches.isdisjoint(tuple(b) for b in per_rank[1][: total // 2])
    resumed = epoch(ranks[1], 1, start_batch=3)
    assert resumed == per_rank[1][3:]


def test_example_over_budget_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"#1, needs 101 tokens.*data\.batch_tokens"):
        TokenBatchSampler([3, 60, 4], [3, 40, 4], batch_tokens=100, shuffle=True, seed=0)


def test_loader_yields_batches_in_sampler_order() -> None:
    torch.manual_seed(0)
    src_ids = [[5 + i % 7] * (1 + i % 5) for i in range(40)]
    tgt_ids = [[9] * (1 + i % 3) for i in range(40)]
    sampler = TokenBatchSampler(
        [len(s) for s in src_ids], [len(t) for t in tgt_ids], batch_tokens=30, shuffle=True, seed=0
    )
    loader = make_loader(
        ParallelDataset(src_ids, tgt_ids), sampler, num_workers=0, pin_memory=False
    )
    sampler.set_epoch(2)
    expected = list(sampler)
    batches = list(loader)
    assert [b.indices.tolist() for b in batches] == expected
    for batch in batches:
        for row, index in enumerate(batch.indices.tolist()):
            length = len(src_ids[index])
            assert batch.src[row, :length].tolist() == src_ids[index]
            assert batch.src_mask[row].sum() == length


def test_loader_with_persistent_worker_follows_set_epoch() -> None:
    src_ids = [[5] * (1 + i % 4) for i in range(24)]
    tgt_ids = [[6] * (1 + i % 3) for i in range(24)]
    sampler = TokenBatchSampler([len(s) for s in src_ids], [len(t) for t in tgt_ids], 20, True, 0)
    loader = make_loader(
        ParallelDataset(src_ids, tgt_ids), sampler, num_workers=1, pin_memory=False
    )
    for number in (0, 1):
        sampler.set_epoch(number, start_batch=1)
        expected = list(sampler)
        assert [b.indices.tolist() for b in loader] == expected
