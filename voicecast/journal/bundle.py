"""Signed export bundles of the journal, for auditors (``voicecast journal export``).

A bundle is one ZIP file:

* ``entries.jsonl``: the exported entries, one JSON object per line, in ``seq`` order, with
  every stored field (``seq, at, kind, actor, subject, data, prev_hash, hash``; ``data``
  is the stored canonical JSON text, ``at`` as :func:`~voicecast.journal.chain.format_instant`).
* ``manifest.json``: format, creation instant, the time range asked, the exported run
  (first/last ``seq``, the first entry's ``prev_hash``, the last ``hash``, count, SHA-256 of
  ``entries.jsonl``), the whole journal's chain head at export time, whether the whole
  chain verified, and the signing public key.
* ``manifest.sig``: the Ed25519 signature (RFC 8032) of the exact bytes of
  ``manifest.json``, base64.
* ``README.txt``: how to check it without voicecast.

The exported run is contiguous in ``seq`` (from the first entry at or after ``since`` to the
last before ``until``, everything in between included), so it verifies on its own: each
entry's hash recomputes (:func:`~voicecast.journal.chain.entry_hash`), each links to the one
before, the last is the manifest's hash, and the manifest's signature checks against the
organisation's public key (obtained from it out of band: ``voicecast journal public-key``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import secrets
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast.compliance.keys import _make_private_dirs
from voicecast.errors import VoicecastError
from voicecast.journal.chain import ChainEntry, ChainReport, format_instant, verify_chain
from voicecast.journal.store import head, iter_entries, verify
from voicecast.storage.models import JournalEntry

FORMAT = "voicecast-journal-bundle/1"
"""``format`` of the manifest; changes when the layout changes."""

_README = """\
voicecast journal bundle ({format})

entries.jsonl  one journal entry per line, in seq order
manifest.json  what was exported, signed
manifest.sig   Ed25519 signature (RFC 8032) of manifest.json's exact bytes, base64

To check it:
1. Verify manifest.sig over manifest.json with the organisation's Ed25519 public key,
   obtained from the organisation itself (`voicecast journal public-key`), not only the
   copy inside manifest.json.
2. SHA-256 of entries.jsonl must equal manifest.json "entries"."sha256".
3. For each entry, SHA-256 of the canonical JSON (keys sorted, separators "," and ":",
   UTF-8, non-ASCII unescaped) of
   {{"seq", "at", "kind", "actor", "subject", "data": <data parsed as JSON>, "prev": prev_hash}}
   must equal its "hash"; its "prev_hash" must equal the previous entry's "hash" (the first
   one's: manifest "entries"."first_prev_hash"); seq values follow each other without gaps.
4. The last entry's hash must equal manifest "entries"."last_hash".
Or run: voicecast journal verify-bundle THIS.zip --public-key KEY.pem
People appear only as "subject", a keyed HMAC-SHA256 of their phone number.
"""


class BundleError(VoicecastError):
    """A bundle cannot be written or read, or a signing key is unusable."""


# --------------------------------------------------------------------------- signing key


def load_signing_key(path: Path, *, create: bool = True) -> Ed25519PrivateKey:
    """The organisation's Ed25519 signing key, from a PEM (PKCS#8) file readable only by its
    owner; created (mode 0600, folders 0700) when missing and ``create``.

    Raises:
        BundleError: missing (and not ``create``), unreadable, readable by others, or not an
            Ed25519 private key.
    """
    path = Path(path)
    if not path.exists():
        if not create:
            raise BundleError(f"journal signing key {path} not found")
        try:
            _make_private_dirs(path.parent)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
                    fh.flush()
                    os.fsync(fh.fileno())
                with contextlib.suppress(FileExistsError):  # another process made one first
                    os.link(tmp, path)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        except OSError as exc:
            raise BundleError(
                f"journal signing key {path}: cannot create it ({exc.strerror or exc})"
            ) from None
    try:
        info = path.stat()
        if info.st_mode & 0o077:
            raise BundleError(
                f"journal signing key {path}: readable by other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise BundleError(f"journal signing key {path}: cannot read it ({exc})") from None
    except (ValueError, TypeError) as exc:
        raise BundleError(f"journal signing key {path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"journal signing key {path}: not an Ed25519 key")
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo) text."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SHA-256 hex of the raw 32-byte public key: a short way to compare keys by phone."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    """Read an Ed25519 public key from PEM.

    Raises:
        BundleError: not a PEM Ed25519 public key.
    """
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("not an Ed25519 public key")
    return key


# --------------------------------------------------------------------------- export


def _line(entry: ChainEntry) -> bytes:
    record = {
        "seq": entry.seq,
        "at": format_instant(entry.at),
        "kind": entry.kind,
        "actor": entry.actor,
        "subject": entry.subject,
        "data": entry.data,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_bundle` wrote: ``count`` entries ``first_seq``..``last_seq``
    (None when the range was empty), and whether the whole chain verified."""

    path: Path
    count: int
    first_seq: int | None
    last_seq: int | None
    chain: ChainReport


