"""The run directory of a training: one training at a time, and an earlier run never lost.

Before a training writes anything (the CLI checks before Hydra saves its config), the
directory must be a writable directory, not locked by another live training, and, if it
already holds checkpoints, be resumed (``train.resume``) or overwritten on purpose
(``train.overwrite=true``). The lock is an ``flock`` on a file naming its holder: the
kernel releases it when the process ends, however it ends, so a killed run never leaves
a stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import UserError
from seq2seq.textio import check_writable, os_error_reason

log = logging.getLogger(__name__)

LOCK_FILE = ".seq2seq-train.lock"
_HELD: dict[Path, int] = {}  # run directory -> descriptor of its locked file, in this process


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain process: the one that guards the run directory."""
    return int(os.environ.get("RANK", "0")) == 0


def previous_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of an earlier training in ``run_dir`` (none when it is new)."""
    directory = run_dir / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(directory.glob("step_*.pt")) + [
        p for p in (directory / "last.pt", directory / "best.pt") if p.is_file()
    ]


def describe_run(run_dir: Path) -> str:
    """'step 300, best BLEU 12.34' of the run whose checkpoints are in ``run_dir``."""
    last = run_dir / "checkpoints" / "last.pt"
    try:
        state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
        train_state = state["train_state"]
        return f"step {train_state['step']}, best BLEU {train_state['best_bleu']:.2f}"
    except Exception:  # noqa: BLE001 - only a description; an unreadable last.pt says so
        steps = previous_checkpoints(run_dir)
        return f"{len(steps)} checkpoint files, no readable last.pt"


def resumes_here(resume: str | None, run_dir: Path) -> bool:
    """Whether ``train.resume`` continues the run in ``run_dir`` (auto, or one of its files)."""
    if resume == "auto":
        return True
    if resume is None:
        return False
    try:
        return Path(resume).expanduser().resolve().parent == (run_dir / "checkpoints").resolve()
    except OSError:
        return False


def check_run_dir(run_dir: Path, train_cfg: Any) -> None:
    """Refuse a run directory that is a file, not writable, or holds another run's checkpoints."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(
            f"hydra.run.dir={run_dir} is an existing file, not a directory; give a directory "
            f"path (it is created if missing)."
        )
    existing = previous_checkpoints(run_dir)
    if existing and not train_cfg.overwrite and not resumes_here(train_cfg.resume, run_dir):
        raise UserError(
            f"hydra.run.dir={run_dir} already holds a training ({describe_run(run_dir)}); "
            f"continue it with train.resume=auto, or train in a new directory, or replace it "
            f"with train.overwrite=true."
        )
    parent = run_dir if run_dir.exists() else next(p for p in run_dir.parents if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"hydra.run.dir={run_dir}: {parent} is not writable; pick another one.")


def hold_run_dir(run_dir: Path) -> bool:
    """Lock ``run_dir`` for this process (True if newly locked); one line if another holds it."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _HELD:
        return False
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(
            f"hydra.run.dir={run_dir} cannot be used: {os_error_reason(err)}; pick a writable "
            f"directory."
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise UserError(
            f"hydra.run.dir={run_dir} is in use by another training ({holder}); wait for it to "
            f"finish, or train in another directory."
        ) from None
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    os.pwrite(
        fd, f"PID {os.getpid()} on host {socket.gethostname()}, since {started}\n".encode(), 0
    )
    _HELD[run_dir] = fd
    return True


def release_run_dir(run_dir: Path) -> None:
    """Unlock ``run_dir`` if this process holds it."""
    fd = _HELD.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def clear_previous_run(run_dir: Path) -> None:
    """With ``train.overwrite=true``: remove the earlier run's checkpoints and event files."""
    removed = previous_checkpoints(run_dir)
    removed += sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        log.warning("train.overwrite=true: removed %d files of the earlier run", len(removed))


@contextmanager
def run_directory(run_dir: Path, cfg: Any) -> Iterator[None]:
    """Check and lock the run directory (and the cache) for the whole training (rank 0 only)."""
    if not is_main_process():
        yield
        return
    train_cfg = cfg.train
    check_run_dir(run_dir, train_cfg)
    check_writable("data.cache_dir", Path(cfg.data.cache_dir))
    acquired = hold_run_dir(run_dir)
    try:
        if train_cfg.overwrite:
            clear_previous_run(Path(run_dir))
        yield
    finally:
        if acquired:
            release_run_dir(run_dir)
