"""Validation: loss and perplexity, decoded BLEU/chrF, AER against a gold set, and their logs."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from seq2seq.alignment_eval import (
    GoldSet,
    ReadoutScores,
    best_readout,
    gold_from_config,
    score_readouts,
)
from seq2seq.config import DecodeConfig, ValidConfig
from seq2seq.data.batching import Batch, ParallelDataset, token_batches
from seq2seq.data.pipeline import EncodedCorpus, PreparedData
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.evaluation import Score, corpus_scores
from seq2seq.inference import decode_corpus
from seq2seq.models.base import position_limits
from seq2seq.readout import NULL_READINGS, READINGS, Readout, resolve_readout
from seq2seq.training.distributed import Distributed
from seq2seq.training.loss import label_smoothed_loss, perplexity
from seq2seq.training.probes import log_gold_alignments, log_probes, make_probes

log = logging.getLogger(__name__)


@dataclass
class ValidResult:
    """What one validation measured."""

    loss: float
    ppl: float
    scores: dict[str, Score]
    hypotheses: list[str]
    # attention vs. gold links, when gold is given: every readout
    readouts: list[ReadoutScores] | None = None

    @property
    def alignment(self) -> ReadoutScores | None:
        """The readout with the lowest AER (None without a gold set)."""
        return best_readout(self.readouts) if self.readouts else None

    @property
    def bleu(self) -> float:
        """Corpus BLEU of the decoded validation sentences."""
        return self.scores["bleu"].score


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: list[Batch],
    corpus: EncodedCorpus,
    tokenizer: Tokenizer,
    cfg: ValidConfig,
    device: torch.device,
    autocast: AbstractContextManager,
    gold: GoldSet | None = None,
    ctx: Distributed | None = None,
) -> ValidResult:
    """Teacher-forced loss, decoded BLEU/chrF, and AER of the attention when ``gold`` is given.

    Under DDP every rank calls this: each takes every ``world_size``-th loss batch and
    sentence, and the sums and hypotheses are gathered, so every rank returns the same
    scores and none waits in a collective while another decodes the whole set (a long beam
    validation would outlast the collective timeout). AER is measured on rank 0 only.
    """
    ctx = ctx or Distributed()
    model.eval()
    nll_sum, tokens = 0.0, 0
    for batch in batches[ctx.rank :: ctx.world_size]:
        batch = batch.to(device)
        with autocast:
            logits, _ = model(batch.src, batch.src_mask, batch.tgt_in)
        nll = label_smoothed_loss(logits, batch.tgt_out, smoothing=0.0)
        nll_sum += nll.item()
        tokens += batch.num_tgt_tokens
    loss = ctx.sum(nll_sum, device) / max(ctx.sum(float(tokens), device), 1.0)

    count = len(corpus.src_ids) if cfg.max_sentences is None else cfg.max_sentences
    sources = corpus.src_ids[:count]
    hypotheses = decode_sharded(model, sources, tokenizer, cfg.decode, device, ctx, autocast)
    scores = corpus_scores(hypotheses, corpus.raw.tgt[:count], ter=False)
    readouts = None
    if gold is not None and ctx.is_main:
        with autocast:
            readouts = score_readouts(model, tokenizer, gold, device, cfg.decode.batch_size)
    model.train()
    return ValidResult(loss, perplexity(loss), scores, hypotheses, readouts)


def decode_sharded(
    model: nn.Module,
    sources: list[list[int]],
    tokenizer: Tokenizer,
    options: DecodeConfig,
    device: torch.device,
    ctx: Distributed,
    autocast: AbstractContextManager,
) -> list[str]:
    """Detokenized best hypotheses of ``sources``, each rank decoding every world_size-th."""
    with autocast:
        nbests = decode_corpus(model, sources[ctx.rank :: ctx.world_size], device, options)
    shards = ctx.gather([tokenizer.decode_tgt(hyps[0].tokens) for hyps in nbests])
    hypotheses = [""] * len(sources)
    for rank, shard in enumerate(shards):
        hypotheses[rank :: ctx.world_size] = shard
    return hypotheses


def log_alignment_scores(writer: SummaryWriter, readouts: list[ReadoutScores], step: int) -> None:
    """``valid/aer`` of the best readout, and ``valid/aer_<reading>_<null>_layer<l>`` of each
    layer's heads averaged."""
    best = best_readout(readouts)
    averaged = [r for r in readouts if r.readout.head is None]
    per_layer = "; ".join(
        f"{reading}/{null} "
        + " ".join(
            f"{r.scores['aer']:.3f}"
            for r in averaged
            if (r.readout.reading, r.readout.null) == (reading, null)
        )
        for reading in READINGS
        for null in NULL_READINGS
    )
    log.info(
        "valid step %d | AER %.3f (%s) | heads averaged, per layer: %s",
        step,
        best.scores["aer"],
        best.readout.describe(),
        per_layer,
    )
    writer.add_scalar("valid/aer", best.scores["aer"], step)
    writer.add_scalar("valid/align_f1", best.scores["f1"], step)
    writer.add_text("valid/alignment_readout", best.readout.describe(), step)
    for r in averaged:
        tag = f"valid/aer_{r.readout.reading}_{r.readout.null}_layer{r.readout.layer}"
        writer.add_scalar(tag, r.scores["aer"], step)


