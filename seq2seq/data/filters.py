"""Which pairs are unusable, counted by reason: before tokenisation (text) and after (ids).

The same rules serve the streamed training split and the in-memory validation set; each
ends in one clear error when nothing survives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seq2seq.errors import UserError


@dataclass
class TextFilter:
    """Drops pairs with an empty side or a side over ``max_chars`` characters (None: no limit)."""

    max_chars: int | None
    name: str = "corpus"
    read: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"empty": 0, "max_chars": 0})

    def keep(self, src: str, tgt: str) -> bool:
        """Whether to keep this pair; counts it either way."""
        self.read += 1
        if not src or not tgt:
            self.counts["empty"] += 1
            return False
        if self.max_chars is not None and max(len(src), len(tgt)) > self.max_chars:
            self.counts["max_chars"] += 1
            return False
        return True

    def check(self) -> None:
        """Fail when the corpus was empty or lost every pair."""
        if self.read == 0:
            raise UserError(
                f"The {self.name} is empty; check its files (data.*_src/_tgt or data.root)."
            )
        if self.read == sum(self.counts.values()):
            raise UserError(
                f"Filtering removed every pair of the {self.name} ({self.counts['empty']} with "
                f"an empty side, {self.counts['max_chars']} over data.max_chars="
                f"{self.max_chars}); raise data.max_chars or check that the files hold text."
            )


@dataclass
class LengthFilter:
    """Drops pairs with an empty side in subwords, a side over ``max_tokens``, or a length
    ratio over ``max_length_ratio`` (None disables a limit)."""

    max_tokens: int | None
    max_length_ratio: float | None
    kept: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"empty_ids": 0, "max_tokens": 0, "max_length_ratio": 0}
    )

    def mask(self, src_lengths: np.ndarray, tgt_lengths: np.ndarray) -> np.ndarray:
        """True for the pairs to keep, given their subword lengths; counts the others."""
        short = np.minimum(src_lengths, tgt_lengths)
        long = np.maximum(src_lengths, tgt_lengths)
        # nothing to attend to, e.g. only characters the normaliser removes
        empty = short == 0
        over = ~empty & (long > self.max_tokens if self.max_tokens is not None else False)
        ratio = self.max_length_ratio
        skewed = ~empty & ~over & (long > ratio * short if ratio is not None else False)
        self.counts["empty_ids"] += int(empty.sum())
        self.counts["max_tokens"] += int(over.sum())
        self.counts["max_length_ratio"] += int(skewed.sum())
        keep = ~(empty | over | skewed)
        self.kept += int(keep.sum())
        return keep

    def check(self) -> None:
        """Fail when no pair survived."""
        if self.kept == 0:
            raise UserError(
                f"No pair survives the subword filters ({self.counts['max_tokens']} over "
                f"data.max_tokens={self.max_tokens}, {self.counts['max_length_ratio']} over "
                f"data.max_length_ratio={self.max_length_ratio}, {self.counts['empty_ids']} "
                f"empty); raise data.max_tokens or data.max_length_ratio."
            )
