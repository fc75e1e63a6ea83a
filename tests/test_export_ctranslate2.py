"""seq2seq-export to CTranslate2: every weight in one slot, the same token ids, clear refusals."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from seq2seq.cli.evaluate import evaluate
from seq2seq.cli.export import run as export_run
from seq2seq.cli.translate import run as translate_run
from seq2seq.config import DecodeConfig
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.engines import open_translator
from seq2seq.errors import UserError
from seq2seq.export.directory import MANIFEST, export_checkpoint
from seq2seq.export.engine import CTranslate2Translator
from seq2seq.export.spec import transformer_spec
from seq2seq.inference import Translator
from seq2seq.models.build import build_model
from seq2seq.models.transformer import TransformerSeq2Seq
from seq2seq.training.trainer import train
from tests.conftest import compose_config, small_overrides, tiny_overrides

needs_ct2 = pytest.mark.skipif(
    importlib.util.find_spec("ctranslate2") is None,
    reason="ctranslate2 is not installed: pip install -e '.[export]'",
)
CPU = torch.device("cpu")
SCRIPTS = Path(sys.executable).parent
# (pre-norm, positions, tied, joint vocabulary): every layout the converter must express
LAYOUTS = [
    (True, "sinusoidal", True, True),
    (False, "sinusoidal", True, True),
    (True, "learned", False, True),
    (False, "learned", True, False),
    (True, "sinusoidal", False, False),
]


@pytest.fixture(scope="module")
def tokenizers(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A joint and a separate pair of SentencePiece models trained on the small corpus."""
    src = (small_corpus / "train.src").read_text().splitlines()
    tgt = (small_corpus / "train.tgt").read_text().splitlines()
    cache = tmp_path_factory.mktemp("export_sp")
    made = {}
    for joint in (True, False):
        cfg = OmegaConf.merge(
            compose_config("train", ["model=transformer"]).data.tokenizer,
            {"joint": joint, "vocab_size": 50},
        )
        made[joint] = Tokenizer.train_or_load(cfg, src, tgt, cache)
    return made


def layout_config(norm_first: bool, positional: str, tied: bool) -> dict:
    """The model config of a tiny Transformer of the given layout."""
    return {
        "family": "transformer",
        "d_model": 32,
        "heads": 4,
        "enc_layers": 2,
        "dec_layers": 3,
        "ff_dim": 48,
        "dropout": 0.0,
        "attn_dropout": 0.0,
        "norm_first": norm_first,
        "positional": positional,
        "max_positions": 64,
        "tie_embeddings": tied,
        "encoder_self_attention": "softmax",
        "decoder_self_attention": "softmax",
    }


def random_model(tokenizer: Tokenizer, config: dict) -> TransformerSeq2Seq:
    """A randomly initialised model of ``config``, in eval mode."""
    torch.manual_seed(0)
    model = build_model(
        config, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, joint_vocab=tokenizer.joint
    )
    if config["positional"] == "learned":  # N(0, 1) would drown the tokens: keep both visible
        torch.nn.init.normal_(model.positions.weight, std=0.3)
    return model.eval()


@needs_ct2
@pytest.mark.parametrize(("norm_first", "positional", "tied", "joint"), LAYOUTS)
def test_every_weight_fills_exactly_one_slot(
    tokenizers: dict, norm_first: bool, positional: str, tied: bool, joint: bool
) -> None:
    model = random_model(tokenizers[joint], layout_config(norm_first, positional, tied))
    spec, mapped = transformer_spec(model, tokenizers[joint], heads=4)  # validates the spec
    assert sorted(mapped) == sorted(model.state_dict())  # each name once, none left out
    assert hasattr(spec.encoder, "layer_norm") == norm_first  # pre-norm's final norms only
    spec.decoder.layer[1].attention.linear[1].bias = None  # one slot left empty ...
    with pytest.raises(ValueError, match="not set"):
        spec.validate()  # ... is caught


@needs_ct2
def test_a_weight_without_a_slot_is_refused(tokenizers: dict) -> None:
    model = random_model(tokenizers[True], layout_config(True, "sinusoidal", True))
    model.register_parameter("extra_scale", torch.nn.Parameter(torch.ones(1)))
    with pytest.raises(ValueError, match="extra_scale"):
        transformer_spec(model, tokenizers[True], heads=4)


def save_random(model: TransformerSeq2Seq, config: dict, tokenizer: Tokenizer, path: Path) -> Path:
    """A checkpoint of ``model`` with the entries translation reads, as seq2seq-train's."""
    state = {"model": model.state_dict(), "model_config": config}
    torch.save({**state, "tokenizer": tokenizer.to_state(), "format_version": 1}, path)
    return path


@needs_ct2
@pytest.mark.parametrize(("norm_first", "positional", "tied", "joint"), LAYOUTS)
def test_random_layouts_decode_the_same_greedy_ids(
    tokenizers: dict, tmp_path: Path, norm_first: bool, positional: str, tied: bool, joint: bool
) -> None:
    """Numerical parity per layout: greedy search follows the logits' argmax at every step."""
    tokenizer = tokenizers[joint]
    config = layout_config(norm_first, positional, tied)
    model = random_model(tokenizer, config)
    checkpoint = save_random(model, config, tokenizer, tmp_path / "random.pt")
    export_checkpoint(checkpoint, tmp_path / "ct2", "none")
    sources = tokenizer.encode_src(["the red car sees a dog", "a cat", "every old man likes it"])
    opts = DecodeConfig(beam_size=1, max_len_a=1.0, max_len_b=5)
    native = Translator.from_checkpoint(checkpoint, CPU).decode(sources, opts)
    exported = CTranslate2Translator(tmp_path / "ct2", "cpu", 1).decode(sources, opts)
    assert [h[0].tokens for h in exported] == [h[0].tokens for h in native]
    assert any(len(h[0].tokens) > 2 for h in native)  # a random model says something


