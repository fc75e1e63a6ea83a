"""What a training run tells its user: the budget bar, and at the end the test scores of
the best checkpoint, metrics.json and a summary.

A run ends by saying what it made: why it stopped, its best validation BLEU, the test
scores of ``best.pt`` with their sacrebleu signatures, where the files are, and the exact
commands to look at, score and use the model.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from seq2seq.config import DecodeConfig
from seq2seq.data.corpora import ParallelCorpus, has_files, load_split
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError
from seq2seq.evaluation import Score, corpus_scores, scores_to_dict
from seq2seq.inference import clip_sources
from seq2seq.training.distributed import Distributed
from seq2seq.training.state import TrainState
from seq2seq.training.validation import ValidResult, decode_sharded

log = logging.getLogger(__name__)


class BudgetBar:
    """The progress bar of the budget that stops the run: elapsed/total minutes with
    ``train.max_minutes``, else steps out of ``train.max_steps``."""

    def __init__(self, cfg: DictConfig, step: int, started: float, enabled: bool) -> None:
        self.minutes, self.started = cfg.max_minutes, started
        if self.minutes is not None:
            self.bar = tqdm(
                total=float(self.minutes),
                disable=not enabled,
                dynamic_ncols=True,
                desc="train",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} min{postfix}",
            )
        else:
            self.bar = tqdm(
                total=cfg.max_steps,
                initial=step,
                disable=not enabled,
                dynamic_ncols=True,
                desc="train",
            )

    @property
    def disable(self) -> bool:
        """Whether the bar is off (log lines instead)."""
        return self.bar.disable

    def show(self, step: int, postfix: dict[str, str]) -> None:
        """Move the bar to now (minutes) or to ``step``, with the latest figures beside it."""
        if self.minutes is not None:
            self.bar.n = min((time.monotonic() - self.started) / 60, float(self.minutes))
            postfix = {"step": str(step), **postfix}
        else:
            self.bar.n = step
        self.bar.set_postfix(postfix)  # redraws

    def close(self) -> None:
        """End the bar."""
        self.bar.close()


METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF", "ter": "TER"}


def metric_name(score: Score) -> str:
    """How the metric is written: BLEU, chrF, TER."""
    return METRIC_NAMES.get(score.name, score.name)


def load_test_sets(cfg: DictConfig) -> dict[str, ParallelCorpus]:
    """The ``data.test_splits`` scored at the end, read at start-up so a bad split fails early.

    None with ``train.test_at_end=false``; ``data=files`` without test files has no test
    set, which is reported and skipped.
    """
    data = cfg.data
    if not cfg.train.test_at_end:
        return {}
    if data.name == "files" and not has_files(data, "test"):
        log.info("no test files (data.test_src/test_tgt): the run ends without test scores")
        return {}
    try:
        return {split: load_split(data, split) for split in data.test_splits}
    except UserError as err:
        raise UserError(f"{err} (or skip the final test with train.test_at_end=false)") from None


@torch.no_grad()
def score_test_sets(
    model: nn.Module,
    tokenizer: Tokenizer,
    corpora: dict[str, ParallelCorpus],
    options: DecodeConfig,
    device: torch.device,
    ctx: Distributed,
    autocast: AbstractContextManager,
) -> dict[str, dict[str, Score]]:
    """BLEU, chrF and TER of every test set, its decoding sharded over the ranks."""
    model.eval()
    results = {}
    for split, corpus in corpora.items():
        sources = clip_sources(model, tokenizer.encode_src(corpus.src))
        hypotheses = decode_sharded(model, sources, tokenizer, options, device, ctx, autocast)
        results[split] = corpus_scores(hypotheses, corpus.tgt)
    model.train()
    return results


def log_test(writer: SummaryWriter, results: dict[str, dict[str, Score]], step: int) -> None:
    """Each test score, with its signature, in the log and TensorBoard."""
    for split, scores in results.items():
        for score in scores.values():
            name = metric_name(score)
            log.info("test %s | %s %.2f | %s", split, name, score.score, score.signature)
            writer.add_scalar(f"test/{split}/{score.name}", score.score, step)
        signatures = "  \n".join(score.signature for score in scores.values())
        writer.add_text(f"test/{split}/signature", signatures, step)


def run_summary(
    state: TrainState, result: ValidResult | None, test: dict[str, dict[str, Score]]
) -> dict[str, float]:
    """The figures ``train()`` returns: step, best BLEU, test scores, the last validation's."""
    summary = {"step": float(state.step), "best_bleu": state.best_bleu}
    for split, scores in test.items():
        summary.update({f"test_{split}_{name}": score.score for name, score in scores.items()})
    if result is not None:
        summary.update(
            valid_loss=result.loss,
            valid_ppl=result.ppl,
            valid_bleu=result.bleu,
            valid_chrf=result.scores["chrf"].score,
        )
        if result.alignment is not None:
            summary["valid_aer"] = result.alignment.scores["aer"]
        log.info("BLEU signature: %s", result.scores["bleu"].signature)
    return summary


