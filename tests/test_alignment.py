"""Attention to word alignments, the gold formats and AER, against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq import alignment_eval
from seq2seq.alignment import (
    aer,
    best_layer_by_aer,
    hard_alignment,
    parse_pharaoh,
    read_naacl,
    read_pharaoh,
    select_layer_heads,
    strip_specials,
    subword_to_word,
    symmetrize,
    to_pharaoh,
    word_spans,
)
from seq2seq.alignment_eval import GoldSet, best_readout, score_readouts, word_scores
from seq2seq.errors import UserError
from seq2seq.readout import Readout, resolve_readout

HANSARDS = Path(__file__).resolve().parents[2] / "shared/data/alignment/hansards-enfr-trial"

# "comm ent | allez | </s>" attending over "how | ar e | you | </s>"
TGT = ["▁comm", "ent", "▁allez", "</s>"]
SRC = ["▁how", "▁ar", "e", "▁you", "</s>"]
ATTN = np.array(
    [
        [0.5, 0.1, 0.1, 0.1, 0.2],
        [0.3, 0.2, 0.0, 0.1, 0.4],
        [0.0, 0.4, 0.2, 0.2, 0.2],
        [0.0, 0.0, 0.0, 0.1, 0.9],
    ]
)


def test_word_spans_follow_sentencepiece_boundaries():
    assert word_spans(SRC) == [(0, 1), (1, 3), (3, 4)]
    assert word_spans(TGT) == [(0, 2), (2, 3)]
    # A lone "▁" piece starts a word that the next piece continues; a piece after a
    # special token starts a word even without "▁", and so does the first piece.
    assert word_spans(["▁", "«", "▁a", "b"]) == [(0, 2), (2, 4)]
    assert word_spans(["<s>", "x", "y", "▁z", "</s>", "<pad>"]) == [(1, 3), (3, 4)]
    assert word_spans(["</s>"]) == []


def test_subword_to_word_sums_target_and_averages_source_pieces():
    words = subword_to_word(ATTN, TGT, SRC)
    # comm+ent rows summed: [0.8, 0.3, 0.1, 0.2]; "are" = mean of its two columns.
    expected = np.array([[0.8, 0.2, 0.2], [0.0, 0.3, 0.2]])
    np.testing.assert_allclose(words, expected, atol=1e-12)
    np.testing.assert_allclose(subword_to_word(torch.tensor(ATTN), TGT, SRC), expected, atol=1e-6)


def test_subword_to_word_matches_naive_loops():
    rng = np.random.default_rng(0)
    tgt = ["▁a", "b", "c", "▁d", "▁e", "f", "</s>"]
    src = ["▁u", "▁v", "w", "▁x", "y", "z", "</s>"]
    attn = rng.dirichlet(np.ones(len(src)), size=len(tgt))
    tgt_words, src_words = word_spans(tgt), word_spans(src)
    naive = np.zeros((len(tgt_words), len(src_words)))
    for r, (a, b) in enumerate(tgt_words):
        for c, (x, y) in enumerate(src_words):
            naive[r, c] = sum(attn[t, s] for t in range(a, b) for s in range(x, y)) / (y - x)
    np.testing.assert_allclose(subword_to_word(attn, tgt, src), naive, atol=1e-12)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        subword_to_word(ATTN, TGT[:-1], SRC)
    with pytest.raises(ValueError, match="does not match"):
        strip_specials(ATTN, TGT, SRC[:-1])


def test_strip_specials_drops_eos_and_renormalises_rows():
    kept, tgt, src = strip_specials(ATTN, TGT, SRC)
    assert tgt == TGT[:3] and src == SRC[:4]
    expected = np.array(
        [[5 / 8, 1 / 8, 1 / 8, 1 / 8], [1 / 2, 1 / 3, 0.0, 1 / 6], [0.0, 1 / 2, 1 / 4, 1 / 4]]
    )
    np.testing.assert_allclose(kept, expected, atol=1e-12)
    words = subword_to_word(kept, tgt, src)
    np.testing.assert_allclose(words, [[9 / 8, 7 / 24, 7 / 24], [0.0, 3 / 8, 1 / 4]], atol=1e-12)


def test_strip_specials_rows_sum_to_one_and_empty_rows_stay_zero():
    rng = np.random.default_rng(1)
    tgt = ["<s>", "▁le", "▁chat", "</s>"]
    src = ["▁the", "▁cat", "</s>", "<pad>"]
    attn = rng.dirichlet(np.ones(4), size=4)
    attn[2] = [0.0, 0.0, 1.0, 0.0]  # "chat" attended only to EOS
    kept, tgt_kept, src_kept = strip_specials(torch.tensor(attn), tgt, src)
    assert tgt_kept == ["▁le", "▁chat"] and src_kept == ["▁the", "▁cat"]
    assert kept[0].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kept[0], attn[1, :2] / attn[1, :2].sum())
    np.testing.assert_array_equal(kept[1], [0.0, 0.0])
    assert hard_alignment(kept) == {(int(kept[0].argmax()), 0)}  # no link for the empty row


def test_hard_alignment_argmax_and_threshold():
    matrix = np.array([[0.6, 0.3, 0.1], [0.2, 0.35, 0.45], [0.0, 0.0, 0.0]])
    assert hard_alignment(matrix) == {(0, 0), (2, 1)}
    assert hard_alignment(matrix, threshold=0.3) == {(0, 0), (1, 0), (2, 1), (1, 1)}
    # The argmax is kept even when nothing reaches the threshold.
    assert hard_alignment(matrix, threshold=0.9) == {(0, 0), (2, 1)}
    assert hard_alignment(torch.tensor(matrix)) == {(0, 0), (2, 1)}
    assert hard_alignment(np.zeros((2, 0))) == set()


def test_symmetrize_flips_the_reverse_direction():
    a_st = {(0, 0), (1, 1), (2, 1)}
    a_ts = {(0, 0), (1, 2), (2, 3)}  # (target j, source i) as the reverse model produces
    assert symmetrize(a_st, a_ts, "intersection") == {(0, 0), (2, 1)}
    assert symmetrize(a_st, a_ts, "union") == {(0, 0), (1, 1), (2, 1), (3, 2)}
    with pytest.raises(ValueError, match="intersection"):
        symmetrize(a_st, a_ts, "grow-diag")


def test_pharaoh_write_parse_round_trip():
    sure = {(2, 3), (0, 0), (1, 0)}
    possible = {(1, 2), (0, 0)}
    line = to_pharaoh(sure, possible)
    assert line == "0-0 1-0 1p2 2-3"
    assert parse_pharaoh(line) == (sure, sure | possible)
    assert to_pharaoh(set()) == ""
    assert parse_pharaoh("") == (set(), set())


def test_parse_pharaoh_accepts_all_link_styles():
    sure, possible = parse_pharaoh("0-0 1p2 3-4-P 5-6-S 7?8")
    assert sure == {(0, 0), (5, 6)}
    assert possible == {(0, 0), (1, 2), (3, 4), (5, 6), (7, 8)}
    for bad in ["0-", "1x2", "1p2-P", "a-b", "1-2-X"]:
        with pytest.raises(ValueError, match="not a Pharaoh link"):
            parse_pharaoh(bad)


def test_read_pharaoh_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "gold.talp"
    path.write_text("0-0 1p1\n\n0-0 oops\n")
    with pytest.raises(UserError, match=r"gold.talp, line 3.*oops"):
        read_pharaoh(path)
    path.write_text("0-0 1p1\n\n2-1\n")
    assert read_pharaoh(path) == [
        ({(0, 0)}, {(0, 0), (1, 1)}),
        (set(), set()),
        ({(2, 1)}, {(2, 1)}),
    ]
    with pytest.raises(UserError, match="not found"):
        read_pharaoh(tmp_path / "missing.talp")


def test_read_naacl_converts_to_zero_based_and_fills_gaps(tmp_path):
    path = tmp_path / "gold.wa"
    path.write_text("7 1 1 S\n7 2 3 P\n7 0 2 S\n9 3 1\n9 2 2 P 0.8\n")
    first = ({(0, 0)}, {(0, 0), (1, 2)})  # the NULL link (e = 0) is skipped
    second = ({(2, 0)}, {(2, 0), (1, 1)})  # no S/P means sure
    empty = (set(), set())
    assert read_naacl(path) == [first, second]
    assert read_naacl(path, n_sentences=3) == [first, second, empty]
    assert read_naacl(path, sentence_ids=[7, 8, 9]) == [first, empty, second]
    with pytest.raises(UserError, match="expected 1"):
        read_naacl(path, n_sentences=1)
    with pytest.raises(UserError, match=r"\[9\]"):
        read_naacl(path, sentence_ids=[7])
    path.write_text("7 1 1 X\n")
    with pytest.raises(UserError, match="line 1"):
        read_naacl(path)


def test_aer_hand_computed_cases():
    sure = [{(0, 0), (1, 1)}]
    possible = [{(0, 0), (1, 1), (1, 2)}]
    perfect = aer(sure, sure, possible)
    assert perfect == {"precision": 1.0, "recall": 1.0, "aer": 0.0, "f1": 1.0}

    wrong = aer([{(2, 0), (0, 1)}], sure, possible)
    assert wrong == {"precision": 0.0, "recall": 0.0, "aer": 1.0, "f1": 0.0}

    # |A| = 3, |S| = 2, |A n S| = 1, |A n P| = 2
    mixed = aer([{(0, 0), (1, 2), (2, 2)}], sure, possible)
    assert mixed["precision"] == pytest.approx(2 / 3)
    assert mixed["recall"] == pytest.approx(1 / 2)
    assert mixed["aer"] == pytest.approx(1 - 3 / 5)
    assert mixed["f1"] == pytest.approx(4 / 7)


def test_aer_is_corpus_level_not_a_mean_over_sentences():
    hyp = [{(0, 0)}, {(0, 1), (1, 1)}]
    sure = [{(0, 0)}, {(1, 1), (2, 2)}]
    # Per sentence: AER 0 and 0.5 (mean 0.25); pooled counts: 1 - (2 + 2) / (3 + 3).
    assert aer(hyp, sure, sure)["aer"] == pytest.approx(1 / 3)


def test_aer_edge_cases_and_possible_superset():
    empty_hyp = aer([set()], [{(0, 0)}], [{(0, 0)}])
    assert empty_hyp == {"precision": 1.0, "recall": 0.0, "aer": 1.0, "f1": 0.0}
    nothing = aer([set()], [set()], [set()])
    assert nothing == {"precision": 1.0, "recall": 1.0, "aer": 0.0, "f1": 1.0}
    # Gold with no sure links: AER = 1 - precision against P.
    only_possible = aer([{(0, 0), (1, 1)}], [set()], [{(0, 0)}])
    assert only_possible["aer"] == pytest.approx(0.5) and only_possible["recall"] == 1.0
    # P given without the sure links (NAACL's disjoint S/P) scores as P u S.
    hyp, sure, p_only = [{(0, 0), (1, 2)}], [{(0, 0), (1, 1)}], [{(1, 2)}]
    assert aer(hyp, sure, p_only) == aer(hyp, sure, [sure[0] | p_only[0]])
    assert aer(hyp, sure, p_only)["precision"] == 1.0
    with pytest.raises(ValueError, match="same number of sentences"):
        aer([set()], [set(), set()], [set(), set()])


def test_select_layer_heads_averages_the_chosen_heads():
    torch.manual_seed(0)
    cross = torch.rand(2, 3, 4, 5)  # (L, H, T, S)
    torch.testing.assert_close(select_layer_heads(cross), cross[1].mean(0))
    torch.testing.assert_close(select_layer_heads(cross, layer=-2), cross[0].mean(0))
    torch.testing.assert_close(
        select_layer_heads(cross, layer=0, heads=[0, 2]), (cross[0, 0] + cross[0, 2]) / 2
    )
    with pytest.raises(ValueError, match="L, H, T, S"):
        select_layer_heads(cross[0])


def test_best_layer_by_aer_picks_the_lowest():
    sure = [{(0, 0), (1, 1)}, {(0, 1)}]
    possible = sure
    per_layer = [
        [{(1, 0)}, {(1, 1)}],  # all wrong
        [{(0, 0), (1, 1)}, {(0, 1)}],  # perfect
        [{(0, 0)}, {(0, 1)}],  # partial
    ]
    assert best_layer_by_aer(per_layer, sure, possible) == 1
    assert best_layer_by_aer([per_layer[2], per_layer[2]], sure, possible) == 0  # ties: first
    with pytest.raises(ValueError, match="no layers"):
        best_layer_by_aer([], sure, possible)


@pytest.mark.skipif(not HANSARDS.is_dir(), reason=f"gold Hansards trial data absent: {HANSARDS}")
def test_hansards_trial_gold_files_agree():
    naacl = read_naacl(HANSARDS / "trial.wa.nonullalign")
    pharaoh = read_pharaoh(HANSARDS / "trial.enfr.pharaoh.talp")
    assert len(naacl) == len(pharaoh) == 37
    assert naacl == pharaoh
    assert sum(len(s) for s, _ in naacl) == 338
    assert sum(len(p - s) for s, p in naacl) == 1446
    assert sum(len(p) for _, p in naacl) == 1784
    # 0-based links must index the tokenized sentences (English = i, French = j).
    english = (HANSARDS / "trial.en.utf8.txt").read_text(encoding="utf-8").splitlines()
    french = (HANSARDS / "trial.fr.utf8.txt").read_text(encoding="utf-8").splitlines()
    for (_, possible), en, fr in zip(naacl, english, french, strict=True):
        assert max(i for i, _ in possible) < len(en.split())
        assert max(j for _, j in possible) < len(fr.split())
    # Sure links as the hypothesis: perfect recall, precision 1 as S is inside P.
    scores = aer([s for s, _ in naacl], [s for s, _ in naacl], [p for _, p in naacl])
    assert scores["aer"] == 0.0


def test_grow_diag_final_and_grows_along_the_union_then_adds_isolated_links():
    # forward has (3, 0): in the union but touching no grown link, and target 0 is taken;
    # (4, 4) is isolated with both words unaligned, so final-and adds it.
    a_st = {(0, 0), (1, 1), (3, 0), (4, 4)}
    a_ts = {(0, 0), (2, 2)}  # reverse model's (j, i); symmetric here
    assert symmetrize(a_st, a_ts, "intersection") == {(0, 0)}
    assert symmetrize(a_st, a_ts, "grow-diag-final-and") == {(0, 0), (1, 1), (2, 2), (4, 4)}
    # A neighbour whose two words are both already aligned is not grown into.
    a_st, a_ts = {(0, 0), (1, 1), (0, 1)}, {(0, 0), (1, 1)}
    assert symmetrize(a_st, a_ts, "grow-diag-final-and") == {(0, 0), (1, 1)}


def test_shift_reading_aligns_each_token_by_the_step_that_reads_it():
    # Forced attention (L=1, H=1, T+1=3, S=2): row 0 reads BOS, row 1 reads target piece 0,
    # row 2 reads target piece 1 and predicts EOS.
    cross = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]]])
    src, tgt = ["\u2581a", "\u2581b"], ["\u2581x", "\u2581y", "</s>"]
    predict = word_scores(cross, src, tgt, Readout("predict", 0))
    shift = word_scores(cross, src, tgt, Readout("shift", 0))
    assert hard_alignment(predict) == {(0, 0), (1, 1)}  # x <- row 0, y <- row 1
    assert hard_alignment(shift) == {(1, 0), (0, 1)}  # x <- row 1, y <- row 2
    with pytest.raises(ValueError, match="predict, shift"):
        Readout("later", 0)


def test_the_stored_readout_applies_unless_a_setting_overrides_it():
    assert resolve_readout(None) == Readout("predict", -1)  # trained without a gold set
    chosen = Readout("shift", 1, aer=0.3)
    checkpoint = {"alignment_readout": chosen.to_state()}
    assert Readout.stored(checkpoint) == chosen and Readout.stored({}) is None
    assert resolve_readout(chosen) == chosen
    assert resolve_readout(chosen, layer=0) == Readout("shift", 0)
    assert resolve_readout(chosen, reading="predict") == Readout("predict", 1)


def test_the_reading_and_layer_with_the_lowest_dev_aer_are_chosen(
    monkeypatch: pytest.MonkeyPatch,
):
    # One pair "a b" -> "x y" with gold x-a, y-b and a fixed fake forced attention
    # (L=2, H=1, T+1=3, S=3: two words and the NULL position). Layer 0 predicts the
    # crossed links, layer 1 the gold ones; the shifted rows of layer 0 the gold ones.
    cross = torch.tensor(
        [
            [[[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]],
            [[[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]]],
        ]
    )
    monkeypatch.setattr(alignment_eval, "forced_attention", lambda *args, **kw: [cross])
    monkeypatch.setattr(alignment_eval, "scorable", lambda *args: True)
    tokenizer = FakeTokenizer(["\u2581a", "\u2581b", "</s>"], ["\u2581x", "\u2581y"])
    gold = GoldSet(["a b"], ["x y"], [{(0, 0), (1, 1)}], [{(0, 0), (1, 1)}])
    results = score_readouts(None, tokenizer, gold, torch.device("cpu"))
    aer = {(r.readout.reading, r.readout.layer, r.readout.null): r.scores["aer"] for r in results}
    assert len(results) == 2 * 2 * 2  # readings x NULL treatments x layers (one head)
    assert aer["predict", 0, "unaligned"] == 1.0 and aer["predict", 1, "unaligned"] == 0.0
    assert aer["shift", 0, "unaligned"] == 0.0 and aer["shift", 1, "unaligned"] == 1.0
    # shifted, layer 1 sends y mostly to NULL: unaligned it misses y, dropped it links y-b
    assert aer["shift", 1, "dropped"] == 0.5
    assert best_readout(results).readout == Readout("predict", 1, aer=0.0)  # first of ties


class FakeTokenizer:
    """Pieces given by hand; encoding returns placeholders of the right length."""

    def __init__(self, src_pieces: list[str], tgt_pieces: list[str]) -> None:
        self.src, self.tgt = src_pieces, tgt_pieces

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return [list(range(len(self.src))) for _ in texts]

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        return [list(range(len(self.tgt))) for _ in texts]

    def src_pieces(self, ids: list[int]) -> list[str]:
        return self.src

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return self.tgt


def test_null_position_is_unaligned_and_never_linked() -> None:
    from seq2seq.alignment import null_word_scores, word_links

    src = ["▁a", "▁b", "</s>"]  # two words and the NULL position
    tgt = ["▁x", "▁y", "▁z", "</s>"]
    attn = np.array(
        [
            [0.7, 0.1, 0.2],  # x -> a
            [0.1, 0.2, 0.7],  # y -> NULL: unaligned
            [0.3, 0.4, 0.3],  # z -> b
            [0.0, 0.0, 1.0],  # the EOS step (not a word)
        ]
    )
    np.testing.assert_allclose(attn.sum(axis=1), 1.0)  # real positions + NULL sum to 1
    scores = null_word_scores(attn, tgt, src)
    assert scores.shape == (3, 3)
    np.testing.assert_allclose(scores[:, -1], [0.2, 0.7, 0.3])
    assert hard_alignment(scores, null=True) == {(0, 0), (1, 2)}
    assert hard_alignment(scores, threshold=0.25, null=True) == {(0, 0), (1, 2), (0, 2)}
    assert word_links(attn, tgt, src) == {(0, 0), (1, 2)}
    # NULL dropped and rows renormalised: y then links to b
    assert word_links(attn, tgt, src, use_null=False) == {(0, 0), (1, 1), (1, 2)}
    with pytest.raises(ValueError, match="NULL"):
        null_word_scores(attn[:, :2], tgt, src[:2])