def fitting(corpus: EncodedCorpus, max_positions: int | None) -> EncodedCorpus:
    """The pairs whose source, and BOS + target, fit the model's positions (for the loss)."""
    src_limit, tgt_limit = position_limits(max_positions)
    if src_limit is None or tgt_limit is None:
        return corpus
    keep = [
        i
        for i, (s, t) in enumerate(zip(corpus.src_ids, corpus.tgt_ids, strict=True))
        if len(s) <= src_limit and len(t) <= tgt_limit
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
    _, loader = token_batches(ParallelDataset(corpus.src_ids, corpus.tgt_ids), batch_tokens, False)
    return list(loader)


class Validator:
    """One run's validation set, batched once, with its probes and gold alignments.

    Every rank measures (each its share); rank 0 reports to the log and TensorBoard.
    """

    def __init__(
        self,
        data: PreparedData,
        cfg: DictConfig,
        max_positions: int | None,
        ctx: Distributed,
        device: torch.device,
        writer: SummaryWriter | None,
    ) -> None:
        self.data, self.cfg, self.ctx, self.device, self.writer = data, cfg, ctx, device, writer
        self.batches = fixed_batches(fitting(data.valid, max_positions), cfg.data.batch_tokens)
        self.probes = make_probes(data, cfg)
        self.gold = gold_from_config(cfg.valid, data.tokenizer)  # None unless valid.align_gold
        self.chosen: Readout | None = None  # the last dev AER's reading and layer (rank 0)

    @property
    def readout(self) -> Readout:
        """How the pictures read attention: the dev AER's choice unless valid.* overrides it."""
        cfg = self.cfg.valid
        return resolve_readout(self.chosen, cfg.alignment_layer, cfg.alignment_reading)

    def measure(self, model: nn.Module, autocast: AbstractContextManager) -> ValidResult:
        """Validate ``model`` (sharded over ranks; every rank gets the same scores)."""
        data = self.data
        args = (self.batches, data.valid, data.tokenizer, self.cfg.valid, self.device)
        result = validate(model, *args, autocast, self.gold, self.ctx)
        if result.alignment is not None:
            self.chosen = result.alignment.readout
        return result

    def report(self, model: nn.Module, result: ValidResult, step: int, best_bleu: float) -> None:
        """Log the scores, draw the probes and the gold alignments (rank 0)."""
        if self.writer is None:
            return
        log_scores(self.writer, result, step, best_bleu)
        tokenizer, cfg = self.data.tokenizer, self.cfg.valid
        readout = self.readout
        if self.probes:
            args = (tokenizer, cfg.decode, readout, self.device, self.writer, step)
            log_probes(model, self.probes, *args)
        if result.alignment is not None and self.gold is not None:
            args = (tokenizer, cfg.num_probes, readout, self.device, self.writer, step)
            log_gold_alignments(model, self.gold, *args)


def log_scores(writer: SummaryWriter, result: ValidResult, step: int, best_bleu: float) -> None:
    """One log line and the TensorBoard scalars of a validation."""
    bleu, chrf = result.scores["bleu"], result.scores["chrf"]
    log.info(
        "valid step %d | loss %.3f | ppl %.2f | BLEU %.2f | chrF %.2f | best BLEU %.2f",
        step,
        result.loss,
        result.ppl,
        bleu.score,
        chrf.score,
        best_bleu,
    )
    writer.add_scalar("valid/loss", result.loss, step)
    writer.add_scalar("valid/ppl", result.ppl, step)
    writer.add_scalar("valid/bleu", bleu.score, step)
    writer.add_scalar("valid/chrf", chrf.score, step)
    writer.add_text("valid/signature", f"{bleu.signature}  \n{chrf.signature}", step)
    if result.readouts:
        log_alignment_scores(writer, result.readouts, step)
