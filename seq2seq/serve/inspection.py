"""One sentence pair and its cross-attention as the JSON the server returns.

Everything here reuses :mod:`seq2seq.alignment`: the word level is the matrix the word
alignment is read from (special tokens dropped and rows renormalised, then subwords merged
into words, :func:`~seq2seq.alignment.subword_to_word`), with each row rescaled to sum to 1
so a page can draw it on the same 0-1 scale as the subword level. Rescaling a row keeps its
argmax, so the strongest cell of every word row is the link the Pharaoh alignment has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from seq2seq.alignment import (
    WORD_START,
    strip_specials,
    subword_to_word,
    to_pharaoh,
    word_spans,
)
from seq2seq.alignment_eval import word_alignment
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.readout import Readout

DECIMALS = 5  # attention weights are sent rounded: enough to draw, a third of the bytes
EOS_PIECE = "</s>"  # the label of the decoding step that predicts the end of sentence


def words(pieces: Sequence[str], spans: Sequence[tuple[int, int]]) -> list[str]:
    """The text of each word span of SentencePiece ``pieces``, without the "▁" markers."""
    return ["".join(pieces[a:b]).replace(WORD_START, "") for a, b in spans]


def word_level(
    matrix: np.ndarray, tgt_pieces: Sequence[str], src_pieces: Sequence[str]
) -> np.ndarray:
    """Word-level weights (T_words, S_words) of a subword matrix (T, S), each row summing to 1.

    A row with no evidence (its mass was all on special tokens) stays zero.
    """
    scores = subword_to_word(*strip_specials(matrix, tgt_pieces, src_pieces))  # (Tw, Sw)
    totals = scores.sum(axis=1, keepdims=True)  # (Tw, 1)
    return np.divide(scores, totals, out=np.zeros_like(scores), where=totals > 0)


def _rounded(array: np.ndarray) -> list[Any]:
    """Nested lists of floats rounded to :data:`DECIMALS`, ready for JSON."""
    return np.round(array.astype(np.float64), DECIMALS).tolist()


def describe_pair(
    tokenizer: Tokenizer,
    src_ids: Sequence[int],
    tgt_ids: Sequence[int],
    cross: Tensor,
    readout: Readout,
) -> dict[str, Any]:
    """Subwords, words, Pharaoh alignment and attention of one pair.

    ``cross`` is the (L, H, T + 1, S) cross-attention on CPU of ``tgt_ids`` (no BOS/EOS)
    given ``src_ids``: row ``t`` is the step that predicts target token ``t``, the last
    row the one that predicts EOS. ``readout`` says which decoder step and layer (heads
    averaged) the alignment is read from, as in ``seq2seq-evaluate``.
    """
    src_pieces = tokenizer.src_pieces(src_ids)
    tgt_pieces = [*tokenizer.tgt_pieces(tgt_ids), EOS_PIECE]
    weights = cross.float().numpy()  # (L, H, T+1, S)
    if weights.shape[2:] != (len(tgt_pieces), len(src_pieces)):
        raise ValueError(
            f"attention of shape {weights.shape} does not match "
            f"{len(tgt_pieces)} target and {len(src_pieces)} source pieces"
        )
    average = weights.mean(axis=1)  # (L, T+1, S)
    word_heads = np.stack(
        [
            np.stack([word_level(head, tgt_pieces, src_pieces) for head in heads])
            for heads in weights
        ]
    )  # (L, H, Tw, Sw)
    word_average = np.stack([word_level(m, tgt_pieces, src_pieces) for m in average])  # (L, Tw, Sw)
    layer = range(weights.shape[0])[readout.layer]  # accepts -1; fails when out of range
    links = word_alignment(cross, src_pieces, tgt_pieces, readout)
    src_spans = word_spans(src_pieces)
    tgt_spans = word_spans(tgt_pieces)
    return {
        "translation": tokenizer.decode_tgt(tgt_ids),
        "source_subwords": src_pieces,
        "target_subwords": tgt_pieces,
        "source_words": words(src_pieces, src_spans),
        "target_words": words(tgt_pieces, tgt_spans),
        "source_word_spans": [list(span) for span in src_spans],
        "target_word_spans": [list(span) for span in tgt_spans],
        "alignment": to_pharaoh(links),
        "alignment_layer": layer,
        "alignment_reading": readout.reading,
        "attention": {
            "subword": {"heads": _rounded(weights), "average": _rounded(average)},
            "word": {"heads": _rounded(word_heads), "average": _rounded(word_average)},
        },
    }


def describe_model(model: nn.Module, checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
    """What the page and ``GET /model`` say about the model: family, languages, size, step, BLEU."""
    model_config = checkpoint["model_config"]
    data = checkpoint.get("config", {}).get("data", {})
    train_state = checkpoint.get("train_state", {})
    family = model_config["family"]
    best_bleu = train_state.get("best_bleu")
    return {
        "checkpoint": path,
        "family": family,
        "attention": model_config.get("attention", "bahdanau")
        if family == "rnn"
        else "multi-head cross-attention",
        "source_language": data.get("src"),
        "target_language": data.get("tgt"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": model_config.get("dec_layers", 1) if family == "transformer" else 1,
        "heads": model_config.get("heads", 1) if family == "transformer" else 1,
        "max_positions": model.max_positions,
        "step": train_state.get("step"),
        # best.pt is saved when validation BLEU improves, so there this is its own BLEU
        "best_valid_bleu": best_bleu if best_bleu is not None and best_bleu >= 0 else None,
    }
