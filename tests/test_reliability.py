"""Reliability: clear errors on bad input, no lost work on interruption, exact resume.

The command-line cases run the installed console scripts, as a user would, and check
the whole experience: exit status, one ``error:`` line naming the fix, no traceback.
Function-level cases that live elsewhere (tests/test_corpora.py, test_tokenizer.py,
test_config.py, test_checkpoint.py, test_download.py) are not repeated here.
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.data.pipeline import prepare_data
from seq2seq.data.synthetic import write_corpus
from seq2seq.errors import UserError
from seq2seq.training import trainer as trainer_module
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.training.distributed import init_distributed
from seq2seq.training.trainer import Trainer, train
from tests.conftest import compose_config, tiny_overrides

BIN = Path(sys.executable).parent
BATCHES_PER_EPOCH = 11  # 400 generated pairs (sources end in NULL) at data.batch_tokens=1200


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated corpus (400 training pairs) so every run here takes seconds."""
    directory = tmp_path_factory.mktemp("corpus")
    write_corpus(directory, {"train": 400, "valid": 20, "test": 20}, seed=0)
    return directory


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/encoding cache shared by the runs of this module."""
    return tmp_path_factory.mktemp("cache")


def overrides(corpus: Path, cache: Path, model: str = "rnn", **changes: object) -> list[str]:
    """:func:`tiny_overrides` with ``changes`` (``train__max_steps`` means ``train.max_steps``)."""
    new = {key.replace("__", "."): value for key, value in changes.items()}
    new.setdefault("data.cache_dir", cache)
    new.setdefault("train.threads", 1)
    kept = [o for o in tiny_overrides(corpus, cache.parent, model) if o.split("=")[0] not in new]
    return kept + [f"{key}={'null' if value is None else value}" for key, value in new.items()]


def cli(command: str, args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    """Run a console script from the venv; stdout and stderr are captured separately."""
    if command == "seq2seq-train" and not any(a.startswith("hydra.run.dir=") for a in args):
        args = [*args, f"hydra.run.dir={cwd / 'run'}"]
    return subprocess.run(
        [str(BIN / command), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def assert_one_clear_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2, an ``error:`` line with every fragment, and no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def rnn_run(corpus: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained RNN run directory (4 steps) whose checkpoints the cases below reuse."""
    run_dir = tmp_path_factory.mktemp("rnn_run")
    cfg = compose_config(
        "train", overrides(corpus, cache, train__max_steps=4, train__valid_every=4)
    )
    train(cfg, run_dir)
    return run_dir


# ------------------------------------------------------------------------- bad input, CLI


def bad_data(tmp: Path, corpus: Path) -> dict[str, list[str]]:
    """Training overrides that point ``data=files`` at one broken file each."""
    (tmp / "short.tgt").write_text("un\ndeux\n", encoding="utf-8")
    (tmp / "latin1.src").write_bytes((corpus / "train.src").read_bytes() + b"caf\xe9 au lait\n")
    (tmp / "empty.src").write_text("", encoding="utf-8")
    (tmp / "empty.tgt").write_text("", encoding="utf-8")
    return {
        "missing": [f"data.train_src={tmp / 'nope.src'}"],
        "lengths": [f"data.train_tgt={tmp / 'short.tgt'}"],
        "utf8": [f"data.train_src={tmp / 'latin1.src'}", f"data.train_tgt={tmp / 'latin1.src'}"],
        "empty": [f"data.train_src={tmp / 'empty.src'}", f"data.train_tgt={tmp / 'empty.tgt'}"],
    }


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing", ["nope.src does not exist", "check the path"]),
        ("lengths", ["has 400 lines", "short.tgt has 2"]),
        ("utf8", ["latin1.src, line 401: not valid UTF-8"]),
        ("empty", ["training split (data.train_split=train) is empty", "check its files"]),
    ],
)
def test_cli_bad_data_files(
    case: str, fragments: list[str], corpus: Path, cache: Path, tmp_path: Path
) -> None:
    args = overrides(corpus, cache) + bad_data(tmp_path, corpus)[case]
    assert_one_clear_error(cli("seq2seq-train", args, tmp_path), *fragments)


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"data__max_chars": 5}, ["raise data.max_chars"]),  # every pair filtered away
        ({"data__tokenizer__vocab_size": 5000}, ["data.tokenizer.vocab_size=5000 is too large"]),
        ({"data__batch_tokens": 10}, ["Raise data.batch_tokens"]),
    ],
    ids=["emptied_by_filtering", "vocab_unreachable", "batch_too_small"],
)
def test_cli_unusable_settings(
    changes: dict, fragments: list[str], corpus: Path, cache: Path, tmp_path: Path
) -> None:
    assert_one_clear_error(
        cli("seq2seq-train", overrides(corpus, cache, **changes), tmp_path), *fragments
    )


