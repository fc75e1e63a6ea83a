"""Attention learns word alignment: AER of tiny models on the generated corpus, valid/aer logged.

The generated corpus has a known word mapping with reordering (adjectives move after their
noun) and exact gold links in ``{split}.align``. Thresholds come from measured runs of
these tiny settings (300 steps, ``tiny_overrides``), best checkpoint, test split:

- RNN (Bahdanau): AER 0.08-0.32 over train.seed=1..7 (seed 1, used here: 0.32); the misses
  are mostly determiners, which the decoder predicts from its state. Untrained: 0.84.
- Transformer, best layer (heads averaged): 0.003-0.037 over train.seed=1..6 (seed 1:
  0.036); last layer 0.007-0.08. Untrained: 0.81-0.84.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.alignment import aer, parse_pharaoh, read_pharaoh
from seq2seq.alignment_eval import (
    GoldSet,
    evaluate_alignment,
    gold_from_config,
    load_gold_set,
    read_gold,
    scorable,
)
from seq2seq.cli.evaluate import evaluate
from seq2seq.config import ValidConfig
from seq2seq.errors import UserError
from seq2seq.inference import Translator
from seq2seq.models.build import build_model
from seq2seq.readout import NULL_READINGS, READINGS, Readout
from seq2seq.training.trainer import train
from tests.conftest import SHARED_DATA, compose_config, tiny_overrides

MAX_AER = {"rnn": 0.45, "transformer": 0.15}
CPU = torch.device("cpu")
HANSARDS = SHARED_DATA / "alignment" / "hansards-enfr-trial"


def gold_overrides(corpus: Path) -> list[str]:
    """Train with the validation split's gold links."""
    return [
        f"valid.align_gold={corpus / 'valid.align'}",
        f"valid.align_src={corpus / 'valid.src'}",
        f"valid.align_tgt={corpus / 'valid.tgt'}",
    ]


def split_gold(corpus: Path, split: str = "test") -> GoldSet:
    """A generated split with its gold links."""
    return load_gold_set(
        corpus / f"{split}.align", corpus / f"{split}.src", corpus / f"{split}.tgt"
    )


@pytest.fixture(scope="module", params=["rnn", "transformer"])
def trained(request: pytest.FixtureRequest, synthetic_dir: Path, tmp_path_factory) -> tuple:
    """One tiny training per family with gold configured, and its best checkpoint loaded."""
    work = tmp_path_factory.mktemp(f"align_{request.param}")
    overrides = tiny_overrides(synthetic_dir, work, request.param) + gold_overrides(synthetic_dir)
    run_dir = work / "run"
    metrics = train(compose_config("train", overrides), run_dir)
    translator = Translator.from_checkpoint(run_dir / "checkpoints" / "best.pt", CPU)
    return request.param, run_dir, metrics, translator


def test_attention_learns_the_alignment(trained, synthetic_dir: Path) -> None:
    family, _, _, translator = trained
    gold = split_gold(synthetic_dir)
    scores = evaluate_alignment(translator.model, translator.tokenizer, gold, CPU)
    assert (scores.sentences, scores.skipped) == (100, 0)
    assert scores.scores["aer"] < MAX_AER[family], scores.layers
    assert len(scores.layers) == (1 if family == "rnn" else 2)
    assert scores.scores["aer"] == min(s["aer"] for s in scores.layers)  # the best layer
    # The threshold is a real check: the same network untrained is far above it.
    config = translator.checkpoint["model_config"]
    tok = translator.tokenizer
    untrained = build_model(config, tok.src_vocab_size, tok.tgt_vocab_size, joint_vocab=tok.joint)
    baseline = evaluate_alignment(untrained, tok, gold, CPU)
    assert baseline.scores["aer"] > MAX_AER[family] + 0.3, baseline.layers


def test_a_fixed_layer_is_reported_when_asked(trained, synthetic_dir: Path) -> None:
    family, _, _, translator = trained
    gold = split_gold(synthetic_dir)
    scores = evaluate_alignment(translator.model, translator.tokenizer, gold, CPU, layer=-1)
    assert scores.layer == len(scores.layers) - 1
    assert scores.scores == scores.layers[-1]


