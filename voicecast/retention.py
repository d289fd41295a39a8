"""Storage limitation: what each kind of personal data is kept for, and the daily purge.

GDPR art. 5(1)(e): personal data is kept "no longer than is necessary for the purposes for
which it is processed". Each kind below has its period in ``[retention]``
(:class:`~voicecast.config.RetentionSettings`, days) and its rule:

=================  ==========================================================================
kind               rule (``cutoff = now - days``, UTC)
=================  ==========================================================================
contacts           a contact whose last activity (the latest of its import, its last change
                   and the end of its last call attempt) is before the cutoff is deleted,
                   with its campaign rows, their attempts and gate decisions and its
                   recordings' files; one still pending in a running or paused campaign is
                   skipped. ``contacts_days`` (CNIL, référentiel "gestion commerciale"
                   2019: prospects' data 3 years after collection or the last contact).
call_attempts      attempts started before the cutoff lose their number (anonymised: the
                   outcome, times and causes stay for the campaign reports).
                   ``attempts_days``, never less than the 31 days the frequency caps count
                   (:data:`voicecast.compliance.facts.ATTEMPT_LOOKBACK`).
inbound_calls      calls to the call-back line received before the same cutoff lose the
                   caller's number.
recordings         callees' replies: deleted at their node's ``delete_after`` and at the
                   latest ``recordings_days`` after recording; the file goes, the row stays
                   as the trace (:func:`voicecast.campaigns.retention.purge_recordings`).
consents           every consent row of a number that no contact holds any more, when the
                   latest row for that number (recorded or imported) is before the cutoff.
                   ``consents_days`` (the proof of consent is kept for the 5-year limitation
                   period, Code civil art. 2224).
refusals           refusals recorded before the cutoff (``refusals_days``, at least the 60
                   days of Code de la consommation D223-9).
journal            journal entries written before the cutoff (``journal_days``,
                   :func:`voicecast.journal.store.purge_before`, which anchors the chain).
=================  ==========================================================================

Not purged by this job, and said so in its output: finished webhook deliveries (the
webhook worker of ``voicecast serve`` deletes them after ``[web] webhook_keep_days``), the
company opt-out list and the national opposition lists (keyed hashes only; an objection
must be honoured for as long as the organisation calls, GDPR art. 21(3), and the CNIL asks
for at least 3 years; an opposition list is replaced by its next import).

:func:`plan_retention` says what would go; :func:`run_retention` does it in the caller's
transaction and journals one ``retention.purged`` entry (:mod:`voicecast.journal.kinds`)
with each kind's cutoff and count, even when nothing went (it proves the job ran).
:class:`RetentionJob` runs it daily in ``voicecast serve``.

Every instant here is UTC and timezone-aware; only the CLI shows local times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from voicecast.campaigns.retention import expired_recordings, purge_recordings
from voicecast.clock import Clock
from voicecast.compliance.facts import ATTEMPT_LOOKBACK
from voicecast.config import RetentionSettings, Settings
from voicecast.journal import kinds
from voicecast.journal.store import append, purge_before
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Consent,
    Contact,
    InboundCall,
    JournalEntry,
    JournalHead,
    Recording,
    Refusal,
)

log = logging.getLogger(__name__)

CONTACTS = "contacts"
CALL_ATTEMPTS = "call_attempts"
INBOUND_CALLS = "inbound_calls"
RECORDINGS = "recordings"
CONSENTS = "consents"
REFUSALS = "refusals"
JOURNAL = "journal"
WEBHOOK_DELIVERIES = "webhook_deliveries"
OPT_OUTS = "opt_outs"
OPPOSITION_LISTS = "opposition_lists"

PURGED_KINDS: tuple[str, ...] = (
    CONTACTS,
    CALL_ATTEMPTS,
    INBOUND_CALLS,
    RECORDINGS,
    CONSENTS,
    REFUSALS,
    JOURNAL,
)
"""The kinds this job purges or anonymises, in the order it shows them."""

ANONYMISED_NUMBER = ""
"""What an anonymised call attempt's ``number`` becomes (the column is NOT NULL)."""

ACTIVE_CAMPAIGN_STATES: tuple[str, ...] = ("running", "paused")
"""A contact still waiting in a campaign in one of these states is never deleted."""

