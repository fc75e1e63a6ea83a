"""Gradient accumulation: two half-size micro-batches make the same step as their union.

Exact by construction: run A trains with ``accum_steps=2`` at half the token budget; run
B trains with ``accum_steps=1`` on batches that are, step for step, the union of A's two
micro-batches (re-collated, so only the padding differs). Both normalise the loss by all
target tokens of the step, so the updates agree up to floating-point summation order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.data.batching import Batch, collate
from seq2seq.training.distributed import init_distributed
from seq2seq.training.trainer import Trainer
from tests.conftest import compose_config, tiny_overrides

STEPS = 3


def make_trainer(corpus: Path, work: Path, family: str, extra: list[str]) -> Trainer:
    """A single-process trainer of the tiny model, validating only after the last step."""
    overrides = [
        *tiny_overrides(corpus, work, family),
        f"train.max_steps={STEPS}",
        f"train.valid_every={STEPS}",
        "train.device=cpu",
        "optim.schedule=constant",  # full-size steps from the start, so weights move
        # Adam's default eps=1e-9 would blow rounding noise in gradients that are zero in
        # exact arithmetic (the attention key bias) up to full-size steps.
        "optim.eps=1e-3",
        "valid.max_sentences=8",
        "valid.num_probes=0",
        *extra,
    ]
    return Trainer(compose_config("train", overrides), work / "run", *init_distributed("cpu"))


def union(trainer: Trainer, first: list[int], second: list[int]) -> Batch:
    """One batch holding the examples of two micro-batches."""
    return collate([trainer.data.train[i] for i in first + second])


@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_two_half_batches_equal_one_full_batch(
    family: str, synthetic_dir: Path, tmp_path: Path
) -> None:
    accumulated = make_trainer(
        synthetic_dir, tmp_path / "a", family, ["data.batch_tokens=600", "train.accum_steps=2"]
    )
    full = make_trainer(synthetic_dir, tmp_path / "b", family, ["train.accum_steps=1"])
    initial = {n: p.detach().clone() for n, p in full.model.named_parameters()}
    for name, param in accumulated.model.named_parameters():
        assert torch.equal(param, initial[name]), "same seed, same initial weights"

    accumulated.sampler.set_epoch(0)
    halves = list(accumulated.sampler)[: 2 * STEPS]
    full.loader = [union(full, halves[2 * k], halves[2 * k + 1]) for k in range(STEPS)]
    assert all(len(halves[k]) > 1 for k in range(2 * STEPS))

    accumulated.run()
    full.run()

    assert accumulated.state.step == full.state.step == STEPS
    assert accumulated.state.batch_in_shard == 2 * STEPS
    moved = max((p - initial[n]).abs().max().item() for n, p in full.model.named_parameters())
    assert moved > 1e-3
    expected = dict(full.model.named_parameters())
    for name, param in accumulated.model.named_parameters():
        torch.testing.assert_close(param, expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_leftover_micro_batches_of_an_epoch_make_a_smaller_last_update(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    """With accum_steps not dividing the epoch's batches, the remainder is one more update."""
    accum = 5
    trainer = make_trainer(
        synthetic_dir,
        tmp_path,
        "rnn",
        [f"train.accum_steps={accum}", "train.max_epochs=1", "train.max_steps=1000"],
    )
    trainer.sampler.set_epoch(0)
    batches = len(list(trainer.sampler))
    assert batches % accum != 0, "the test needs a remainder"
    seen: list[int] = []
    update = trainer._update
    trainer._update = lambda micro, window: (seen.append(len(micro)), update(micro, window))
    trainer.run()
    assert seen == [accum] * (batches // accum) + [batches % accum]
    assert trainer.state.step == -(-batches // accum)
    assert trainer.state.epoch == 1