def test_training_logs_valid_aer_and_gold_heatmaps(trained) -> None:
    family, run_dir, metrics, _ = trained
    events = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0}
    )
    events.Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    aer_events = events.Scalars("valid/aer")
    assert [e.step for e in aer_events] == [150, 300]  # at every validation
    assert all(0.0 <= e.value <= 1.0 for e in aer_events)
    assert metrics["valid_aer"] == pytest.approx(aer_events[-1].value)
    layers = 2 if family == "transformer" else 1
    per_layer = {
        f"valid/aer_{r}_{null}_layer{n}"
        for r in READINGS
        for null in NULL_READINGS
        for n in range(layers)
    }
    assert per_layer <= scalars and f"valid/aer_predict_dropped_layer{layers}" not in scalars
    # the checkpoint keeps the reading and layer of the lowest AER, for evaluate and translate
    stored = Readout.stored(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False))
    assert stored is not None and stored.aer == pytest.approx(aer_events[-1].value)
    assert stored.reading in READINGS and 0 <= stored.layer < layers
    assert {"alignment_gold/0", "alignment_gold/1"} <= images
    assert "alignment_gold/2" not in images  # valid.num_probes=2


def test_evaluate_writes_pharaoh_alignments_and_aer(
    trained, synthetic_dir: Path, tmp_path: Path
) -> None:
    family, run_dir, _, _ = trained
    corpus = synthetic_dir
    cfg = compose_config(
        "evaluate",
        [
            f"checkpoint={run_dir}",
            "decode.beam_size=2",
            "data.splits=[test]",
            "alignment_format=pharaoh",
            f"align_gold={corpus / 'test.align'}",
            f"align_src={corpus / 'test.src'}",
            f"align_tgt={corpus / 'test.tgt'}",
        ],
    )
    evaluate(cfg, tmp_path)
    lines = (tmp_path / "test.align").read_text(encoding="utf-8").splitlines()
    hyps = (tmp_path / "test.hyp.txt").read_text(encoding="utf-8").splitlines()
    refs = (corpus / "test.tgt").read_text(encoding="utf-8").splitlines()
    srcs = (corpus / "test.src").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(hyps) == 100
    aligned = 0
    for line, hyp, src in zip(lines, hyps, srcs, strict=True):
        sure, _ = parse_pharaoh(line)
        # one link per target word, unless its attention went to the NULL position
        assert len(sure) == len({j for _, j in sure}) and {j for _, j in sure} <= set(
            range(len(hyp.split()))
        )
        assert all(i < len(src.split()) for i, _ in sure)
        aligned += len(sure)
    assert aligned >= 0.8 * sum(len(hyp.split()) for hyp in hyps)
    # Where the hypothesis is the reference, its decoding links can be scored against gold.
    same = [k for k in range(100) if hyps[k] == refs[k]]
    assert len(same) > 50
    golds = read_pharaoh(corpus / "test.align")
    hyp_links = [parse_pharaoh(lines[k])[0] for k in same]
    gold_links = [golds[k][0] for k in same]
    decoded_aer = aer(hyp_links, gold_links, gold_links)["aer"]
    # The RNN's decoding attention uses the last layer like the forced one; the
    # Transformer's last layer is not always its best.
    assert decoded_aer < (MAX_AER["rnn"] if family == "rnn" else 0.3)
    # the stored readout applies unless overridden: the shifted step links other words
    shifted = compose_config(
        "evaluate",
        [
            f"checkpoint={run_dir}",
            "decode.beam_size=2",
            "data.splits=[test]",
            "alignment_format=pharaoh",
            "alignment_reading=shift",
        ],
    )
    evaluate(shifted, tmp_path / "shift")
    assert (tmp_path / "shift" / "test.align").read_text(encoding="utf-8").splitlines() != lines
    summary = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["alignment"]
    assert summary["sentences"] == 100 and summary["skipped"] == 0
    assert summary["best"]["aer"] < MAX_AER[family]
    assert summary["best"]["aer"] == min(r["aer"] for r in summary["readouts"])
    heads = 1 if family == "rnn" else 1 + 2  # heads averaged, then each of tiny's 2 heads
    assert len(summary["readouts"]) == 2 * 2 * (1 if family == "rnn" else 2) * heads


