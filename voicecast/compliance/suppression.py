"""Who must not be called: the organisation's opt-out list, national opposition lists, refusals.

Every number here is stored as its keyed hash (:func:`voicecast.compliance.keys.number_hash`,
HMAC-SHA256 under the installation's secret key), never in plain text, as CNIL guidance asks
for opposition lists; lookups hash the numbers asked about and match the hashes.

* **Opt-outs** (:class:`~voicecast.storage.models.OptOut`): a person asked this organisation
  not to be called again (key press, call-back, CLI, import). The right to object to
  marketing is absolute (GDPR art. 21(2)-(3); CPCE L34-5); in the US a company opt-out is
  honoured within 10 business days (FCC 24-24). Opt-outs are independent of contact lists:
  deleting or re-importing a list does not lose them.
* **National opposition lists** (:class:`~voicecast.storage.models.OppositionList`): Bloctel
  (France, Code de la consommation L223-1: scrub at least every 30 days), the US National
  Do Not Call Registry (47 CFR 64.1200(c)(2): a version no older than 31 days), the UK
  Telephone Preference Service (PECR reg. 21: screen at least every 28 days). One stored
  version per list; importing a new one replaces it atomically.
* **Refusals** (:class:`~voicecast.storage.models.Refusal`): the callee declined the offer;
  France: no call or attempt for 60 days (Code de la consommation D223-9).

Services take the caller's :class:`~sqlalchemy.orm.Session` and never commit: the caller
commits the whole operation, or rolls it back (then nothing was written). Each new opt-out,
refusal and opposition-list import is written to the proof journal in the same transaction
(``optout.recorded``, ``refusal.recorded``, ``opposition.imported``: :mod:`voicecast.journal`).
"""

from __future__ import annotations

import dataclasses
import hmac
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, Table, delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from voicecast.compliance.keys import (
    KEY_BYTES,
    HashKeyError,
    is_e164,
    key_fingerprint,
    load_hash_key,
)
from voicecast.compliance.numberfile import InvalidNumberError, read_numbers
from voicecast.compliance.packs import OPPOSITION_LISTS, OppositionListSpec
from voicecast.digests import file_sha256
from voicecast.errors import VoicecastError
from voicecast.journal import kinds
from voicecast.journal.store import append as journal_append
from voicecast.journal.store import append_many as journal_append_many
from voicecast.storage.models import (
    Campaign,
    HashKeyCheck,
    OppositionEntry,
    OppositionList,
    OptOut,
    Refusal,
    utcnow,
)
from voicecast.webhooks import enqueue_optout_created

LOOKUP_CHUNK = 500
"""Numbers per ``IN (...)`` lookup."""

INSERT_CHUNK = 10_000
"""Rows per bulk INSERT (executemany)."""

MAX_INVALID_SAMPLES = 20
"""Invalid lines kept (with their line number) in an import summary."""

CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a recorded instant may be (clock differences)."""

OPT_OUT_SOURCES = ("key-press", "call-back", "cli", "import", "api", "console", "erasure")

ERASURE_SOURCE = "erasure"
"""The opt-out source of a number erased on request (GDPR art. 17, :mod:`voicecast.subjects`):
only its keyed hash is kept so that it is never called again. No ``optout.created`` webhook
is queued for it: the outbox would keep the number in clear."""

CALLEE_SOURCES = frozenset({"key-press", "call-back"})
"""Opt-out sources where the person acted themselves (journal actor ``callee``)."""

_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9_.:/-]{0,39}")


class SuppressionError(VoicecastError, ValueError):
    """An opt-out, refusal or opposition-list operation was refused (the message says why)."""


@dataclass
class OppositionImportSummary:
    """What :func:`import_opposition_list` stored.

    Attributes:
        name, country: the list.
        file: the imported file (as given); ``sha256``: its digest.
        list_date: date of this version of the list (UTC); ``imported_at``: now (UTC).
        lines_read: non-blank data lines; ``valid_lines`` of them held a valid number.
        entries: distinct numbers stored (duplicates in the file count once).
        invalid_lines: lines without a valid number; ``invalid_samples``: the first 20 of
            them as ``(line, reason)``.
        replaced_entries: entries of the version replaced, None when it is the first.
    """

    name: str
    country: str
    file: str
    sha256: str
    list_date: datetime
    imported_at: datetime
    lines_read: int
    valid_lines: int
    entries: int
    invalid_lines: int
    invalid_samples: list[tuple[int, str]] = field(default_factory=list)
    replaced_entries: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes in ISO 8601 (UTC), samples as ``{line, reason}``."""
        data = dataclasses.asdict(self)
        data["list_date"] = self.list_date.isoformat()
        data["imported_at"] = self.imported_at.isoformat()
        data["invalid_samples"] = [{"line": n, "reason": r} for n, r in self.invalid_samples]
        return data


