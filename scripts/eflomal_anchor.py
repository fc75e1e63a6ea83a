"""eflomal, a statistical word aligner, as an anchor beside the attention's AER.

eflomal (Östling & Tiedemann 2016: IBM1, HMM and fertility models sampled by Gibbs
sampling) learns from parallel text alone. It aligns a gold set's sentences together with
extra parallel text (never the gold links), in both directions; each direction and the
two merged by intersection, union and grow-diag-final-and are scored like the attention.
It is an optional dependency: ``pip install eflomal`` (or ``pip install -e '.[align]'``).

The extra text is normalised to look like a word-tokenised gold set by :func:`normalise`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from seq2seq.alignment import SYMMETRIZATIONS, Link, aer, parse_pharaoh, symmetrize
from seq2seq.alignment_eval import GoldSet
from seq2seq.errors import UserError
from seq2seq.textio import file_lines

LINK_SETS = ("forward", "reverse", *SYMMETRIZATIONS)
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})  # curly to straight
_TOKEN = {  # numbers keep their separators (250,000); every other symbol is its own token
    "en": re.compile(
        r"\d+(?:[.,]\d+)+|(?:mr|mrs|ms|dr)\.|\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|m|d)\b|\w+|\S"
    ),
    "fr": re.compile(r"\d+(?:[.,]\d+)+|m\.(?=\s)|\w+'|\w+|\S"),
}
# French as the Hansards write it: elided words spelled out, du/des/au/aux as de/à + article
FRENCH_WORDS = {
    "l'": "le",
    "d'": "de",
    "j'": "je",
    "n'": "ne",
    "qu'": "que",
    "c'": "ce",
    "s'": "se",
    "m'": "me",
    "t'": "te",
    "du": "de le",
    "des": "de les",
    "au": "à le",
    "aux": "à les",
}


def normalise(text: str, lang: str) -> str:
    """Lowercased words and symbols separated by spaces, as the Hansards gold text is.

    Punctuation, hyphens and quotes become tokens of their own; numbers keep their ``,``
    and ``.`` (``250,000``), and Mr./Mrs./Ms./Dr. (French M.) their full stop. English
    splits clitics off as the Penn Treebank does (``do n't``, ``it 's``); French splits
    after an apostrophe (``aujourd' hui``) and spells elisions and contractions out
    (``l'`` → ``le``, ``qu'`` → ``que``, ``du`` → ``de le``, ``aux`` → ``à les``).
    """
    if lang not in _TOKEN:
        raise ValueError(f"normalise knows {', '.join(_TOKEN)}, not {lang!r}")
    tokens = _TOKEN[lang].findall(text.lower().translate(APOSTROPHES))
    if lang == "fr":
        tokens = [FRENCH_WORDS.get(token, token) for token in tokens]
    return " ".join(tokens)


def require_eflomal() -> ModuleType:
    """The eflomal package, or a UserError saying how to install it."""
    try:
        import eflomal
    except ImportError:
        raise UserError(
            "eflomal is not installed; pip install eflomal (or pip install -e '.[align]')"
        ) from None
    return eflomal


def _read_links(path: Path) -> list[set[Link]]:
    return [parse_pharaoh(line)[0] for line in file_lines(path)]


def align(src: Sequence[str], tgt: Sequence[str]) -> tuple[list[set[Link]], list[set[Link]]]:
    """eflomal's forward and reverse links ``(src i, tgt j)`` of space-tokenised pairs.

    Both directions come back in the same (source, target) orientation, one set per pair.
    eflomal samples without a fixed seed, so runs differ slightly.
    """
    eflomal = require_eflomal()
    if len(src) != len(tgt):
        raise ValueError(f"{len(src)} source but {len(tgt)} target sentences")
    with tempfile.TemporaryDirectory() as scratch:
        fwd, rev = Path(scratch) / "forward", Path(scratch) / "reverse"
        eflomal.Aligner().align(
            list(src), list(tgt), links_filename_fwd=str(fwd), links_filename_rev=str(rev)
        )
        forward, reverse = _read_links(fwd), _read_links(rev)
    if not len(forward) == len(reverse) == len(src):
        raise RuntimeError(f"eflomal wrote {len(forward)}/{len(reverse)} lines for {len(src)}")
    return forward, reverse


def anchor_scores(
    gold: GoldSet, extra_src: Sequence[str], extra_tgt: Sequence[str], repeat: int = 1
) -> dict[str, dict[str, float]]:
    """AER, precision, recall and F1 of each of :data:`LINK_SETS` on ``gold``.

    eflomal aligns ``repeat`` copies of the gold text followed by the extra pairs (already
    tokenised like the gold, :func:`normalise`); only the first copy's links are scored.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    forward, reverse = align([*gold.src * repeat, *extra_src], [*gold.tgt * repeat, *extra_tgt])
    forward, reverse = forward[: len(gold)], reverse[: len(gold)]
    links = {"forward": forward, "reverse": reverse}
    for mode in SYMMETRIZATIONS:  # symmetrize wants the reverse links as (tgt j, src i)
        links[mode] = [
            symmetrize(f, {(j, i) for i, j in r}, mode)
            for f, r in zip(forward, reverse, strict=True)
        ]
    return {name: aer(links[name], gold.sure, gold.possible) for name in LINK_SETS}
