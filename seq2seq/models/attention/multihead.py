"""Multi-head attention (Vaswani et al. 2017), softmax or efficient (linear), with a decode cache.

Each head h attends in its own d_h = d_model / H dimensional subspace:

    head_h = softmax(Q_h K_hᵀ / √d_h + mask) V_h,   out = concat(head_1 ... head_H) W_o

Two paths compute the same thing (within 1e-5):

- the weights path writes the formula out step by step (:func:`scaled_dot_product`) and
  returns the (B, H, T_q, T_k) weights, for heatmaps;
- the fast path calls ``torch.nn.functional.scaled_dot_product_attention``, which fuses the
  kernels and never materialises the weights; training and search use it.

With ``kind="efficient"`` the softmax is replaced by efficient attention (Shen et al. 2021,
:mod:`seq2seq.models.attention.efficient`), whose cost is linear in the sequence length; its causal
form's running sums are the decode cache. Efficient attention has no weight matrix to drop
out, so ``dropout`` (attention dropout) applies to softmax attention only.

Masks are boolean, True where attention may look: a key padding mask ``(B, T_k)`` (True on
real tokens), or ``causal=True`` for decoder self-attention. Causal attention takes no key
mask: with right padding, every padding position lies after all the real ones.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.models.attention.efficient import (
    EfficientState,
    causal_efficient_attention,
    causal_efficient_step,
    causal_efficient_weights,
    efficient_attention,
    efficient_attention_weights,
)

ATTENTION_KINDS = ("softmax", "efficient")


class KVCache(NamedTuple):
    """Keys and values of the positions decoded so far; batch first, then time.

    The buffers have room for ``capacity >= length`` positions and double when full, so a
    step writes one position in place instead of copying the whole prefix (which made the
    cache's concatenation a third of greedy decoding time at batch 150). So a cache may be
    stepped once: to branch (as beam search does), copy it with ``select_batch`` first.
    With time before heads, a row's decoded positions are one contiguous block, so
    reordering the batch (every beam-search step) copies only those, straight into the new
    buffer, and never the unused room.
    """

    keys: Tensor  # (B, capacity, H, d_h); positions >= length are unused
    values: Tensor  # (B, capacity, H, d_h)
    length: int  # positions decoded so far

    def append(self, k: Tensor, v: Tensor) -> KVCache:
        """The cache with one more position, ``k``/``v`` (B, H, 1, d_h), written in place."""
        keys, values, t = self
        if t == keys.size(1):  # full: double the room (8 positions to start with)
            batch, _, heads, dim = keys.shape
            room = keys.new_empty(batch, max(t, 8), heads, dim)
            keys, values = torch.cat([keys, room], dim=1), torch.cat([values, room], dim=1)
        keys[:, t] = k[:, :, 0]
        values[:, t] = v[:, :, 0]
        return KVCache(keys, values, t + 1)

    def used(self) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, length, d_h) of the decoded positions (strided views)."""
        t = self.length
        return self.keys[:, :t].transpose(1, 2), self.values[:, :t].transpose(1, 2)

    def select_rows(self, index: Tensor) -> KVCache:
        """Rows ``index`` (N,) of the batch, in a new buffer of the same capacity."""
        t = self.length
        if torch.is_grad_enabled() and self.keys.requires_grad:  # out= does not differentiate
            used = (
                self.keys[:, :t].index_select(0, index),
                self.values[:, :t].index_select(0, index),
            )
            return KVCache(*used, t)  # no room: the next append makes some
        keys = self.keys.new_empty(index.numel(), *self.keys.shape[1:])
        values = torch.empty_like(keys)
        torch.index_select(self.keys[:, :t], 0, index, out=keys[:, :t])  # (N, t, H, d_h)
        torch.index_select(self.values[:, :t], 0, index, out=values[:, :t])
        return KVCache(keys, values, t)


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


class MultiHeadAttention(nn.Module):
    """Multi-head self- or cross-attention with separate Q, K, V and output projections."""

    def __init__(
        self, d_model: int, heads: int, dropout: float, kind: str = "softmax", causal: bool = False
    ) -> None:
        super().__init__()
        if d_model % heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by heads={heads}")
        if kind not in ATTENTION_KINDS:
            raise ValueError(
                f"unknown attention kind {kind!r}; valid: {', '.join(ATTENTION_KINDS)}"
            )
        self.heads = heads
        self.head_dim = d_model // heads
        self.dropout_p = dropout
        self.kind = kind
        self.causal = causal
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, d_h)."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, d_h)

    def _merge_heads(self, x: Tensor) -> Tensor:
        """(B, H, T, d_h) -> (B, T, D): the heads side by side, then the output projection."""
        batch, _, length, _ = x.shape
        x = x.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)  # (B, T, D)
        return self.out_proj(x)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, T, d_h) of ``x`` (B, T, D): once per sentence for memory."""
        return self._split_heads(self.k_proj(x)), self._split_heads(self.v_proj(x))

    def forward(
        self, x: Tensor, key_mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Self-attention over ``x`` (B, T, D): output (B, T, D) and weights (B, H, T, T)."""
        keys, values = self.project_kv(x)  # (B, H, T, d_h) each
        return self.attend(x, keys, values, key_mask, need_weights)

    def attend(
        self,
        x: Tensor,
        keys: Tensor,
        values: Tensor,
        key_mask: Tensor | None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Queries from ``x`` (B, Tq, D) to projected ``keys``/``values`` (B, H, Tk, d_h)."""
        if self.causal and key_mask is not None:
            raise ValueError("causal attention takes no key mask (right padding never leaks)")
        q = self._split_heads(self.q_proj(x))  # (B, H, Tq, d_h)
        if self.kind == "efficient":
            out, weights = self._efficient(q, keys, values, key_mask, need_weights)
        elif need_weights:
            out, weights = scaled_dot_product(
                q,
                keys,
                values,
                self._mask(key_mask, q.size(2), keys.size(2), q.device),
                self.dropout_p if self.training else 0.0,
            )  # (B, H, Tq, d_h), (B, H, Tq, Tk)
        else:
            out = self._fast(q, keys, values, key_mask, self.causal)  # (B, H, Tq, d_h)
            weights = None
        return self._merge_heads(out), weights  # (B, Tq, D)

    def step(
        self, x: Tensor, cache: KVCache | EfficientState
    ) -> tuple[Tensor, KVCache | EfficientState]:
        """One new position of causal self-attention: ``x`` (B, 1, D) -> (B, 1, D), new cache."""
        q = self._split_heads(self.q_proj(x))  # (B, H, 1, d_h)
        k, v = self.project_kv(x)  # (B, H, 1, d_h) each
        if self.kind == "efficient":
            out, cache = causal_efficient_step(q, k, v, cache)  # (B, H, 1, d_h)
        else:
            cache = cache.append(k, v)
            keys, values = cache.used()  # (B, H, t, d_h) each
            # the newest query may see every cached key: no causal mask
            out = self._fast(q, keys, values, None, causal=False)  # (B, H, 1, d_h)
        return self._merge_heads(out), cache

    def empty_cache(self, batch: int, like: Tensor) -> KVCache | EfficientState:
        """The cache before the first step, on ``like``'s device and dtype."""
        if self.kind == "efficient":
            # the empty prefix: no context, and the log of an empty sum of exponentials
            context = like.new_zeros(batch, self.heads, self.head_dim, self.head_dim)
            log_norm = like.new_full((batch, self.heads, self.head_dim), float("-inf"))
            return EfficientState(context, log_norm)  # (B, H, d_h, d_h), (B, H, d_h)
        empty = like.new_zeros(batch, 0, self.heads, self.head_dim)  # (B, 0, H, d_h)
        return KVCache(empty, empty, 0)

    def _mask(
        self, key_mask: Tensor | None, q_len: int, k_len: int, device: torch.device
    ) -> Tensor | None:
        """Boolean mask broadcastable to (B, H, Tq, Tk), True where a query may look."""
        if self.causal:
            return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril()  # (Tq, Tk)
        if key_mask is not None:
            return key_mask[:, None, None, :]  # (B, 1, 1, Tk)
        return None

    def _fast(
        self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, causal: bool
    ) -> Tensor:
        """The fused kernel; (B, H, Tq, d_h).

        A single query (a decoding step) on CPU takes the written-out math instead: it is
        1.7-3.4x faster than the fused CPU kernel there (B 64-150, 4 heads, 20-40 keys).
        """
        if q.size(2) == 1 and not causal and q.device.type == "cpu":
            mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Tk)
            dropout_p = self.dropout_p if self.training else 0.0
            return scaled_dot_product(q, k, v, mask, dropout_p)[0]
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if key_mask is None else key_mask[:, None, None, :],  # (B, 1, 1, Tk)
            dropout_p=self.dropout_p if self.training else 0.0,
            is_causal=causal,
        )

    def _efficient(
        self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Efficient attention (B, H, Tq, d_h) and, if asked, its implied (B, H, Tq, Tk) matrix."""
        if self.causal:
            out = causal_efficient_attention(q, k, v)
            weights = causal_efficient_weights(q, k) if need_weights else None
        else:
            out = efficient_attention(q, k, v, key_mask)
            weights = efficient_attention_weights(q, k, key_mask) if need_weights else None
        return out, weights
