"""From attention weights to word alignments, the gold formats, and alignment error rate.

Pure functions over arrays and link sets; no model code. A link is a pair ``(i, j)`` in
the Pharaoh convention: source word ``i``, target word ``j``, both 0-based. A gold
alignment is a pair ``(sure, possible)`` of link sets with ``sure <= possible``, as the
AER definition of Och & Ney (2003) wants it (Possible = S u P).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from seq2seq.arrays import as_array, check_labels
from seq2seq.errors import UserError
from seq2seq.textio import file_lines

Link = tuple[int, int]  # (source word i, target word j), 0-based
Gold = tuple[set[Link], set[Link]]  # (sure, possible) with sure <= possible

WORD_START = "\u2581"  # SentencePiece's "▁" marks a piece that begins a word
SPECIAL_PIECES = frozenset({"<pad>", "<s>", "</s>"})  # not words; <unk> stands for one
NULL_PIECE = "</s>"  # a source's closing EOS: the NULL position (Tokenizer.null_position)

_DASH_LINK = re.compile(r"(\d+)-(\d+)(?:-([SP]))?")  # i-j, i-j-S, i-j-P
_POSSIBLE_LINK = re.compile(r"(\d+)[p?](\d+)")  # ipj, i?j


def word_spans(pieces: Sequence[str]) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` piece ranges of each word; special tokens belong to none."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for k, piece in enumerate(pieces):
        if piece in SPECIAL_PIECES:
            if start is not None:
                spans.append((start, k))
            start = None
        elif start is None or piece.startswith(WORD_START):
            if start is not None:
                spans.append((start, k))
            start = k
    if start is not None:
        spans.append((start, len(pieces)))
    return spans


def subword_to_word(
    attn: Tensor | np.ndarray, tgt_pieces: Sequence[str], src_pieces: Sequence[str]
) -> np.ndarray:
    """Word scores (T_words, S_words): sum over target pieces, average over source pieces.

    Each target piece is its own decoding step with its own distribution over the source,
    so a target word's evidence is the sum of its steps' attention. A source word's score
    is the mean over its pieces so that it stays on the scale of one source position:
    summing would favour rare words split into many pieces just for having more columns.
    The result is a score matrix, not a distribution (a row sums to about the number of
    its pieces); argmax and thresholds in :func:`hard_alignment` are per row. Special
    tokens are no words, so their rows and columns are dropped without renormalising;
    use :func:`strip_specials` first to renormalise.
    """
    weights = as_array(attn)  # (T_sub, S_sub)
    check_labels(weights.shape, tgt_pieces, src_pieces)
    tgt_spans, src_spans = word_spans(tgt_pieces), word_spans(src_pieces)
    merge_rows = np.zeros((len(tgt_spans), len(tgt_pieces)))  # (T_words, T_sub) of 0/1
    for word, (a, b) in enumerate(tgt_spans):
        merge_rows[word, a:b] = 1.0
    merge_cols = np.zeros((len(src_pieces), len(src_spans)))  # (S_sub, S_words) of 1/len
    for word, (a, b) in enumerate(src_spans):
        merge_cols[a:b, word] = 1.0 / (b - a)
    return merge_rows @ weights @ merge_cols  # (T_words, S_words)


def strip_specials(
    attn: Tensor | np.ndarray, tgt_pieces: Sequence[str], src_pieces: Sequence[str]
) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop BOS/EOS/pad rows and columns and renormalise each row to sum to 1.

    A decoder often parks much of its attention on the source EOS; without it the
    remaining weights say how the word's attention splits among real source tokens. A row
    whose whole mass sat on special tokens stays all zero (it has no evidence to share).
    Returns the matrix with the kept pieces, ready for ``subword_to_word(*result)``.
    """
    weights = as_array(attn)  # (T, S)
    check_labels(weights.shape, tgt_pieces, src_pieces)
    keep_t = [t for t, piece in enumerate(tgt_pieces) if piece not in SPECIAL_PIECES]
    keep_s = [s for s, piece in enumerate(src_pieces) if piece not in SPECIAL_PIECES]
    kept = weights[np.ix_(keep_t, keep_s)]  # (T', S')
    totals = kept.sum(axis=1, keepdims=True)  # (T', 1)
    kept = np.divide(kept, totals, out=np.zeros_like(kept), where=totals > 0)
    return kept, [tgt_pieces[t] for t in keep_t], [src_pieces[s] for s in keep_s]


