"""The secret key of the keyed hashes that store opt-outs, opposition lists and refusals.

CNIL guidance on canvassing: the opposition lists a caller keeps (its own opt-out list, the
Bloctel file, which must be kept at least 3 years) should be stored and matched as hashes,
not as plain numbers. voicecast stores ``HMAC-SHA256(key, E.164 number)`` in hex: without
the key, a hash cannot be turned back into a number by trying every number of a numbering
plan (a plain SHA-256 of a phone number can, in minutes).

The key is 32 random bytes kept hex-encoded in a file readable by its owner only
(``[compliance] hash_key_file``, created on first use). **Losing it makes every stored
opt-out, opposition list and refusal unusable** (nothing could match them any more): back it
up with the database, and restore both together.

The database keeps a fingerprint of the key (:func:`key_fingerprint`, table
``hash_key_check``, migration 0003), never the key itself, so that a *different* valid key
(a fresh install's key next to a restored database) is refused instead of silently matching
nothing: see :func:`voicecast.compliance.suppression.load_store_key`.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path

from voicecast.errors import VoicecastError
from voicecast.pbx.validation import E164_RE

KEY_BYTES = 32
"""Length of the key in bytes (256 bits)."""

FINGERPRINT_MESSAGE = b"voicecast hash key check v1"
"""What :func:`key_fingerprint` authenticates with the key."""

_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")


class HashKeyError(VoicecastError):
    """The hash key file is missing, unreadable, malformed or readable by others."""


def _make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents with mode 0700 (existing ones untouched)."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            path.chmod(0o700)  # mkdir's mode is filtered by the umask


def _read_key(path: Path) -> bytes:
    try:
        info = path.stat()
    except OSError as exc:
        raise HashKeyError(f"hash key {path}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise HashKeyError(f"hash key {path}: not a regular file")
    if info.st_mode & 0o077:
        raise HashKeyError(
            f"hash key {path}: readable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise HashKeyError(f"hash key {path}: cannot read it ({exc})") from None
    if _HEX_RE.fullmatch(text) is None:
        raise HashKeyError(
            f"hash key {path}: expected {KEY_BYTES * 2} hexadecimal characters "
            f"({KEY_BYTES} bytes), found {len(text)} characters; restore it from your backup"
        )
    return bytes.fromhex(text)


def _create_key(path: Path) -> None:
    """Write a new random key to ``path`` unless one appears there meanwhile (atomic)."""
    _make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def load_hash_key(path: Path, *, create: bool = True) -> bytes:
    """Return the 32-byte key stored (hex) in ``path``; create it when missing and ``create``.

    A new key is 32 bytes from :mod:`secrets`, written to a 0600 file (missing parent folders
    are created 0700); creation is atomic, so concurrent first uses agree on one key.

    Raises:
        HashKeyError: the file is missing (and ``create`` is false) or cannot be created;
            it is not 64 hex characters; it is readable or writable by the group or others.
    """
    path = Path(path)
    if not path.exists():
        if not create:
            raise HashKeyError(
                f"hash key {path} not found: opt-out and opposition lists are stored as keyed "
                "hashes and cannot be matched without it; restore it from your backup"
            )
        try:
            _create_key(path)
        except OSError as exc:
            raise HashKeyError(
                f"hash key {path}: cannot create it ({exc.strerror or exc})"
            ) from None
    return _read_key(path)


def key_fingerprint(key: bytes) -> str:
    """HMAC-SHA256(key, ``b"voicecast hash key check v1"``) in hex: tells keys apart in the
    database without revealing the key (nor letting anyone compute number hashes with it).

    Raises:
        ValueError: the key is not 32 bytes.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"hash key must be {KEY_BYTES} bytes, not {len(key)}")
    return hmac.digest(key, FINGERPRINT_MESSAGE, "sha256").hex()


def is_e164(text: str) -> bool:
    """True when ``text`` is exactly ``+`` then 7 to 15 digits, the first not 0."""
    return E164_RE.match(text) is not None


def number_hash(key: bytes, e164: str) -> str:
    """The keyed hash under which a number is stored: HMAC-SHA256(key, e164), 64 hex chars.

    Args:
        key: the key from :func:`load_hash_key` (32 bytes).
        e164: the number in E.164 (``+33199000010``): the same number always gives the same
            hash under the same key, so numbers must be normalised first.

    Raises:
        ValueError: ``e164`` is not E.164 (``+[1-9][0-9]{6,14}``: no spaces, CR/LF...), or
            the key is not 32 bytes.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"hash key must be {KEY_BYTES} bytes, not {len(key)}")
    if E164_RE.match(e164) is None:
        raise ValueError(f"not an E.164 number: {e164[:40]!r}")
    return hmac.digest(key, e164.encode("ascii"), "sha256").hex()
