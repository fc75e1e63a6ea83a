"""The end of a training run: test scores of best.pt, metrics.json, the summary, the budget
bar, and a signal's checkpoint written before the validation that follows it."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.cli.evaluate import evaluate
from seq2seq.errors import Interrupted
from seq2seq.training import validation as validation_module
from seq2seq.training.distributed import init_distributed
from seq2seq.training.report import BudgetBar
from seq2seq.training.trainer import Trainer, train
from tests.conftest import compose_config, tiny_overrides

STEPS = 40


def short_run(corpus: Path, work: Path, *extra: str) -> list[str]:
    """The tiny RNN for STEPS steps, validating twice, testing at the end with beam 2."""
    return [
        *tiny_overrides(corpus, work, "rnn"),
        f"train.max_steps={STEPS}",
        f"train.valid_every={STEPS // 2}",
        "train.device=cpu",
        "valid.max_sentences=8",
        "valid.num_probes=0",
        "train.test_at_end=true",
        "decode.beam_size=2",
        *extra,
    ]


def test_the_run_ends_with_test_scores_of_best_pt_a_summary_and_metrics_json(
    synthetic_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        metrics = train(compose_config("train", short_run(synthetic_dir, tmp_path)), run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert saved["stop_reason"] == f"reached train.max_steps={STEPS}"
    assert saved["steps"] == STEPS and saved["wall_minutes"] > 0
    assert saved["best_valid_bleu"] == metrics["best_bleu"]
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert saved["best_step"] == best["train_state"]["step"] in (STEPS // 2, STEPS)
    assert saved["best_checkpoint"] == str((run_dir / "checkpoints" / "best.pt").resolve())
    test = saved["test"]["test"]
    assert set(test) == {"bleu", "chrf", "ter"}
    assert all("nrefs:1" in test[m]["signature"] for m in test)
    assert metrics["test_test_bleu"] == test["bleu"]["score"]

    # the same scores as seq2seq-evaluate gives best.pt with the same search
    evaluated = evaluate(
        compose_config(
            "evaluate", [f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}", "decode.beam_size=2"]
        ),
        tmp_path / "eval",
    )
    assert {m: test[m]["score"] for m in test} == {m: evaluated["test"][m]["score"] for m in test}

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("test/test/bleu")] == [
        pytest.approx(test["bleu"]["score"])
    ]

    log_text = caplog.text
    assert f"test test | BLEU {test['bleu']['score']:.2f} | nrefs:1" in log_text
    best_pt = saved["best_checkpoint"]
    for line in (
        f"training stopped: reached train.max_steps={STEPS}",
        f"best valid BLEU {metrics['best_bleu']:.2f} at step {saved['best_step']}",
        f"tensorboard --logdir {(run_dir / 'tensorboard').resolve()}",
        f"seq2seq-evaluate checkpoint={best_pt}",
        f"| seq2seq-translate checkpoint={best_pt}",
    ):
        assert line in log_text, line


def test_test_at_end_false_skips_the_test(synthetic_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = short_run(synthetic_dir, tmp_path, "train.test_at_end=false", "train.max_steps=5")
    metrics = train(compose_config("train", overrides), run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert saved["test"] == {} and not any(k.startswith("test_") for k in metrics)


def test_a_bad_test_split_fails_at_start_up(synthetic_dir: Path, tmp_path: Path) -> None:
    overrides = short_run(synthetic_dir, tmp_path, "data.test_splits=[tset]")
    with pytest.raises(Exception, match=r"no split 'tset'.*train\.test_at_end=false"):
        Trainer(compose_config("train", overrides), tmp_path / "run", *init_distributed("cpu"))


def test_the_bar_shows_minutes_of_the_time_budget() -> None:
    cfg = OmegaConf.create({"max_minutes": 10.0, "max_steps": 20000})
    bar = BudgetBar(cfg, 0, time.monotonic() - 120.0, enabled=True)
    bar.show(37, {"loss": "1.234"})
    text = str(bar.bar)
    bar.close()
    assert "2.0/10 min" in text and "step=37" in text and "20000" not in text
    steps = BudgetBar(OmegaConf.create({"max_minutes": None, "max_steps": 300}), 0, 0.0, True)
    steps.show(30, {})
    text = str(steps.bar)
    steps.close()
    assert "30/300" in text


def test_a_signal_saves_the_checkpoint_before_validating(
    synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's grace period may end while the validation set is decoded: last.pt of the
    signalled step must already be on disk when that validation starts."""
    overrides = short_run(synthetic_dir, tmp_path, "train.valid_every=1000")
    trainer = Trainer(
        compose_config("train", overrides), tmp_path / "run", *init_distributed("cpu")
    )
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    update = trainer._update

    def update_then_signal(micro: list, window: object) -> None:
        update(micro, window)
        if trainer.state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # caught by the trainer's handler

    on_disk_at_validation: list[int | None] = []
    validate = validation_module.validate

    def recording_validate(*args: object) -> object:
        saved = torch.load(last, weights_only=True) if last.exists() else None
        on_disk_at_validation.append(saved["train_state"]["step"] if saved else None)
        return validate(*args)

    trainer._update = update_then_signal
    monkeypatch.setattr(validation_module, "validate", recording_validate)
    with pytest.raises(Interrupted, match="SIGTERM received: checkpoint saved at step 3"):
        trainer.run()
    assert on_disk_at_validation == [3]
    assert torch.load(last, weights_only=True)["train_state"]["last_valid_step"] == 3
