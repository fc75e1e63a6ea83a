"""DDP on CPU (gloo): two ranks stay identical, equal one process, and only rank 0 writes.

Exact by construction: the sampler deals one shared batch order to the ranks
(``batches[rank::2]``), so with ``accum_steps=2`` step k of rank r runs the micro-batches
``4k + r`` and ``4k + 2 + r``. One process with ``accum_steps=4`` runs ``4k .. 4k + 3``
in that step: the same examples, the same loss normalisation (all target tokens of the
step), so the same update up to floating-point summation order.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seq2seq.data.pipeline import prepare_data
from seq2seq.training import validation
from seq2seq.training.distributed import init_distributed, shutdown_distributed
from seq2seq.training.trainer import Trainer
from tests.conftest import compose_config, tiny_overrides

STEPS = 3


def small_run(corpus: Path, work: Path, steps: int = STEPS) -> list[str]:
    """A few steps of the tiny Transformer, validating (and saving) only at the end."""
    return [
        *tiny_overrides(corpus, work, "transformer"),
        f"train.max_steps={steps}",
        f"train.valid_every={steps}",
        "train.log_every=1",
        "train.device=cpu",
        "optim.schedule=constant",  # full-size steps from the start, so weights move
        # Adam divides by sqrt(v) + eps: with the default 1e-9 a gradient that is zero in
        # exact arithmetic (e.g. the key bias under softmax) turns rounding noise into
        # full-size steps; a larger eps keeps noise noise and leaves real gradients alone.
        "optim.eps=1e-3",
        "valid.max_sentences=8",
        "valid.num_probes=0",
    ]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_worker(
    rank: int,
    world: int,
    port: int,
    overrides: list[str],
    work: str,
    timeout_s: float | None = None,
    slow_decoding_s: float = 0.0,
) -> None:
    """One rank: join the gloo group the way torchrun would, train, dump the parameters.

    ``timeout_s`` sets the group's collective timeout; ``slow_decoding_s`` makes every
    validation decoding call on this rank take at least that long.
    """
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    cfg = compose_config("train", overrides)
    if timeout_s is not None:  # init_distributed joins a group that already exists
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    if slow_decoding_s:
        decode = validation.decode_corpus

        def slow_decode(*args: Any) -> Any:
            time.sleep(slow_decoding_s)
            return decode(*args)

        validation.decode_corpus = slow_decode
    ctx, device = init_distributed("cpu")
    try:
        trainer = Trainer(cfg, Path(work) / f"run{rank}", ctx, device)
        trainer.run()
        torch.save(
            {"model": trainer.model.state_dict(), "step": trainer.state.step},
            Path(work) / f"params{rank}.pt",
        )
    finally:
        shutdown_distributed(ctx)


def train_single(overrides: list[str], run_dir: Path) -> dict[str, torch.Tensor]:
    """The same training in this process (no process group); its final parameters."""
    cfg = compose_config("train", overrides)
    ctx, device = init_distributed("cpu")
    trainer = Trainer(cfg, run_dir, ctx, device)
    trainer.run()
    return trainer.model.state_dict()


@pytest.fixture(scope="module")
def ddp_run(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two gloo ranks, accum_steps=2, STEPS steps; returns the work directory."""
    work = tmp_path_factory.mktemp("ddp")
    overrides = [*small_run(synthetic_dir, work), "train.accum_steps=2"]
    # Train and cache the tokenizer here, so the ranks only load it; and spawn, not fork:
    # SentencePiece's trainer threads crash in a child forked from a threaded parent.
    prepare_data(compose_config("train", overrides).data, logging.getLogger(__name__))
    mp.start_processes(
        ddp_worker, args=(2, free_port(), overrides, str(work)), nprocs=2, start_method="spawn"
    )
    return work


def test_ranks_hold_identical_parameters(ddp_run: Path) -> None:
    rank0 = torch.load(ddp_run / "params0.pt", weights_only=True)
    rank1 = torch.load(ddp_run / "params1.pt", weights_only=True)
    assert rank0["step"] == rank1["step"] == STEPS
    for name, value in rank0["model"].items():
        assert torch.equal(value, rank1["model"][name]), name


