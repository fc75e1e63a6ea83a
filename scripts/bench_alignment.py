"""Benchmark how well attention aligns words: AER against gold links, per way of reading it.

Each checkpoint force-decodes the gold reference (teacher forcing); the cross-attention
(subwords merged into the gold's space-separated words) links every target word to its
argmax source word, scored against the gold sure/possible links (Och & Ney AER,
precision, recall, F1).

Two gold sets:

- ``--synthetic CKPT ...``: checkpoints trained on the generated corpus
  (seq2seq.data.synthetic), scored on its test split: known word mapping with reordering,
  exact gold. The corpus is regenerated as the tests make it (train 3,000 / valid 100 /
  test 100, seed 0) unless ``--synthetic-dir`` names a ``write_corpus`` directory.
- ``--hansards CKPT ...``: English→French checkpoints on the Hansards trial set (37
  sentences of Canadian parliament debates, lowercased and tokenised, 338 sure and 1,784
  possible links). Models trained on everyday sentences or image captions meet a domain
  and style they never saw; sentences whose SentencePiece words do not match the gold
  words are skipped and counted.

Each checkpoint is read every way a :class:`~seq2seq.readout.Readout` can read it: the
step ("predict", the attention of the step that predicts a target token; "shift",
shift-att of Chen et al. 2020, the step that reads it as decoder input), what attention
to the NULL position means ("unaligned", or "dropped" with rows renormalised over the
real words; the same for older models without one), the layer, and the heads averaged
or one head. The table has every head-averaged layer, then the best readout of all
("(best)") and the one training stored by dev AER ("(chosen in training)").

``--eflomal`` adds a statistical aligner as an anchor (scripts/eflomal_anchor.py; an
optional dependency: ``pip install eflomal`` or ``pip install -e '.[align]'``): eflomal
aligns the Hansards trial text (``--eflomal-repeat`` copies of it, the first one scored)
together with the Tatoeba English-French training pairs (``--tatoeba-dir``), lowercased
and tokenised like the gold text, never seeing the gold links. Its forward and reverse
links and their intersection, union and grow-diag-final-and are rows of family
"eflomal"; no checkpoint is needed for them.

Prints one markdown table: rows per checkpoint and gold set as above, then eflomal's.

    PYTHONPATH=. python scripts/bench_alignment.py \
        --synthetic runs/synth_rnn runs/synth_transformer \
        --hansards runs/tatoeba_rnn runs/multi30k_transformer --threads 2 --eflomal
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch
from eflomal_anchor import anchor_scores, normalise, require_eflomal  # scripts/, beside this

from seq2seq.alignment_eval import (
    GoldSet,
    ReadoutScores,
    best_readout,
    load_gold_set,
    score_readouts,
)
from seq2seq.config import DataConfig
from seq2seq.data.corpora import load_split
from seq2seq.data.synthetic import write_corpus
from seq2seq.errors import UserError
from seq2seq.inference import Translator
from seq2seq.readout import Readout

HANSARDS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "alignment" / "hansards-enfr-trial"
)
TATOEBA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba-eng-fra"
SYNTHETIC_SIZES = {"train": 3000, "valid": 100, "test": 100}  # as tests/conftest.py writes it


def synthetic_gold(directory: Path | None, scratch: Path) -> GoldSet:
    """The generated corpus' test split with its gold links (generated into ``scratch``)."""
    if directory is None:
        directory = scratch / "synthetic"
        write_corpus(directory, SYNTHETIC_SIZES, seed=0)
    return load_gold_set(directory / "test.align", directory / "test.src", directory / "test.tgt")


def hansards_gold(directory: Path) -> GoldSet:
    """The Hansards English-French trial set with its NAACL sure/possible links."""
    if not directory.is_dir():
        raise UserError(f"Hansards trial set not found at {directory}; pass --hansards-dir.")
    return load_gold_set(
        directory / "trial.wa.nonullalign",
        directory / "trial.en.utf8.txt",
        directory / "trial.fr.utf8.txt",
    )


