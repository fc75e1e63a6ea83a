"""The prepared training data: exact ids in shards, a checked cache, safe concurrent builds."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from seq2seq.data import prepared
from seq2seq.data.corpora import read_lines
from seq2seq.data.manifest import read_manifest
from seq2seq.data.pipeline import PreparedData, prepare_data
from seq2seq.data.sampler import TokenBatchSampler
from seq2seq.errors import UserError
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.trainer import train
from tests.conftest import compose_config, small_overrides
from tests.test_distributed import small_run
from tests.test_distributed import spawn as spawn_ranks

log = logging.getLogger(__name__)


def data_cfg(corpus: Path, work: Path, *changes: str) -> DictConfig:
    """The data section of the small run with ``changes``."""
    return compose_config("train", small_overrides(corpus, work, *changes)).data


def pairs_of(data: PreparedData) -> list[tuple[list[int], list[int]]]:
    return [(s.tolist(), t.tolist()) for _, s, t in (data.train[i] for i in range(len(data.train)))]


def split_files(corpus: Path, tmp_path: Path) -> list[str]:
    """train.src/.tgt as two files each (the second gzipped), as list overrides."""
    overrides = []
    for side in ("src", "tgt"):
        lines = (corpus / f"train.{side}").read_text(encoding="utf-8").splitlines(keepends=True)
        first, second = tmp_path / f"a.{side}", tmp_path / f"b.{side}.gz"
        first.write_text("".join(lines[:150]), encoding="utf-8")
        second.write_bytes(gzip.compress("".join(lines[150:]).encode()))
        overrides.append(f"data.train_{side}=[{first},{second}]")
    return overrides


def test_shards_hold_exactly_the_tokenizers_ids(small_corpus: Path, tmp_path: Path) -> None:
    files = split_files(small_corpus, tmp_path)
    data = prepare_data(data_cfg(small_corpus, tmp_path, *files, "data.shard_size=70"), log)
    tok = data.tokenizer
    src, tgt = read_lines(small_corpus / "train.src"), read_lines(small_corpus / "train.tgt")
    expected = []  # the filters of data.max_tokens=128 and data.max_length_ratio=3, naively
    for s, t in zip(tok.encode_src(src), tok.encode_tgt(tgt), strict=True):
        if (
            s
            and t
            and max(len(s), len(t)) <= 128
            and max(len(s), len(t)) <= 3 * min(len(s), len(t))
        ):
            expected.append((s, t))
    assert pairs_of(data) == expected
    assert [shard.pairs for shard in data.train.shards][:-1] == [70] * (len(expected) // 70)
    manifest = read_manifest(data.train.shards[0].directory.parent)
    assert manifest["counts"]["read"] == 400 and manifest["counts"]["kept"] == len(expected)
    assert manifest["dtype"] == "uint16"
    for source in manifest["sources"]:  # hashed while streaming, equal to a hash of the file
        assert source["sha256"] == hashlib.sha256(Path(source["path"]).read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_a_damaged_shard_is_detected_and_rebuilt(
    damage: str, small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = data_cfg(small_corpus, tmp_path, "data.shard_size=150")
    first = pairs_of(prepare_data(cfg, log))
    [shard] = list((tmp_path / "cache" / "prepared").glob("*/shard_00001/tgt.tokens.npy"))
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        del data[-7:]
    else:
        data[-1] ^= 0x01  # one id changed, same size
    shard.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = prepare_data(cfg, log)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"prepared data damaged: {shard}") and "\n" not in warning
    assert warning.endswith("rebuilding it")
    assert pairs_of(again) == first


KILLER = """
import logging, os, signal, sys
from seq2seq.data import shards
from seq2seq.data.pipeline import prepare_data
from tests.conftest import compose_config, small_overrides
flush = shards.ShardWriter._flush
def flush_then_die(self):
    flush(self)
    os.kill(os.getpid(), signal.SIGKILL)  # after the first shard: a killed preparation
