"""From a DataConfig to encoded training and validation pairs plus their tokenizer.

raw text -> filter (empty, max_chars) -> SentencePiece (trained on train only) ->
ids -> filter train by subword length and ratio. Validation pairs are never dropped for
length, so BLEU always covers the whole validation set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq.data.corpora import ParallelCorpus, filter_pairs, load_split
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError


@dataclass
class EncodedCorpus:
    """Raw pairs and their subword ids (without BOS/EOS), index-aligned."""

    raw: ParallelCorpus
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.src_ids)

    def select(self, keep: list[int]) -> EncodedCorpus:
        """The pairs at positions ``keep``."""
        raw = ParallelCorpus([self.raw.src[i] for i in keep], [self.raw.tgt[i] for i in keep])
        return EncodedCorpus(raw, [self.src_ids[i] for i in keep], [self.tgt_ids[i] for i in keep])


@dataclass
class PreparedData:
    """What training needs from the data side."""

    tokenizer: Tokenizer
    train: EncodedCorpus
    valid: EncodedCorpus


def prepare_data(cfg: Any, log: logging.Logger) -> PreparedData:
    """Load, filter, tokenize (training or reusing the cached tokenizer) and encode."""
    cache_dir = Path(cfg.cache_dir).expanduser()
    train_raw = load_split(cfg, cfg.train_split)
    valid_raw = load_split(cfg, cfg.valid_split)
    if cfg.max_train_examples is not None:
        if cfg.max_train_examples < 1:
            raise UserError(f"data.max_train_examples={cfg.max_train_examples} must be >= 1.")
        train_raw = ParallelCorpus(
            train_raw.src[: cfg.max_train_examples], train_raw.tgt[: cfg.max_train_examples]
        )
    read = len(train_raw)
    train_raw, train_counts = filter_pairs(
        train_raw, cfg.max_chars, name=f"training split (data.train_split={cfg.train_split})"
    )
    valid_read = len(valid_raw)
    valid_raw, valid_counts = filter_pairs(
        valid_raw, None, name=f"validation split (data.valid_split={cfg.valid_split})"
    )

    tokenizer = Tokenizer.train_or_load(
        cfg.tokenizer, train_raw.src, train_raw.tgt, cache_dir / "tokenizers"
    )
    train = encode_cached(tokenizer, train_raw, cache_dir / "encoded")
    valid = encode_cached(tokenizer, valid_raw, cache_dir / "encoded")

    train, length_counts = filter_lengths(train, cfg.max_tokens, cfg.max_length_ratio)
    valid, valid_empty = filter_lengths(valid, None, None)
    log.info(
        "train %s: %d pairs read, removed %d with an empty side, %d over data.max_chars=%d, "
        "%d empty after tokenisation, %d over data.max_tokens=%d, %d over "
        "data.max_length_ratio=%g; %d kept",
        cfg.train_split,
        read,
        train_counts["empty"],
        train_counts["max_chars"],
        cfg.max_chars,
        length_counts["empty_ids"],
        length_counts["max_tokens"],
        cfg.max_tokens,
        length_counts["max_length_ratio"],
        cfg.max_length_ratio,
        len(train),
    )
    log.info(
        "valid %s: %d pairs read, %d kept (removed %d with an empty side, %d empty after "
        "tokenisation; never filtered by length)",
        cfg.valid_split,
        valid_read,
        len(valid),
        valid_counts["empty"],
        valid_empty["empty_ids"],
    )
    log.info(
        "vocabulary: %s, %d source / %d target pieces",
        "joint" if tokenizer.joint else "separate",
        tokenizer.src_vocab_size,
        tokenizer.tgt_vocab_size,
    )
    return PreparedData(tokenizer, train, valid)


def encode_corpus(tokenizer: Tokenizer, corpus: ParallelCorpus) -> EncodedCorpus:
    """Subword ids of every pair (no BOS/EOS), nothing dropped."""
    return EncodedCorpus(corpus, tokenizer.encode_src(corpus.src), tokenizer.encode_tgt(corpus.tgt))


def encode_cached(tokenizer: Tokenizer, corpus: ParallelCorpus, cache_dir: Path) -> EncodedCorpus:
    """:func:`encode_corpus`, reusing ids saved by an earlier run for the same text and model."""
    digest = hashlib.sha256()
    state = tokenizer.to_state()
    for part in (state["src_model"], state["tgt_model"] or b""):
        digest.update(hashlib.sha256(part).digest())
    for texts in (corpus.src, corpus.tgt):
        digest.update(f"\0{len(texts)}\0".encode())
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\n")
    path = Path(cache_dir) / f"{digest.hexdigest()}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return EncodedCorpus(corpus, _unflatten(*saved["src"]), _unflatten(*saved["tgt"]))
        except (
            RuntimeError,
            EOFError,
            OSError,
            KeyError,
            pickle.UnpicklingError,
            zipfile.BadZipFile,
        ):
            pass  # a damaged cache entry is simply recomputed and overwritten
    encoded = encode_corpus(tokenizer, corpus)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"src": _flatten(encoded.src_ids), "tgt": _flatten(encoded.tgt_ids)}, handle)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return encoded


def filter_lengths(
    corpus: EncodedCorpus, max_tokens: int | None, max_length_ratio: float | None
) -> tuple[EncodedCorpus, dict[str, int]]:
    """Drop pairs with an empty side in subwords, a side over ``max_tokens``, or a ratio over
    ``max_length_ratio`` (None disables a limit); returns the kept pairs and counts by reason."""
    counts = {"empty_ids": 0, "max_tokens": 0, "max_length_ratio": 0}
    keep = []
    for i, (src, tgt) in enumerate(zip(corpus.src_ids, corpus.tgt_ids, strict=True)):
        short, long = sorted((len(src), len(tgt)))
        if short == 0:  # e.g. only characters the normaliser removes; nothing to attend to
            counts["empty_ids"] += 1
        elif max_tokens is not None and long > max_tokens:
            counts["max_tokens"] += 1
        elif max_length_ratio is not None and long > max_length_ratio * short:
            counts["max_length_ratio"] += 1
        else:
            keep.append(i)
    if not keep:
        raise UserError(
            f"No pair survives the subword filters ({counts['max_tokens']} over "
            f"data.max_tokens={max_tokens}, {counts['max_length_ratio']} over "
            f"data.max_length_ratio={max_length_ratio}, {counts['empty_ids']} empty); "
            f"raise data.max_tokens or data.max_length_ratio."
        )
    return corpus.select(keep), counts


def _flatten(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated ids (N,) and offsets (len+1,): compact, and loadable with weights_only."""
    lengths = torch.tensor([0] + [len(seq) for seq in sequences], dtype=torch.long)
    flat = torch.tensor([i for seq in sequences for i in seq], dtype=torch.int32)
    return flat, torch.cumsum(lengths, 0)


def _unflatten(flat: torch.Tensor, offsets: torch.Tensor) -> list[list[int]]:
    """Inverse of :func:`_flatten`."""
    ids, bounds = flat.tolist(), offsets.tolist()
    return [ids[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
