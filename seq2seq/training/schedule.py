"""Learning-rate schedules: pure functions of the step, plus reduce-on-plateau."""

from __future__ import annotations

import math

import torch

from seq2seq.config import OptimConfig
from seq2seq.errors import UserError


def inverse_sqrt_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup to 1 at ``warmup_steps``, then decay as sqrt(warmup / step) ("Noam").

    ``step`` counts updates from 1: the k-th update runs at ``inverse_sqrt_factor(k)``.
    """
    if step < 1:
        raise ValueError(f"updates count from 1, got step {step}")
    warmup = max(warmup_steps, 1)
    return min(step / warmup, math.sqrt(warmup / step))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The per-step schedule (inverse_sqrt, constant) or the per-validation one (plateau)."""
    if cfg.schedule == "inverse_sqrt":
        # LambdaLR asks for the factor of the update about to run with the number of updates
        # done so far (0 before the first): update k runs at the schedule's value at k.
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda done: inverse_sqrt_factor(done + 1, cfg.warmup_steps)
        )
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",  # on validation BLEU
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            min_lr=cfg.min_lr,
        )
    raise UserError(
        f"optim.schedule={cfg.schedule!r} is not a schedule; use plateau, inverse_sqrt or constant."
    )


def build_optimizer(params: list[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam or AdamW from the config."""
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if cfg.name not in kinds:
        raise UserError(f"optim.name={cfg.name!r} is not an optimizer; use adam or adamw.")
    return kinds[cfg.name](
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
    )
