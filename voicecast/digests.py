"""SHA-256 of files: imports, audio and journal entries name the exact bytes they used."""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20  # bytes read at a time: memory stays flat on large files


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes, 64 lowercase hex characters.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_BLOCK):
            digest.update(chunk)
    return digest.hexdigest()
