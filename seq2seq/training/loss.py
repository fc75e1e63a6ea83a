"""Label-smoothed cross-entropy over target tokens, padding ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.models.base import PAD_ID


def label_smoothed_loss(logits: Tensor, target: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
    """Summed smoothed loss and summed NLL over non-pad targets; divide by the token count.

    ``logits`` (B, T, V), ``target`` (B, T). The smoothing mass is spread uniformly over the
    vocabulary (``torch``'s definition), so a perfect prediction has loss > 0 when smoothing > 0.
    """
    flat_logits = logits.reshape(-1, logits.size(-1)).float()  # (B*T, V), fp32 for a stable sum
    flat_target = target.reshape(-1)  # (B*T,)
    loss = F.cross_entropy(
        flat_logits, flat_target, ignore_index=PAD_ID, label_smoothing=smoothing, reduction="sum"
    )
    with torch.no_grad():
        nll = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD_ID, reduction="sum")
    return loss, nll
