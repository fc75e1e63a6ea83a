"""Build a model from its config: one function, no registry."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from torch import nn

from seq2seq.config import RNNConfig, TransformerConfig
from seq2seq.errors import UserError
from seq2seq.models.rnn import RNNSeq2Seq
from seq2seq.models.transformer import TransformerSeq2Seq

FAMILIES = {"rnn": (RNNConfig, RNNSeq2Seq), "transformer": (TransformerConfig, TransformerSeq2Seq)}


def build_model(
    model_cfg: dict[str, Any], src_vocab: int, tgt_vocab: int, *, joint_vocab: bool
) -> nn.Module:
    """Instantiate the family named by ``model_cfg["family"]`` with the config's fields.

    ``joint_vocab`` says whether source and target share one SentencePiece model; only then
    may a Transformer tie its source embedding to the target one.
    """
    family = model_cfg.get("family")
    if family not in FAMILIES:
        raise UserError(f"model.family={family!r} is unknown; use model=rnn or model=transformer.")
    schema, cls = FAMILIES[family]
    names = [f.name for f in fields(schema) if f.name != "family"]
    unknown = set(model_cfg) - set(names) - {"family"}
    if unknown:
        raise UserError(f"Unknown {family} model settings {sorted(unknown)}; valid: {names}.")
    settings = {n: model_cfg[n] for n in names if n in model_cfg}
    if family == "transformer":
        settings["joint_vocab"] = joint_vocab
    try:
        return cls(src_vocab, tgt_vocab, **settings)
    except ValueError as err:  # the constructors reject unknown option values
        raise UserError(f"Invalid {family} model setting: {err}") from None
