"""Token-budget batches of similar-length pairs, padded into a :class:`Batch`.

Sorting by length before cutting batches keeps padding small; shuffling the order of the
batches (not their content) keeps training stochastic. The order is a pure function of
(seed, epoch), so a resumed run continues mid-epoch exactly where it stopped, and DDP
ranks deal batches from one shared order without overlap.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from seq2seq.errors import UserError
from seq2seq.special_tokens import BOS_ID, EOS_ID, PAD_ID

Example = tuple[int, list[int], list[int]]  # (index in corpus, source ids, target ids)


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
        src[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        y = torch.tensor(t, dtype=torch.long)
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


class TokenBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches of at most ``batch_tokens`` padded tokens, dealt to DDP ranks.

    A batch of B pairs costs ``B * (max_src_len + max_tgt_len + 1)`` tokens: the padded
    source plus the padded target with BOS (input) or EOS (output).
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        batch_tokens: int,
        shuffle: bool,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        """Sort by length and cut the batches once; only their order changes per epoch."""
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError(f"{len(src_lengths)} source but {len(tgt_lengths)} target lengths")
        if not src_lengths:
            raise UserError("No examples to batch: the corpus is empty after filtering.")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.shuffle, self.seed = shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.start_batch = 0, 0
        costs = [s + t + 1 for s, t in zip(src_lengths, tgt_lengths, strict=True)]
        too_long = [i for i, cost in enumerate(costs) if cost > batch_tokens]
        if too_long:
            worst = max(too_long, key=costs.__getitem__)
            raise UserError(
                f"{len(too_long)} example(s) do not fit in data.batch_tokens={batch_tokens} on "
                f"their own (the longest, #{worst}, needs {costs[worst]} tokens: "
                f"{src_lengths[worst]} source + {tgt_lengths[worst]} target + 1). Raise "
                f"data.batch_tokens (for training data, lowering data.max_tokens also works)."
            )
        # Ties in this key have identical (src, tgt) lengths, so permuting within a tie
        # changes which pairs share a batch but never the batch boundaries or count.
        keys = [(s + t, s) for s, t in zip(src_lengths, tgt_lengths, strict=True)]
        self._order = sorted(range(len(keys)), key=keys.__getitem__)
        self._ties = _runs([keys[i] for i in self._order])
        self._bounds = _pack(
            [src_lengths[i] for i in self._order],
            [tgt_lengths[i] for i in self._order],
            batch_tokens,
        )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Use the order of ``epoch``, skipping this rank's first ``start_batch`` batches."""
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_batches(self) -> list[list[int]]:
        """All batches of the current epoch in order, before dealing them to ranks."""
        order = list(self._order)
        if self.shuffle:
            rng = random.Random(f"{self.seed}:{self.epoch}")  # str seeds hash stably
            for start, end in self._ties:
                if end - start > 1:
                    tie = order[start:end]
                    rng.shuffle(tie)
                    order[start:end] = tie
        batches = [order[start:end] for start, end in self._bounds]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches()
        per_rank = len(self)
        # Pad by wrapping around, like DistributedSampler, so every rank steps equally often.
        padded = (batches * math.ceil(per_rank * self.num_replicas / len(batches)))[
            : per_rank * self.num_replicas
        ]
        mine = padded[self.rank :: self.num_replicas]
        yield from mine[self.start_batch :]

    def __len__(self) -> int:
        """Batches this rank yields in a full epoch."""
        return math.ceil(len(self._bounds) / self.num_replicas)


def _runs(keys: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of equal consecutive keys."""
    runs, start = [], 0
    for pos in range(1, len(keys) + 1):
        if pos == len(keys) or keys[pos] != keys[start]:
            runs.append((start, pos))
            start = pos
    return runs


def _pack(
    src_lengths: list[int], tgt_lengths: list[int], batch_tokens: int
) -> list[tuple[int, int]]:
    """Greedy ``(start, end)`` cuts of length-sorted pairs so no batch exceeds the budget."""
    bounds, start, max_src, max_tgt = [], 0, 0, 0
    for pos, (s, t) in enumerate(zip(src_lengths, tgt_lengths, strict=True)):
        new_src, new_tgt = max(max_src, s), max(max_tgt, t)
        if (pos - start + 1) * (new_src + new_tgt + 1) > batch_tokens:
            bounds.append((start, pos))
            start, new_src, new_tgt = pos, s, t
        max_src, max_tgt = new_src, new_tgt
    bounds.append((start, len(src_lengths)))
    return bounds


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
    src_ids: list[list[int]],
    tgt_ids: list[list[int]],
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
        [len(s) for s in src_ids],
        [len(t) for t in tgt_ids],
        batch_tokens=batch_tokens,
        shuffle=shuffle,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
    )
    loader = make_loader(ParallelDataset(src_ids, tgt_ids), sampler, num_workers, pin_memory)
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