def test_evaluate_scores_both_directions_and_their_merges(
    trained, synthetic_dir: Path, tmp_path: Path
) -> None:
    family, run_dir, _, _ = trained
    if family != "transformer":
        pytest.skip("one family is enough for the merge; the RNN trains the same way")
    corpus = synthetic_dir
    swap = {".src": ".tgt", ".tgt": ".src"}
    overrides = [
        re.sub(r"\.(src|tgt)$", lambda m: swap[m.group(0)], o) if o.startswith("data.") else o
        for o in tiny_overrides(corpus, tmp_path / "reverse", family)
    ]
    assert f"data.train_src={corpus / 'train.tgt'}" in overrides
    overrides += ["data.src=tgt", "data.tgt=src"]  # the language names, swapped too
    reverse_dir = tmp_path / "reverse" / "run"
    train(compose_config("train", overrides), reverse_dir)
    gold = [f"align_gold={corpus / 'test.align'}", f"align_src={corpus / 'test.src'}"]
    gold.append(f"align_tgt={corpus / 'test.tgt'}")
    base = [f"checkpoint={run_dir}", "data.splits=[test]", *gold]
    cfg = compose_config("evaluate", [*base, f"reverse_checkpoint={reverse_dir}"])
    evaluate(cfg, tmp_path / "eval")
    merged = json.loads((tmp_path / "eval" / "metrics.json").read_text())["symmetrized"]
    assert merged["sentences"] == {"scored": 100, "skipped": 0}
    forward, reverse = merged["forward"], merged["reverse"]
    assert reverse["aer"] < 0.3, merged  # flipped back to (source, target): it agrees with gold
    inter, union, grown = merged["intersection"], merged["union"], merged["grow-diag-final-and"]
    assert inter["recall"] <= min(forward["recall"], reverse["recall"])
    assert union["recall"] >= max(forward["recall"], reverse["recall"])
    assert inter["recall"] <= grown["recall"] <= union["recall"]
    with pytest.raises(UserError, match="align_gold"):
        evaluate(
            compose_config("evaluate", base[:2] + [f"reverse_checkpoint={reverse_dir}"]), tmp_path
        )


def test_sentences_that_do_not_split_into_their_words_are_skipped(trained) -> None:
    _, _, _, translator = trained
    tok = translator.tokenizer
    # NFKC turns "´" into a space and an accent: SentencePiece sees one word more.
    assert not scorable(tok, "the dog´s car sees a cat", "le chien voit un chat")
    assert scorable(tok, "the dog sees a cat", "le chien voit un chat")
    assert not scorable(tok, "", "")
    links = {(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)}
    gold = GoldSet(
        ["the dog´s car sees a cat", "the dog sees a cat"],
        ["le chien voit un chat", "le chien voit un chat"],
        [links, links],
        [links, links],
    )
    scores = evaluate_alignment(translator.model, tok, gold, CPU)
    assert (scores.sentences, scores.skipped) == (1, 1)


def test_gold_format_is_detected_by_content(tmp_path: Path) -> None:
    pharaoh = tmp_path / "gold.pharaoh"
    pharaoh.write_text("0-0 1p1\n\n0-1-P 1-0\n", encoding="utf-8")
    naacl = tmp_path / "gold.naacl"
    naacl.write_text("7 1 1 S\n7 2 2 P\n9 1 2 P\n9 2 1\n", encoding="utf-8")
    assert read_gold(pharaoh, 3) == [
        ({(0, 0)}, {(0, 0), (1, 1)}),
        (set(), set()),
        ({(1, 0)}, {(0, 1), (1, 0)}),
    ]
    assert read_gold(naacl, 3) == [
        ({(0, 0)}, {(0, 0), (1, 1)}),
        ({(1, 0)}, {(0, 1), (1, 0)}),
        (set(), set()),
    ]
    with pytest.raises(UserError, match="alignments for 3 sentences but the text has 2"):
        read_gold(pharaoh, 2)
    with pytest.raises(UserError, match="not found"):
        read_gold(tmp_path / "missing", 1)


def test_gold_config_needs_all_three_files(tmp_path: Path) -> None:
    assert gold_from_config(ValidConfig(), tokenizer=None) is None  # type: ignore[arg-type]
    partial = ValidConfig(align_gold=str(tmp_path / "gold"))
    with pytest.raises(UserError, match="valid.align_src=<source>"):
        gold_from_config(partial, tokenizer=None)  # type: ignore[arg-type]
    (tmp_path / "src").write_text("a b\nc\n", encoding="utf-8")
    (tmp_path / "tgt").write_text("x y\n", encoding="utf-8")
    (tmp_path / "gold").write_text("0-0\n", encoding="utf-8")
    with pytest.raises(UserError, match="has 2 lines but"):
        load_gold_set(tmp_path / "gold", tmp_path / "src", tmp_path / "tgt")


@pytest.mark.skipif(not HANSARDS.is_dir(), reason=f"Hansards trial set not found at {HANSARDS}")
def test_hansards_gold_reads_the_same_in_both_formats() -> None:
    src, tgt = HANSARDS / "trial.en.utf8.txt", HANSARDS / "trial.fr.utf8.txt"
    naacl = load_gold_set(HANSARDS / "trial.wa.nonullalign", src, tgt)
    pharaoh = load_gold_set(HANSARDS / "trial.enfr.pharaoh.talp", src, tgt)
    assert len(naacl) == 37
    assert (naacl.sure, naacl.possible) == (pharaoh.sure, pharaoh.possible)
    for k in range(len(naacl)):  # every link inside its sentence
        n_src, n_tgt = len(naacl.src[k].split()), len(naacl.tgt[k].split())
        assert all(i < n_src and j < n_tgt for i, j in naacl.possible[k])
