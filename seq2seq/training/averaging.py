"""Checkpoint averaging: the mean of the weights of several checkpoints of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import UserError
from seq2seq.training.checkpoint import load_checkpoint, resolve_checkpoint_path


def last_step_checkpoints(checkpoint: str | Path, count: int) -> list[Path]:
    """The newest ``count`` ``step_*.pt`` files beside ``checkpoint`` (or in its run dir)."""
    directory = resolve_checkpoint_path(checkpoint).parent
    files = sorted(directory.glob("step_*.pt"))
    if len(files) < count:
        raise UserError(
            f"average_last={count} but {directory} keeps only {len(files)} step checkpoints; "
            f"lower average_last or train with a larger train.keep_last."
        )
    return files[-count:]


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """A checkpoint whose weights are the mean of ``paths``' (the rest from the newest)."""
    states = [load_checkpoint(p) for p in paths]
    newest = states[-1]
    keys = newest["model"].keys()
    for path, state in zip(paths, states, strict=True):
        if state["model"].keys() != keys or state["tokenizer"] != newest["tokenizer"]:
            raise UserError(f"{path} is not from the same model as {paths[-1]}; cannot average.")
        if state.get("run_id") != newest.get("run_id"):
            raise UserError(
                f"{path} is from another training run than {paths[-1]} (the directory holds "
                f"checkpoints of two runs); average the checkpoints of one run only, e.g. "
                f"a lower average_last, or move the other run's step_*.pt away."
            )
    averaged = {}
    for key in keys:
        tensors = [state["model"][key] for state in states]
        if tensors[0].is_floating_point():
            averaged[key] = torch.stack([t.double() for t in tensors]).mean(0).to(tensors[0].dtype)
        else:  # integer buffers (e.g. counters) are taken from the newest checkpoint
            averaged[key] = tensors[-1]
    return {**newest, "model": averaged, "averaged_from": [str(p) for p in paths]}
