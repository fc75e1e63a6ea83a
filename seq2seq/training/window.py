"""Training metrics between log points: summed on the device, read once per log interval."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from seq2seq.errors import UserError
from seq2seq.training.distributed import Distributed
from seq2seq.training.report import BudgetBar

log = logging.getLogger(__name__)


class Window:
    """Running sums between log points, kept on the device to avoid per-step host syncs."""

    def __init__(self) -> None:
        self.nonfinite = 0
        self._reset()

    def _reset(self) -> None:
        self.loss = 0.0
        self.grad_norm = 0.0
        self.tgt_tokens = 0
        self.src_tokens = 0
        self.steps = 0
        self.started = time.monotonic()

    def add(
        self, loss_sum: torch.Tensor, tgt_tokens: int, src_tokens: Any, grad_norm: torch.Tensor
    ) -> None:
        """Accumulate one step."""
        self.loss = self.loss + loss_sum
        self.grad_norm = self.grad_norm + grad_norm
        self.tgt_tokens += tgt_tokens
        self.src_tokens += int(src_tokens)
        self.steps += 1

    def skipped(self, step: int, limit: int) -> None:
        """Count a step skipped for a non-finite loss or gradient; ``limit`` in a row diverge."""
        self.nonfinite += 1
        log.warning("step %d: non-finite loss or gradient, update skipped", step)
        if self.nonfinite >= limit:
            raise UserError(
                f"{self.nonfinite} consecutive non-finite steps: training diverged. "
                f"Lower optim.lr, keep optim.clip_norm > 0, or use train.precision=fp32."
            )

    def flush(self, ctx: Distributed, device: torch.device) -> dict[str, float]:
        """Averages since the last flush (tokens/s summed over ranks), then reset."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        steps = max(self.steps, 1)
        stats = {
            "loss": float(self.loss) / max(self.tgt_tokens, 1),
            "grad_norm": float(self.grad_norm) / steps,
            "tokens_per_sec": ctx.sum(self.tgt_tokens / elapsed, device),
            "src_tgt_tokens_per_sec": ctx.sum(
                (self.tgt_tokens + self.src_tokens) / elapsed, device
            ),
        }
        self._reset()
        return stats


def log_train(
    stats: dict[str, float],
    lr: float,
    step: int,
    progress: BudgetBar,
    writer: SummaryWriter | None,
) -> None:
    """Show a window's averages on the progress bar, in TensorBoard, and (no bar) in the log."""
    figures = {"loss": f"{stats['loss']:.3f}", "lr": f"{lr:.2e}"}
    progress.show(step, {**figures, "tok_s": f"{stats['tokens_per_sec']:.0f}"})
    if writer is None:
        return
    for name, value in stats.items():
        writer.add_scalar(f"train/{name}", value, step)
    writer.add_scalar("train/lr", lr, step)
    if not progress.disable:
        return
    log.info(
        "step %d | loss %.3f | lr %.2e | %.0f tgt tok/s | grad norm %.2f",
        step,
        stats["loss"],
        lr,
        stats["tokens_per_sec"],
        stats["grad_norm"],
    )