WAITING_CONTACT_STATES: tuple[str, ...] = ("pending", "dialing")

CATCH_UP_AFTER = timedelta(days=1)
"""``voicecast serve`` runs the job at start when the last run is older than this."""
ALREADY_RAN_WITHIN = timedelta(hours=12)
"""The daily job does nothing when a run was journaled this recently: another controller
sharing the database ran it (each ``voicecast serve`` schedules it)."""

_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class KindPlan:
    """What retention does to one kind of data.

    Attributes:
        kind: one of :data:`PURGED_KINDS`, or ``webhook_deliveries`` / ``opt_outs`` /
            ``opposition_lists`` (shown, not handled here: ``count`` is None).
        action: what happens to an expired item, in words ("deleted", "anonymised"...).
        days: the retention period in days (None: kept for as long as needed).
        cutoff: items older than this instant (UTC) expire; None when not time-based.
        count: items that go (or went); None for kinds this job does not handle.
        oldest: the oldest expired item's date (UTC), None when nothing expires.
        details: related counts (e.g. ``skipped``, ``call_attempts`` of deleted contacts).
        note: why, or who handles it instead.
    """

    kind: str
    action: str
    days: int | None = None
    cutoff: datetime | None = None
    count: int | None = None
    oldest: datetime | None = None
    details: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (instants as ISO 8601 UTC strings)."""
        return {
            "kind": self.kind,
            "action": self.action,
            "days": self.days,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "count": self.count,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "details": dict(self.details),
            "note": self.note,
        }


@dataclass(frozen=True)
class RetentionPlan:
    """What a retention run at ``now`` (UTC) removes: one :class:`KindPlan` per kind."""

    now: datetime
    kinds: tuple[KindPlan, ...]

    def get(self, kind: str) -> KindPlan:
        """The plan of ``kind``.

        Raises:
            KeyError: no such kind.
        """
        for item in self.kinds:
            if item.kind == kind:
                return item
        raise KeyError(kind)

    def counts(self) -> dict[str, int]:
        """Kind -> count, for the kinds this job handles."""
        return {k.kind: k.count for k in self.kinds if k.count is not None}

    def total(self) -> int:
        """How many items go in all."""
        return sum(self.counts().values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"now": self.now.isoformat(), "kinds": [k.as_dict() for k in self.kinds]}


@dataclass(frozen=True)
class RetentionReport(RetentionPlan):
    """What a run did. ``dry_run``: nothing was changed (the counts are what would go);
    ``journal_seq``: the ``retention.purged`` entry written (None on a dry run)."""

    dry_run: bool = False
    journal_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {**super().as_dict(), "dry_run": self.dry_run, "journal_seq": self.journal_seq}


# --------------------------------------------------------------------------- helpers


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _count_min(
    session: Session, column: Any, where: ColumnElement[bool]
) -> tuple[int, datetime | None]:
    row = session.execute(select(func.count(), func.min(column)).where(where)).one()
    return int(row[0]), row[1]


def _aware(value: datetime | None) -> datetime | None:
    """Aggregates (MIN/MAX) of SQLite datetimes come back as the column type, but be safe."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _lock(session: Session) -> None:
    """Take the database's write lock (SQLite) or the journal head's row lock (PostgreSQL)
    before reading what to purge, so the rows read are the rows changed."""
    session.execute(update(JournalHead).where(JournalHead.id == 1).values(seq=JournalHead.seq))


# --------------------------------------------------------------------------- each kind


def _recordings(session: Session, days: int, now: datetime, dry_run: bool) -> KindPlan:
    max_age = timedelta(days=days)
    count, oldest = _count_min(session, Recording.created_at, expired_recordings(now, max_age))
    if not dry_run and count:
        count = purge_recordings(session, now, max_age)
    return KindPlan(
        RECORDINGS,
        "files deleted (rows kept as the trace)",
        days,
        now - max_age,
        count,
        _aware(oldest),
        note="at the recording node's retention_days, and at the latest this many days "
        "after recording",
    )


