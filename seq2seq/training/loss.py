"""Label-smoothed cross-entropy over target tokens, padding ignored."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from seq2seq.models.base import PAD_ID


def label_smoothed_loss(logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """Smoothed cross-entropy summed over non-pad targets; divide by the token count.

    ``logits`` (B, T, V), ``target`` (B, T). The smoothing mass is spread uniformly over the
    vocabulary (``torch``'s definition), so a perfect prediction has loss > 0 when smoothing > 0;
    with ``smoothing=0`` this is the summed negative log-likelihood.
    """
    flat_logits = logits.reshape(-1, logits.size(-1)).float()  # (B*T, V), fp32 for a stable sum
    return F.cross_entropy(
        flat_logits,
        target.reshape(-1),
        ignore_index=PAD_ID,
        label_smoothing=smoothing,
        reduction="sum",
    )
