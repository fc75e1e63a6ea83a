"""Downloads without the network: file:// URLs stand in for the servers."""

from __future__ import annotations

import gzip
import hashlib
import logging
import urllib.error
import zipfile
from pathlib import Path

import pytest

from seq2seq.data import download
from seq2seq.data.download import ensure_multi30k, ensure_tatoeba, fetch
from seq2seq.errors import UserError
from tests.conftest import SHARED_DATA


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Path:
    """A directory playing the remote side."""
    directory = tmp_path / "server"
    directory.mkdir()
    return directory


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_fetch_good_checksum(server: Path, tmp_path: Path) -> None:
    data = b"payload\n" * 1000
    (server / "f.gz").write_bytes(data)
    dest = tmp_path / "root" / "f.gz"
    assert fetch((server / "f.gz").as_uri(), dest, sha256(data)) == dest
    assert dest.read_bytes() == data
    assert leftovers(dest.parent) == ["f.gz"]  # no temporary file left behind


def test_fetch_bad_checksum_discards_download(server: Path, tmp_path: Path) -> None:
    (server / "f.gz").write_bytes(b"tampered")
    dest = tmp_path / "root" / "f.gz"
    with pytest.raises(UserError, match="Checksum mismatch") as err:
        fetch((server / "f.gz").as_uri(), dest, sha256(b"original"))
    assert sha256(b"tampered") in str(err.value)
    assert leftovers(dest.parent) == []


def test_fetch_unreachable_url(tmp_path: Path) -> None:
    dest = tmp_path / "root" / "f.gz"
    with pytest.raises(UserError, match="could not be downloaded"):
        fetch((tmp_path / "absent.gz").as_uri(), dest, None)
    assert leftovers(dest.parent) == []


def test_fetch_without_checksum_warns(
    server: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (server / "f").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="seq2seq.data.download"):
        fetch((server / "f").as_uri(), tmp_path / "f", None)
    assert "no known checksum" in caplog.text


def test_checksum_table_matches_shared_copy() -> None:
    sums = SHARED_DATA / "multi30k" / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"no {sums}")
    table = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    assert table == download.MULTI30K_SHA256


def fake_multi30k(server: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
    """Serve gz files from ``server`` with their checksums known."""
    for name, text in files.items():
        (server / name).write_bytes(gzip.compress(text.encode()))
    monkeypatch.setattr(download, "MULTI30K_URL", server.as_uri() + "/{split}.{lang}.gz")
    table = {name: sha256((server / name).read_bytes()) for name in files}
    monkeypatch.setattr(download, "MULTI30K_SHA256", table)


def test_ensure_multi30k_downloads_missing_files(
    server: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_multi30k(server, monkeypatch, {"val.en.gz": "A dog.\n", "val.fr.gz": "Un chien.\n"})
    root = tmp_path / "multi30k"
    root.mkdir()
    (root / "val.en.gz").write_bytes(gzip.compress(b"Local.\n"))  # present: kept as is
    paths = ensure_multi30k(root, "val", ["en", "fr"])
    assert paths == {"en": root / "val.en.gz", "fr": root / "val.fr.gz"}
    assert gzip.decompress(paths["en"].read_bytes()) == b"Local.\n"
    assert gzip.decompress(paths["fr"].read_bytes()) == b"Un chien.\n"


def test_ensure_multi30k_offline_names_files_and_data_root(
    server: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_multi30k(server, monkeypatch, {})
    with pytest.raises(UserError) as err:
        ensure_multi30k(tmp_path / "multi30k", "test_2018_flickr", ["en", "fr"])
    message = str(err.value)
    assert "test_2018_flickr.en.gz, test_2018_flickr.fr.gz" in message
    assert "data.root=/path/to/multi30k" in message


def make_tutorial_zip(server: Path, content: bytes) -> Path:
    archive = server / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/eng-fra.txt", content)
        zf.writestr("data/names/French.txt", "Adam\n")
    return archive


def test_ensure_tatoeba_extracts_and_verifies(
    server: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"Go.\tVa !\nHi.\tSalut !\n"
    archive = make_tutorial_zip(server, content)
    monkeypatch.setattr(download, "TATOEBA_URL", archive.as_uri())
    monkeypatch.setattr(download, "TATOEBA_MD5", hashlib.md5(content).hexdigest())
    root = tmp_path / "tatoeba"
    path = ensure_tatoeba(root)
    assert path == root / "eng-fra.txt" and path.read_bytes() == content
    assert leftovers(root) == ["eng-fra.txt"]  # the archive is not kept
    assert ensure_tatoeba(root) == path  # present now: no second download
    monkeypatch.setattr(download, "TATOEBA_MD5", "0" * 32)
    with pytest.raises(UserError, match="has md5"):
        ensure_tatoeba(tmp_path / "other")
    assert leftovers(tmp_path / "other") == []


def test_ensure_tatoeba_prefers_local_gz_and_reports_offline(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "eng-fra.txt.gz").write_bytes(gzip.compress(b"Go.\tVa !\n"))
    assert ensure_tatoeba(tmp_path) == tmp_path / "eng-fra.txt.gz"
    monkeypatch.setattr(download, "TATOEBA_URL", (tmp_path / "absent.zip").as_uri())
    with pytest.raises(UserError, match="data.root=/path/to/tatoeba-eng-fra"):
        ensure_tatoeba(tmp_path / "empty")


def test_ensure_multi30k_missing_upstream_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_found(url: str, timeout: float) -> None:
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]

    monkeypatch.setattr(download.urllib.request, "urlopen", not_found)
    with pytest.raises(UserError, match=r"HTTP 404.*test_2017_mscoco\.fr\.gz may not exist"):
        ensure_multi30k(tmp_path, "test_2017_mscoco", ["fr"])
    assert leftovers(tmp_path) == []
