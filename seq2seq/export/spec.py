"""A CTranslate2 ``TransformerSpec`` filled from a :class:`TransformerSeq2Seq`'s weights.

Every tensor of the model's ``state_dict`` goes into exactly one slot of the spec, and the
conversion fails if one is left over, so a weight the spec would silently drop (and a
translation that would silently differ) is caught here, not in production. What the model
computes and where CTranslate2 computes the same:

- token embedding · √d (``scale_embeddings``) + a position table looked up from position 0;
  the sinusoidal table is written out as well, since CTranslate2's own one puts the sines
  and cosines in two halves and seq2seq interleaves them;
- pre-norm (LayerNorm before each sublayer, one final LayerNorm per stack) or post-norm
  (LayerNorm after each residual sum); ``torch.nn.LayerNorm``'s epsilon, 1e-5;
- self-attention's separate Q, K, V projections fused into one matrix (cross-attention: K and
  V fused), queries scaled by 1/√d_h, ReLU feed-forward, an output projection without bias.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.data.tokenizer import Tokenizer
from seq2seq.models.attention.multihead import MultiHeadAttention
from seq2seq.models.transformer import SinusoidalPositions, TransformerSeq2Seq
from seq2seq.special_tokens import BOS_ID, EOS_ID, UNK_ID

LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, which every norm of the model uses


class Conversion(NamedTuple):
    """A validated spec and the ``state_dict`` names it took, in the order it took them."""

    spec: Any  # ctranslate2.specs.TransformerSpec (ctranslate2 is imported only when used)
    mapped: list[str]


class _Weights:
    """The model's tensors by ``state_dict`` name, each handed out once."""

    def __init__(self, model: nn.Module) -> None:
        self._left = {name: t.detach().float().cpu() for name, t in model.state_dict().items()}
        self.taken: list[str] = []

    def take(self, name: str) -> Tensor:
        """The tensor ``name``; asking for one twice (or one that does not exist) is a bug."""
        self.taken.append(name)
        return self._left.pop(name)

    def check_all_taken(self) -> None:
        """Raise if a tensor of the model found no slot in the spec."""
        if self._left:
            raise ValueError(f"weights without a CTranslate2 slot: {sorted(self._left)}")


def _linear(spec: Any, weights: _Weights, prefix: str, bias: bool = True) -> None:
    spec.weight = weights.take(f"{prefix}.weight")  # (out, in), as torch stores it
    if bias:
        spec.bias = weights.take(f"{prefix}.bias")


def _layer_norm(spec: Any, weights: _Weights, prefix: str) -> None:
    spec.gamma = weights.take(f"{prefix}.weight")
    spec.beta = weights.take(f"{prefix}.bias")


def _fused(spec: Any, weights: _Weights, prefix: str, names: tuple[str, ...]) -> None:
    """Projections ``names`` of ``prefix`` stacked into one (sum of outs, in) linear layer."""
    spec.weight = torch.cat([weights.take(f"{prefix}.{n}.weight") for n in names])
    spec.bias = torch.cat([weights.take(f"{prefix}.{n}.bias") for n in names])


def _attention(spec: Any, weights: _Weights, prefix: str, self_attention: bool) -> None:
    """Self-attention: linear[0] = Q|K|V; cross-attention: linear[0] = Q, linear[1] = K|V."""
    if self_attention:
        _fused(spec.linear[0], weights, prefix, ("q_proj", "k_proj", "v_proj"))
    else:
        _linear(spec.linear[0], weights, f"{prefix}.q_proj")
        _fused(spec.linear[1], weights, prefix, ("k_proj", "v_proj"))
    _linear(spec.linear[-1], weights, f"{prefix}.out_proj")


def _feed_forward(spec: Any, weights: _Weights, prefix: str) -> None:
    """Linear -> ReLU -> Linear (``nn.Sequential`` indices 0 and 3) and its LayerNorm."""
    _linear(spec.linear_0, weights, f"{prefix}.ff.0")
    _linear(spec.linear_1, weights, f"{prefix}.ff.3")
    _layer_norm(spec.layer_norm, weights, f"{prefix}.ff_norm")


def _encoder(spec: Any, model: TransformerSeq2Seq, weights: _Weights) -> None:
    spec.embeddings[0].weight = weights.take("src_embed.weight")
    for i, layer in enumerate(spec.layer):
        prefix = f"encoder.{i}"
        _attention(layer.self_attention, weights, f"{prefix}.self_attn", self_attention=True)
        _layer_norm(layer.self_attention.layer_norm, weights, f"{prefix}.self_norm")
        _feed_forward(layer.ffn, weights, prefix)
    if isinstance(model.enc_norm, nn.LayerNorm):
        _layer_norm(spec.layer_norm, weights, "enc_norm")


def _decoder(spec: Any, model: TransformerSeq2Seq, weights: _Weights) -> None:
    spec.embeddings.weight = weights.take("tgt_embed.weight")
    for i, layer in enumerate(spec.layer):
        prefix = f"decoder.{i}"
        _attention(layer.self_attention, weights, f"{prefix}.self_attn", self_attention=True)
        _layer_norm(layer.self_attention.layer_norm, weights, f"{prefix}.self_norm")
        _attention(layer.attention, weights, f"{prefix}.cross_attn", self_attention=False)
        _layer_norm(layer.attention.layer_norm, weights, f"{prefix}.cross_norm")
        _feed_forward(layer.ffn, weights, prefix)
    if isinstance(model.dec_norm, nn.LayerNorm):
        _layer_norm(spec.layer_norm, weights, "dec_norm")
    _linear(spec.projection, weights, "out_proj", bias=False)


def _position_table(model: TransformerSeq2Seq, weights: _Weights) -> Tensor:
    """The (max_positions, D) table both stacks add; the sinusoidal one is not a weight."""
    if isinstance(model.positions, SinusoidalPositions):
        return model.positions.table.float().cpu()
    return weights.take("positions.weight")


def transformer_spec(model: TransformerSeq2Seq, tokenizer: Tokenizer, heads: int) -> Conversion:
    """The filled and validated spec, its vocabularies in SentencePiece id order."""
    from ctranslate2.specs import transformer_spec as ct2

    for module in model.modules():
        if isinstance(module, MultiHeadAttention) and module.kind != "softmax":
            raise ValueError(f"{module.kind} attention has no CTranslate2 equivalent")
    pre_norm = isinstance(model.enc_norm, nn.LayerNorm)
    spec = ct2.TransformerSpec(
        ct2.TransformerEncoderSpec(len(model.encoder), heads, pre_norm=pre_norm),
        ct2.TransformerDecoderSpec(len(model.decoder), heads, pre_norm=pre_norm),
    )
    weights = _Weights(model)
    table = _position_table(model, weights)
    spec.encoder.position_encodings.encodings = table
    spec.decoder.position_encodings.encodings = table
    _encoder(spec.encoder, model, weights)
    _decoder(spec.decoder, model, weights)
    weights.check_all_taken()
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    unk, bos, eos = tokenizer.tgt_pieces([UNK_ID, BOS_ID, EOS_ID])
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = unk, bos, eos
    spec.config.decoder_start_token = bos  # the native decoder starts from BOS as well
    spec.register_source_vocabulary(tokenizer.src_pieces(range(tokenizer.src_vocab_size)))
    spec.register_target_vocabulary(tokenizer.tgt_pieces(range(tokenizer.tgt_vocab_size)))
    spec.validate()
    return Conversion(spec, weights.taken)
