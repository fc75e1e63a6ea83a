"""How a word alignment is read from a model's cross-attention.

A :class:`Readout` names the decoder step, the layer and heads, and what attention to the
NULL position means:

- ``reading`` "predict": target token t is aligned by the attention of the step that
  predicts it; "shift" (shift-att, Chen et al. 2020): by the step that reads it as decoder
  input, where a Transformer's cross-attention may look at the source word just translated;
- ``layer``: the decoder layer (an RNN has one); ``head``: one head, or None for the
  average of all;
- ``null`` "unaligned": a target word whose attention goes mostly to the NULL position
  (a source's closing EOS, ``data.tokenizer.null_position``) stays unaligned; "dropped":
  the NULL column is dropped and each row renormalised over the real source words.

seq2seq-train picks the readout with the lowest AER on ``valid.align_gold`` at every
validation and stores it in the checkpoint; evaluate, translate, serve and the training
heatmaps use it unless ``alignment_reading`` / ``alignment_layer`` say otherwise. A
checkpoint trained without a gold set reads "predict", last layer, heads averaged,
NULL unaligned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from torch import Tensor

from seq2seq.alignment import select_layer_heads

READINGS = ("predict", "shift")
NULL_READINGS = ("unaligned", "dropped")
CHECKPOINT_KEY = "alignment_readout"


@dataclass(frozen=True)
class Readout:
    """Which attention aligns, and the dev AER that chose it (None when not chosen by AER)."""

    reading: str = "predict"
    layer: int = -1  # negative counts from the top
    head: int | None = None  # None: heads averaged
    null: str = "unaligned"
    aer: float | None = None

    def __post_init__(self) -> None:
        if self.reading not in READINGS:
            raise ValueError(f"reading must be one of {', '.join(READINGS)}, not {self.reading!r}")
        if self.null not in NULL_READINGS:
            raise ValueError(f"null must be one of {', '.join(NULL_READINGS)}, not {self.null!r}")

    @property
    def null_unaligned(self) -> bool:
        """Whether a word attending mostly to the NULL position stays unaligned."""
        return self.null == "unaligned"

    def matrix(self, cross: Tensor, tgt_pieces: Sequence[str]) -> tuple[Tensor, list[str]]:
        """The (T', S) weights of (L, H, T, S) attention as read, and their row labels.

        ``tgt_pieces`` label the T rows, EOS included. "shift" drops the first row (the
        step that reads BOS) and the last label (EOS is never read as input).
        """
        if self.reading == "shift":
            cross, tgt_pieces = cross[:, :, 1:], tgt_pieces[:-1]
        heads = None if self.head is None else (self.head,)
        return select_layer_heads(cross, self.layer, heads), list(tgt_pieces)

    def describe(self) -> str:
        """One phrase for logs and titles, e.g. "predict, layer 1, head 2, NULL unaligned"."""
        heads = "heads averaged" if self.head is None else f"head {self.head}"
        return f"{self.reading}, layer {self.layer}, {heads}, NULL {self.null}"

    def to_state(self) -> dict[str, Any]:
        """Plain builtins for a checkpoint."""
        return asdict(self)

    @classmethod
    def stored(cls, checkpoint: Mapping[str, Any]) -> Readout | None:
        """The readout a checkpoint was saved with, None if it has none."""
        state = checkpoint.get(CHECKPOINT_KEY)
        return None if state is None else cls(**state)


def resolve_readout(
    stored: Readout | None, layer: int | None = None, reading: str | None = None
) -> Readout:
    """The ``stored`` choice (default :class:`Readout`) with the settings given applied.

    A layer given reads that layer's heads averaged.
    """
    chosen = stored or Readout()
    if layer is not None:
        chosen = replace(chosen, layer=layer, head=None, aer=None)
    if reading is not None:
        chosen = replace(chosen, reading=reading, aer=None)
    return chosen
