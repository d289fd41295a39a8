"""The consent ledger: who agreed (or stopped agreeing) to be called, for what, and the proof.

Legal frame: automated marketing calls to natural persons need their prior consent (France
CPCE L34-5; US 47 CFR 64.1200(a)(2)-(3), prior express written consent; UK PECR reg. 19),
calls outside the French legal hours need express prior consent the caller can prove
(Code de la consommation D223-9), and from 2026-08-11 all telephone canvassing of French
consumers needs prior, provable, revocable consent (loi 2025-594 art. 13). Consent is
revocable at any time (GDPR art. 7(3)).

The ledger (:class:`~voicecast.storage.models.Consent`) is append-only: a withdrawal is a new
row, never an update. The state of a number for a purpose at an instant is its latest record
whose ``recorded_at`` is at or before that instant (a grant and a withdrawal recorded at the
same instant: the withdrawal wins). Services take the caller's session and never commit.
Every record added is journaled in the same transaction (``consent.recorded`` for one
record, ``consents.imported`` for a file: :mod:`voicecast.journal`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from voicecast.compliance.keys import is_e164
from voicecast.compliance.numberfile import InvalidNumberError, open_records, parse_number
from voicecast.contacts import importer
from voicecast.contacts.importer import ImportFormatError
from voicecast.digests import file_sha256
from voicecast.errors import VoicecastError
from voicecast.journal import kinds
from voicecast.journal.store import append as journal_append
from voicecast.journal.store import subject_of
from voicecast.storage.models import Consent, utcnow

PURPOSES = ("marketing", "informational")
STATUSES = ("granted", "withdrawn")


CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a ``recorded_at`` may be (clock differences)."""
LOOKUP_CHUNK = 500
INSERT_CHUNK = 2000
MAX_PROOF = 500
MAX_WORDING = 100
MAX_BATCH = 64

_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9_.:/-]{0,39}")
_DMY_RE = re.compile(
    r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})"
    r"(?:[ T]+(\d{1,2})[:hH](\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?"
)
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_PURPOSE_WORDS = {
    "marketing": "marketing", "prospection": "marketing", "commercial": "marketing",
    "demarchage": "marketing", "canvassing": "marketing", "telemarketing": "marketing",
    "sales": "marketing", "informational": "informational", "information": "informational",
    "informatif": "informational", "informative": "informational",
    "service": "informational", "notification": "informational",
    "transactional": "informational",
}  # fmt: skip
_STATUS_WORDS = {
    "granted": "granted", "grant": "granted", "given": "granted", "yes": "granted",
    "y": "granted", "oui": "granted", "o": "granted", "optin": "granted",
    "accorde": "granted", "accordee": "granted", "accepte": "granted", "consenti": "granted",
    "true": "granted", "1": "granted",
    "withdrawn": "withdrawn", "withdraw": "withdrawn", "revoked": "withdrawn",
    "no": "withdrawn", "n": "withdrawn", "non": "withdrawn", "optout": "withdrawn",
    "retire": "withdrawn", "retiree": "withdrawn", "revoque": "withdrawn",
    "refuse": "withdrawn", "refused": "withdrawn", "false": "withdrawn", "0": "withdrawn",
}  # fmt: skip

# Column headers (compared as importer._key: accents, case, spaces, punctuation ignored).
_HEADERS: dict[str, tuple[str, ...]] = {
    "purpose": ("purpose", "finalite", "consentpurpose", "consenttype", "typeconsentement",
                "typedeconsentement", "objet"),
    "status": ("status", "statut", "consent", "consentement", "consentstatus",
               "statutconsentement", "statutduconsentement", "optin", "optinstatus", "etat"),
    "date": ("date", "recordedat", "timestamp", "consentdate", "dateconsentement",
             "dateduconsentement", "datetime", "dateheure", "horodatage", "recorded",
             "collectedat", "datedecollecte", "consentedat", "withdrawnat", "when"),
    "source": ("source", "origine", "canal", "channel", "consentsource", "collectionmethod",
               "sourceduconsentement"),
    "proof": ("proof", "proofref", "proofreference", "preuve", "refpreuve", "referencepreuve",
              "evidence", "reference", "ref"),
    "wording": ("wording", "wordingversion", "version", "texte", "textversion",
                "consenttext", "mention", "versiontexte", "libelle"),
}  # fmt: skip
_REQUIRED = ("phone", "purpose", "status", "date", "proof")
_HEADER_HINT = {
    "phone": "phone, number, téléphone, mobile...",
    **{name: ", ".join(words[:4]) + "..." for name, words in _HEADERS.items()},
}


