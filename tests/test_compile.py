"""train.compile=true: a compiled model that fails when first run falls back to eager.

torch.compile is lazy: it compiles at the first forward (and the backward at the first
backward), so failures surface there. These tests stand in a fake for torch.compile
instead of compiling for real, which would take minutes on CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from seq2seq.training.distributed import init_distributed
from seq2seq.training.trainer import Trainer
from tests.conftest import compose_config, tiny_overrides

STEPS = 2


class FailingBackward(torch.autograd.Function):
    """Identity forward; the backward raises, like a backend failing to compile it."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        raise RuntimeError("fake backend: cannot compile the backward")


class FakeCompiled(nn.Module):
    """Wraps the model the way torch.compile's module does; fails where told to."""

    def __init__(self, model: nn.Module, fail: str) -> None:
        super().__init__()
        self.model, self.fail, self.calls = model, fail, 0

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> tuple[Tensor, object]:
        self.calls += 1
        if self.fail == "forward":
            raise RuntimeError("fake backend: cannot compile the forward")
        logits, attention = self.model(src, src_mask, tgt_in)
        if self.fail == "backward":
            logits = FailingBackward.apply(logits)
        return logits, attention


def run_tiny(corpus: Path, work: Path, compile_: bool) -> Trainer:
    """Train the tiny RNN for STEPS steps in this process."""
    overrides = [
        *tiny_overrides(corpus, work, "rnn"),
        f"train.max_steps={STEPS}",
        f"train.valid_every={STEPS}",
        "train.device=cpu",
        f"train.compile={str(compile_).lower()}",
        "valid.max_sentences=4",
        "valid.num_probes=0",
    ]
    trainer = Trainer(compose_config("train", overrides), work / "run", *init_distributed("cpu"))
    trainer.run()
    return trainer


@pytest.mark.parametrize("fail", ["forward", "backward", "never"])
def test_compile_falls_back_to_eager_when_the_compiled_model_fails(
    fail: str,
    synthetic_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    compiled: list[FakeCompiled] = []

    def fake_compile(model: nn.Module) -> nn.Module:
        compiled.append(FakeCompiled(model, fail))
        return compiled[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    with caplog.at_level(logging.WARNING, logger="seq2seq.training.trainer"):
        trainer = run_tiny(synthetic_dir, tmp_path / "compiled", compile_=True)
    eager = run_tiny(synthetic_dir, tmp_path / "eager", compile_=False)

    warnings = [r.getMessage() for r in caplog.records if "train.compile=true" in r.getMessage()]
    assert trainer.state.step == STEPS
    if fail == "never":
        assert warnings == []
        assert trainer.compiled and compiled[0].calls == STEPS
    else:
        assert len(warnings) == 1 and f"cannot compile the {fail}" in warnings[0]
        assert not trainer.compiled and compiled[0].calls == 1
    # The failed attempt leaves no trace: the same weights as never compiling.
    expected = eager.model.state_dict()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, expected[name]), name
