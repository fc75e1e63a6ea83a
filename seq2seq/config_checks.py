"""Every setting checked before any work, in one place, against the schemas of config.py.

The schema dataclasses give the shape and the types (checked by OmegaConf when the config
is composed); :data:`RULES` gives, per schema and field, the values that can work. One walk
over the composed config applies them, then :data:`CROSS_CHECKS` compare settings with each
other. All problems are reported together, in one line, each naming its override.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig

from seq2seq.config import (
    QUANTIZATIONS,
    DataConfig,
    DecodeConfig,
    EvaluateAppConfig,
    ExportAppConfig,
    OptimConfig,
    RNNConfig,
    TokenizerConfig,
    TrainAppConfig,
    TrainConfig,
    TransformerConfig,
    TranslateAppConfig,
    ValidConfig,
)
from seq2seq.errors import UserError
from seq2seq.readout import READINGS


@dataclass(frozen=True)
class Rule:
    """A predicate on one setting's value and the phrase that says what it accepts."""

    accepts: Callable[[Any], bool]
    expects: str


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: float) -> Rule:
    """A finite number >= ``low``."""
    return Rule(lambda v: _number(v) and v >= low, f"a number >= {low:g}")


def above(low: float) -> Rule:
    """A finite number > ``low``."""
    return Rule(lambda v: _number(v) and v > low, f"a number > {low:g}")


