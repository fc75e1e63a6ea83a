"""Validation: loss and perplexity, decoded BLEU/chrF, and the alignment probes."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from seq2seq.alignment_eval import (
    AlignmentScores,
    GoldSet,
    evaluate_alignment,
    forced_attention,
    scorable,
    word_scores,
)
from seq2seq.config import DecodeConfig, ValidConfig
from seq2seq.data.batching import Batch
from seq2seq.data.pipeline import EncodedCorpus
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.evaluation import Score, corpus_scores
from seq2seq.heatmaps import attention_figure, figure_to_array, head_grid_figure
from seq2seq.inference import clip_sources, decode_corpus
from seq2seq.special_tokens import BOS_ID, PAD_ID
from seq2seq.training.distributed import Distributed
from seq2seq.training.loss import label_smoothed_loss, perplexity

log = logging.getLogger(__name__)


@dataclass
class Probe:
    """A sentence whose alignment heatmap is drawn at every validation."""

    source: str
    reference: str | None
    src_ids: list[int]


@dataclass
class ValidResult:
    """What one validation measured."""

    loss: float
    ppl: float
    scores: dict[str, Score]
    hypotheses: list[str]
    alignment: AlignmentScores | None = None  # attention vs. gold links, when gold is given

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
    alignment = None
    if gold is not None and ctx.is_main:
        with autocast:
            batch_size = cfg.decode.batch_size
            alignment = evaluate_alignment(model, tokenizer, gold, device, None, batch_size)
    model.train()
    return ValidResult(loss, perplexity(loss), scores, hypotheses, alignment)


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


@torch.no_grad()
def log_probes(
    model: nn.Module,
    probes: list[Probe],
    tokenizer: Tokenizer,
    cfg: ValidConfig,
    device: torch.device,
    writer: SummaryWriter,
    step: int,
) -> None:
    """Draw each probe's attention over the model's own translation into TensorBoard."""
    model.eval()
    sources = clip_sources(model, [p.src_ids for p in probes])
    nbests = decode_corpus(model, sources, device, cfg.decode)
    for k, (probe, src_ids, hyps) in enumerate(zip(probes, sources, nbests, strict=True)):
        hyp = hyps[0].tokens
        src = torch.tensor([src_ids], device=device)  # (1, S)
        tgt_in = torch.tensor([[BOS_ID, *hyp]], device=device)  # (1, T)
        _, attention = model(src, src != PAD_ID, tgt_in, need_weights=True)
        src_tokens = tokenizer.src_pieces(src_ids)
        tgt_tokens = [*tokenizer.tgt_pieces(hyp), "</s>"]
        cross = attention.cross[0].float().cpu()  # (L, H, T, S)
        layer = cross[cfg.alignment_layer]  # (H, T, S)
        title = f"step {step}"
        figure = attention_figure(layer.mean(0).numpy(), src_tokens, tgt_tokens, title=title)
        writer.add_image(f"alignment/{k}", figure_to_array(figure), step, dataformats="HWC")
        if cross.shape[0] * cross.shape[1] > 1:
            grid = head_grid_figure(cross.numpy(), src_tokens, tgt_tokens)
            writer.add_image(f"alignment_heads/{k}", figure_to_array(grid), step, dataformats="HWC")
        if attention.encoder is not None:
            enc = attention.encoder[0, cfg.alignment_layer].float().mean(0).cpu()  # (S, S)
            figure = attention_figure(enc.numpy(), src_tokens, src_tokens, title=title)
            writer.add_image(
                f"encoder_attention/{k}", figure_to_array(figure), step, dataformats="HWC"
            )
        text = f"**source:** {probe.source}  \n**hypothesis:** {tokenizer.decode_tgt(hyp)}"
        if probe.reference is not None:
            text += f"  \n**reference:** {probe.reference}"
        writer.add_text(f"probe/{k}", text, step)
    model.train()


@torch.no_grad()
def log_gold_alignments(
    model: nn.Module,
    gold: GoldSet,
    tokenizer: Tokenizer,
    count: int,
    layer: int,
    device: torch.device,
    writer: SummaryWriter,
    step: int,
) -> None:
    """Draw the first ``count`` gold sentences' word attention with their gold links marked.

    The reference is force-decoded, so rows are the gold target words and the picture is
    the matrix AER scores (one ``layer``, heads averaged), rows rescaled to sum to 1.
    """
    keep = [k for k in range(len(gold)) if scorable(tokenizer, gold.src[k], gold.tgt[k])][:count]
    src_ids = tokenizer.encode_src([gold.src[k] for k in keep])
    tgt_ids = tokenizer.encode_tgt([gold.tgt[k] for k in keep])
    attentions = forced_attention(model, src_ids, tgt_ids, device)
    for n, (k, src, tgt, cross) in enumerate(zip(keep, src_ids, tgt_ids, attentions, strict=True)):
        src_pieces, tgt_pieces = tokenizer.src_pieces(src), [*tokenizer.tgt_pieces(tgt), "</s>"]
        words = word_scores(cross, src_pieces, tgt_pieces, layer)  # (T_words, S_words)
        totals = words.sum(axis=1, keepdims=True)  # (T_words, 1)
        words = np.divide(words, totals, out=np.zeros_like(words), where=totals > 0)
        figure = attention_figure(
            words,
            gold.src[k].split(),
            gold.tgt[k].split(),
            title=f"step {step}, layer {layer}: gold sure = squares, possible = dots",
            gold=(gold.sure[k], gold.possible[k]),
        )
        writer.add_image(f"alignment_gold/{n}", figure_to_array(figure), step, dataformats="HWC")


def log_alignment_scores(writer: SummaryWriter, alignment: AlignmentScores, step: int) -> None:
    """``valid/aer`` of the chosen layer, and ``valid/aer_layer<l>`` when there are several."""
    per_layer = " ".join(f"{scores['aer']:.3f}" for scores in alignment.layers)
    log.info(
        "valid step %d | AER %.3f (layer %d; per layer %s) | %d gold sentences, %d skipped",
        step,
        alignment.scores["aer"],
        alignment.layer,
        per_layer,
        alignment.sentences,
        alignment.skipped,
    )
    writer.add_scalar("valid/aer", alignment.scores["aer"], step)
    writer.add_scalar("valid/align_f1", alignment.scores["f1"], step)
    if len(alignment.layers) > 1:
        writer.add_scalar("valid/aer_best_layer", alignment.layer, step)
        for layer, scores in enumerate(alignment.layers):
            writer.add_scalar(f"valid/aer_layer{layer}", scores["aer"], step)
