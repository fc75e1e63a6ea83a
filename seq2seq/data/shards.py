"""Shards of encoded pairs on disk: per side one flat token array and int64 offsets (.npy).

Pair ``i`` of a shard is ``tokens[offsets[i]:offsets[i + 1]]``. Readers memory-map the
files, so every process (DataLoader workers, DDP ranks) shares one copy in the page
cache, and RAM holds only what a batch touches.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

SIDES = ("src", "tgt")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


class ShardWriter:
    """Collects encoded pairs in order and writes a shard every ``shard_size`` pairs."""

    def __init__(self, directory: Path, shard_size: int, dtype: np.dtype) -> None:
        self.directory, self.shard_size, self.dtype = directory, shard_size, dtype
        self.shards: list[dict[str, Any]] = []  # name, pairs, max_cost of each shard written
        self._reset()

    def _reset(self) -> None:
        self._tokens: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
        self._lengths: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
        self._count = 0

    def add(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> None:
        """Append pairs; full shards are written as they fill."""
        start = 0
        while start < len(src_ids):
            end = min(len(src_ids), start + self.shard_size - self._count)
            for side, ids in zip(SIDES, (src_ids[start:end], tgt_ids[start:end]), strict=True):
                self._lengths[side].append(np.fromiter(map(len, ids), np.int64, len(ids)))
                flat = itertools.chain.from_iterable(ids)
                self._tokens[side].append(np.fromiter(flat, self.dtype))
            self._count += end - start
            start = end
            if self._count == self.shard_size:
                self._flush()

    def close(self) -> list[dict[str, Any]]:
        """Write the last, partial shard; the entries of every shard written."""
        if self._count:
            self._flush()
        return self.shards

    def _flush(self) -> None:
        name = f"shard_{len(self.shards):05d}"
        (self.directory / name).mkdir(parents=True)
        lengths = {side: np.concatenate(self._lengths[side]) for side in SIDES}
        for side in SIDES:
            offsets = np.zeros(self._count + 1, dtype=np.int64)
            np.cumsum(lengths[side], out=offsets[1:])
            tokens = np.concatenate(self._tokens[side])
            np.save(self.directory / name / f"{side}.tokens.npy", tokens)
            np.save(self.directory / name / f"{side}.offsets.npy", offsets)
        max_cost = int((lengths["src"] + lengths["tgt"]).max()) + 1
        self.shards.append({"name": name, "pairs": self._count, "max_cost": max_cost})
        self._reset()


class Shard:
    """One shard, memory-mapped on first use (in each process that uses it)."""

    def __init__(self, directory: Path, start: int, pairs: int, max_cost: int) -> None:
        self.directory, self.start, self.pairs, self.max_cost = directory, start, pairs, max_cost
        self._maps: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:  # workers map the files themselves
        return {**self.__dict__, "_maps": None}

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._maps is None:
            self._maps = {
                f"{side}.{kind}": np.load(self.directory / f"{side}.{kind}.npy", mmap_mode="r")
                for side in SIDES
                for kind in ("tokens", "offsets")
            }
        return self._maps

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and target lengths of every pair, (pairs,) int64 each."""
        arrays = self._arrays()
        return np.diff(arrays["src.offsets"]), np.diff(arrays["tgt.offsets"])

    def ids(self, side: str, row: int) -> np.ndarray:
        """The ids of pair ``row`` on ``side`` (src or tgt), as int64."""
        arrays = self._arrays()
        offsets = arrays[f"{side}.offsets"]
        return np.asarray(arrays[f"{side}.tokens"][offsets[row] : offsets[row + 1]], np.int64)


class ShardedCorpus(Dataset):
    """Every shard of a prepared split; item ``i`` is ``(i, source ids, target ids)``."""

    def __init__(self, shards: list[Shard]) -> None:
        self.shards = shards
        self._starts = [shard.start for shard in shards]

    @classmethod
    def open(cls, directory: Path, entries: list[dict[str, Any]]) -> ShardedCorpus:
        """The shards listed (name, pairs, max_cost) in a manifest, in order."""
        shards, start = [], 0
        for entry in entries:
            pairs, max_cost = entry["pairs"], entry["max_cost"]
            shards.append(Shard(directory / entry["name"], start, pairs, max_cost))
            start += entry["pairs"]
        return cls(shards)

    def __len__(self) -> int:
        return sum(shard.pairs for shard in self.shards)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray]:
        shard = self.shards[bisect_right(self._starts, index) - 1]
        row = index - shard.start
        return index, shard.ids("src", row), shard.ids("tgt", row)
