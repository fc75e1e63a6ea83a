"""Attention over split heads, as pure functions of q (B, H, Tq, d), k (B, H, Tk, d), v.

:func:`attend` is the one place that decides how attention is computed:

- the fused kernel, ``torch.nn.functional.scaled_dot_product_attention``, never materialises
  the weights; training and search use it;
- the written-out formula, :func:`scaled_dot_product`, computes the same (within 1e-5) and
  returns the (B, H, Tq, Tk) weights, for heatmaps; a single query on CPU (a decoding step)
  takes it too, being 1.7-3.4x faster than the fused CPU kernel there (B 64-150, 4 heads,
  20-40 keys);
- ``kind="efficient"`` replaces the softmax by efficient attention (Shen et al. 2021,
  :mod:`seq2seq.models.attention.efficient`), linear in the sequence length. It has no weight
  matrix to drop out, so ``dropout_p`` (attention dropout) applies to softmax attention only.

Masks are boolean, True where attention may look: a key padding mask ``(B, Tk)`` (True on
real tokens), or ``causal=True`` for decoder self-attention. Causal attention takes no key
mask: with right padding, every padding position lies after all the real ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.models.attention.efficient import (
    causal_efficient_attention,
    causal_efficient_weights,
    efficient_attention,
    efficient_attention_weights,
)

ATTENTION_KINDS = ("softmax", "efficient")


def scaled_dot_product(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(Q Kᵀ / √d_k) V with ``mask`` (broadcast to (B, H, Tq, Tk), True=attend)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    if mask is not None:
        # -inf, not a large negative number, so masked keys get exactly zero weight
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, H, Tq, Tk), each row sums to 1
    # the weights returned for heatmaps are the ones before dropout
    out = F.dropout(weights, p=dropout_p) @ v  # (B, H, Tq, d_v)
    return out, weights


def causal_mask(q: Tensor, k: Tensor) -> Tensor:
    """(Tq, Tk) True where query i may look at key j: j <= i."""
    return torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    *,
    kind: str,
    causal: bool,
    need_weights: bool,
    dropout_p: float,
) -> tuple[Tensor, Tensor | None]:
    """Attention (B, H, Tq, d_v) and, if ``need_weights``, its weights (B, H, Tq, Tk)."""
    if causal and key_mask is not None:
        raise ValueError("causal attention takes no key mask (right padding never leaks)")
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Tk)
    if kind == "efficient" and causal and need_weights:
        return causal_efficient_attention(q, k, v), causal_efficient_weights(q, k)
    if kind == "efficient" and causal:
        return causal_efficient_attention(q, k, v), None
    if kind == "efficient" and need_weights:
        return efficient_attention(q, k, v, key_mask), efficient_attention_weights(q, k, key_mask)
    if kind == "efficient":
        return efficient_attention(q, k, v, key_mask), None
    if need_weights:
        return scaled_dot_product(q, k, v, causal_mask(q, k) if causal else mask, dropout_p)
    if q.size(-2) == 1 and not causal and q.device.type == "cpu":  # a decoding step on CPU
        return scaled_dot_product(q, k, v, mask, dropout_p)[0], None
    return F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal=causal), None
