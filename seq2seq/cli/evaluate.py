"""seq2seq-evaluate: score a checkpoint on named splits or on your own files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from seq2seq.alignment_eval import (
    GoldSet,
    best_readout,
    gold_from_config,
    hypothesis_alignments,
    score_readouts,
)
from seq2seq.cli.common import CONFIG_PATH, report_user_errors, run_command
from seq2seq.config import DataConfig, EvaluateAppConfig
from seq2seq.config_checks import check_config, layer_problems, raise_problems
from seq2seq.data.corpora import ParallelCorpus, has_files, load_split, read_parallel
from seq2seq.engines import open_translator, require_native
from seq2seq.errors import UserError
from seq2seq.evaluation import corpus_scores, scores_to_dict
from seq2seq.export.engine import CTranslate2Translator
from seq2seq.inference import Translator
from seq2seq.readout import Readout, resolve_readout
from seq2seq.symmetrization import check_directions, symmetrized_scores
from seq2seq.textio import check_output, write_text
from seq2seq.training.averaging import average_checkpoints, last_step_checkpoints

log = logging.getLogger(__name__)


def test_sets(
    cfg: DictConfig, translator: Translator | CTranslate2Translator
) -> dict[str, ParallelCorpus]:
    """The corpora to score: ``src_file``/``ref_file``, else named splits of the training data."""
    data = cfg.data
    if data.src_file or data.ref_file:
        if not (data.src_file and data.ref_file):
            raise UserError("Give both data.src_file=... and data.ref_file=..., or neither.")
        return {Path(data.src_file).name: read_parallel(data.src_file, data.ref_file)}
    trained = OmegaConf.merge(
        OmegaConf.structured(DataConfig), translator.checkpoint["config"]["data"]
    )
    if data.root is not None:
        trained.root = data.root
    splits = list(data.splits) or ([data.split] if data.split else list(trained.test_splits))
    for split in splits:
        if trained.name == "files" and not has_files(trained, split):
            raise UserError(
                f"The checkpoint was trained with data=files and no {split} split files; score "
                f"your own files with data.src_file=... data.ref_file=..."
            )
    return {split: load_split(trained, split) for split in splits}


def evaluate(cfg: DictConfig, out_dir: Path) -> dict[str, dict]:
    """Decode every test set, write hypotheses and a metrics JSON, return the metrics."""
    check_config(cfg, EvaluateAppConfig)
    translator = open_translator(cfg.checkpoint, cfg.device, cfg.threads)
    if cfg.average_last > 1:
        model = require_native(translator, "average_last").model
        paths = last_step_checkpoints(cfg.checkpoint, cfg.average_last)
        model.load_state_dict(average_checkpoints(paths)["model"])
        log.info("averaged the weights of %s", ", ".join(p.name for p in paths))
    readout = Readout()  # how the attention is read: the checkpoint's choice unless set
    if cfg.alignment_format is not None:
        native = require_native(translator, "alignment_format")
        model_config = native.checkpoint["model_config"]
        raise_problems(layer_problems(cfg.alignment_layer, "alignment_layer", model_config))
        stored = Readout.stored(native.checkpoint)
        readout = resolve_readout(stored, cfg.alignment_layer, cfg.alignment_reading)
    tokenizer = translator.tokenizer
    gold = gold_from_config(cfg, tokenizer, prefix="")  # checked before the long decoding
    if gold is not None:
        translator = require_native(translator, "align_gold")
    reverse = None
    if cfg.reverse_checkpoint is not None:
        if gold is None:
            raise UserError(
                "reverse_checkpoint is scored on a gold set: also give align_gold=<links> "
                "align_src=<source> align_tgt=<target>."
            )
        reverse = Translator.from_checkpoint(cfg.reverse_checkpoint, translator.device)
        check_directions(translator, reverse)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = [p for p in (cfg.data.src_file, cfg.data.ref_file) if p]
    results: dict[str, dict] = {}
    for name, corpus in test_sets(cfg, translator).items():
        for suffix in (".hyp.txt", ".align"):
            check_output("hypotheses", out_dir / f"{name}{suffix}", inputs)
        sources = translator.clip(tokenizer.encode_src(corpus.src))
        need_weights = cfg.alignment_format is not None
        nbests = translator.decode(sources, cfg.decode, need_weights)
        hypotheses = [tokenizer.decode_tgt(hyps[0].tokens) for hyps in nbests]
        write_text("hypotheses", out_dir / f"{name}.hyp.txt", "".join(h + "\n" for h in hypotheses))
        if cfg.alignment_format == "pharaoh":  # line i: links between source i and hypothesis i
            links = hypothesis_alignments(sources, nbests, tokenizer, readout)
            text = "".join(line + "\n" for line in links)
            write_text("alignments", out_dir / f"{name}.align", text)
        scores = corpus_scores(hypotheses, corpus.tgt)
        results[name] = {"sentences": len(hypotheses), **scores_to_dict(scores)}
        for score in scores.values():
            print(f"{name}\t{score.name.upper()} {score.score:.2f}\t{score.signature}")
    summary = {
        "checkpoint": str(cfg.checkpoint),
        "average_last": cfg.average_last,  # the scores are of averaged weights when > 1
        "decode": OmegaConf.to_container(cfg.decode),
        "results": results,
    }
    if gold is not None:
        summary["alignment"] = alignment_summary(translator, gold, translator.device)
    if reverse is not None and gold is not None:
        summary["symmetrized"] = symmetrized_summary(translator, reverse, gold, translator.device)
    write_text("metrics", out_dir / "metrics.json", json.dumps(summary, indent=2))
    print(f"hypotheses and metrics.json written to {out_dir}")
    return results


def alignment_summary(translator: Translator, gold: GoldSet, device: torch.device) -> dict:
    """AER of every readout of the attention on the gold set; the best of each reading and
    NULL treatment printed, with the one chosen in training."""
    results = score_readouts(translator.model, translator.tokenizer, gold, device)
    stored = Readout.stored(translator.checkpoint)
    groups = {(r.readout.reading, r.readout.null) for r in results}
    for reading, null in sorted(groups):
        best = best_readout(
            [r for r in results if (r.readout.reading, r.readout.null) == (reading, null)]
        )
        s = best.scores
        print(
            f"alignment\tAER {s['aer']:.3f}  P {s['precision']:.3f}  R {s['recall']:.3f}  "
            f"F1 {s['f1']:.3f}\t{best.readout.describe()}"
        )
    best = best_readout(results)
    print(f"alignment\t{best.sentences} sentences scored, {best.skipped} skipped")
    if stored is not None:
        dev = "" if stored.aer is None else f" (dev AER {stored.aer:.3f})"
        print(f"alignment chosen in training: {stored.describe()}{dev}")
    return {
        "sentences": best.sentences,
        "skipped": best.skipped,
        "best": {**best.readout.to_state(), **best.scores},
        "readouts": [{**r.readout.to_state(), **r.scores} for r in results],
        "chosen_in_training": None if stored is None else stored.to_state(),
    }


def symmetrized_summary(
    forward: Translator, reverse: Translator, gold: GoldSet, device: torch.device
) -> dict:
    """AER of each direction and of their merges on the gold set, printed."""
    results = symmetrized_scores(forward, reverse, gold, device)
    for name, s in results.items():
        if name != "sentences":
            print(
                f"alignment {name}\tAER {s['aer']:.3f}  P {s['precision']:.3f}  "
                f"R {s['recall']:.3f}  F1 {s['f1']:.3f}"
            )
    return results


@hydra.main(config_path=CONFIG_PATH, config_name="evaluate", version_base="1.3")
@report_user_errors
def hydra_main(cfg: DictConfig) -> None:
    """Evaluate into the Hydra run directory."""
    evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    """Entry point of ``seq2seq-evaluate``."""
    run_command(hydra_main)


if __name__ == "__main__":
    main()
