"""Writing and reading the proof journal in the database.

:func:`append` adds one entry inside the caller's transaction, so an entry exists exactly
when the fact it records was committed. Appends are serialised by the chain head row
(``journal_head``): its ``UPDATE ... SET seq = seq + 1`` is the first write of every
append, which takes SQLite's write lock or PostgreSQL's row lock until commit, so two
processes can never chain onto the same entry.

Who acted comes from :func:`acting_as` (a context variable set by the CLI, the console
and the API for the duration of a command or request); without one the actor is
``system`` (the dialer, the scheduler).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import getpass
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from voicecast.compliance.keys import number_hash
from voicecast.journal.chain import (
    GENESIS,
    ChainEntry,
    ChainReport,
    canonical_json,
    entry_hash,
    format_instant,
    verify_chain,
)
from voicecast.storage.models import JournalEntry, JournalHead, utcnow

SYSTEM = "system"
"""The actor of entries written by the dialer and the scheduler."""

_ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("voicecast_actor", default=SYSTEM)
_ACTOR_RE = re.compile(r"[a-z]+(:[^\x00-\x1f\x7f]{1,100})?")
_KIND_RE = re.compile(r"[a-z]+(\.[a-z_]+)+")
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_READ_CHUNK = 2000


class JournalError(ValueError):
    """A journal entry could not be written as asked (bad kind, actor, subject or data)."""


def current_actor() -> str:
    """Who the entries written now are attributed to (``system`` by default)."""
    return _ACTOR.get()


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute the entries written inside the block to ``actor``.

    Args:
        actor: ``user:NAME`` (console/API), ``cli:UNIXNAME``, ``callee``, ``system``...

    Raises:
        JournalError: ``actor`` is not ``word`` or ``word:name`` (no control characters,
            at most 100 characters after the colon).
    """
    if _ACTOR_RE.fullmatch(actor) is None:
        raise JournalError(f"not a journal actor: {actor[:60]!r}")
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def cli_actor() -> str:
    """``cli:<login name>`` of whoever runs the command (``cli:unknown`` if unknowable)."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = "unknown"
    name = re.sub(r"[\x00-\x1f\x7f]", "?", name)[:100] or "unknown"
    return f"cli:{name}"


def subject_of(key: bytes, e164: str) -> str:
    """The journal subject of a number: its keyed hash, as in the opt-out list.

    Raises:
        ValueError: ``e164`` is not E.164 or the key is not 32 bytes.
    """
    return number_hash(key, e164)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value


def _checked_meta(kind: str, actor: str | None, at: datetime | None) -> tuple[str, datetime]:
    """The entry's actor and instant (defaults: :func:`current_actor`, now), after checking
    them and ``kind``.

    Raises:
        JournalError: bad kind, actor, or a naive instant.
    """
    if _KIND_RE.fullmatch(kind) is None or len(kind) > 40:
        raise JournalError(f"not a journal kind: {kind[:60]!r}")
    who = current_actor() if actor is None else actor
    if _ACTOR_RE.fullmatch(who) is None:
        raise JournalError(f"not a journal actor: {who[:60]!r}")
    when = utcnow() if at is None else at
    if when.tzinfo is None:
        raise JournalError("journal instants must be timezone-aware")
    return who, when


def _payload(kind: str, subject: str | None, data: Mapping[str, Any]) -> str:
    """``data`` as the canonical JSON text that is stored and hashed.

    Raises:
        JournalError: ``subject`` is not a keyed hash, or ``data`` is not JSON.
    """
    if subject is not None and _HASH_RE.fullmatch(subject) is None:
        raise JournalError("a journal subject must be a keyed hash (64 hex), never a number")
    try:
        return canonical_json(_jsonable(dict(data)))
    except (TypeError, ValueError) as exc:
        raise JournalError(f"journal data of {kind} is not JSON: {exc}") from None


# Core tables, not the ORM's bulk paths (which synchronise the session): appends are on
# every call's path. A JournalHead loaded in a session is re-read by head().
_HEAD = cast(Table, JournalHead.__table__)
_ENTRIES = cast(Table, JournalEntry.__table__)


def _reserve(session: Session, count: int) -> tuple[int, str]:
    """Move the chain head ``count`` entries on; return the first reserved ``seq`` and the
    hash the first new entry chains onto (the current last entry's).

    The head's ``UPDATE`` is the append's first write: it takes SQLite's write lock or
    PostgreSQL's row lock until commit, so concurrent appends never share a ``seq``.

    Raises:
        LookupError: the head row is missing (database not migrated).
    """
    row = session.execute(
        update(_HEAD)
        .where(_HEAD.c.id == 1)
        .values(seq=_HEAD.c.seq + count)
        .returning(_HEAD.c.seq, _HEAD.c.hash)
    ).first()
    if row is None:
        raise LookupError("journal_head row missing: run the database migrations")
    return int(row[0]) - count + 1, str(row[1])


def append(
    session: Session,
    kind: str,
    data: Mapping[str, Any] | None = None,
    *,
    subject: str | None = None,
    actor: str | None = None,
    at: datetime | None = None,
) -> JournalEntry:
    """Append one entry to the journal, in the caller's transaction (not committed here).

    Args:
        session: a session inside a transaction; the entry is written when it commits and
            vanishes with it on rollback.
        kind: what happened (a constant of :mod:`voicecast.journal.kinds`).
        data: JSON-able facts (datetimes become ISO strings). Never a number or a name.
        subject: the person concerned, as :func:`subject_of` (64 hex characters).
        actor: who acted; default :func:`current_actor`.
        at: when (aware); default now (UTC).

    Returns:
        The new :class:`~voicecast.storage.models.JournalEntry`: written in the
        transaction, not attached to the session.

    Raises:
        JournalError: bad kind, subject, actor or data (nothing is written).
        LookupError: the journal head row is missing (database not migrated).
    """
    who, when = _checked_meta(kind, actor, at)
    (values,) = _write_chain(
        session, when, [(kind, who, subject, _payload(kind, subject, data or {}))]
    )
    return JournalEntry(**values)


def _write_chain(
    session: Session, when: datetime, checked: Sequence[tuple[str, str, str | None, str]]
) -> list[dict[str, Any]]:
    """Write ``checked`` entries ((kind, actor, subject, canonical JSON data), already
    checked) at instant ``when``, chained in order after the head, with three statements
    whatever their number (Core statements, not the ORM's unit of work: appends are on
    every call's path); their column values.

    Raises:
        LookupError: the journal head row is missing.
    """
    first, prev = _reserve(session, len(checked))
    rows: list[dict[str, Any]] = []
    for seq, (kind, who, subject, payload) in enumerate(checked, start=first):
        digest = entry_hash(
            seq=seq, at=when, kind=kind, actor=who, subject=subject, data=payload, prev_hash=prev
        )
        rows.append(
            {
                "seq": seq,
                "at": when,
                "kind": kind,
                "actor": who,
                "subject": subject,
                "data": payload,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    session.execute(insert(_ENTRIES), rows)
    session.execute(update(_HEAD).where(_HEAD.c.id == 1).values(hash=prev))
    return rows


def append_many(
    session: Session,
    kind: str,
    items: Sequence[tuple[str | None, Mapping[str, Any]]],
    *,
    actor: str | None = None,
    at: datetime | None = None,
) -> int:
    """Append one entry per ``(subject, data)`` of ``items``, all of ``kind``, in one
    statement (file imports: one entry per person without one round trip each).

    Same rules and chaining as :func:`append` (entries get consecutive ``seq``); the chain
    head moves once. Runs in the caller's transaction.

    Returns:
        How many entries were written.

    Raises:
        JournalError: bad kind, subject, actor or data (nothing is written).
        LookupError: the journal head row is missing.
    """
    if not items:
        return 0
    who, when = _checked_meta(kind, actor, at)
    checked = [(kind, who, subject, _payload(kind, subject, data)) for subject, data in items]
    return len(_write_chain(session, when, checked))


@dataclass(frozen=True)
class PendingEntry:
    """An entry to append later with :func:`append_all` (``kind``, ``data`` and ``subject``
    as for :func:`append`; its ``actor`` is taken when it is built, its instant when it is
    written)."""

    kind: str
    data: Mapping[str, Any]
    subject: str | None = None
    actor: str = dataclasses.field(default_factory=current_actor)


def append_all(session: Session, entries: Sequence[PendingEntry]) -> int:
    """Append ``entries`` in order, in the caller's transaction, with three statements
    whatever their number (the chain head moved once, one insert, the head's hash): a
    transaction that journals several things (the dialer's claim of several calls) pays
    for one append. Same rules and chaining as :func:`append`; every entry gets the
    instant of this call (UTC).

    Returns:
        How many entries were written.

    Raises:
        JournalError: bad kind, subject, actor or data (nothing is written).
        LookupError: the journal head row is missing.
    """
    if not entries:
        return 0
    when = utcnow()
    checked = []
    for e in entries:
        who, _ = _checked_meta(e.kind, e.actor, when)
        checked.append((e.kind, who, e.subject, _payload(e.kind, e.subject, e.data)))
    return len(_write_chain(session, when, checked))


def head(session: Session) -> JournalHead:
    """The chain head row.

    Raises:
        LookupError: it is missing (database not migrated, or deleted outside voicecast).
    """
    row = session.get(JournalHead, 1, populate_existing=True)
    if row is None:
        raise LookupError("journal_head row missing: run the database migrations")
    return row


def _as_chain(row: JournalEntry) -> ChainEntry:
    return ChainEntry(
        seq=row.seq,
        at=row.at,
        kind=row.kind,
        actor=row.actor,
        subject=row.subject,
        data=row.data,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def iter_entries(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
    kinds: tuple[str, ...] | None = None,
) -> Iterator[ChainEntry]:
    """Entries in ``seq`` order, read in chunks (memory stays flat on a long journal).

    Args:
        since, until: aware instants; ``since <= at < until``.
        subject: only this person's entries (a :func:`subject_of` hash).
        kinds: only these kinds.
    """
    last = 0
    while True:
        query = select(JournalEntry).where(JournalEntry.seq > last)
        if since is not None:
            query = query.where(JournalEntry.at >= since)
        if until is not None:
            query = query.where(JournalEntry.at < until)
        if subject is not None:
            query = query.where(JournalEntry.subject == subject)
        if kinds is not None:
            query = query.where(JournalEntry.kind.in_(kinds))
        rows = session.scalars(query.order_by(JournalEntry.seq).limit(_READ_CHUNK)).all()
        if not rows:
            return
        for row in rows:
            yield _as_chain(row)
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session, *, max_problems: int = 100) -> ChainReport:
    """Check the whole stored chain against its anchor and head.

    A moved anchor (entries removed from the start) must be explained by a
    ``journal.purged`` entry of the chain naming that anchor, whose cutoff lies at least
    :data:`MIN_JOURNAL_DAYS` before the purge: otherwise recent entries were deleted
    behind voicecast's back and the anchor moved to hide it.

    Returns:
        A :class:`~voicecast.journal.chain.ChainReport`; ``first_problem()`` names the
        first broken entry ("entry 57: altered: ...").

    Raises:
        LookupError: the head row is missing.
    """
    h = head(session)
    report = verify_chain(
        iter_entries(session),
        anchor_seq=h.anchor_seq,
        anchor_hash=h.anchor_hash,
        head_seq=h.seq,
        head_hash=h.hash,
        max_problems=max_problems,
    )
    if h.anchor_seq:
        problem = _anchor_problem(session, h)
        if problem is not None:
            report.problems.insert(0, (h.anchor_seq, problem))
    return report


MIN_JOURNAL_DAYS = 365
"""The shortest journal retention (``[retention] journal_days`` cannot be lower): a purge
whose cutoff is more recent than this was not made by voicecast."""


def _anchor_problem(session: Session, h: JournalHead) -> str | None:
    """Why the head's anchor is not a genuine retention purge, or None when it is."""
    purges = session.scalars(
        select(JournalEntry)
        .where(JournalEntry.kind == "journal.purged", JournalEntry.seq > h.anchor_seq)
        .order_by(JournalEntry.seq)
    ).all()
    for entry in purges:
        try:
            data = json.loads(entry.data)
            through, digest = int(data["through_seq"]), str(data["through_hash"])
            cutoff = datetime.fromisoformat(str(data["cutoff"]))
        except (ValueError, KeyError, TypeError):
            continue
        if through != h.anchor_seq or digest != h.anchor_hash:
            continue
        if cutoff.tzinfo is None or cutoff > entry.at - timedelta(days=MIN_JOURNAL_DAYS):
            return (
                f"removed by a purge (entry {entry.seq}) whose cutoff "
                f"{format_instant(cutoff) if cutoff.tzinfo else cutoff} is less than "
                f"{MIN_JOURNAL_DAYS} days before it: retention never removes entries that recent"
            )
        return None
    return (
        f"missing (entries up to {h.anchor_seq} deleted: the "
        "chain's anchor was moved past them but no journal.purged entry records a retention "
        "purge of them)"
    )


@dataclass(frozen=True)
class PurgeResult:
    """What :func:`purge_before` removed: ``count`` entries up to ``through_seq``."""

    count: int
    through_seq: int
    through_hash: str


def purge_before(
    session: Session, cutoff: datetime, *, dry_run: bool = False, at: datetime | None = None
) -> PurgeResult:
    """Remove the journal's oldest entries, those written before ``cutoff`` (retention).

    Only a prefix of the chain is removed (entries from the anchor up to the last one
    before ``cutoff``, in ``seq`` order), and the head's anchor moves to the last removed
    entry, so :func:`verify` still checks the rest from a known hash. A
    ``journal.purged`` entry records the anchor. Runs in the caller's transaction.

    Args:
        cutoff: aware instant; entries with ``at < cutoff`` go.
        dry_run: count only, change nothing.
        at: the purge instant (aware; default now), the ``journal.purged`` entry's time.

    Raises:
        LookupError: the head row is missing.
    """
    h = head(session)
    # the prefix: entries before the first one at or after the cutoff
    first_kept = session.scalar(select(func.min(JournalEntry.seq)).where(JournalEntry.at >= cutoff))
    upper = (h.seq + 1) if first_kept is None else int(first_kept)
    through = session.scalar(
        select(func.max(JournalEntry.seq)).where(
            JournalEntry.seq < upper, JournalEntry.seq > h.anchor_seq
        )
    )
    if through is None:
        return PurgeResult(0, h.anchor_seq, h.anchor_hash)
    last = session.get(JournalEntry, int(through))
    assert last is not None
    count = int(through) - h.anchor_seq
    result = PurgeResult(count, int(through), last.hash)
    if dry_run:
        return result
    session.execute(
        update(JournalHead)
        .where(JournalHead.id == 1)
        .values(anchor_seq=result.through_seq, anchor_hash=result.through_hash)
    )
    session.execute(delete(JournalEntry).where(JournalEntry.seq <= result.through_seq))
    session.expire_all()
    append(
        session,
        "journal.purged",
        {
            "through_seq": result.through_seq,
            "through_hash": result.through_hash,
            "count": count,
            "cutoff": cutoff,
        },
        at=at,
    )
    return result


def ensure_head(session: Session) -> None:
    """Create the head row if a database lacks it (idempotent; the migration makes it)."""
    if session.get(JournalHead, 1) is None:
        session.execute(
            text(
                "INSERT INTO journal_head (id, seq, hash, anchor_seq, anchor_hash) "
                "VALUES (1, 0, :g, 0, :g)"
            ).bindparams(g=GENESIS)
        )