def _attempts(session: Session, days: int, now: datetime, dry_run: bool) -> KindPlan:
    keep = max(timedelta(days=days), ATTEMPT_LOOKBACK)
    cutoff = now - keep
    cond = and_(CallAttempt.created_at < cutoff, CallAttempt.number != ANONYMISED_NUMBER)
    count, oldest = _count_min(session, CallAttempt.created_at, cond)
    if not dry_run and count:
        result = session.execute(
            update(CallAttempt)
            .where(cond)
            .values(number=ANONYMISED_NUMBER)
            .execution_options(synchronize_session=False)
        )
        count = int(result.rowcount)  # type: ignore[attr-defined]
    note = "outcomes, times and causes stay for the campaign reports"
    if keep > timedelta(days=days):
        note += f"; kept {keep.days} days: the frequency caps count the last 31 days"
    return KindPlan(
        CALL_ATTEMPTS,
        "anonymised (number removed)",
        keep.days,
        cutoff,
        count,
        _aware(oldest),
        note=note,
    )


def _inbound(session: Session, days: int, now: datetime, dry_run: bool) -> KindPlan:
    keep = max(timedelta(days=days), ATTEMPT_LOOKBACK)
    cutoff = now - keep
    cond = and_(InboundCall.received_at < cutoff, InboundCall.caller.is_not(None))
    count, oldest = _count_min(session, InboundCall.received_at, cond)
    if not dry_run and count:
        result = session.execute(
            update(InboundCall)
            .where(cond)
            .values(caller=None)
            .execution_options(synchronize_session=False)
        )
        count = int(result.rowcount)  # type: ignore[attr-defined]
    return KindPlan(
        INBOUND_CALLS,
        "anonymised (caller's number removed)",
        keep.days,
        cutoff,
        count,
        _aware(oldest),
        note="calls to the call-back line; the action taken stays",
    )


def _protected_contacts() -> Any:
    """Contacts still waiting in a running or paused campaign (never deleted)."""
    return (
        select(CampaignContact.contact_id)
        .join(Campaign, Campaign.id == CampaignContact.campaign_id)
        .where(
            Campaign.status.in_(ACTIVE_CAMPAIGN_STATES),
            CampaignContact.state.in_(WAITING_CONTACT_STATES),
        )
    )


def _expired_contacts(session: Session, cutoff: datetime) -> tuple[list[int], int, datetime | None]:
    """(ids of the contacts to delete, how many expired ones are skipped, oldest activity)."""
    last = (
        select(
            CampaignContact.contact_id.label("contact_id"),
            func.max(func.coalesce(CallAttempt.ended_at, CallAttempt.created_at)).label("last"),
        )
        .join(CallAttempt, CallAttempt.campaign_contact_id == CampaignContact.id)
        .group_by(CampaignContact.contact_id)
        .subquery()
    )
    rows = session.execute(
        select(Contact.id, Contact.created_at, Contact.updated_at, last.c.last)
        .outerjoin(last, last.c.contact_id == Contact.id)
        .where(
            Contact.created_at < cutoff,
            Contact.updated_at < cutoff,
            (last.c.last.is_(None)) | (last.c.last < cutoff),
        )
        .order_by(Contact.id)
    ).all()
    ids = [int(r[0]) for r in rows]
    protected: set[int] = set()
    for chunk in _chunks(ids):
        protected.update(
            session.scalars(_protected_contacts().where(CampaignContact.contact_id.in_(chunk)))
        )
    oldest: datetime | None = None
    kept: list[int] = []
    for row in rows:
        if int(row[0]) in protected:
            continue
        kept.append(int(row[0]))
        activity = max(v for v in (_aware(row[1]), _aware(row[2]), _aware(row[3])) if v is not None)
        oldest = activity if oldest is None else min(oldest, activity)
    return kept, len(protected), oldest


def _contact_related(session: Session, ids: Sequence[int]) -> dict[str, int]:
    """Rows deleted with ``ids``: campaign rows, call attempts, recording rows."""
    counts = {"campaign_contacts": 0, "call_attempts": 0, "recordings": 0}
    for chunk in _chunks(ids):
        counts["campaign_contacts"] += int(
            session.scalar(select(func.count()).where(CampaignContact.contact_id.in_(chunk))) or 0
        )
        counts["call_attempts"] += int(
            session.scalar(
                select(func.count(CallAttempt.id))
                .join(CampaignContact, CampaignContact.id == CallAttempt.campaign_contact_id)
                .where(CampaignContact.contact_id.in_(chunk))
            )
            or 0
        )
        counts["recordings"] += int(
            session.scalar(
                select(func.count(Recording.id))
                .join(CallAttempt, CallAttempt.id == Recording.attempt_id)
                .join(CampaignContact, CampaignContact.id == CallAttempt.campaign_contact_id)
                .where(CampaignContact.contact_id.in_(chunk))
            )
            or 0
        )
    return counts