@pytest.fixture(scope="module")
def trained(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding a tiny trained Transformer."""
    work = tmp_path_factory.mktemp("export_trained")
    overrides = [*tiny_overrides(synthetic_dir, work, "transformer"), "train.max_steps=200"]
    train(compose_config("train", overrides), work / "run")
    return work / "run"


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run exported without quantization."""
    if importlib.util.find_spec("ctranslate2") is None:
        pytest.skip("ctranslate2 is not installed: pip install -e '.[export]'")
    output = tmp_path_factory.mktemp("export_out") / "ct2"
    export_run(compose_config("export", [f"checkpoint={trained}", f"output={output}"]))
    return output


@needs_ct2
@pytest.mark.parametrize("beam", [1, 4])
def test_trained_model_gives_the_native_token_ids(
    trained: Path, exported: Path, synthetic_dir: Path, beam: int
) -> None:
    native = Translator.from_checkpoint(trained, CPU)
    engine = CTranslate2Translator(exported, "cpu", 1)
    lines = (synthetic_dir / "test.src").read_text().splitlines()
    sources = native.tokenizer.encode_src(lines)
    opts = DecodeConfig(beam_size=beam, batch_size=16)
    want = [h[0].tokens for h in native.decode(sources, opts)]
    assert [h[0].tokens for h in engine.decode(sources, opts)] == want
    assert len({tuple(t) for t in want}) > 50  # real, varied translations


@needs_ct2
def test_exported_directory_is_self_contained(exported: Path) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {"model.bin", "config.json", "shared_vocabulary.json", MANIFEST} <= names
    assert "sentencepiece.model" in names  # the tokenizer travels with the model
    tokenizer = Tokenizer.load(exported)
    vocabulary = json.loads((exported / "shared_vocabulary.json").read_text())
    assert vocabulary == tokenizer.tgt_pieces(range(tokenizer.tgt_vocab_size))  # id order


def translate_lines(checkpoint: Path, lines: str, *overrides: str) -> str:
    """What seq2seq-translate writes for ``lines`` on stdin."""
    out = io.StringIO()
    cfg = compose_config("translate", [f"checkpoint={checkpoint}", "threads=1", *overrides])
    translate_run(cfg, io.BytesIO(lines.encode()), out)
    return out.getvalue()


@needs_ct2
def test_translate_and_evaluate_take_the_exported_directory(
    trained: Path, exported: Path, tmp_path: Path
) -> None:
    lines = "the red car sees a dog\n\na small cat follows the old man\n"
    assert translate_lines(exported, lines) == translate_lines(trained, lines)
    cfg = compose_config("evaluate", [f"checkpoint={exported}", "threads=1", "decode.beam_size=2"])
    results = evaluate(cfg, tmp_path / "eval")
    assert results["test"]["bleu"]["score"] > 50  # the tiny model has learnt the toy task
    with pytest.raises(UserError, match="unavailable for the ctranslate2 engine"):
        translate_lines(exported, lines, "show_alignment=true")


@pytest.fixture(scope="module")
def refused_runs(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """4-step runs the export must refuse: an RNN and a Transformer with efficient attention."""
    work = tmp_path_factory.mktemp("export_refused")
    runs = {}
    for name, changes in {
        "rnn": [],
        "efficient": ["model=transformer", "model.encoder_self_attention=efficient"],
    }.items():
        train(compose_config("train", small_overrides(small_corpus, work, *changes)), work / name)
        runs[name] = work / name
    return runs


@needs_ct2
def test_export_refuses_an_rnn_with_one_line_and_status_2(
    refused_runs: dict[str, Path], tmp_path: Path
) -> None:
    script = SCRIPTS / "seq2seq-export"
    if not script.is_file():
        pytest.skip(f"{script} is not installed; run `pip install -e .` first")
    result = subprocess.run(
        [str(script), f"checkpoint={refused_runs['rnn']}", "output=out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {refused_runs['rnn'] / 'checkpoints' / 'best.pt'} cannot be exported: it is a "
        f"rnn model; CTranslate2 export takes Transformer checkpoints only."
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a staging directory


@needs_ct2
def test_export_refuses_efficient_attention(refused_runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"its encoder uses efficient \(linear\) self-attention"):
        export_checkpoint(refused_runs["efficient"], tmp_path / "out", "none")
    assert list(tmp_path.iterdir()) == []


def test_export_without_ctranslate2_says_what_to_install(
    refused_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 -> ImportError
    with pytest.raises(UserError, match=r"pip install 'seq2seq\[export\]'"):
        export_checkpoint(refused_runs["efficient"], tmp_path / "out", "none")
    assert list(tmp_path.iterdir()) == []


@needs_ct2
def test_other_refusals(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="already exists; give a new"):
        export_checkpoint(exported, exported, "none")
    bad = compose_config("export", ["checkpoint=x.pt", "output=o", "quantization=int4"])
    with pytest.raises(UserError, match="quantization=int4: must be one of"):
        export_run(bad)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.bin").write_bytes(b"\0")
    with pytest.raises(UserError, match="seq2seq-export did not write"):
        open_translator(str(foreign), "cpu", 1)
