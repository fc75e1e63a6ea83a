"""Efficient attention (Shen et al., "Efficient Attention: Attention with Linear Complexities").

Softmax attention normalises ``Q Kᵀ`` over keys, which needs the whole (T_q, T_k) matrix.
Efficient attention normalises queries and keys separately,

    E(Q, K, V) = ρ_q(Q) (ρ_k(K)ᵀ V)

with ρ_q a softmax over the features of each query (rows) and ρ_k a softmax over the
positions of each key feature (columns). Multiplying right to left builds a (d_k, d_v)
context matrix — d_k "global context vectors", each a weighted mean of the values — and every
query mixes them, so time and memory grow linearly with the sequence length.

As in the paper, q and k are not scaled by d_k^-1/2 (or d_k^-1/4 each): both softmaxes already
normalise, and a learned projection can choose any temperature it needs.

The causal form (for decoder self-attention) replaces ρ_k by a softmax over the prefix j <= t.
Its state after t is the prefix's context matrix plus the log of the key softmax's denominator;
the full form runs the same recurrence from chunk to chunk. Both stay exact for
large-magnitude inputs because every exponent is ``k_j - logsumexp_{i<=t} k_i <= 0``: a shift
by the maximum over the whole sequence would underflow early prefixes to 0/0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


def efficient_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None) -> Tensor:
    """ρ_q(Q) (ρ_k(K)ᵀ V), with padding keys excluded from ρ_k; key_mask (B, Tk) True=real."""
    rho_q = q.softmax(dim=-1)  # (B, H, Tq, dk): each query is a distribution over features
    rho_k = _key_softmax(k, key_mask)  # (B, H, Tk, dk): each feature a distribution over keys
    context = rho_k.transpose(-2, -1) @ v  # (B, H, dk, dv): one global context vector per feature
    return rho_q @ context  # (B, H, Tq, dv)


def efficient_attention_weights(q: Tensor, k: Tensor, key_mask: Tensor | None) -> Tensor:
    """The implied attention matrix ρ_q(Q) ρ_k(K)ᵀ (B, H, Tq, Tk); rows sum to 1, padding is 0."""
    # Row sums: Σ_j Σ_f ρ_q[i,f] ρ_k[j,f] = Σ_f ρ_q[i,f] · 1 = 1.
    return q.softmax(dim=-1) @ _key_softmax(k, key_mask).transpose(-2, -1)


def _key_softmax(k: Tensor, key_mask: Tensor | None) -> Tensor:
    """ρ_k: softmax over positions; padding set to -inf first so it gets exactly zero weight."""
    if key_mask is not None:
        # a sequence needs at least one real key, or its column softmax is 0/0
        k = k.masked_fill(~key_mask[:, None, :, None], float("-inf"))  # (B, H, Tk, dk)
    return k.softmax(dim=-2)


class EfficientState(NamedTuple):
    """Decode cache of causal efficient attention after a prefix: constant size in its length."""

    context: Tensor  # (B, H, dk, dv) ρ_k(K_{<=t})ᵀ V_{<=t}: per key feature, a weighted mean of v
    log_norm: Tensor  # (B, H, dk) log Σ_{j<=t} exp(k_j): the key softmax's log-denominator

    @staticmethod
    def empty(batch: int, heads: int, head_dim: int, like: Tensor) -> EfficientState:
        """The empty prefix, on ``like``'s device and dtype: no context, and the log of an
        empty sum of exponentials."""
        context = like.new_zeros(batch, heads, head_dim, head_dim)  # (B, H, dk, dv)
        log_norm = like.new_full((batch, heads, head_dim), float("-inf"))  # (B, H, dk)
        return EfficientState(context, log_norm)


def causal_efficient_attention(q: Tensor, k: Tensor, v: Tensor, chunk_size: int = 8) -> Tensor:
    """Causal efficient attention (B, H, T, dv): position t's key softmax runs over j <= t only."""
    # Chunks of C positions keep memory linear in T: a (C, C, dk) block inside each chunk and
    # one (dk, dv) context per chunk, never a (T, dk, dv) running sum or a (T, T) matrix.
    length = q.size(-2)
    pad = (-length) % chunk_size  # zeros at the end are future keys: they change nothing before
    q, k, v = (F.pad(x, (0, 0, 0, pad)).unflatten(-2, (-1, chunk_size)) for x in (q, k, v))
    rho_q = q.softmax(dim=-1)  # (B, H, N, C, dk)
    log_norm = torch.logcumsumexp(k.flatten(-3, -2), dim=-2).view_as(k)  # (B, H, N, C, dk)
    out = _intra_scores(rho_q, k, log_norm) @ v  # (B, H, N, C, dv): keys of the same chunk
    last = log_norm[..., -1, :]  # (B, H, N, dk) log-denominator at each chunk's end
    # each chunk's keys under ρ_k at the chunk's end: exponents <= 0
    chunk_context = torch.exp(k - last.unsqueeze(-2)).transpose(-2, -1) @ v  # (B, H, N, dk, dv)
    # L before each chunk; -inf before the first, whose prefix is empty
    prev_last = F.pad(last[:, :, :-1], (0, 0, 1, 0), value=float("-inf"))  # (B, H, N, dk)
    # the old context keeps its share Σ_{j<=prefix} / Σ_{j<=t} = exp(L_prefix - L_t)
    decay = torch.exp(prev_last - last).unsqueeze(-1)  # (B, H, N, dk, 1)
    context, prefix = torch.zeros_like(chunk_context[:, :, 0]), []  # (B, H, dk, dv)
    # unbind, not indexing: each index's backward would write a full-size gradient
    for chunk_decay, own in zip(decay.unbind(dim=2), chunk_context.unbind(dim=2), strict=True):
        prefix.append(context)
        context = chunk_decay * context + own
    share = torch.exp(prev_last.unsqueeze(-2) - log_norm)  # (B, H, N, C, dk)
    out = out + (rho_q * share) @ torch.stack(prefix, dim=2)  # keys of earlier chunks
    return out.flatten(-3, -2)[..., :length, :]  # (B, H, T, dv)