def _delete_contacts(session: Session, ids: Sequence[int]) -> tuple[int, int]:
    """Delete ``ids`` (the database cascades to campaign rows, attempts, gate decisions and
    recording rows) after deleting their recordings' files; a contact whose file cannot be
    deleted stays for the next run. Returns (deleted, left because of a file)."""
    deleted = 0
    stuck: set[int] = set()
    for chunk in _chunks(ids):
        files = session.execute(
            select(CampaignContact.contact_id, Recording.id, Recording.path)
            .join(CallAttempt, CallAttempt.campaign_contact_id == CampaignContact.id)
            .join(Recording, Recording.attempt_id == CallAttempt.id)
            .where(CampaignContact.contact_id.in_(chunk), Recording.deleted_at.is_(None))
        ).all()
        for contact_id, rec_id, path in files:
            try:
                Path(path).unlink(missing_ok=True)
            except OSError as exc:
                log.error("recording %s: cannot delete %s: %s", rec_id, path, exc)
                stuck.add(int(contact_id))
        doomed = [i for i in chunk if i not in stuck]
        if not doomed:
            continue
        result = session.execute(
            delete(Contact)
            .where(Contact.id.in_(doomed), Contact.id.not_in(_protected_contacts()))
            .execution_options(synchronize_session=False)
        )
        deleted += int(result.rowcount)  # type: ignore[attr-defined]
    return deleted, len(stuck)


def _contacts(
    session: Session, days: int, now: datetime, dry_run: bool
) -> tuple[KindPlan, list[int]]:
    cutoff = now - timedelta(days=days)
    ids, skipped, oldest = _expired_contacts(session, cutoff)
    details = {**_contact_related(session, ids), "skipped": skipped}
    count = len(ids)
    if not dry_run and ids:
        count, stuck = _delete_contacts(session, ids)
        details["skipped"] += stuck
        session.expire_all()
    plan = KindPlan(
        CONTACTS,
        "deleted, with their campaign rows, call attempts and recordings",
        days,
        cutoff,
        count,
        oldest,
        details,
        note="no activity (import, change or call) since the cutoff; skipped: still waiting "
        "in a running or paused campaign",
    )
    return plan, ids


def _consents(
    session: Session, days: int, now: datetime, dry_run: bool, leaving: Iterable[int]
) -> KindPlan:
    """``leaving``: contacts about to be deleted (dry run), which hold no number any more."""
    cutoff = now - timedelta(days=days)
    gone = set(leaving)
    latest = session.execute(
        select(Consent.phone_e164, func.max(Consent.recorded_at), func.max(Consent.imported_at))
        .group_by(Consent.phone_e164)
        .having(func.max(Consent.recorded_at) < cutoff, func.max(Consent.imported_at) < cutoff)
    ).all()
    last_change = {
        str(phone): max(v for v in (_aware(rec), _aware(imp)) if v is not None)
        for phone, rec, imp in latest
    }
    candidates = sorted(last_change)
    held: set[str] = set()
    for chunk in _chunks(candidates):
        for phone, contact_id in session.execute(
            select(Contact.phone_e164, Contact.id).where(Contact.phone_e164.in_(chunk))
        ):
            if int(contact_id) not in gone:
                held.add(str(phone))
    numbers = [p for p in candidates if p not in held]
    count = 0
    for chunk in _chunks(numbers):
        where = Consent.phone_e164.in_(chunk)
        if dry_run:
            count += int(session.scalar(select(func.count()).where(where)) or 0)
        else:
            result = session.execute(
                delete(Consent).where(where).execution_options(synchronize_session=False)
            )
            count += int(result.rowcount)  # type: ignore[attr-defined]
    oldest = min((last_change[p] for p in numbers), default=None)
    return KindPlan(
        CONSENTS,
        "deleted",
        days,
        cutoff,
        count,
        oldest,
        {"numbers": len(numbers)},
        note="every consent row of a number no contact holds any more, once its latest "
        "change is older than the cutoff",
    )