def has_null(src_pieces: Sequence[str]) -> bool:
    """Whether the source ends in the NULL position."""
    return bool(src_pieces) and src_pieces[-1] == NULL_PIECE


def null_word_scores(
    attn: Tensor | np.ndarray, tgt_pieces: Sequence[str], src_pieces: Sequence[str]
) -> np.ndarray:
    """Word scores (T_words, S_words + 1) whose last column is the NULL position.

    The source ends in :data:`NULL_PIECE`; its column is kept, not renormalised away: a
    target word's NULL score is the sum of its pieces' attention to it, on the scale of
    one source word, so :func:`hard_alignment` with ``null=True`` leaves a word whose
    argmax is NULL unaligned.
    """
    weights = as_array(attn)  # (T_sub, S_sub)
    check_labels(weights.shape, tgt_pieces, src_pieces)
    if not has_null(src_pieces):
        raise ValueError(f"the source pieces do not end in the NULL position {NULL_PIECE!r}")
    null = [weights[a:b, -1].sum() for a, b in word_spans(tgt_pieces)]  # (T_words,)
    words = subword_to_word(weights, tgt_pieces, src_pieces)  # (T_words, S_words)
    return np.concatenate([words, np.asarray(null, dtype=words.dtype)[:, None]], axis=1)


def hard_alignment(
    matrix: Tensor | np.ndarray, threshold: float | None = None, null: bool = False
) -> set[Link]:
    """Links ``(src i, tgt j)``: each target word's argmax, plus every weight >= ``threshold``.

    A target row that is all zero (no evidence, e.g. its mass was all on EOS) gets no link.
    ``null``: the last column is the NULL position; a word whose argmax is there stays
    unaligned, and no threshold links NULL.
    """
    weights = as_array(matrix)  # (T, S)
    links: set[Link] = set()
    words = weights.shape[1] - 1 if null else weights.shape[1]
    if words <= 0:
        return links
    for j, row in enumerate(weights):
        best = int(row.argmax())
        if row.max() <= 0 or best >= words:
            continue
        links.add((best, j))
        if threshold is not None:
            links.update((int(i), j) for i in np.flatnonzero(row[:words] >= threshold))
    return links


def word_links(
    matrix: Tensor | np.ndarray,
    tgt_pieces: Sequence[str],
    src_pieces: Sequence[str],
    use_null: bool = True,
) -> set[Link]:
    """Hard word links of one (T, S) subword attention matrix.

    A source that ends in the NULL position (and ``use_null``): a word whose attention goes
    mostly to NULL stays unaligned. Otherwise special tokens are dropped and each row
    renormalised over the real source tokens before subwords merge into words.
    """
    if use_null and has_null(src_pieces):
        return hard_alignment(null_word_scores(matrix, tgt_pieces, src_pieces), null=True)
    return hard_alignment(subword_to_word(*strip_specials(matrix, tgt_pieces, src_pieces)))


SYMMETRIZATIONS = ("intersection", "union", "grow-diag-final-and")
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def symmetrize(a_st: Iterable[Link], a_ts: Iterable[Link], mode: str = "intersection") -> set[Link]:
    """Combine source→target links ``(i, j)`` with target→source links ``(j, i)`` (as produced).

    ``a_ts`` comes from the reverse-direction model, whose "source" is our target, so its
    pairs are flipped before combining. ``mode`` is ``"intersection"`` (precise),
    ``"union"`` (high recall) or ``"grow-diag-final-and"`` (Koehn et al. 2005: the
    intersection grown into neighbouring union links, then unaligned words' links).
    """
    forward = set(a_st)
    backward = {(i, j) for j, i in a_ts}
    if mode == "intersection":
        return forward & backward
    if mode == "union":
        return forward | backward
    if mode == "grow-diag-final-and":
        return _grow_diag_final_and(forward, backward)
    raise ValueError(f"symmetrize mode must be one of {', '.join(SYMMETRIZATIONS)}, not {mode!r}")


