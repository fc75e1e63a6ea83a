"""Parallel text: read and validate files, pick a dataset's split, drop unusable pairs.

Every mistake a user can make with their files (missing, misaligned, not UTF-8, wrong
language pair, split not configured) ends in a :class:`~seq2seq.errors.UserError` that
names the file or the override to fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.data import download
from seq2seq.errors import UserError
from seq2seq.textio import file_lines

MULTI30K_LANGUAGES = ("en", "de", "fr")
MULTI30K_SPLITS = (
    "train",
    "val",
    "test_2016_flickr",
    "test_2017_flickr",
    "test_2017_mscoco",
    "test_2018_flickr",
)
TATOEBA_LANGUAGES = ("en", "fr")
TATOEBA_SPLITS = ("train", "valid", "test")
FILES_SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"val": "valid"}  # tatoeba and files call the validation split "valid"
# French typography puts no-break spaces before ! ? : ; which tokenise differently from
# plain spaces and make the same sentence look different to BLEU.
NO_BREAK_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " "})


@dataclass
class ParallelCorpus:
    """Sentence-aligned source and target text, one sentence per entry."""

    src: list[str]
    tgt: list[str]

    def __len__(self) -> int:
        return len(self.src)


def read_lines(path: str | Path) -> list[str]:
    """One sentence per line, surrounding whitespace stripped; plain or .gz, strict UTF-8."""
    return [line.strip() for line in file_lines(path)]


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> ParallelCorpus:
    """Two line-aligned files; their line counts must agree."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise UserError(
            f"Parallel files are not aligned: {src_path} has {len(src)} lines but {tgt_path} "
            f"has {len(tgt)}; every source line needs exactly one target line."
        )
    return ParallelCorpus(src, tgt)


def read_tsv(path: str | Path) -> ParallelCorpus:
    """Source and target from the first two tab-separated columns of each line."""
    src, tgt = [], []
    for number, line in enumerate(file_lines(path), start=1):
        columns = line.split("\t")
        if len(columns) < 2:
            raise UserError(f"{path}, line {number}: no tab; each line must be source<TAB>target.")
        src.append(columns[0].strip())
        tgt.append(columns[1].strip())
    return ParallelCorpus(src, tgt)


def has_files(data: Any, split: str) -> bool:
    """Whether a ``data=files`` config names files for ``split``."""
    prefix = SPLIT_ALIASES.get(split, split)
    return any(getattr(data, f"{prefix}_{kind}", None) for kind in ("src", "tgt", "tsv"))


def load_split(cfg: Any, split: str) -> ParallelCorpus:
    """The ``split`` of the dataset ``cfg.name`` (a DataConfig), source/target per cfg.src/tgt."""
    loaders = {"multi30k": _load_multi30k, "tatoeba": _load_tatoeba, "files": _load_files}
    if cfg.name not in loaders:
        raise UserError(f"data.name={cfg.name!r} is unknown; use one of {', '.join(loaders)}.")
    return loaders[cfg.name](cfg, split)


def _load_multi30k(cfg: Any, split: str) -> ParallelCorpus:
    if cfg.src not in MULTI30K_LANGUAGES or cfg.tgt not in MULTI30K_LANGUAGES or cfg.src == cfg.tgt:
        raise UserError(
            f"Multi30k has no pair data.src={cfg.src} data.tgt={cfg.tgt}; pick two different "
            f"languages of {', '.join(MULTI30K_LANGUAGES)}."
        )
    if split not in MULTI30K_SPLITS:
        raise UserError(
            f"Multi30k has no split {split!r}; known splits: {', '.join(MULTI30K_SPLITS)}."
        )
    paths = download.ensure_multi30k(Path(cfg.root).expanduser(), split, [cfg.src, cfg.tgt])
    return read_parallel(paths[cfg.src], paths[cfg.tgt])


