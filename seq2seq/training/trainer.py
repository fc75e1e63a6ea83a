"""The training loop: token-budget batches, label-smoothed loss, validation, checkpoints.

``train(cfg, run_dir)`` is a plain function; the Hydra CLI is a thin wrapper around it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from seq2seq.alignment_eval import gold_from_config
from seq2seq.config import TrainAppConfig
from seq2seq.config_checks import check_config
from seq2seq.data.batching import Batch, ParallelDataset, make_loader
from seq2seq.data.pipeline import EncodedCorpus, PreparedData, prepare_data
from seq2seq.data.sampler import MemoryShard, TokenBatchSampler
from seq2seq.errors import Interrupted, UserError
from seq2seq.evaluation import Score
from seq2seq.models.build import build_model
from seq2seq.training.checkpoint import CheckpointKeeper, load_checkpoint, rank_rng_state
from seq2seq.training.distributed import Distributed, init_distributed, shutdown_distributed
from seq2seq.training.loss import label_smoothed_loss
from seq2seq.training.report import (
    BudgetBar,
    RunReport,
    best_weights,
    load_test_sets,
    metric_name,
    score_test_sets,
)
from seq2seq.training.resume import restore_optimization
from seq2seq.training.run_dir import run_directory
from seq2seq.training.schedule import build_optimizer, build_scheduler
from seq2seq.training.validation import (
    Probe,
    ValidResult,
    log_alignment_scores,
    log_gold_alignments,
    log_probes,
    validate,
)

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    shard_in_epoch: int = 0  # position in the epoch's shard order
    batch_in_shard: int = 0  # batches of that shard already consumed (by this rank)
    best_bleu: float = -1.0
    best_step: int = -1  # the step of best.pt
    bad_validations: int = 0  # validations since BLEU last improved
    last_valid_step: int = -1


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


def train(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Train the configured model; returns the final validation metrics."""
    check_config(cfg, TrainAppConfig)  # every setting, before any work
    with run_directory(Path(run_dir), cfg):
        ctx, device = init_distributed(cfg.train.device)
        try:
            return Trainer(cfg, Path(run_dir), ctx, device).run()
        finally:
            shutdown_distributed(ctx)