def unit_interval(upper_open: bool = True) -> Rule:
    """A number in [0, 1) (or [0, 1] with ``upper_open=False``)."""
    if upper_open:
        return Rule(lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
    return Rule(lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]")


def one_of(*choices: str) -> Rule:
    """One of the given names."""
    return Rule(lambda v: v in choices, f"one of {', '.join(choices)}")


def optional(rule: Rule) -> Rule:
    """``rule``, or null."""
    return Rule(lambda v: v is None or rule.accepts(v), f"{rule.expects}, or null")


PATHS = Rule(
    lambda v: (
        v is None
        or isinstance(v, str)
        or (isinstance(v, list) and bool(v) and all(isinstance(p, str) for p in v))
    ),
    "a file path or a non-empty list of file paths, or null",
)


def pair_in_unit_interval() -> Rule:
    """Two numbers in [0, 1) (Adam's betas)."""
    return Rule(
        lambda v: (
            isinstance(v, Sequence | ListConfig)
            and len(v) == 2
            and all(_number(b) and 0 <= b < 1 for b in v)
        ),
        "two numbers in [0, 1), e.g. [0.9,0.98]",
    )


DEVICE = one_of("auto", "cpu", "cuda")
ALIGNMENT_FORMAT = optional(one_of("pharaoh"))
READING = optional(one_of(*READINGS))

# Per schema, the fields whose values are constrained. Fields not listed take any value of
# their type (names, paths, seeds, text); tests/test_bad_input_config.py checks every key
# names a real field and every number in the schemas is either listed or declared free.
RULES: dict[type, dict[str, Rule]] = {
    TokenizerConfig: {
        "model_type": one_of("unigram", "bpe"),
        "vocab_size": at_least(8),
        "character_coverage": Rule(
            lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1], e.g. 1.0 or 0.9995"
        ),
        "input_sentence_size": at_least(0),
    },
    DataConfig: {
        "name": one_of("multi30k", "tatoeba", "files"),
        "valid_fraction": unit_interval(),
        "test_fraction": unit_interval(),
        "max_chars": at_least(1),
        "max_tokens": at_least(1),
        "max_length_ratio": at_least(1),
        "max_train_examples": optional(at_least(1)),
        "batch_tokens": at_least(1),
        "num_workers": at_least(0),
        "shard_size": at_least(1),
        "train_src": PATHS,
        "train_tgt": PATHS,
        "train_tsv": PATHS,
        "extra_train_src": PATHS,
        "extra_train_tgt": PATHS,
    },
    RNNConfig: {
        "cell": one_of("gru", "lstm"),
        "emb_dim": at_least(1),
        "hidden_size": at_least(1),
        "enc_layers": at_least(1),
        "dec_layers": at_least(1),
        "attention": one_of("bahdanau", "luong_dot", "luong_general"),
        "attn_dim": at_least(1),
        "dropout": unit_interval(),
    },
    TransformerConfig: {
        "d_model": at_least(1),
        "heads": at_least(1),
        "enc_layers": at_least(1),
        "dec_layers": at_least(1),
        "ff_dim": at_least(1),
        "dropout": unit_interval(),
        "attn_dropout": unit_interval(),
        "positional": one_of("sinusoidal", "learned"),
        "max_positions": at_least(2),
        "encoder_self_attention": one_of("softmax", "efficient"),
        "decoder_self_attention": one_of("softmax", "efficient"),
    },
    OptimConfig: {
        "name": one_of("adam", "adamw"),
        "lr": above(0),
        "betas": pair_in_unit_interval(),
        "eps": at_least(0),
        "weight_decay": at_least(0),
        "clip_norm": at_least(0),
        "schedule": one_of("plateau", "inverse_sqrt", "constant"),
        "warmup_steps": at_least(0),
        "plateau_factor": Rule(lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
        "plateau_patience": at_least(0),
        "min_lr": at_least(0),
    },
    TrainConfig: {
        "device": DEVICE,
        "max_steps": at_least(1),
        "max_epochs": at_least(1),
        "max_minutes": optional(above(0)),
        "label_smoothing": unit_interval(),
        "accum_steps": at_least(1),
        "precision": one_of("fp32", "bf16", "fp16"),
        "log_every": at_least(1),
        "valid_every": at_least(1),
        "patience": at_least(1),
        "keep_last": at_least(1),
        "max_nonfinite": at_least(1),
        "threads": optional(at_least(1)),
    },
    ValidConfig: {
        "alignment_reading": READING,
        "max_sentences": optional(at_least(1)),
        "num_probes": at_least(0),
    },
    DecodeConfig: {
        "beam_size": at_least(1),
        "length_penalty": at_least(0),
        "max_len_a": at_least(0),
        "batch_size": at_least(1),
        "nbest": at_least(1),
    },
    EvaluateAppConfig: {
        "alignment_reading": READING,
        "average_last": at_least(1),
        "device": DEVICE,
        "alignment_format": ALIGNMENT_FORMAT,
        "threads": optional(at_least(1)),
    },
    TranslateAppConfig: {
        "alignment_reading": READING,
        "device": DEVICE,
        "alignment_format": ALIGNMENT_FORMAT,
        "threads": optional(at_least(1)),
    },
    ExportAppConfig: {
        "format": one_of("ctranslate2"),
        "quantization": one_of(*QUANTIZATIONS),
    },
}

# Numeric fields that take any value of their type (so the completeness test can tell an
# unconstrained number from a forgotten rule).
FREE_NUMBERS: dict[type, set[str]] = {
    DataConfig: {"split_seed"},
    TrainConfig: {"seed"},
    ValidConfig: {"alignment_layer"},  # checked against the model below
    DecodeConfig: {"max_len_b"},
    EvaluateAppConfig: {"alignment_layer"},  # checked against the checkpoint's model
    TranslateAppConfig: {"alignment_layer"},
}

MODEL_SCHEMAS: dict[str, type] = {"rnn": RNNConfig, "transformer": TransformerConfig}


def schema_problems(node: Any, schema: type, prefix: str = "") -> list[str]:
    """``key=value: expects ...`` for every value of ``node`` its schema's rules reject."""
    problems = []
    rules = RULES.get(schema, {})
    types = typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        key = f"{prefix}{spec.name}"
        value = node.get(spec.name) if isinstance(node, DictConfig) else None
        if spec.name == "model" and schema is TrainAppConfig:
            family = value.get("family") if isinstance(value, DictConfig) else None
            if family not in MODEL_SCHEMAS:
                problems.append(f"model.family={family}: use model=rnn or model=transformer")
                continue
            problems += schema_problems(value, MODEL_SCHEMAS[family], f"{key}.")
        elif dataclasses.is_dataclass(types[spec.name]):  # a nested section, e.g. valid.decode
            problems += schema_problems(value, types[spec.name], f"{key}.")
        elif spec.name in rules and not rules[spec.name].accepts(_plain(value)):
            problems.append(f"{key}={_show(value)}: must be {rules[spec.name].expects}")
    return problems


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, ListConfig) else value


