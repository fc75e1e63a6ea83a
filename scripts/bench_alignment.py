"""Benchmark how well attention aligns words: AER against gold links, per decoder layer.

Each checkpoint force-decodes the gold reference (teacher forcing); the cross-attention of
each layer (heads averaged, BOS/EOS dropped and rows renormalised, subwords merged into
the gold's space-separated words) links every target word to its argmax source word,
scored against the gold sure/possible links (Och & Ney AER, precision, recall, F1).

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

Each checkpoint is read twice (``reading``): "predict", the attention of the step that
predicts a target token (what training reports as ``valid/aer``), and "shift" (shift-att,
Chen et al. 2020), the attention of the step that reads it as decoder input. A model
whose sources end in the NULL position (``data.tokenizer.null_position``) is read both
with attention to NULL leaving a word unaligned ("unaligned") and with NULL dropped and
rows renormalised ("dropped"); older models have none.

Prints one markdown table: a row per checkpoint, gold set, reading and layer; ``*`` marks
the layer with the lowest AER.

    PYTHONPATH=. python scripts/bench_alignment.py \
        --synthetic runs/synth_rnn runs/synth_transformer \
        --hansards runs/tatoeba_rnn runs/multi30k_transformer --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from seq2seq.alignment_eval import (
    READINGS,
    AlignmentScores,
    GoldSet,
    evaluate_alignment,
    load_gold_set,
)
from seq2seq.data.synthetic import write_corpus
from seq2seq.errors import UserError
from seq2seq.inference import Translator

HANSARDS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "alignment" / "hansards-enfr-trial"
)
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
    name: str, checkpoint: str, translator: Translator, scores: AlignmentScores, null: str
) -> list[str]:
    """Markdown rows, one per layer, the best layer starred."""
    family = translator.checkpoint["model_config"]["family"]
    rows = []
    for layer, s in enumerate(scores.layers):
        mark = "*" if layer == scores.layer and len(scores.layers) > 1 else ""
        rows.append(
            f"| {name} | {checkpoint} | {family} | {scores.reading} | {null} | {layer}{mark} | "
            f"{s['aer']:.3f} | "
            f"{s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | "
            f"{scores.sentences} ({scores.skipped}) |"
        )
    return rows


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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not (args.synthetic or args.hansards):
        parser.error("give checkpoints with --synthetic and/or --hansards")
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
            # a model with a NULL position is read both ways: NULL = unaligned, NULL dropped
            nulls = (True, False) if translator.tokenizer.null_position else (False,)
            for reading, use_null in itertools.product(READINGS, nulls):
                start = time.perf_counter()
                scores = evaluate_alignment(
                    translator.model,
                    translator.tokenizer,
                    gold,
                    device,
                    batch_size=args.batch_size,
                    reading=reading,
                    use_null=use_null,
                )
                seconds = time.perf_counter() - start
                took = f"{len(gold)} sentences in {seconds:.1f} s"
                print(f"{name} / {ckpt} / {reading}: {took}", file=sys.stderr)
                null = ("unaligned" if use_null else "dropped") if nulls[0] else "none"
                rows += table_rows(name, ckpt, translator, scores, null)
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
