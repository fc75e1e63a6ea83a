"""Bad files and faults below the commands: resume, averaging, caches, full disks, run dirs."""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from seq2seq import textio
from seq2seq.cli.evaluate import evaluate
from seq2seq.data.corpora import read_lines
from seq2seq.data.pipeline import prepare_data
from seq2seq.errors import UserError
from seq2seq.textio import InputLines, atomic_output
from seq2seq.training.averaging import average_checkpoints
from seq2seq.training.checkpoint import CheckpointKeeper, load_checkpoint, save_checkpoint
from seq2seq.training.distributed import init_distributed
from seq2seq.training.trainer import Trainer, train
from tests.conftest import compose_config, small_overrides


def make_trainer(changes: list[str], corpus: Path, work: Path) -> Trainer:
    """A Trainer built (and resumed, if asked) in this process, not run."""
    ctx, device = init_distributed("cpu")
    cfg = compose_config("train", small_overrides(corpus, work, *changes))
    return Trainer(cfg, work / "run", ctx, device)


# ------------------------------------------------------------------ resume with new settings


def test_resume_with_a_changed_lr_applies_it_and_says_so(
    small_run: Path, small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    last = small_run / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["optimizer"]["param_groups"][0]["lr"] == 0.005
    with caplog.at_level(logging.WARNING):
        trainer = make_trainer([f"train.resume={last}", "optim.lr=0.001"], small_corpus, tmp_path)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.001  # was silently 0.005
    assert trainer.checkpoint_state()["config"]["optim"]["lr"] == 0.001
    assert "applying changed settings (optim.lr 0.005 -> 0.001)" in caplog.text


def test_resume_with_a_changed_schedule_is_refused_with_the_differences(
    small_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    last = small_run / "checkpoints" / "last.pt"
    changes = [f"train.resume={last}", "optim.schedule=inverse_sqrt", "optim.name=adamw"]
    with pytest.raises(UserError) as err:  # was KeyError: 'lr_lambdas'
        make_trainer(changes, small_corpus, tmp_path)
    assert "optim.name adam -> adamw" in str(err.value)
    assert "optim.schedule plateau -> inverse_sqrt" in str(err.value)


def test_resume_with_unchanged_settings_keeps_the_state(
    small_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    last = small_run / "checkpoints" / "last.pt"
    trainer = make_trainer([f"train.resume={last}"], small_corpus, tmp_path)
    saved = load_checkpoint(last)
    assert trainer.optimizer.state_dict()["param_groups"] == saved["optimizer"]["param_groups"]
    assert trainer.run_id == saved["run_id"]  # a resumed run is the same run


# ------------------------------------------------------------------ run directories


def test_overwrite_true_replaces_the_earlier_run(
    small_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    run_dir = Path(shutil.copytree(small_run, tmp_path / "run"))
    old_id = load_checkpoint(run_dir / "checkpoints" / "last.pt")["run_id"]
    changes = ["train.overwrite=true", "train.max_steps=2", "train.valid_every=2"]
    train(compose_config("train", small_overrides(small_corpus, tmp_path, *changes)), run_dir)
    steps = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt"))
    assert steps == ["step_00000002.pt"]  # the earlier run's step_00000004.pt is gone
    new = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert new["train_state"]["step"] == 2 and new["run_id"] != old_id
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_train_refuses_a_run_dir_with_checkpoints_in_process(
    small_run: Path, small_corpus: Path, tmp_path: Path
) -> None:
    run_dir = Path(shutil.copytree(small_run, tmp_path / "run"))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=r"already holds a training \(step 4, best BLEU"):
        train(compose_config("train", small_overrides(small_corpus, tmp_path)), run_dir)
    assert before == {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


# ------------------------------------------------------------------ averaging


def test_averaging_refuses_checkpoints_of_two_runs(small_run: Path, tmp_path: Path) -> None:
    directory = Path(shutil.copytree(small_run / "checkpoints", tmp_path / "run" / "checkpoints"))
    other = load_checkpoint(directory / "step_00000004.pt")
    other["run_id"] = "another-run"  # a second training that shared the directory
    save_checkpoint(other, directory / "step_00000008.pt")
    paths = sorted(directory.glob("step_*.pt"))
    with pytest.raises(UserError, match="is from another training run"):
        average_checkpoints(paths)
    cfg = compose_config(
        "evaluate", [f"checkpoint={directory / 'step_00000008.pt'}", "average_last=2"]
    )
    with pytest.raises(UserError, match="another training run"):
        evaluate(cfg, tmp_path / "ev")


# ------------------------------------------------------------------ caches and disks


def test_a_damaged_cached_sentencepiece_model_is_rebuilt(
    small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_config("train", small_overrides(small_corpus, tmp_path)).data
    first = prepare_data(cfg, logging.getLogger())
    [cached] = list((tmp_path / "cache" / "tokenizers").glob("*/sentencepiece.model"))
    [copy] = list((tmp_path / "cache" / "prepared").glob("*/tokenizer/sentencepiece.model"))
    good = cached.read_bytes()
    for model in (cached, copy):  # cut short, as by a full disk or a kill
        model.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING):
        again = prepare_data(cfg, logging.getLogger())
    assert f"prepared data damaged: {copy} has {len(good) // 2} bytes" in caplog.text
    assert "is damaged" in caplog.text and "rebuilding it" in caplog.text
    assert again.tokenizer.to_state() == first.tokenizer.to_state()
    assert cached.read_bytes() == good


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make checkpoint writes go to /dev/full, which fails every write with ENOSPC."""
    real = tempfile.mkstemp

    def full_mkstemp(**kwargs: str) -> tuple[int, str]:
        fd, name = real(**kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(textio.tempfile, "mkstemp", full_mkstemp)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_during_a_checkpoint_write_says_so_and_keeps_the_last(
    small_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = load_checkpoint(small_run / "checkpoints" / "last.pt")
    keeper = CheckpointKeeper(tmp_path, keep_last=3)
    keeper.save(state, 4, is_best=True)
    before = (tmp_path / "last.pt").read_bytes()
    disk_full(monkeypatch)
    with pytest.raises(UserError) as err:  # was RuntimeError: unexpected pos 64 vs 0
        keeper.save(state, 8, is_best=False)
    message = str(err.value)
    assert "no space left on device" in message and str(tmp_path / "step_00000008.pt") in message
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt",
        "last.pt",
        "step_00000004.pt",
    ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_failed_output_write_keeps_the_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("before\n", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_output("output", out) as handle:
        handle.write("half of the new")
        raise RuntimeError("the translation failed midway")
    assert out.read_text(encoding="utf-8") == "before\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with pytest.raises(UserError, match="no space left on device"):
        with atomic_output("output", "/dev/full") as handle:
            handle.write("x" * 100_000)


# ------------------------------------------------------------------ lines


def test_input_lines_split_like_the_corpus_reader(tmp_path: Path) -> None:
    data = "a\rb\nc\x1cd\n\u2028e\r\nf\n".encode()
    (tmp_path / "f.txt").write_bytes(data)
    lines = list(InputLines(io.BytesIO(data), "stdin"))
    assert lines == ["a\rb", "c\x1cd", "\u2028e", "f"]  # on \n only; a CRLF's \r goes
    assert [line.strip() for line in lines] == read_lines(tmp_path / "f.txt")


def test_loading_checks_checksums(small_run: Path, tmp_path: Path) -> None:
    data = bytearray((small_run / "checkpoints" / "last.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights: torch alone loads it silently
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match="flipped.pt is damaged .* fails its checksum"):
        load_checkpoint(tmp_path / "flipped.pt")
    torch.testing.assert_close(
        load_checkpoint(small_run / "checkpoints" / "last.pt")["model"],
        torch.load(small_run / "checkpoints" / "last.pt", weights_only=True)["model"],
    )
