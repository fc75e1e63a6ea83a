"""A generated toy language pair with known word alignments, for tests, demos and benchmarks.

English-like sentences "DET [ADJ] NOUN VERB DET [ADJ] NOUN" are translated word by word
into French-like words, with the adjective moved after its noun ("the red car" ->
"la voiture rouge"), so a model must learn both a lexicon and a reordering, and the gold
word alignment of every pair is known exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

DETERMINERS = {"the": "le", "a": "un", "every": "chaque", "this": "ce"}
ADJECTIVES = {
    "red": "rouge",
    "big": "grand",
    "small": "petit",
    "old": "vieux",
    "new": "neuf",
    "blue": "bleu",
    "green": "vert",
    "happy": "heureux",
    "quiet": "calme",
    "strong": "fort",
}
NOUNS = {
    "dog": "chien",
    "cat": "chat",
    "man": "homme",
    "woman": "femme",
    "car": "voiture",
    "house": "maison",
    "bird": "oiseau",
    "child": "enfant",
    "ball": "balle",
    "tree": "arbre",
    "teacher": "professeur",
    "garden": "jardin",
}
VERBS = {
    "sees": "voit",
    "likes": "aime",
    "has": "possede",
    "takes": "prend",
    "finds": "trouve",
    "wants": "veut",
    "paints": "peint",
    "follows": "suit",
}


@dataclass
class SyntheticPair:
    """One generated sentence pair and its gold alignment as (source i, target j) links."""

    src: str
    tgt: str
    links: set[tuple[int, int]]


def noun_phrase(rng: random.Random) -> list[tuple[str, str]]:
    """A determiner, maybe an adjective, and a noun, as (source, target) word pairs."""
    words = [rng.choice(list(DETERMINERS.items()))]
    if rng.random() < 0.6:
        words.append(rng.choice(list(ADJECTIVES.items())))
    words.append(rng.choice(list(NOUNS.items())))
    return words


def make_pair(rng: random.Random) -> SyntheticPair:
    """A random sentence, its translation, and the links between their words."""
    subject, obj = noun_phrase(rng), noun_phrase(rng)
    source_words = [*subject, rng.choice(list(VERBS.items())), *obj]
    # The target keeps the source order except that an adjective follows its noun.
    order = list(range(len(source_words)))
    for i, (word, _) in enumerate(source_words[:-1]):
        if word in ADJECTIVES:
            order[i], order[i + 1] = order[i + 1], order[i]
    src = " ".join(s for s, _ in source_words)
    tgt = " ".join(source_words[i][1] for i in order)
    return SyntheticPair(src, tgt, {(i, j) for j, i in enumerate(order)})


def generate(count: int, seed: int) -> list[SyntheticPair]:
    """``count`` pairs, deterministic in ``seed``."""
    rng = random.Random(seed)
    return [make_pair(rng) for _ in range(count)]


def write_corpus(
    directory: Path, sizes: dict[str, int], seed: int = 0
) -> dict[str, tuple[Path, Path]]:
    """Write ``{split}.src`` / ``{split}.tgt`` files (and ``{split}.align`` in Pharaoh form)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for offset, (split, count) in enumerate(sizes.items()):
        pairs = generate(count, seed * 1000 + offset)
        src, tgt = directory / f"{split}.src", directory / f"{split}.tgt"
        src.write_text("".join(p.src + "\n" for p in pairs), encoding="utf-8")
        tgt.write_text("".join(p.tgt + "\n" for p in pairs), encoding="utf-8")
        align = "".join(" ".join(f"{i}-{j}" for i, j in sorted(p.links)) + "\n" for p in pairs)
        (directory / f"{split}.align").write_text(align, encoding="utf-8")
        paths[split] = (src, tgt)
    return paths