def table_rows(
    name: str, checkpoint: str, translator: Translator, results: list[ReadoutScores]
) -> list[str]:
    """Markdown rows: every reading, NULL treatment and layer with its heads averaged, then
    the best readout of all (single heads included) and the one stored in training."""
    family = translator.checkpoint["model_config"]["family"]
    layers = 1 + max(r.readout.layer for r in results)
    stored = Readout.stored(translator.checkpoint)
    picks = [(r, "") for r in results if r.readout.head is None]
    picks.append((best_readout(results), " (best)"))
    if stored is not None:
        same = [r for r in results if _same(r.readout, stored, layers)]
        picks += [(r, " (chosen in training)") for r in same]
    rows = []
    for r, note in picks:
        s, out = r.scores, r.readout
        where = f"{out.layer}" + ("" if out.head is None else f", head {out.head}") + note
        rows.append(
            f"| {name} | {checkpoint} | {family} | {out.reading} | {out.null} | {where} | "
            f"{s['aer']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | "
            f"{r.sentences} ({r.skipped}) |"
        )
    return rows


def _same(a: Readout, b: Readout, layers: int) -> bool:
    """Whether two readouts read the same attention (negative layers counted from the top)."""
    key = (a.reading, a.layer % layers, a.head, a.null)
    return key == (b.reading, b.layer % layers, b.head, b.null)


def eflomal_rows(hansards: Path, tatoeba: Path, repeat: int) -> list[str]:
    """Markdown rows of eflomal's link sets on the Hansards trial set, Tatoeba as extra text."""
    gold = hansards_gold(hansards)
    extra = load_split(DataConfig(name="tatoeba", root=str(tatoeba), src="en", tgt="fr"), "train")
    start = time.perf_counter()
    src, tgt = [normalise(s, "en") for s in extra.src], [normalise(t, "fr") for t in extra.tgt]
    scores = anchor_scores(gold, src, tgt, repeat)
    seconds = time.perf_counter() - start
    print(
        f"Hansards trial / eflomal: {len(gold) * repeat + len(src)} pairs in {seconds:.1f} s",
        file=sys.stderr,
    )
    name = f"eflomal {version('eflomal')}, gold text ×{repeat} + Tatoeba train ({len(src):,})"
    return [
        f"| Hansards trial | {name} | eflomal | {links} | unaligned | - | {s['aer']:.3f} | "
        f"{s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {len(gold)} (0) |"
        for links, s in scores.items()
    ]


def main() -> None:
    """Score every checkpoint on its gold set and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--synthetic", nargs="*", default=[], help="checkpoints trained on the generated corpus"
    )
    parser.add_argument(
        "--synthetic-dir", type=Path, help="a write_corpus directory (default: generate it)"
    )
    parser.add_argument("--hansards", nargs="*", default=[], help="English→French checkpoints")
    parser.add_argument("--hansards-dir", type=Path, default=HANSARDS)
    parser.add_argument(
        "--eflomal", action="store_true", help="score eflomal on the Hansards trial set too"
    )
    parser.add_argument(
        "--eflomal-repeat", type=int, default=1, help="copies of the gold text eflomal aligns"
    )
    parser.add_argument("--tatoeba-dir", type=Path, default=TATOEBA, help="eflomal's extra text")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not (args.synthetic or args.hansards or args.eflomal):
        parser.error("give checkpoints with --synthetic and/or --hansards, or --eflomal")
    if args.eflomal_repeat < 1:
        parser.error("--eflomal-repeat must be at least 1")
    if args.eflomal:
        require_eflomal()  # fail before the checkpoints are scored
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        jobs: list[tuple[str, GoldSet, str]] = []
        if args.synthetic:
            gold = synthetic_gold(args.synthetic_dir, Path(scratch))
            jobs += [("generated test", gold, ckpt) for ckpt in args.synthetic]
        if args.hansards:
            gold = hansards_gold(args.hansards_dir)
            jobs += [("Hansards trial", gold, ckpt) for ckpt in args.hansards]
        for name, gold, ckpt in jobs:
            translator = Translator.from_checkpoint(ckpt, device)
            start = time.perf_counter()
            model, tokenizer = translator.model, translator.tokenizer
            results = score_readouts(model, tokenizer, gold, device, args.batch_size)
            seconds = time.perf_counter() - start
            took = f"{len(results)} readouts of {len(gold)} sentences in {seconds:.1f} s"
            print(f"{name} / {ckpt}: {took}", file=sys.stderr)
            rows += table_rows(name, ckpt, translator, results)
    if args.eflomal:
        rows += eflomal_rows(args.hansards_dir, args.tatoeba_dir, args.eflomal_repeat)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"device {device}, threads {torch.get_num_threads()}\n"
    )
    columns = ["gold set", "checkpoint", "family", "reading", "NULL", "layer", "AER"]
    columns += ["precision", "recall", "F1"]
    print("| " + " | ".join([*columns, "scored (skipped)"]) + " |")
    print("|" + " --- |" * (len(columns) + 1))
    print("\n".join(rows))


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"error: {err}")