def _refusals(session: Session, days: int, now: datetime, dry_run: bool) -> KindPlan:
    cutoff = now - timedelta(days=days)
    cond = Refusal.refused_at < cutoff
    count, oldest = _count_min(session, Refusal.refused_at, cond)
    if not dry_run and count:
        result = session.execute(
            delete(Refusal).where(cond).execution_options(synchronize_session=False)
        )
        count = int(result.rowcount)  # type: ignore[attr-defined]
    return KindPlan(
        REFUSALS,
        "deleted",
        days,
        cutoff,
        count,
        _aware(oldest),
        note="keyed hashes; the 60-day no-call rule (Code conso D223-9) needs the last 60 days",
    )


def _journal(session: Session, days: int, now: datetime, dry_run: bool) -> KindPlan:
    cutoff = now - timedelta(days=days)
    planned = purge_before(session, cutoff, dry_run=True)
    oldest: datetime | None = None
    if planned.count:
        anchor = planned.through_seq - planned.count
        oldest = session.scalar(
            select(func.min(JournalEntry.at)).where(
                JournalEntry.seq > anchor, JournalEntry.seq <= planned.through_seq
            )
        )
    count = planned.count
    if not dry_run and planned.count:
        count = purge_before(session, cutoff).count
    return KindPlan(
        JOURNAL,
        "oldest entries deleted (the chain keeps an anchor)",
        days,
        cutoff,
        count,
        _aware(oldest),
        note="journals its own journal.purged entry",
    )


def _not_handled(webhook_keep_days: int | None) -> tuple[KindPlan, ...]:
    return (
        KindPlan(
            WEBHOOK_DELIVERIES,
            "deleted by the webhook worker of `voicecast serve`",
            webhook_keep_days,
            note="finished deliveries, [web] webhook_keep_days after they finished "
            "(not done by this job)",
        ),
        KindPlan(
            OPT_OUTS,
            "never purged",
            note="opt-outs must be honoured for as long as calls are made (GDPR art. 21(3); "
            "CNIL: kept at least 3 years); stored as keyed hashes only",
        ),
        KindPlan(
            OPPOSITION_LISTS,
            "never purged (replaced by the next import)",
            note="national opposition lists (Bloctel, US DNC, TPS), keyed hashes only",
        ),
    )


# --------------------------------------------------------------------------- plan and run