def _load_tatoeba(cfg: Any, split: str) -> ParallelCorpus:
    if {cfg.src, cfg.tgt} != set(TATOEBA_LANGUAGES):
        raise UserError(
            f"Tatoeba eng-fra has no pair data.src={cfg.src} data.tgt={cfg.tgt}; "
            f"use data.src=en data.tgt=fr or data.src=fr data.tgt=en."
        )
    split = SPLIT_ALIASES.get(split, split)
    if split not in TATOEBA_SPLITS:
        raise UserError(f"Tatoeba has no split {split!r}; use one of {', '.join(TATOEBA_SPLITS)}.")
    fractions_ok = min(cfg.valid_fraction, cfg.test_fraction) >= 0
    if not fractions_ok or cfg.valid_fraction + cfg.test_fraction >= 1:
        raise UserError(
            f"data.valid_fraction={cfg.valid_fraction} and data.test_fraction="
            f"{cfg.test_fraction} must be non-negative and sum to less than 1."
        )
    pairs = read_tsv(download.ensure_tatoeba(Path(cfg.root).expanduser()))
    english = [line.translate(NO_BREAK_SPACES) for line in pairs.src]
    french = [line.translate(NO_BREAK_SPACES) for line in pairs.tgt]
    keep = [
        i
        for i, sentence in enumerate(english)
        if tatoeba_split_of(sentence, cfg.split_seed, cfg.valid_fraction, cfg.test_fraction)
        == split
    ]
    en, fr = [english[i] for i in keep], [french[i] for i in keep]
    return ParallelCorpus(en, fr) if cfg.src == "en" else ParallelCorpus(fr, en)


def tatoeba_split_of(english: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """The split of a pair, from a seeded hash of its normalised English side.

    Hashing the English side (not the pair) keeps all translations of one English
    sentence in one split, so the test set never holds a source seen in training.
    """
    normalised = " ".join(english.casefold().split())
    digest = hashlib.sha256(f"{seed}\t{normalised}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if position < valid_fraction:
        return "valid"
    if position < valid_fraction + test_fraction:
        return "test"
    return "train"


def _load_files(cfg: Any, split: str) -> ParallelCorpus:
    prefix = SPLIT_ALIASES.get(split, split)
    if prefix not in FILES_SPLITS:
        raise UserError(
            f"data=files has no split {split!r}; use one of {', '.join(FILES_SPLITS)}, "
            f"each configured with data.<split>_src/_tgt or data.<split>_tsv."
        )
    src, tgt, tsv = (getattr(cfg, f"{prefix}_{kind}") for kind in ("src", "tgt", "tsv"))
    if tsv and (src or tgt):
        raise UserError(
            f"Both data.{prefix}_tsv and data.{prefix}_src/_tgt are set; keep one of them."
        )
    if tsv:
        return read_tsv(tsv)
    if src and tgt:
        return read_parallel(src, tgt)
    if src or tgt:
        missing = f"data.{prefix}_tgt" if src else f"data.{prefix}_src"
        raise UserError(f"The {prefix} split has only one side; set {missing}=... as well.")
    raise UserError(
        f"No files configured for the {prefix} split; set data.{prefix}_src=... "
        f"data.{prefix}_tgt=... (or data.{prefix}_tsv=...)."
    )


def filter_pairs(
    corpus: ParallelCorpus, max_chars: int | None, name: str = "corpus"
) -> tuple[ParallelCorpus, dict[str, int]]:
    """Drop pairs with an empty side or a side over ``max_chars`` characters (None: no limit).

    Returns the kept pairs and how many were removed for each reason.
    """
    if len(corpus) == 0:
        raise UserError(f"The {name} is empty; check its files (data.*_src/_tgt or data.root).")
    counts = {"empty": 0, "max_chars": 0}
    src, tgt = [], []
    for s, t in zip(corpus.src, corpus.tgt, strict=True):
        if not s or not t:
            counts["empty"] += 1
        elif max_chars is not None and max(len(s), len(t)) > max_chars:
            counts["max_chars"] += 1
        else:
            src.append(s)
            tgt.append(t)
    if not src:
        raise UserError(
            f"Filtering removed every pair of the {name} ({counts['empty']} with an empty side, "
            f"{counts['max_chars']} over data.max_chars={max_chars}); raise data.max_chars or "
            f"check that the files hold text."
        )
    return ParallelCorpus(src, tgt), counts
