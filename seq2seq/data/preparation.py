"""Build a prepared training split in two streaming passes over the raw text.

Pass 1 filters by characters, hashes every file and draws a seeded uniform sample of at
most ``data.tokenizer.input_sentence_size`` pairs for SentencePiece. Pass 2 filters,
encodes chunk by chunk (SentencePiece's own threads), filters by subword lengths and
writes shards. RAM holds the sample, one chunk and one shard, whatever the corpus size.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from seq2seq.data.corpora import SplitFiles, stream_split
from seq2seq.data.filters import LengthFilter, TextFilter
from seq2seq.data.manifest import write_manifest
from seq2seq.data.reservoir import Reservoir
from seq2seq.data.shards import ShardWriter, token_dtype
from seq2seq.data.tokenizer import Tokenizer

CHUNK = 20_000  # pairs encoded at a time
TOKENIZER_DIR = "tokenizer"
SAMPLE_SEED = 0  # the SentencePiece sample is the same for the same corpus and settings


def build_prepared(
    cfg: Any, files: SplitFiles, staging: Path, sources: list[dict[str, Any]], log: logging.Logger
) -> None:
    """Write tokenizer, shards and manifest of the training split into ``staging``."""
    digests: dict[str, str] = {}
    sample, texts = _sample(cfg, files, digests)
    tokenizer = Tokenizer.train_or_load(
        cfg.tokenizer,
        [src for src, _ in sample.items],
        [tgt for _, tgt in sample.items],
        Path(cfg.cache_dir).expanduser() / "tokenizers",
    )
    del sample
    lengths, shards = _encode(
        cfg, files, tokenizer, staging, texts.read - sum(texts.counts.values())
    )
    tokenizer.save(staging / TOKENIZER_DIR)
    for source in sources:  # files not read to their end (data.max_train_examples): no hash
        source["sha256"] = digests.get(source["path"])
    write_manifest(
        staging,
        {
            "split": cfg.train_split,
            "sources": sources,
            "tokenizer": {"joint": tokenizer.joint, "dir": TOKENIZER_DIR},
            "counts": {"read": texts.read, **texts.counts, **lengths.counts, "kept": lengths.kept},
            "dtype": token_dtype(max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)).name,
            "shards": shards,
        },
    )


def _pairs(
    cfg: Any, files: SplitFiles, digests: dict[str, str] | None
) -> Iterator[tuple[str, str]]:
    """The training pairs, cut at data.max_train_examples."""
    pairs = stream_split(cfg, cfg.train_split, files, digests)
    return itertools.islice(pairs, cfg.max_train_examples)


def _text_filter(cfg: Any) -> TextFilter:
    return TextFilter(cfg.max_chars, f"training split (data.train_split={cfg.train_split})")


def _sample(
    cfg: Any, files: SplitFiles, digests: dict[str, str]
) -> tuple[Reservoir[tuple[str, str]], TextFilter]:
    """Pass 1: the SentencePiece sample of the pairs that survive the text filter."""
    texts = _text_filter(cfg)
    sample: Reservoir[tuple[str, str]] = Reservoir(cfg.tokenizer.input_sentence_size, SAMPLE_SEED)
    for src, tgt in _progress(_pairs(cfg, files, digests), None, "reading"):
        if texts.keep(src, tgt):
            sample.offer((src, tgt))
    texts.check()
    return sample, texts


def _encode(
    cfg: Any, files: SplitFiles, tokenizer: Tokenizer, staging: Path, total: int
) -> tuple[LengthFilter, list[dict[str, Any]]]:
    """Pass 2: encode the kept pairs chunk by chunk, filter by length, write shards."""
    texts, lengths = _text_filter(cfg), LengthFilter(cfg.max_tokens, cfg.max_length_ratio)
    dtype = token_dtype(max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size))
    writer = ShardWriter(staging, cfg.shard_size, dtype)
    kept = (pair for pair in _pairs(cfg, files, None) if texts.keep(*pair))
    for chunk in _chunks(_progress(kept, total, "encoding"), CHUNK):
        src_ids = tokenizer.encode_src([src for src, _ in chunk])
        tgt_ids = tokenizer.encode_tgt([tgt for _, tgt in chunk])
        src_len = np.fromiter(map(len, src_ids), np.int64, len(src_ids))
        tgt_len = np.fromiter(map(len, tgt_ids), np.int64, len(tgt_ids))
        keep = np.flatnonzero(lengths.mask(src_len, tgt_len)).tolist()
        writer.add([src_ids[i] for i in keep], [tgt_ids[i] for i in keep])
    lengths.check()
    return lengths, writer.close()


def _chunks(items: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _progress(items: Iterator[Any], total: int | None, what: str) -> Iterator[Any]:
    """A progress bar on a terminal (pairs/s; ETA when the total is known), else nothing."""
    return iter(
        tqdm(items, total=total, desc=f"{what} training pairs", unit=" pairs", disable=None)
    )