def best_weights(path: Path, ctx: Distributed) -> dict[str, torch.Tensor]:
    """The weights of ``best.pt``, read by rank 0 and sent to the others (their run dirs
    may differ)."""
    weights = None
    if ctx.is_main:
        weights = torch.load(path, map_location="cpu", weights_only=True)["model"]
    return ctx.broadcast(weights)


@dataclass
class RunReport:
    """What a finished run tells its user."""

    stop_reason: str
    steps: int
    epochs: int
    wall_minutes: float
    best_bleu: float
    best_step: int
    run_dir: Path
    test: dict[str, dict[str, Score]]
    valid: dict[str, Any]  # the last validation's loss, ppl, BLEU, chrF (and AER)
    example: str  # a source sentence for the translate command

    @property
    def best_checkpoint(self) -> Path:
        """``best.pt`` of the run, absolute."""
        return (self.run_dir / "checkpoints" / "best.pt").resolve()

    @property
    def tensorboard(self) -> Path:
        """The TensorBoard event directory, absolute."""
        return (self.run_dir / "tensorboard").resolve()

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``<run>/metrics.json``."""
        return {
            "stop_reason": self.stop_reason,
            "steps": self.steps,
            "epochs": self.epochs,
            "wall_minutes": round(self.wall_minutes, 2),
            "best_valid_bleu": self.best_bleu,
            "best_step": self.best_step,
            "valid": self.valid,
            "test": {split: scores_to_dict(scores) for split, scores in self.test.items()},
            "best_checkpoint": str(self.best_checkpoint),
            "tensorboard": str(self.tensorboard),
        }

    def write(self) -> Path:
        """Write ``<run>/metrics.json``; returns its path."""
        path = self.run_dir / "metrics.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def summary(self) -> str:
        """The few lines printed at the end of the run."""
        best = shlex.quote(str(self.best_checkpoint))
        lines = [
            f"training stopped: {self.stop_reason}",
            f"  {self.steps} steps, {self.epochs} epochs, {self.wall_minutes:.1f} min",
            f"  best valid BLEU {self.best_bleu:.2f} at step {self.best_step}",
        ]
        for split, scores in self.test.items():
            figures = ", ".join(f"{metric_name(s)} {s.score:.2f}" for s in scores.values())
            lines.append(f"  test {split} (best.pt): {figures}")
        lines += [
            f"  best checkpoint: {self.best_checkpoint}",
            f"  TensorBoard:     {self.tensorboard}",
            "next:",
            f"  tensorboard --logdir {shlex.quote(str(self.tensorboard))}",
            f"  seq2seq-evaluate checkpoint={best}",
            f"  echo {shlex.quote(self.example)} | seq2seq-translate checkpoint={best}",
        ]
        return "\n".join(lines)