def _check(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("retention needs an aware datetime")


def _work(
    session: Session,
    settings: RetentionSettings,
    now: datetime,
    *,
    dry_run: bool,
    webhook_keep_days: int | None,
) -> RetentionPlan:
    now = now.astimezone(UTC)
    # order matters for the counts to match between a dry run and a run: attempts are
    # anonymised before contacts (and their attempts) are deleted; consents are judged
    # after the contacts that go.
    recordings = _recordings(session, settings.recordings_days, now, dry_run)
    attempts = _attempts(session, settings.attempts_days, now, dry_run)
    inbound = _inbound(session, settings.attempts_days, now, dry_run)
    contacts, leaving = _contacts(session, settings.contacts_days, now, dry_run)
    consents = _consents(session, settings.consents_days, now, dry_run, leaving if dry_run else ())
    refusals = _refusals(session, settings.refusals_days, now, dry_run)
    journal = _journal(session, settings.journal_days, now, dry_run)
    return RetentionPlan(
        now,
        (
            contacts,
            attempts,
            inbound,
            recordings,
            consents,
            refusals,
            journal,
            *_not_handled(webhook_keep_days),
        ),
    )


def plan_retention(
    session: Session,
    settings: RetentionSettings,
    now: datetime,
    *,
    webhook_keep_days: int | None = None,
) -> RetentionPlan:
    """What a retention run at ``now`` would purge or anonymise; changes nothing.

    Args:
        session: any session (only reads).
        settings: the ``[retention]`` periods.
        now: aware instant (the clock's now).
        webhook_keep_days: ``[web] webhook_keep_days``, shown for the webhook deliveries.

    Returns:
        One :class:`KindPlan` per kind: cutoff (UTC), count, oldest expired item.

    Raises:
        ValueError: ``now`` is naive.
    """
    _check(now)
    return _work(session, settings, now, dry_run=True, webhook_keep_days=webhook_keep_days)


def run_retention(
    session: Session,
    settings: RetentionSettings,
    now: datetime,
    *,
    dry_run: bool = False,
    webhook_keep_days: int | None = None,
) -> RetentionReport:
    """Purge or anonymise everything past its retention period (GDPR art. 5(1)(e)).

    Runs in the caller's transaction (never commits): everything, including the
    ``retention.purged`` journal entry, is committed together or not at all. It first
    takes the write lock, so no other writer changes the rows between the choice and the
    change. Recording files are deleted before the commit: if the transaction then fails,
    their rows still read "not deleted" and the next run marks them (a file already gone is
    fine), whereas deleting after the commit could leave a file the database says is gone.

    Nothing unexpired is touched: each kind's condition is strictly "older than its cutoff"
    (recordings: ``delete_after <= now`` or made ``recordings_days`` ago or more).

    Args:
        session: a session in a transaction.
        settings: the ``[retention]`` periods.
        now: aware instant (the clock's now); cutoffs are ``now - days``.
        dry_run: count only, change and journal nothing (same counts as a real run).
        webhook_keep_days: ``[web] webhook_keep_days``, shown for the webhook deliveries.

    Returns:
        A :class:`RetentionReport`; ``journal_seq`` is the ``retention.purged`` entry, whose
        data is ``{kind: {"cutoff", "count", ...details}}`` for every purged kind.

    Raises:
        ValueError: ``now`` is naive.
        LookupError: the journal head row is missing (database not migrated).
    """
    _check(now)
    if dry_run:
        plan = _work(session, settings, now, dry_run=True, webhook_keep_days=webhook_keep_days)
        return RetentionReport(plan.now, plan.kinds, dry_run=True)
    _lock(session)
    plan = _work(session, settings, now, dry_run=False, webhook_keep_days=webhook_keep_days)
    data = {
        item.kind: {
            "cutoff": item.cutoff,
            "count": item.count,
            "days": item.days,
            **item.details,
        }
        for item in plan.kinds
        if item.kind in PURGED_KINDS
    }
    # the entry's own time is the real write time, never the (test) clock: a run under a
    # shifted clock then shows its cutoffs in the future and fails `journal verify`
    data["run_at"] = {"clock": plan.now}
    entry = append(session, kinds.RETENTION_PURGED, data)
    return RetentionReport(plan.now, plan.kinds, dry_run=False, journal_seq=entry.seq)


def last_run(session: Session) -> datetime | None:
    """When the retention job last ran, in the controller's clock time (UTC): the
    ``run_at`` of its latest ``retention.purged`` journal entry (the entry's own time for
    older entries), or None if never (or its entries outlived the journal's retention)."""
    entry = session.scalars(
        select(JournalEntry)
        .where(JournalEntry.kind == kinds.RETENTION_PURGED)
        .order_by(JournalEntry.seq.desc())
        .limit(1)
    ).first()
    if entry is None:
        return None
    try:
        clock = json.loads(entry.data)["run_at"]["clock"]
        return _aware(datetime.fromisoformat(str(clock)))
    except (ValueError, KeyError, TypeError):
        return _aware(entry.at)


def run_daily(
    sessions: sessionmaker[Session], settings: Settings, now: datetime
) -> RetentionReport | None:
    """The daily job's run: :func:`run_in_session`, unless a run was journaled within
    :data:`ALREADY_RAN_WITHIN` (then None). Read under the purge's lock, in the run's
    transaction: several controllers sharing one database each schedule the daily run, and
    only the first of them does it."""
    with sessions() as s, s.begin():
        _lock(s)
        previous = last_run(s)
        if previous is not None and previous > now - ALREADY_RAN_WITHIN:
            return None
        return run_retention(
            s, settings.retention, now, webhook_keep_days=settings.web.webhook_keep_days
        )


def run_in_session(
    sessions: sessionmaker[Session], settings: Settings, now: datetime, *, dry_run: bool = False
) -> RetentionReport:
    """:func:`run_retention` in its own transaction, committed on success."""
    with sessions() as s, s.begin():
        return run_retention(
            s,
            settings.retention,
            now,
            dry_run=dry_run,
            webhook_keep_days=settings.web.webhook_keep_days,
        )


# --------------------------------------------------------------------------- daily job


class RetentionJob:
    """The daily retention run of ``voicecast serve``.

    An APScheduler ``AsyncIOScheduler`` cron job at ``[retention] run_at`` (HH:MM, the
    machine's local time, or ``zone``) runs :func:`run_retention` in a worker thread
    (:func:`asyncio.to_thread`) so the event loop the dialer shares never waits for it.
    :meth:`catch_up` runs it at start when the last run (from the journal) is more than
    :data:`CATCH_UP_AFTER` old. A failed run is logged and tried again at the next one.

    Args:
        sessions: SQLAlchemy session factory.
        settings: the configuration (``[retention]``, ``[web] webhook_keep_days``).
        clock: the controller's clock (:func:`voicecast.app.make_clock`): "now" of a run.
        zone: the zone of ``run_at`` (default: the machine's local zone).
    """

    JOB_ID = "retention"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        clock: Clock,
        *,
        zone: tzinfo | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        hour, minute = (int(part) for part in settings.retention.run_at.split(":"))
        self.trigger = CronTrigger(hour=hour, minute=minute, timezone=zone)
        self._scheduler = AsyncIOScheduler(timezone=zone) if zone else AsyncIOScheduler()
        self._lock: asyncio.Lock | None = None
        #: the latest run's report (None before the first)
        self.last_report: RetentionReport | None = None

    def start(self) -> None:
        """Register the daily job and start the scheduler (needs a running event loop)."""
        self._scheduler.add_job(
            self.run_now,
            self.trigger,
            id=self.JOB_ID,
            name="retention purge",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=3600,
        )
        if not self._scheduler.running:
            self._scheduler.start()

    def shutdown(self) -> None:
        """Stop the scheduler (a run in progress finishes in its thread)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def next_run_time(self) -> datetime | None:
        """When the daily job runs next (aware), None when not started."""
        job = self._scheduler.get_job(self.JOB_ID)
        return None if job is None else job.next_run_time

    def _run(self) -> RetentionReport | None:
        return run_daily(self.sessions, self.settings, self.clock.now())

    async def run_now(self) -> RetentionReport | None:
        """Run the purge now (one at a time); None when it failed (logged)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                report = await asyncio.to_thread(self._run)
            except Exception:
                log.exception("retention: the purge failed; it runs again at the next run_at")
                return None
        if report is None:
            log.info("retention: another controller ran the purge already")
            return None
        self.last_report = report
        done = ", ".join(f"{k} {n}" for k, n in report.counts().items() if n)
        log.info("retention: purged/anonymised %s", done or "nothing (nothing expired)")
        return report

    async def catch_up(self) -> RetentionReport | None:
        """Run at once when the last run is more than :data:`CATCH_UP_AFTER` ago (or never
        was); None when not needed or failed."""
        try:
            previous = await asyncio.to_thread(self._last_run)
        except Exception:
            log.exception("retention: cannot read when the purge last ran")
            return None
        if previous is not None and self.clock.now() - previous <= CATCH_UP_AFTER:
            return None
        return await self.run_now()

    def _last_run(self) -> datetime | None:
        with self.sessions() as s:
            return last_run(s)


@contextlib.asynccontextmanager
async def daily_retention(
    sessions: sessionmaker[Session], settings: Settings, clock: Clock
) -> AsyncIterator[RetentionJob]:
    """Run :class:`RetentionJob` (with its catch-up at start) for the duration of the
    block; yields the job."""
    job = RetentionJob(sessions, settings, clock)
    job.start()
    catching_up = asyncio.create_task(job.catch_up(), name="retention-catch-up")
    try:
        yield job
    finally:
        job.shutdown()
        catching_up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await catching_up


__all__ = [
    "KindPlan",
    "RetentionJob",
    "RetentionPlan",
    "RetentionReport",
    "daily_retention",
    "last_run",
    "plan_retention",
    "run_in_session",
    "run_retention",
]
