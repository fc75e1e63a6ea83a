"""End to end on the generated corpus: train, TensorBoard, evaluate, resume, translate."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.cli.evaluate import evaluate
from seq2seq.cli.translate import run as translate_run
from seq2seq.evaluation import corpus_scores
from seq2seq.training.trainer import train
from tests.conftest import compose_config, tiny_overrides

SCALARS = {
    "train/loss",
    "train/lr",
    "train/tokens_per_sec",
    "train/grad_norm",
    "valid/loss",
    "valid/ppl",
    "valid/bleu",
    "valid/chrf",
}


def shuffled_baseline(corpus: Path) -> float:
    """BLEU of the references in a shuffled order: output unrelated to the input."""
    refs = (corpus / "valid.tgt").read_text(encoding="utf-8").splitlines()
    shuffled = refs[:]
    random.Random(0).shuffle(shuffled)
    return corpus_scores(shuffled, refs, ter=False)["bleu"].score


@pytest.fixture(scope="module", params=["rnn", "transformer"])
def trained(
    request: pytest.FixtureRequest, synthetic_dir: Path, tmp_path_factory
) -> tuple[str, DictConfig, Path, dict]:
    """One tiny training run per model family, shared by the tests below."""
    work = tmp_path_factory.mktemp(request.param)
    cfg = compose_config("train", tiny_overrides(synthetic_dir, work, request.param))
    run_dir = work / "run"
    metrics = train(cfg, run_dir)
    return request.param, cfg, run_dir, metrics


def test_model_learns(trained, synthetic_dir: Path) -> None:
    family, _, _, metrics = trained
    baseline = shuffled_baseline(synthetic_dir)
    assert metrics["step"] == 300
    assert metrics["best_bleu"] > 60.0, f"{family} did not learn: {metrics}"
    assert metrics["best_bleu"] > baseline + 40.0


def test_tensorboard_has_scalars_and_alignment_images(trained) -> None:
    family, _, run_dir, _ = trained
    events = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0}
    )
    events.Reload()
    tags = events.Tags()
    assert SCALARS <= set(tags["scalars"])
    images = set(tags["images"])
    assert {"alignment/0", "alignment/1"} <= images
    assert len(events.Images("alignment/0")) == 2  # one per validation: the step slider
    if family == "transformer":
        assert {"alignment_heads/0", "encoder_attention/0"} <= images
    assert [e.step for e in events.Scalars("valid/bleu")] == [150, 300]


def test_checkpoints_written(trained) -> None:
    _, _, run_dir, _ = trained
    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert {"last.pt", "best.pt", "step_00000150.pt", "step_00000300.pt"} <= names


def test_evaluate_scores_the_checkpoint(trained, synthetic_dir: Path, tmp_path: Path) -> None:
    _, _, run_dir, metrics = trained
    cfg = compose_config(
        "evaluate", [f"checkpoint={run_dir}", "decode.beam_size=3", "data.splits=[valid,test]"]
    )
    results = evaluate(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["results"] == results
    for split in ("valid", "test"):
        for metric in ("bleu", "chrf", "ter"):
            signature = results[split][metric]["signature"]
            assert "nrefs:1" in signature and "version:" in signature
        assert "tok:13a" in results[split]["bleu"]["signature"]
        lines = (tmp_path / f"{split}.hyp.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 100
    assert results["test"]["bleu"]["score"] > 50.0


def test_resume_continues_from_the_saved_step(trained, synthetic_dir: Path, tmp_path: Path) -> None:
    family, cfg, run_dir, _ = trained
    overrides = tiny_overrides(synthetic_dir, tmp_path, family)
    overrides = [o for o in overrides if not o.startswith("train.max_steps")]
    resumed_cfg = compose_config(
        "train",
        [*overrides, "train.max_steps=350", f"train.resume={run_dir / 'checkpoints' / 'last.pt'}"],
    )
    metrics = train(resumed_cfg, tmp_path / "resumed")
    assert metrics["step"] == 350
    events = EventAccumulator(str(tmp_path / "resumed" / "tensorboard"))
    events.Reload()
    assert min(e.step for e in events.Scalars("train/loss")) > 300


def test_resuming_a_finished_run_trains_no_further(
    trained, synthetic_dir: Path, tmp_path: Path
) -> None:
    # e.g. killed after saving its last step: the resumed run must not take one more
    family, cfg, run_dir, _ = trained
    last = run_dir / "checkpoints" / "last.pt"
    resumed_cfg = compose_config(
        "train", [*tiny_overrides(synthetic_dir, tmp_path, family), f"train.resume={last}"]
    )
    metrics = train(resumed_cfg, tmp_path / "resumed")
    assert metrics["step"] == cfg.train.max_steps


def test_translate_keeps_every_line(trained, tmp_path: Path) -> None:
    _, _, run_dir, _ = trained
    source = "the red car sees a dog\n\nevery child likes this big tree\n\n"
    cfg = compose_config("translate", [f"checkpoint={run_dir}", "decode.beam_size=2"])
    out = io.StringIO()
    translate_run(cfg, io.StringIO(source), out)
    lines = out.getvalue().split("\n")[:-1]
    assert len(lines) == 4
    assert lines[1] == "" and lines[3] == ""
    assert lines[0].split() == "le voiture rouge voit un chien".split()


def test_transformer_with_efficient_self_attention_learns(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    cfg = compose_config("train", tiny_overrides(synthetic_dir, tmp_path, "transformer_efficient"))
    metrics = train(cfg, tmp_path / "run")
    assert metrics["best_bleu"] > 60.0, metrics
