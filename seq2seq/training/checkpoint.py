"""Self-contained checkpoints: plain dicts of tensors and builtins, written atomically.

A checkpoint holds everything needed to translate (model config, weights, SentencePiece
models) and to resume exactly (optimizer, scheduler, step, data position, RNG states).
It is loaded with ``weights_only=True``, so a file carrying pickled code is refused and
the code never runs.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import UserError
from seq2seq.textio import os_error_reason, temporary_beside

FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename.

    A crash or a full disk mid-write leaves the previous file at ``path`` untouched; a
    failed write is one :class:`UserError` that says why and where.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = temporary_beside(path)
    except OSError as err:
        raise UserError(
            f"cannot write checkpoint {path}: {os_error_reason(err)} in {path.parent}; "
            f"pick a writable hydra.run.dir."
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({**state, "format_version": FORMAT_VERSION}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except (OSError, RuntimeError) as err:
        Path(tmp_name).unlink(missing_ok=True)
        raise UserError(write_failure(path, err)) from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_failure(path: Path, err: OSError | RuntimeError) -> str:
    """Why writing ``path`` failed, in words: torch reports a full disk as 'unexpected pos'."""
    free = shutil.disk_usage(path.parent).free
    full = (isinstance(err, OSError) and err.errno == errno.ENOSPC) or free < 2**20
    reason = "no space left on device" if full else f"{type(err).__name__}: {err}".splitlines()[0]
    if isinstance(err, OSError) and not full:
        reason = os_error_reason(err)
    kept = f"; {path.name} there is unchanged" if path.exists() else ""
    return (
        f"could not write checkpoint {path}: {reason} ({free / 2**20:.0f} MiB free in "
        f"{path.parent}){kept}. Free space, then continue with train.resume=auto."
    )


REQUIRED_KEYS = {"model": dict, "model_config": dict, "tokenizer": dict}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file (or a run directory's best one) safely, with clear errors."""
    path = resolve_checkpoint_path(path)
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a readable checkpoint: {not_an_archive(path)}")
    damaged = damaged_entry(path)
    if damaged is not None:
        raise UserError(f"{path} is damaged ({damaged}). {ANOTHER}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():  # damaged data rather than a forbidden object
            raise UserError(f"{path} is damaged ({first_line(err)}). {ANOTHER}") from None
        raise UserError(
            f"{path} was refused: it holds objects other than tensors and plain values "
            f"(possibly code), which seq2seq never unpickles. Use a checkpoint written by "
            f"seq2seq-train. ({first_line(err)})"
        ) from None
    except Exception as err:  # noqa: BLE001 - a damaged archive fails in many ways inside torch
        raise UserError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {first_line(err)}). "
            f"{ANOTHER}"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a seq2seq checkpoint (it holds a {type(state).__name__}).")
    missing = [k for k, kind in REQUIRED_KEYS.items() if not isinstance(state.get(k), kind)]
    if missing:
        raise UserError(
            f"{path} is not a seq2seq checkpoint: no {' or '.join(missing)} entry. Use a "
            f"checkpoint written by seq2seq-train."
        )
    return state


ANOTHER = "Use another one, e.g. last.pt or an earlier step_*.pt in the same directory."


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type, when it has none)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def damaged_entry(path: Path) -> str | None:
    """What is wrong when a part of the archive fails its CRC-32 (a flipped bit), else None.

    torch reads the parts without checking their checksums, so a damaged file would
    otherwise load as silently wrong weights, or fail deep inside unpickling.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as err:
        return f"its archive is corrupt: {err}"
    return None if bad is None else f"{bad} fails its checksum"


def not_an_archive(path: Path) -> str:
    """Why a file that is not a zip archive cannot be a checkpoint (text, empty, cut short)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        return "the file is empty. " + ANOTHER
    try:
        head.decode("utf-8")
        is_text = b"\0" not in head
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        return "it is a text file, not a checkpoint written by seq2seq-train."
    return "truncated or corrupt (not a PyTorch archive). " + ANOTHER


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
