"""Reading, validating, splitting and filtering parallel text."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from seq2seq.config import DataConfig
from seq2seq.data import download
from seq2seq.data.corpora import (
    ParallelCorpus,
    filter_pairs,
    load_split,
    read_lines,
    read_parallel,
    read_tsv,
    tatoeba_split_of,
)
from seq2seq.errors import UserError
from tests.conftest import SHARED_DATA


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def test_read_lines_plain_gz_crlf_bom(tmp_path: Path) -> None:
    plain = write(tmp_path / "a.txt", "\ufeffone\r\n  two  \r\n\r\nfour")
    gz = write(tmp_path / "a.txt.gz", "one\ntwo\n")
    assert read_lines(plain) == ["one", "two", "", "four"]
    assert read_lines(gz) == ["one", "two"]


def test_read_lines_keeps_unusual_separators_inside_a_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "a\u2028b\x1cc\nd\n")
    assert read_lines(path) == ["a\u2028b\x1cc", "d"]


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.fr", b"ok\nfine\ncaf\xe9\n")
    with pytest.raises(UserError, match=r"bad\.fr, line 3: not valid UTF-8"):
        read_lines(path)
    gz = write(tmp_path / "bad.fr.gz", b"caf\xe9\n")
    with pytest.raises(UserError, match=r"bad\.fr\.gz, line 1"):
        read_lines(gz)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.en does not exist"):
        read_lines(tmp_path / "nope.en")
    (tmp_path / "broken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match=r"broken\.gz could not be read"):
        read_lines(tmp_path / "broken.gz")


def test_line_count_mismatch_names_both_files_and_counts(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", "a\nb\nc\n")
    tgt = write(tmp_path / "train.fr", "x\ny\n")
    with pytest.raises(UserError) as err:
        read_parallel(src, tgt)
    message = str(err.value)
    assert f"{src} has 3 lines" in message and f"{tgt} has 2" in message


def test_read_tsv(tmp_path: Path) -> None:
    path = write(tmp_path / "p.tsv", "Hi.\tSalut !\textra\r\nGo. \t Va !\n")
    assert read_tsv(path) == ParallelCorpus(["Hi.", "Go."], ["Salut !", "Va !"])
    bad = write(tmp_path / "bad.tsv", "a\tb\nno tab here\n")
    with pytest.raises(UserError, match=r"bad\.tsv, line 2: no tab"):
        read_tsv(bad)


def test_filter_pairs_counts_reasons_and_survives_huge_lines() -> None:
    corpus = ParallelCorpus(
        ["short", "", "x" * 100_000, "ok", "fine"], ["court", "vide", "y", "", "bien"]
    )
    kept, counts = filter_pairs(corpus, max_chars=1000)
    assert kept == ParallelCorpus(["short", "fine"], ["court", "bien"])
    assert counts == {"empty": 2, "max_chars": 1}
    kept, counts = filter_pairs(corpus, max_chars=None)
    assert len(kept) == 3 and counts["max_chars"] == 0


def test_filter_pairs_empty_corpus_errors() -> None:
    with pytest.raises(UserError, match="train split is empty"):
        filter_pairs(ParallelCorpus([], []), 10, name="train split")
    with pytest.raises(UserError, match=r"raise data\.max_chars"):
        filter_pairs(ParallelCorpus(["long sentence"], ["phrase longue"]), 5)


# ------------------------------------------------------------------------- multi30k


def multi30k_config(root: Path, src: str = "en", tgt: str = "fr") -> DataConfig:
    return DataConfig(name="multi30k", root=str(root), src=src, tgt=tgt)


@pytest.mark.parametrize(("src", "tgt"), [("en", "es"), ("en", "en"), ("cs", "de")])
def test_multi30k_rejects_language_pairs_it_lacks(tmp_path: Path, src: str, tgt: str) -> None:
    with pytest.raises(UserError, match="two different languages of en, de, fr"):
        load_split(multi30k_config(tmp_path, src, tgt), "train")


def test_multi30k_unknown_split_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="test_2017_mscoco, test_2018_flickr"):
        load_split(multi30k_config(tmp_path), "test2016")


def test_multi30k_reads_local_files_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object) -> Path:
        raise AssertionError("must not download files that are present")

    monkeypatch.setattr(download, "fetch", no_network)
    write(tmp_path / "val.de.gz", "Ein Hund.\nZwei Katzen.\n")
    write(tmp_path / "val.en", "A dog.\nTwo cats.\n")  # an uncompressed copy works too
    corpus = load_split(multi30k_config(tmp_path, "de", "en"), "val")
    assert corpus == ParallelCorpus(["Ein Hund.", "Zwei Katzen."], ["A dog.", "Two cats."])


def test_real_multi30k_counts() -> None:
    root = SHARED_DATA / "multi30k"
    if not (root / "train.en.gz").is_file():
        pytest.skip(f"no Multi30k copy at {root}")
    cfg = multi30k_config(root)
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    assert (len(train), len(val)) == (29000, 1014)
    assert train.src[0] == "Two young, White males are outside near many bushes."
    assert train.tgt[0] == "Deux jeunes hommes blancs sont dehors près de buissons."


# ------------------------------------------------------------------------- tatoeba


def tatoeba_config(root: Path, **overrides: object) -> DataConfig:
    settings: dict = {
        "src": "en",
        "tgt": "fr",
        "valid_fraction": 0.2,
        "test_fraction": 0.2,
        "split_seed": 7,
    } | overrides
    return DataConfig(name="tatoeba", root=str(root), **settings)


@pytest.fixture
def tatoeba_root(tmp_path: Path) -> Path:
    """An eng-fra.txt with repeated English sides and French no-break spaces."""
    lines = []
    for i in range(150):
        lines.append(f"Sentence {i}.\tPhrase {i}\u202f!")
        if i % 3 == 0:  # a second translation of the same English sentence
            lines.append(f"sentence  {i}.\tUne autre phrase {i}\u00a0?")
    write(tmp_path / "eng-fra.txt", "\n".join(lines) + "\n")
    return tmp_path


def test_tatoeba_splits_are_deterministic_disjoint_and_complete(tatoeba_root: Path) -> None:
    cfg = tatoeba_config(tatoeba_root)
    splits = {name: load_split(cfg, name) for name in ("train", "valid", "test")}
    assert splits["valid"] == load_split(cfg, "val") == load_split(cfg, "valid")
    assert sum(len(c) for c in splits.values()) == 200
    # Normalised English sides (case and spacing folded) never appear in two splits.
    seen = {name: {" ".join(s.casefold().split()) for s in c.src} for name, c in splits.items()}
    assert not seen["train"] & seen["valid"] and not seen["train"] & seen["test"]
    assert not seen["valid"] & seen["test"]
    assert all(20 <= len(seen[name]) <= 45 for name in ("valid", "test"))  # ~30 of 150 each
    assert all("\u00a0" not in t and "\u202f" not in t for c in splits.values() for t in c.tgt)
    assert "Phrase 0 !" in splits[tatoeba_split_of("Sentence 0.", 7, 0.2, 0.2)].tgt
    other_seed = load_split(tatoeba_config(tatoeba_root, split_seed=8), "test")
    assert other_seed.src != splits["test"].src


def test_tatoeba_direction_follows_src_tgt(tatoeba_root: Path) -> None:
    en_fr = load_split(tatoeba_config(tatoeba_root), "test")
    fr_en = load_split(tatoeba_config(tatoeba_root, src="fr", tgt="en"), "test")
    assert fr_en == ParallelCorpus(en_fr.tgt, en_fr.src)


def test_tatoeba_rejects_other_languages_and_bad_fractions(tatoeba_root: Path) -> None:
    with pytest.raises(UserError, match="data.src=en data.tgt=fr"):
        load_split(tatoeba_config(tatoeba_root, tgt="de"), "train")
    with pytest.raises(UserError, match="sum to less than 1"):
        load_split(tatoeba_config(tatoeba_root, valid_fraction=0.6, test_fraction=0.5), "train")
    with pytest.raises(UserError, match="no split 'dev'"):
        load_split(tatoeba_config(tatoeba_root), "dev")


def test_extra_training_text_follows_the_train_split_only(
    tatoeba_root: Path, tmp_path: Path
) -> None:
    write(tmp_path / "gold.en", "the house\n")
    write(tmp_path / "gold.fr", "la maison\n")
    twice = {"extra_train_src": [str(tmp_path / "gold.en")] * 2}
    cfg = tatoeba_config(tatoeba_root, **twice, extra_train_tgt=[str(tmp_path / "gold.fr")] * 2)
    plain = tatoeba_config(tatoeba_root)
    train = load_split(cfg, "train")
    assert train.src == [*load_split(plain, "train").src, "the house", "the house"]
    assert train.tgt[-2:] == ["la maison", "la maison"]
    assert load_split(cfg, "valid") == load_split(plain, "valid")  # only training grows
    one_side = tatoeba_config(tatoeba_root, extra_train_src=str(tmp_path / "gold.en"))
    with pytest.raises(UserError, match=r"only one side; set data\.extra_train_tgt"):
        load_split(one_side, "train")


def test_real_tatoeba_splits() -> None:
    root = SHARED_DATA / "tatoeba-eng-fra"
    if not (root / "eng-fra.txt.gz").is_file():
        pytest.skip(f"no Tatoeba eng-fra copy at {root}")
    cfg = DataConfig(name="tatoeba", root=str(root))
    splits = [load_split(cfg, name) for name in ("train", "valid", "test")]
    assert sum(len(c) for c in splits) == 135842
    train, valid, test = ({s.casefold() for s in c.src} for c in splits)
    assert not train & valid and not train & test and not valid & test


# ------------------------------------------------------------------------- files


def test_files_dataset_src_tgt_tsv_and_missing_split(tmp_path: Path) -> None:
    write(tmp_path / "train.de", "Hallo\nWelt\n")
    write(tmp_path / "train.en.gz", "Hello\nWorld\n")
    write(tmp_path / "dev.tsv", "Ja\tYes\n")
    cfg = DataConfig(
        name="files",
        train_src=str(tmp_path / "train.de"),
        train_tgt=str(tmp_path / "train.en.gz"),
        valid_tsv=str(tmp_path / "dev.tsv"),
    )
    assert load_split(cfg, "train") == ParallelCorpus(["Hallo", "Welt"], ["Hello", "World"])
    assert load_split(cfg, "val") == load_split(cfg, "valid") == ParallelCorpus(["Ja"], ["Yes"])
    with pytest.raises(UserError, match=r"data\.test_src=\.\.\. data\.test_tgt=\.\.\."):
        load_split(cfg, "test")
    with pytest.raises(UserError, match=r"set data\.test_tgt"):
        load_split(DataConfig(name="files", test_src=str(tmp_path / "train.de")), "test")
    with pytest.raises(UserError, match="no split 'extra'"):
        load_split(cfg, "extra")


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="multi30k, tatoeba, files"):
        load_split(DataConfig(name="wmt14"), "train")
