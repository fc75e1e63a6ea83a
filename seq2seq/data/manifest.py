"""The manifest of a prepared corpus: what was written, from what, and how to check it.

A prepared corpus is trusted only when every file it lists has the recorded size and
SHA-256; anything else (a truncated shard, an edited byte, a missing manifest) is a
problem to report in one line and a reason to rebuild.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, content: dict[str, Any]) -> None:
    """``content`` plus the size and SHA-256 of every file now under ``directory``."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    listed = {
        str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": file_digest(p)}
        for p in files
    }
    manifest = {"format_version": FORMAT_VERSION, **content, "files": listed}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a prepared corpus (checked with :func:`manifest_problem` first)."""
    return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))


def manifest_problem(directory: Path, hashes: bool = True) -> str | None:
    """Why ``directory`` is not a complete prepared corpus, or None when it is.

    ``hashes=False`` checks sizes only (for ranks that start after rank 0 checked all).
    """
    if not (directory / MANIFEST).is_file():
        return f"{directory} has no {MANIFEST}"
    try:
        manifest = read_manifest(directory)
        version, files = manifest["format_version"], manifest["files"]
    except (ValueError, KeyError, TypeError) as err:
        return f"{directory / MANIFEST} is unreadable ({err})"
    if version != FORMAT_VERSION:
        return f"{directory} has format version {version}, not {FORMAT_VERSION}"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != expected["size"]:
            return f"{path} has {path.stat().st_size} bytes, not {expected['size']}"
        if hashes and file_digest(path) != expected["sha256"]:
            return f"{path} does not match its SHA-256 in the manifest"
    return None
