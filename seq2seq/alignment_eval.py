"""Score a model's attention against gold word alignments (AER per decoder layer).

The reference target is force-decoded (teacher forcing), so the attention rows belong to
the gold target words; the subword weights become word scores following SentencePiece's
word boundaries (:mod:`seq2seq.alignment`) and each target word links to its argmax.
The gold text must be tokenised by spaces, as alignment gold sets are: a sentence whose
SentencePiece words do not match its space-separated words cannot be scored and is
skipped and counted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from seq2seq.alignment import (
    Gold,
    Link,
    aer,
    gold_lines,
    read_naacl,
    read_pharaoh,
    strip_specials,
    subword_to_word,
    to_pharaoh,
    word_links,
    word_spans,
)
from seq2seq.config import EvaluateAppConfig, ValidConfig
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding import Hypothesis
from seq2seq.errors import UserError
from seq2seq.inference import pad_batch
from seq2seq.readout import NULL_READINGS, READINGS, Readout
from seq2seq.special_tokens import BOS_ID

log = logging.getLogger(__name__)

_NAACL_LINE = re.compile(r"\d+\s+\d+\s+\d+(\s+[SP])?(\s+\S+)?")


@dataclass
class GoldSet:
    """Space-tokenised sentence pairs with their gold sure/possible links, index-aligned."""

    src: list[str]
    tgt: list[str]
    sure: list[set[Link]]
    possible: list[set[Link]]

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class AlignmentScores:
    """AER, precision, recall and F1 of each decoder layer (heads averaged), and the pick."""

    layers: list[dict[str, float]]  # one metrics dict per layer; the RNN has one
    layer: int  # the layer reported as "the" alignment (0-based)
    sentences: int  # sentences scored
    skipped: int  # sentences whose subword words did not match their gold words
    reading: str = "predict"  # which decoder step's attention aligned (see Readout)

    @property
    def scores(self) -> dict[str, float]:
        """The chosen layer's metrics."""
        return self.layers[self.layer]


def read_gold(path: str | Path, n_sentences: int) -> list[Gold]:
    """Gold links of ``n_sentences`` sentences, Pharaoh or NAACL (``sent i j S|P``) by content."""
    lines = [line.strip() for line in gold_lines(path, "gold alignment")]
    first = next((line for line in lines if line), "")
    # "1001 1 1 S" has no dash or p between numbers, so it cannot be read as Pharaoh links.
    if _NAACL_LINE.fullmatch(first):
        golds = read_naacl(path, n_sentences=n_sentences)
    else:
        golds = read_pharaoh(path)
    if len(golds) != n_sentences:
        raise UserError(
            f"{path} has alignments for {len(golds)} sentences but the text has {n_sentences}; "
            "give the gold file of the same sentences."
        )
    return golds


def load_gold_set(gold: str | Path, src: str | Path, tgt: str | Path) -> GoldSet:
    """Read a gold alignment file and its space-tokenised source and target text."""
    texts = []
    for path in (src, tgt):
        texts.append(gold_lines(path, "alignment text"))
    if len(texts[0]) != len(texts[1]):
        raise UserError(f"{src} has {len(texts[0])} lines but {tgt} has {len(texts[1])}.")
    golds = read_gold(gold, len(texts[0]))
    return GoldSet(texts[0], texts[1], [s for s, _ in golds], [p for _, p in golds])


def gold_from_config(
    cfg: ValidConfig | EvaluateAppConfig, tokenizer: Tokenizer, prefix: str = "valid."
) -> GoldSet | None:
    """The ``align_gold`` set with its ``align_src``/``align_tgt`` text, or None if not set.

    ``prefix`` names where the keys live (``valid.`` in training) in error messages.
    """
    given = [cfg.align_gold, cfg.align_src, cfg.align_tgt]
    if not any(given):
        return None
    if not all(given):
        raise UserError(
            f"Alignment gold needs all three: {prefix}align_gold=<links> "
            f"{prefix}align_src=<source> {prefix}align_tgt=<target> "
            "(space-tokenised text, one sentence per line)."
        )
    gold = load_gold_set(cfg.align_gold, cfg.align_src, cfg.align_tgt)  # type: ignore[arg-type]
    skipped = sum(
        not scorable(tokenizer, src, tgt) for src, tgt in zip(gold.src, gold.tgt, strict=True)
    )
    if skipped == len(gold):
        raise UserError(
            f"None of the {len(gold)} sentences of {prefix}align_src/{prefix}align_tgt splits into "
            "its space-separated words; give word-tokenised text (words separated by spaces)."
        )
    if skipped:
        log.warning(
            "alignment gold: %d of %d sentences do not split into their words and "
            "are left out of the AER",
            skipped,
            len(gold),
        )
    return gold


