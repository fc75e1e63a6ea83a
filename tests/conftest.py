"""Shared fixtures: composed configs and a small generated parallel corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from seq2seq.config import register_configs
from seq2seq.data.synthetic import write_corpus
from seq2seq.training.trainer import train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

register_configs()
# Tiny test models run fastest on one thread; it also keeps parallel test workers fair.
torch.set_num_threads(1)


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose ``configs/<name>.yaml`` with overrides, as the CLI would."""
    with initialize_config_module(config_module="seq2seq.configs", version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated corpus: train 3,000 / valid 100 / test 100 pairs with gold alignments."""
    directory = tmp_path_factory.mktemp("synthetic")
    write_corpus(directory, {"train": 3000, "valid": 100, "test": 100}, seed=0)
    return directory


def tiny_overrides(corpus: Path, work: Path, model: str = "rnn") -> list[str]:
    """Overrides for a tiny model on the generated corpus that trains in well under a minute."""
    data = [
        "data=files",
        f"data.train_src={corpus / 'train.src'}",
        f"data.train_tgt={corpus / 'train.tgt'}",
        f"data.valid_src={corpus / 'valid.src'}",
        f"data.valid_tgt={corpus / 'valid.tgt'}",
        f"data.test_src={corpus / 'test.src'}",
        f"data.test_tgt={corpus / 'test.tgt'}",
        f"data.cache_dir={work / 'cache'}",
        "data.tokenizer.vocab_size=100",
        "data.batch_tokens=1200",
    ]
    models = {
        "rnn": [
            "model=rnn",
            "model.emb_dim=32",
            "model.hidden_size=64",
            "model.attn_dim=32",
            "model.dropout=0.0",
            "optim.lr=0.005",
        ],
        "transformer": [
            "model=transformer",
            "model.d_model=48",
            "model.heads=2",
            "model.enc_layers=2",
            "model.dec_layers=2",
            "model.ff_dim=96",
            "model.dropout=0.0",
            "model.attn_dropout=0.0",
            "optim.lr=0.005",
            "optim.warmup_steps=50",
        ],
        "transformer_efficient": [
            "model=transformer",
            "model.d_model=48",
            "model.heads=2",
            "model.enc_layers=2",
            "model.dec_layers=2",
            "model.ff_dim=96",
            "model.dropout=0.0",
            "model.attn_dropout=0.0",
            "optim.lr=0.005",
            "optim.warmup_steps=50",
            "model.encoder_self_attention=efficient",
            "model.decoder_self_attention=efficient",
        ],
    }
    train = [
        "train.max_steps=300",
        "train.valid_every=150",
        "train.log_every=25",
        "train.progress=false",
        "valid.num_probes=2",
        "train.seed=1",
        "train.test_at_end=false",  # the tests of the final test decoding turn it on
    ]
    return data + models[model] + train


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated corpus of 400 training pairs, for runs that take seconds."""
    directory = tmp_path_factory.mktemp("small_corpus")
    write_corpus(directory, {"train": 400, "valid": 20, "test": 20}, seed=0)
    return directory


def small_overrides(corpus: Path, work: Path, *changes: str) -> list[str]:
    """:func:`tiny_overrides` for ``small_corpus``: 4 steps, one validation, one thread."""
    quick = [
        "train.max_steps=4",
        "train.valid_every=4",
        "train.log_every=2",
        "train.threads=1",
        "valid.max_sentences=4",
        "valid.num_probes=1",
    ]
    keys = {o.split("=")[0] for o in [*quick, *changes]}
    model = "transformer" if "model=transformer" in changes else "rnn"
    kept = [o for o in tiny_overrides(corpus, work, model) if o.split("=")[0] not in keys]
    return [*kept, *quick, *changes]


@pytest.fixture(scope="session")
def small_run(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of a tiny RNN trained for 4 steps; shared, so never write into it."""
    work = tmp_path_factory.mktemp("small_run")
    train(compose_config("train", small_overrides(small_corpus, work)), work / "run")
    return work / "run"
