"""Why training stops: a signal (checked between steps, so a checkpoint gets written),
the step, time or epoch budget, or early stopping."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from seq2seq.errors import Interrupted
from seq2seq.training.state import TrainState


class StopRequested:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a checkpoint gets written."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequested:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum

    @property
    def name(self) -> str:
        """The received signal's name; SIGTERM's when it reached another rank only."""
        return signal.Signals(self.signum or signal.SIGTERM).name


def stop_reason(cfg: DictConfig, state: TrainState, signal_name: str | None, minutes: float) -> str:
    """Why to stop now (``cfg``: the ``train`` section), or "" to go on.

    ``signal_name``: the signal any rank received ("" when it reached another rank only).
    """
    if signal_name is not None:
        return f"signal {signal_name or 'on another rank'}"
    if state.step >= cfg.max_steps:
        return f"reached train.max_steps={cfg.max_steps}"
    if cfg.max_minutes is not None and minutes >= cfg.max_minutes:
        return f"reached train.max_minutes={cfg.max_minutes}"
    if state.bad_validations >= cfg.patience:
        return f"early stopping: no BLEU gain in {cfg.patience} validations"
    return ""


def interruption(stop: StopRequested, step: int, run_dir: Path) -> Interrupted:
    """The error a signalled run exits with: where its checkpoint is and how to continue."""
    checkpoint = run_dir / "checkpoints" / "last.pt"
    message = (
        f"{stop.name} received: checkpoint saved at step {step}; "
        f"continue with train.resume={checkpoint}"
    )
    return Interrupted(stop.signum or signal.SIGTERM, message)
