"""Benchmark the prepared-data path at growing corpus sizes (not a test).

For each size N it writes a de-en corpus of N pairs, each two random Multi30k training
pairs joined (``--work``, never the repository), then measures in fresh processes:

- cold ``seq2seq-prepare``: wall time and peak RSS (``/usr/bin/time``);
- warm start: seconds from launching ``seq2seq-train`` (data prepared) to its first step;
- training RSS after ``--steps`` steps (the process's VmRSS when step N is logged), and
  the model's consumption in batches/s between step 1 and step N;
- the loader alone (DataLoader over the memory-mapped shards): batches/s.

Results go to ``--json``; ``--plot`` draws peak RSS and prepare time against size.

    python scripts/bench_data.py --sizes 100000 1000000 --work /work/tmp-12/bench \\
        --json /work/tmp-12/bench/results.json --plot docs/images/data_bench.png
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MULTI30K = Path("/work/shared/data/multi30k")
BIN = Path(sys.executable).parent


def write_corpus(directory: Path, pairs: int, seed: int = 0) -> dict[str, str]:
    """``pairs`` joined Multi30k de-en training pairs as train.de / train.en; the paths."""
    de, en = (
        [line.strip() for line in gzip.open(MULTI30K / f"train.{x}.gz", "rt")]
        for x in "de en".split()
    )
    rng = random.Random(seed)
    paths = {"de": directory / "train.de", "en": directory / "train.en"}
    if not all(p.is_file() for p in paths.values()):
        directory.mkdir(parents=True, exist_ok=True)
        with open(paths["de"], "w") as out_de, open(paths["en"], "w") as out_en:
            for _ in range(pairs):
                a, b = rng.randrange(len(de)), rng.randrange(len(de))
                out_de.write(f"{de[a]} {de[b]}\n")
                out_en.write(f"{en[a]} {en[b]}\n")
    return {side: str(path) for side, path in paths.items()}


def data_overrides(files: dict[str, str], cache: Path) -> list[str]:
    """The data section shared by seq2seq-prepare and seq2seq-train."""
    return [
        "data=files",
        "data.src=de",
        "data.tgt=en",
        f"data.train_src={files['de']}",
        f"data.train_tgt={files['en']}",
        f"data.valid_src={MULTI30K / 'val.de.gz'}",
        f"data.valid_tgt={MULTI30K / 'val.en.gz'}",
        "data.test_splits=[]",
        f"data.cache_dir={cache}",
    ]


def cold_prepare(overrides: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one ``seq2seq-prepare``."""
    command = ["/usr/bin/time", "-f", "TIME %e %M", str(BIN / "seq2seq-prepare"), *overrides]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall, rss_kb = re.search(r"TIME ([\d.]+) (\d+)", done.stderr).groups()  # type: ignore[union-attr]
    return {"prepare_s": float(wall), "prepare_rss_mb": int(rss_kb) / 1024}


def vm_rss_mb(pid: int) -> float:
    """Resident memory of a process, MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def train_run(overrides: list[str], run_dir: Path, steps: int) -> dict[str, float]:
    """First-step latency, RSS at step ``steps`` and steps/s of one ``seq2seq-train``."""
    command = [
        str(BIN / "seq2seq-train"),
        *overrides,
        "model=transformer",
        f"train.max_steps={steps}",
        f"train.valid_every={steps}",
        "train.log_every=1",
        "train.progress=false",
        "train.threads=1",
        "train.test_at_end=false",
        "valid.max_sentences=8",
        "valid.num_probes=0",
        f"hydra.run.dir={run_dir}",
    ]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    times: dict[int, float] = {}
    result: dict[str, float] = {}
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"\bstep (\d+) \|", line)
        if found and "valid" not in line:
            step = int(found.group(1))
            times[step] = time.monotonic() - started
            if step == steps:
                result["train_rss_mb"] = vm_rss_mb(process.pid)
    if process.wait() != 0 or 1 not in times or steps not in times:
        raise RuntimeError(f"seq2seq-train failed ({process.returncode}); see {run_dir}")
    result["first_step_s"] = times[1]
    result["model_batches_per_s"] = (steps - 1) / (times[steps] - times[1])
    return result


def loader_speed(overrides: list[str], batches: int) -> float:
    """Batches/s of the training DataLoader alone over the prepared shards."""
    from hydra import compose, initialize_config_module

    from seq2seq.config import register_configs
    from seq2seq.data.batching import make_loader
    from seq2seq.data.pipeline import prepare_data
    from seq2seq.data.sampler import TokenBatchSampler

    register_configs()
    with initialize_config_module(config_module="seq2seq.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    data = prepare_data(cfg.data, logging.getLogger("bench"))
    sampler = TokenBatchSampler(data.train.shards, cfg.data.batch_tokens, shuffle=True, seed=0)
    loader = make_loader(data.train, sampler, num_workers=0, pin_memory=False)
    count, started = 0, time.monotonic()
    while count < batches:  # epochs over a small corpus, as training would
        for _ in loader:
            count += 1
            if count == batches:
                break
    return batches / (time.monotonic() - started)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Peak RSS and prepare time against corpus size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["pairs"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(sizes, [r["prepare_rss_mb"] for r in results], "o-", label="prepare (peak)")
    left.plot(sizes, [r["train_rss_mb"] for r in results], "s-", label="training, step 200")
    left.set(xscale="log", xlabel="pairs", ylabel="RSS (MB)", title="memory")
    left.legend()
    right.plot(sizes, [r["prepare_s"] / 60 for r in results], "o-")
    right.set(xscale="log", xlabel="pairs", ylabel="minutes", title="cold preparation")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    """Run every size, print and save the results, draw the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    results = json.loads(args.json.read_text()) if args.json.is_file() else []
    for pairs in args.sizes:
        work = args.work / f"{pairs}"
        shutil.rmtree(work / "cache", ignore_errors=True)  # cold: no tokenizer, no shards
        overrides = data_overrides(write_corpus(work, pairs), work / "cache")
        row: dict[str, Any] = {"pairs": pairs, **cold_prepare(overrides)}
        row |= train_run(overrides, work / f"run-{time.time_ns()}", args.steps)
        row["loader_batches_per_s"] = loader_speed(overrides, 500)
        print(json.dumps(row), flush=True)
        results = [r for r in results if r["pairs"] != pairs] + [row]
        args.json.write_text(json.dumps(sorted(results, key=lambda r: r["pairs"]), indent=1))
    if args.plot:
        plot(sorted(results, key=lambda r: r["pairs"]), args.plot)


if __name__ == "__main__":
    main()
