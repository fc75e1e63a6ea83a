"""The seq2seq-translate console script, run as a user would, on a tiny trained checkpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.config import DecodeConfig
from seq2seq.data.synthetic import NOUNS
from seq2seq.inference import Translator, decode_corpus
from seq2seq.training.trainer import train
from tests.conftest import compose_config, tiny_overrides

SCRIPT = Path(sys.executable).with_name("seq2seq-translate")
BEAM = 4
# Empty and blank lines at the start, in the middle and at the end: each must come back.
LINES = [
    "",
    "the red car sees a dog",
    "",
    "   ",
    "every child likes this big tree",
    "a small cat follows the old man",
    "",
]
ROW = re.compile(r"^  (\S+) +<-  (\S+)  \((\d\.\d\d)\)$")  # one row of the alignment view


@pytest.fixture(scope="module")
def checkpoint(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding a tiny trained RNN."""
    work = tmp_path_factory.mktemp("translate_cli")
    train(compose_config("train", tiny_overrides(synthetic_dir, work, "rnn")), work / "run")
    return work / "run"


@pytest.fixture(scope="module")
def translator(checkpoint: Path) -> Translator:
    """The checkpoint loaded in this process, to compare the console script's output with."""
    return Translator.from_checkpoint(checkpoint, torch.device("cpu"))


@pytest.fixture(scope="module")
def expected(translator: Translator) -> list[str]:
    """The translation of every line of LINES, decoded in this process."""
    sources = translator.tokenizer.encode_src([line.strip() for line in LINES])
    nbests = decode_corpus(translator.model, sources, torch.device("cpu"), DecodeConfig(BEAM))
    return [translator.tokenizer.decode_tgt(hyps[0].tokens) for hyps in nbests]


def translate(args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the installed console script in ``cwd``, as a user would from a shell."""
    if not SCRIPT.is_file():
        pytest.skip(f"{SCRIPT} is not installed; run `pip install -e .` first")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a tiny model; keep the CPU for others
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def text(lines: list[str]) -> str:
    """Lines joined as a file holds them."""
    return "".join(line + "\n" for line in lines)


def test_stdin_to_stdout_keeps_every_line_and_prints_only_translations(
    checkpoint: Path, expected: list[str], tmp_path: Path
) -> None:
    result = translate(
        [f"checkpoint={checkpoint}", f"decode.beam_size={BEAM}"], tmp_path, text(LINES)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == text(expected)  # line i answers line i; no log lines
    assert [line == "" for line in expected] == [not line.strip() for line in LINES]
    assert expected[1] == "le voiture rouge voit un chien"
    assert list(tmp_path.iterdir()) == []  # no Hydra run directory or log file


def test_file_to_file(checkpoint: Path, expected: list[str], tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text(text(LINES), encoding="utf-8")
    result = translate(
        [f"checkpoint={checkpoint}", f"decode.beam_size={BEAM}", "input=in.txt", "output=out.txt"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == text(expected)


def test_nbest_lists_three_scored_hypotheses_per_sentence(
    checkpoint: Path, expected: list[str], tmp_path: Path
) -> None:
    args = [f"checkpoint={checkpoint}", f"decode.beam_size={BEAM}", "decode.nbest=3"]
    result = translate(args, tmp_path, text(LINES))
    assert result.returncode == 0, result.stderr
    entries: dict[int, list[tuple[float, str]]] = {}
    for line in result.stdout.splitlines():
        index, score, hypothesis = line.split("\t")
        entries.setdefault(int(index), []).append((float(score), hypothesis))
    assert list(entries) == list(range(len(LINES)))
    for index, source in enumerate(LINES):
        if not source.strip():
            assert entries[index] == [(0.0, "")]  # nothing to translate: one empty entry
            continue
        scores, hypotheses = zip(*entries[index], strict=True)
        assert len(hypotheses) == 3 and len(set(hypotheses)) == 3
        assert hypotheses[0] == expected[index]
        # raw log-probabilities; the order is by length-normalised score, so it may differ
        assert all(s < 0 for s in scores)


def test_show_alignment_and_heatmap_per_sentence(
    checkpoint: Path, translator: Translator, expected: list[str], tmp_path: Path
) -> None:
    args = [
        f"checkpoint={checkpoint}",
        f"decode.beam_size={BEAM}",
        "show_alignment=true",
        f"alignment_dir={tmp_path / 'maps'}",
    ]
    result = translate(args, tmp_path, text(LINES))
    assert result.returncode == 0, result.stderr
    blocks: list[tuple[str, list[tuple[str, str, float]]]] = []
    for line in result.stdout.splitlines():
        if line.startswith("  "):
            row = ROW.match(line)
            assert row, f"not an alignment row: {line!r}"
            blocks[-1][1].append((row[1], row[2], float(row[3])))
        else:
            blocks.append((line, []))
    assert [translation for translation, _ in blocks] == expected
    english_of = {f"▁{fr}": f"▁{en}" for en, fr in NOUNS.items()}
    for source, (translation, rows) in zip(LINES, blocks, strict=True):
        if not source.strip():
            assert rows == []
            continue
        # one row per target subword, then EOS; the subwords spell the translation
        targets = [target for target, _, _ in rows]
        assert targets[-1] == "</s>"
        assert "".join(targets[:-1]).replace("▁", " ").strip() == translation
        assert all(0.0 < weight <= 1.0 for _, _, weight in rows)
        pieces = translator.tokenizer.src_pieces(translator.tokenizer.encode_src([source])[0])
        assert {s for _, s, _ in rows} <= {"NULL" if p == "</s>" else p for p in pieces}
        # a French noun looks hardest at its English noun
        nouns = [(t, s) for t, s, _ in rows if t in english_of]
        assert nouns and all(english_of[t] == s for t, s in nouns), rows
    pngs = sorted((tmp_path / "maps").iterdir())
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i, s in enumerate(LINES) if s.strip()]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


@pytest.mark.parametrize(
    ("override", "named"),
    [("checkpoint={tmp}/missing.pt", "missing.pt"), ("input={tmp}/absent.txt", "absent.txt")],
)
def test_user_error_is_one_line_and_exit_2(
    checkpoint: Path, tmp_path: Path, override: str, named: str
) -> None:
    args = [f"checkpoint={checkpoint}", override.format(tmp=tmp_path)]
    result = translate(args, tmp_path, "the red car sees a dog\n")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and named in line


def test_a_source_over_the_positions_is_cut_and_its_alignment_still_drawn(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    overrides = [
        *tiny_overrides(synthetic_dir, tmp_path, "transformer"),
        "model.max_positions=12",
        "data.max_tokens=11",  # training pairs fit the positions (BOS + 11 target tokens)
        "train.max_steps=10",
        "train.valid_every=10",
    ]
    train(compose_config("train", overrides), tmp_path / "run")
    long_line = " ".join(["the red car sees a dog"] * 4)  # far over 12 subwords
    args = [
        f"checkpoint={tmp_path / 'run'}",
        "show_alignment=true",
        "alignment_format=pharaoh",
        f"alignment_dir={tmp_path / 'maps'}",
    ]
    result = translate(args, tmp_path, text([long_line, "a dog"]))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "sentence 1 has" in result.stderr and "max_positions=12" in result.stderr
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["00000.png", "00001.png"]
