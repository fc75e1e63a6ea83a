"""Resuming with changed optimizer or schedule settings: applied on purpose, or refused.

A resumed optimizer and scheduler carry the values of the run that saved them; the new
``optim.*`` settings would otherwise be recorded in the new checkpoints while the old
ones keep running. Settings the saved state can take are applied and logged; a change of
optimizer or schedule kind has no meaningful continuation and is refused with the list.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.errors import UserError

log = logging.getLogger(__name__)

# Changes that the saved optimizer/scheduler state cannot follow.
REFUSED = ("name", "schedule")


def optim_changes(saved: dict[str, Any], cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (checkpoint's value, this run's value)}`` for each optim setting that differs."""
    new = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(new, dict)
    return {
        key: (saved[key], value)
        for key, value in new.items()
        if key in saved and saved[key] != value
    }


def _listed(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"optim.{k} {old} -> {new}" for k, (old, new) in changes.items())


def restore_optimization(
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ckpt: dict[str, Any],
    cfg: DictConfig,
) -> None:
    """Load the optimizer and scheduler state of ``ckpt``, then apply the changed settings."""
    saved = ckpt.get("config", {}).get("optim", {})
    changes = optim_changes(saved, cfg)
    refused = {k: v for k, v in changes.items() if k in REFUSED}
    if refused:
        raise UserError(
            f"train.resume: the checkpoint was trained with other settings that cannot be "
            f"continued ({_listed(refused)}); resume with the checkpoint's values, or start "
            f"a new run."
        )
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if not changes:
        return
    for group in optimizer.param_groups:
        if "betas" in changes:
            group["betas"] = tuple(cfg.betas)
        if "eps" in changes:
            group["eps"] = cfg.eps
        if "weight_decay" in changes:
            group["weight_decay"] = cfg.weight_decay
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.factor = cfg.plateau_factor
        scheduler.patience = cfg.plateau_patience
        scheduler.min_lrs = [cfg.min_lr] * len(optimizer.param_groups)
        if "lr" in changes:  # the plateau schedule starts again from the new rate
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr
    else:  # LambdaLR: lr = base lr * factor(step); the factor already reads the new config
        scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
        for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
            group["initial_lr"] = cfg.lr
            group["lr"] = cfg.lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    log.warning(
        "train.resume: applying changed settings (%s); the learning rate is now %.3g",
        _listed(changes),
        optimizer.param_groups[0]["lr"],
    )
