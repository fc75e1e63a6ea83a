"""Fetch public corpora once, verified by checksum, never leaving a partial file behind."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from seq2seq.errors import UserError

log = logging.getLogger(__name__)

MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{split}.{lang}.gz"
# From the upstream repository at commit a3d2e0d26b56f3846f66a952536ffed4e401d05a.
MULTI30K_SHA256 = {
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}
TATOEBA_URL = "https://download.pytorch.org/tutorial/data.zip"
TATOEBA_MEMBER = "data/eng-fra.txt"
TATOEBA_MD5 = "8eb80974d55e8f67c92617eec24a79c8"  # of the unzipped eng-fra.txt
CHUNK = 1 << 20


class DownloadError(UserError):
    """The server could not be reached or refused the file (as opposed to a bad checksum)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        """``status``: the HTTP status when the server answered, else None."""
        super().__init__(message)
        self.status = status


def fetch(url: str, dest: Path, sha256: str | None) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its SHA-256 when one is known."""
    dest = Path(dest)
    if sha256 is None:
        log.warning("no known checksum for %s; its content is not verified", url)
    log.info("downloading %s -> %s", url, dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as err:  # a read-only data.root
        raise DownloadError(f"{dest.parent} is not writable ({err.strerror})") from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as err:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{url} answered HTTP {err.code} ({err.reason})", err.code) from None
    except (urllib.error.URLError, OSError) as err:
        tmp.unlink(missing_ok=True)
        reason = getattr(err, "reason", err)
        raise DownloadError(f"{url} could not be downloaded ({reason})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sha256 is not None and digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"Checksum mismatch for {url}: got sha256 {digest.hexdigest()}, expected {sha256}. "
            f"The download was discarded; retry, or put a verified copy at {dest}."
        )
    os.replace(tmp, dest)
    return dest


def ensure_multi30k(root: Path, split: str, langs: list[str]) -> dict[str, Path]:
    """Paths of ``{split}.{lang}`` under ``root`` (gz or plain), downloading missing ones."""
    root = Path(root)
    paths, missing = {}, []
    for lang in langs:
        gz, plain = root / f"{split}.{lang}.gz", root / f"{split}.{lang}"
        if gz.is_file() or plain.is_file():
            paths[lang] = gz if gz.is_file() else plain
        else:
            missing.append(lang)
    for lang in missing:
        name = f"{split}.{lang}.gz"
        try:
            paths[lang] = fetch(
                MULTI30K_URL.format(split=split, lang=lang), root / name, MULTI30K_SHA256.get(name)
            )
        except DownloadError as err:
            files = ", ".join(f"{split}.{m}.gz" for m in missing if m not in paths)
            upstream = (
                f" Not every split exists in every language upstream ({split}.{lang}.gz may "
                f"not exist); pick another split or language pair."
                if err.status == 404
                else ""
            )
            raise UserError(
                f"Multi30k files missing under {root}: {files}, and the download failed: "
                f"{err}.{upstream} Without network, point data.root at a local copy, "
                f"e.g. data.root=/path/to/multi30k."
            ) from None
    return paths


def ensure_tatoeba(root: Path) -> Path:
    """``eng-fra.txt`` (or ``.gz``) under ``root``; if absent, extracted from the tutorial zip."""
    root = Path(root)
    for name in ("eng-fra.txt", "eng-fra.txt.gz"):
        if (root / name).is_file():
            return root / name
    archive = root / "data.zip"
    try:
        fetch(TATOEBA_URL, archive, None)
    except DownloadError as err:
        raise UserError(
            f"No eng-fra.txt or eng-fra.txt.gz under {root}, and the download failed: {err}. "
            f"Without network, point data.root at a directory holding one, "
            f"e.g. data.root=/path/to/tatoeba-eng-fra."
        ) from None
    try:
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(TATOEBA_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        raise UserError(f"{TATOEBA_URL} is not the expected archive ({err}).") from None
    finally:
        archive.unlink()  # only eng-fra.txt is needed; a bad archive is not worth keeping
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if md5 != TATOEBA_MD5:
        raise UserError(
            f"{TATOEBA_MEMBER} in {TATOEBA_URL} has md5 {md5}, expected {TATOEBA_MD5}; the "
            f"download was discarded. Retry, or put a verified eng-fra.txt in {root}."
        )
    dest = root / "eng-fra.txt"
    fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest
