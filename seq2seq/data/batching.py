"""Batches of encoded pairs, padded into a :class:`Batch`, loaded in sampler order.

Which pairs share a batch, and in what order batches come, is the sampler's business
(:mod:`seq2seq.data.sampler`); this module pads and loads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from seq2seq.data.sampler import LengthShard, MemoryShard, TokenBatchSampler
from seq2seq.special_tokens import BOS_ID, EOS_ID, PAD_ID

Example = tuple[int, Sequence[int], Sequence[int]]  # (index in corpus, source ids, target ids)


@dataclass
class Batch:
    """Padded source and teacher-forcing target tensors of one batch."""

    src: Tensor  # (B, S) long, right-padded with PAD_ID
    src_mask: Tensor  # (B, S) bool, True on real tokens
    tgt_in: Tensor  # (B, T) long, BOS + y
    tgt_out: Tensor  # (B, T) long, y + EOS
    indices: Tensor  # (B,) long, position of each pair in its corpus

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch on ``device``."""
        return Batch(
            *(getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self))
        )

    def pin_memory(self) -> Batch:
        """The same batch in page-locked memory (called by DataLoader when pin_memory=True)."""
        return Batch(*(getattr(self, f.name).pin_memory() for f in fields(self)))

    @property
    def num_tgt_tokens(self) -> int:
        """Target tokens that carry loss: everything in ``tgt_out`` but padding."""
        return int((self.tgt_out != PAD_ID).sum())


def collate(examples: Sequence[Example]) -> Batch:
    """Pad (index, source ids, target ids) triples into a :class:`Batch`."""
    if not examples:
        raise ValueError("collate() needs at least one example")
    src_lengths = torch.tensor([len(src) for _, src, _ in examples])  # (B,)
    batch_size = len(examples)
    src_len = max(1, int(src_lengths.max()))
    tgt_len = max(len(tgt) for _, _, tgt in examples) + 1  # + BOS (in) / EOS (out)
    src = torch.full((batch_size, src_len), PAD_ID, dtype=torch.long)  # (B, S)
    tgt_in = torch.full((batch_size, tgt_len), PAD_ID, dtype=torch.long)  # (B, T)
    tgt_out = torch.full((batch_size, tgt_len), PAD_ID, dtype=torch.long)  # (B, T)
    for row, (_, s, t) in enumerate(examples):
        src[row, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        y = torch.as_tensor(t, dtype=torch.long)
        tgt_in[row, 0] = BOS_ID
        tgt_in[row, 1 : len(t) + 1] = y
        tgt_out[row, : len(t)] = y
        tgt_out[row, len(t)] = EOS_ID
    # From lengths, not from src != PAD_ID, so the mask never depends on token values.
    src_mask = torch.arange(src_len)[None, :] < src_lengths[:, None]  # (B, S)
    indices = torch.tensor([index for index, _, _ in examples], dtype=torch.long)  # (B,)
    return Batch(src, src_mask, tgt_in, tgt_out, indices)


class ParallelDataset(Dataset):
    """Encoded pairs; item ``i`` is ``(i, src_ids[i], tgt_ids[i])``."""

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]]) -> None:
        """Wrap line-aligned source and target id lists."""
        if len(src_ids) != len(tgt_ids):
            raise ValueError(f"{len(src_ids)} source but {len(tgt_ids)} target sequences")
        self.src_ids, self.tgt_ids = src_ids, tgt_ids

    def __len__(self) -> int:
        return len(self.src_ids)

    def __getitem__(self, index: int) -> Example:
        return index, self.src_ids[index], self.tgt_ids[index]

    @property
    def shards(self) -> list[MemoryShard]:
        """The pairs' lengths, as the sampler's one shard."""
        return [MemoryShard.of([len(s) for s in self.src_ids], [len(t) for t in self.tgt_ids])]


class ShardedDataset(Protocol):
    """Pairs by corpus index, and the shards the sampler batches them by."""

    @property
    def shards(self) -> Sequence[LengthShard]: ...

    def __getitem__(self, index: int) -> Example: ...


def make_loader(
    dataset: Dataset | Sequence[Example],
    sampler: TokenBatchSampler,
    num_workers: int,
    pin_memory: bool,
) -> DataLoader:
    """A DataLoader yielding :class:`Batch` es in the sampler's order."""
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


def token_batches(
    dataset: ShardedDataset,
    batch_tokens: int,
    shuffle: bool,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> tuple[TokenBatchSampler, DataLoader]:
    """A token-budget, length-bucketed sampler over the pairs and the loader it drives."""
    sampler = TokenBatchSampler(
        dataset.shards,
        batch_tokens=batch_tokens,
        shuffle=shuffle,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
    )
    loader = make_loader(dataset, sampler, num_workers, pin_memory)
    return sampler, loader


def accumulation_groups(batches: Iterator[Batch], size: int) -> Iterator[list[Batch]]:
    """Consecutive groups of ``size`` micro-batches, one update each; the epoch's last group
    may be smaller, so no batch goes unused (its update is normalised by its own tokens)."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group
