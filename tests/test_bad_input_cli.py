"""Bad input through the real commands: one clear line (exit 2), no traceback, no lost file.

Each case builds its files in its own directory, records what the user already had,
and runs the installed console script. The cases are independent, so the module runs
them all at once (a few at a time) and each test checks its own result.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
import torch

from seq2seq.config import TransformerConfig
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.run_dir import hold_run_dir, release_run_dir
from tests.conftest import small_overrides

BIN = Path(sys.executable).parent
UNWRITABLE = Path("/sys")  # even root cannot create files here (sysfs)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class Case:
    """One command line, its input, and the files it must leave byte-identical."""

    command: str
    args: list[str]
    stdin: bytes = b""
    keep: list[Path] = field(default_factory=list)
    shell: bool = False  # args[0] is a bash command line (pipes, process substitution)


@dataclass
class Outcome:
    """What a case did."""

    returncode: int
    stdout: str
    stderr: str
    before: dict[Path, str]
    after: dict[Path, str]
    work: Path


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes ('missing' when it is gone)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def tree(directory: Path) -> list[Path]:
    """Every file under ``directory``."""
    return sorted(p for p in directory.rglob("*") if p.is_file())


def copy_run(run: Path, work: Path) -> Path:
    """A private copy of the shared run directory (its checkpoints may then be changed)."""
    return Path(shutil.copytree(run, work / "run"))


def translate_case(run: Path, work: Path, *args: str, stdin: bytes = b"a dog\n") -> Case:
    """seq2seq-translate with the shared checkpoint."""
    return Case("seq2seq-translate", [f"checkpoint={run}", "decode.beam_size=1", *args], stdin)


# ------------------------------------------------------------------------------------ cases


def file_to_file(run: Path, work: Path, source: str, output: str, data: bytes) -> Case:
    """Translate ``work/source`` (holding ``data``) into ``work/output``; both are kept."""
    (work / "in.txt").write_bytes(data)
    if not (work / output).exists():
        (work / output).write_text("yesterday's translations\n", encoding="utf-8")
    case = translate_case(run, work, f"input={work / source}", f"output={work / output}")
    case.keep = [work / "in.txt", work / output]
    return case


def output_is_input(run: Path, work: Path) -> Case:
    return file_to_file(run, work, "in.txt", "in.txt", b"a dog\nthe cat\n")


def output_is_input_through_a_link(run: Path, work: Path) -> Case:
    (work / "link.txt").symlink_to(work / "in.txt")
    return file_to_file(run, work, "in.txt", "link.txt", b"a dog\nthe cat\n")


def missing_input_keeps_previous_output(run: Path, work: Path) -> Case:
    return file_to_file(run, work, "nope.txt", "out.txt", b"a dog\n")


def bad_utf8_file_keeps_previous_output(run: Path, work: Path) -> Case:
    return file_to_file(run, work, "in.txt", "out.txt", b"a dog\ncaf\xe9 au lait\nthe cat\n")


def bad_utf8_stdin(run: Path, work: Path) -> Case:
    return translate_case(run, work, stdin=b"a dog\nthe cat\ncaf\xe9\nlast\n")


def lone_cr_in_a_file(run: Path, work: Path) -> Case:
    (work / "in.txt").write_bytes(b"a dog\rthe cat\nthe man\r\n")
    return translate_case(run, work, f"input={work / 'in.txt'}")


def lone_cr_on_stdin(run: Path, work: Path) -> Case:
    return translate_case(run, work, stdin=b"a dog\rthe cat\nthe man\r\n")


def gz_input(run: Path, work: Path) -> Case:
    with gzip.open(work / "in.txt.gz", "wb") as handle:
        handle.write(b"a dog\nthe cat\n")
    return translate_case(run, work, f"input={work / 'in.txt.gz'}")


def dev_null_input(run: Path, work: Path) -> Case:
    return translate_case(run, work, "input=/dev/null")


def pipe_input(run: Path, work: Path) -> Case:
    script = BIN / "seq2seq-translate"
    line = f"{script} checkpoint={run} decode.beam_size=1 input=<(printf 'a dog\\nthe cat\\n')"
    return Case("bash", [line], shell=True)


def output_dir_missing(run: Path, work: Path) -> Case:
    return translate_case(run, work, f"output={work / 'nodir' / 'out.txt'}")


def output_unwritable(run: Path, work: Path) -> Case:
    return translate_case(run, work, f"output={UNWRITABLE / 'seq2seq-out.txt'}")


def output_disk_full(run: Path, work: Path) -> Case:
    return translate_case(run, work, "output=/dev/full")


def output_into_head(run: Path, work: Path) -> Case:
    (work / "many.txt").write_text("a dog\n" * 600, encoding="utf-8")
    line = (
        f"set -o pipefail; {BIN / 'seq2seq-translate'} checkpoint={run} decode.beam_size=1 "
        f"input={work / 'many.txt'} | head -n 1"
    )
    return Case("bash", [line], shell=True)


def decode_lengths_give_nothing(run: Path, work: Path) -> Case:
    return translate_case(run, work, "decode.max_len_a=-1", "decode.max_len_b=-5")


def decode_lengths_sum_below_one(run: Path, work: Path) -> Case:
    return translate_case(run, work, "decode.max_len_a=0", "decode.max_len_b=0")


def alignment_layer_out_of_range(run: Path, work: Path) -> Case:
    return translate_case(run, work, "show_alignment=true", "alignment_layer=3")


def text_file_named_pt(run: Path, work: Path) -> Case:
    (work / "notes.pt").write_text("my notes, not a model\n", encoding="utf-8")
    return translate_case(work / "notes.pt", work)


def bit_flipped_checkpoint(run: Path, work: Path) -> Case:
    data = bytearray((run / "checkpoints" / "last.pt").read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 4096, 97):  # inside the tensor data
        data[offset] ^= 0x10
    (work / "flipped.pt").write_bytes(bytes(data))
    return translate_case(work / "flipped.pt", work)


def checkpoint_without_tokenizer(run: Path, work: Path) -> Case:
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    del state["tokenizer"]
    torch.save(state, work / "no_tokenizer.pt")
    return translate_case(work / "no_tokenizer.pt", work)


def weights_of_the_other_family(run: Path, work: Path) -> Case:
    state = load_checkpoint(run / "checkpoints" / "last.pt")  # RNN weights ...
    state["model_config"] = asdict(TransformerConfig(d_model=32, heads=2))  # ... as these
    torch.save(state, work / "other.pt")
    return translate_case(work / "other.pt", work)


def evaluate_into_a_training_run(run: Path, work: Path) -> Case:
    mine = copy_run(run, work)
    return Case(
        "seq2seq-evaluate",
        [f"checkpoint={mine}", f"hydra.run.dir={mine}", "decode.beam_size=1"],
        keep=tree(mine),
    )


def evaluate_device_tpu(run: Path, work: Path) -> Case:
    return Case(
        "seq2seq-evaluate", [f"checkpoint={run}", "device=tpu", f"hydra.run.dir={work / 'ev'}"]
    )


def evaluate_a_run_without_test_split(run: Path, work: Path) -> Case:
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    state["config"]["data"].update(test_src=None, test_tgt=None)
    torch.save(state, work / "no_test.pt")
    return Case(
        "seq2seq-evaluate", [f"checkpoint={work / 'no_test.pt'}", f"hydra.run.dir={work / 'ev'}"]
    )


def train_again_in_a_run_dir(run: Path, work: Path) -> Case:
    mine = copy_run(run, work)
    return Case("seq2seq-train", [*train_args(work), f"hydra.run.dir={mine}"], keep=tree(mine))


def run_dir_is_a_file(run: Path, work: Path) -> Case:
    (work / "taken").write_text("a file the user keeps\n", encoding="utf-8")
    args = [*train_args(work), f"hydra.run.dir={work / 'taken'}"]
    return Case("seq2seq-train", args, keep=[work / "taken"])


def run_dir_unwritable(run: Path, work: Path) -> Case:
    return Case("seq2seq-train", [*train_args(work), f"hydra.run.dir={UNWRITABLE / 's2s-run'}"])


def cache_dir_unwritable(run: Path, work: Path) -> Case:
    args = [*train_args(work, f"data.cache_dir={UNWRITABLE / 's2s-cache'}")]
    return Case("seq2seq-train", [*args, f"hydra.run.dir={work / 'run'}"])


def data_root_unwritable(run: Path, work: Path) -> Case:
    args = ["data=multi30k", f"data.root={UNWRITABLE / 's2s-data'}", f"data.cache_dir={work}"]
    return Case("seq2seq-train", [*args, f"hydra.run.dir={work / 'run'}"])


# The settings the issue lists as crashing after training had begun.
LATE_CRASHES = [
    "valid.decode.beam_size=0",
    "valid.decode.batch_size=0",
    "train.valid_every=0",
    "train.log_every=0",
    "train.label_smoothing=1.0",
    "optim.lr=0",
    "optim.betas=[0.9]",
    "data.num_workers=-1",
]


def every_bad_setting_at_once(run: Path, work: Path) -> Case:
    args = [*train_args(work, *LATE_CRASHES), f"hydra.run.dir={work / 'run'}"]
    return Case("seq2seq-train", args)


def max_positions_too_small(run: Path, work: Path) -> Case:
    args = [*train_args(work, "model=transformer", "model.max_positions=16")]
    return Case("seq2seq-train", [*args, f"hydra.run.dir={work / 'run'}"])


def train_args(work: Path, *changes: str) -> list[str]:
    """Training overrides on the shared corpus (set by the ``outcomes`` fixture)."""
    return small_overrides(CORPUS[0], work, *changes)


CORPUS: list[Path] = []

# name -> (case builder, expected exit status, fragments of the one error line)
CASES: dict[str, tuple[Callable[[Path, Path], Case], int, list[str]]] = {
    "output_is_input": (output_is_input, 2, ["output=", "is the input file"]),
    "output_is_input_link": (output_is_input_through_a_link, 2, ["link.txt is the input file"]),
    "missing_input_keeps_output": (missing_input_keeps_previous_output, 2, ["nope.txt"]),
    "bad_utf8_file_keeps_output": (
        bad_utf8_file_keeps_previous_output,
        2,
        ["in.txt, line 2: not valid UTF-8", "was left unchanged"],
    ),
    "bad_utf8_stdin": (bad_utf8_stdin, 2, ["stdin, line 3: not valid UTF-8", "2 line(s)"]),
    "lone_cr_file": (lone_cr_in_a_file, 0, []),
    "lone_cr_stdin": (lone_cr_on_stdin, 0, []),
    "gz_input": (gz_input, 0, []),
    "dev_null_input": (dev_null_input, 0, []),
    "pipe_input": (pipe_input, 0, []),
    "output_dir_missing": (output_dir_missing, 2, ["nodir does not exist"]),
    "output_unwritable": (output_unwritable, 2, ["could not write output=", "permission denied"]),
    "output_disk_full": (output_disk_full, 2, ["output=/dev/full", "no space left on device"]),
    "output_into_head": (output_into_head, 141, []),
    "decode_lengths_negative": (decode_lengths_give_nothing, 2, ["decode.max_len_a=-1"]),
    "decode_lengths_zero": (decode_lengths_sum_below_one, 2, ["decode.max_len_b=0"]),
    "alignment_layer_out_of_range": (alignment_layer_out_of_range, 2, ["alignment_layer=3", "RNN"]),
    "text_file_named_pt": (text_file_named_pt, 2, ["notes.pt", "is a text file"]),
    "bit_flipped_checkpoint": (bit_flipped_checkpoint, 2, ["flipped.pt", "Use another one"]),
    "checkpoint_without_tokenizer": (
        checkpoint_without_tokenizer,
        2,
        ["no_tokenizer.pt is not a seq2seq checkpoint", "no tokenizer entry"],
    ),
    "other_family_weights": (
        weights_of_the_other_family,
        2,
        ["other.pt", "do not fit its transformer model config"],
    ),
    "evaluate_into_training_run": (
        evaluate_into_a_training_run,
        2,
        ["is a training run", "Leave hydra.run.dir out"],
    ),
    "evaluate_device_tpu": (evaluate_device_tpu, 2, ["device=tpu", "auto, cpu, cuda"]),
    "evaluate_without_test_split": (
        evaluate_a_run_without_test_split,
        2,
        ["data.src_file=... data.ref_file=..."],
    ),
    "train_again_in_run_dir": (
        train_again_in_a_run_dir,
        2,
        ["already holds a training (step 4, best BLEU", "train.resume=auto", "overwrite=true"],
    ),
    "run_dir_is_a_file": (run_dir_is_a_file, 2, ["taken is an existing file"]),
    "run_dir_unwritable": (run_dir_unwritable, 2, ["hydra.run.dir=/sys/s2s-run"]),
    "cache_dir_unwritable": (cache_dir_unwritable, 2, ["data.cache_dir=/sys/s2s-cache"]),
    "data_root_unwritable": (data_root_unwritable, 2, ["/sys/s2s-data is not writable"]),
    "every_bad_setting_at_once": (
        every_bad_setting_at_once,
        2,
        [f"{len(LATE_CRASHES)} settings cannot work", *LATE_CRASHES],
    ),
    "max_positions_too_small": (
        max_positions_too_small,
        2,
        ["model.max_positions=16", "data.max_tokens=128"],
    ),
}


def run_case(case: Case, work: Path) -> Outcome:
    """Run one case in ``work``, hashing its protected files before and after."""
    before = {p: digest(p) for p in case.keep}
    argv = ["bash", "-c", case.args[0]] if case.shell else [str(BIN / case.command), *case.args]
    done = subprocess.run(
        argv, cwd=work, input=case.stdin, capture_output=True, timeout=240, env=ENV
    )
    after = {p: digest(p) for p in case.keep}
    text = {k: v.decode("utf-8", "replace") for k, v in (("o", done.stdout), ("e", done.stderr))}
    return Outcome(done.returncode, text["o"], text["e"], before, after, work)


@pytest.fixture(scope="module")
def outcomes(
    small_run: Path, small_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """Every case of CASES, run three at a time."""
    if not (BIN / "seq2seq-translate").is_file():
        pytest.skip("the console scripts are not installed; run `pip install -e .` first")
    CORPUS[:] = [small_corpus]
    cases = {}
    for name, (build, _, _) in CASES.items():
        work = tmp_path_factory.mktemp(name)
        cases[name] = (build(small_run, work), work)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_case, *cases[name]) for name in cases}
        results = {name: future.result() for name, future in futures.items()}
    if os.environ.get("SEQ2SEQ_CASE_TABLE"):  # docs/RESULTS.md's table, from this very run
        write_table(results, Path(os.environ["SEQ2SEQ_CASE_TABLE"]))
    return results


def write_table(results: dict[str, Outcome], path: Path) -> None:
    """A Markdown table: case, exit status, first line of stderr, traceback?, file changed?"""
    rows = [
        "| case | exit | message | traceback | user file changed |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, outcome in results.items():
        first = next((line for line in outcome.stderr.splitlines() if line.strip()), "")
        first = first.replace(str(outcome.work), "<dir>").replace("|", "\\|")
        traceback = "yes" if "Traceback" in outcome.stdout + outcome.stderr else "no"
        changed = "yes" if outcome.after != outcome.before else "no"
        rows.append(f"| {name} | {outcome.returncode} | {first} | {traceback} | {changed} |")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def assert_clean(outcome: Outcome, status: int, fragments: list[str]) -> None:
    """The exit status, no traceback, one ``error:`` line holding every fragment, files kept."""
    output = outcome.stdout + outcome.stderr
    assert outcome.returncode == status, output
    assert "Traceback" not in output, output
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == (1 if status == 2 else 0), output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert outcome.after == outcome.before, "a file the user had was changed"


@pytest.mark.parametrize("name", list(CASES))
def test_case(name: str, outcomes: dict[str, Outcome]) -> None:
    _, status, fragments = CASES[name]
    assert_clean(outcomes[name], status, fragments)


# ------------------------------------------------------------ what the good cases produced


def test_lone_cr_splits_neither_a_file_nor_stdin(outcomes: dict[str, Outcome]) -> None:
    from_file, from_stdin = outcomes["lone_cr_file"].stdout, outcomes["lone_cr_stdin"].stdout
    assert len(from_file.splitlines()) == 2  # two \n-terminated lines in, two out
    assert from_file == from_stdin


def test_gz_pipe_and_dev_null_inputs_are_read(outcomes: dict[str, Outcome]) -> None:
    assert len(outcomes["gz_input"].stdout.splitlines()) == 2
    assert outcomes["pipe_input"].stdout == outcomes["gz_input"].stdout
    assert outcomes["dev_null_input"].stdout == ""


def test_bad_utf8_on_stdin_writes_the_lines_before_it(outcomes: dict[str, Outcome]) -> None:
    assert len(outcomes["bad_utf8_stdin"].stdout.splitlines()) == 2


def test_head_ends_the_translation_quietly(outcomes: dict[str, Outcome]) -> None:
    assert len(outcomes["output_into_head"].stdout.splitlines()) == 1
    assert outcomes["output_into_head"].stderr == ""


def test_refused_commands_leave_no_run_directory(outcomes: dict[str, Outcome]) -> None:
    for name in ("every_bad_setting_at_once", "max_positions_too_small", "cache_dir_unwritable"):
        assert not (outcomes[name].work / "run").exists(), name
    assert not (outcomes["evaluate_device_tpu"].work / "ev").exists()


# ------------------------------------------------------------ cases that need timing


def test_second_training_in_a_locked_run_dir(small_corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert hold_run_dir(run_dir)  # this test process is "the first training"
    try:
        args = [*small_overrides(small_corpus, tmp_path), f"hydra.run.dir={run_dir}"]
        outcome = run_case(Case("seq2seq-train", args), tmp_path)
    finally:
        release_run_dir(run_dir)
    holder = f"PID {os.getpid()} on host {socket.gethostname()}"
    assert_clean(outcome, 2, ["is in use by another training", holder])
    assert not (run_dir / "checkpoints").exists() and not (run_dir / ".hydra").exists()


@pytest.mark.parametrize("command", ["seq2seq-translate", "seq2seq-train"])
def test_ctrl_c_during_start_up(command: str, small_run: Path, tmp_path: Path) -> None:
    args = [f"checkpoint={small_run}"] if command == "seq2seq-translate" else []
    process = subprocess.Popen(
        [str(BIN / command), *args, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    time.sleep(1.0)  # still importing torch and composing the config
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "interrupted" in stderr


def test_sweep_with_one_bad_job_runs_the_others(small_corpus: Path, tmp_path: Path) -> None:
    args = [
        "-m",
        *small_overrides(small_corpus, tmp_path, "train.max_steps=2", "train.valid_every=2"),
        "valid.decode.beam_size=0,1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    done = subprocess.run(
        [str(BIN / "seq2seq-train"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env=ENV,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "1 job(s) of the sweep failed" in done.stderr
    assert "job #0" in done.stderr
    assert "valid.decode.beam_size=0: must be a number >= 1" in done.stderr
    assert (tmp_path / "sweep" / "1" / "checkpoints" / "last.pt").is_file()  # the good job ran
    assert not (tmp_path / "sweep" / "0" / "checkpoints").exists()
