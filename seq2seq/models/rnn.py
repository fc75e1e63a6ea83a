"""Recurrent encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015).

Encoder: embedding -> bidirectional GRU/LSTM over the real tokens only (packed), whose
states h_j (B, S, 2H) are the attention's keys and values (workflow step 1 of the seed
notes). Decoder, per target step t:

- ``bahdanau``: the query is the top decoder state *before* the step, s_{t-1};
  the context c_t comes from it, then the RNN steps to s_t;
- ``luong_*``: the RNN steps to s_t first and s_t is the query (Luong et al.).

Either way the attentional vector h̃_t = tanh(W_c [s_t ; c_t]) is projected to the
vocabulary, and with input feeding h̃_{t-1} is concatenated to the next step's embedding.
Teacher forcing (``forward``) runs the very same step function as ``decode_step``, so
search reproduces training exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.models.attention.rnn_scorers import build_rnn_attention
from seq2seq.models.base import Attention
from seq2seq.special_tokens import PAD_ID

RNN_CELLS = ("gru", "lstm")


class RNNMemory(NamedTuple):
    """What ``encode`` hands to the decoder; batch first, so search can reorder it."""

    enc_out: Tensor  # (B, S, Dk) encoder states: attention keys and values
    proj_keys: Tensor  # (B, S, A) keys after the scorer's once-per-batch projection
    init_hidden: Tensor  # (B, L, H) decoder initial hidden state, per layer


class RNNState(NamedTuple):
    """Decoder state between steps; batch first (layers second), so search can reorder it."""

    hidden: Tensor  # (B, L, H) hidden state per decoder layer
    cell: Tensor | None  # (B, L, H) LSTM cell state; None for GRU
    att_vec: Tensor | None  # (B, D) previous attentional vector h̃; None without input feeding


class RNNSeq2Seq(nn.Module):
    """Bidirectional GRU/LSTM encoder, GRU/LSTM decoder with Bahdanau or Luong attention.

    Decoder initial hidden state: tanh(Linear(final forward and backward states of every
    encoder layer)), reshaped to one state per decoder layer, so encoder and decoder depths
    may differ. The LSTM decoder's initial cell state is zeros.

    ``luong_dot`` needs the decoder state and the encoder states in one space, so for it the
    2H-wide bidirectional states are mapped to H by a learned linear layer once per batch.

    With ``tie_embeddings`` the output projection shares the target embedding matrix, so
    W_c maps [s_t ; c_t] to ``emb_dim``; otherwise it maps to ``hidden_size``.
    """

    max_positions: int | None = None  # recurrence has no table of positions

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        cell: str,
        emb_dim: int,
        hidden_size: int,
        enc_layers: int,
        dec_layers: int,
        attention: str,
        attn_dim: int,
        input_feeding: bool,
        dropout: float,
        tie_embeddings: bool,
    ) -> None:
        super().__init__()
        if cell not in RNN_CELLS:
            raise ValueError(f"unknown RNN cell {cell!r}; valid options: {', '.join(RNN_CELLS)}")
        self.is_lstm = cell == "lstm"
        self.hidden_size = hidden_size
        self.dec_layers = dec_layers
        self.input_feeding = input_feeding
        self.query_before_step = attention == "bahdanau"
        self.dropout = nn.Dropout(dropout)

        # encoder
        self.src_embed = nn.Embedding(src_vocab, emb_dim, padding_idx=PAD_ID)
        rnn = nn.LSTM if self.is_lstm else nn.GRU
        self.encoder = rnn(
            emb_dim,
            hidden_size,
            num_layers=enc_layers,
            batch_first=True,
            bidirectional=True,
            # nn.GRU/LSTM only drop out between layers and warn when there is just one
            dropout=dropout if enc_layers > 1 else 0.0,
        )
        self.bridge = nn.Linear(enc_layers * 2 * hidden_size, dec_layers * hidden_size)
        key_dim = 2 * hidden_size
        self.enc_out_proj = None
        if attention == "luong_dot":
            self.enc_out_proj = nn.Linear(key_dim, hidden_size, bias=False)
            key_dim = hidden_size

        # decoder
        self.att_dim = emb_dim if tie_embeddings else hidden_size
        self.tgt_embed = nn.Embedding(tgt_vocab, emb_dim, padding_idx=PAD_ID)
        step_cell = nn.LSTMCell if self.is_lstm else nn.GRUCell
        first_in = emb_dim + (self.att_dim if input_feeding else 0)
        self.dec_cells = nn.ModuleList(
            step_cell(first_in if layer == 0 else hidden_size, hidden_size)
            for layer in range(dec_layers)
        )
        self.attention = build_rnn_attention(attention, hidden_size, key_dim, attn_dim)
        self.att_layer = nn.Linear(hidden_size + key_dim, self.att_dim, bias=False)  # W_c
        self.out_proj = nn.Linear(self.att_dim, tgt_vocab)
        if tie_embeddings:
            self.out_proj.weight = self.tgt_embed.weight

    def encode(self, src: Tensor, src_mask: Tensor) -> RNNMemory:
        """Encode ``src`` (B, S) with right padding; ``src_mask`` (B, S) True on real tokens."""
        batch, src_len = src.shape
        lengths = src_mask.sum(dim=1).cpu()  # pack_padded_sequence wants CPU lengths
        emb = self.dropout(self.src_embed(src))  # (B, S, E)
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        packed_out, final = self.encoder(packed)
        enc_out, _ = pad_packed_sequence(
            packed_out, batch_first=True, total_length=src_len
        )  # (B, S, 2H), zeros on padding
        final_hidden = final[0] if self.is_lstm else final  # (enc_layers * 2, B, H)
        final_hidden = final_hidden.transpose(0, 1).reshape(batch, -1)  # (B, enc_layers * 2H)
        init_hidden = torch.tanh(self.bridge(final_hidden)).view(
            batch, self.dec_layers, self.hidden_size
        )  # (B, L, H)
        if self.enc_out_proj is not None:
            enc_out = self.enc_out_proj(enc_out)  # (B, S, H)
        proj_keys = self.attention.project_keys(enc_out)  # (B, S, A)
        return RNNMemory(enc_out, proj_keys, init_hidden)

    def init_state(self, memory: RNNMemory, src_mask: Tensor) -> RNNState:
        """The decoder state before the first step."""
        hidden = memory.init_hidden  # (B, L, H)
        cell = torch.zeros_like(hidden) if self.is_lstm else None
        att_vec = hidden.new_zeros(hidden.size(0), self.att_dim) if self.input_feeding else None
        return RNNState(hidden, cell, att_vec)

    def _step(
        self, memory: RNNMemory, src_mask: Tensor, emb: Tensor, state: RNNState
    ) -> tuple[Tensor, RNNState, Tensor]:
        """One decoder step from the embedded previous token (B, E): (h̃_t, state, α_t)."""
        if self.query_before_step:
            context, alpha = self.attention(
                state.hidden[:, -1], memory.proj_keys, memory.enc_out, src_mask
            )  # (B, Dk), (B, S)
        x = torch.cat([emb, state.att_vec], dim=-1) if self.input_feeding else emb
        hiddens, cells = [], []
        for layer, step_cell in enumerate(self.dec_cells):
            if layer > 0:
                x = self.dropout(x)
            if self.is_lstm:
                x, c = step_cell(x, (state.hidden[:, layer], state.cell[:, layer]))
                cells.append(c)
            else:
                x = step_cell(x, state.hidden[:, layer])
            hiddens.append(x)
        # x is now s_t, the top layer's new state (B, H)
        if not self.query_before_step:
            context, alpha = self.attention(x, memory.proj_keys, memory.enc_out, src_mask)
        att_vec = self.dropout(torch.tanh(self.att_layer(torch.cat([x, context], dim=-1))))
        new_state = RNNState(
            hidden=torch.stack(hiddens, dim=1),  # (B, L, H)
            cell=torch.stack(cells, dim=1) if self.is_lstm else None,
            att_vec=att_vec if self.input_feeding else None,
        )
        return att_vec, new_state, alpha

    def forward(
        self, src: Tensor, src_mask: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Attention]:
        """Teacher forcing: logits (B, T, V) and cross-attention (B, 1, 1, T, S), always."""
        memory = self.encode(src, src_mask)
        state = self.init_state(memory, src_mask)
        emb = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E), embedded once for all steps
        att_vecs, alphas = [], []
        for t in range(tgt_in.size(1)):
            att_vec, state, alpha = self._step(memory, src_mask, emb[:, t], state)
            att_vecs.append(att_vec)
            alphas.append(alpha)
        # the vocabulary projection is the costliest matmul: one call over all steps
        logits = self.out_proj(torch.stack(att_vecs, dim=1))  # (B, T, V)
        cross = torch.stack(alphas, dim=1)[:, None, None]  # (B, 1, 1, T, S)
        return logits, Attention(cross=cross)

    def decode_step(
        self,
        memory: RNNMemory,
        src_mask: Tensor,
        prev_tokens: Tensor,
        state: RNNState,
        need_weights: bool = False,
    ) -> tuple[Tensor, RNNState, Tensor]:
        """One step from ``prev_tokens`` (B,): logits (B, V), state, cross (B, 1, 1, S)."""
        emb = self.dropout(self.tgt_embed(prev_tokens))  # (B, E)
        att_vec, state, alpha = self._step(memory, src_mask, emb, state)
        return self.out_proj(att_vec), state, alpha[:, None, None]
