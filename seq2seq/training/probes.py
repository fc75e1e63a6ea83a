"""The pictures of validation: each probe's attention over its translation, and the gold set's.

Drawn into TensorBoard on rank 0 at every validation: the probes are the first
``valid.num_probes`` validation sentences plus ``valid.probe_sentences``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from seq2seq.alignment_eval import GoldSet, forced_attention, scorable, word_scores
from seq2seq.config import DecodeConfig
from seq2seq.data.pipeline import PreparedData
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.heatmaps import attention_figure, figure_to_array, head_grid_figure
from seq2seq.inference import clip_sources, decode_corpus
from seq2seq.readout import Readout
from seq2seq.special_tokens import BOS_ID, PAD_ID


@dataclass
class Probe:
    """A sentence whose alignment heatmap is drawn at every validation."""

    source: str
    reference: str | None
    src_ids: list[int]


def make_probes(data: PreparedData, cfg: DictConfig) -> list[Probe]:
    """The first K validation sentences plus the configured probe sentences."""
    valid = data.valid
    count = min(cfg.valid.num_probes, len(valid.src_ids))
    probes = [Probe(valid.raw.src[i], valid.raw.tgt[i], valid.src_ids[i]) for i in range(count)]
    extra = list(cfg.valid.probe_sentences)
    for text, ids in zip(extra, data.tokenizer.encode_src(extra), strict=True):
        probes.append(Probe(text, None, ids))
    return [p for p in probes if p.src_ids]


@torch.no_grad()
def log_probes(
    model: nn.Module,
    probes: list[Probe],
    tokenizer: Tokenizer,
    decode: DecodeConfig,
    readout: Readout,
    device: torch.device,
    writer: SummaryWriter,
    step: int,
) -> None:
    """Draw each probe's attention over the model's own translation into TensorBoard: the
    cross-attention as ``readout`` reads it, every head, and the last encoder layer's."""
    model.eval()
    sources = clip_sources(model, [p.src_ids for p in probes])
    nbests = decode_corpus(model, sources, device, decode)
    for k, (probe, src_ids, hyps) in enumerate(zip(probes, sources, nbests, strict=True)):
        hyp = hyps[0].tokens
        src = torch.tensor([src_ids], device=device)  # (1, S)
        tgt_in = torch.tensor([[BOS_ID, *hyp]], device=device)  # (1, T)
        _, attention = model(src, src != PAD_ID, tgt_in, need_weights=True)
        src_tokens = tokenizer.src_pieces(src_ids)
        tgt_tokens = [*tokenizer.tgt_pieces(hyp), "</s>"]
        cross = attention.cross[0].float().cpu()  # (L, H, T, S)
        matrix, rows = readout.matrix(cross, tgt_tokens)  # (T', S)
        title = f"step {step}"
        figure = attention_figure(matrix.numpy(), src_tokens, rows, title=title)
        writer.add_image(f"alignment/{k}", figure_to_array(figure), step, dataformats="HWC")
        if cross.shape[0] * cross.shape[1] > 1:
            grid = head_grid_figure(cross.numpy(), src_tokens, tgt_tokens)
            writer.add_image(f"alignment_heads/{k}", figure_to_array(grid), step, dataformats="HWC")
        if attention.encoder is not None:
            enc = attention.encoder[0, -1].float().mean(0).cpu()  # (S, S)
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
    readout: Readout,
    device: torch.device,
    writer: SummaryWriter,
    step: int,
) -> None:
    """Draw the first ``count`` gold sentences' word attention with their gold links marked.

    The reference is force-decoded, so rows are the gold target words and the picture is
    the matrix AER scores (``readout``'s step and layer, heads averaged), rows rescaled to
    sum to 1.
    """
    keep = [k for k in range(len(gold)) if scorable(tokenizer, gold.src[k], gold.tgt[k])][:count]
    src_ids = tokenizer.encode_src([gold.src[k] for k in keep])
    tgt_ids = tokenizer.encode_tgt([gold.tgt[k] for k in keep])
    attentions = forced_attention(model, src_ids, tgt_ids, device)
    for n, (k, src, tgt, cross) in enumerate(zip(keep, src_ids, tgt_ids, attentions, strict=True)):
        src_pieces, tgt_pieces = tokenizer.src_pieces(src), [*tokenizer.tgt_pieces(tgt), "</s>"]
        words = word_scores(cross, src_pieces, tgt_pieces, readout)  # (T_words, S_words)
        totals = words.sum(axis=1, keepdims=True)  # (T_words, 1)
        words = np.divide(words, totals, out=np.zeros_like(words), where=totals > 0)
        figure = attention_figure(
            words,
            gold.src[k].split(),
            gold.tgt[k].split(),
            title=f"step {step}, {readout.reading} layer {readout.layer}: "
            "gold sure = squares, possible = dots",
            gold=(gold.sure[k], gold.possible[k]),
        )
        writer.add_image(f"alignment_gold/{n}", figure_to_array(figure), step, dataformats="HWC")
