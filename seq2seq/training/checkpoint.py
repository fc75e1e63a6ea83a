"""Self-contained checkpoints: plain dicts of tensors and builtins, written atomically.

A checkpoint holds everything needed to translate (model config, weights, SentencePiece
models) and to resume exactly (optimizer, scheduler, step, data position, RNG states).
It is loaded with ``weights_only=True``, so a file carrying pickled code is refused and
the code never runs.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import UserError

FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename.

    A crash or a full disk mid-write leaves the previous file at ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes files private; checkpoints aren't
        with os.fdopen(fd, "wb") as handle:
            torch.save({**state, "format_version": FORMAT_VERSION}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file (or a run directory's best one) safely, with clear errors."""
    path = resolve_checkpoint_path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"{path} was refused: it holds objects other than tensors and plain values "
            f"(possibly code), which seq2seq never unpickles. Use a checkpoint written by "
            f"seq2seq-train. ({str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise UserError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {err}). "
            f"Use another one, e.g. last.pt or an earlier step_*.pt in the same directory."
        ) from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise UserError(f"{path} is not a seq2seq checkpoint (no model weights or config).")
    return state


def rank_rng_state(state: dict[str, Any], rank: int, world_size: int) -> dict[str, Any] | None:
    """The RNG states a rank resumes with: its own if the checkpoint's run had as many ranks.

    Otherwise rank 0 takes the saved main-process states and other ranks get None (keep
    their fresh ``seed + rank`` seeding): dropout differs from an unbroken run, but ranks
    never share masks.
    """
    per_rank = state.get("rng_ranks")
    if per_rank is not None and len(per_rank) == world_size:
        return per_rank[rank]
    return state["rng"] if rank == 0 else None


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file as given, or ``best.pt`` (else ``last.pt``) inside a run directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in ("checkpoints/best.pt", "checkpoints/last.pt", "best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"No best.pt or last.pt under {path}; pass a checkpoint file instead.")
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist; check the path (checkpoint=...).")
    return path


class CheckpointKeeper:
    """Maintains ``last.pt``, ``best.pt`` and the last N ``step_*.pt`` in one directory."""

    def __init__(self, directory: Path, keep_last: int) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last
        # Temporary files of writes cut short by a kill; the files they were for are intact.
        for stale in self.directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def save(self, state: dict[str, Any], step: int, is_best: bool) -> Path:
        """Write this step's checkpoint, refresh last/best, and drop step files beyond N."""
        step_path = self.directory / f"step_{step:08d}.pt"
        save_checkpoint(state, step_path)
        for alias in ["last.pt", "best.pt"] if is_best else ["last.pt"]:
            self._link(step_path, self.directory / alias)
        self._prune()
        return step_path

    def step_files(self) -> list[Path]:
        """The kept ``step_*.pt`` files, oldest first."""
        return sorted(self.directory.glob("step_*.pt"))

    def _link(self, target: Path, alias: Path) -> None:
        # A hard link keeps best.pt valid even after its step file is pruned; it is made
        # under a temporary name and renamed, so the alias is never missing or partial.
        tmp = alias.with_name(f".{alias.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(target, tmp)
        except OSError:  # file systems without hard links
            save_checkpoint(torch.load(target, map_location="cpu", weights_only=True), tmp)
        os.replace(tmp, alias)

    def _prune(self) -> None:
        steps = self.step_files()
        for old in steps[: max(len(steps) - self.keep_last, 0)]:
            old.unlink(missing_ok=True)
