"""From a checkpoint to translations: rebuild the model, batch sentences, keep their order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from seq2seq.config import DecodeConfig
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding import Hypothesis, search
from seq2seq.errors import UserError
from seq2seq.models.base import position_limits
from seq2seq.models.build import build_model
from seq2seq.special_tokens import EOS_ID, PAD_ID
from seq2seq.training.checkpoint import load_checkpoint, resolve_checkpoint_path

log = logging.getLogger(__name__)


class PositionLimited(Protocol):
    """A model, or an engine over one, with a longest sequence (None: no limit)."""

    max_positions: int | None


@dataclass
class Translator:
    """A model ready to decode, with the tokenizer it was trained with."""

    model: nn.Module
    tokenizer: Tokenizer
    checkpoint: dict[str, Any]
    device: torch.device
    engine = "native"  # the other engine: seq2seq.export.engine.CTranslate2Translator

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device) -> Translator:
        """Rebuild model and tokenizer from a checkpoint alone (no training config needed)."""
        state = load_checkpoint(path)
        where = resolve_checkpoint_path(path)
        try:
            tokenizer = Tokenizer.from_state(state["tokenizer"])
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        family = state["model_config"].get("family")
        try:
            model = build_model(
                state["model_config"],
                tokenizer.src_vocab_size,
                tokenizer.tgt_vocab_size,
                joint_vocab=tokenizer.joint,
            )
        except (KeyError, TypeError, ValueError, UserError) as err:
            raise UserError(
                f"{where}: its model config cannot build a model ({type(err).__name__}: {err}); "
                f"use a checkpoint written by seq2seq-train."
            ) from None
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, TypeError, AttributeError):
            names = set(model.state_dict()) ^ set(state["model"])
            raise UserError(
                f"{where}: its weights do not fit its {family} model config ({len(names)} "
                f"tensor names differ, others may differ in shape: the weights are of another "
                f"model); use a checkpoint written by seq2seq-train."
            ) from None
        model.to(device).eval()
        return cls(model, tokenizer, state, device)

    def clip(self, sources: list[list[int]]) -> list[list[int]]:
        """``sources`` cut to the model's ``max_positions`` (:func:`clip_sources`)."""
        return clip_sources(self.model, sources)

    def decode(
        self, sources: list[list[int]], opts: DecodeConfig, need_weights: bool = False
    ) -> list[list[Hypothesis]]:
        """N-best hypotheses for every source, in input order (:func:`decode_corpus`)."""
        return decode_corpus(self.model, sources, self.device, opts, need_weights)


def pad_batch(
    sequences: list[list[int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into ``src`` (B, S) and ``src_mask`` (B, S), True on tokens."""
    length = max(1, max(len(seq) for seq in sequences))
    src = torch.full((len(sequences), length), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        src[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    src = src.to(device)
    return src, src != PAD_ID


def clip_sources(model: PositionLimited, sources: list[list[int]]) -> list[list[int]]:
    """``sources`` cut to the model's ``max_positions``, warning about each one cut.

    A source's closing EOS (the NULL position) stays: the cut falls before it.
    """
    limit, _ = position_limits(model.max_positions)
    if limit is None or all(len(s) <= limit for s in sources):
        return sources
    for i in (i for i, s in enumerate(sources) if len(s) > limit):
        log.warning(
            "sentence %d has %d subwords, more than the model's max_positions=%d; "
            "translating its first %d",
            i + 1,
            len(sources[i]),
            limit,
            limit,
        )
    return [s if len(s) <= limit else _cut(s, limit) for s in sources]


def _cut(source: list[int], limit: int) -> list[int]:
    """The first ``limit`` tokens of ``source``, keeping a final EOS as the last."""
    if source[-1] == EOS_ID:
        return [*source[: limit - 1], EOS_ID]
    return source[:limit]


def length_sorted_chunks(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Indices in chunks of similar length, so padding is small; order restored by caller."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def decode_corpus(
    model: nn.Module,
    sources: list[list[int]],
    device: torch.device,
    opts: DecodeConfig,
    need_weights: bool = False,
) -> list[list[Hypothesis]]:
    """N-best hypotheses for every source (token ids, no BOS/EOS), in input order.

    ``need_weights``: keep each hypothesis's cross-attention (for heatmaps and alignments).

    Sources are cut to the model's ``max_positions`` (:func:`clip_sources`); callers that
    label attention with the source tokens should clip first, so the labels match.
    """
    sources = clip_sources(model, sources)

    def decode_batch(batch: list[list[int]]) -> list[list[Hypothesis]]:
        src, src_mask = pad_batch(batch, device)
        return search(model, src, src_mask, opts, need_weights)

    return decode_chunked(sources, opts.batch_size, decode_batch)


def decode_chunked(
    sources: list[list[int]],
    batch_size: int,
    decode_batch: Callable[[list[list[int]]], list[list[Hypothesis]]],
) -> list[list[Hypothesis]]:
    """``decode_batch`` over length-sorted chunks of ``sources``, results in input order.

    An empty source has nothing to attend to: it translates to an empty line.
    """
    results = [[Hypothesis(tokens=[], score=0.0, attention=None)] for _ in sources]
    nonempty = [i for i, s in enumerate(sources) if s]
    for sub_chunk in length_sorted_chunks([len(sources[i]) for i in nonempty], batch_size):
        chunk = [nonempty[i] for i in sub_chunk]
        for index, hyps in zip(chunk, decode_batch([sources[i] for i in chunk]), strict=True):
            results[index] = hyps
    return results
