"""The training loop: token-budget batches, label-smoothed loss, validation, checkpoints.

``train(cfg, run_dir)`` is a plain function; the Hydra CLI is a thin wrapper around it.
The loop's parts live beside it: resume state (state.py, resume.py), validation and its
pictures (validation.py, probes.py), the network wrapping (network.py), metric windows
(window.py), stop conditions (stopping.py), the end-of-run report (report.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from seq2seq.config import TrainAppConfig
from seq2seq.config_checks import check_config
from seq2seq.data.batching import Batch, accumulation_groups, token_batches
from seq2seq.data.pipeline import PreparedData, prepare_data
from seq2seq.evaluation import Score
from seq2seq.models.build import build_model
from seq2seq.readout import CHECKPOINT_KEY, Readout
from seq2seq.training.checkpoint import CheckpointKeeper
from seq2seq.training.distributed import Distributed, init_distributed, shutdown_distributed
from seq2seq.training.loss import label_smoothed_loss
from seq2seq.training.network import PRECISIONS, autocast, compile_or_warn, distribute
from seq2seq.training.report import (
    BudgetBar,
    RunReport,
    best_weights,
    load_test_sets,
    log_test,
    run_summary,
    score_test_sets,
)
from seq2seq.training.resume import (
    find_resume_checkpoint,
    restore_model,
    restore_optimization,
    restore_rng_streams,
)
from seq2seq.training.run_dir import run_directory
from seq2seq.training.schedule import build_optimizer, build_scheduler
from seq2seq.training.state import TrainState, rng_state, seed_everything
from seq2seq.training.stopping import StopRequested, interruption, stop_reason
from seq2seq.training.validation import Validator, ValidResult
from seq2seq.training.window import Window, log_train

log = logging.getLogger(__name__)


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
        resume_state = find_resume_checkpoint(cfg.train.resume, run_dir)
        # Each checkpoint names its run, so averaging never mixes two runs' weights.
        self.run_id: str = (resume_state or {}).get("run_id") or uuid.uuid4().hex
        seed_everything(cfg.train.seed + ctx.rank)
        self.data, self.test_sets = self._load_data()
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
        self.sampler, self.loader = token_batches(  # this rank's share of the batches
            self.data.train,
            cfg.data.batch_tokens,
            shuffle=True,
            seed=cfg.train.seed,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            num_workers=cfg.data.num_workers,
            pin_memory=device.type == "cuda",
        )
        self.writer = SummaryWriter(str(run_dir / "tensorboard")) if ctx.is_main else None
        self.validator = Validator(
            self.data, cfg, self.model.max_positions, ctx, device, self.writer
        )
        if resume_state is not None:  # the reading and layer the last dev AER chose
            self.validator.chosen = Readout.stored(resume_state)
        self.keeper = CheckpointKeeper(run_dir / "checkpoints", cfg.train.keep_last)
        if ctx.is_main:  # the SentencePiece model(s) beside the checkpoints, for other tools
            self.data.tokenizer.save(run_dir / "checkpoints")
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "model: %s, %.2fM parameters, device %s", model_cfg["family"], n_params / 1e6, device
        )
        if resume_state is not None:  # last: building the loaders above draws from the RNG
            restore_rng_streams(resume_state, ctx)

    def _load_data(self) -> tuple[PreparedData, dict[str, Any]]:
        """The prepared corpora and test sets; rank 0 first, so the others read its caches."""
        if not self.ctx.is_main:
            self.ctx.barrier()
        data = prepare_data(self.cfg.data, log, check_hashes=self.ctx.is_main)
        test_sets = load_test_sets(self.cfg)  # a bad split fails now, not after training
        if self.ctx.is_main:
            self.ctx.barrier()
        return data, test_sets

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
                        lr = self.optimizer.param_groups[0]["lr"]
                        stats = window.flush(self.ctx, self.device)  # the interval's host sync
                        log_train(stats, lr, state.step, progress, self.writer)
                    if state.step % cfg.valid_every == 0:
                        result = self._validate_and_save()
                    stop_reason = self._stop_reason(stop, (time.monotonic() - started) / 60)
                    if stop_reason:
                        break
                else:
                    state.epoch += 1
                    state.shard_in_epoch = state.batch_in_shard = 0
        progress.close()
        return self._finish(stop_reason, stop, result, (time.monotonic() - started) / 60)

    def _finish(
        self, stop_reason: str, stop: StopRequested, result: ValidResult | None, minutes: float
    ) -> dict[str, float]:
        """Validate and save the last step, test best.pt, report; re-raise a signal's stop."""
        state = self.state
        log.info("stopping: %s (step %d, epoch %d)", stop_reason, state.step, state.epoch)
        signalled = stop_reason.startswith("signal")
        if state.last_valid_step != state.step:
            if signalled:  # save first: a cluster's grace period may end during validation
                self._save(is_best=False)
            result = self._validate_and_save()
        test = {} if signalled else self._test_best()
        if self.writer is not None:
            self.writer.close()
        summary = run_summary(state, result, test)
        if self.ctx.is_main:
            valid = {k: v for k, v in summary.items() if k.startswith("valid_")}
            example = self.data.valid.raw.src[0] if self.data.valid.raw.src else "Hello."
            counts = (state.step, state.epoch, minutes, state.best_bleu, state.best_step)
            report = RunReport(stop_reason, *counts, self.run_dir, test, valid, example)
            report.write()
            log.info("%s", report.summary())
        if signalled:  # every rank, so every rank's exit status says so
            error = interruption(stop, state.step, self.run_dir)
            if self.ctx.is_main:
                log.warning(str(error))
            raise error
        return summary

    def _stop_reason(self, stop: StopRequested, minutes: float) -> str:
        signalled = self.ctx.any(stop.signum is not None, self.device)
        name = (stop.name if stop.signum is not None else "") if signalled else None
        return stop_reason(self.cfg.train, self.state, name, minutes)

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
            window.skipped(self.state.step + 1, cfg.max_nonfinite)
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
        return distribute(network, self.ctx, self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp_dtype)

    # ----------------------------------------------------------------------- validation

    def _validate_and_save(self) -> ValidResult:
        """Validate (sharded over ranks), update the schedule and early stopping, save."""
        state = self.state
        state.last_valid_step = state.step
        # Every rank gets the same gathered hypotheses, hence the same BLEU, so plateau LR
        # and early stopping stay in step without another collective.
        result = self.validator.measure(self.model, self._autocast())
        improved = result.bleu > state.best_bleu
        if improved:
            state.best_bleu = result.bleu
            state.best_step = state.step
            state.bad_validations = 0
        else:
            state.bad_validations += 1
        self.validator.report(self.model, result, state.step, state.best_bleu)
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
        if self.writer is not None:
            log_test(self.writer, results, self.state.step)
        return results

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
            # how alignments are read (chosen by dev AER; None without valid.align_gold)
            CHECKPOINT_KEY: chosen.to_state() if (chosen := self.validator.chosen) else None,
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        restore_model(self.model, self.model_config, self.data.tokenizer.to_state(), ckpt)
        restore_optimization(self.optimizer, self.scheduler, ckpt, self.cfg.optim)
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState.restored(ckpt["train_state"])
