"""Multi-head attention (Vaswani et al. 2017), softmax or efficient (linear), with a decode cache.

Each head h attends in its own d_h = d_model / H dimensional subspace:

    head_h = softmax(Q_h K_hᵀ / √d_h + mask) V_h,   out = concat(head_1 ... head_H) W_o

How one head's attention is computed (the fused kernel, the written-out formula with its
weights, or efficient attention) is decided in one place,
:func:`seq2seq.models.attention.functional.attend`. Decoder self-attention steps one
position at a time against a cache: :class:`KVCache` for softmax attention, the
constant-size :class:`~seq2seq.models.attention.efficient.EfficientState` for efficient.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.models.attention.efficient import EfficientState, causal_efficient_step
from seq2seq.models.attention.functional import ATTENTION_KINDS, attend


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

    @staticmethod
    def empty(batch: int, heads: int, head_dim: int, like: Tensor) -> KVCache:
        """No positions yet, on ``like``'s device and dtype."""
        empty = like.new_zeros(batch, 0, heads, head_dim)  # (B, 0, H, d_h)
        return KVCache(empty, empty, 0)

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
        """(B, H, T, d_h) -> (B, T, D): the heads side by side."""
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)  # (B, T, D)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, T, d_h) of ``x`` (B, T, D): once per sentence for memory."""
        return self._split_heads(self.k_proj(x)), self._split_heads(self.v_proj(x))

    def forward(
        self,
        x: Tensor,
        key_mask: Tensor | None = None,
        need_weights: bool = False,
        kv: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Queries from ``x`` (B, Tq, D) to ``x`` itself or, for cross-attention, to ``kv``.

        ``kv`` is :meth:`project_kv` of the memory, made once per sentence; ``key_mask``
        (B, Tk) is True on real keys. Returns (B, Tq, D) and, if asked, (B, H, Tq, Tk) weights.
        """
        q = self._split_heads(self.q_proj(x))  # (B, Tq, D) -> (B, H, Tq, d_h)
        k, v = self.project_kv(x) if kv is None else kv  # (B, H, Tk, d_h) each
        y, weights = self._attend(q, k, v, key_mask, need_weights, self.causal)  # (B, H, Tq, d_h)
        y = self._merge_heads(y)  # (B, Tq, D)
        return self.out_proj(y), weights  # (B, Tq, D), (B, H, Tq, Tk) or None

    def step(
        self, x: Tensor, cache: KVCache | EfficientState
    ) -> tuple[Tensor, KVCache | EfficientState]:
        """One new position of causal self-attention: ``x`` (B, 1, D) -> (B, 1, D), new cache."""
        q = self._split_heads(self.q_proj(x))  # (B, H, 1, d_h)
        k, v = self.project_kv(x)  # (B, H, 1, d_h) each
        if self.kind == "efficient":
            y, cache = causal_efficient_step(q, k, v, cache)  # (B, H, 1, d_h)
        else:
            cache = cache.append(k, v)
            # the newest query may see every cached key: no causal mask; y is (B, H, 1, d_h)
            y, _ = self._attend(q, *cache.used(), None, need_weights=False, causal=False)
        return self.out_proj(self._merge_heads(y)), cache  # (B, 1, D)

    def empty_cache(self, batch: int, like: Tensor) -> KVCache | EfficientState:
        """The cache before the first step, on ``like``'s device and dtype."""
        if self.kind == "efficient":
            return EfficientState.empty(batch, self.heads, self.head_dim, like)
        return KVCache.empty(batch, self.heads, self.head_dim, like)

    def _attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_mask: Tensor | None,
        need_weights: bool,
        causal: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """:func:`attend` with this module's kind and, in training, its attention dropout."""
        dropout_p = self.dropout_p if self.training else 0.0
        return attend(
            q,
            k,
            v,
            key_mask,
            kind=self.kind,
            causal=causal,
            need_weights=need_weights,
            dropout_p=dropout_p,
        )
