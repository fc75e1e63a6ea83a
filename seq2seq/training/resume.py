"""Resuming a run: find its checkpoint, check it fits, restore weights, optimizer and RNG streams.

A resumed optimizer and scheduler carry the values of the run that saved them; the new
``optim.*`` settings would otherwise be recorded in the new checkpoints while the old
ones keep running. Settings the saved state can take are applied and logged; a change of
optimizer or schedule kind has no meaningful continuation and is refused with the list.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from seq2seq.errors import UserError
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.distributed import Distributed
from seq2seq.training.state import rank_rng_state, restore_rng

log = logging.getLogger(__name__)

# Changes that the saved optimizer/scheduler state cannot follow.
REFUSED = ("name", "schedule")


def find_resume_checkpoint(resume: str | None, run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint ``train.resume`` names (``auto``: the run's last.pt, if any), loaded."""
    if resume is None:
        return None
    if resume == "auto":
        path = run_dir / "checkpoints" / "last.pt"
        if not path.is_file():
            log.info("train.resume=auto: no %s yet, starting fresh", path)
            return None
        resume = str(path)
    log.info("resuming from %s", resume)
    return load_checkpoint(resume)


def restore_model(
    model: nn.Module, model_config: dict[str, Any], tokenizer_state: Any, ckpt: dict[str, Any]
) -> None:
    """Load the checkpoint's weights into ``model``, refusing another family or vocabulary."""
    family = ckpt["model_config"].get("family")
    if family != model_config["family"]:
        raise UserError(
            f"train.resume: the checkpoint is a {family} model but this run trains "
            f"model={model_config['family']}; pass model={family} or another checkpoint."
        )
    if ckpt["tokenizer"] != tokenizer_state:
        raise UserError(
            "train.resume: the checkpoint was trained with another vocabulary (different "
            "data or data.tokenizer settings); resume with the same data settings."
        )
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise UserError(
            f"train.resume: the checkpoint's weights do not fit this model config ({err}). "
            f"Resume with the model settings it was trained with: {ckpt['model_config']}"
        ) from None


def restore_rng_streams(ckpt: dict[str, Any], ctx: Distributed) -> None:
    """Each rank continues its own random streams (dropout), as saved."""
    saved = len(ckpt.get("rng_ranks") or [None])
    if saved != ctx.world_size and ctx.is_main:
        log.warning(
            "train.resume: the checkpoint's run had %d rank(s), this one %d: ranks other "
            "than 0 draw fresh random streams, so dropout differs from an unbroken run",
            saved,
            ctx.world_size,
        )
    state = rank_rng_state(ckpt, ctx.rank, ctx.world_size)
    if state is not None:
        restore_rng(state)


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
