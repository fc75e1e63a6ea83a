"""Token-budget batches of similar-length pairs, shard by shard, dealt to DDP ranks.

Within a shard, sorting by length before cutting batches keeps padding small; shuffling
the order of the batches (not their content) keeps training stochastic. Each epoch
visits the shards in a seeded order and finishes one before starting the next, so only
one shard's lengths and index are in memory. Every order is a pure function of (seed,
epoch, shard), so a resumed run continues at (epoch, shard, batch) exactly, without
replaying anything, and DDP ranks deal each shard's batches from one shared order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch.utils.data import Sampler

from seq2seq.errors import UserError


class LengthShard(Protocol):
    """What the sampler needs of a shard: where its pairs start, their lengths, the longest."""

    start: int  # corpus index of the shard's first pair
    max_cost: int  # the most tokens one of its pairs needs on its own (src + tgt + 1)

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and target lengths of every pair of the shard."""
        ...


@dataclass
class MemoryShard:
    """Lengths held in memory (a validation set): one shard starting at index 0."""

    src: np.ndarray
    tgt: np.ndarray
    start: int = 0

    @classmethod
    def of(cls, src_lengths: Sequence[int], tgt_lengths: Sequence[int]) -> MemoryShard:
        """From per-pair lengths."""
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError(f"{len(src_lengths)} source but {len(tgt_lengths)} target lengths")
        return cls(np.asarray(src_lengths, np.int64), np.asarray(tgt_lengths, np.int64))

    @property
    def max_cost(self) -> int:
        """Tokens of the costliest pair (0 when empty)."""
        return int((self.src + self.tgt).max()) + 1 if len(self.src) else 0

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and target lengths of every pair."""
        return self.src, self.tgt


def _rng(*parts: int) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (any ints, negative included)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class TokenBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches of at most ``batch_tokens`` padded tokens, shard by shard.

    A batch of B pairs costs ``B * (max_src_len + max_tgt_len + 1)`` tokens: the padded
    source plus the padded target with BOS (input) or EOS (output).
    """

    def __init__(
        self,
        shards: Sequence[LengthShard],
        batch_tokens: int,
        shuffle: bool,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        """Check every pair fits the budget; batches are cut when a shard is first visited."""
        if not shards or all(shard.max_cost == 0 for shard in shards):
            raise UserError("No examples to batch: the corpus is empty after filtering.")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        for shard in shards:
            if shard.max_cost > batch_tokens:
                _too_long(shard, batch_tokens)
        self.shards, self.batch_tokens = list(shards), batch_tokens
        self.shuffle, self.seed = shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.start_shard, self.start_batch = 0, 0, 0
        self._counts: dict[int, int] = {}  # this rank's batches per shard position, as visited
        self._bounds: dict[int, np.ndarray] = {}  # (batches, 2) cuts of each shard's sorted pairs

    def set_epoch(self, epoch: int, start_shard: int = 0, start_batch: int = 0) -> None:
        """Use the order of ``epoch``, from this rank's batch ``start_batch`` of the shard at
        position ``start_shard`` of that epoch's shard order."""
        if start_batch < 0 or not 0 <= start_shard < len(self.shards):
            raise ValueError(f"no position shard {start_shard}, batch {start_batch}")
        self.epoch, self.start_shard, self.start_batch = epoch, start_shard, start_batch
        self._counts = {}

    def shard_order(self) -> list[int]:
        """The shards of the current epoch, in visiting order."""
        if not self.shuffle:
            return list(range(len(self.shards)))
        return _rng(self.seed, self.epoch).permutation(len(self.shards)).tolist()

    def shard_batches(self, shard_index: int) -> list[list[int]]:
        """All batches (corpus indices) of one shard this epoch, before dealing them to ranks."""
        shard = self.shards[shard_index]
        src, tgt = shard.lengths()
        rng = _rng(self.seed, self.epoch, shard_index) if self.shuffle else None
        # Sorted by (src + tgt, src); ties have identical lengths, so permuting within a tie
        # (the random last key) changes which pairs share a batch, never the cuts.
        ties = rng.random(len(src)) if rng is not None else np.arange(len(src))
        order = np.lexsort((ties, src, src + tgt))
        if shard_index not in self._bounds:
            self._bounds[shard_index] = _pack(src[order], tgt[order], self.batch_tokens)
        cuts = self._bounds[shard_index]
        if rng is not None:
            cuts = cuts[rng.permutation(len(cuts))]
        indices = order + shard.start
        return [indices[a:b].tolist() for a, b in cuts]

    def dealt(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's share, padded by wrapping around (like DistributedSampler) so every
        rank steps equally often."""
        per_rank = math.ceil(len(batches) / self.num_replicas)
        total = per_rank * self.num_replicas
        padded = (batches * math.ceil(total / len(batches)))[:total]
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        order = self.shard_order()
        for position in range(self.start_shard, len(order)):
            mine = self.dealt(self.shard_batches(order[position]))
            self._counts[position] = len(mine)
            skip = self.start_batch if position == self.start_shard else 0
            yield from mine[skip:]

    def advance(self, shard: int, batch: int, consumed: int) -> tuple[int, int]:
        """The position (shard, batch) after ``consumed`` more batches from (shard, batch).

        Only for batches this sampler has yielded (it counts each shard as it starts it).
        """
        batch += consumed
        while (
            shard in self._counts and batch >= self._counts[shard] and shard + 1 < len(self.shards)
        ):
            batch -= self._counts[shard]
            shard += 1
        return shard, batch


def _too_long(shard: LengthShard, batch_tokens: int) -> None:
    src, tgt = shard.lengths()
    costs = src + tgt + 1
    worst = int(costs.argmax())
    raise UserError(
        f"{int((costs > batch_tokens).sum())} example(s) do not fit in data.batch_tokens="
        f"{batch_tokens} on their own (the longest, #{shard.start + worst}, needs "
        f"{costs[worst]} tokens: {src[worst]} source + {tgt[worst]} target + 1). Raise "
        f"data.batch_tokens (for training data, lowering data.max_tokens also works)."
    )


def _pack(src: np.ndarray, tgt: np.ndarray, batch_tokens: int) -> np.ndarray:
    """Greedy ``(start, end)`` cuts of length-sorted pairs so no batch exceeds the budget."""
    bounds, start, max_src, max_tgt = [], 0, 0, 0
    for pos, (s, t) in enumerate(zip(src.tolist(), tgt.tolist(), strict=True)):
        new_src, new_tgt = max(max_src, s), max(max_tgt, t)
        if (pos - start + 1) * (new_src + new_tgt + 1) > batch_tokens:
            bounds.append((start, pos))
            start, new_src, new_tgt = pos, s, t
        max_src, max_tgt = new_src, new_tgt
    bounds.append((start, len(src)))
    return np.array(bounds, dtype=np.int64)