class ConsentError(VoicecastError, ValueError):
    """A consent record or file was refused; the message names the line and field at fault."""


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The consent in force for one number and purpose at one instant (latest record).

    Attributes:
        status: ``granted`` or ``withdrawn``.
        recorded_at: when the person gave or withdrew it (UTC).
        source, proof_ref, wording_version: as recorded.
        id: the ledger row that decides; batch: the import it came with (None for a
            single record).
    """

    status: str
    recorded_at: datetime
    source: str
    proof_ref: str
    wording_version: str | None
    id: int | None = None
    batch: str | None = None

    @property
    def granted(self) -> bool:
        """The consent is given (not withdrawn)."""
        return self.status == "granted"


@dataclass
class ConsentImportSummary:
    """What :func:`import_consents` stored.

    Attributes:
        file: the imported file (as given); ``batch``: the batch id stored on each row.
        rows_read: non-blank data rows.
        imported: ledger rows added.
        duplicates: rows identical (number, purpose, status, instant, source, proof) to a
            stored record or an earlier row of the file, not stored twice.
        rejected: rows skipped (only with ``skip_invalid``); ``rejects``: ``(line, reason)``.
        columns: field -> header it was read from; ``ignored_columns``: the other headers.
        encoding, delimiter: as detected (``xlsx`` / None for workbooks).
    """

    file: str
    batch: str
    rows_read: int
    imported: int
    duplicates: int
    rejected: int
    rejects: list[tuple[int, str]] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    encoding: str = ""
    delimiter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy; rejects as ``{line, reason}``."""
        data = dataclasses.asdict(self)
        data["rejects"] = [{"line": n, "reason": r} for n, r in self.rejects]
        return data


# --------------------------------------------------------------------------- values


def _fold(value: str) -> str:
    return importer._key(value)


def normalize_purpose(value: str) -> str:
    """``marketing`` or ``informational`` from a cell (also prospection, service...).

    Raises:
        ConsentError: any other value (message starts with ``purpose:``).
    """
    found = _PURPOSE_WORDS.get(_fold(value))
    if found is None:
        raise ConsentError(f"purpose: {value[:40]!r} is not marketing or informational")
    return found


def normalize_status(value: str) -> str:
    """``granted`` or ``withdrawn`` from a cell (yes/no, opt-in/opt-out, oui/non, accordé...).

    Raises:
        ConsentError: any other value (message starts with ``status:``).
    """
    found = _STATUS_WORDS.get(_fold(value))
    if found is None:
        raise ConsentError(f"status: {value[:40]!r} is not granted or withdrawn")
    return found


