"""Parallel text: read and validate files, pick a dataset's split, drop unusable pairs.

Every mistake a user can make with their files (missing, misaligned, not UTF-8, wrong
language pair, split not configured) ends in a :class:`~seq2seq.errors.UserError` that
names the file or the override to fix.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from seq2seq.data import download
from seq2seq.data.filters import TextFilter
from seq2seq.errors import UserError
from seq2seq.textio import stream_lines

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
PathList = str | Path | Sequence[str]  # a file, or several read one after the other


@dataclass
class ParallelCorpus:
    """Sentence-aligned source and target text, one sentence per entry."""

    src: list[str]
    tgt: list[str]

    def __len__(self) -> int:
        return len(self.src)


def read_lines(path: str | Path) -> list[str]:
    """One sentence per line, surrounding whitespace stripped; plain or .gz, strict UTF-8."""
    return [line.strip() for line in stream_lines(path)]


def read_parallel(src_path: PathList, tgt_path: PathList) -> ParallelCorpus:
    """Line-aligned source and target files (or lists of files); their line counts must agree."""
    return _collect(stream_parallel(_paths(src_path), _paths(tgt_path)))


def read_tsv(path: PathList) -> ParallelCorpus:
    """Source and target from the first two tab-separated columns of each line."""
    return _collect(stream_tsv(_paths(path)))


def _collect(pairs: Iterator[tuple[str, str]]) -> ParallelCorpus:
    corpus = ParallelCorpus([], [])
    for src, tgt in pairs:
        corpus.src.append(src)
        corpus.tgt.append(tgt)
    return corpus


def _paths(value: PathList) -> list[Path]:
    """A setting naming one file or a list of files, as paths."""
    if isinstance(value, (str, Path)):
        return [Path(value).expanduser()]
    return [Path(item).expanduser() for item in value]


def _names(paths: list[Path]) -> str:
    return ", ".join(str(path) for path in paths)


def stream_files(paths: Sequence[Path], digests: dict[str, str] | None = None) -> Iterator[str]:
    """The lines of several files, concatenated in order."""
    for path in paths:
        yield from stream_lines(path, digests)


def stream_parallel(
    src_paths: list[Path], tgt_paths: list[Path], digests: dict[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """Stripped (source, target) lines of line-aligned files; a count mismatch is an error."""
    src_lines, tgt_lines = stream_files(src_paths, digests), stream_files(tgt_paths, digests)
    count = 0
    for src, tgt in itertools.zip_longest(src_lines, tgt_lines):
        if src is None or tgt is None:
            src_count = count + (src is not None) + sum(1 for _ in src_lines)
            tgt_count = count + (tgt is not None) + sum(1 for _ in tgt_lines)
            raise UserError(
                f"Parallel files are not aligned: {_names(src_paths)} has {src_count} lines but "
                f"{_names(tgt_paths)} has {tgt_count}; every source line needs exactly one "
                f"target line."
            )
        count += 1
        yield src.strip(), tgt.strip()


def stream_tsv(
    paths: list[Path], digests: dict[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """Stripped (source, target) from the first two tab-separated columns of each line."""
    for path in paths:
        for number, line in enumerate(stream_lines(path, digests), start=1):
            columns = line.split("\t")
            if len(columns) < 2:
                raise UserError(
                    f"{path}, line {number}: no tab; each line must be source<TAB>target."
                )
            yield columns[0].strip(), columns[1].strip()


def has_files(data: Any, split: str) -> bool:
    """Whether a ``data=files`` config names files for ``split``."""
    prefix = SPLIT_ALIASES.get(split, split)
    return any(getattr(data, f"{prefix}_{kind}", None) for kind in ("src", "tgt", "tsv"))


@dataclass(frozen=True)
class SplitFiles:
    """The files of one split, read in order: line-aligned source and target files, or TSV,
    then the line-aligned extra files (``data.extra_train_src/_tgt``)."""

    src: tuple[Path, ...] = ()
    tgt: tuple[Path, ...] = ()
    tsv: tuple[Path, ...] = ()
    extra_src: tuple[Path, ...] = ()
    extra_tgt: tuple[Path, ...] = ()

    @property
    def paths(self) -> list[Path]:
        """Every file of the split."""
        return [*self.src, *self.tgt, *self.tsv, *self.extra_src, *self.extra_tgt]


def load_split(cfg: Any, split: str) -> ParallelCorpus:
    """The ``split`` of the dataset ``cfg.name`` (a DataConfig), source/target per cfg.src/tgt."""
    return _collect(stream_split(cfg, split, split_files(cfg, split)))


def split_files(cfg: Any, split: str) -> SplitFiles:
    """The files holding ``split`` (downloaded first if the dataset needs it)."""
    loaders = {"multi30k": _multi30k_files, "tatoeba": _tatoeba_files, "files": _user_files}
    if cfg.name not in loaders:
        raise UserError(f"data.name={cfg.name!r} is unknown; use one of {', '.join(loaders)}.")
    files = loaders[cfg.name](cfg, split)
    if split != cfg.train_split or not (cfg.extra_train_src or cfg.extra_train_tgt):
        return files
    if not (cfg.extra_train_src and cfg.extra_train_tgt):
        missing = "data.extra_train_tgt" if cfg.extra_train_src else "data.extra_train_src"
        raise UserError(f"The extra training text has only one side; set {missing}=... as well.")
    extra_src, extra_tgt = _paths(cfg.extra_train_src), _paths(cfg.extra_train_tgt)
    return replace(files, extra_src=tuple(extra_src), extra_tgt=tuple(extra_tgt))


def stream_split(
    cfg: Any, split: str, files: SplitFiles, digests: dict[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """The (source, target) pairs of ``split``, read from ``files`` one at a time."""
    if not files.tsv:
        pairs = stream_parallel(list(files.src), list(files.tgt), digests)
    else:
        pairs = stream_tsv(list(files.tsv), digests)
        if cfg.name == "tatoeba":
            pairs = _tatoeba_pairs(cfg, SPLIT_ALIASES.get(split, split), pairs)
    if not files.extra_src:
        return pairs
    extra = stream_parallel(list(files.extra_src), list(files.extra_tgt), digests)
    return itertools.chain(pairs, extra)


def _multi30k_files(cfg: Any, split: str) -> SplitFiles:
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
    return SplitFiles(src=(paths[cfg.src],), tgt=(paths[cfg.tgt],))


def _tatoeba_files(cfg: Any, split: str) -> SplitFiles:
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
    return SplitFiles(tsv=(download.ensure_tatoeba(Path(cfg.root).expanduser()),))


def _tatoeba_pairs(
    cfg: Any, split: str, pairs: Iterator[tuple[str, str]]
) -> Iterator[tuple[str, str]]:
    """The pairs of ``split`` (the file holds English<TAB>French), in data.src/tgt order."""
    fractions = cfg.valid_fraction, cfg.test_fraction
    for en, fr in pairs:
        english, french = en.translate(NO_BREAK_SPACES), fr.translate(NO_BREAK_SPACES)
        if tatoeba_split_of(english, cfg.split_seed, *fractions) != split:
            continue
        yield (english, french) if cfg.src == "en" else (french, english)


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


def _user_files(cfg: Any, split: str) -> SplitFiles:
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
        return SplitFiles(tsv=tuple(_paths(tsv)))
    if src and tgt:
        return SplitFiles(src=tuple(_paths(src)), tgt=tuple(_paths(tgt)))
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
    rules = TextFilter(max_chars, name)
    kept = _collect(pair for pair in zip(corpus.src, corpus.tgt, strict=True) if rules.keep(*pair))
    rules.check()
    return kept, rules.counts
