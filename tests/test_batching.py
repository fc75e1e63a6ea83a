"""Padding into Batch tensors, and loading batches in the sampler's order."""

from __future__ import annotations

import pytest
import torch

from seq2seq.data.batching import Batch, ParallelDataset, collate, make_loader
from seq2seq.data.sampler import MemoryShard, TokenBatchSampler
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


def test_loader_yields_batches_in_sampler_order() -> None:
    torch.manual_seed(0)
    src_ids = [[5 + i % 7] * (1 + i % 5) for i in range(40)]
    tgt_ids = [[9] * (1 + i % 3) for i in range(40)]
    lengths = MemoryShard.of([len(s) for s in src_ids], [len(t) for t in tgt_ids])
    sampler = TokenBatchSampler([lengths], batch_tokens=30, shuffle=True, seed=0)
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
    lengths = MemoryShard.of([len(s) for s in src_ids], [len(t) for t in tgt_ids])
    sampler = TokenBatchSampler([lengths], 20, True, 0)
    loader = make_loader(
        ParallelDataset(src_ids, tgt_ids), sampler, num_workers=1, pin_memory=False
    )
    for number in (0, 1):
        sampler.set_epoch(number, start_shard=0, start_batch=1)
        expected = list(sampler)
        assert [b.indices.tolist() for b in loader] == expected