def test_cli_language_pair_the_dataset_lacks(tmp_path: Path) -> None:
    args = ["data=multi30k", f"data.root={tmp_path}", "data.src=en", "data.tgt=es"]
    assert_one_clear_error(cli("seq2seq-train", args, tmp_path), "data.src=en", "en, de, fr")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hiden_size=3", "Could not override 'model.hiden_size'"),
        ("trian.max_steps=5", "Could not override 'trian.max_steps'"),
        ("train.max_steps=many", "Value 'many' of type 'str' could not be converted to Integer"),
    ],
)
def test_cli_bad_override_is_one_hydra_message(override: str, message: str, tmp_path: Path) -> None:
    result = cli("seq2seq-train", [override], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output and "Traceback" not in output, output
    assert not (tmp_path / "run").exists(), "a bad override must not start a run"


def test_cli_missing_checkpoint(tmp_path: Path) -> None:
    result = cli("seq2seq-evaluate", [f"checkpoint={tmp_path / 'nope.pt'}"], tmp_path)
    assert_one_clear_error(result, "nope.pt does not exist", "checkpoint=")


def test_cli_truncated_checkpoint(rnn_run: Path, tmp_path: Path) -> None:
    data = (rnn_run / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    result = cli(
        "seq2seq-translate", [f"checkpoint={tmp_path / 'cut.pt'}"], tmp_path, stdin="a dog\n"
    )
    assert_one_clear_error(result, "truncated or corrupt", "Use another one")


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("command", ["seq2seq-translate", "seq2seq-train"])
def test_cli_checkpoint_with_pickled_code_is_refused_and_never_runs(
    command: str, rnn_run: Path, corpus: Path, cache: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    evil = {**load_checkpoint(rnn_run / "checkpoints" / "last.pt"), "extra": Payload(marker)}
    torch.save(evil, tmp_path / "evil.pt")
    if command == "seq2seq-train":
        args = overrides(corpus, cache, train__resume=tmp_path / "evil.pt")
    else:
        args = [f"checkpoint={tmp_path / 'evil.pt'}"]
    result = cli(command, args, tmp_path, stdin="a dog\n")
    assert_one_clear_error(result, "evil.pt was refused", "never unpickles")
    assert not marker.exists(), "the checkpoint's code ran"


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"model": "transformer"}, ["the checkpoint is a rnn model", "pass model=rnn"]),
        ({"data__tokenizer__vocab_size": 90}, ["another vocabulary", "same data settings"]),
        ({"model__hidden_size": 48}, ["do not fit this model config"]),
        ({"train__resume": "missing.pt"}, ["missing.pt does not exist"]),
    ],
    ids=["other_family", "other_vocabulary", "other_shape", "missing"],
)
def test_resume_from_an_incompatible_checkpoint(
    changes: dict, fragments: list[str], rnn_run: Path, corpus: Path, cache: Path, tmp_path: Path
) -> None:
    changes.setdefault("train__resume", rnn_run / "checkpoints" / "last.pt")
    model = changes.pop("model", "rnn")
    cfg = compose_config("train", overrides(corpus, cache, model, **changes))
    with pytest.raises(UserError) as err:
        train(cfg, tmp_path / "run")
    for fragment in fragments:
        assert fragment in str(err.value)


