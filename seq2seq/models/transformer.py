"""Encoder–decoder Transformer (Vaswani et al. 2017, "Attention Is All You Need").

    src (B, S) -> embed·√d + positions -> [self-attention, feed-forward] × enc_layers -> memory
    tgt (B, T) -> embed·√d + positions -> [causal self-attention, cross-attention to memory,
                                           feed-forward] × dec_layers -> logits (B, T, V)

Every sublayer is wrapped in a residual connection with dropout and a LayerNorm: before the
sublayer (pre-norm, the default, stable without warm-up tricks; a final LayerNorm then closes
each stack) or after the residual sum (post-norm, the original paper).

``encode`` projects the encoder output to every decoder layer's cross-attention keys and
values once per sentence; search then only runs the decoder, one token at a time, with a
batch-first cache of the decoder's self-attention keys and values (or, for efficient
attention, its constant-size running sums). Teacher forcing and search share these code
paths, so a step reproduces the full forward at the same position.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.models.attention.efficient import EfficientState
from seq2seq.models.attention.functional import ATTENTION_KINDS
from seq2seq.models.attention.multihead import KVCache, MultiHeadAttention
from seq2seq.models.base import Attention
from seq2seq.special_tokens import PAD_ID

POSITIONAL_KINDS = ("sinusoidal", "learned")


class TransformerMemory(NamedTuple):
    """What ``encode`` hands to the decoder; batch first, so search can reorder it."""

    enc_out: Tensor  # (B, S, D) encoder output (after the final LayerNorm in pre-norm)
    cross_keys: Tensor  # (B, L, H, S, d_h) cross-attention keys, per decoder layer
    cross_values: Tensor  # (B, L, H, S, d_h) cross-attention values, per decoder layer


class TransformerState(NamedTuple):
    """Decoder state between steps; batch first, so search can reorder it."""

    position: Tensor  # (B,) position of the next target token = tokens decoded so far
    caches: tuple[KVCache | EfficientState, ...]  # self-attention cache, per decoder layer


def sinusoidal_table(length: int, d_model: int) -> Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)): (length, d)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (length, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (d/2,)
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position encodings, looked up by position index."""

    def __init__(self, max_positions: int, d_model: int) -> None:
        super().__init__()
        # not persistent: rebuilt from the arguments, so checkpoints hold only learned weights
        self.register_buffer("table", sinusoidal_table(max_positions, d_model), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """Encodings (..., D) for integer ``positions`` (...)."""
        return self.table[positions]


class FeedForward(nn.Sequential):
    """Position-wise feed-forward network: Linear -> ReLU -> dropout -> Linear."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )


class LayerSizes(NamedTuple):
    """What every encoder and decoder layer is built from."""

    d_model: int
    heads: int
    ff_dim: int
    dropout: float  # on every sublayer's output and inside the feed-forward network
    attn_dropout: float  # on the attention weights (softmax attention only)
    norm_first: bool  # pre-norm (True) or post-norm


class ResidualLayer(nn.Module):
    """Residual sublayers with LayerNorm before them (pre-norm) or after the sum (post-norm)."""

    def __init__(self, dropout: float, norm_first: bool) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def pre(self, norm: nn.LayerNorm, x: Tensor) -> Tensor:
        """The sublayer's input."""
        return norm(x) if self.norm_first else x

    def post(self, norm: nn.LayerNorm, x: Tensor, sublayer_out: Tensor) -> Tensor:
        """The residual sum after the sublayer."""
        x = x + self.dropout(sublayer_out)
        return x if self.norm_first else norm(x)


class EncoderLayer(ResidualLayer):
    """Self-attention over the source, then the feed-forward network."""

    def __init__(self, sizes: LayerSizes, self_attention: str) -> None:
        super().__init__(sizes.dropout, sizes.norm_first)
        d_model = sizes.d_model
        self.self_attn = MultiHeadAttention(
            d_model, sizes.heads, sizes.attn_dropout, self_attention
        )
        self.self_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, sizes.ff_dim, sizes.dropout)
        self.ff_norm = nn.LayerNorm(d_model)

    def forward(
        self, x: Tensor, src_mask: Tensor, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` (B, S, D) -> (B, S, D), self-attention weights (B, H, S, S) if asked."""
        h, weights = self.self_attn(self.pre(self.self_norm, x), src_mask, need_weights)
        x = self.post(self.self_norm, x, h)
        x = self.post(self.ff_norm, x, self.ff(self.pre(self.ff_norm, x)))
        return x, weights


class DecoderLayer(ResidualLayer):
    """Causal self-attention, cross-attention to the source, then the feed-forward network."""

    def __init__(self, sizes: LayerSizes, self_attention: str) -> None:
        super().__init__(sizes.dropout, sizes.norm_first)
        d_model, heads, attn_dropout = sizes.d_model, sizes.heads, sizes.attn_dropout
        self.self_attn = MultiHeadAttention(
            d_model, heads, attn_dropout, self_attention, causal=True
        )
        self.self_norm = nn.LayerNorm(d_model)
        # always softmax: its weights are the alignment heatmaps
        self.cross_attn = MultiHeadAttention(d_model, heads, attn_dropout, "softmax")
        self.cross_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, sizes.ff_dim, sizes.dropout)
        self.ff_norm = nn.LayerNorm(d_model)

    def forward(
        self,
        x: Tensor,
        cross_keys: Tensor,
        cross_values: Tensor,
        src_mask: Tensor,
        cache: KVCache | EfficientState | None,
        need_weights: bool,
    ) -> tuple[Tensor, KVCache | EfficientState | None, Tensor | None]:
        """``x`` (B, T, D) -> (B, T, D), new cache, cross weights (B, H, T, S) if asked.

        Without a cache ``x`` is the whole target prefix (teacher forcing); with one it is the
        single newest position (B, 1, D) and the cache holds the positions before it.
        """
        h = self.pre(self.self_norm, x)
        if cache is None:
            h, _ = self.self_attn(h)  # (B, T, D), causal
        else:
            h, cache = self.self_attn.step(h, cache)  # (B, 1, D)
        x = self.post(self.self_norm, x, h)
        h, weights = self.cross_attn(
            self.pre(self.cross_norm, x), src_mask, need_weights, kv=(cross_keys, cross_values)
        )  # (B, T, D), (B, H, T, S)
        x = self.post(self.cross_norm, x, h)
        x = self.post(self.ff_norm, x, self.ff(self.pre(self.ff_norm, x)))
        return x, cache, weights


def _check_options(
    src_vocab: int,
    tgt_vocab: int,
    joint_vocab: bool,
    positional: str,
    encoder_self_attention: str,
    decoder_self_attention: str,
) -> None:
    """One clear error for a setting the constructor cannot build."""
    if joint_vocab and src_vocab != tgt_vocab:
        raise ValueError(f"a joint vocabulary has one size, got {src_vocab} and {tgt_vocab}")
    if positional not in POSITIONAL_KINDS:
        raise ValueError(f"unknown positional {positional!r}; valid: {', '.join(POSITIONAL_KINDS)}")
    for name, kind in (("encoder", encoder_self_attention), ("decoder", decoder_self_attention)):
        if kind not in ATTENTION_KINDS:
            raise ValueError(
                f"unknown {name}_self_attention {kind!r}; valid: {', '.join(ATTENTION_KINDS)}"
            )


class TransformerSeq2Seq(nn.Module):
    """Encoder–decoder Transformer implementing the ``Seq2SeqModel`` interface.

    ``tie_embeddings`` shares the target embedding with the output projection, and also the
    source embedding when ``joint_vocab`` (one SentencePiece model for both languages): equal
    sizes are no evidence, since two separate vocabularies of the same size give the same id
    to different pieces.
    ``encoder_self_attention`` / ``decoder_self_attention`` pick ``softmax`` or ``efficient``
    (linear) self-attention; cross-attention is always softmax.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int,
        heads: int,
        enc_layers: int,
        dec_layers: int,
        ff_dim: int,
        dropout: float,
        attn_dropout: float,
        norm_first: bool,
        positional: str,
        max_positions: int,
        tie_embeddings: bool,
        encoder_self_attention: str,
        decoder_self_attention: str,
        joint_vocab: bool = False,
    ) -> None:
        super().__init__()
        _check_options(
            src_vocab,
            tgt_vocab,
            joint_vocab,
            positional,
            encoder_self_attention,
            decoder_self_attention,
        )
        self.max_positions = max_positions
        self.embed_scale = math.sqrt(d_model)

        self.src_embed = nn.Embedding(src_vocab, d_model, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model, padding_idx=PAD_ID)
        # learned positions keep nn.Embedding's N(0, 1) init: the scale of the scaled tokens
        self.positions = (
            SinusoidalPositions(max_positions, d_model)
            if positional == "sinusoidal"
            else nn.Embedding(max_positions, d_model)
        )
        self.dropout = nn.Dropout(dropout)
        sizes = LayerSizes(d_model, heads, ff_dim, dropout, attn_dropout, norm_first)
        self.encoder = nn.ModuleList(
            EncoderLayer(sizes, encoder_self_attention) for _ in range(enc_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(sizes, decoder_self_attention) for _ in range(dec_layers)
        )
        # pre-norm leaves the residual stream unnormalised: one LayerNorm closes each stack
        self.enc_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.dec_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.out_proj = nn.Linear(d_model, tgt_vocab, bias=False)
        self._init_weights(d_model)
        if tie_embeddings:
            self.out_proj.weight = self.tgt_embed.weight
            if joint_vocab:
                self.src_embed.weight = self.tgt_embed.weight

    def _init_weights(self, d_model: int) -> None:
        """Xavier-uniform linear layers; embeddings N(0, 1/d) with a zero PAD row."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
        for embed in (self.src_embed, self.tgt_embed):
            # std d^-1/2 so tokens are ~N(0, 1) after the √d scale, and tied logits stay small
            nn.init.normal_(embed.weight, std=d_model**-0.5)
            nn.init.zeros_(embed.weight[PAD_ID])

    def _embed(self, table: nn.Embedding, tokens: Tensor, positions: Tensor) -> Tensor:
        """Token embeddings · √d + position encodings, then dropout: (B, T) -> (B, T, D)."""
        return self.dropout(table(tokens) * self.embed_scale + self.positions(positions))

    def _check_length(self, length: int) -> None:
        """Positions index a table of ``max_positions`` rows."""
        if length > self.max_positions:
            raise ValueError(
                f"sequence of {length} tokens exceeds max_positions={self.max_positions}"
            )

    def _encode(
        self, src: Tensor, src_mask: Tensor, need_weights: bool
    ) -> tuple[TransformerMemory, Tensor | None]:
        """Memory and, if asked, encoder self-attention weights (B, L, H, S, S)."""
        self._check_length(src.size(1))
        positions = torch.arange(src.size(1), device=src.device)  # (S,)
        x = self._embed(self.src_embed, src, positions)  # (B, S, D)
        weights = []
        for layer in self.encoder:
            x, layer_weights = layer(x, src_mask, need_weights)  # (B, S, D), (B, H, S, S)
            weights.append(layer_weights)
        enc_out = self.enc_norm(x)  # (B, S, D)
        # cross-attention keys and values depend only on the source: project them once
        kv = [layer.cross_attn.project_kv(enc_out) for layer in self.decoder]  # (B, H, S, d_h)
        memory = TransformerMemory(
            enc_out, torch.stack([k for k, _ in kv], dim=1), torch.stack([v for _, v in kv], dim=1)
        )  # (B, L, H, S, d_h) each
        return memory, torch.stack(weights, dim=1) if need_weights else None

    def encode(self, src: Tensor, src_mask: Tensor) -> TransformerMemory:
        """Encode ``src`` (B, S) with right padding; ``src_mask`` (B, S) True on real tokens."""
        return self._encode(src, src_mask, need_weights=False)[0]

    def forward(
        self, src: Tensor, src_mask: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Attention | None]:
        """Teacher forcing: logits (B, T, V) and, if asked, cross and encoder attention."""
        memory, enc_weights = self._encode(src, src_mask, need_weights)
        self._check_length(tgt_in.size(1))
        positions = torch.arange(tgt_in.size(1), device=tgt_in.device)  # (T,)
        x = self._embed(self.tgt_embed, tgt_in, positions)  # (B, T, D)
        cross = []
        for i, layer in enumerate(self.decoder):
            x, _, layer_cross = layer(
                x, memory.cross_keys[:, i], memory.cross_values[:, i], src_mask, None, need_weights
            )  # (B, T, D), (B, H, T, S)
            cross.append(layer_cross)
        logits = self.out_proj(self.dec_norm(x))  # (B, T, V)
        if not need_weights:
            return logits, None
        return logits, Attention(cross=torch.stack(cross, dim=1), encoder=enc_weights)

    def init_state(self, memory: TransformerMemory, src_mask: Tensor) -> TransformerState:
        """Empty self-attention caches: the next token is at position 0."""
        batch = memory.enc_out.size(0)
        position = torch.zeros(batch, dtype=torch.long, device=memory.enc_out.device)  # (B,)
        # like the cross keys: the dtype the projections produce (under autocast too)
        caches = tuple(
            layer.self_attn.empty_cache(batch, memory.cross_keys) for layer in self.decoder
        )
        return TransformerState(position, caches)

    def decode_step(
        self,
        memory: TransformerMemory,
        src_mask: Tensor,
        prev_tokens: Tensor,
        state: TransformerState,
        need_weights: bool = False,
    ) -> tuple[Tensor, TransformerState, Tensor | None]:
        """One step from ``prev_tokens`` (B,): logits (B, V), state, cross (B, L, H, S)."""
        x = self._embed(self.tgt_embed, prev_tokens[:, None], state.position[:, None])  # (B, 1, D)
        caches, cross = [], []
        for i, layer in enumerate(self.decoder):
            x, cache, layer_cross = layer(
                x,
                memory.cross_keys[:, i],
                memory.cross_values[:, i],
                src_mask,
                state.caches[i],
                need_weights,
            )  # (B, 1, D), cache, (B, H, 1, S)
            caches.append(cache)
            cross.append(layer_cross)
        logits = self.out_proj(self.dec_norm(x))[:, 0]  # (B, V)
        new_state = TransformerState(state.position + 1, tuple(caches))
        if not need_weights:
            return logits, new_state, None
        return logits, new_state, torch.stack(cross, dim=1)[:, :, :, 0]  # (B, L, H, S)