shards.ShardWriter._flush = flush_then_die
from pathlib import Path
cfg = compose_config("train", small_overrides(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]))
prepare_data(cfg.data, logging.getLogger())
"""


def test_a_killed_preparation_leaves_nothing_finished_looking(
    small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(small_corpus), str(tmp_path), "data.shard_size=150"],
        cwd=root,
        capture_output=True,
    )
    assert done.returncode == -9
    prepared_dir = tmp_path / "cache" / "prepared"
    left = list(prepared_dir.iterdir())
    assert left and all(p.name.startswith(".") for p in left)  # staging and lock only
    assert not list(prepared_dir.glob("*/manifest.json"))
    with caplog.at_level(logging.INFO):
        data = prepare_data(data_cfg(small_corpus, tmp_path, "data.shard_size=150"), log)
    assert "preparing the training data" in caplog.text and len(data.train) > 300
    assert [p.name for p in prepared_dir.iterdir() if p.is_dir()] == [
        data.train.shards[0].directory.parent.name
    ]


def prepare_in_child(corpus: str, work: str, out: str) -> None:
    """One of two processes preparing the same corpus; the build is slowed to overlap."""
    build = prepared.build_prepared

    def slow_build(*args: object) -> None:
        time.sleep(2.0)
        build(*args)  # type: ignore[arg-type]

    prepared.build_prepared = slow_build  # type: ignore[assignment]
    logs: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logs.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("child")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    data = prepare_data(data_cfg(Path(corpus), Path(work)), logger)
    result = {"logs": logs, "end": time.time(), "pairs": len(data.train)}
    Path(out).write_text(json.dumps(result), encoding="utf-8")


def test_two_preparations_at_once_one_builds_the_other_waits(
    small_corpus: Path, tmp_path: Path
) -> None:
    context = mp.get_context("spawn")
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    children = [
        context.Process(target=prepare_in_child, args=(str(small_corpus), str(tmp_path), str(o)))
        for o in outs
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    results = [json.loads(o.read_text(encoding="utf-8")) for o in outs]
    built = [any("preparing the training data" in m for m in r["logs"]) for r in results]
    reused = [any("using the prepared training data" in m for m in r["logs"]) for r in results]
    assert sorted(built) == [False, True] and reused == [not b for b in built]
    builder, waiter = results[built.index(True)], results[built.index(False)]
    assert waiter["end"] >= builder["end"] - 1.0  # it waited for the build (2 s or more)
    assert waiter["pairs"] == builder["pairs"]


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("utf8", "b.src, line 3: not valid UTF-8"),
        ("lengths", "has 401 lines but"),
        ("empty", "training split (data.train_split=train) is empty"),
    ],
)
def test_corpus_errors_while_streaming(
    case: str, fragment: str, small_corpus: Path, tmp_path: Path
) -> None:
    good_src, good_tgt = small_corpus / "train.src", small_corpus / "train.tgt"
    (tmp_path / "b.src").write_bytes(b"ok\nfine\ncaf\xe9\n")
    (tmp_path / "one.src").write_text("one more\n", encoding="utf-8")
    (tmp_path / "empty.src").write_text("", encoding="utf-8")
    files = {
        "utf8": [f"data.train_src=[{good_src},{tmp_path / 'b.src'}]", f"data.train_tgt={good_tgt}"],
        "lengths": [f"data.train_src=[{good_src},{tmp_path / 'one.src'}]"],
        "empty": [
            f"data.train_src={tmp_path / 'empty.src'}",
            f"data.train_tgt={tmp_path / 'empty.src'}",
        ],
    }[case]
    with pytest.raises(UserError) as err:
        prepare_data(data_cfg(small_corpus, tmp_path, *files), log)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_resume_across_a_shard_boundary_equals_an_unbroken_run(
    small_corpus: Path, tmp_path: Path
) -> None:
    """400 pairs in shards of 150: about 4 batches a shard; stop at step 6, in the second."""
    common = [
        "data.shard_size=150",
        "model.dropout=0.2",
        "train.valid_every=6",
        "train.log_every=3",
    ]

    def run(name: str, steps: int, *extra: str) -> dict:
        overrides = small_overrides(
            small_corpus, tmp_path, *common, f"train.max_steps={steps}", *extra
        )
        train(compose_config("train", overrides), tmp_path / name)
        return load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")

    straight = run("straight", 12)
    stopped = run("stopped", 6)
    state = stopped["train_state"]
    assert state["epoch"] == 0 and state["shard_in_epoch"] >= 1  # past a shard boundary
    resumed = run("resumed", 12, f"train.resume={tmp_path / 'stopped' / 'checkpoints' / 'last.pt'}")
    assert resumed["train_state"] == straight["train_state"]
    for name, value in straight["model"].items():
        assert torch.equal(resumed["model"][name], value), name


def test_ddp_ranks_train_on_the_same_prepared_shards(synthetic_dir: Path, tmp_path: Path) -> None:
    """Two gloo ranks over three shards: the same steps, identical weights, disjoint batches."""
    overrides = [*small_run(synthetic_dir, tmp_path), "data.shard_size=1000"]
    data = prepare_data(compose_config("train", overrides).data, log)
    spawn_ranks(overrides, tmp_path)
    ranks = [torch.load(tmp_path / f"params{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 3
    for name, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][name]), name
    cfg = compose_config("train", overrides)
    dealt = []
    for rank in (0, 1):
        sampler = TokenBatchSampler(
            data.train.shards, cfg.data.batch_tokens, True, cfg.train.seed, 2, rank
        )
        sampler.set_epoch(0)
        dealt.append([tuple(b) for b in sampler])
    assert len(dealt[0]) == len(dealt[1])
    assert len(set(dealt[0]) & set(dealt[1])) <= len(data.train.shards)  # wrap-around padding
    assert {i for batches in dealt for b in batches for i in b} == set(range(len(data.train)))
