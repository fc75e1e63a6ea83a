"""SentencePiece training, caching, checkpoint state, and the encoding pipeline around it."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch

from seq2seq.config import DataConfig, TokenizerConfig
from seq2seq.data import prepared
from seq2seq.data import tokenizer as tokenizer_module
from seq2seq.data.corpora import ParallelCorpus
from seq2seq.data.pipeline import EncodedCorpus, filter_lengths, prepare_data
from seq2seq.data.synthetic import generate
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError
from seq2seq.special_tokens import BOS_ID, EOS_ID, PAD_ID


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str]]:
    pairs = generate(300, seed=3)
    return [p.src for p in pairs], [p.tgt for p in pairs]


def config(**overrides: object) -> TokenizerConfig:
    return TokenizerConfig(**({"vocab_size": 80} | overrides))


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: object) -> bytes:
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(tokenizer_module, "_train", no_training)


def test_joint_tokenizer_round_trip_and_cache_reuse(
    texts: tuple[list[str], list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, tgt = texts
    tok = Tokenizer.train_or_load(config(), src, tgt, tmp_path)
    assert tok.joint and tok.src_vocab_size == tok.tgt_vocab_size == 80
    assert tok.src_pieces([PAD_ID, 1, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]
    ids = tok.encode_src(src[:20])
    assert all(ids) and [tok.decode_src(seq) for seq in ids] == src[:20]
    # Target and source share the model: French words encode identically on either side.
    # with the NULL position (the default) every source ends in EOS
    assert [[*ids, EOS_ID] for ids in tok.encode_tgt(tgt[:5])] == tok.encode_src(tgt[:5])
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1 and (cached[0] / "sentencepiece.model").is_file()

    forbid_training(monkeypatch)
    again = Tokenizer.train_or_load(config(), src, tgt, tmp_path)
    assert again.to_state() == tok.to_state()
    with pytest.raises(AssertionError, match="reused"):  # other text: a new model is needed
        Tokenizer.train_or_load(config(), src[:-1], tgt[:-1], tmp_path)
    with pytest.raises(AssertionError, match="reused"):  # other settings: likewise
        Tokenizer.train_or_load(config(model_type="bpe"), src, tgt, tmp_path)


def test_decode_ignores_specials(texts: tuple[list[str], list[str]], tmp_path: Path) -> None:
    tok = Tokenizer.train_or_load(config(), *texts, tmp_path)
    sentence = texts[1][0]
    ids = tok.encode_tgt([sentence])[0]
    assert tok.decode_tgt([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == sentence


def test_separate_models_state_round_trip(
    texts: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    src, tgt = texts
    tok = Tokenizer.train_or_load(config(joint=False, vocab_size=50), src, tgt, tmp_path)
    assert not tok.joint and tok.src_vocab_size == tok.tgt_vocab_size == 50
    # Each side has its own pieces: English words are whole pieces only in the source model.
    assert "▁house" in tok.src_pieces(range(50)) and "▁house" not in tok.tgt_pieces(range(50))

    buffer = io.BytesIO()
    torch.save({"tokenizer": tok.to_state()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["tokenizer"]
    restored = Tokenizer.from_state(state)
    assert restored.to_state() == tok.to_state()
    assert restored.encode_src(src[:10]) == tok.encode_src(src[:10])
    assert restored.encode_tgt(tgt[:10]) == tok.encode_tgt(tgt[:10])

    files = tok.save(tmp_path / "ckpt")  # the NULL position (on by default) as a marker file
    assert sorted(p.name for p in files) == ["null_position", "src.model", "tgt.model"]
    assert Tokenizer.load(tmp_path / "ckpt").to_state() == tok.to_state()
    assert restored.encode_src(["a"])[0][-1] == EOS_ID  # every non-empty source ends in EOS
    tok.null_position = False
    assert [p.name for p in tok.save(tmp_path / "plain")] == ["src.model", "tgt.model"]
    assert not Tokenizer.load(tmp_path / "plain").null_position


def test_malformed_state_is_a_user_error() -> None:
    with pytest.raises(UserError, match="tokenizer entry is malformed"):
        Tokenizer.from_state({"joint": True})
    with pytest.raises(UserError, match="Not a SentencePiece model"):
        Tokenizer.from_state({"joint": True, "src_model": b"garbage", "tgt_model": None})


def test_vocab_too_large_or_small_names_the_override(
    texts: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    src, tgt = texts[0][:30], texts[1][:30]
    with pytest.raises(UserError, match=r"data\.tokenizer\.vocab_size=5000 is too large") as err:
        Tokenizer.train_or_load(config(vocab_size=5000), src, tgt, tmp_path)
    suggested = int(str(err.value).split("at most ")[1].split()[0])
    assert 50 < suggested < 5000
    with pytest.raises(UserError, match=r"too small.*Raise data\.tokenizer\.vocab_size"):
        Tokenizer.train_or_load(config(vocab_size=10), src, tgt, tmp_path)
    with pytest.raises(UserError, match="model_type='char'"):
        Tokenizer.train_or_load(config(model_type="char"), src, tgt, tmp_path)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging left over


# ------------------------------------------------------------------------- pipeline


def test_filter_lengths_golden_counts() -> None:
    ids = {"a": [5], "b": [5, 6], "c": [5] * 4, "d": [5] * 9, "e": []}
    pairs = [("a", "b"), ("a", "c"), ("d", "d"), ("b", "c"), ("e", "a")]
    corpus = EncodedCorpus(
        ParallelCorpus([s for s, _ in pairs], [t for _, t in pairs]),
        [ids[s] for s, _ in pairs],
        [ids[t] for _, t in pairs],
    )
    kept, counts = filter_lengths(corpus, max_tokens=8, max_length_ratio=3.0)
    assert kept.raw == ParallelCorpus(["a", "b"], ["b", "c"])
    assert kept.src_ids == [[5], [5, 6]] and kept.tgt_ids == [[5, 6], [5] * 4]
    assert counts == {"empty_ids": 1, "max_tokens": 1, "max_length_ratio": 1}
    with pytest.raises(UserError, match=r"raise data\.max_tokens"):
        filter_lengths(corpus, max_tokens=0, max_length_ratio=None)


def write_files(directory: Path, name: str, src: list[str], tgt: list[str]) -> dict[str, str]:
    (directory / f"{name}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
    (directory / f"{name}.tgt").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")
    return {
        f"{name}_src": str(directory / f"{name}.src"),
        f"{name}_tgt": str(directory / f"{name}.tgt"),
    }


def test_prepare_data_filters_encodes_and_caches(
    texts: tuple[list[str], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    src, tgt = list(texts[0]), list(texts[1])
    src[1], tgt[2] = "", "x" * 500  # an empty side and an over-long one
    src[3] = " ".join([src[3]] * 4)  # a source far longer than its target
    long_valid = " ".join(texts[0][:30])  # valid is never filtered by length
    paths = write_files(tmp_path, "train", src, tgt)
    paths |= write_files(tmp_path, "valid", [long_valid, "the dog"], ["le chien " * 30, "le chien"])
    cfg = DataConfig(
        name="files",
        cache_dir=str(tmp_path / "cache"),
        max_chars=200,
        max_tokens=64,  # the 4x source is 60 subwords + the NULL position
        max_length_ratio=3.0,
        max_train_examples=250,
        tokenizer=config(),
        **paths,
    )
    log = logging.getLogger("test_prepare")
    with caplog.at_level(logging.INFO, logger="test_prepare"):
        data = prepare_data(cfg, log)
    assert "250 pairs read, removed 1 with an empty side, 1 over data.max_chars=200" in caplog.text
    assert "1 over data.max_length_ratio=3" in caplog.text
    kept = [i for i in range(250) if i not in (1, 2, 3)]
    assert len(data.train) == 247
    expected_src = data.tokenizer.encode_src([src[i] for i in kept])
    expected_tgt = data.tokenizer.encode_tgt([tgt[i] for i in kept])
    assert [data.train[i][1].tolist() for i in range(247)] == expected_src
    assert [data.train[i][2].tolist() for i in range(247)] == expected_tgt
    assert data.valid.raw.src == [long_valid, "the dog"] and len(data.valid.src_ids[0]) > 64

    def no_preparation(*args: object) -> None:
        raise AssertionError("the prepared shards should be reused")

    forbid_training(monkeypatch)
    monkeypatch.setattr(prepared, "build_prepared", no_preparation)
    again = prepare_data(cfg, log)
    assert [again.train[i][1].tolist() for i in range(247)] == expected_src
    assert again.valid == data.valid
