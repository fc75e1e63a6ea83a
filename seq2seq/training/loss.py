"""Label-smoothed cross-entropy over target tokens, padding ignored."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seq2seq.special_tokens import BOS_ID, PAD_ID

# Never a target: PAD marks no token and BOS only starts the decoder input. Smoothing mass
# put on them would teach the model to expect them, so it goes to the other classes.
UNPREDICTABLE = (PAD_ID, BOS_ID)


def label_smoothed_loss(logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """Smoothed cross-entropy summed over non-pad targets; divide by the token count.

    ``logits`` (B, T, V), ``target`` (B, T). The target distribution is
    q = (1 - ε)·onehot(y) + ε·uniform over the V - 2 classes that can be predicted (all but
    PAD and BOS), so the loss per token is (1 - ε)·(-log p_y) + ε·mean_{c ∉ {PAD, BOS}}(-log p_c).
    A perfect prediction has loss > 0 when ε > 0; with ``smoothing=0`` this is the summed
    negative log-likelihood.
    """
    flat_logits = logits.reshape(-1, logits.size(-1)).float()  # (N, V), fp32 for a stable sum
    flat_target = target.reshape(-1)  # (N,)
    real = flat_target != PAD_ID  # (N,)
    log_p = torch.log_softmax(flat_logits, dim=-1)  # (N, V)
    nll = -log_p.gather(1, flat_target[:, None]).squeeze(1)  # (N,)
    if smoothing == 0.0:
        return nll.masked_fill(~real, 0.0).sum()
    predictable = log_p.sum(-1) - log_p[:, list(UNPREDICTABLE)].sum(-1)  # (N,)
    uniform = -predictable / (log_p.size(-1) - len(UNPREDICTABLE))  # (N,)
    per_token = (1.0 - smoothing) * nll + smoothing * uniform  # (N,)
    return per_token.masked_fill(~real, 0.0).sum()


def perplexity(nll_per_token: float) -> float:
    """exp of the mean negative log-likelihood per target token (capped against overflow)."""
    return math.exp(min(nll_per_token, 100.0))
