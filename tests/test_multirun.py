"""Hydra multirun: each setting of a sweep trains in its own run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import tiny_overrides

STEPS = 2


def test_multirun_gives_one_run_directory_per_setting(synthetic_dir: Path, tmp_path: Path) -> None:
    overrides = [
        *tiny_overrides(synthetic_dir, tmp_path, "rnn"),
        f"train.max_steps={STEPS}",
        f"train.valid_every={STEPS}",
        "train.log_every=1",
        "train.device=cpu",
        "valid.max_sentences=4",
        "valid.num_probes=0",
    ]
    overrides = [o for o in overrides if not o.startswith("train.seed=")]
    command = [sys.executable, "-m", "seq2seq.cli.train", "-m", *overrides, "train.seed=1,2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]

    sweeps = list((tmp_path / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    # Each job's directory sits directly in the sweep directory, named <job number>_...
    # (override values holding "/", like the corpus paths here, must not nest it deeper).
    runs = sorted(p.parent for p in sweeps[0].glob("*/.hydra"))
    assert [p.name.split("_")[0] for p in runs] == ["0", "1"], runs
    events_files = set()
    for seed, run in zip([1, 2], runs, strict=True):
        assert OmegaConf.load(run / ".hydra" / "config.yaml").train.seed == seed
        last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        assert last["config"]["train"]["seed"] == seed
        assert last["train_state"]["step"] == STEPS
        files = list((run / "tensorboard").glob("events.out.tfevents.*"))
        assert len(files) == 1, files
        events_files.add(files[0])
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        assert [e.step for e in events.Scalars("train/loss")] == list(range(1, STEPS + 1))
        assert [e.step for e in events.Scalars("valid/bleu")] == [STEPS]
    assert len(events_files) == 2
