"""Every setting is checked before the first step, in one place driven by the schemas."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from seq2seq.config import EvaluateAppConfig, TrainAppConfig, TranslateAppConfig
from seq2seq.config_checks import FREE_NUMBERS, MODEL_SCHEMAS, RULES, check_config
from seq2seq.errors import UserError
from seq2seq.training.trainer import train
from tests.conftest import compose_config, small_overrides

NUMBER_TYPES = {"int", "float", "int | None", "float | None", "list[float]"}


def schemas() -> set[type]:
    """Every dataclass reachable from the three commands' configs."""
    found: set[type] = set()
    todo = [TrainAppConfig, EvaluateAppConfig, TranslateAppConfig, *MODEL_SCHEMAS.values()]
    while todo:
        schema = todo.pop()
        found.add(schema)
        types = typing.get_type_hints(schema)
        nested = [types[spec.name] for spec in dataclasses.fields(schema)]
        todo += [kind for kind in nested if dataclasses.is_dataclass(kind)]
    return found


def test_every_rule_names_a_field_of_its_schema() -> None:
    for schema, rules in RULES.items():
        names = {spec.name for spec in dataclasses.fields(schema)}
        assert set(rules) <= names, (schema.__name__, set(rules) - names)


def test_every_number_in_the_schemas_has_a_rule_or_is_declared_free() -> None:
    forgotten = [
        f"{schema.__name__}.{spec.name}"
        for schema in schemas()
        for spec in dataclasses.fields(schema)
        if str(spec.type) in NUMBER_TYPES
        and spec.name not in RULES.get(schema, {})
        and spec.name not in FREE_NUMBERS.get(schema, set())
    ]
    assert not forgotten, forgotten


@pytest.mark.parametrize(
    "preset",
    [None, "rnn_multi30k", "rnn_tatoeba", "transformer_multi30k"],
)
def test_the_shipped_configs_pass(preset: str | None) -> None:
    overrides = [] if preset is None else [f"+experiment={preset}"]
    check_config(compose_config("train", overrides), TrainAppConfig)


def test_translate_and_evaluate_defaults_pass() -> None:
    check_config(compose_config("translate", ["checkpoint=x.pt"]), TranslateAppConfig)
    check_config(compose_config("evaluate", ["checkpoint=x.pt"]), EvaluateAppConfig)


# Each: the override(s), and what the message must name. The model default is the RNN.
BAD_SETTINGS = [
    (["valid.decode.beam_size=0"], "valid.decode.beam_size=0: must be a number >= 1"),
    (["valid.decode.batch_size=0"], "valid.decode.batch_size=0"),
    (["train.valid_every=0"], "train.valid_every=0"),
    (["train.log_every=0"], "train.log_every=0"),
    (["train.label_smoothing=1.0"], "train.label_smoothing=1.0: must be a number in [0, 1)"),
    (["train.label_smoothing=-0.1"], "train.label_smoothing=-0.1"),
    (["optim.lr=0"], "optim.lr=0.0: must be a number > 0"),
    (["optim.lr=-0.001"], "optim.lr=-0.001"),
    (["optim.betas=[0.9]"], "optim.betas=[0.9]: must be two numbers in [0, 1)"),
    (["optim.betas=[0.9,1.0]"], "optim.betas=[0.9,1.0]"),
    (["data.num_workers=-1"], "data.num_workers=-1: must be a number >= 0"),
    (["train.precision=fp8"], "train.precision=fp8: must be one of fp32, bf16, fp16"),
    (["train.device=tpu"], "train.device=tpu"),
    (["valid.alignment_layer=1"], "valid.alignment_layer=1: an RNN has one attention layer"),
    (
        [
            "model=transformer",
            "model.enc_layers=2",
            "model.dec_layers=2",
            "valid.alignment_layer=2",
        ],
        "valid.alignment_layer=2: the model has 2 layers; use a value from -2 to 1",
    ),
    (
        ["model=transformer", "model.max_positions=100"],
        "model.max_positions=100: training keeps sentences of up to data.max_tokens=128",
    ),
    (["model=transformer", "model.heads=5"], "d_model must be a multiple of heads"),
    (["valid.decode.max_len_a=-1"], "valid.decode.max_len_a=-1.0"),
    (
        ["valid.decode.max_len_a=0", "valid.decode.max_len_b=0"],
        "valid.decode.max_len_a=0 valid.decode.max_len_b=0",
    ),
    (["train.max_steps=0"], "train.max_steps=0"),
    (["data.batch_tokens=0"], "data.batch_tokens=0"),
]


@pytest.mark.parametrize(("changes", "fragment"), BAD_SETTINGS, ids=lambda v: str(v))
def test_a_bad_setting_fails_before_any_work(
    changes: list[str], fragment: str, small_corpus: Path, tmp_path: Path
) -> None:
    cfg = compose_config("train", small_overrides(small_corpus, tmp_path, *changes))
    with pytest.raises(UserError) as err:
        train(cfg, tmp_path / "run")
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_several_bad_settings_are_reported_together(small_corpus: Path, tmp_path: Path) -> None:
    changes = ["valid.decode.beam_size=0", "optim.lr=0", "train.log_every=0"]
    cfg = compose_config("train", small_overrides(small_corpus, tmp_path, *changes))
    with pytest.raises(UserError, match="3 settings cannot work") as err:
        train(cfg, tmp_path / "run")
    for change in ("valid.decode.beam_size=0", "optim.lr=0.0", "train.log_every=0"):
        assert change in str(err.value)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        (["decode.max_len_a=-1", "decode.max_len_b=-5"], "decode.max_len_a=-1"),
        (["decode.beam_size=0"], "decode.beam_size=0"),
        (["decode.nbest=0"], "decode.nbest=0"),
        (["device=tpu"], "device=tpu: must be one of auto, cpu, cuda"),
        (["alignment_format=giza"], "alignment_format=giza"),
    ],
)
def test_translate_settings(changes: list[str], fragment: str) -> None:
    with pytest.raises(UserError) as err:
        check_config(compose_config("translate", ["checkpoint=x.pt", *changes]), TranslateAppConfig)
    assert fragment in str(err.value) and "train.device" not in str(err.value)


def test_evaluate_settings() -> None:
    cfg = compose_config("evaluate", ["checkpoint=x.pt", "average_last=0", "device=tpu"])
    with pytest.raises(UserError, match="2 settings cannot work") as err:
        check_config(cfg, EvaluateAppConfig)
    assert "average_last=0" in str(err.value) and "device=tpu" in str(err.value)