def causal_efficient_step(
    q: Tensor, k: Tensor, v: Tensor, state: EfficientState | None
) -> tuple[Tensor, EfficientState]:
    """One new position: q, k, v (B, H, 1, d) and the prefix's state -> (B, H, 1, dv), new state."""
    k, v = k.squeeze(-2), v.squeeze(-2)  # (B, H, dk), (B, H, dv)
    if state is None:  # a softmax over one key gives it all the weight
        log_norm, context = k, v.unsqueeze(-2).expand(*k.shape, v.size(-1))  # (B, H, dk, dv)
    else:
        log_norm = torch.logaddexp(state.log_norm, k)  # (B, H, dk)
        old_share = torch.exp(state.log_norm - log_norm).unsqueeze(-1)  # (B, H, dk, 1)
        new_share = torch.exp(k - log_norm).unsqueeze(-1)  # (B, H, dk, 1), = 1 - old_share
        context = old_share * state.context + new_share * v.unsqueeze(-2)  # (B, H, dk, dv)
    return q.softmax(dim=-1) @ context, EfficientState(context, log_norm)


def causal_efficient_weights(q: Tensor, k: Tensor) -> Tensor:
    """The implied causal matrix (B, H, T, T): ρ_q(q_t) · softmax_{j<=t}(k_j); rows sum to 1."""
    return _intra_scores(q.softmax(dim=-1), k, torch.logcumsumexp(k, dim=-2))


def _intra_scores(rho_q: Tensor, k: Tensor, log_norm: Tensor) -> Tensor:
    """Causal scores Σ_f ρ_q[t,f] exp(k[j,f] - log_norm[t,f]) for j <= t: (..., C, C)."""
    exponent = k.unsqueeze(-3) - log_norm.unsqueeze(-2)  # (..., C_t, C_j, dk)
    future = torch.ones(k.size(-2), k.size(-2), dtype=torch.bool, device=k.device).triu(1)
    # mask before exp: exp of a future key can overflow, and inf * 0 would poison gradients
    rho_k = exponent.masked_fill(future.unsqueeze(-1), float("-inf")).exp()  # (..., C, C, dk)
    return (rho_k @ rho_q.unsqueeze(-1)).squeeze(-1)  # (..., C_t, C_j)
