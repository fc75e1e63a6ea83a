"""From a DataConfig to the prepared training shards, the validation pairs and the tokenizer.

Training: raw text streamed -> filter (empty, max_chars) -> SentencePiece (trained on a
sample of train only) -> ids -> filter by subword length and ratio -> memory-mapped shards,
prepared once per corpus and settings (:mod:`seq2seq.data.prepared`). Validation stays
small and in memory with its raw text (BLEU needs it) and is never dropped for length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from seq2seq.data.corpora import ParallelCorpus, filter_pairs, load_split
from seq2seq.data.filters import LengthFilter
from seq2seq.data.prepared import prepare_train
from seq2seq.data.shards import ShardedCorpus
from seq2seq.data.tokenizer import Tokenizer


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
    train: ShardedCorpus
    valid: EncodedCorpus


def prepare_data(cfg: Any, log: logging.Logger, check_hashes: bool = True) -> PreparedData:
    """The prepared training shards (built if missing), and the encoded validation split.

    ``check_hashes=False``: check the shards' sizes, not their SHA-256 (for DDP ranks > 0).
    """
    prepared = prepare_train(cfg, log, check_hashes)
    tokenizer = prepared.tokenizer
    counts = prepared.manifest["counts"]
    log.info(
        "train %s: %d pairs read, removed %d with an empty side, %d over data.max_chars=%d, "
        "%d empty after tokenisation, %d over data.max_tokens=%d, %d over "
        "data.max_length_ratio=%g; %d kept in %d shard(s)",
        cfg.train_split,
        counts["read"],
        counts["empty"],
        counts["max_chars"],
        cfg.max_chars,
        counts["empty_ids"],
        counts["max_tokens"],
        cfg.max_tokens,
        counts["max_length_ratio"],
        cfg.max_length_ratio,
        counts["kept"],
        len(prepared.corpus.shards),
    )
    valid_raw = load_split(cfg, cfg.valid_split)
    valid_raw, valid_counts = filter_pairs(
        valid_raw, None, name=f"validation split (data.valid_split={cfg.valid_split})"
    )
    valid, valid_empty = filter_lengths(encode_corpus(tokenizer, valid_raw), None, None)
    log.info(
        "valid %s: %d pairs read, %d kept (removed %d with an empty side, %d empty after "
        "tokenisation; never filtered by length)",
        cfg.valid_split,
        len(valid_raw) + valid_counts["empty"],
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
    return PreparedData(tokenizer, prepared.corpus, valid)


def encode_corpus(tokenizer: Tokenizer, corpus: ParallelCorpus) -> EncodedCorpus:
    """Subword ids of every pair (no BOS/EOS), nothing dropped."""
    return EncodedCorpus(corpus, tokenizer.encode_src(corpus.src), tokenizer.encode_tgt(corpus.tgt))


def filter_lengths(
    corpus: EncodedCorpus, max_tokens: int | None, max_length_ratio: float | None
) -> tuple[EncodedCorpus, dict[str, int]]:
    """Drop pairs with an empty side in subwords, a side over ``max_tokens``, or a ratio over
    ``max_length_ratio`` (None disables a limit); returns the kept pairs and counts by reason."""
    rules = LengthFilter(max_tokens, max_length_ratio)
    src_len = np.array([len(ids) for ids in corpus.src_ids], dtype=np.int64)
    tgt_len = np.array([len(ids) for ids in corpus.tgt_ids], dtype=np.int64)
    keep = np.flatnonzero(rules.mask(src_len, tgt_len)).tolist()
    rules.check()
    return corpus.select(keep), rules.counts