class Trainer:
    """Owns the model, optimizer, data and logging of one training run."""

    def __init__(self, cfg: DictConfig, run_dir: Path, ctx: Distributed, device: torch.device):
        self.cfg, self.run_dir, self.ctx, self.device = cfg, run_dir, ctx, device
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        resume_state = self._resume_checkpoint()
        # Each checkpoint names its run, so averaging never mixes two runs' weights.
        self.run_id: str = (resume_state or {}).get("run_id") or uuid.uuid4().hex
        seed_everything(cfg.train.seed + ctx.rank)

        # Rank 0 prepares (or checks) the training shards first; other ranks then map them.
        if not ctx.is_main:
            ctx.barrier()
        self.data: PreparedData = prepare_data(cfg.data, log, check_hashes=ctx.is_main)
        self.test_sets = load_test_sets(cfg)  # a bad split fails now, not after training
        if ctx.is_main:
            ctx.barrier()
        tok = self.data.tokenizer
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        self.model_config: dict[str, Any] = model_cfg  # type: ignore[assignment]
        self.model = self._new_model()
        self.optimizer = build_optimizer(list(self.model.parameters()), cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim)
        self.per_step_schedule = cfg.optim.schedule != "plateau"
        self.amp_dtype = PRECISIONS[cfg.train.precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        if resume_state is not None:
            self._restore(resume_state)
        self.compiled = cfg.train.compile  # cleared if compilation fails, at any step
        self.network = self._network()

        self.sampler = TokenBatchSampler(
            self.data.train.shards,
            batch_tokens=cfg.data.batch_tokens,
            shuffle=True,
            seed=cfg.train.seed,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
        )
        self.loader = make_loader(
            self.data.train,
            self.sampler,
            num_workers=cfg.data.num_workers,
            pin_memory=device.type == "cuda",
        )
        self.valid_batches = fixed_batches(
            fitting(self.data.valid, self.model.max_positions), cfg.data.batch_tokens
        )
        self.probes = make_probes(self.data, cfg)
        self.align_gold = gold_from_config(cfg.valid, tok)  # None unless valid.align_gold is set
        self.keeper = CheckpointKeeper(run_dir / "checkpoints", cfg.train.keep_last)
        self.writer = SummaryWriter(str(run_dir / "tensorboard")) if ctx.is_main else None
        if ctx.is_main:  # the SentencePiece model(s) beside the checkpoints, for other tools
            tok.save(run_dir / "checkpoints")
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "model: %s, %.2fM parameters, device %s", model_cfg["family"], n_params / 1e6, device
        )
        if resume_state is not None:  # last: building the loaders above draws from the RNG
            self._restore_rng(resume_state)

    # ----------------------------------------------------------------------- the loop

    def run(self) -> dict[str, float]:
        """Train until max_steps, max_epochs, the time budget, early stopping or a signal."""
        cfg, state = self.cfg.train, self.state
        started = time.monotonic()
        result: ValidResult | None = None
        progress = BudgetBar(cfg, state.step, started, enabled=cfg.progress and self.ctx.is_main)
        window = Window()
        with StopRequested() as stop:
            # a resumed run may already be done: killed after its last step was saved
            stop_reason = self._stop_reason(stop, 0.0)
            while not stop_reason:
                if state.epoch >= cfg.max_epochs:
                    stop_reason = f"reached train.max_epochs={cfg.max_epochs}"
                    break
                self.sampler.set_epoch(state.epoch, state.shard_in_epoch, state.batch_in_shard)
                # A new loader iterator draws a seed from the global RNG; a resumed run makes
                # one mid-epoch, so fork the RNG to keep dropout identical to an unbroken run.
                with torch.random.fork_rng(devices=[]):
                    batches = iter(self.loader)
                for micro in accumulation_groups(batches, cfg.accum_steps):
                    state.shard_in_epoch, state.batch_in_shard = self.sampler.advance(
                        state.shard_in_epoch, state.batch_in_shard, len(micro)
                    )
                    self._update(micro, window)
                    if state.step % cfg.log_every == 0:
                        self._log_train(window, progress)
                    if state.step % cfg.valid_every == 0:
                        result = self._validate_and_save()
                    minutes = (time.monotonic() - started) / 60
                    stop_reason = self._stop_reason(stop, minutes)
                    if stop_reason:
                        break
                else:
                    state.epoch += 1
                    state.shard_in_epoch = state.batch_in_shard = 0
        progress.close()
        log.info("stopping: %s (step %d, epoch %d)", stop_reason, state.step, state.epoch)
        signalled = stop_reason.startswith("signal")
        if state.last_valid_step != state.step:
            if signalled:  # save first: a cluster's grace period may end during validation
                self._save(is_best=False)
            result = self._validate_and_save()
        test = {} if signalled else self._test_best()
        if self.writer is not None:
            self.writer.close()
        summary = self._summary(result, test)
        if self.ctx.is_main:
            report = RunReport(
                stop_reason,
                state.step,
                state.epoch,
                (time.monotonic() - started) / 60,
                state.best_bleu,
                state.best_step,
                self.run_dir,
                test,
                {k: v for k, v in summary.items() if k.startswith("valid_")},
                self.data.valid.raw.src[0] if self.data.valid.raw.src else "Hello.",
            )
            report.write()
            log.info("%s", report.summary())
        if signalled:  # every rank, so every rank's exit status says so
            signum = stop.signum or signal.SIGTERM  # a signal that reached another rank only
            checkpoint = self.run_dir / "checkpoints" / "last.pt"
            message = (
                f"{signal.Signals(signum).name} received: checkpoint saved at step "
                f"{state.step}; continue with train.resume={checkpoint}"
            )
            if self.ctx.is_main:
                log.warning(message)
            raise Interrupted(signum, message)
        return summary

    def _stop_reason(self, stop: StopRequested, minutes: float) -> str:
        cfg, state = self.cfg.train, self.state
        if self.ctx.any(stop.signum is not None, self.device):
            name = signal.Signals(stop.signum).name if stop.signum is not None else None
            return f"signal {name or 'on another rank'}"
        if state.step >= cfg.max_steps:
            return f"reached train.max_steps={cfg.max_steps}"
        if cfg.max_minutes is not None and minutes >= cfg.max_minutes:
            return f"reached train.max_minutes={cfg.max_minutes}"
        if state.bad_validations >= cfg.patience:
            return f"early stopping: no BLEU gain in {cfg.patience} validations"
        return ""

    def _update(self, micro: list[Batch], window: Window) -> None:
        """One optimizer step over ``micro`` batches, the loss normalised by target tokens."""
        cfg = self.cfg.train
        local_tokens = sum(b.num_tgt_tokens for b in micro)
        # Normalise by the global token count; DDP averages gradients over ranks, so scale
        # by world_size to make the result the gradient of (sum of losses / all tokens).
        global_tokens = self.ctx.sum(float(local_tokens), self.device)
        scale = self.ctx.world_size / max(global_tokens, 1.0)
        try:
            loss_sum = self._accumulate(micro, scale)
        except Exception as err:  # noqa: BLE001 - torch.compile fails lazily, in these calls
            if not self.compiled:
                raise
            log.warning(
                "train.compile=true: the compiled model failed at step %d (%s); continuing "
                "without compilation (set train.compile=false to skip trying)",
                self.state.step + 1,
                f"{type(err).__name__}: {err}".splitlines()[0],
            )
            self.compiled = False
            self.optimizer.zero_grad(set_to_none=True)
            self.network = self._network()
            loss_sum = self._accumulate(micro, scale)
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.optim.clip_norm if self.cfg.optim.clip_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        finite = bool(torch.isfinite(grad_norm) & torch.isfinite(loss_sum))
        if finite or self.amp_dtype == torch.float16:  # fp16: the scaler skips inf steps
            self.scaler.step(self.optimizer)
            self.scaler.update()
            window.nonfinite = 0
        else:
            window.nonfinite += 1
            log.warning("step %d: non-finite loss or gradient, update skipped", self.state.step + 1)
            if window.nonfinite >= cfg.max_nonfinite:
                raise UserError(
                    f"{window.nonfinite} consecutive non-finite steps: training diverged. "
                    f"Lower optim.lr, keep optim.clip_norm > 0, or use train.precision=fp32."
                )
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        if self.per_step_schedule:
            self.scheduler.step()
        window.add(loss_sum, local_tokens, sum(b.src_mask.sum() for b in micro), grad_norm)

    def _accumulate(self, micro: list[Batch], scale: float) -> torch.Tensor:
        """Forward and backward of every micro-batch; DDP all-reduces only after the last."""
        loss_sum = torch.zeros((), device=self.device)
        for i, batch in enumerate(micro):
            batch = batch.to(self.device, non_blocking=True)
            sync = i == len(micro) - 1 or not self.ctx.enabled
            with self._autocast(), contextlib.nullcontext() if sync else self.network.no_sync():
                logits, _ = self.network(batch.src, batch.src_mask, batch.tgt_in)
                loss = label_smoothed_loss(logits, batch.tgt_out, self.cfg.train.label_smoothing)
            self.scaler.scale(loss * scale).backward()
            loss_sum += loss.detach()
        return loss_sum

    def _new_model(self) -> nn.Module:
        """The configured network for this run's vocabulary, on the run's device."""
        tok = self.data.tokenizer
        model = build_model(
            self.model_config, tok.src_vocab_size, tok.tgt_vocab_size, joint_vocab=tok.joint
        )
        return model.to(self.device)

    def _network(self) -> nn.Module:
        """The module the steps run: the model, compiled while that works, in DDP if distributed."""
        network = compile_or_warn(self.model) if self.compiled else self.model
        self.compiled = network is not self.model
        if self.ctx.enabled:
            network = DistributedDataParallel(
                network, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        return network

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ----------------------------------------------------------------------- logging

    def _log_train(self, window: Window, progress: BudgetBar) -> None:
        """Read the accumulated scalars (the only host sync of the interval) and log them."""
        stats = window.flush(self.ctx, self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        figures = {"loss": f"{stats['loss']:.3f}", "lr": f"{lr:.2e}"}
        progress.show(self.state.step, {**figures, "tok_s": f"{stats['tokens_per_sec']:.0f}"})
        if self.writer is None:
            return
        for name, value in stats.items():
            self.writer.add_scalar(f"train/{name}", value, self.state.step)
        self.writer.add_scalar("train/lr", lr, self.state.step)
        if not progress.disable:
            return
        log.info(
            "step %d | loss %.3f | lr %.2e | %.0f tgt tok/s | grad norm %.2f",
            self.state.step,
            stats["loss"],
            lr,
            stats["tokens_per_sec"],
            stats["grad_norm"],
        )

    # ----------------------------------------------------------------------- validation

    def _validate_and_save(self) -> ValidResult:
        """Validate (sharded over ranks), update the schedule and early stopping, save."""
        state = self.state
        state.last_valid_step = state.step
        # Every rank gets the same gathered hypotheses, hence the same BLEU, so plateau LR
        # and early stopping stay in step without another collective.
        result = validate(
            self.model,
            self.valid_batches,
            self.data.valid,
            self.data.tokenizer,
            self.cfg.valid,
            self.device,
            self._autocast(),
            self.align_gold,
            self.ctx,
        )
        improved = result.bleu > state.best_bleu
        if improved:
            state.best_bleu = result.bleu
            state.best_step = state.step
            state.bad_validations = 0
        else:
            state.bad_validations += 1
        if self.ctx.is_main:
            self._log_valid(result)
            if self.probes:
                log_probes(
                    self.model,
                    self.probes,
                    self.data.tokenizer,
                    self.cfg.valid,
                    self.device,
                    self.writer,
                    state.step,
                )
            if result.alignment is not None and self.align_gold is not None:
                log_gold_alignments(
                    self.model,
                    self.align_gold,
                    self.data.tokenizer,
                    self.cfg.valid.num_probes,
                    result.alignment.layer,
                    self.device,
                    self.writer,
                    state.step,
                )
        if not self.per_step_schedule:
            self.scheduler.step(result.bleu)
        self._save(is_best=improved)  # after the schedule update, so a resume continues it exactly
        return result

    def _save(self, is_best: bool) -> None:
        """Write this step's checkpoint on rank 0, with every rank's RNG states (all ranks call)."""
        rng_ranks = self.ctx.gather(rng_state())
        if self.ctx.is_main:
            self.keeper.save(self.checkpoint_state(rng_ranks), self.state.step, is_best=is_best)
        self.ctx.barrier()

    def _log_valid(self, result: ValidResult) -> None:
        step = self.state.step
        bleu, chrf = result.scores["bleu"], result.scores["chrf"]
        log.info(
            "valid step %d | loss %.3f | ppl %.2f | BLEU %.2f | chrF %.2f | best BLEU %.2f",
            step,
            result.loss,
            result.ppl,
            bleu.score,
            chrf.score,
            self.state.best_bleu,
        )
        assert self.writer is not None
        self.writer.add_scalar("valid/loss", result.loss, step)
        self.writer.add_scalar("valid/ppl", result.ppl, step)
        self.writer.add_scalar("valid/bleu", bleu.score, step)
        self.writer.add_scalar("valid/chrf", chrf.score, step)
        self.writer.add_text("valid/signature", f"{bleu.signature}  \n{chrf.signature}", step)
        if result.alignment is not None:
            log_alignment_scores(self.writer, result.alignment, step)

    def _test_best(self) -> dict[str, dict[str, Score]]:
        """Score ``best.pt`` on the test sets, logged with signatures and to TensorBoard."""
        if not self.test_sets:
            return {}
        model = self.model
        if self.state.best_step != self.state.step:  # another model: self.model stays final
            model = self._new_model()
            model.load_state_dict(best_weights(self.run_dir / "checkpoints" / "best.pt", self.ctx))
        results = score_test_sets(
            model,
            self.data.tokenizer,
            self.test_sets,
            self.cfg.decode,
            self.device,
            self.ctx,
            self._autocast(),
        )
        if self.ctx.is_main:
            self._log_test(results)
        return results

    def _log_test(self, results: dict[str, dict[str, Score]]) -> None:
        assert self.writer is not None
        for split, scores in results.items():
            for score in scores.values():
                name = metric_name(score)
                log.info("test %s | %s %.2f | %s", split, name, score.score, score.signature)
                self.writer.add_scalar(f"test/{split}/{score.name}", score.score, self.state.step)
            signatures = "  \n".join(score.signature for score in scores.values())
            self.writer.add_text(f"test/{split}/signature", signatures, self.state.step)

    def _summary(
        self, result: ValidResult | None, test: dict[str, dict[str, Score]]
    ) -> dict[str, float]:
        summary = {"step": float(self.state.step), "best_bleu": self.state.best_bleu}
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

    # ----------------------------------------------------------------------- checkpoints

    def checkpoint_state(self, rng_ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything needed to translate and to resume exactly; plain tensors and builtins.

        ``rng_ranks``: every rank's RNG states, in rank order (default: this process's).
        """
        rng_ranks = rng_ranks or [rng_state()]
        return {
            "model": self.model.state_dict(),
            "model_config": self.model_config,
            "tokenizer": self.data.tokenizer.to_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_state": asdict(self.state),
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks,  # each rank draws its own dropout masks: resume each exactly
            "run_id": self.run_id,
        }

    def _resume_checkpoint(self) -> dict[str, Any] | None:
        resume = self.cfg.train.resume
        if resume is None:
            return None
        if resume == "auto":
            path = self.run_dir / "checkpoints" / "last.pt"
            if not path.is_file():
                log.info("train.resume=auto: no %s yet, starting fresh", path)
                return None
            resume = path
        log.info("resuming from %s", resume)
        return load_checkpoint(resume)

    def _restore_rng(self, ckpt: dict[str, Any]) -> None:
        """Each rank continues its own random streams (dropout), as saved."""
        saved = len(ckpt.get("rng_ranks") or [None])
        if saved != self.ctx.world_size and self.ctx.is_main:
            log.warning(
                "train.resume: the checkpoint's run had %d rank(s), this one %d: ranks other "
                "than 0 draw fresh random streams, so dropout differs from an unbroken run",
                saved,
                self.ctx.world_size,
            )
        state = rank_rng_state(ckpt, self.ctx.rank, self.ctx.world_size)
        if state is not None:
            restore_rng(state)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        family = ckpt["model_config"].get("family")
        if family != self.model_config["family"]:
            raise UserError(
                f"train.resume: the checkpoint is a {family} model but this run trains "
                f"model={self.model_config['family']}; pass model={family} or another checkpoint."
            )
        if ckpt["tokenizer"] != self.data.tokenizer.to_state():
            raise UserError(
                "train.resume: the checkpoint was trained with another vocabulary (different "
                "data or data.tokenizer settings); resume with the same data settings."
            )
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise UserError(
                f"train.resume: the checkpoint's weights do not fit this model config ({err}). "
                f"Resume with the model settings it was trained with: {ckpt['model_config']}"
            ) from None
        restore_optimization(self.optimizer, self.scheduler, ckpt, self.cfg.optim)
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["train_state"])


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


def accumulation_groups(batches: Iterator[Batch], size: int) -> Iterator[list[Batch]]:
    """Consecutive groups of ``size`` micro-batches, one update each; the epoch's last group
    may be smaller, so no batch goes unused (its update is normalised by its own tokens)."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def fitting(corpus: EncodedCorpus, max_positions: int | None) -> EncodedCorpus:
    """The pairs whose source, and BOS + target, fit the model's positions (for the loss)."""
    if max_positions is None:
        return corpus
    keep = [
        i
        for i, (s, t) in enumerate(zip(corpus.src_ids, corpus.tgt_ids, strict=True))
        if len(s) <= max_positions and len(t) < max_positions
    ]
    if len(keep) < len(corpus):
        log.warning(
            "%d validation pairs are longer than model.max_positions=%d: left out of the "
            "validation loss; their sources are cut for BLEU",
            len(corpus) - len(keep),
            max_positions,
        )
    return corpus.select(keep)


def fixed_batches(corpus: EncodedCorpus, batch_tokens: int) -> list[Batch]:
    """Validation batches in a fixed order, built once."""
    sampler = TokenBatchSampler(
        [MemoryShard.of([len(s) for s in corpus.src_ids], [len(t) for t in corpus.tgt_ids])],
        batch_tokens=batch_tokens,
        shuffle=False,
        seed=0,
    )
    loader = make_loader(ParallelDataset(corpus.src_ids, corpus.tgt_ids), sampler, 0, False)
    return list(loader)


def make_probes(data: PreparedData, cfg: DictConfig) -> list[Probe]:
    """The first K validation sentences plus the configured probe sentences."""
    valid = data.valid
    count = min(cfg.valid.num_probes, len(valid.src_ids))
    probes = [Probe(valid.raw.src[i], valid.raw.tgt[i], valid.src_ids[i]) for i in range(count)]
    extra = list(cfg.valid.probe_sentences)
    for text, ids in zip(extra, data.tokenizer.encode_src(extra), strict=True):
        probes.append(Probe(text, None, ids))
    return [p for p in probes if p.src_ids]


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and builtins, for exact resume."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