def test_cli_resume_from_the_other_family(
    rnn_run: Path, corpus: Path, cache: Path, tmp_path: Path
) -> None:
    args = overrides(
        corpus, cache, "transformer", train__resume=rnn_run / "checkpoints" / "last.pt"
    )
    assert_one_clear_error(cli("seq2seq-train", args, tmp_path), "is a rnn model", "pass model=rnn")


# ------------------------------------------------------------------------- awkward text


def test_crlf_files_are_plain_lines(corpus: Path, cache: Path, tmp_path: Path) -> None:
    for name in ("train.src", "train.tgt"):
        text = (corpus / name).read_text(encoding="utf-8")
        (tmp_path / name).write_bytes(text.replace("\n", "\r\n").encode())
    lf = compose_config("train", overrides(corpus, cache)).data
    crlf = compose_config(
        "train",
        overrides(
            corpus,
            cache,
            data__train_src=tmp_path / "train.src",
            data__train_tgt=tmp_path / "train.tgt",
        ),
    ).data
    plain, windows = prepare_data(lf, logging.getLogger()), prepare_data(crlf, logging.getLogger())
    assert len(windows.train) == len(plain.train) == 400
    for i in range(400):  # no "\r" became a piece: the same ids as the LF files
        assert np.array_equal(windows.train[i][1], plain.train[i][1])
        assert np.array_equal(windows.train[i][2], plain.train[i][2])
    assert windows.tokenizer.to_state() == plain.tokenizer.to_state()


def test_a_100k_character_line_is_filtered_or_encoded(
    corpus: Path, cache: Path, tmp_path: Path
) -> None:
    huge = "the red car " * 8332 + "the red car sees"
    assert len(huge) == 100_000
    for name, extra in (("train.src", huge), ("train.tgt", "la voiture")):
        text = (corpus / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text + extra + "\n", encoding="utf-8")
    files = {"data__train_src": tmp_path / "train.src", "data__train_tgt": tmp_path / "train.tgt"}
    default = prepare_data(
        compose_config("train", overrides(corpus, cache, **files)).data, logging.getLogger()
    )
    longest = max(len(default.train[i][1]) for i in range(len(default.train)))
    assert len(default.train) == 400 and longest < 100  # dropped by data.max_chars
    unlimited = compose_config(
        "train",
        overrides(
            corpus,
            cache,
            data__max_chars=200_000,
            data__max_tokens=100_000,
            data__max_length_ratio=1e9,
            **files,
        ),
    ).data
    kept = prepare_data(unlimited, logging.getLogger())
    assert len(kept.train) == 401
    ids = kept.train[400][1]  # the last line of the files
    assert len(ids) > 10_000  # encoded in full, not truncated or crashed
    assert kept.tokenizer.decode_src(ids.tolist()) == huge