def parse_instant(value: str, zone: tzinfo) -> datetime:
    """An aware instant from ISO 8601 (with or without offset, ``Z``, date only) or
    ``dd/mm/yyyy [HH:MM[:SS]]`` (also ``-`` or ``.`` separators, ``14h30``).

    Naive values are wall-clock times in ``zone``; a date alone is midnight there.

    Raises:
        ConsentError: unrecognised or impossible date (message starts with ``date:``).
    """
    text = value.strip(importer._WS)
    if not text:
        raise ConsentError("date: empty")
    parsed: datetime | None = None
    with contextlib.suppress(ValueError):
        parsed = datetime.fromisoformat(text)
    if parsed is None:
        match = _DMY_RE.fullmatch(text)
        if match is None:
            raise ConsentError(
                f"date: {text[:40]!r} is not ISO 8601 (2025-03-01T14:30:00+01:00) "
                "or dd/mm/yyyy [HH:MM[:SS]]"
            )
        day, month, year, hour, minute, second = match.groups()
        try:
            parsed = datetime(
                int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
            )
        except ValueError as exc:
            raise ConsentError(f"date: {text[:40]!r}: {exc}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConsentError(f"unknown time zone {name!r} (expected e.g. Europe/Paris)") from exc


def _text(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip(importer._WS)
    if _CONTROL_RE.search(value):
        raise ConsentError(f"{name}: control characters are not allowed")
    if len(value) > limit:
        raise ConsentError(f"{name}: at most {limit} characters ({len(value)} given)")
    return value or None


def _validated(
    *,
    phone: str,
    purpose: str,
    status: str,
    recorded_at: datetime,
    source: str,
    proof_ref: str | None,
    wording_version: str | None,
    batch: str | None,
    default_region: str,
    now: datetime,
) -> dict[str, Any]:
    """The row to insert; raises ConsentError naming the field."""
    try:
        e164 = parse_number(phone, default_region)
    except InvalidNumberError as exc:
        raise ConsentError(str(exc)) from None
    if purpose not in PURPOSES:
        raise ConsentError(f"purpose: {purpose!r} is not one of {', '.join(PURPOSES)}")
    if status not in STATUSES:
        raise ConsentError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    if recorded_at.tzinfo is None or recorded_at.utcoffset() is None:
        raise ConsentError("date: a timezone-aware datetime is required")
    recorded_at = recorded_at.astimezone(UTC)
    if recorded_at > now + CLOCK_SKEW:
        raise ConsentError(f"date: {recorded_at.isoformat()} is in the future")
    token = source.strip(importer._WS).lower()
    if _TOKEN_RE.fullmatch(token) is None:
        raise ConsentError(
            f"source: {source[:50]!r} is not a short token such as form, contract, "
            "recording, email, paper, sms, web (letters, digits, - _ . : /; 40 at most)"
        )
    proof = _text("proof", proof_ref, MAX_PROOF) or ""
    if status == "granted" and not proof:
        raise ConsentError("proof: required for a granted consent (where the proof is kept)")
    return {
        "phone_e164": e164,
        "purpose": purpose,
        "status": status,
        "recorded_at": recorded_at,
        "source": token,
        "proof_ref": proof,
        "wording_version": _text("wording", wording_version, MAX_WORDING),
        "batch": _text("batch", batch, MAX_BATCH),
    }


# --------------------------------------------------------------------------- services


def record_consent(
    session: Session,
    *,
    phone: str,
    purpose: str,
    status: str,
    recorded_at: datetime,
    source: str,
    proof_ref: str,
    wording_version: str | None = None,
    batch: str | None = None,
    default_region: str = "FR",
    now: datetime | None = None,
    key: bytes | None = None,
) -> Consent:
    """Append one record to the ledger and return it (flushed, not committed).

    The record is journaled (``consent.recorded``: purpose, status, recorded_at, source,
    proof_ref_sha256, wording_version, the row's ``consent_id``) in the same transaction; with
    ``key`` (the keyed-hash key, :meth:`voicecast.app.Runtime.store_key`) the entry names
    its subject (every voicecast caller gives it).

    Args:
        phone: the number as written (normalised to E.164 with ``default_region``).
        purpose: ``marketing`` | ``informational``.
        status: ``granted`` | ``withdrawn``.
        recorded_at: when the person gave or withdrew consent (aware; stored UTC); at most
            5 minutes after ``now`` (default: the current time).
        source: how it was collected, a short token (``form``, ``contract``, ``recording``,
            ``email``, ``paper``, ``sms``, ``web``...).
        proof_ref: where the proof is kept (required for ``granted``; 500 characters).
        wording_version: version of the consent text shown (100 characters).
        batch: import batch id (64 characters).

    Raises:
        ConsentError: invalid number (CR/LF, letters...), purpose, status, naive or future
            ``recorded_at``, source, or missing proof; the message starts with the field.
    """
    row = _validated(
        phone=phone,
        purpose=purpose,
        status=status,
        recorded_at=recorded_at,
        source=source,
        proof_ref=proof_ref,
        wording_version=wording_version,
        batch=batch,
        default_region=default_region,
        now=now or utcnow(),
    )
    consent = Consent(**row)
    session.add(consent)
    session.flush()
    journal_append(
        session,
        kinds.CONSENT_RECORDED,
        {
            "consent_id": consent.id,
            "purpose": consent.purpose,
            "status": consent.status,
            "recorded_at": consent.recorded_at,
            "source": consent.source,
            # the journal is never erased: it keeps the digest of the free-text reference
            "proof_ref_sha256": kinds.proof_digest(consent.proof_ref),
            "wording_version": consent.wording_version,
            "batch": consent.batch,
        },
        subject=subject_of(key, consent.phone_e164) if key is not None else None,
    )
    return consent


def _map_headers(where: str, headers: list[str], *, purpose_given: bool = False) -> dict[str, int]:
    keys = [importer._key(h) for h in headers]
    found: dict[str, int] = {}
    for name, words in _HEADERS.items():
        for word in words:  # earlier words first: 'proof' beats 'reference'
            idx = next(
                (i for i, k in enumerate(keys) if k == word and i not in found.values()), None
            )
            if idx is not None:
                found[name] = idx
                break
    ranks = {
        i: r
        for i, k in enumerate(keys)
        if i not in found.values() and (r := importer._phone_rank(k)) is not None
    }
    phone = importer._best(ranks)
    if phone is not None:
        found["phone"] = phone
    for name in _REQUIRED:
        if name == "purpose" and purpose_given:
            continue
        if name not in found:
            raise ConsentError(
                f"{where}: no {name!r} column (accepted names: {_HEADER_HINT[name]}); "
                f"columns: {importer._listing(headers)}"
            )
    return found


def _identity(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["phone_e164"],
        row["purpose"],
        row["status"],
        row["recorded_at"],
        row["source"],
        row["proof_ref"],
    )


def import_consents(
    session: Session,
    path: Path,
    *,
    default_region: str = "FR",
    timezone: str = "Europe/Paris",
    skip_invalid: bool = False,
    now: datetime | None = None,
    purpose: str | None = None,
) -> ConsentImportSummary:
    """Append the records of a CSV or ``.xlsx`` consent file to the ledger, all or nothing.

    Columns (header names are recognised case-, accent- and punctuation-insensitively):
    phone (phone/number/téléphone/mobile...), purpose (purpose/finalité: marketing |
    informational, also prospection/service...), status (status/statut: granted |
    withdrawn, also yes/no, opt-in/opt-out, oui/non, accordé/retiré), date
    (date/recorded_at/timestamp/consent date: ISO 8601 with or without offset, or
    dd/mm/yyyy [HH:MM[:SS]]; naive times are in ``timezone``), proof (proof/proof_ref/
    preuve); optional: source (default ``import``), wording (wording/wording_version/
    version). Other columns are ignored.

    Every row is validated before anything is written; rows identical to a stored record
    (or to an earlier row) are not stored twice. Does not commit: the caller commits the
    whole import as one transaction. The import is journaled once
    (``consents.imported``: batch, the file's SHA-256, counts, columns read and ignored);
    each stored row carries the batch id, which links it to that entry.

    Args:
        skip_invalid: import the valid rows and list the others in the summary, instead of
            refusing the file at its first invalid row.
        now: the current instant (default: now), for the "not in the future" check.
        purpose: the purpose of every row of a file without a purpose column (CRM exports
            of one consent type); a file that has the column keeps its own values.

    Raises:
        ImportFormatError: unreadable file, empty file, malformed CSV.
        ConsentError: a required column is missing (named); an invalid row (``FILE: line
            N: field: reason``) unless ``skip_invalid``; unknown ``timezone``; no valid row.
    """
    path = Path(path)
    zone = _zone(timezone)
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConsentError(f"unknown region {default_region!r}: expected a code such as FR")
    now = now or utcnow()
    batch = f"import-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    records, encoding, delimiter = open_records(path)
    file_hash = _file_sha256(path)
    summary = ConsentImportSummary(
        file=str(path),
        batch=batch,
        rows_read=0,
        imported=0,
        duplicates=0,
        rejected=0,
        encoding=encoding,
        delimiter=delimiter,
    )
    rows: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    with contextlib.closing(records):
        try:
            first = next(((n, c) for n, c in records if not _is_blank(c)), None)
            if first is None:
                raise ImportFormatError(f"{path}: no header row (the file is empty)")
            header_line, cells = first
            headers = importer._clean_headers(cells)
            columns = _map_headers(
                f"{path}: header (line {header_line})", headers, purpose_given=purpose is not None
            )
            summary.columns = {name: headers[i] for name, i in columns.items()}
            summary.ignored_columns = [
                h for i, h in enumerate(headers) if i not in columns.values()
            ]

            def cell(cells: list[str], name: str) -> str:
                idx = columns.get(name)
                return cells[idx] if idx is not None and idx < len(cells) else ""

            for line, cells in records:
                if _is_blank(cells):
                    continue
                summary.rows_read += 1
                try:
                    row = _validated(
                        phone=cell(cells, "phone"),
                        purpose=normalize_purpose(
                            cell(cells, "purpose") if "purpose" in columns else (purpose or "")
                        ),
                        status=normalize_status(cell(cells, "status")),
                        recorded_at=parse_instant(cell(cells, "date"), zone),
                        source=cell(cells, "source").strip(importer._WS) or "import",
                        proof_ref=cell(cells, "proof"),
                        wording_version=cell(cells, "wording"),
                        batch=batch,
                        default_region=region,
                        now=now,
                    )
                except ConsentError as exc:
                    if not skip_invalid:
                        raise ConsentError(f"{path}: line {line}: {exc}") from None
                    summary.rejected += 1
                    summary.rejects.append((line, str(exc)))
                    continue
                identity = _identity(row)
                if identity in seen:
                    summary.duplicates += 1
                    continue
                seen.add(identity)
                rows.append(row)
        except OSError as exc:
            raise ImportFormatError(f"{path}: cannot read the file ({exc})") from None
    if not rows and not summary.duplicates:
        raise ConsentError(
            f"{path}: no valid consent row"
            + (f" ({summary.rejected} rejected)" if summary.rejected else " (no data rows)")
        )

    phones = sorted({row["phone_e164"] for row in rows})
    stored: set[tuple[Any, ...]] = set()
    for i in range(0, len(phones), LOOKUP_CHUNK):
        for record in session.scalars(
            select(Consent).where(Consent.phone_e164.in_(phones[i : i + LOOKUP_CHUNK]))
        ):
            stored.add(
                (
                    record.phone_e164,
                    record.purpose,
                    record.status,
                    record.recorded_at,
                    record.source,
                    record.proof_ref,
                )
            )
    new_rows = [{**row, "imported_at": now} for row in rows if _identity(row) not in stored]
    summary.duplicates += len(rows) - len(new_rows)
    for i in range(0, len(new_rows), INSERT_CHUNK):
        session.execute(insert(Consent), new_rows[i : i + INSERT_CHUNK])
    summary.imported = len(new_rows)
    journal_append(
        session,
        kinds.CONSENTS_IMPORTED,
        {
            "batch": batch,
            "file_sha256": file_hash,
            "rows": summary.rows_read,
            "imported": summary.imported,
            "duplicates": summary.duplicates,
            "rejected": summary.rejected,
            "columns_kept": sorted(summary.columns.values()),
            "columns_dropped": list(summary.ignored_columns),
        },
    )
    return summary


def _file_sha256(path: Path) -> str | None:
    """SHA-256 hex of the file's bytes (None when it cannot be read again)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def _is_blank(cells: list[str]) -> bool:
    return not any(cell.strip(importer._WS) for cell in cells)


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ConsentError(f"purpose: {purpose!r} is not one of {', '.join(PURPOSES)}")


def consent_states(
    session: Session, numbers: Iterable[str], purpose: str, at: datetime
) -> dict[str, ConsentState]:
    """number (E.164) -> the consent in force for ``purpose`` at ``at`` (aware).

    The latest record with ``recorded_at <= at`` decides (same instant: ``withdrawn``
    wins, then the later stored row); numbers without such a record are absent.

    Raises:
        ConsentError: unknown purpose or naive ``at``.
    """
    _check_purpose(purpose)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConsentError("at: a timezone-aware datetime is required")
    distinct = sorted(set(numbers))
    best: dict[str, tuple[tuple[datetime, bool, int], Consent]] = {}
    for i in range(0, len(distinct), LOOKUP_CHUNK):
        chunk = distinct[i : i + LOOKUP_CHUNK]
        for record in session.scalars(
            select(Consent).where(
                Consent.phone_e164.in_(chunk),
                Consent.purpose == purpose,
                Consent.recorded_at <= at,
            )
        ):
            rank = (record.recorded_at, record.status == "withdrawn", record.id)
            current = best.get(record.phone_e164)
            if current is None or rank > current[0]:
                best[record.phone_e164] = (rank, record)
    return {
        number: ConsentState(
            status=record.status,
            recorded_at=record.recorded_at,
            source=record.source,
            proof_ref=record.proof_ref,
            wording_version=record.wording_version,
            id=record.id,
            batch=record.batch,
        )
        for number, (_rank, record) in best.items()
    }


def consent_history(session: Session, phone_e164: str) -> list[Consent]:
    """Every ledger record of a number (all purposes), oldest ``recorded_at`` first.

    Raises:
        ConsentError: ``phone_e164`` is not E.164.
    """
    if not is_e164(phone_e164):
        raise ConsentError(f"phone: not an E.164 number: {phone_e164[:40]!r}")
    return list(
        session.scalars(
            select(Consent)
            .where(Consent.phone_e164 == phone_e164)
            .order_by(Consent.recorded_at, Consent.id)
        )
    )
