"""The module the training steps run: mixed precision, torch.compile while it works, DDP."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.training.distributed import Distributed

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; nothing for fp32 (``dtype`` None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def compile_or_warn(model: nn.Module) -> nn.Module:
    """``torch.compile`` the model, or warn and fall back to eager where unsupported.

    This catches only what fails up front (e.g. an unsupported Python); compilation
    itself happens at the first forward and backward, where ``Trainer._update`` falls back.
    """
    try:
        return torch.compile(model)  # type: ignore[return-value]
    except Exception as err:  # noqa: BLE001 - any backend failure means: run eager
        log.warning("train.compile=true failed (%s); training without compilation", err)
        return model


def distribute(network: nn.Module, ctx: Distributed, device: torch.device) -> nn.Module:
    """``network`` in DDP when the job has several processes, else itself."""
    if not ctx.enabled:
        return network
    return DistributedDataParallel(
        network, device_ids=[device.index] if device.type == "cuda" else None
    )