def export_bundle(
    session: Session,
    key: Ed25519PrivateKey,
    path: Path,
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    organisation: str = "",
) -> ExportResult:
    """Write a signed bundle of the entries written in ``[since, until)`` to ``path``.

    The whole stored chain is verified first and the result is written in the manifest
    (``chain_verified``, ``chain_problem``): the caller decides whether to export a broken
    chain. The file is written to a temporary name and renamed, so ``path`` is either the
    whole bundle or untouched.

    Args:
        since, until: aware instants (None: from the start / up to now).
        now: the export instant (aware), written in the manifest.

    Raises:
        BundleError: the file cannot be written.
    """
    report = verify(session)
    first = session.scalar(
        select(func.min(JournalEntry.seq)).where(
            *([JournalEntry.at >= since] if since is not None else [])
        )
    )
    last = session.scalar(
        select(func.max(JournalEntry.seq)).where(
            *([JournalEntry.at < until] if until is not None else [])
        )
    )
    h = head(session)
    entries: Iterator[ChainEntry] = iter(())
    if first is not None and last is not None and first <= last:
        entries = (e for e in iter_entries(session) if first <= e.seq <= last)
    digest = hashlib.sha256()
    body = io.BytesIO()
    count = 0
    first_prev: str | None = None
    first_seq = last_seq = None
    last_hash: str | None = None
    for entry in entries:
        line = _line(entry)
        digest.update(line)
        body.write(line)
        count += 1
        if first_prev is None:
            first_prev, first_seq = entry.prev_hash, entry.seq
        last_seq, last_hash = entry.seq, entry.hash
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": format_instant(now),
        "organisation": organisation,
        "range": {
            "from": None if since is None else format_instant(since),
            "until": None if until is None else format_instant(until),
        },
        "entries": {
            "file": "entries.jsonl",
            "count": count,
            "first_seq": first_seq,
            "last_seq": last_seq,
            "first_prev_hash": first_prev,
            "last_hash": last_hash,
            "sha256": digest.hexdigest(),
        },
        "chain_head": {"seq": h.seq, "hash": h.hash},
        "chain_anchor": {"seq": h.anchor_seq, "hash": h.anchor_hash},
        "chain_verified": report.ok,
        "chain_problem": report.first_problem(),
        "hash_rule": "sha256(canonical_json({seq, at, kind, actor, subject, data, prev}))",
        "signature": "Ed25519 (RFC 8032) over the bytes of manifest.json, base64 in manifest.sig",
        "public_key": public_pem(key),
        "key_id": key_id(key),
    }
    manifest_bytes = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    signature = base64.b64encode(key.sign(manifest_bytes)) + b"\n"
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("README.txt", _README.format(format=FORMAT))
            zf.writestr("manifest.json", manifest_bytes)
            zf.writestr("manifest.sig", signature)
            zf.writestr("entries.jsonl", body.getvalue())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}") from None
    return ExportResult(path, count, first_seq, last_seq, report)


# --------------------------------------------------------------------------- verification