def _show(value: Any) -> str:
    if isinstance(value, ListConfig):
        return "[" + ",".join(str(v) for v in value) + "]"
    return "null" if value is None else str(value)


def decode_length_problems(node: Any, prefix: str) -> list[str]:
    """Length caps that leave no room for a single token: no output at all."""
    a, b = node.max_len_a, node.max_len_b
    if _number(a) and a >= 0 and a + b < 1:
        return [
            f"{prefix}max_len_a={a:g} {prefix}max_len_b={b}: a one-token sentence would get "
            f"{math.floor(a + b)} output tokens; use max_len_a >= 0 and max_len_a + max_len_b >= 1"
        ]
    return []


def attention_layers(model_cfg: Any) -> tuple[int, str]:
    """How many layers of attention a model has that a layer index may pick, and why."""
    if model_cfg.get("family") == "transformer":
        layers = min(model_cfg["enc_layers"], model_cfg["dec_layers"])
        return layers, f"the model has {layers} layers"
    return 1, "an RNN has one attention layer"


def layer_problems(layer: int | None, setting: str, model_cfg: Any) -> list[str]:
    """A layer index (negative counts from the top) outside the model's layers."""
    count, why = attention_layers(model_cfg)
    if layer is None or -count <= layer < count:
        return []
    return [f"{setting}={layer}: {why}; use a value from {-count} to {count - 1} (-1: the last)"]


def train_cross_problems(cfg: Any) -> list[str]:
    """Settings of seq2seq-train that only fail together."""
    problems = decode_length_problems(cfg.valid.decode, "valid.decode.")
    problems += decode_length_problems(cfg.decode, "decode.")
    model = cfg.model
    if model.get("family") == "transformer":
        if _number(model.d_model) and _number(model.heads) and model.heads >= 1:
            if model.d_model % model.heads:
                problems.append(
                    f"model.d_model={model.d_model} model.heads={model.heads}: d_model must be "
                    f"a multiple of heads"
                )
        needed = cfg.data.max_tokens + 1  # the longest kept target, plus BOS
        if _number(model.max_positions) and model.max_positions < needed:
            problems.append(
                f"model.max_positions={model.max_positions}: training keeps sentences of up to "
                f"data.max_tokens={cfg.data.max_tokens} subwords, which need {needed} positions; "
                f"raise model.max_positions or lower data.max_tokens"
            )
    return problems + layer_problems(cfg.valid.alignment_layer, "valid.alignment_layer", model)


CROSS_CHECKS: dict[type, Callable[[Any], list[str]]] = {
    TrainAppConfig: train_cross_problems,
    EvaluateAppConfig: lambda cfg: decode_length_problems(cfg.decode, "decode."),
    TranslateAppConfig: lambda cfg: decode_length_problems(cfg.decode, "decode."),
}


def raise_problems(problems: list[str]) -> None:
    """One :class:`UserError` listing every problem, or nothing when there are none."""
    if len(problems) == 1:
        raise UserError(f"{problems[0]}.")
    if problems:
        raise UserError(f"{len(problems)} settings cannot work: " + "; ".join(problems) + ".")


def check_config(cfg: DictConfig, schema: type) -> None:
    """Raise one :class:`UserError` naming every setting of ``cfg`` that cannot work."""
    problems = schema_problems(cfg, schema)
    if not problems and schema in CROSS_CHECKS:  # cross checks assume each value is sane
        problems = CROSS_CHECKS[schema](cfg)
    raise_problems(problems)