def _grow_diag_final_and(forward: set[Link], backward: set[Link]) -> set[Link]:
    """Grow-diag-final-and of two link sets in the same (source i, target j) orientation."""
    union, links = forward | backward, forward & backward

    def unaligned(i: int, j: int) -> bool:  # either word still without a link
        return all(s != i for s, _ in links) or all(t != j for _, t in links)

    grown = True
    while grown:  # grow-diag: neighbours (diagonals too) of links, from the union
        grown = False
        for i, j in sorted(links):
            for di, dj in _NEIGHBOURS:
                point = (i + di, j + dj)
                if point in union and point not in links and unaligned(*point):
                    links.add(point)
                    grown = True
    for direction in (forward, backward):  # final-and: words unaligned on both sides
        for i, j in sorted(direction):
            if all(s != i for s, _ in links) and all(t != j for _, t in links):
                links.add((i, j))
    return links


def to_pharaoh(links: Iterable[Link], possible: Iterable[Link] = ()) -> str:
    """Pharaoh text: sure links as ``i-j``, possible-only links as ``ipj``, sorted by (i, j)."""
    sure = set(links)
    tokens = [(i, j, f"{i}-{j}") for i, j in sure]
    tokens += [(i, j, f"{i}p{j}") for i, j in set(possible) - sure]
    return " ".join(text for _, _, text in sorted(tokens))


def parse_pharaoh(line: str) -> Gold:
    """Parse ``i-j`` / ``i-j-S`` (sure) and ``ipj`` / ``i?j`` / ``i-j-P`` (possible) links.

    Returns ``(sure, possible)`` with ``possible`` including the sure links, as AER wants.
    """
    sure: set[Link] = set()
    possible: set[Link] = set()
    for token in line.split():
        if match := _DASH_LINK.fullmatch(token):
            link = (int(match.group(1)), int(match.group(2)))
            if match.group(3) != "P":
                sure.add(link)
        elif match := _POSSIBLE_LINK.fullmatch(token):
            link = (int(match.group(1)), int(match.group(2)))
        else:
            raise ValueError(f"not a Pharaoh link: {token!r} (expected i-j, ipj or i-j-P)")
        possible.add(link)
    return sure, possible


def gold_lines(path: str | Path, what: str) -> list[str]:
    """The lines of a gold-alignment file (links or text), or a UserError naming it."""
    if not Path(path).is_file():
        raise UserError(f"{what} file not found: {path}")
    return file_lines(path)


def read_pharaoh(path: str | Path) -> list[Gold]:
    """One ``(sure, possible)`` per line of a Pharaoh alignment file (0-based, ``i-j``/``ipj``)."""
    golds = []
    for number, line in enumerate(gold_lines(path, "Pharaoh alignment"), start=1):
        try:
            golds.append(parse_pharaoh(line))
        except ValueError as error:
            raise UserError(f"{path}, line {number}: {error}") from None
    return golds


