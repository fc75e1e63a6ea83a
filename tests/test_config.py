"""Every config group option composes; typos and wrong types fail at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from tests.conftest import compose_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def group_options(group: str) -> list[str]:
    """The YAML options of a config group."""
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["data", "model", "optim"])
def test_every_group_option_composes(group: str) -> None:
    options = group_options(group)
    assert options, f"no options in configs/{group}"
    for option in options:
        cfg = compose_config("train", [f"{group}={option}"])
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize("experiment", [p.stem for p in (CONFIGS / "experiment").glob("*.yaml")])
def test_experiment_presets_compose(experiment: str) -> None:
    cfg = compose_config("train", [f"+experiment={experiment}"])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_model_picks_its_default_schedule() -> None:
    assert compose_config("train", []).optim.schedule == "plateau"
    transformer = compose_config("train", ["model=transformer"])
    assert transformer.optim.schedule == "inverse_sqrt"
    assert compose_config("train", ["model=transformer", "optim=adam"]).optim.schedule == "plateau"


def test_overrides_reach_the_config() -> None:
    cfg = compose_config("train", ["model=rnn", "data.src=de", "data.tgt=en", "optim.lr=3e-4"])
    assert (cfg.data.src, cfg.data.tgt, cfg.optim.lr) == ("de", "en", 3e-4)


@pytest.mark.parametrize(
    "override", ["model.hiden_size=3", "optim.learning_rate=1", "trian.max_steps=5"]
)
def test_mistyped_key_fails(override: str) -> None:
    with pytest.raises(ConfigCompositionException, match="Could not override"):
        compose_config("train", [override])


def test_wrongly_typed_value_fails() -> None:
    with pytest.raises(ConfigCompositionException, match="max_steps"):
        compose_config("train", ["train.max_steps=many"])


def test_composed_config_is_struct() -> None:
    cfg = compose_config("train", [])
    with pytest.raises((ConfigKeyError, ValidationError, AttributeError)):
        cfg.train.not_a_key = 1


@pytest.mark.parametrize("name", ["evaluate", "translate"])
def test_inference_configs_need_a_checkpoint(name: str) -> None:
    cfg = compose_config(name, ["checkpoint=some.pt"])
    assert cfg.checkpoint == "some.pt"
    with pytest.raises(ConfigCompositionException):
        compose_config(name, ["checkpont=some.pt"])
