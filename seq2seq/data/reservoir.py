"""A seeded, uniform sample of at most ``size`` items from a stream of unknown length."""

from __future__ import annotations

import random
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Reservoir(Generic[Item]):
    """Algorithm R: after n offers, every item offered is kept with probability size / n.

    ``size=0`` keeps everything (SentencePiece's meaning of input_sentence_size=0).
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seen = size, 0
        self.items: list[Item] = []
        self._rng = random.Random(seed)

    def offer(self, item: Item) -> None:
        """Consider one more item of the stream."""
        self.seen += 1
        if self.size == 0 or len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item
