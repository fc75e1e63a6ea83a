"""A short run on real Multi30k data (skipped when the shared copy is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.data.corpora import load_split
from seq2seq.evaluation import corpus_scores
from seq2seq.training.trainer import train
from tests.conftest import SHARED_DATA, compose_config

MULTI30K = SHARED_DATA / "multi30k"

pytestmark = pytest.mark.skipif(
    not (MULTI30K / "train.en.gz").is_file(),
    reason=f"Multi30k copy not found at {MULTI30K} (only present on the development machine)",
)


def test_short_real_run_beats_copying_the_source(tmp_path: Path) -> None:
    overrides = [
        f"data.root={MULTI30K}",
        "data.src=en",
        "data.tgt=fr",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.max_train_examples=3000",
        "data.tokenizer.vocab_size=1000",
        "data.batch_tokens=2000",
        "model=rnn",
        "model.emb_dim=64",
        "model.hidden_size=96",
        "model.attn_dim=64",
        "model.dropout=0.1",
        "optim.lr=0.003",
        "train.max_steps=200",
        "train.valid_every=200",
        "train.log_every=50",
        "train.progress=false",
        "valid.max_sentences=200",
        "valid.num_probes=1",
    ]
    metrics = train(compose_config("train", overrides), tmp_path / "run")
    cfg = compose_config("train", overrides)
    valid = load_split(cfg.data, "val")
    # Trivial baseline: output the English source unchanged as the "French" translation.
    copy = corpus_scores(valid.src[:200], valid.tgt[:200], ter=False)["bleu"].score
    assert metrics["valid_bleu"] > copy + 2.0, (metrics, copy)
