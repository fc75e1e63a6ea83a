"""Text in and out without losing data: whole files, input lines, atomic output files.

Files (corpora, gold alignments) are streamed line by line by :func:`stream_lines`. Input
lines of translate/evaluate: any readable file (plain, ``.gz``, ``/dev/null``, a pipe such
as ``<(cmd)``) or stdin. Both split on ``\\n`` only, so line i of the output always
answers line i of the input. Output: a temporary file in the target directory renamed
into place only when everything was written, so a failure never leaves a truncated file
and never destroys the previous one; output may not be one of the inputs.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from seq2seq.errors import UserError


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through symbolic and hard links alike)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: not the same file
        return False


def os_error_reason(err: OSError) -> str:
    """A short reason for a failed write: 'no space left on device' rather than a code."""
    if err.errno == errno.ENOSPC:
        return "no space left on device"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.EROFS:
        return "read-only file system"
    return err.strerror or str(err)


def check_output(setting: str, output: str | Path, inputs: list[str | Path]) -> None:
    """Refuse an output that is an input, a directory, or in a directory that does not exist."""
    path = Path(output).expanduser()
    for source in inputs:
        if same_file(path, source):
            raise UserError(
                f"{setting}={output} is the input file {source}; writing it would destroy the "
                f"input. Give another {setting}=..."
            )
    if path.is_dir():
        raise UserError(f"{setting}={output} is a directory; give a file name.")
    if not path.parent.is_dir():
        raise UserError(
            f"{setting}={output}: directory {path.parent} does not exist; create it first."
        )


def temporary_beside(path: Path) -> tuple[int, str]:
    """A new hidden file in ``path``'s directory (descriptor, name), to be renamed onto it."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(name, 0o666 & ~mask)  # mkstemp makes files private; outputs are not
    return fd, name


def check_writable(setting: str, directory: Path) -> None:
    """Create ``directory`` if needed and prove a file can be written there, or say why not."""
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{setting}={directory} is an existing file; give a directory.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(
            f"{setting}={directory} is not writable ({os_error_reason(err)}); pick a writable "
            f"directory."
        ) from None


@contextmanager
def atomic_output(setting: str, output: str | Path) -> Iterator[TextIO]:
    """A text file that replaces ``output`` only if the block completes.

    Outputs that are not regular files (``/dev/null``, a pipe, a terminal) are written
    directly, since they cannot be renamed over. Write errors (a full disk, a read-only
    directory) become one :class:`UserError` naming the file; the old file stays.
    """
    path = Path(output).expanduser()
    if path.exists() and not path.is_file():
        try:
            with open(path, "w", encoding="utf-8") as handle:
                yield handle
        except OSError as err:
            raise UserError(
                f"could not write {setting}={output}: {os_error_reason(err)}."
            ) from None
        return
    try:
        fd, tmp_name = temporary_beside(path)
    except OSError as err:
        raise UserError(
            f"could not write {setting}={output}: {os_error_reason(err)} in {path.parent}; "
            f"pick a writable location."
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as err:
        Path(tmp_name).unlink(missing_ok=True)
        kept = " (the previous file is unchanged)" if path.exists() else ""
        raise UserError(
            f"could not write {setting}={output}: {os_error_reason(err)}{kept}; free space "
            f"or pick another location."
        ) from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_text(setting: str, output: str | Path, text: str) -> None:
    """Write ``text`` to ``output`` atomically (see :func:`atomic_output`)."""
    with atomic_output(setting, output) as handle:
        handle.write(text)


class InputLines:
    """The lines of a file or of stdin, split on ``\\n`` only, each decoded as strict UTF-8.

    Iteration stops at the first line that is not UTF-8 (or at a damaged ``.gz``), leaving
    :attr:`error` set, so the caller can still write the lines before it and then report.
    """

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle, self.name = handle, name
        self.error: str | None = None
        self.prompt: str | None = None  # printed on stderr before each line is read
        self.count = 0  # lines read so far

    def __iter__(self) -> Iterator[str]:
        number = 0
        try:
            while raw := self._readline():
                number += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    self.error = (
                        f"{self.name}, line {number}: not valid UTF-8 ({err.reason}); convert "
                        f"the input to UTF-8, e.g. iconv -f latin1 -t utf-8."
                    )
                    return
                if number == 1:
                    line = line.removeprefix("\ufeff")
                self.count = number
                yield line.removesuffix("\n").removesuffix("\r")
        except (OSError, EOFError, zlib.error) as err:
            self.error = f"{self.name}, after line {number}: could not be read ({err})."

    def _readline(self) -> bytes:
        if self.prompt is not None:
            print(self.prompt, end="", file=sys.stderr, flush=True)
        return self.handle.readline()

    def isatty(self) -> bool:
        """Whether the input is an interactive terminal."""
        return self.handle.isatty()


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


def file_lines(path: str | Path) -> list[str]:
    """Every line of a plain or gzipped UTF-8 file (see :func:`stream_lines`)."""
    return list(stream_lines(path))


@contextmanager
def open_lines(path: str, stdin: TextIO | BinaryIO | None = None) -> Iterator[InputLines]:
    """``path`` (``-`` for ``stdin``) as :class:`InputLines`; gzip when the name ends in .gz."""
    if path == "-":
        stream = sys.stdin if stdin is None else stdin
        if isinstance(stream, io.TextIOBase) and not hasattr(stream, "buffer"):  # a StringIO
            stream = io.BytesIO(stream.read().encode("utf-8"))
        yield InputLines(getattr(stream, "buffer", stream), "stdin")
        return
    file = Path(path).expanduser()
    if not file.exists():
        raise UserError(f"input={path} does not exist; give a text file, or input=- for stdin.")
    if file.is_dir():
        raise UserError(f"input={path} is a directory; give a text file, or input=- for stdin.")
    try:
        handle: BinaryIO = gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb")  # type: ignore[assignment]  # noqa: SIM115
    except OSError as err:
        raise UserError(f"input={path} could not be opened: {os_error_reason(err)}.") from None
    with handle:
        yield InputLines(handle, str(path))