@dataclass
class OptOutImportSummary:
    """What :func:`import_opt_outs` stored.

    Attributes:
        file: the imported file (as given).
        lines_read: non-blank data lines.
        added: numbers newly opted out.
        already: valid lines whose number was already opted out (or repeated in the file).
        invalid_lines / invalid_samples: as in :class:`OppositionImportSummary`.
    """

    file: str
    lines_read: int
    added: int
    already: int
    invalid_lines: int
    invalid_samples: list[tuple[int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy; samples as ``{line, reason}``."""
        data = dataclasses.asdict(self)
        data["invalid_samples"] = [{"line": n, "reason": r} for n, r in self.invalid_samples]
        return data


@dataclass(frozen=True, slots=True)
class OppositionListInfo:
    """The stored version of one national opposition list (:func:`opposition_status`).

    ``list_date`` and ``imported_at`` are UTC; ``max_age_days`` and ``source`` come from
    :data:`OPPOSITION_LISTS`.
    """

    name: str
    country: str
    list_date: datetime
    imported_at: datetime
    entries: int
    invalid_lines: int
    source_file: str
    sha256: str
    max_age_days: int
    source: str

    def age_days(self, now: datetime) -> int:
        """Whole days between ``list_date`` and ``now`` (aware)."""
        return (now - self.list_date).days

    def stale(self, now: datetime) -> bool:
        """The version is older than the legal maximum age at ``now``."""
        return now - self.list_date > timedelta(days=self.max_age_days)


# --------------------------------------------------------------------------- helpers


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError(f"hash key must be {KEY_BYTES} bytes, not {len(key)}")


def _hash(key: bytes, e164: str) -> str:
    """HMAC-SHA256 hex of a number already checked to be E.164."""
    return hmac.digest(key, e164.encode("ascii"), "sha256").hex()


def _checked_hash(key: bytes, e164: str) -> str:
    _check_key(key)
    if not is_e164(e164):
        raise InvalidNumberError(f"not an E.164 number: {e164[:40]!r}")
    return _hash(key, e164)


def _hashes(key: bytes, numbers: Iterable[str]) -> dict[str, str]:
    """hash -> number for distinct ``numbers``.

    Raises:
        InvalidNumberError: a number is not E.164.
    """
    _check_key(key)
    out: dict[str, str] = {}
    for number in numbers:
        if not is_e164(number):
            raise InvalidNumberError(f"not an E.164 number: {number[:40]!r}")
        out[_hash(key, number)] = number
    return out


def _chunks(items: Sequence[str], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise SuppressionError(f"{name}: a timezone-aware datetime is required")


def _recorded_instant(name: str, at: datetime, now: datetime | None = None) -> None:
    _aware(name, at)
    if at > (now or utcnow()) + CLOCK_SKEW:
        raise SuppressionError(f"{name}: {at.isoformat()} is in the future")


def _token(name: str, value: str) -> str:
    token = value.strip().lower()
    if _TOKEN_RE.fullmatch(token) is None:
        raise SuppressionError(
            f"{name}: {value[:50]!r} is not a short token (letters, digits, - _ . : /, "
            "at most 40 characters)"
        )
    return token


def _insert_ignore(session: Session, table: Table) -> Any:
    """INSERT that skips rows whose primary key already exists (SQLite, PostgreSQL)."""
    return _insert_ignore_for(session.get_bind().dialect.name, table)


def _insert_ignore_for(dialect: str, table: Table) -> Any:
    """:func:`_insert_ignore` for a dialect name."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    raise SuppressionError(f"database {dialect!r} is not supported (SQLite or PostgreSQL)")


def _campaign_name(session: Session, campaign_id: int | None) -> str | None:
    if campaign_id is None:
        return None
    campaign = session.get(Campaign, campaign_id)
    return campaign.name if campaign is not None else None


def _opt_out_data(
    source: str, at: datetime, campaign: str | None, campaign_id: int | None
) -> dict[str, Any]:
    """The data of an ``optout.recorded`` entry (the note, free text, is never in it)."""
    return {"source": source, "recorded_at": at, "campaign": campaign, "campaign_id": campaign_id}


def _journal_opt_out(
    session: Session,
    number_key: str,
    *,
    source: str,
    at: datetime,
    campaign_id: int | None,
) -> None:
    """``optout.recorded`` for a new opt-out (subject: its hash; actor ``callee`` when the
    person pressed the key or called back, else whoever acts now). The note is not
    journaled: it is free text."""
    journal_append(
        session,
        kinds.OPTOUT_RECORDED,
        _opt_out_data(source, at, _campaign_name(session, campaign_id), campaign_id),
        subject=number_key,
        actor="callee" if source in CALLEE_SOURCES else None,
    )


def _file_sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise SuppressionError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


def hashed_data_present(session: Session) -> str | None:
    """What the database holds hashed with the key (``"opt-outs"``...), None when nothing."""
    for model, what in (
        (OptOut, "opt-outs"),
        (OppositionEntry, "opposition-list entries"),
        (Refusal, "refusals"),
    ):
        if session.execute(select(model).limit(1)).first() is not None:
            return what
    return None


def load_store_key(session: Session, path: Path) -> tuple[bytes, bool]:
    """The keyed-hash key at ``path`` and whether it was just created, checked against the
    fingerprint the database keeps of it.

    * A missing key is created only while the database holds no hash made with a key (a new
      key would silently match none of the stored opt-outs: every opted-out number would be
      called again); the database then keeps the new key's fingerprint.
    * An existing key must have the fingerprint stored in the database
      (:func:`~voicecast.compliance.keys.key_fingerprint`, table ``hash_key_check``): another
      valid key, such as a fresh install's key next to a restored database, is refused.
    * The first load stores the fingerprint. A database that already holds hashed data but
      no fingerprint (made before migration 0003) stores the fingerprint of the key found
      at ``path``: it is trusted on first use.

    The fingerprint row is written in its own short transaction, committed at once whatever
    the caller later does with ``session`` (commit, rollback, or just close without
    ``begin``); only that row is written so. Call this before writing with ``session``: on
    SQLite, that separate write waits for the write lock ``session`` would hold. (A session
    bound to a connection, or to an in-memory SQLite database, writes the row itself and
    the caller's commit stores it.)

    Raises:
        HashKeyError: the key file is missing while hashed data exists; it is not the key the
            stored lists were hashed with; it is malformed or readable by others (see
            :func:`~voicecast.compliance.keys.load_hash_key`).
    """
    path = Path(path)
    if path.exists():
        key = load_hash_key(path, create=False)
        created = False
    else:
        what = hashed_data_present(session)
        if what is not None:
            raise HashKeyError(
                f"hash key {path} is missing but the database holds {what} hashed with it: "
                "restore the key from your backup (setting compliance.hash_key_file); a new "
                "key would match none of them"
            )
        key = load_hash_key(path, create=True)
        created = True
    fingerprint = key_fingerprint(key)
    stored = session.scalar(select(HashKeyCheck.fingerprint).where(HashKeyCheck.id == 1))
    if stored is None or (created and stored != fingerprint):
        # first load, a database made before 0003 (trust on first use), or a key created
        # because the old one was lost while no hash depended on it (replace its fingerprint)
        stored = _store_fingerprint(session, fingerprint, replace=created)
    if not hmac.compare_digest(stored, fingerprint):
        raise HashKeyError(
            f"hash key {path} is not the key the opt-out and opposition lists of this "
            "database were hashed with (its fingerprint differs from the one stored in the "
            "database): none of them would match; restore the right key from your backup "
            "(setting compliance.hash_key_file), the one saved with this database"
        )
    return key, created


def _store_fingerprint(session: Session, fingerprint: str, *, replace: bool) -> str:
    """Store ``fingerprint`` (row id 1) unless one is there (or replace it); return the
    stored one. Committed in its own transaction when ``session`` is bound to an engine."""
    table = HashKeyCheck.__table__
    assert isinstance(table, Table)
    values = {"id": 1, "fingerprint": fingerprint, "created_at": utcnow()}
    bind = session.get_bind()
    if isinstance(bind, Engine) and not isinstance(bind.pool, SingletonThreadPool | StaticPool):
        with bind.begin() as conn:
            if replace:
                conn.execute(delete(table).where(table.c.id == 1))
            conn.execute(_insert_ignore_for(conn.dialect.name, table).values(**values))
            stored = conn.scalar(select(table.c.fingerprint).where(table.c.id == 1))
    else:
        if replace:
            session.execute(delete(table).where(table.c.id == 1))
        session.execute(_insert_ignore(session, table).values(**values))
        stored = session.scalar(select(table.c.fingerprint).where(table.c.id == 1))
    if stored is None:  # pragma: no cover - the row was just written
        raise HashKeyError("hash key check: the fingerprint could not be stored")
    return str(stored)


# --------------------------------------------------------------------------- opt-outs


def add_opt_out(
    session: Session,
    key: bytes,
    e164: str,
    *,
    source: str,
    at: datetime,
    campaign_id: int | None = None,
    note: str | None = None,
) -> bool:
    """Record that ``e164`` asked not to be called again; True when it was not opted out yet.

    Idempotent: a number is stored once, with its earliest request (a later call with an
    earlier ``at`` moves the record back to it, with that call's source and note).

    Args:
        e164: the number in E.164.
        source: ``key-press`` | ``call-back`` | ``cli`` | ``import`` | ``api`` |
            ``console`` (added in the web console) | ``erasure`` (GDPR art. 17: no webhook).
        at: when the person asked (aware; stored in UTC).
        campaign_id: the campaign that received the request, if any.
        note: free text, at most 200 characters.

    Raises:
        InvalidNumberError: ``e164`` is not E.164.
        SuppressionError: unknown source, naive or future ``at``, note too long.
    """
    number_key = _checked_hash(key, e164)
    if source not in OPT_OUT_SOURCES:
        raise SuppressionError(
            f"opt-out source {source!r}: expected one of {', '.join(OPT_OUT_SOURCES)}"
        )
    _recorded_instant("opt-out time", at)
    if note is not None and len(note) > 200:
        raise SuppressionError("opt-out note: at most 200 characters")
    values = {
        "number_hash": number_key,
        "recorded_at": at,
        "source": source,
        "campaign_id": campaign_id,
        "note": note,
    }
    table = OptOut.__table__
    assert isinstance(table, Table)
    inserted = session.execute(
        _insert_ignore(session, table).values(**values).returning(table.c.number_hash)
    ).first()
    if inserted is not None:  # a new opt-out: tell the CRMs (webhook, same transaction)
        if source != ERASURE_SOURCE:
            enqueue_optout_created(
                session,
                e164,
                source=source,
                recorded_at=at,
                campaign_id=campaign_id,
                now=utcnow(),
            )
        _journal_opt_out(session, number_key, source=source, at=at, campaign_id=campaign_id)
        return True
    session.execute(
        update(table)
        .where(table.c.number_hash == number_key, table.c.recorded_at > at)
        .values(**values)
    )
    return False


def opted_out(session: Session, key: bytes, numbers: Iterable[str]) -> set[str]:
    """The numbers (E.164) among ``numbers`` that are on the opt-out list.

    Raises:
        InvalidNumberError: a number is not E.164.
    """
    by_hash = _hashes(key, numbers)
    found: set[str] = set()
    for chunk in _chunks(list(by_hash)):
        for number_key in session.scalars(
            select(OptOut.number_hash).where(OptOut.number_hash.in_(chunk))
        ):
            found.add(by_hash[number_key])
    return found


def opt_out_record(session: Session, key: bytes, e164: str) -> OptOut | None:
    """The opt-out of ``e164`` (earliest request, UTC), or None.

    Raises:
        InvalidNumberError: ``e164`` is not E.164.
    """
    return session.get(OptOut, _checked_hash(key, e164))


def import_opt_outs(
    session: Session,
    key: bytes,
    path: Path,
    default_region: str,
    *,
    at: datetime | None = None,
    note: str | None = None,
) -> OptOutImportSummary:
    """Add every valid number of a file (see :func:`~.numberfile.read_numbers`) as an opt-out.

    Source ``import``; ``at`` (aware, default now) is the recorded request time; numbers
    already opted out keep their earliest record. Invalid lines are counted and skipped
    (the first 20 are in the summary). Each number added is journaled
    (``optout.recorded``, one entry per number: it is a fact about that person). Does not
    commit.

    Raises:
        ImportFormatError: unreadable file or no phone column.
        SuppressionError: the file holds no valid number; naive or future ``at``.
    """
    _check_key(key)
    path = Path(path)
    at = at or utcnow()
    _recorded_instant("opt-out time", at)
    if note is not None and len(note) > 200:
        raise SuppressionError("opt-out note: at most 200 characters")
    table = OptOut.__table__
    assert isinstance(table, Table)
    summary = OptOutImportSummary(file=str(path), lines_read=0, added=0, already=0, invalid_lines=0)
    pending: dict[str, None] = {}

    def flush() -> None:
        hashes = list(pending)
        pending.clear()
        existing: set[str] = set()
        for chunk in _chunks(hashes):
            existing.update(
                session.scalars(select(OptOut.number_hash).where(OptOut.number_hash.in_(chunk)))
            )
        rows = [
            {"number_hash": h, "recorded_at": at, "source": "import", "note": note}
            for h in hashes
            if h not in existing
        ]
        if rows:
            session.execute(_insert_ignore(session, table), rows)
        journal_append_many(
            session,
            kinds.OPTOUT_RECORDED,
            [(h, _opt_out_data("import", at, None, None)) for h in hashes if h not in existing],
        )
        for chunk in _chunks(sorted(existing)):
            session.execute(
                update(table)
                .where(table.c.number_hash.in_(chunk), table.c.recorded_at > at)
                .values(recorded_at=at, source="import", campaign_id=None, note=note)
            )
        summary.added += len(rows)
        summary.already += len(existing)

    for item in read_numbers(path, default_region):
        summary.lines_read += 1
        if item.e164 is None:
            summary.invalid_lines += 1
            if len(summary.invalid_samples) < MAX_INVALID_SAMPLES:
                summary.invalid_samples.append((item.line, item.error or "invalid"))
            continue
        number_key = _hash(key, item.e164)
        if number_key in pending:
            summary.already += 1
            continue
        pending[number_key] = None
        if len(pending) >= INSERT_CHUNK:
            flush()
    if summary.added + summary.already + len(pending) == 0:
        raise SuppressionError(_no_valid_number(path, summary.lines_read, summary.invalid_samples))
    flush()
    return summary


def _no_valid_number(path: Path, lines: int, samples: list[tuple[int, str]]) -> str:
    first = f"; line {samples[0][0]}: {samples[0][1]}" if samples else ""
    return f"{path}: no valid phone number in {lines} line(s){first}"


# --------------------------------------------------------------------------- refusals


def add_refusal(
    session: Session,
    key: bytes,
    e164: str,
    *,
    at: datetime,
    campaign_id: int | None = None,
    source: str,
) -> Refusal:
    """Record that ``e164`` declined an offer at ``at`` (aware; stored UTC).

    France: no call or attempt to that number for 60 days afterwards (Code de la
    consommation D223-9). Each refusal is a new row; :func:`last_refusals` reads the latest.
    Journaled (``refusal.recorded``, subject: the number's hash) in the same transaction.

    Raises:
        InvalidNumberError: ``e164`` is not E.164.
        SuppressionError: naive or future ``at``; ``source`` is not a short token.
    """
    number_key = _checked_hash(key, e164)
    _recorded_instant("refusal time", at)
    refusal = Refusal(
        number_hash=number_key,
        refused_at=at,
        campaign_id=campaign_id,
        source=_token("refusal source", source),
    )
    session.add(refusal)
    session.flush()
    journal_append(
        session,
        kinds.REFUSAL_RECORDED,
        {
            "source": refusal.source,
            "refused_at": at,
            "campaign": _campaign_name(session, campaign_id),
            "campaign_id": campaign_id,
        },
        subject=number_key,
    )
    return refusal


def last_refusals(session: Session, key: bytes, numbers: Iterable[str]) -> dict[str, datetime]:
    """number (E.164) -> its latest refusal (UTC), for the numbers that ever declined.

    Raises:
        InvalidNumberError: a number is not E.164.
    """
    by_hash = _hashes(key, numbers)
    out: dict[str, datetime] = {}
    for chunk in _chunks(list(by_hash)):
        for number_key, last in session.execute(
            select(Refusal.number_hash, func.max(Refusal.refused_at))
            .where(Refusal.number_hash.in_(chunk))
            .group_by(Refusal.number_hash)
        ):
            if last is not None:
                # func.max loses the column type on SQLite: naive UTC text or datetime
                out[by_hash[number_key]] = _as_utc(last)
    return out


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a datetime: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --------------------------------------------------------------------------- opposition lists


def opposition_spec(name: str) -> OppositionListSpec:
    """The :class:`OppositionListSpec` of ``name``.

    Raises:
        SuppressionError: not a known list.
    """
    spec = OPPOSITION_LISTS.get(name.strip().lower())
    if spec is None:
        raise SuppressionError(
            f"unknown opposition list {name!r}: expected {', '.join(OPPOSITION_LISTS)}"
        )
    return spec


def _stage(
    key: bytes, path: Path, region: str, sink: IO[bytes]
) -> tuple[int, int, int, list[tuple[int, str]]]:
    """Hash every valid number of ``path`` into ``sink`` (one hex hash a line).

    Returns (lines read, valid lines, invalid lines, first invalid (line, reason)).
    """
    lines = valid = invalid = 0
    samples: list[tuple[int, str]] = []
    buffer: list[bytes] = []
    for item in read_numbers(path, region):
        lines += 1
        if item.e164 is None:
            invalid += 1
            if len(samples) < MAX_INVALID_SAMPLES:
                samples.append((item.line, item.error or "invalid"))
            continue
        valid += 1
        buffer.append(hmac.digest(key, item.e164.encode("ascii"), "sha256").hex().encode())
        if len(buffer) >= INSERT_CHUNK:
            sink.write(b"\n".join(buffer) + b"\n")
            buffer.clear()
    if buffer:
        sink.write(b"\n".join(buffer) + b"\n")
    return lines, valid, invalid, samples


def _staged_chunks(source: IO[bytes]) -> Iterator[list[str]]:
    source.seek(0)
    chunk: list[str] = []
    for raw in source:
        chunk.append(raw.rstrip(b"\n").decode("ascii"))
        if len(chunk) >= INSERT_CHUNK:
            yield sorted(set(chunk))
            chunk = []
    if chunk:
        yield sorted(set(chunk))


def import_opposition_list(
    session: Session,
    key: bytes,
    name: str,
    path: Path,
    *,
    as_of: datetime | None,
    now: datetime,
) -> OppositionImportSummary:
    """Replace the stored version of national list ``name`` with the numbers of ``path``.

    ``name``: ``bloctel`` (France, Code de la consommation L223-1; numbers read with default
    region FR), ``us-dnc`` (47 CFR 64.1200(c)(2); US; the registry's ``AreaCode,PhoneNumber``
    download is read as is), ``tps`` (PECR reg. 21; GB). The numbers are stored only as
    keyed hashes (CNIL guidance). The file is read and hashed first (streamed to a temporary
    file of hashes, so any size fits in memory), then the old version is deleted and the new
    one inserted in chunks of :data:`INSERT_CHUNK`, in the caller's transaction: the caller
    commits, and a failure rolled back leaves the previous version in place. The import is
    journaled (``opposition.imported``: list, date, counts, the file's SHA-256).

    Duplicates in the file are stored once; invalid lines are counted, the first 20 kept
    with their line numbers.

    Args:
        as_of: date of this version of the list (aware; default ``now``); it dates the
            list for the staleness checks.
        now: the current instant (aware), stored as ``imported_at``.

    Raises:
        SuppressionError: unknown list, naive or future dates, a date older than the stored
            copy's, or no valid number in the file.
        ImportFormatError: unreadable file, or a header without a phone column.
    """
    spec = opposition_spec(name)
    _check_key(key)
    path = Path(path)
    _aware("now", now)
    list_date = as_of or now
    _recorded_instant("list date (--as-of)", list_date, now)
    current = session.scalar(select(OppositionList).where(OppositionList.name == spec.name))
    if current is not None and current.list_date > list_date:
        raise SuppressionError(
            f"the stored {spec.name} list is dated {current.list_date.date().isoformat()}, "
            f"newer than this one ({list_date.date().isoformat()}): an older copy would "
            "replace it and miss the numbers added since; import the newest file"
        )
    sha256 = _file_sha256(path)
    with tempfile.TemporaryFile(prefix="voicecast-opposition-") as staged:
        lines, valid, invalid, samples = _stage(key, path, spec.region, staged)
        if valid == 0:
            raise SuppressionError(_no_valid_number(path, lines, samples))
        staged.flush()

        old = session.scalar(select(OppositionList).where(OppositionList.name == spec.name))
        replaced: int | None = None
        if old is None:
            stored = OppositionList(name=spec.name, country=spec.country, entries=0)
            session.add(stored)
        else:
            stored = old
            replaced = old.entries
            session.execute(delete(OppositionEntry).where(OppositionEntry.list_id == old.id))
        stored.list_date = list_date
        stored.imported_at = now
        stored.invalid_lines = invalid
        stored.source_file = str(path)[-500:]
        stored.sha256 = sha256
        session.flush()
        list_id = stored.id

        table = OppositionEntry.__table__
        assert isinstance(table, Table)
        statement = _insert_ignore(session, table)
        for chunk in _staged_chunks(staged):
            session.execute(statement, [{"list_id": list_id, "number_hash": h} for h in chunk])
    entries = session.scalar(
        select(func.count()).select_from(OppositionEntry).where(OppositionEntry.list_id == list_id)
    )
    stored.entries = int(entries or 0)
    session.flush()
    journal_append(
        session,
        kinds.OPPOSITION_IMPORTED,
        {
            "list": spec.name,
            "country": spec.country,
            "list_date": list_date,
            "entries": stored.entries,
            "lines_read": lines,
            "invalid_lines": invalid,
            "replaced_entries": replaced,
            "file_sha256": sha256,
        },
    )
    return OppositionImportSummary(
        name=spec.name,
        country=spec.country,
        file=str(path),
        sha256=sha256,
        list_date=list_date,
        imported_at=now,
        lines_read=lines,
        valid_lines=valid,
        entries=stored.entries,
        invalid_lines=invalid,
        invalid_samples=samples,
        replaced_entries=replaced,
    )


def opposition_hits(
    session: Session, key: bytes, list_name: str, numbers: Iterable[str]
) -> set[str]:
    """The numbers (E.164) among ``numbers`` on the stored version of ``list_name``.

    Empty when that list was never imported (:func:`opposition_status` tells).

    Raises:
        SuppressionError: unknown list name.
        InvalidNumberError: a number is not E.164.
    """
    spec = opposition_spec(list_name)
    by_hash = _hashes(key, numbers)
    list_id = session.scalar(select(OppositionList.id).where(OppositionList.name == spec.name))
    if list_id is None or not by_hash:
        return set()
    found: set[str] = set()
    for chunk in _chunks(list(by_hash)):
        for number_key in session.scalars(
            select(OppositionEntry.number_hash).where(
                OppositionEntry.list_id == list_id, OppositionEntry.number_hash.in_(chunk)
            )
        ):
            found.add(by_hash[number_key])
    return found


def opposition_status(session: Session) -> list[OppositionListInfo]:
    """The stored national lists, by name: version date, import time (UTC), entries."""
    out: list[OppositionListInfo] = []
    for row in session.scalars(select(OppositionList).order_by(OppositionList.name)):
        spec = OPPOSITION_LISTS.get(row.name)
        out.append(
            OppositionListInfo(
                name=row.name,
                country=row.country,
                list_date=row.list_date,
                imported_at=row.imported_at,
                entries=row.entries,
                invalid_lines=row.invalid_lines,
                source_file=row.source_file,
                sha256=row.sha256,
                max_age_days=spec.max_age_days if spec else 0,
                source=spec.source if spec else "",
            )
        )
    return out
