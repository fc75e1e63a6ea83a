"""scripts/eflomal_anchor.py: the text normaliser, and eflomal aligning a known mapping."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from seq2seq.alignment_eval import GoldSet


def load_anchor() -> ModuleType:
    """scripts/eflomal_anchor.py as a module (scripts/ is no package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "eflomal_anchor.py"
    spec = importlib.util.spec_from_file_location("eflomal_anchor", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


anchor = load_anchor()


@pytest.mark.parametrize(
    ("lang", "raw", "tokens"),
    [
        ("en", "Don't go, Mr. Smith!", "do n't go , mr. smith !"),
        ("en", "It’s 250,000 dollars (well-known).", "it 's 250,000 dollars ( well - known ) ."),
        ("fr", "L'homme n'est pas là aujourd'hui.", "le homme ne est pas là aujourd' hui ."),
        ("fr", "Qu'il vienne du marché aux puces !", "que il vienne de le marché à les puces !"),
        ("fr", "Comment allez-vous ? M. Dupont", "comment allez - vous ? m. dupont"),
    ],
)
def test_normalise_tokenises_like_the_hansards(lang: str, raw: str, tokens: str) -> None:
    assert anchor.normalise(raw, lang) == tokens


def test_normalise_refuses_an_unknown_language() -> None:
    with pytest.raises(ValueError, match="not 'de'"):
        anchor.normalise("Guten Tag", "de")


LEXICON = {  # English noun/adjective -> French; French puts the adjective after the noun
    "cat": "chat",
    "dog": "chien",
    "house": "maison",
    "car": "voiture",
    "bird": "oiseau",
    "tree": "arbre",
}
ADJECTIVES = {"red": "rouge", "big": "grand", "old": "vieux", "green": "vert"}
VERBS = {"sees": "voit", "likes": "aime", "finds": "trouve"}


def generated_pairs(n: int, seed: int = 0) -> GoldSet:
    """'the ADJ NOUN VERB the NOUN' -> 'le NOUN ADJ VERB le NOUN', with the gold links."""
    rng = random.Random(seed)
    src, tgt, links = [], [], []
    for _ in range(n):
        adj, noun, verb, obj = (
            rng.choice(list(words)) for words in (ADJECTIVES, LEXICON, VERBS, LEXICON)
        )
        src.append(f"the {adj} {noun} {verb} the {obj}")
        tgt.append(f"le {LEXICON[noun]} {ADJECTIVES[adj]} {VERBS[verb]} le {LEXICON[obj]}")
        links.append({(0, 0), (1, 2), (2, 1), (3, 3), (4, 4), (5, 5)})
    return GoldSet(src, tgt, links, [set(s) for s in links])


def test_eflomal_finds_a_known_mapping() -> None:
    pytest.importorskip("eflomal", reason="eflomal is optional: pip install eflomal")
    gold = generated_pairs(200)
    extra = generated_pairs(100, seed=1)
    scores = anchor.anchor_scores(gold, extra.src, extra.tgt)
    assert list(scores) == ["forward", "reverse", "intersection", "union", "grow-diag-final-and"]
    for name, s in scores.items():
        assert s["aer"] < 0.1, (name, s)
