"""Learning-rate schedules: the k-th update runs at the schedule's value at k."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.config import OptimConfig
from seq2seq.training.schedule import build_optimizer, build_scheduler, inverse_sqrt_factor


def lrs_of_updates(cfg: OptimConfig, updates: int) -> list[float]:
    """The learning rate each of the first ``updates`` optimizer steps actually used."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([param], cfg)
    scheduler = build_scheduler(optimizer, cfg)
    used = []
    for _ in range(updates):
        used.append(optimizer.param_groups[0]["lr"])  # what optimizer.step() applies now
        param.grad = torch.ones(1)
        optimizer.step()
        scheduler.step()  # the trainer's order: step, then advance the schedule
    return used


def test_warmup_updates_one_two_three_run_at_k_over_warmup() -> None:
    cfg = OptimConfig(lr=1e-3, schedule="inverse_sqrt", warmup_steps=4)
    # by hand: lr * min(k / 4, sqrt(4 / k)) for k = 1, 2, 3, then 1 at k = 4, 4 / 5 -> sqrt
    expected = [1e-3 * 0.25, 1e-3 * 0.5, 1e-3 * 0.75, 1e-3, 1e-3 * math.sqrt(4 / 5)]
    assert lrs_of_updates(cfg, 5) == pytest.approx(expected, rel=1e-12)


def test_inverse_sqrt_factor_is_the_noam_formula_and_starts_at_one() -> None:
    assert inverse_sqrt_factor(1, 4000) == 1 / 4000
    assert inverse_sqrt_factor(4000, 4000) == 1.0
    assert inverse_sqrt_factor(16000, 4000) == 0.5
    with pytest.raises(ValueError, match="count from 1"):
        inverse_sqrt_factor(0, 4000)


def test_constant_schedule_keeps_the_rate() -> None:
    assert lrs_of_updates(OptimConfig(lr=3e-4, schedule="constant"), 3) == [3e-4] * 3
