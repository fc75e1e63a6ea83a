"""Checkpoints: atomic writes, safe loading, clear errors, keep-last-N with best kept."""

from __future__ import annotations

import errno
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from seq2seq.errors import UserError
from seq2seq.training import checkpoint as ckpt_module
from seq2seq.training.averaging import average_checkpoints
from seq2seq.training.checkpoint import CheckpointKeeper, load_checkpoint, save_checkpoint
from seq2seq.training.state import TrainState


def state(value: float) -> dict:
    """A minimal checkpoint-shaped dict."""
    return {
        "model": {"w": torch.full((2, 2), value)},
        "model_config": {"family": "rnn"},
        "tokenizer": {"joint": True},
    }


def test_round_trip(tmp_path: Path) -> None:
    save_checkpoint(state(1.5), tmp_path / "a.pt")
    loaded = load_checkpoint(tmp_path / "a.pt")
    assert torch.equal(loaded["model"]["w"], torch.full((2, 2), 1.5))


def test_failed_write_leaves_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(state(1.0), path)

    def full_disk(obj: object, handle) -> None:  # writes a little, then the disk is full
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_module.torch, "save", full_disk)
    with pytest.raises(UserError, match="no space left on device"):  # one line, not a traceback
        save_checkpoint(state(2.0), path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((2, 2), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "temporary file left behind"


class Payload:
    """Unpickling this runs code: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = {**state(0.0), "extra": Payload(marker)}
    torch.save(evil, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_truncated_checkpoint_gives_clear_error(tmp_path: Path) -> None:
    save_checkpoint(state(1.0), tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "bad.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a seq2seq checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(UserError, match="No best.pt"):
        load_checkpoint(tmp_path)


def test_keeper_keeps_last_n_and_best(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, keep_last=2)
    for step, best in [(1, True), (2, False), (3, False), (4, False)]:
        keeper.save(state(float(step)), step, is_best=best)
    assert [p.name for p in keeper.step_files()] == ["step_00000003.pt", "step_00000004.pt"]
    assert load_checkpoint(tmp_path / "best.pt")["model"]["w"][0, 0] == 1.0  # survives pruning
    assert load_checkpoint(tmp_path / "last.pt")["model"]["w"][0, 0] == 4.0
    assert load_checkpoint(tmp_path)["model"]["w"][0, 0] == 1.0  # a directory means best.pt


def test_averaging_identical_checkpoints_gives_same_weights(tmp_path: Path) -> None:
    save_checkpoint(state(0.3), tmp_path / "a.pt")
    save_checkpoint(state(0.3), tmp_path / "b.pt")
    averaged = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert torch.equal(averaged["model"]["w"], torch.full((2, 2), 0.3))
    save_checkpoint(state(1.0), tmp_path / "c.pt")
    mean = average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])["model"]["w"]
    assert torch.allclose(mean, torch.full((2, 2), 0.65))


def test_checkpoints_are_not_private_and_stale_temporaries_are_cleaned(tmp_path: Path) -> None:
    save_checkpoint(state(1.0), tmp_path / "a.pt")
    assert (tmp_path / "a.pt").stat().st_mode & 0o044, "group/other cannot read the checkpoint"
    (tmp_path / ".step_00000007.pt.abc.tmp").write_bytes(b"half a checkpoint")
    CheckpointKeeper(tmp_path, keep_last=2)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_training_state_of_another_version_is_refused_in_one_line() -> None:
    state = TrainState(step=7, epoch=1, shard_in_epoch=2, batch_in_shard=3)
    assert TrainState.restored(asdict(state)) == state
    before_shards = {k: v for k, v in asdict(state).items() if "shard" not in k}
    before_shards["batch_in_epoch"] = 5  # what checkpoints recorded before sharded data
    with pytest.raises(UserError, match="another version of seq2seq .*batch_in_epoch"):
        TrainState.restored(before_shards)
