"""Attention for recurrent decoders: one query (the decoder state) per target step.

Every scorer has the same two methods, so the decoder never needs to know which it holds:

- ``project_keys(keys)`` does the work that depends only on the encoder states, once per
  batch (JoeyNMT's trick: the ``W_h h_j`` term of Bahdanau attention does not change
  between decoder steps, so it is not recomputed at every step);
- ``forward(query, proj_keys, values, mask)`` scores one query against every source
  position, masks the padding and returns the context vector and the weights.

The additive (Bahdanau) scorer follows the seed notes' attention workflow step by step; the
numbers in its comments (1.1 ... 1.5) are the workflow's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

RNN_ATTENTION_KINDS = ("bahdanau", "luong_dot", "luong_general")


def masked_softmax_context(scores: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax ``scores`` (B, S) over real positions of ``mask``; return (context, weights)."""
    # -inf before the softmax (not a large negative number) so padding gets exactly 0 weight
    scores = scores.masked_fill(~mask, float("-inf"))  # (B, S)
    weights = torch.softmax(scores, dim=-1)  # (B, S)
    context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)  # (B, Dv)
    return context, weights


class AdditiveAttention(nn.Module):
    """Bahdanau attention: e_j = vᵀ tanh(W_s s + W_h h_j)."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        # one bias is enough: a bias on both W_s and W_h would be redundant inside the tanh
        self.query_layer = nn.Linear(query_dim, attn_dim, bias=True)  # W_s
        self.key_layer = nn.Linear(key_dim, attn_dim, bias=False)  # W_h
        self.energy_layer = nn.Linear(attn_dim, 1, bias=False)  # v

    def project_keys(self, keys: Tensor) -> Tensor:
        """W_h h_j for every encoder state, (B, S, Dk) -> (B, S, A); once per batch."""
        # 1.1 (encoder half): the encoder hidden states pass through their linear layer
        return self.key_layer(keys)

    def forward(
        self, query: Tensor, proj_keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Context (B, Dv) and weights (B, S) for ``query`` (B, Dq); ``mask`` True on tokens."""
        # 1.1 (decoder half): the decoder hidden state passes through its linear layer
        q = self.query_layer(query).unsqueeze(1)  # (B, 1, A)
        # 1.2: decoder and encoder terms are added and passed through tanh
        hidden = torch.tanh(q + proj_keys)  # (B, S, A)
        # 1.3: one alignment score per source position
        scores = self.energy_layer(hidden).squeeze(-1)  # (B, S)
        # 1.4: softmax over the source with padding masked out;
        # 1.5: context vector = weighted sum of the encoder hidden states
        return masked_softmax_context(scores, values, mask)


class LuongDotAttention(nn.Module):
    """Luong dot attention: e_j = sᵀ h_j (no parameters; needs equal query and key sizes)."""

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        if query_dim != key_dim:
            raise ValueError(
                f"luong_dot attention needs query_dim == key_dim, got {query_dim} and "
                f"{key_dim}; use luong_general or bahdanau for different sizes"
            )

    def project_keys(self, keys: Tensor) -> Tensor:
        """Dot attention scores the keys as they are: (B, S, Dk) -> (B, S, Dk)."""
        return keys

    def forward(
        self, query: Tensor, proj_keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Context (B, Dv) and weights (B, S) for ``query`` (B, Dq); ``mask`` True on tokens."""
        scores = torch.bmm(proj_keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)
        return masked_softmax_context(scores, values, mask)


class LuongGeneralAttention(nn.Module):
    """Luong general (bilinear) attention: e_j = sᵀ W_a h_j."""

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.key_layer = nn.Linear(key_dim, query_dim, bias=False)  # W_a

    def project_keys(self, keys: Tensor) -> Tensor:
        """W_a h_j for every encoder state, (B, S, Dk) -> (B, S, Dq); once per batch."""
        return self.key_layer(keys)

    def forward(
        self, query: Tensor, proj_keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Context (B, Dv) and weights (B, S) for ``query`` (B, Dq); ``mask`` True on tokens."""
        scores = torch.bmm(proj_keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)
        return masked_softmax_context(scores, values, mask)


def build_rnn_attention(kind: str, query_dim: int, key_dim: int, attn_dim: int) -> nn.Module:
    """The scorer named ``kind`` (bahdanau | luong_dot | luong_general)."""
    if kind == "bahdanau":
        return AdditiveAttention(query_dim, key_dim, attn_dim)
    if kind == "luong_dot":
        return LuongDotAttention(query_dim, key_dim)
    if kind == "luong_general":
        return LuongGeneralAttention(query_dim, key_dim)
    raise ValueError(
        f"unknown RNN attention {kind!r}; valid options: {', '.join(RNN_ATTENTION_KINDS)}"
    )
