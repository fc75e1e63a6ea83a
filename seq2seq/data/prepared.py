"""The prepared training split under ``data.cache_dir``: found, checked, or built once.

Its directory is named by a key from the settings that shape it and the size and mtime
of each source file, so a second start reads neither the text nor its hashes. Building
happens in a temporary directory renamed into place when complete, under a file lock:
two processes never build the same corpus, the second waits and reuses the first's. A
directory whose files do not match its manifest is reported in one line and rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm

from seq2seq.data.corpora import SplitFiles, split_files
from seq2seq.data.manifest import FORMAT_VERSION, manifest_problem, read_manifest
from seq2seq.data.preparation import build_prepared
from seq2seq.data.shards import ShardedCorpus
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.textio import existing_file

PREPARED_DIR = "prepared"
KEY_SETTINGS = (
    "name",
    "src",
    "tgt",
    "train_split",
    "valid_fraction",
    "test_fraction",
    "split_seed",
    "max_chars",
    "max_tokens",
    "max_length_ratio",
    "max_train_examples",
    "shard_size",
)
TOKENIZER_SETTINGS = (
    "joint",
    "model_type",
    "vocab_size",
    "character_coverage",
    "input_sentence_size",
    "null_position",
)


@dataclass
class PreparedTrain:
    """A checked prepared training split: its tokenizer, shards and manifest."""

    directory: Path
    tokenizer: Tokenizer
    corpus: ShardedCorpus
    manifest: dict[str, Any]


def prepare_train(cfg: Any, log: logging.Logger, check_hashes: bool = True) -> PreparedTrain:
    """The prepared training split of DataConfig ``cfg``, built first if missing or damaged.

    ``check_hashes=False`` checks file sizes only (ranks after rank 0, which checked all).
    """
    files = split_files(cfg, cfg.train_split)
    sources = [_stat(path) for path in files.paths]
    root = Path(cfg.cache_dir).expanduser() / PREPARED_DIR
    key = cache_key(cfg, sources)
    directory = root / key
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{key}.lock"):
        problem = manifest_problem(directory, check_hashes) if directory.exists() else "absent"
        if problem == "absent":
            log.info("preparing the training data in %s", directory)
        elif problem is not None:
            log.warning("prepared data damaged: %s; rebuilding it", problem)
            shutil.rmtree(directory)
        if problem is not None:
            _build(cfg, files, sources, directory, log)
        else:
            log.info("using the prepared training data in %s", directory)
    return open_prepared(directory)


def open_prepared(directory: Path) -> PreparedTrain:
    """Open a prepared split whose manifest was checked."""
    manifest = read_manifest(directory)
    tokenizer = Tokenizer.load(directory / manifest["tokenizer"]["dir"])
    return PreparedTrain(
        directory, tokenizer, ShardedCorpus.open(directory, manifest["shards"]), manifest
    )


def cache_key(cfg: Any, sources: list[dict[str, Any]]) -> str:
    """SHA-256 of everything that shapes the prepared split: settings and source stats."""
    settings = {name: getattr(cfg, name) for name in KEY_SETTINGS}
    tokenizer = {name: getattr(cfg.tokenizer, name) for name in TOKENIZER_SETTINGS}
    content = {
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "tokenizer": tokenizer,
        "sentencepiece": spm.__version__,
        "sources": sources,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def _stat(path: Path) -> dict[str, Any]:
    """A source file's fingerprint before reading it: resolved path, size, mtime."""
    info = existing_file(path).stat()
    return {
        "path": str(path),
        "resolved": str(path.resolve()),
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
    }


def _build(
    cfg: Any,
    files: SplitFiles,
    sources: list[dict[str, Any]],
    directory: Path,
    log: logging.Logger,
) -> None:
    """Build in a temporary directory and rename it into place only when complete."""
    for stale in directory.parent.glob(f".{directory.name}.*"):  # left by a killed build
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        build_prepared(cfg, files, staging, [dict(s) for s in sources], log)
        os.rename(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (waiting for it), released on exit or death."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