def read_naacl(
    path: str | Path,
    n_sentences: int | None = None,
    sentence_ids: Sequence[int] | None = None,
) -> list[Gold]:
    """Read NAACL/WPT ``sent e f [S|P] [confidence]`` links (1-based) as 0-based gold sets.

    Sentences are numbered by the order in which their ids first appear (ids need not be
    contiguous: the Hansards trial set skips 1009-1010). A sentence without links cannot
    appear in the file, so ``n_sentences`` pads missing trailing sentences with empty
    sets; for gaps in the middle pass the corpus' ``sentence_ids`` in order. A link
    without S/P is sure; links to position 0 (NULL) are skipped.
    """
    links: dict[int, Gold] = {}
    for number, line in enumerate(gold_lines(path, "NAACL alignment"), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            sent, e, f = (int(x) for x in fields[:3])
            kind = fields[3] if len(fields) > 3 else "S"
            if kind not in ("S", "P") or len(fields) > 5:
                raise ValueError
        except ValueError:
            raise UserError(
                f"{path}, line {number}: expected 'sentence e f S|P', got {line!r}"
            ) from None
        sure, possible = links.setdefault(sent, (set(), set()))
        if e == 0 or f == 0:
            continue
        possible.add((e - 1, f - 1))
        if kind == "S":
            sure.add((e - 1, f - 1))
    if sentence_ids is not None:
        unknown = sorted(set(links) - set(sentence_ids))
        if unknown:
            raise UserError(f"{path}: sentence ids {unknown[:5]} are not in the given sentence ids")
        golds = [links.get(sent, (set(), set())) for sent in sentence_ids]
    else:
        golds = list(links.values())
    if n_sentences is not None:
        if len(golds) > n_sentences:
            raise UserError(f"{path}: links for {len(golds)} sentences, expected {n_sentences}")
        golds += [(set(), set()) for _ in range(n_sentences - len(golds))]
    return golds


def aer(
    hyp: Sequence[Iterable[Link]],
    sure: Sequence[Iterable[Link]],
    possible: Sequence[Iterable[Link]],
) -> dict[str, float]:
    """Corpus-level precision, recall, AER and F1 of hypothesis links against gold S and P.

    precision = |A n P| / |A|, recall = |A n S| / |S|,
    AER = 1 - (|A n S| + |A n P|) / (|A| + |S|), F1 = harmonic mean of the two.
    Counts are summed over sentences before dividing. ``possible`` is taken as P u S, so
    gold files that list sure links only once still score correctly. A ratio with a zero
    denominator counts as 1 (nothing to get wrong): an empty hypothesis against empty gold
    scores AER 0; an empty hypothesis against non-empty gold has precision 1, recall 0,
    F1 0 and AER 1.
    """
    if not len(hyp) == len(sure) == len(possible):
        raise ValueError(
            f"{len(hyp)} hypothesis, {len(sure)} sure and {len(possible)} possible "
            "alignments: the corpora must have the same number of sentences"
        )
    n_a = n_s = a_and_s = a_and_p = 0
    for a_links, s_links, p_links in zip(hyp, sure, possible, strict=True):
        a, s = set(a_links), set(s_links)
        p = set(p_links) | s
        n_a += len(a)
        n_s += len(s)
        a_and_s += len(a & s)
        a_and_p += len(a & p)
    precision = a_and_p / n_a if n_a else 1.0
    recall = a_and_s / n_s if n_s else 1.0
    error = 1.0 - (a_and_s + a_and_p) / (n_a + n_s) if n_a + n_s else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "aer": error, "f1": f1}


def select_layer_heads(
    cross: Tensor, layer: int | None = None, heads: Sequence[int] | None = None
) -> Tensor:
    """Mean over ``heads`` (default all) of one layer (default the last) of (L, H, T, S) weights."""
    if cross.dim() != 4:
        raise ValueError(f"expected cross-attention (L, H, T, S), got shape {tuple(cross.shape)}")
    weights = cross[-1 if layer is None else layer]  # (H, T, S)
    if heads is not None:
        weights = weights[list(heads)]  # (H', T, S)
    return weights.mean(dim=0)  # (T, S)


def best_layer_by_aer(
    per_layer: Sequence[Sequence[Iterable[Link]]],
    sure: Sequence[Iterable[Link]],
    possible: Sequence[Iterable[Link]],
) -> int:
    """Index of the layer whose hard links have the lowest corpus AER (the first on ties)."""
    if not per_layer:
        raise ValueError("no layers to choose from")
    scores = [aer(links, sure, possible)["aer"] for links in per_layer]
    return int(np.argmin(scores))