def scorable(tokenizer: Tokenizer, src: str, tgt: str) -> bool:
    """Whether SentencePiece splits both sides into exactly their space-separated words.

    Gold links index the space-separated words, and a piece starting with "▁" starts a
    word. Normalisation can break the correspondence (NFKC turns "´" into a space and an
    accent), and such a sentence's links would point at the wrong words. An empty source
    has nothing to attend to.
    """
    if not src.split():
        return False
    src_pieces = tokenizer.src_pieces(tokenizer.encode_src([src])[0])
    tgt_pieces = tokenizer.tgt_pieces(tokenizer.encode_tgt([tgt])[0])
    src_ok = len(word_spans(src_pieces)) == len(src.split())
    return src_ok and len(word_spans(tgt_pieces)) == len(tgt.split())


def word_scores(
    cross: Tensor, src_pieces: Sequence[str], tgt_pieces: Sequence[str], readout: Readout
) -> np.ndarray:
    """Word scores (T_words, S_words) of (L, H, T, S) attention as ``readout`` reads it:
    special tokens (NULL too) dropped and rows renormalised before subwords merge into words.

    ``tgt_pieces`` label the T rows, EOS included.
    """
    matrix, tgt_pieces = readout.matrix(cross, tgt_pieces)
    return subword_to_word(*strip_specials(matrix, tgt_pieces, src_pieces))


def word_alignment(
    cross: Tensor, src_pieces: Sequence[str], tgt_pieces: Sequence[str], readout: Readout
) -> set[Link]:
    """Hard word links of (L, H, T, S) attention as ``readout`` reads it
    (:func:`~seq2seq.alignment.word_links`)."""
    matrix, tgt_pieces = readout.matrix(cross, tgt_pieces)
    return word_links(matrix, tgt_pieces, src_pieces, readout.null_unaligned)


@torch.no_grad()
def forced_attention(
    model: nn.Module,
    src_ids: list[list[int]],
    tgt_ids: list[list[int]],
    device: torch.device,
    batch_size: int = 32,
) -> list[Tensor]:
    """Cross-attention (L, H, T+1, S) on CPU of each pair with its target force-decoded.

    Row ``t`` is the step that predicts target token ``t``; the last row predicts EOS.
    """
    was_training = model.training
    model.eval()
    out: list[Tensor] = []
    for start in range(0, len(src_ids), batch_size):
        srcs, tgts = src_ids[start : start + batch_size], tgt_ids[start : start + batch_size]
        src, src_mask = pad_batch(srcs, device)  # (B, S), (B, S)
        tgt_in, _ = pad_batch([[BOS_ID, *t] for t in tgts], device)  # (B, T+1)
        _, attention = model(src, src_mask, tgt_in, need_weights=True)
        cross = attention.cross.float().cpu()  # (B, L, H, T+1, S)
        # Padding after a sentence's end cannot reach its rows: the decoder is causal.
        for b, (s, t) in enumerate(zip(srcs, tgts, strict=True)):
            out.append(cross[b, :, :, : len(t) + 1, : len(s)])
    model.train(was_training)
    return out


ForcedPair = tuple[Tensor, list[str], list[str]]  # (L, H, T+1, S) attention, src, tgt pieces


def forced_pairs(
    model: nn.Module,
    tokenizer: Tokenizer,
    src_texts: list[str],
    tgt_texts: list[str],
    device: torch.device,
    batch_size: int = 32,
) -> list[ForcedPair]:
    """Each pair's cross-attention with its target force-decoded, and the pieces labelling
    it (the target's EOS included)."""
    src_ids, tgt_ids = tokenizer.encode_src(src_texts), tokenizer.encode_tgt(tgt_texts)
    attentions = forced_attention(model, src_ids, tgt_ids, device, batch_size)
    return [
        (cross, tokenizer.src_pieces(src), [*tokenizer.tgt_pieces(tgt), "</s>"])
        for src, tgt, cross in zip(src_ids, tgt_ids, attentions, strict=True)
    ]


def pair_links(pairs: Sequence[ForcedPair], readout: Readout) -> list[set[Link]]:
    """Hard word links of each pair as ``readout`` reads its attention."""
    return [word_alignment(cross, src, tgt, readout) for cross, src, tgt in pairs]


