"""Kill-and-resume soak: SIGKILL a real training K times at random moments, resume each time.

Every resume must succeed, and the final parameters must equal those of an uninterrupted
run of the same config: a kill loses the steps since the last checkpoint, and the resumed
run replays them deterministically.

    python scripts/soak_resume.py --kills 5 --seed 0
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from seq2seq.data.synthetic import write_corpus
from seq2seq.training.checkpoint import load_checkpoint

TRAIN = Path(sys.executable).parent / "seq2seq-train"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs during the run (K)")
    parser.add_argument("--steps", type=int, default=120, help="train.max_steps of the run")
    parser.add_argument("--valid-every", type=int, default=5, help="checkpoint every N steps")
    parser.add_argument("--model", choices=["rnn", "transformer"], default="rnn")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    parser.add_argument(
        "--max-delay",
        type=float,
        default=1.0,
        help="a kill comes up to this many seconds after a new checkpoint",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    return parser.parse_args()


def config(corpus: Path, work: Path, model: str, steps: int, valid_every: int) -> list[str]:
    """Overrides for a tiny model on the generated corpus, with dropout so RNG state matters."""
    data = [
        "data=files",
        f"data.cache_dir={work / 'cache'}",
        "data.tokenizer.vocab_size=100",
        "data.batch_tokens=1200",
        *(
            f"data.{split}_{side}={corpus / f'{split}.{side}'}"
            for split in ("train", "valid", "test")
            for side in ("src", "tgt")
        ),
    ]
    models = {
        "rnn": ["model=rnn", "model.emb_dim=32", "model.hidden_size=64", "model.attn_dim=32"],
        "transformer": [
            "model=transformer",
            "model.d_model=48",
            "model.heads=2",
            "model.enc_layers=2",
            "model.dec_layers=2",
            "model.ff_dim=96",
            "optim.warmup_steps=50",
        ],
    }
    train = [
        f"train.max_steps={steps}",
        f"train.valid_every={valid_every}",
        f"train.log_every={valid_every}",
        "train.progress=false",
        "train.threads=1",
        "train.seed=1",
        "train.patience=1000",
        "train.max_epochs=1000",
        "valid.num_probes=0",
        "valid.max_sentences=10",
    ]
    return [*data, *models[model], "model.dropout=0.1", "optim.lr=0.005", *train]


def start(overrides: list[str], run_dir: Path) -> subprocess.Popen:
    """``seq2seq-train`` in the background, resuming from the run directory's last.pt if any."""
    log = (run_dir.parent / f"{run_dir.name}.log").open("a")
    return subprocess.Popen(
        [str(TRAIN), *overrides, f"hydra.run.dir={run_dir}", "train.resume=auto"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def checkpointed_step(run_dir: Path) -> int:
    """The newest ``step_*.pt`` step in the run directory (0 if none)."""
    steps = [int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.pt")]
    return max(steps, default=0)


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts with the same keys."""
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def main() -> int:
    """Run the reference and the soak, print a summary; exit 1 if anything differs."""
    args = parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="soak_resume_"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus"
    write_corpus(corpus, {"train": 400, "valid": 20, "test": 20}, seed=0)
    overrides = config(corpus, work, args.model, args.steps, args.valid_every)
    rng = random.Random(args.seed)
    began = time.monotonic()

    reference = work / "reference"
    if start(overrides, reference).wait() != 0:
        print(f"the uninterrupted run failed; see {reference}.log")
        return 1

    soak = work / "soak"
    kills, resumes, failures = 0, 0, []
    process = start(overrides, soak)
    while kills < args.kills:
        # Let the run make new progress, then kill it at a random moment after that.
        seen = checkpointed_step(soak)
        while process.poll() is None and checkpointed_step(soak) <= seen:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, args.max_delay))
        if process.poll() is not None:
            break  # finished before the kill
        process.kill()
        process.wait()
        kills += 1
        try:
            step = load_checkpoint(soak / "checkpoints" / "last.pt")["train_state"]["step"]
        except Exception as err:  # noqa: BLE001 - any failure to load is what the soak reports
            failures.append(f"kill {kills}: last.pt unloadable: {err}")
            break
        print(f"kill {kills}: SIGKILL with last.pt at step {step}", flush=True)
        process = start(overrides, soak)
        resumes += 1
    returncode = process.wait()
    if returncode != 0:
        failures.append(f"the last resumed run exited with {returncode}; see {soak}.log")

    diff = float("nan")
    if not failures:
        a = load_checkpoint(reference / "checkpoints" / "last.pt")
        b = load_checkpoint(soak / "checkpoints" / "last.pt")
        diff = max_abs_diff(a["model"], b["model"])
        if a["train_state"] != b["train_state"]:
            failures.append(f"train state differs: {a['train_state']} vs {b['train_state']}")
        lr_a = a["optimizer"]["param_groups"][0]["lr"]
        lr_b = b["optimizer"]["param_groups"][0]["lr"]
        if lr_a != lr_b:
            failures.append(f"learning rate differs: {lr_a} vs {lr_b}")
        if diff != 0.0:
            failures.append(f"parameters differ by up to {diff:.3g}")
    resumed_ok = resumes if returncode == 0 else resumes - 1

    print(
        f"model {args.model}, {args.steps} steps, checkpoint every {args.valid_every}, "
        f"seed {args.seed}, work dir {work}"
    )
    print(f"kills: {kills}/{args.kills}, resumes succeeded: {resumed_ok}/{resumes}")
    print(f"max abs parameter difference vs uninterrupted run: {diff:.3g}")
    print(f"wall time: {time.monotonic() - began:.0f} s")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures and kills == args.kills else "FAIL")
    return 0 if not failures and kills == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
