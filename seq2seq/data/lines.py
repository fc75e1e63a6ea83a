"""Lines of plain or gzipped UTF-8 files, streamed one at a time and hashed on the way.

The only reader of corpus text: whole files never sit in memory, so a corpus of any size
reads in constant RAM, and the SHA-256 of each file read to its end comes for free.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from seq2seq.errors import UserError


class _HashingReader(io.RawIOBase):
    """A raw binary file that feeds every byte it reads to a SHA-256 digest."""

    def __init__(self, raw: io.BufferedReader, digest: hashlib._Hash) -> None:
        self._raw, self._digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = self._raw.readinto(buffer)
        self._digest.update(memoryview(buffer)[:count])
        return count


def existing_file(path: str | Path) -> Path:
    """``path`` (with ``~`` expanded), or a UserError when it is not a file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path} does not exist (or is not a file); check the path.")
    return path


def stream_lines(path: str | Path, digests: dict[str, str] | None = None) -> Iterator[str]:
    """Each line of ``path`` without its terminator (LF or CRLF), split on ``\\n`` only.

    When the file is read to its end, its SHA-256 is stored in ``digests[str(path)]``.
    """
    path = existing_file(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as raw:
            hashed = io.BufferedReader(_HashingReader(raw, digest), buffer_size=1 << 20)
            handle = gzip.GzipFile(fileobj=hashed) if path.suffix == ".gz" else hashed
            for number, data in enumerate(handle, start=1):
                yield _decoded(data, path, number)
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"{path} could not be read ({err}); replace it with a good copy.") from None
    if digests is not None:
        digests[str(path)] = digest.hexdigest()


def _decoded(data: bytes, path: Path, number: int) -> str:
    """One line as text; a byte-order mark is not part of the first sentence."""
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}, line {number}: not valid UTF-8 ({err.reason}); "
            f"convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8."
        ) from None
    if number == 1:
        line = line.removeprefix("\ufeff")
    return line.removesuffix("\n").removesuffix("\r")


def stream_files(paths: Sequence[Path], digests: dict[str, str] | None = None) -> Iterator[str]:
    """The lines of several files, concatenated in order."""
    for path in paths:
        yield from stream_lines(path, digests)