@dataclass
class BundleReport:
    """What :func:`verify_bundle` found: ``problems`` (empty when the bundle is sound),
    ``manifest`` as read, ``count`` entries checked, ``key_id`` of the signing key."""

    manifest: dict[str, Any] = field(default_factory=dict)
    count: int = 0
    key_id: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when signature, file digest and chain all check out."""
        return not self.problems


def _entries_from(lines: bytes, report: BundleReport) -> list[ChainEntry]:
    out: list[ChainEntry] = []
    for number, raw in enumerate(lines.splitlines(), start=1):
        try:
            rec = json.loads(raw)
            out.append(
                ChainEntry(
                    seq=int(rec["seq"]),
                    at=datetime.fromisoformat(str(rec["at"]).replace("Z", "+00:00")),
                    kind=str(rec["kind"]),
                    actor=str(rec["actor"]),
                    subject=None if rec["subject"] is None else str(rec["subject"]),
                    data=str(rec["data"]),
                    prev_hash=str(rec["prev_hash"]),
                    hash=str(rec["hash"]),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            report.problems.append(f"entries.jsonl line {number}: unreadable ({exc})")
    return out


def read_bundle(path: Path) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """The manifest (parsed), its bytes, its signature (raw) and ``entries.jsonl`` bytes.

    Raises:
        BundleError: not a readable bundle.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            manifest_bytes = zf.read("manifest.json")
            signature = base64.b64decode(zf.read("manifest.sig").strip(), validate=True)
            lines = zf.read("entries.jsonl")
        manifest = json.loads(manifest_bytes)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path}: not a voicecast journal bundle ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} bundle")
    return manifest, manifest_bytes, signature, lines


def verify_bundle(path: Path, public_key: Ed25519PublicKey | None = None) -> BundleReport:
    """Check a bundle on its own: signature, digest of ``entries.jsonl``, and the chain of
    the exported entries (anchored on the manifest's ``first_prev_hash``, ending on its
    ``last_hash``).

    Args:
        public_key: the organisation's key obtained out of band. Without it the key inside
            the manifest is used, which proves integrity but not who signed: say so.

    Raises:
        BundleError: not a readable bundle.
    """
    manifest, manifest_bytes, signature, lines = read_bundle(path)
    report = BundleReport(manifest=manifest)
    embedded = load_public_key(str(manifest.get("public_key", "")))
    key = public_key or embedded
    report.key_id = key_id(key)
    if public_key is not None and key_id(public_key) != key_id(embedded):
        report.problems.append("the manifest names another signing key than the one given")
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        report.problems.append("manifest.sig: the signature does not match manifest.json")
    meta = manifest.get("entries", {})
    if hashlib.sha256(lines).hexdigest() != meta.get("sha256"):
        report.problems.append("entries.jsonl: its SHA-256 differs from the manifest's")
    entries = _entries_from(lines, report)
    report.count = len(entries)
    if report.count != meta.get("count"):
        report.problems.append(
            f"entries.jsonl holds {report.count} entries, the manifest says {meta.get('count')}"
        )
    if entries:
        chain = verify_chain(
            entries,
            anchor_seq=entries[0].seq - 1,
            anchor_hash=str(meta.get("first_prev_hash")),
            head_seq=meta.get("last_seq"),
            head_hash=meta.get("last_hash"),
        )
        report.problems.extend(f"entry {seq}: {text}" for seq, text in chain.problems)
    return report


def compare_with_database(session: Session, path: Path) -> list[str]:
    """Check that the database still holds every entry of a (verified) bundle unchanged.

    Catches what the database alone cannot show: entries exported earlier and since
    deleted or rewritten together with the chain head (a truncated tail whose head was
    moved back is invisible to :func:`~voicecast.journal.store.verify`). Entries removed by
    retention (at or before the anchor) are not reported.

    Returns:
        Problems, ``"entry N: ..."``; empty when the database matches.

    Raises:
        BundleError: not a readable bundle.
    """
    _manifest, _mb, _sig, lines = read_bundle(path)
    report = BundleReport()
    wanted = {e.seq: e for e in _entries_from(lines, report)}
    problems = list(report.problems)
    if not wanted:
        return problems
    anchor = head(session).anchor_seq
    stored = {
        row.seq: row
        for row in session.scalars(
            select(JournalEntry).where(JournalEntry.seq.between(min(wanted), max(wanted)))
        )
    }
    for seq in sorted(wanted):
        if seq <= anchor:
            continue
        row = stored.get(seq)
        if row is None:
            problems.append(f"entry {seq}: in the bundle, missing from the database")
        elif row.hash != wanted[seq].hash or row.prev_hash != wanted[seq].prev_hash:
            problems.append(f"entry {seq}: differs from the exported copy")
    return problems
