"""From a checkpoint to translations: rebuild the model, batch sentences, keep their order."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seq2seq.config import DecodeConfig
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding import Hypothesis, beam_search, translate_batch
from seq2seq.errors import UserError
from seq2seq.models.base import position_limits
from seq2seq.models.build import build_model
from seq2seq.special_tokens import PAD_ID
from seq2seq.training.checkpoint import load_checkpoint, resolve_checkpoint_path

log = logging.getLogger(__name__)


@dataclass
class Translator:
    """A model ready to decode, with the tokenizer it was trained with."""

    model: nn.Module
    tokenizer: Tokenizer
    checkpoint: dict[str, Any]
    device: torch.device

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


def clip_sources(model: nn.Module, sources: list[list[int]]) -> list[list[int]]:
    """``sources`` cut to the model's ``max_positions``, warning about each one cut."""
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
    return [s[:limit] for s in sources]


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
    # An empty source has nothing to attend to: it translates to an empty line.
    results = [[Hypothesis(tokens=[], score=0.0, attention=None)] for _ in sources]
    nonempty = [i for i, s in enumerate(sources) if s]
    for sub_chunk in length_sorted_chunks([len(sources[i]) for i in nonempty], opts.batch_size):
        chunk = [nonempty[i] for i in sub_chunk]
        src, src_mask = pad_batch([sources[i] for i in chunk], device)
        if opts.nbest > 1:
            nbests = beam_search(
                model,
                src,
                src_mask,
                beam_size=max(opts.beam_size, opts.nbest),
                length_penalty=opts.length_penalty,
                max_len_a=opts.max_len_a,
                max_len_b=opts.max_len_b,
                nbest=opts.nbest,
                need_weights=need_weights,
            )
        else:
            best = translate_batch(
                model,
                src,
                src_mask,
                beam_size=opts.beam_size,
                length_penalty=opts.length_penalty,
                max_len_a=opts.max_len_a,
                max_len_b=opts.max_len_b,
                need_weights=need_weights,
            )
            nbests = [[hyp] for hyp in best]
        for index, hyps in zip(chunk, nbests, strict=True):
            results[index] = hyps
    return results