def layer_links(
    model: nn.Module,
    tokenizer: Tokenizer,
    src_texts: list[str],
    tgt_texts: list[str],
    device: torch.device,
    batch_size: int = 32,
    reading: str = "predict",
    use_null: bool = True,
) -> list[list[set[Link]]]:
    """Hard word links ``[layer][pair]`` of each pair, its target force-decoded.

    The texts are space-tokenised words that their SentencePiece pieces split into
    (:func:`scorable`); a link ``(i, j)`` joins source word i and target word j.
    ``use_null``: attention to a NULL position leaves a word unaligned (:func:`word_links`).
    """
    pairs = forced_pairs(model, tokenizer, src_texts, tgt_texts, device, batch_size)
    n_layers = pairs[0][0].shape[0] if pairs else 1
    null = "unaligned" if use_null else "dropped"
    return [pair_links(pairs, Readout(reading, layer, null=null)) for layer in range(n_layers)]


def evaluate_alignment(
    model: nn.Module,
    tokenizer: Tokenizer,
    gold: GoldSet,
    device: torch.device,
    layer: int | None = None,
    batch_size: int = 32,
    reading: str = "predict",
    use_null: bool = True,
) -> AlignmentScores:
    """AER of every decoder layer on ``gold``; ``layer`` None picks the layer with the lowest.

    ``reading``: which decoder step's attention aligns a target token (:class:`Readout`);
    ``use_null``: whether attention to a NULL position leaves a word unaligned.
    """
    keep = [k for k in range(len(gold)) if scorable(tokenizer, gold.src[k], gold.tgt[k])]
    src_texts, tgt_texts = [gold.src[k] for k in keep], [gold.tgt[k] for k in keep]
    per_layer = layer_links(
        model, tokenizer, src_texts, tgt_texts, device, batch_size, reading, use_null
    )
    n_layers = len(per_layer)
    sure, possible = [gold.sure[k] for k in keep], [gold.possible[k] for k in keep]
    layers = [aer(links, sure, possible) for links in per_layer]
    if layer is None:
        chosen = int(np.argmin([scores["aer"] for scores in layers]))
    else:
        chosen = range(n_layers)[layer]  # accepts negative indices, fails when out of range
    return AlignmentScores(layers, chosen, len(keep), len(gold) - len(keep), reading)


def hypothesis_alignments(
    sources: Sequence[Sequence[int]],
    nbests: Sequence[Sequence[Hypothesis]],
    tokenizer: Tokenizer,
    readout: Readout,
) -> list[str]:
    """Pharaoh word links (``i-j``) of each best hypothesis, from its decoding attention.

    The words are those of the source and of the detokenised hypothesis, split at
    SentencePiece word starts; an empty source gives an empty line.
    """
    lines = []
    for src, hyps in zip(sources, nbests, strict=True):
        best = hyps[0]
        if best.attention is None:
            lines.append("")
            continue
        tgt_pieces = [*tokenizer.tgt_pieces(best.tokens), "</s>"]
        links = word_alignment(best.attention, tokenizer.src_pieces(src), tgt_pieces, readout)
        lines.append(to_pharaoh(links))
    return lines


@dataclass(frozen=True)
class ReadoutScores:
    """One readout's AER, precision, recall and F1 on a gold set (its ``aer`` filled in)."""

    readout: Readout
    scores: dict[str, float]
    sentences: int  # sentences scored
    skipped: int  # sentences whose subword words did not match their gold words


def readout_candidates(layers: int, heads: int) -> list[Readout]:
    """Every reading, NULL treatment, layer and head (heads averaged first), in that order."""
    return [
        Readout(reading, layer, head, null)
        for reading in READINGS
        for null in NULL_READINGS
        for layer in range(layers)
        for head in (None, *range(heads if heads > 1 else 0))
    ]


def score_readouts(
    model: nn.Module,
    tokenizer: Tokenizer,
    gold: GoldSet,
    device: torch.device,
    batch_size: int = 32,
) -> list[ReadoutScores]:
    """AER of every :func:`readout_candidates` on ``gold`` (its target force-decoded once)."""
    keep = [k for k in range(len(gold)) if scorable(tokenizer, gold.src[k], gold.tgt[k])]
    src_texts, tgt_texts = [gold.src[k] for k in keep], [gold.tgt[k] for k in keep]
    pairs = forced_pairs(model, tokenizer, src_texts, tgt_texts, device, batch_size)
    sure, possible = [gold.sure[k] for k in keep], [gold.possible[k] for k in keep]
    layers, heads = pairs[0][0].shape[:2] if pairs else (1, 1)
    counts = len(keep), len(gold) - len(keep)
    results = []
    for readout in readout_candidates(layers, heads):
        scores = aer(pair_links(pairs, readout), sure, possible)
        results.append(ReadoutScores(replace(readout, aer=scores["aer"]), scores, *counts))
    return results


def best_readout(results: Sequence[ReadoutScores]) -> ReadoutScores:
    """The readout with the lowest AER (the first candidate on ties)."""
    return min(results, key=lambda r: r.scores["aer"])