def test_ddp_equals_one_process_with_the_same_global_batch(
    ddp_run: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    overrides = [*small_run(synthetic_dir, ddp_run), "train.accum_steps=4"]
    single = train_single(overrides, tmp_path / "single")
    ddp = torch.load(ddp_run / "params0.pt", weights_only=True)["model"]
    # Sanity: training moved the weights far more than the tolerance below.
    initial = Trainer(
        compose_config("train", overrides), tmp_path / "init", *init_distributed("cpu")
    ).model.state_dict()
    moved = max((single[n] - initial[n]).abs().max().item() for n in single)
    assert moved > 1e-3
    for name, value in single.items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_only_rank_zero_writes(ddp_run: Path) -> None:
    rank0, rank1 = ddp_run / "run0", ddp_run / "run1"
    assert (rank0 / "checkpoints" / "last.pt").is_file()
    assert len(list((rank0 / "tensorboard").glob("events.out.tfevents.*"))) == 1
    written = [p for p in rank1.rglob("*") if p.is_file()] if rank1.exists() else []
    assert written == []


def test_torchrun_cli_resumes_under_ddp(synthetic_dir: Path, tmp_path: Path) -> None:
    """The real entry point: torchrun, 2 steps, then train.resume=auto to 4 steps."""
    run_dir = tmp_path / "run"

    def torchrun(steps: int) -> None:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "seq2seq.cli.train",
            *small_run(synthetic_dir, tmp_path, steps),
            f"hydra.run.dir={run_dir}",
            "train.resume=auto",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]

    torchrun(2)
    torchrun(4)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["train_state"]["step"] == 4
    # Each run's rank 0 wrote one event file; resumed logging starts after step 2.
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert (run_dir / "checkpoints" / "step_00000002.pt").is_file()


def spawn(overrides: list[str], work: Path, *extra: float) -> None:
    """Two gloo ranks of ``ddp_worker`` on a fresh port."""
    mp.start_processes(
        ddp_worker,
        args=(2, free_port(), overrides, str(work), *extra),
        nprocs=2,
        start_method="spawn",
    )


def test_a_resumed_ddp_run_with_dropout_equals_an_unbroken_one(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    """Each rank draws its own dropout masks (seed + rank); a resume restores each rank's own
    random state, so killing after step 2's checkpoint and resuming changes nothing."""
    steps = 4
    overrides = [
        *small_run(synthetic_dir, tmp_path, steps),
        "train.valid_every=2",
        "train.keep_last=5",
        "model.dropout=0.2",
    ]
    prepare_data(compose_config("train", overrides).data, logging.getLogger(__name__))
    spawn(overrides, tmp_path / "unbroken")
    checkpoint = tmp_path / "unbroken" / "run0" / "checkpoints" / "step_00000002.pt"
    saved = torch.load(checkpoint, weights_only=True)
    ranks = saved["rng_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])
    spawn([*overrides, f"train.resume={checkpoint}"], tmp_path / "resumed")

    unbroken = torch.load(tmp_path / "unbroken" / "params0.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "params0.pt", weights_only=True)
    assert unbroken["step"] == resumed["step"] == steps
    for name, value in unbroken["model"].items():
        assert torch.equal(resumed["model"][name], value), name


def test_a_validation_longer_than_the_collective_timeout(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    """Every rank decodes its share of the validation set: nobody waits in a collective for
    the whole validation, so one longer than the group's timeout does not kill the job."""
    timeout_s, decoding_s = 8.0, 12.0
    overrides = [*small_run(synthetic_dir, tmp_path, 2), "train.valid_every=2"]
    prepare_data(compose_config("train", overrides).data, logging.getLogger(__name__))
    spawn(overrides, tmp_path, timeout_s, decoding_s)
    for rank in (0, 1):
        assert torch.load(tmp_path / f"params{rank}.pt", weights_only=True)["step"] == 2
    metrics = json.loads((tmp_path / "run0" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["valid"]["valid_bleu"] >= 0.0


def test_sharded_validation_equals_one_process(ddp_run: Path, synthetic_dir: Path) -> None:
    """Rank 0's validation, gathered from both ranks' halves, scores every sentence."""
    last = torch.load(ddp_run / "run0" / "checkpoints" / "last.pt", weights_only=True)
    cfg = compose_config("train", [*small_run(synthetic_dir, ddp_run), "train.accum_steps=2"])
    trainer = Trainer(cfg, ddp_run / "check", *init_distributed("cpu"))
    trainer.model.load_state_dict(last["model"])
    result = trainer._validate_and_save()
    assert result.bleu == last["train_state"]["best_bleu"]
