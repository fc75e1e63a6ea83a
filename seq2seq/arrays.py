"""Attention matrices as numpy arrays: one conversion and one label check for every reader."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def as_array(matrix: torch.Tensor | np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """A numpy copy of a tensor (any device or dtype) or array, as ``dtype``.

    float64 (the default) keeps sums over many subword pieces exact; drawing needs float32.
    """
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.array(matrix, dtype=dtype)


def check_labels(
    shape: tuple[int, ...], tgt_tokens: Sequence[str], src_tokens: Sequence[str]
) -> None:
    """Fail loudly when the tokens do not label the last two axes, (T, S), of the matrix
    (e.g. a forgotten EOS)."""
    if shape[-2:] != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(
            f"attention of shape {shape} does not match "
            f"{len(tgt_tokens)} target and {len(src_tokens)} source tokens"
        )