# ------------------------------------------------------------------------- interruptions


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Kill any training that a failing test left running."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def start_training(args: list[str], cwd: Path) -> subprocess.Popen:
    """``seq2seq-train`` in the background, stdout and stderr merged."""
    process = subprocess.Popen(
        [str(BIN / "seq2seq-train"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    STARTED.append(process)
    return process


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen, timeout: float = 180.0
) -> None:
    """Block until ``ready()`` holds, failing if the process ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the training never got there"
        time.sleep(0.05)


def saved_steps(run_dir: Path) -> list[int]:
    """Steps of the ``step_*.pt`` checkpoints in a run directory."""
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.pt"))


def endless(corpus: Path, cache: Path, run_dir: Path, **changes: object) -> list[str]:
    """A run that only a signal ends, checkpointing every 3 steps unless ``changes`` differ."""
    settings: dict[str, object] = {
        "train__max_steps": 100_000,
        "train__max_epochs": 100_000,
        "train__valid_every": 3,
        "train__log_every": 3,
        "train__patience": 100_000,
        "valid__max_sentences": 4,
        "hydra.run.dir": run_dir,
    }
    return overrides(corpus, cache, **{**settings, **changes})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_resumable_checkpoint(
    sig: signal.Signals, corpus: Path, cache: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    process = start_training(endless(corpus, cache, run_dir), tmp_path)
    wait_until((run_dir / "checkpoints" / "last.pt").exists, process)
    process.send_signal(sig)
    output = process.communicate(timeout=90)[0]
    # a shell's convention for a process stopped by a signal: 128 + its number
    assert process.returncode == 128 + sig and "Traceback" not in output, output
    found = re.search(
        rf"{sig.name} received: checkpoint saved at step (\d+); continue with train.resume=(\S+)",
        output,
    )
    assert found, output
    step, path = int(found[1]), Path(found[2])
    assert load_checkpoint(path)["train_state"]["step"] == step

    resumed = cli(
        "seq2seq-train",
        overrides(
            corpus,
            cache,
            train__resume=path,
            train__max_steps=step + 2,
            **{"hydra.run.dir": tmp_path / "resumed"},
        ),
        tmp_path,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (
        load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["train_state"]["step"]
        == step + 2
    )


def test_sigkill_leaves_the_last_complete_checkpoint_loadable(
    corpus: Path, cache: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = endless(corpus, cache, run_dir, train__valid_every=1, train__keep_last=2)
    reached = 0
    for seed in range(2):  # a kill at a random moment, then another in the resumed run
        process = start_training([*args, "train.resume=auto"], tmp_path)
        wait_until(lambda done=reached: max(saved_steps(run_dir), default=0) > done, process)
        time.sleep(random.Random(seed).uniform(0.0, 0.5))
        process.kill()
        process.communicate(timeout=30)
        steps = saved_steps(run_dir)
        assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["train_state"]["step"] in steps
        for step in steps:
            load_checkpoint(run_dir / "checkpoints" / f"step_{step:08d}.pt")
        reached = steps[-1]


# ------------------------------------------------------------------------- exact resume


def record_batches(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Make every optimizer step append its first source batch to the returned list."""
    seen: list[torch.Tensor] = []
    update = Trainer._update

    def recording(self: Trainer, micro: list, window: object) -> None:
        seen.append(micro[0].src.clone())
        update(self, micro, window)

    monkeypatch.setattr(Trainer, "_update", recording)
    return seen


def assert_same_tensors(a: object, b: object, where: str = "") -> None:
    """Nested dicts/lists of tensors and builtins are exactly equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("model", ["rnn", "transformer"])
def test_resume_mid_epoch_is_exact(
    model: str, corpus: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    half = BATCHES_PER_EPOCH + BATCHES_PER_EPOCH // 2  # stop in the middle of the second epoch
    # Dropout on, so the restored RNG state matters too; validation at the same steps in both.
    common = {
        "train__valid_every": half,
        "train__log_every": 5,
        "model__dropout": 0.2,
        "valid__max_sentences": 8,
    }
    seen = record_batches(monkeypatch)
    train(
        compose_config(
            "train", overrides(corpus, cache, model, train__max_steps=2 * half, **common)
        ),
        tmp_path / "straight",
    )
    straight = list(seen)
    seen.clear()
    train(
        compose_config("train", overrides(corpus, cache, model, train__max_steps=half, **common)),
        tmp_path / "stopped",
    )
    stopped = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    position = [stopped["train_state"][k] for k in ("epoch", "shard_in_epoch", "batch_in_shard")]
    assert position == [1, 0, half - BATCHES_PER_EPOCH]
    resume = tmp_path / "stopped" / "checkpoints" / "last.pt"
    train(
        compose_config(
            "train",
            overrides(
                corpus, cache, model, train__max_steps=2 * half, train__resume=resume, **common
            ),
        ),
        tmp_path / "resumed",
    )

    assert len(seen) == len(straight) == 2 * half
    for step, (a, b) in enumerate(zip(straight, seen, strict=True), 1):
        assert torch.equal(a, b), f"different batch at step {step}"
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for key in ("model", "optimizer", "scheduler", "train_state", "rng"):
        assert_same_tensors(a[key], b[key], key)
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]


# ------------------------------------------------------------------------- numerical faults


def poison_loss(monkeypatch: pytest.MonkeyPatch, bad_calls: set[int] | None) -> None:
    """Make the training loss NaN on the given calls (1-based; None: on every call)."""
    calls = 0
    loss = trainer_module.label_smoothed_loss

    def poisoned(*args: object) -> torch.Tensor:
        nonlocal calls
        calls += 1
        value = loss(*args)
        if bad_calls is None or calls in bad_calls:
            value = value * float("nan")
        return value

    monkeypatch.setattr(trainer_module, "label_smoothed_loss", poisoned)


def make_trainer(cfg: object, run_dir: Path) -> Trainer:
    ctx, device = init_distributed("cpu")
    return Trainer(cfg, run_dir, ctx, device)


def test_nonfinite_steps_are_skipped_with_a_warning(
    corpus: Path,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = compose_config(
        "train",
        overrides(
            corpus,
            cache,
            train__max_steps=8,
            train__valid_every=8,
            train__max_nonfinite=3,
            valid__max_sentences=4,
        ),
    )
    poison_loss(monkeypatch, {3, 4})
    trainer = make_trainer(cfg, tmp_path)
    with caplog.at_level(logging.WARNING, logger=trainer_module.__name__):
        summary = trainer.run()
    assert summary["step"] == 8
    skipped = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert skipped == [f"step {s}: non-finite loss or gradient, update skipped" for s in (3, 4)]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    adam_steps = {float(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert adam_steps == {6.0}, "the two poisoned steps must not update"


def test_consecutive_nonfinite_steps_stop_training(
    corpus: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config(
        "train", overrides(corpus, cache, train__max_steps=8, train__max_nonfinite=3)
    )
    poison_loss(monkeypatch, None)
    trainer = make_trainer(cfg, tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(
        UserError, match="3 consecutive non-finite steps: training diverged. Lower optim.lr"
    ):
        trainer.run()
    assert_same_tensors(before, trainer.model.state_dict())


def test_interrupted_checkpoint_write_keeps_the_previous_one(rnn_run: Path, tmp_path: Path) -> None:
    """A kill mid-write leaves only a hidden temporary file, never a partial last.pt."""
    good = load_checkpoint(rnn_run / "checkpoints" / "last.pt")
    save_checkpoint(good, tmp_path / "last.pt")
    code = (
        "import os, sys, torch\n"
        "from seq2seq.training import checkpoint as c\n"
        "real = torch.save\n"
        "def dying(obj, handle):\n"
        "    real(obj, handle); handle.flush(); os.kill(os.getpid(), 9)\n"
        "c.torch.save = dying\n"
        "c.save_checkpoint({'model': {}, 'model_config': {}}, c.Path(sys.argv[1]))\n"
    )
    process = subprocess.run([sys.executable, "-c", code, str(tmp_path / "last.pt")], timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert_same_tensors(good["model"], load_checkpoint(tmp_path / "last.pt")["model"])


# ------------------------------------------------------------------------- concurrency


def test_runs_started_together_get_separate_directories(tmp_path: Path) -> None:
    # Both fail fast on a missing file, after Hydra has created their run directories.
    args = ["data=files", "data.train_src=nope.src", "data.train_tgt=nope.tgt"]
    processes = [start_training(args, tmp_path) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=60) == 2, process.communicate()[0]
    runs = [p.parent.parent for p in (tmp_path / "outputs").glob("*/*/.hydra/config.yaml")]
    assert len(runs) == 2 and runs[0] != runs[1]
    for run in runs:
        assert re.match(r"\d{2}-\d{2}-\d{2}-\d{6}", run.name), run.name  # microseconds


def test_many_overrides_still_get_a_run_directory(
    corpus: Path, cache: Path, tmp_path: Path
) -> None:
    # The default run directory must not turn 20 overrides into an over-long file name.
    args = overrides(corpus, cache, "transformer", data__train_src=tmp_path / "nope.src")
    result = subprocess.run(
        [str(BIN / "seq2seq-train"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_clear_error(result, "nope.src does not exist")
