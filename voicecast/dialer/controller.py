"""The dialer controller: paces Originates per campaign and follows each attempt to its end.

One asyncio task per running campaign claims due contacts (``next_attempt_at`` <= now, UTC)
one at a time (:meth:`Dialer._claim`): a free channel (the campaign's ``max_channels`` and
the node's, counted over every controller), a PBX node that is up and one of its trunks,
and the start instant the campaign's and the trunk's CPS allow
(:mod:`voicecast.dialer.routing`) are taken in the transaction that writes the attempt row
(committed *before* the Originate is sent); a follower task sends the Originate at that
instant and follows the attempt from the PBX's events and the call flow until a final
outcome is stored. A retry is a new attempt due ``retry_delay`` seconds after the previous
one ended.

Compliance: every dial, first attempt or retry, is decided by the compliance gate
(:func:`voicecast.compliance.gate.decide`) for the instant the call starts, in the same
transaction that writes the attempt row. A deferred contact gets
``next_attempt_at`` = the next legal instant and a scheduler wake-up; a blocked one is done
with outcome ``blocked``. Each decision is stored (``gate_decisions``) with its reason and
source. Campaign-level problems (a stale national opposition list...) pause the campaign.
Time comes from an injected :class:`~voicecast.clock.Clock`.

Crash safety: an attempt left unfinished by a previous controller (killed) is never re-sent;
at start-up it is reconciled from the PBX's own channel list (still up: hung up) and closed
with the outcome its stored AMD verdict gives, or ``failed`` with the reason.

A database that refuses writes (locked beyond a few retries, disk full, read-only, I/O
error: :func:`voicecast.storage.db.db_fault`) pauses dialling for every campaign
(:attr:`Dialer.storage_error`, shown by ``/healthz``) with one logged error: an attempt row
that cannot be committed means no Originate. Calls already up go on; their outcomes (and
key-press opt-outs) wait in memory, the attempt keeping its channel slot, and are written,
then dialling resumes, as soon as a periodic try succeeds. Stopped before that, the
attempts stay unfinished in the database and the next start closes them (never re-dialled).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from voicecast.campaigns.compliance import GateEnv, campaign_problems, campaign_rules
from voicecast.campaigns.retention import purge_recordings
from voicecast.clock import Clock, SystemClock
from voicecast.compliance.facts import load_facts
from voicecast.compliance.gate import CampaignRules, ContactFacts, decide
from voicecast.compliance.suppression import add_opt_out
from voicecast.compliance.types import Decision, Verdict
from voicecast.dialer.flow import (
    Answerer,
    FlowPlan,
    FlowReport,
    amd_settings,
    classify_amd,
    run_outbound_flow,
)
from voicecast.dialer.outcomes import (
    Outcome,
    next_attempt_time,
    originate_failure_text,
    outcome_of_unanswered,
    should_retry,
)
from voicecast.dialer.routing import (
    LIVE_STATES,
    Route,
    is_postgresql,
    live_counts,
    lock_number,
    plan_route,
    reserve,
)
from voicecast.dialer.scheduler import WakeScheduler
from voicecast.errors import UnsafeValueError, VoicecastError
from voicecast.journal import events as journal
from voicecast.journal.store import PendingEntry, append_all
from voicecast.pbx.base import (
    DEFAULT_NODE,
    CallFlowSession,
    ChannelInfo,
    NodeSpec,
    OriginateRejected,
    OriginateRequest,
    OriginateUnknown,
    PbxBackend,
    PbxError,
    PbxUnavailable,
    PlayResult,
)
from voicecast.scenarios.model import Prompt
from voicecast.storage.db import db_fault, retry_busy
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ControllerLease,
    GateDecision,
    PacingSlot,
    Recording,
    utcnow,
)
from voicecast.webhooks import enqueue_attempt_completed, enqueue_campaign_alert

log = logging.getLogger(__name__)
_T = TypeVar("_T")
# Core tables for the statements on every call's path: the ORM's unit of work and bulk
# paths cost more than the database itself there
_ATTEMPTS = cast(Table, CallAttempt.__table__)
_GATE_DECISIONS = cast(Table, GateDecision.__table__)
_CONTACTS = cast(Table, CampaignContact.__table__)

PlanBuilder = Callable[[Campaign], FlowPlan]
FlowDecisionHook = Callable[[FlowReport], None]

LEASE_TIMEOUT = timedelta(seconds=20)
UNANSWERED_HANGUP_GRACE = 2.0  # seconds to wait for the Hangup after a failed Originate
# seconds a call that failed at the PBX without a callee state waits for the PBX's AMI
# connection to close: a PBX stopping fails the calls it is placing the same way, and they
# are then neither a trunk failure (no alert) nor re-dialled
PBX_STOP_GRACE = 2.0
# seconds to wait, once the call has ended without a known Q.850 cause, for another leg's
# Hangup to bring one: a Local channel's ``;1`` half ends with cause 0 while its ``;2`` half
# carries the callee's cause (34 for congestion), and AMI may deliver either one first.
CAUSE_GRACE = 1.0
FLOW_END_GRACE = 15.0  # seconds for the call flow to finish after the hangup
ORIGINATE_RESPONSE_MARGIN = 20.0  # seconds beyond the ring timeout
PBX_START_DELAYS = (1.0, 2.0, 5.0, 10.0)  # seconds between tries to reach the PBX at start
PROBLEM_CHECK_INTERVAL = 30.0  # seconds between campaign-level compliance checks
IDLE_POLL = 5.0  # seconds between database polls while every contact waits for later
PURGE_INTERVAL = 3600.0  # seconds between purges of recordings whose retention ended
STORAGE_PROBE_INTERVAL = 5.0  # seconds between write tries while the database refuses writes
# seconds before a call's reserved instant that the next contact is claimed: more than
# routing.SEND_LEAD (else each claim would push its slot back by its own duration); the
# gate decides for the instant the call starts, and a short lead keeps reservations few
CLAIM_AHEAD = 0.25
# a claim takes the due contacts whose calls start within this many seconds (at most
# CLAIM_BATCH of them) in one transaction: its fixed costs (the campaign and pacing rows,
# the channel count, the commit) are shared; each gate decision is for its own instant
CLAIM_SPAN = 1.0
CLAIM_BATCH = 50
NO_ROOM_POLL = 0.5  # seconds between tries while every channel (all controllers) is taken
# seconds between looks for attempts of controllers whose lease expired (several
# controllers on PostgreSQL): they are closed, never re-sent
ORPHAN_SWEEP_INTERVAL = 10.0


class LeaseHeld(VoicecastError):
    """Another live controller dials for this database."""


class StorageUnavailable(VoicecastError):
    """The database refuses writes at start-up (disk full, read-only, locked): no dialling."""


class _NoRoom:
    """Type of :data:`NO_ROOM`."""


NO_ROOM = _NoRoom()
"""A claim found no free channel: the campaign's ``max_channels`` (every controller) or
every node that is up is full, or no node is up."""


@dataclass(frozen=True)
class _Claimed:
    """A committed claim: the attempt, the contact, its number and fields, the legal basis
    of the allowing decision and the route (node, trunk, reserved instant)."""

    attempt_id: str
    cc_id: int
    number: str
    fields: dict[str, Any]
    basis: dict[str, Any]
    route: Route


_Claim = list[_Claimed | Decision] | _NoRoom | None


@dataclass
class _Writes:
    """Rows and journal entries a claim writes at its end, several at a time
    (:meth:`Dialer._write_batch`): attempt rows, ``gate_decisions`` rows (dicts of
    column values) and ``gate.decision`` entries."""

    attempts: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    entries: list[PendingEntry] = field(default_factory=list)


@dataclass
class CampaignRuntime:
    """A running campaign's settings and the attempts it has in flight."""

    campaign_id: int
    name: str
    caller_id: str
    max_channels: int
    ring_timeout: float
    retries: int
    retry_delay: float
    retry_outcomes: list[str]
    plan: FlowPlan
    #: calls started per second (the pacing itself is shared: :mod:`voicecast.dialer.routing`)
    cps: float
    rules: CampaignRules
    inflight: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: names and SHA-256 of the sounds it plays (for the journal's message drops)
    audio: journal.AudioIndex | None = None
    purpose: str | None = None
    sender: str | None = None
    on_behalf_of: str | None = None
    #: (contact id, attempt id) of the latest attempts that all failed at the PBX, in a
    #: row (emptied by any attempt that reached the network); see ``Dialer.alert_after``
    pbx_failures: list[tuple[int, str]] = field(default_factory=list)
    #: the campaign was paused with an alert: calls still in flight that fail at the PBX
    #: put their contact back in the queue too (dialled again on resume)
    alerted: bool = False
    #: every text the scenario speaks is already rendered and is the same for every
    #: contact (no merge field): calls skip :meth:`PromptSet.prepare`
    prompts_ready: bool = False


@dataclass
class Tracker:
    """What is known of one attempt in flight."""

    attempt_id: str
    runtime: CampaignRuntime
    cc_id: int
    number: str
    #: the PBX node it is placed on (:attr:`Dialer.nodes`)
    node: str = DEFAULT_NODE.name
    originated: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    cause_known: asyncio.Event = field(default_factory=asyncio.Event)
    flow_done: asyncio.Event = field(default_factory=asyncio.Event)
    answered: bool = False
    reason: int | None = None
    causes: list[int] = field(default_factory=list)
    cause_text: str = ""
    flow_started: bool = False
    report: FlowReport | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    not_sent: str | None = None
    send_error: str | None = None
    never_retry: bool = False
    note: str | None = None
    #: set when the call never left the PBX (Originate refused, or failed before any
    #: callee state): Asterisk's reason; counts towards the campaign's alert
    pbx_failure: str | None = None
    #: the allowing gate decision's legal basis (:func:`voicecast.journal.events.legal_basis`)
    basis: dict[str, Any] | None = None
    #: (PBX sound, instant) of every play started, in order
    play_starts: list[tuple[str, datetime]] = field(default_factory=list)
    #: the PBX connection was lost while this attempt was in flight and its channel has
    #: not been looked up since (:meth:`Dialer._reconcile_inflight`): its events may be lost
    pbx_lost: bool = False
    #: set with :attr:`pbx_lost` (awaitable)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    #: it was in flight at a PBX connection loss and its channel was still up afterwards
    reconciled: bool = False
    #: when the flow started (kept here too: the database may refuse its write)
    answered_at: datetime | None = None
    #: (outcome, error, not_sent, ended_at) once decided; set while it waits to be written
    final: tuple[Outcome, str | None, bool, datetime] | None = None


def outcome_of_answerer(who: Answerer) -> Outcome:
    """The attempt's outcome for who answered: a person (or a hang-up during AMD: someone
    picked up) is ``human``, a machine ``machine``, a silent line ``no_answer``."""
    if who is Answerer.MACHINE:
        return Outcome.MACHINE
    if who is Answerer.NO_ANSWER:
        return Outcome.NO_ANSWER
    return Outcome.HUMAN


def _controller_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lease_live(lease: ControllerLease, now: datetime) -> bool:
    """A lease is live while its heartbeat is recent and, on this host, its process exists."""
    if now - lease.heartbeat_at >= LEASE_TIMEOUT:
        return False
    return lease.host != socket.gethostname() or _pid_alive(lease.pid)


def acquire_lease(
    session: Session, holder: str, *, now: datetime | None = None, shared: bool = False
) -> None:
    """Take or renew ``holder``'s controller lease. Commits.

    Exclusive (SQLite, ``shared`` False): one lease row (id 1) for one controller; it is
    free when absent, held by ``holder``, expired (:data:`LEASE_TIMEOUT`), or held by a
    process of this host that no longer exists; else :class:`LeaseHeld` is raised.

    Shared (PostgreSQL, several controllers): one row per holder, renewed; other
    controllers' rows are not looked at (:meth:`Dialer.recover` closes the attempts of the
    expired ones, then deletes their rows).

    Raises:
        LeaseHeld: exclusive, and another live controller holds it.
    """
    now = now or utcnow()
    host = socket.gethostname()
    if shared:
        mine = session.scalars(
            select(ControllerLease).where(ControllerLease.holder == holder).with_for_update()
        ).first()
        if mine is None:
            session.add(
                ControllerLease(holder=holder, host=host, pid=os.getpid(), heartbeat_at=now)
            )
        else:
            mine.heartbeat_at = now
        session.commit()
        return
    lease = session.get(ControllerLease, 1, with_for_update=True)
    if lease is not None and lease.holder != holder and _lease_live(lease, now):
        raise LeaseHeld(
            f"another voicecast controller ({lease.holder}) is dialing for this database"
        )
    if lease is None:
        session.add(
            ControllerLease(id=1, holder=holder, host=host, pid=os.getpid(), heartbeat_at=now)
        )
    else:
        lease.holder, lease.host, lease.pid, lease.heartbeat_at = holder, host, os.getpid(), now
    session.commit()


def live_controllers(session: Session, *, now: datetime | None = None) -> list[str]:
    """The holders of live leases (controllers dialling now), oldest lease first."""
    now = now or utcnow()
    leases = session.scalars(select(ControllerLease).order_by(ControllerLease.id)).all()
    return [lease.holder for lease in leases if _lease_live(lease, now)]


def lease_holder(session: Session, *, now: datetime | None = None) -> str | None:
    """A live controller's holder name (the first), or None when no controller is running."""
    live = live_controllers(session, now=now)
    return live[0] if live else None


class Dialer:
    """The controller. Implements :class:`~voicecast.pbx.base.PbxListener`.

    Args:
        sessions: SQLAlchemy session factory.
        pbx: the PBX backend (not yet started).
        plan_for: builds a campaign's :class:`FlowPlan` from its row.
        gate: the compliance gate's key, packs and settings.
        max_call_duration: seconds after which an answered call is hung up.
        clock: the source of "now" (UTC) for the gate, due times and stored instants.
        recordings_max_days: a recorded reply is deleted at its node's ``retention_days``
            and at the latest this many days after recording (``[retention]
            recordings_days``; GDPR art. 5(1)(e)); None: the node's value alone.
        alert_after: a campaign whose latest ``alert_after`` attempts in a row all failed
            at the PBX (Originate refused, no route, trunk down: nothing reached the
            network) is paused with an ``alert:`` reason, a ``campaign.alert`` webhook event
            and a journal entry, and those contacts are dialled again once it is resumed
            (``[dialer] alert_after_pbx_failures``). A campaign that would end with every
            attempt failed that way gets the same alert instead of ``completed``.
        nodes: the PBX nodes calls may be placed on, with their channel capacity and
            trunks (:mod:`voicecast.dialer.routing`); default: the one PBX of ``pbx``,
            unlimited. ``pbx`` reports each node's connection by name.

    On SQLite one controller dials (an exclusive lease). On PostgreSQL several controllers
    dial side by side: each claims due contacts with ``SELECT ... FOR UPDATE SKIP LOCKED``
    under the campaign's row lock, counts channels and paces calls through the database
    (:mod:`voicecast.dialer.routing`), and closes the attempts of controllers whose lease
    expired (never re-sent).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        pbx: PbxBackend,
        plan_for: PlanBuilder,
        *,
        gate: GateEnv,
        max_call_duration: float = 600.0,
        clock: Clock | None = None,
        recordings_max_days: int | None = None,
        alert_after: int = 5,
        nodes: Sequence[NodeSpec] | None = None,
    ) -> None:
        self.sessions = sessions
        self.nodes: tuple[NodeSpec, ...] = tuple(nodes) if nodes else (DEFAULT_NODE,)
        #: the nodes whose PBX connection is up now (calls are placed on these only)
        self.nodes_up: set[str] = set()
        self.alert_after = alert_after
        self.recordings_max_days = recordings_max_days
        self.gate = gate
        self.clock: Clock = clock or SystemClock()
        self.scheduler = WakeScheduler(self.clock)
        self.pbx = pbx
        self.plan_for = plan_for
        self.max_call_duration = max_call_duration
        self.controller_id = _controller_id()
        self.trackers: dict[str, Tracker] = {}
        self.runtimes: dict[int, CampaignRuntime] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._followers: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._draining = False
        #: ``time.monotonic()`` of the run loop's latest iteration (None before :meth:`run`);
        #: ``/healthz`` reports the scheduler dead when it grows old.
        self.heartbeat: float | None = None
        #: why the database refuses writes (disk full, read-only, locked...), None when it
        #: takes them; while set no campaign dials (``/healthz`` reports it)
        self.storage_error: str | None = None
        self.storage_probe_interval = STORAGE_PROBE_INTERVAL
        self._storage_probe_at = 0.0
        #: attempts whose final outcome waits to be written (their trackers stay)
        self._unwritten: dict[str, Tracker] = {}
        #: (tracker, instant) of key-press opt-outs waiting to be written
        self._unwritten_optouts: list[tuple[Tracker, datetime]] = []
        #: attempts a dead controller left that recovery could not close yet
        self._unrecovered: set[str] = set()

    @functools.cached_property
    def shared(self) -> bool:
        """Several controllers may share the database (PostgreSQL): leases are per
        controller, and the attempts of dead ones are closed by the others."""
        with self.sessions() as s:
            return is_postgresql(s)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, *, wait_for_pbx: bool = False) -> bool:
        """Take the lease, start the PBX backend, close attempts a dead controller left.

        Args:
            wait_for_pbx: when the PBX cannot be reached, keep trying with back-off
                (:data:`PBX_START_DELAYS`, renewing the lease) instead of raising, until
                it answers or :meth:`abort_start` / :meth:`stop` is called (``voicecast
                serve``: Asterisk may start after voicecast at boot; the console and
                ``/healthz`` stay up meanwhile and say the PBX is down).

        Returns:
            True once started; False when aborted while waiting for the PBX.

        Raises:
            LeaseHeld: another controller is running.
            PbxUnavailable: the PBX cannot be reached (without ``wait_for_pbx``).
            StorageUnavailable: the database refuses writes (the reason and the database).
        """
        try:
            with self.sessions() as s:
                acquire_lease(s, self.controller_id, shared=self.shared)
        except DBAPIError as exc:
            fault = db_fault(exc)
            if fault is None:
                raise
            raise StorageUnavailable(
                f"cannot start dialling: {fault.reason}; database {self._database_name()}"
            ) from exc
        tries = 0
        while True:
            try:
                await self.pbx.start(self, self._serve_flow)
                break
            except PbxUnavailable as exc:
                if not wait_for_pbx:
                    raise
                delay = PBX_START_DELAYS[min(tries, len(PBX_START_DELAYS) - 1)]
                tries += 1
                (log.error if tries == 1 else log.warning)(
                    "cannot reach the PBX at start-up (%s): nothing is dialled; trying "
                    "again in %gs",
                    exc,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return False
                with self.sessions() as s:
                    acquire_lease(s, self.controller_id, shared=self.shared)
        self.scheduler.start()
        await self.recover()
        return True

    def abort_start(self) -> None:
        """End a :meth:`start` that waits for the PBX (it returns False); call :meth:`stop`
        afterwards to release the lease."""
        self._stopping.set()

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop dialing; wait up to ``grace`` seconds for calls in progress to end.

        Calls still up after the grace are hung up and their attempts closed as interrupted
        (:meth:`_close_interrupted`; the retry policy applies, nothing is re-sent).
        """
        self._draining = True
        self._stopping.set()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if grace > 0 and self._followers:
            await asyncio.wait(list(self._followers), timeout=grace)
        leftover = [t for t in self.trackers.values() if t.final is None]
        for t in leftover:
            with contextlib.suppress(PbxError):
                await self.pbx.hangup(t.attempt_id)
        await self.pbx.stop(grace=1.0)
        self.scheduler.shutdown()
        for task in list(self._followers):
            task.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)
        for t in leftover:
            if self.trackers.get(t.attempt_id) is not t or t.final is not None:
                continue
            if t.not_sent is not None:  # stopped before its Originate: the contact waits
                self._finish(t, Outcome.FAILED, f"not sent: {t.not_sent}", not_sent=True)
                continue
            del self.trackers[t.attempt_id]
            try:
                self._close_interrupted(t.attempt_id, over=not t.pbx_lost)
            except DBAPIError as exc:  # the next start closes it
                self._storage_trouble(exc, f"closing attempt {t.attempt_id} at stop")
        self._check_storage(force=True)  # a last try for what the database refused
        if self._unwritten or self._unwritten_optouts:
            log.error(
                "stopping with %d outcome(s) and %d opt-out(s) the database refused: %s; "
                "those attempts stay unfinished and the next start closes them (never "
                "re-dialled)",
                len(self._unwritten),
                len(self._unwritten_optouts),
                "; ".join(
                    f"attempt {a} to {t.number}: {t.final[0].value if t.final else '?'}"
                    for a, t in self._unwritten.items()
                )
                + "".join(f"; opt-out of {t.number} at {at}" for t, at in self._unwritten_optouts),
            )
        self._write_or_pause(  # refused: the lease then expires by itself
            "releasing the controller lease",
            lambda s: s.execute(
                update(ControllerLease)
                .where(ControllerLease.holder == self.controller_id)
                .values(heartbeat_at=utcnow() - LEASE_TIMEOUT)
            ),
        )

    async def run(self, campaign_names: Iterable[str] | None = None) -> None:
        """Dial running campaigns until :meth:`stop`, or until the named ones are finished.

        Recordings whose retention ended are purged at start and then every
        :data:`PURGE_INTERVAL` seconds (GDPR art. 5(1)(e); see
        :func:`voicecast.campaigns.retention.purge_recordings`).

        Args:
            campaign_names: when given, return once each named campaign is no longer
                ``running`` (completed, paused or stopped); otherwise run until stopped.
        """
        names = set(campaign_names) if campaign_names is not None else None
        next_purge = time.monotonic()  # the first purge runs at once
        next_sweep = time.monotonic() + ORPHAN_SWEEP_INTERVAL
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_INTERVAL
                purged = self._write_or_pause(
                    "purging recordings", lambda s: purge_recordings(s, self.clock.now())
                )
                if purged:
                    log.info("purged %d recording(s) whose retention ended", purged)
            self._check_storage()
            try:  # a database that cannot be reached (PostgreSQL down) pauses, not crashes
                if self.shared and time.monotonic() >= next_sweep and self.storage_error is None:
                    next_sweep = time.monotonic() + ORPHAN_SWEEP_INTERVAL
                    await self.recover()  # attempts of controllers that died meanwhile
                with self.sessions() as s:
                    self._renew_lease(s)
                    running = s.scalars(select(Campaign).where(Campaign.status == "running")).all()
                    if names is not None:
                        watched = s.scalars(select(Campaign).where(Campaign.name.in_(names))).all()
                        if all(c.status != "running" for c in watched) and not any(
                            self._tasks.get(c.id) for c in watched
                        ):
                            return
                for campaign in running:
                    if names is not None and campaign.name not in names:
                        continue
                    if campaign.id not in self._tasks:
                        self._start_campaign(campaign)
            except DBAPIError as exc:
                self._storage_trouble(exc, "reading the campaigns to dial")
            for cid, task in list(self._tasks.items()):
                if task.done():
                    del self._tasks[cid]
                    self.runtimes.pop(cid, None)
                    failure = None if task.cancelled() else task.exception()
                    if isinstance(failure, DBAPIError) and db_fault(failure) is not None:
                        # restarted next round; it waits while the database refuses writes
                        self._storage_trouble(failure, f"running campaign {cid}")
                    elif failure is not None:
                        log.error("campaign task %s failed", cid, exc_info=failure)
            stop = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait(
                {stop, *self._tasks.values()}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
            )
            stop.cancel()

    def _start_campaign(self, campaign: Campaign) -> None:
        try:
            plan = self.plan_for(campaign)
        except VoicecastError as exc:  # e.g. its audio was deleted: pause it, dial the others
            with self.sessions() as s, s.begin():
                row = s.get(Campaign, campaign.id)
                if row is not None and row.status == "running":
                    row.status = "paused"
                    row.status_reason = f"cannot run: {exc}"
                    journal.campaign_changed(s, row, "paused")
            log.error("campaign %s paused: %s", campaign.name, exc)
            return
        with self.sessions() as s:  # once per campaign start: the drops name their audio
            audio = journal.AudioIndex.for_plan(s, campaign, plan)
        rt = CampaignRuntime(
            campaign_id=campaign.id,
            name=campaign.name,
            caller_id=campaign.caller_id,
            max_channels=campaign.max_channels,
            ring_timeout=campaign.ring_timeout,
            retries=campaign.retries,
            retry_delay=campaign.retry_delay,
            retry_outcomes=list(campaign.retry_outcomes),
            plan=plan,
            cps=campaign.cps,
            rules=campaign_rules(campaign),
            audio=audio,
            purpose=campaign.purpose,
            sender=campaign.sender_name,
            on_behalf_of=campaign.on_behalf_of,
        )
        self.runtimes[campaign.id] = rt
        self._tasks[campaign.id] = asyncio.create_task(
            self._campaign_loop(rt), name=f"campaign-{campaign.name}"
        )
        log.info("campaign %s: dialing", campaign.name)

    # --- the campaign loop ------------------------------------------------------------------

    async def _campaign_loop(self, rt: CampaignRuntime) -> None:
        """Dial the campaign: claim its due contacts (:meth:`_place`, a batch at a time,
        each shortly before its call's instant) while it runs and channels are free; when
        nothing is due, wait for the next due contact (or a freed channel), and complete
        the campaign once every contact is done."""
        next_check = 0.0
        while not self._stopping.is_set():
            rt.wake.clear()
            if not self._connected.is_set() or self.storage_error is not None:
                await self._sleep(rt, 1.0)
                continue
            if time.monotonic() >= next_check:
                if not self._may_dial(rt):
                    break
                next_check = time.monotonic() + PROBLEM_CHECK_INTERVAL
            free = rt.max_channels - len(rt.inflight)
            if free > 0:
                placed = await self._place(rt)
                if placed is NO_ROOM:  # every channel taken (all controllers) or no node up
                    await self._sleep(rt, NO_ROOM_POLL)
                    continue
                if isinstance(placed, float):
                    # claim the next ones shortly before the next call's turn: the gate
                    # decides for the instant each call starts, and reserved slots stay few
                    ahead = placed + 1.0 / rt.cps - CLAIM_AHEAD
                    if ahead > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stopping.wait(), ahead)
                    continue
                if isinstance(placed, Decision):  # none allowed in this batch: next ones
                    continue
                # None: nothing due, the campaign no longer runs, or the claim was refused
                if self.storage_error is not None:
                    continue
            now = self.clock.now()
            with self.sessions() as s:
                status = s.scalar(select(Campaign.status).where(Campaign.id == rt.campaign_id))
                if status != "running":
                    log.info(
                        "campaign %s: %s; letting %d call(s) finish",
                        rt.name,
                        status,
                        len(rt.inflight),
                    )
                    break
                left = s.scalar(
                    select(func.count()).where(
                        CampaignContact.campaign_id == rt.campaign_id,
                        CampaignContact.state != "done",
                    )
                )
                if not left and not rt.inflight:
                    if rt.pbx_failures and not self._reached_network(s, rt):
                        self._raise_alert(rt, None)
                    else:
                        self._complete(s, rt)
                    break
                next_due = s.scalar(
                    select(func.min(CampaignContact.next_attempt_at)).where(
                        CampaignContact.campaign_id == rt.campaign_id,
                        CampaignContact.state == "pending",
                    )
                )
            wait = 1.0
            if free > 0 and next_due is not None:
                delay = (next_due - now).total_seconds()
                if delay > IDLE_POLL:
                    # deferred contacts: the scheduler wakes the loop at the instant
                    self.scheduler.wake_at(f"campaign-{rt.campaign_id}", next_due, rt.wake.set)
                    wait = IDLE_POLL
                else:
                    wait = min(wait, max(0.0, delay))
            # all channels busy: _finish() sets rt.wake when one frees
            await self._sleep(rt, wait)
        while rt.inflight and not self._stopping.is_set():  # paused/stopped: calls end normally
            await self._sleep(rt, 1.0)

    async def _sleep(self, rt: CampaignRuntime, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rt.wake.wait(), seconds)

    def _complete(self, s: Session, rt: CampaignRuntime, reason: str | None = None) -> None:
        campaign = s.get(Campaign, rt.campaign_id)
        if campaign is not None and campaign.status == "running":
            campaign.status = "completed"
            campaign.finished_at = self.clock.now()
            campaign.status_reason = reason
            journal.campaign_changed(s, campaign, "completed")
            s.commit()
            log.info("campaign %s: completed%s", rt.name, f" ({reason})" if reason else "")

    @staticmethod
    def _reached_network(s: Session, rt: CampaignRuntime) -> bool:
        """Whether any ended attempt of the campaign got past the PBX: answered, or ended
        with an outcome other than ``failed`` (a callee state: busy, no answer...)."""
        found = s.scalar(
            select(CallAttempt.id)
            .where(
                CallAttempt.campaign_id == rt.campaign_id,
                CallAttempt.state == "ended",
                (CallAttempt.outcome != Outcome.FAILED.value)
                | CallAttempt.answered_at.is_not(None),
            )
            .limit(1)
        )
        return found is not None

    def _raise_alert(self, rt: CampaignRuntime, last: str | None) -> None:
        """Pause a campaign whose calls fail at the PBX instead of burning its list (or
        finishing it as ``completed``): status ``paused`` with an ``alert:`` reason, the
        ``campaign.changed`` journal entry (paused) and a ``campaign.alert`` webhook event,
        in one transaction; the contacts of the failed streak go back to ``pending`` (due now)
        so that resuming the campaign dials them again, each through the gate. Their
        failed attempts stay recorded with Asterisk's reason."""
        streak = list(rt.pbx_failures)
        last = last or "see the attempts' errors"
        reason = (
            f"alert: the last {len(streak)} call(s) all failed at the PBX before reaching "
            f"the network (last: {last}); check the trunk and the dial string, then resume "
            "the campaign"
        )
        now = self.clock.now()
        try:
            paused = self._store_alert(rt, streak, reason, now)
        except DBAPIError as exc:  # the streak stays: the alert is raised at the next failure
            self._storage_trouble(exc, f"pausing campaign {rt.name} with an alert")
            return
        rt.pbx_failures.clear()
        if paused:
            rt.alerted = True
            log.error("campaign %s paused: %s", rt.name, reason)

    def _store_alert(
        self, rt: CampaignRuntime, streak: list[tuple[int, str]], reason: str, now: datetime
    ) -> bool:
        """:meth:`_raise_alert`'s transaction; False (nothing written) when the campaign
        no longer runs.

        Raises:
            sqlalchemy.exc.DBAPIError: the database refused it (nothing written).
        """
        with self.sessions() as s, s.begin():
            campaign = s.get(Campaign, rt.campaign_id)
            if campaign is None or campaign.status != "running":
                return False
            requeued = 0
            for cc_id, attempt_id in streak:
                cc = s.get(CampaignContact, cc_id)
                if cc is not None and cc.state == "done" and cc.last_attempt_id == attempt_id:
                    cc.state = "pending"
                    cc.next_attempt_at = now
                    requeued += 1
            campaign.status = "paused"
            campaign.status_reason = reason
            journal.campaign_changed(s, campaign, "paused")
            enqueue_campaign_alert(
                s,
                campaign,
                reason=reason,
                failed_attempts=[a for _, a in streak],
                requeued=requeued,
                now=utcnow(),
            )
        return True

    def _may_dial(self, rt: CampaignRuntime) -> bool:
        """Campaign-level compliance: completes a campaign past its end date, pauses one
        with a problem (stale national list, caller ID...), else True."""
        with self.sessions() as s:
            campaign = s.get(Campaign, rt.campaign_id)
            if campaign is None or campaign.status != "running":
                return True  # the loop sees the status and stops
            now = self.clock.now()
            if campaign.ends_at is not None and now >= campaign.ends_at:
                self._complete(s, rt, "end date reached")
                return False
            problems = [
                p
                for p in campaign_problems(s, campaign, self.gate, now)
                if p.code != "campaign_ended"
            ]
            if problems:
                campaign.status = "paused"
                campaign.status_reason = "compliance: " + "; ".join(p.message for p in problems)
                journal.campaign_changed(s, campaign, "paused")
                s.commit()
                log.warning("campaign %s paused: %s", rt.name, campaign.status_reason)
                return False
            if campaign.ends_at is not None:
                self.scheduler.wake_at(f"end-{rt.campaign_id}", campaign.ends_at, rt.wake.set)
            if campaign.starts_at is not None and campaign.starts_at > now:
                self.scheduler.wake_at(f"start-{rt.campaign_id}", campaign.starts_at, rt.wake.set)
        return True

    def _facts(
        self,
        s: Session,
        rt: CampaignRuntime,
        due: Sequence[CampaignContact],
        fields: Mapping[int, dict[str, Any]],
        now: datetime,
    ) -> dict[int, ContactFacts]:
        """The compliance gate's facts of the ``due`` contacts (their ``fields`` by
        campaign-contact id), read at ``now`` (UTC) with one set of queries for all; by
        campaign-contact id. Each decision is then taken for its own call's instant, which
        is at most a second later: only a record stamped in that second (in the future when
        it was read) could be missed."""
        rows = [(cc.phone_e164, fields[cc.id]) for cc in due]
        facts = load_facts(s, self.gate.key, self.gate.packs, rows, rt.rules.purpose, now)
        return {cc.id: f for cc, f in zip(due, facts, strict=True)}

    def _record_gate(
        self,
        s: Session,
        rt: CampaignRuntime,
        cc: CampaignContact,
        decision: Decision,
        writes: _Writes,
        attempt_id: str | None = None,
        basis: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Store the decision on the contact and, when it changed or allowed a dial, in the
        ``gate_decisions`` table and the proof journal (``gate.decision``, with ``basis``,
        the legal basis of an allowed dial): their row and entry are collected in
        ``writes`` (written by :meth:`_write_batch`, in the same transaction). Defer: the
        contact waits until ``until``; block: done. ``now``: the instant it was decided for
        (default: now)."""
        now = now or self.clock.now()
        changed = (cc.gate_verdict, cc.gate_reason) != (
            decision.verdict.value,
            decision.reason.value,
        ) or (decision.verdict is Verdict.DEFER and cc.next_attempt_at != decision.until)
        cc.gate_verdict = decision.verdict.value
        cc.gate_reason = decision.reason.value
        cc.gate_source = decision.source or None
        cc.gate_detail = decision.detail or None
        cc.gate_at = now
        if decision.verdict is Verdict.DEFER and decision.until is not None:
            cc.next_attempt_at = decision.until
        elif decision.verdict is Verdict.BLOCK:
            cc.state = "done"
            cc.outcome = "blocked"
        if changed or attempt_id is not None:
            writes.decisions.append(
                {
                    "campaign_id": rt.campaign_id,
                    "campaign_contact_id": cc.id,
                    "decided_at": now,
                    "verdict": decision.verdict.value,
                    "reason": decision.reason.value,
                    "rule_source": decision.source,
                    "detail": decision.detail,
                    "until": decision.until,
                    "attempt_id": attempt_id,
                }
            )
            writes.entries.append(
                journal.gate_decision_entry(
                    self.gate.key,
                    campaign=rt.name,
                    campaign_id=rt.campaign_id,
                    number=cc.phone_e164,
                    decision=decision,
                    attempt_id=attempt_id,
                    at=now,
                    basis=basis,
                )
            )
        if decision.verdict is not Verdict.ALLOW:
            log.info(
                "gate: %s %s (%s) %s",
                decision.verdict.value,
                cc.phone_e164,
                decision.reason.value,
                decision.detail,
            )

    @staticmethod
    def _write_batch(s: Session, writes: _Writes) -> None:
        """Write what :meth:`_record_gate` and :meth:`_claim` collected, in ``s``'s
        transaction: Core inserts with several rows each (the ORM's unit of work cost more
        than the database on every call's path) and the journal entries in one append."""
        if writes.attempts:
            s.execute(insert(_ATTEMPTS), writes.attempts)
        if writes.decisions:
            s.execute(insert(_GATE_DECISIONS), writes.decisions)
        append_all(s, writes.entries)

    def _claim(self, rt: CampaignRuntime, up: set[str]) -> _Claim:
        """The dial's transaction: the next due contacts, their routes and start instants,
        the gate's decisions and, for each dial it allows, the attempt row and the
        contact's ``dialing`` state, committed before any Originate.

        In order, in one transaction: the campaign's row is locked (``FOR UPDATE``: a
        pause stored a moment ago is seen, and the campaign's channel count is exact for
        every controller); its live attempts must be fewer than ``max_channels``; the next
        due contacts (at most the free channels, half of them when several controllers
        share the database, and :data:`CLAIM_BATCH`) are claimed with
        ``FOR UPDATE SKIP LOCKED`` (a row another transaction holds is passed over, not
        waited for) and their numbers locked (:func:`~voicecast.dialer.routing.lock_number`,
        in number order); then for each, in due order: a node in ``up`` with a free
        channel, a trunk and the start instant every CPS limit allows are chosen
        (:func:`~voicecast.dialer.routing.plan_route`), the compliance gate decides for
        that instant, and an allowed dial reserves the instant and writes the attempt.
        The batch ends at the first contact whose instant is more than
        :data:`CLAIM_SPAN` seconds away (it stays due for the next claim): one
        transaction's fixed costs are shared by the calls of the next moment, and each
        decision is still taken for its own call's instant.

        Returns:
            the :class:`_Claimed` calls (committed) and the gate's decisions that did not
            allow a dial (stored), in due order; :data:`NO_ROOM` when every channel is
            taken or no node is up; None when nothing is due or the campaign no longer
            runs. Touches nothing outside the database, so that
            :func:`~voicecast.storage.db.retry_busy` may run it again.

        Raises:
            sqlalchemy.exc.DBAPIError: the database refused the transaction (nothing written).
        """
        with self.sessions() as s, s.begin():
            campaign = s.execute(
                select(Campaign.status, Campaign.max_channels, Campaign.cps)
                .where(Campaign.id == rt.campaign_id)
                .with_for_update()
            ).one_or_none()
            if campaign is None or campaign.status != "running":
                return None
            live, mine = live_counts(s, rt.campaign_id)
            room = campaign.max_channels - mine
            if room <= 0:
                return NO_ROOM
            now = self.clock.now()
            # several controllers share the channels: a claim takes at most half of the
            # free ones, so that one controller's batch never leaves the others nothing
            limit = (
                min(room, CLAIM_BATCH) if not self.shared else max(1, min(room // 2, CLAIM_BATCH))
            )
            due = s.scalars(
                select(CampaignContact)
                .where(
                    CampaignContact.campaign_id == rt.campaign_id,
                    CampaignContact.state == "pending",
                    CampaignContact.next_attempt_at <= now,
                )
                .order_by(CampaignContact.next_attempt_at, CampaignContact.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not due:
                return None
            for number in sorted({cc.phone_e164 for cc in due}):
                lock_number(s, number)
            fields_by_contact: dict[int, dict[str, Any]] = {
                contact_id: contact_fields
                for contact_id, contact_fields in s.execute(
                    select(Contact.id, Contact.fields).where(
                        Contact.id.in_({cc.contact_id for cc in due})
                    )
                )
            }
            fields = {cc.id: dict(fields_by_contact.get(cc.contact_id) or {}) for cc in due}
            facts_of = self._facts(s, rt, due, fields, now)
            slots: dict[str, PacingSlot] = {}
            results: list[_Claimed | Decision] = []
            writes = _Writes()
            numbers: set[str] = set()
            with s.no_autoflush:  # the contacts' rows are written once, at the end
                for cc in due:
                    if cc.phone_e164 in numbers:
                        # the gate must see this batch's attempt to the number: next claim
                        break
                    planned = plan_route(
                        s,
                        campaign_id=rt.campaign_id,
                        campaign_cps=campaign.cps,
                        nodes=self.nodes,
                        up=up,
                        live=live,
                        slots=slots,
                    )
                    if planned is None:
                        break
                    route, moves = planned
                    if results and route.delay > CLAIM_SPAN:
                        break
                    numbers.add(cc.phone_e164)
                    at = now + timedelta(seconds=route.delay)
                    facts = facts_of[cc.id]
                    decision = decide(facts, rt.rules, self.gate.packs, at)
                    if decision.verdict is not Verdict.ALLOW:
                        self._record_gate(s, rt, cc, decision, writes, now=at)
                        results.append(decision)
                        continue
                    reserve(route, moves)
                    attempt_id = uuid.uuid4().hex
                    basis = journal.legal_basis(rt.rules, facts, decision)
                    cc.state = "dialing"
                    cc.attempts += 1
                    cc.last_attempt_id = attempt_id
                    writes.attempts.append(
                        {
                            "id": attempt_id,
                            "campaign_id": rt.campaign_id,
                            "campaign_contact_id": cc.id,
                            "number": cc.phone_e164,
                            "attempt_no": cc.attempts,
                            "state": "originating",
                            "controller": self.controller_id,
                            "created_at": now,
                            "originate_sent_at": at,
                            "pbx_node": route.node,
                            "trunk": route.trunk,
                        }
                    )
                    self._record_gate(s, rt, cc, decision, writes, attempt_id, basis, at)
                    live[route.node] = live.get(route.node, 0) + 1
                    results.append(
                        _Claimed(attempt_id, cc.id, cc.phone_e164, fields[cc.id], basis, route)
                    )
            self._write_batch(s, writes)
            if not results:
                return NO_ROOM
            return results

    async def _place(self, rt: CampaignRuntime) -> float | Decision | _NoRoom | None:
        """Claim the campaign's next due contacts (:meth:`_claim`) and hand each call to a
        follower task that sends its Originate at the reserved instant and follows it.

        Returns:
            seconds until the last claimed call's reserved instant once any was claimed;
            else the last decision of the gate, or what :meth:`_claim` returned (None also
            when the database refused the claim: nothing dialled).
        """
        up = set(self.nodes_up)
        try:  # a locked database: a few tries; a full or read-only one: no call at all
            claimed = await retry_busy(lambda: self._claim(rt, up))
        except DBAPIError as exc:
            self._storage_trouble(exc, "writing an attempt (nothing dialled)")
            return None
        if not isinstance(claimed, list):
            return claimed
        delay: float | None = None
        last: Decision | None = None
        for item in claimed:
            if isinstance(item, Decision):
                last = item
                if item.verdict is Verdict.DEFER and item.until is not None:
                    self.scheduler.wake_at(f"campaign-{rt.campaign_id}", item.until, rt.wake.set)
                continue
            self._start_follower(rt, item)
            delay = item.route.delay
        await asyncio.sleep(0)  # a call due now goes out before the next claim's database work
        if delay is not None:
            return delay
        return last

    def _start_follower(self, rt: CampaignRuntime, claimed: _Claimed) -> None:
        """Track a claimed call and start its follower task (:meth:`_follow`)."""
        route = claimed.route
        attempt_id = claimed.attempt_id
        tracker = Tracker(
            attempt_id,
            rt,
            claimed.cc_id,
            claimed.number,
            node=route.node,
            fields=claimed.fields,
            basis=claimed.basis,
        )
        self.trackers[attempt_id] = tracker
        rt.inflight.add(attempt_id)
        request = OriginateRequest(
            attempt_id=attempt_id,
            number=claimed.number,
            caller_id=rt.caller_id,
            ring_timeout=rt.ring_timeout,
            node=route.node,
            dial_string=route.dial_string,
        )
        follower = asyncio.create_task(
            self._follow(tracker, request, route), name=f"attempt-{attempt_id}"
        )
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)

    async def _wait_slot(self, route: Route) -> None:
        """Sleep until the instant reserved for the call (``route.send_at``, monotonic
        clock); returns early when the dialer stops."""
        delay = route.send_at - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _send(self, t: Tracker, request: OriginateRequest, route: Route) -> None:
        """Speak the contact's texts, wait for the reserved instant, send the Originate.

        What went wrong is left on the tracker for :meth:`_follow_inner`: ``not_sent``
        (nothing left: the contact waits for a later dial) when the dialer stops or the
        node goes down before the instant, ``send_error`` when the PBX refused it.
        """
        plan = t.runtime.plan
        try:
            rt = t.runtime
            if plan.prompts is not None and plan.scenario is not None and not rt.prompts_ready:
                try:  # speak this contact's texts now: the answered call must never wait
                    await asyncio.to_thread(plan.prompts.prepare, plan.scenario, t.fields)
                    # texts without merge fields sound the same for every contact: spoken
                    # once (a call still renders a sound whose file went missing)
                    rt.prompts_ready = not plan.prompts.personal(plan.scenario)
                except VoicecastError as exc:
                    t.send_error = f"not dialled: the message could not be spoken: {exc}"
                    t.never_retry = True
                    t.originated.set()
                    t.ended.set()
                    return
            await self._wait_slot(route)
        except asyncio.CancelledError:  # stopping (SIGTERM) before the Originate went out:
            t.not_sent = "the dialer stopped before sending it"  # the contact waits
            t.originated.set()
            raise
        if self._stopping.is_set():
            t.not_sent = "the dialer stopped before sending it"
            t.originated.set()
            return
        if t.node not in self.nodes_up:
            t.not_sent = f"PBX node {t.node} went down before it was sent"
            t.originated.set()
            return
        try:
            await self.pbx.originate(request)
        except PbxUnavailable as exc:
            t.not_sent = str(exc)
            t.originated.set()
        except OriginateRejected as exc:
            if "shutting down" in str(exc).lower():  # nothing placed: dial it later
                t.not_sent = str(exc)
                t.originated.set()
                self._node_down(t.node)
                return
            t.send_error = t.pbx_failure = str(exc)
            t.originated.set()
            t.ended.set()
        except UnsafeValueError as exc:
            t.send_error = str(exc)
            t.never_retry = True
            t.originated.set()
            t.ended.set()
        except OriginateUnknown as exc:
            log.warning("attempt %s: %s; following it from the PBX's state", t.attempt_id, exc)
            t.note = str(exc)

    # --- following an attempt ---------------------------------------------------------------

    async def _follow(
        self, t: Tracker, request: OriginateRequest | None = None, route: Route | None = None
    ) -> None:
        """The attempt's task: send its Originate (``request``, on ``route``), then follow
        it to its final outcome."""
        try:
            if request is not None and route is not None:
                await self._send(t, request, route)
            await self._follow_inner(t)
        except asyncio.CancelledError:
            if not self._draining:
                raise
        except Exception as exc:
            log.exception("attempt %s: follower crashed", t.attempt_id)
            self._finish(t, Outcome.FAILED, f"internal error while following the call: {exc}")

    async def _follow_inner(self, t: Tracker) -> None:
        wait_answer = t.runtime.ring_timeout + ORIGINATE_RESPONSE_MARGIN
        try:
            await asyncio.wait_for(t.originated.wait(), wait_answer)
        except TimeoutError:
            if not await self._channel_up(t.attempt_id):
                if t.pbx_lost:  # fate unknown: the connection never came back
                    self._finish(t, Outcome.FAILED, self._end_unseen(t))
                    return
                t.pbx_failure = t.note or "the PBX never reported this call"
                self._finish(t, Outcome.FAILED, t.pbx_failure)
                return
            t.answered = True  # up for longer than it can ring: it was answered
        if t.not_sent is not None:
            self._finish(t, Outcome.FAILED, f"not sent: {t.not_sent}", not_sent=True)
            return
        if t.send_error is not None:
            self._finish(t, Outcome.FAILED, t.send_error)
            return
        if not t.answered:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(t.ended.wait(), UNANSWERED_HANGUP_GRACE)
            await self._await_cause(t)
            outcome = outcome_of_unanswered(t.reason, t.causes)
            error = None
            if outcome is Outcome.FAILED and t.reconciled:  # ended while the PBX was away
                error = t.note
            elif outcome is Outcome.FAILED:  # no callee state: the call never left the PBX,
                # unless the PBX is stopping: a stop (`core stop now`) hangs up the calls it
                # is placing (Reason 0, no cause: they may have rung) just before its AMI
                # connection closes, and its Shutdown event comes after them
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(t.lost.wait(), PBX_STOP_GRACE)
                if t.lost.is_set():  # lost in the meantime (perhaps back already)
                    t.never_retry = True
                    error = (
                        "the PBX stopped while this call was being placed (it may have rung: "
                        "not re-dialled)"
                    )
                else:
                    error = t.pbx_failure = originate_failure_text(t.reason, t.causes, t.cause_text)
            self._finish(t, outcome, error)
            return
        try:
            await asyncio.wait_for(t.ended.wait(), self.max_call_duration)
        except TimeoutError:
            log.warning(
                "attempt %s: longer than %ss, hanging up", t.attempt_id, self.max_call_duration
            )
            if not t.pbx_lost:  # else nothing can reach the PBX: its end stays unseen
                with contextlib.suppress(PbxError):
                    await self.pbx.hangup(t.attempt_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(t.ended.wait(), 10.0)
        if t.flow_started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(t.flow_done.wait(), FLOW_END_GRACE)
        await self._await_cause(t)
        outcome, error = self._answered_outcome(t)
        if t.pbx_lost:
            error = self._end_unseen(t)
        elif t.note and (error is None or t.reconciled):
            error = t.note  # e.g. it ended while the PBX was away: what the flow saw is unsure
        self._finish(t, outcome, error)

    @staticmethod
    def _end_unseen(t: Tracker) -> str:
        """The attempt was in flight when the PBX connection was lost, and the connection
        did not come back before its deadline (ring timeout, or ``max_call_duration``): its
        end was never seen. Never retried (the call may still be up); returns the reason."""
        t.never_retry = True
        return (
            "the PBX connection was lost during this call and did not come back in time: "
            "its end was not seen (not re-dialled)"
        )

    @staticmethod
    async def _await_cause(t: Tracker) -> None:
        """Give the attempt's other legs up to :data:`CAUSE_GRACE` seconds to report a Q.850
        cause when the ended channel did not carry one (returns at once when one is known)."""
        if t.ended.is_set() and not t.cause_known.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(t.cause_known.wait(), CAUSE_GRACE)

    @staticmethod
    def _answered_outcome(t: Tracker) -> tuple[Outcome, str | None]:
        report = t.report
        if report is None or not t.flow_started:
            return Outcome.FAILED, (
                "answered, but the call flow never ran (can Asterisk reach voicecast's "
                "FastAGI server?)"
            )
        if any(p.get("missing") for p in report.played):
            return Outcome.FAILED, "the message file is missing on the PBX"
        missing = report.scenario.ended_by == "missing"
        if report.opted_out:  # suppressed already, even if the confirmation was missing
            return Outcome.OPTED_OUT, (
                "the opt-out confirmation is missing on the PBX" if missing else None
            )
        if missing:
            return Outcome.FAILED, "a sound of the scenario is missing on the PBX"
        if report.scenario.transferred:
            return Outcome.TRANSFERRED, None
        if report.answerer is Answerer.HANGUP:
            return Outcome.HUMAN, "the callee hung up during answering-machine detection"
        return outcome_of_answerer(report.answerer), report.note or None

    async def _channel_up(self, attempt_id: str) -> bool:
        try:
            up, _listed = await self._channels()
        except PbxError:
            return False
        return attempt_id in up

    def _finish(
        self, t: Tracker, outcome: Outcome, error: str | None, *, not_sent: bool = False
    ) -> None:
        """Store the attempt's final outcome and move its contact on (retry or done).

        When the database refuses the write (disk full, read-only, locked: see
        :meth:`_storage_trouble`), the outcome is kept in memory with its tracker (the
        attempt keeps its channel slot and is never dialled again), dialling pauses, and
        :meth:`_check_storage` writes it once the database takes writes again. A second
        call for the same attempt does nothing.
        """
        if self.trackers.get(t.attempt_id) is not t or t.final is not None:
            return
        t.final = (outcome, error, not_sent, self.clock.now())
        self._write_final(t)

    def _store_outcome(
        self, t: Tracker, outcome: Outcome, error: str | None, not_sent: bool, ended_at: datetime
    ) -> None:
        """The outcome's transaction: the attempt row, the contact moved on, its recordings,
        the webhook event and the journal entries, all or nothing.

        Raises:
            sqlalchemy.exc.DBAPIError: the database refused it (nothing written).
        """
        rt = t.runtime
        report = t.report
        cause = next((c for c in t.causes if c), t.causes[0] if t.causes else None)
        with self.sessions() as s, s.begin():
            # Core statements, not the ORM's unit of work: this runs once per call
            row = s.execute(select(_ATTEMPTS).where(_ATTEMPTS.c.id == t.attempt_id)).first()
            cc = s.execute(
                select(_CONTACTS.c.state, _CONTACTS.c.attempts).where(_CONTACTS.c.id == t.cc_id)
            ).first()
            if row is None or cc is None:
                return
            changes: dict[str, Any] = {
                "state": "ended",
                "ended_at": ended_at,
                "outcome": outcome.value,
                "originate_reason": t.reason,
                "hangup_cause": cause,
                "hangup_cause_text": t.cause_text or None,
                "error": error,
            }
            if row.answered_at is None:  # its own write may have been refused
                changes["answered_at"] = t.answered_at
            if not_sent:
                changes["originate_sent_at"] = None
            if report is not None:
                changes["amd_status"] = report.amd_status or None
                changes["amd_cause"] = report.amd_cause or None
                changes["played"] = list(report.played)
                changes["steps"] = [*report.steps, *report.scenario.steps]
                changes["result"] = report.scenario.result
                self._store_recordings(s, t, report, ended_at)
            s.execute(update(_ATTEMPTS).where(_ATTEMPTS.c.id == t.attempt_id).values(changes))
            # the attempt as now stored (not attached to the session), for the webhook
            # event and the journal entry
            attempt = CallAttempt(**{**row._asdict(), **changes})
            moved: dict[str, Any]
            if not_sent:
                moved = {"state": "pending", "attempts": cc.attempts - 1}
            elif t.pbx_failure is not None and rt.alerted:  # see _raise_alert
                moved = {"state": "pending", "outcome": outcome.value, "next_attempt_at": ended_at}
            elif not t.never_retry and should_retry(
                outcome, cc.attempts, rt.retries, rt.retry_outcomes
            ):
                moved = {
                    "state": "pending",
                    "outcome": outcome.value,
                    "next_attempt_at": next_attempt_time(ended_at, rt.retry_delay),
                }
            else:
                moved = {"state": "done", "outcome": outcome.value}
            s.execute(update(_CONTACTS).where(_CONTACTS.c.id == t.cc_id).values(moved))
            if not not_sent:  # webhook event, in the outcome's transaction
                enqueue_attempt_completed(s, attempt, utcnow())
            self._journal_attempt(s, t, attempt, report)

    def _write_final(self, t: Tracker) -> bool:
        """Write ``t.final`` (see :meth:`_finish`) and free the attempt's channel slot;
        False when the database refused it (kept in :attr:`_unwritten`, dialling paused).

        Raises:
            sqlalchemy.exc.DBAPIError: a database error that is not the storage's fault.
        """
        assert t.final is not None
        outcome, error, not_sent, ended_at = t.final
        rt = t.runtime
        try:
            self._store_outcome(t, outcome, error, not_sent, ended_at)
        except DBAPIError as exc:
            if db_fault(exc) is None:
                self.trackers.pop(t.attempt_id, None)
                self._unwritten.pop(t.attempt_id, None)
                raise
            self._unwritten[t.attempt_id] = t
            self._storage_trouble(
                exc, f"storing the outcome ({outcome.value}) of attempt {t.attempt_id}"
            )
            return False
        self.trackers.pop(t.attempt_id, None)
        self._unwritten.pop(t.attempt_id, None)
        rt.inflight.discard(t.attempt_id)
        rt.wake.set()
        if not not_sent:
            if t.pbx_failure is None:
                rt.pbx_failures.clear()
            elif not rt.alerted:
                rt.pbx_failures.append((t.cc_id, t.attempt_id))
                if len(rt.pbx_failures) >= self.alert_after:
                    self._raise_alert(rt, t.pbx_failure)
        log.info(
            "attempt %s to %s: %s%s",
            t.attempt_id,
            t.number,
            outcome.value,
            f" ({error})" if error else "",
        )
        return True

    # --- a database that refuses writes ------------------------------------------------------

    def _database_name(self) -> str:
        """The database's URL (password hidden), for messages."""
        url = getattr(getattr(self.sessions, "kw", {}).get("bind"), "url", None)
        return url.render_as_string(hide_password=True) if url is not None else "?"

    def _storage_trouble(self, exc: DBAPIError, what: str) -> None:
        """A write failed while doing ``what``. Re-raise ``exc`` unless the storage is at
        fault (:func:`~voicecast.storage.db.db_fault`: locked, full, read-only, I/O error);
        else pause dialling for every campaign (:attr:`storage_error`) and log one error
        the first time (further failures until it clears are logged at debug level).

        Raises:
            sqlalchemy.exc.DBAPIError: ``exc``, when it is not a storage fault.
        """
        fault = db_fault(exc)
        if fault is None:
            raise exc
        self._storage_probe_at = time.monotonic() + self.storage_probe_interval
        if self.storage_error is not None:
            log.debug("database still refuses writes (%s): %s", what, fault.detail)
            return
        self.storage_error = f"{fault.reason}; database {self._database_name()}"
        log.error(
            "cannot write to the database while %s: %s. Dialling is paused for every "
            "campaign: no call is placed that cannot be recorded; calls in progress go on "
            "and their outcomes are kept in memory until the database takes writes again "
            "(tried every %g s), then dialling resumes by itself",
            what,
            self.storage_error,
            self.storage_probe_interval,
        )

    def _write_or_pause(self, what: str, work: Callable[[Session], _T]) -> _T | None:
        """Run ``work`` in one transaction and return its result; when the database
        refuses it (a storage fault, see :meth:`_storage_trouble`: dialling pauses),
        return None instead. ``what`` names the write in the logged error.

        Raises:
            sqlalchemy.exc.DBAPIError: a database error that is not the storage's fault.
        """
        try:
            with self.sessions() as s, s.begin():
                return work(s)
        except DBAPIError as exc:
            self._storage_trouble(exc, what)
            return None

    def _renew_lease(self, s: Session) -> None:
        """Renew the controller lease; a database refusing the write pauses dialling.

        Raises:
            LeaseHeld: another controller took the lease.
        """
        try:
            acquire_lease(s, self.controller_id, shared=self.shared)
        except DBAPIError as exc:
            s.rollback()
            self._storage_trouble(exc, "renewing the controller lease")

    def _check_storage(self, *, force: bool = False) -> None:
        """While :attr:`storage_error` is set, every :attr:`storage_probe_interval`
        seconds (or now with ``force``): write what waits (key-press opt-outs, outcomes,
        attempts to recover), then renew the lease; when every write succeeds, clear
        :attr:`storage_error` and wake the campaigns (dialling resumes)."""
        if self.storage_error is None and not (
            force and (self._unwritten or self._unwritten_optouts or self._unrecovered)
        ):
            return
        if not force and time.monotonic() < self._storage_probe_at:
            return
        self._storage_probe_at = time.monotonic() + self.storage_probe_interval
        try:
            while self._unwritten_optouts:
                t, at = self._unwritten_optouts[0]
                self._store_opt_out(t, at)
                self._unwritten_optouts.pop(0)
            for t in list(self._unwritten.values()):
                if not self._write_final(t):
                    return
            for attempt_id in sorted(self._unrecovered):
                self._close_interrupted(attempt_id)
                self._unrecovered.discard(attempt_id)
            with self.sessions() as s:
                acquire_lease(s, self.controller_id, shared=self.shared)
        except DBAPIError as exc:
            self._storage_trouble(exc, "trying the database again")
            return
        if self.storage_error is not None:
            log.warning("the database takes writes again: dialling resumes")
        self.storage_error = None
        for rt in self.runtimes.values():
            rt.wake.set()

    def _recording_days(self, rec: dict[str, Any]) -> int:
        """Days a reply is kept: its node's ``retention_days`` (30 when absent), capped by
        ``recordings_max_days``."""
        days = int(rec.get("retention_days") or 30)
        if self.recordings_max_days is not None:
            days = min(days, self.recordings_max_days)
        return days

    def _journal_attempt(
        self, s: Session, t: Tracker, attempt: CallAttempt, report: FlowReport | None
    ) -> None:
        """The attempt's ``call.attempt`` entry and, when a person or a machine heard a
        message, its ``message.dropped`` entry (same transaction as the outcome)."""
        rt = t.runtime
        entries = [
            journal.call_attempt_entry(
                self.gate.key, attempt, campaign=rt.name, caller_id=rt.caller_id
            )
        ]
        if report is not None and report.answerer in (Answerer.HUMAN, Answerer.MACHINE):
            prompts = journal.played_prompts(report.played, t.play_starts, rt.audio)
            if prompts:
                entries.append(self._dropped_entry(t, report, prompts))
        append_all(s, entries)  # both in one append

    def _dropped_entry(
        self, t: Tracker, report: FlowReport, prompts: list[dict[str, Any]]
    ) -> PendingEntry:
        """The attempt's ``message.dropped`` entry."""
        rt = t.runtime
        return journal.message_dropped_entry(
            self.gate.key,
            number=t.number,
            campaign=rt.name,
            campaign_id=rt.campaign_id,
            attempt_id=t.attempt_id,
            caller_id=rt.caller_id,
            delivered_to=report.answerer.value,
            prompts=prompts,
            basis=t.basis,
            purpose=rt.purpose,
            sender=rt.sender,
            on_behalf_of=rt.on_behalf_of,
        )

    def _store_recordings(self, s: Session, t: Tracker, report: FlowReport, now: datetime) -> None:
        """One :class:`Recording` row per reply a record node captured, with its deletion
        date (the node's ``retention_days``)."""
        plan = t.runtime.plan
        for rec in report.scenario.recordings:
            path = str(rec.get("path") or "")
            if plan.replies_dir and path.startswith(plan.replies_dir_on_pbx):
                path = plan.replies_dir + path[len(plan.replies_dir_on_pbx) :]
            s.add(
                Recording(
                    attempt_id=t.attempt_id,
                    campaign_id=t.runtime.campaign_id,
                    node=str(rec.get("node") or ""),
                    path=path + ".wav",
                    duration_ms=int(rec.get("duration_ms") or 0),
                    created_at=now,
                    delete_after=now + timedelta(days=self._recording_days(rec)),
                )
            )

    # --- PbxListener ------------------------------------------------------------------------

    def on_originate_result(self, attempt_id: str, answered: bool, reason: int) -> None:
        """OriginateResponse: the call was answered, or failed with ``reason``."""
        t = self.trackers.get(attempt_id)
        if t is None:
            return
        t.reason = reason
        t.answered = t.answered or answered
        t.originated.set()

    def on_hangup(self, attempt_id: str, cause: int, cause_text: str, primary: bool) -> None:
        """Hangup of one of the attempt's channels (Q.850 ``cause``)."""
        t = self.trackers.get(attempt_id)
        if t is None:
            return
        t.causes.append(cause)
        if cause and not t.cause_text:
            t.cause_text = cause_text
        if cause:
            t.cause_known.set()
        if primary:
            t.ended.set()
            if t.reconciled:  # its OriginateResponse may have been lost with the connection
                t.originated.set()

    def on_connection(self, connected: bool, node: str | None = None) -> None:
        """Place calls only on the nodes that are up; reconcile a node's calls in flight
        when it comes back. ``node`` None: every node (a single PBX).

        At a loss every attempt in flight on that node is marked :attr:`Tracker.pbx_lost`
        (its events may be lost); the backend reconnects with back-off and logs in first,
        then this is called with True and :meth:`_reconcile_inflight` looks those attempts
        up in the node's own channel list. Nothing is re-sent. Dialling goes on over the
        other nodes; it pauses only when no node is up.
        """
        names = {n.name for n in self.nodes} if node is None else {node}
        if connected:
            self.nodes_up |= names
            self._connected.set()
            if any(t.pbx_lost and t.node in names for t in self.trackers.values()):
                task = asyncio.get_running_loop().create_task(self._reconcile_inflight(names))
                self._followers.add(task)
                task.add_done_callback(self._followers.discard)
        else:
            self._node_down(*names)
            lost = 0
            for t in self.trackers.values():
                if t.final is None and t.node in names:
                    t.pbx_lost = True
                    t.lost.set()
                    lost += 1
            log.warning(
                "PBX connection lost%s: %s (%d call(s) in flight there)",
                f" (node {node})" if node else "",
                "dialing paused"
                if not self.nodes_up
                else "dialing goes on over " + ", ".join(sorted(self.nodes_up)),
                lost,
            )
        for rt in self.runtimes.values():
            rt.wake.set()

    def _node_down(self, *names: str) -> None:
        """Stop placing calls on ``names``; dialling pauses when no node is left."""
        self.nodes_up -= set(names)
        if not self.nodes_up:
            self._connected.clear()

    async def _channels(self) -> tuple[set[str], set[str]]:
        """The attempt ids with a channel up, and the names of the nodes whose channel list
        was read (``CoreShowChannels``): an attempt's absence proves its call is over only
        when its node was listed.

        Raises:
            PbxError: no node could be listed.
        """
        by_node = getattr(self.pbx, "channels_by_node", None)
        if by_node is None:
            chans = await self.pbx.list_channels()
            return {c.attempt_id for c in chans if c.attempt_id}, {n.name for n in self.nodes}
        listing: dict[str, list[ChannelInfo] | None] = await by_node()
        listed = {name for name, chans in listing.items() if chans is not None}
        if not listed:
            raise PbxUnavailable("no PBX node could be listed")
        up = {c.attempt_id for chans in listing.values() for c in chans or () if c.attempt_id}
        return up, listed

    async def _reconcile_inflight(self, names: set[str] | None = None) -> None:
        """After a node reconnects: look up the attempts in flight on it at the loss in the
        PBX's channel list (``CoreShowChannels``, by the attempt id sent as ``ChannelId``).

        A channel still up: followed on (its end comes as a Hangup on the new connection).
        A channel gone: the call ended while we were away; the attempt ends now with a note
        (its outcome from what was seen: the call flow's verdict when it was answered, else
        ``failed``). Attempts placed after the reconnect are not touched. When the listing
        fails (the connection dropped again) the next reconnect does it.
        """
        lost = [
            t for t in self.trackers.values() if t.pbx_lost and (names is None or t.node in names)
        ]
        if not lost:
            return
        try:
            up, listed = await self._channels()
        except PbxError as exc:
            log.warning("cannot list the PBX's channels after the reconnect: %s", exc)
            return
        gone = seen = 0
        for t in lost:
            if not t.pbx_lost or t.node not in listed:
                continue
            seen += 1
            t.pbx_lost = False
            t.reconciled = True
            if t.attempt_id in up or t.ended.is_set():
                continue
            gone += 1
            note = "the PBX connection was lost during the call; it had ended when it came back"
            t.note = f"{t.note}; {note}" if t.note else note
            t.originated.set()
            t.ended.set()
        log.warning(
            "PBX reconnected: %d call(s) were in flight at the loss, %d still up, %d ended",
            seen,
            seen - gone,
            gone,
        )

    # --- the call flow (FastAGI) ------------------------------------------------------------

    async def _serve_flow(self, call: CallFlowSession) -> None:
        t = self.trackers.get(call.attempt_id)
        if t is None:
            log.warning("call flow for unknown attempt %s: hanging up", call.attempt_id)
            await call.hangup()
            return
        t.flow_started = True
        t.answered = True
        t.originated.set()
        t.answered_at = answered_at = self.clock.now()

        def mark_answered(s: Session) -> None:
            s.execute(
                update(_ATTEMPTS)
                .where(_ATTEMPTS.c.id == t.attempt_id)
                .values(state="answered", answered_at=answered_at)
            )

        # the call goes on whatever the database says; the outcome repeats the instant
        self._write_or_pause(f"marking attempt {t.attempt_id} answered", mark_answered)
        t.report = FlowReport()
        opt_out = self._opt_out_hook(t)
        timed = cast(CallFlowSession, _PlayClock(call, self.clock, t.play_starts))
        try:
            await run_outbound_flow(
                timed,
                t.runtime.plan,
                t.report,
                self._save_decision(t),
                opt_out,
                _CallContext(t, opt_out),
            )
        except Exception as exc:
            log.exception("attempt %s: call flow failed", t.attempt_id)
            t.report.note = f"call flow error: {exc}"
            with contextlib.suppress(Exception):
                await call.hangup()
        finally:
            t.flow_done.set()

    def _opt_out_hook(self, t: Tracker) -> Callable[[], None]:
        """Suppress the number at once, for every campaign (CPCE L34-5; GDPR art. 21(3))."""

        def opt_out() -> None:
            at = min(self.clock.now(), utcnow())
            try:
                self._store_opt_out(t, at)
            except DBAPIError as exc:  # kept in memory, written by _check_storage
                self._unwritten_optouts.append((t, at))
                self._storage_trouble(exc, f"storing the opt-out of attempt {t.attempt_id}")
            log.info("attempt %s: %s opted out by key", t.attempt_id, t.number)

        return opt_out

    def _store_opt_out(self, t: Tracker, at: datetime) -> None:
        """The key-press opt-out's transaction (:func:`add_opt_out`, instant ``at``)."""
        with self.sessions() as s, s.begin():
            add_opt_out(
                s,
                self.gate.key,
                t.number,
                source="key-press",
                at=at,
                campaign_id=t.runtime.campaign_id,
                note=f"attempt {t.attempt_id}",
            )

    def _save_decision(self, t: Tracker) -> FlowDecisionHook:
        def save(report: FlowReport) -> None:
            def store(s: Session) -> None:
                s.execute(
                    update(_ATTEMPTS)
                    .where(_ATTEMPTS.c.id == t.attempt_id)
                    .values(
                        amd_status=report.amd_status or None,
                        amd_cause=report.amd_cause or None,
                    )
                )

            # refused: the outcome's transaction stores the verdict again
            self._write_or_pause(f"storing the AMD verdict of attempt {t.attempt_id}", store)

        return save

    # --- recovery ---------------------------------------------------------------------------

    async def recover(self) -> int:
        """Close attempts a stopped controller left unfinished. Returns how many.

        Those are the attempts not ended whose controller is not this one and, when several
        controllers share the database (PostgreSQL), not a live one either (lease expired:
        see :func:`acquire_lease`). Run at start and, shared, every
        :data:`ORPHAN_SWEEP_INTERVAL` seconds. A channel of such an attempt still up on the
        PBX is hung up (its flow is gone). The attempt is never re-sent: its outcome is what
        was stored (AMD verdict) or ``failed``. When its node's channel list was read (so
        the first call is certainly over: absent, or hung up here), the contact follows the
        campaign's retry policy for that outcome (a new attempt, after ``retry_delay``);
        otherwise it is done. Expired leases left with no live attempt are deleted.
        """
        with self.sessions() as s:
            query = select(CallAttempt).where(
                CallAttempt.state != "ended",
                CallAttempt.id.not_in(list(self.trackers)),
                CallAttempt.controller.is_(None) | (CallAttempt.controller != self.controller_id),
            )
            if self.shared:
                live = live_controllers(s)
                query = query.where(
                    CallAttempt.controller.is_(None) | CallAttempt.controller.not_in(live)
                )
            stale = s.scalars(query).all()
        if not stale:
            if self.shared:
                self._write_or_pause("deleting expired controller leases", self._forget_dead)
            return 0
        try:
            up, listed = await self._channels()
        except PbxError:
            up, listed = set(), set()
        every_node = {n.name for n in self.nodes}
        for attempt in stale:
            if attempt.id in up:
                with contextlib.suppress(PbxError):
                    await self.pbx.hangup(attempt.id)
            over = attempt.pbx_node in listed if attempt.pbx_node else listed >= every_node
            try:
                self._close_interrupted(attempt.id, over=over)
            except DBAPIError as exc:  # closed by _check_storage once the database takes it
                self._unrecovered.add(attempt.id)
                self._storage_trouble(exc, f"closing attempt {attempt.id} (recovery)")
        if self.shared:
            self._write_or_pause("deleting expired controller leases", self._forget_dead)
        log.warning("recovered %d attempt(s) left by a stopped controller", len(stale))
        return len(stale)

    @staticmethod
    def _forget_dead(s: Session) -> None:
        """Delete the expired leases (several controllers) whose controller has no attempt
        left unfinished."""
        live = set(live_controllers(s))
        busy = set(
            s.scalars(
                select(CallAttempt.controller).where(CallAttempt.state.in_(LIVE_STATES)).distinct()
            ).all()
        )
        dead = [
            holder
            for holder in s.scalars(select(ControllerLease.holder)).all()
            if holder not in live and holder not in busy
        ]
        if dead:  # a statement, not ORM deletes: another controller may sweep them too
            s.execute(delete(ControllerLease).where(ControllerLease.holder.in_(dead)))

    def _close_interrupted(self, attempt_id: str, *, over: bool = False) -> None:
        """End an attempt whose follower is gone (a stopped controller) as ``interrupted``.

        ``over``: its call is certainly over (the PBX's channel list was read); then the
        contact follows the campaign's retry policy, else it is done (never two calls at
        once to one person).
        """
        with self.sessions() as s, s.begin():
            attempt = s.get(CallAttempt, attempt_id)
            if attempt is None or attempt.state == "ended":
                return
            campaign = s.get(Campaign, attempt.campaign_id)
            cc = s.get(CampaignContact, attempt.campaign_contact_id)
            outcome = Outcome.FAILED
            if attempt.amd_status and campaign is not None:
                outcome = outcome_of_answerer(
                    classify_amd(
                        attempt.amd_status,
                        attempt.amd_cause or "",
                        # the AMD policy only: no sounds to publish for a call that is over
                        FlowPlan("", "", **amd_settings(campaign.amd)),
                    )
                )
            attempt.state = "ended"
            attempt.ended_at = self.clock.now()
            attempt.outcome = outcome.value
            attempt.error = (
                "interrupted: the controller stopped during this call; never re-sent "
                "(outcome from what was recorded before the stop)"
            )
            if cc is not None and cc.state == "dialing" and cc.last_attempt_id == attempt_id:
                cc.state = "done"
                cc.outcome = outcome.value
                if (
                    over
                    and campaign is not None
                    and should_retry(
                        outcome, cc.attempts, campaign.retries, campaign.retry_outcomes
                    )
                ):
                    cc.state = "pending"
                    cc.next_attempt_at = next_attempt_time(attempt.ended_at, campaign.retry_delay)
            enqueue_attempt_completed(s, attempt, utcnow())  # webhook event, same transaction
            journal.call_attempt(
                s,
                self.gate.key,
                attempt,
                campaign=campaign.name if campaign is not None else str(attempt.campaign_id),
                caller_id=campaign.caller_id if campaign is not None else "",
            )


class _PlayClock:
    """The call, with the instant each play starts noted as (sound, instant) in ``starts``
    (the journal's ``message.dropped`` says when the message was played)."""

    def __init__(
        self, call: CallFlowSession, clock: Clock, starts: list[tuple[str, datetime]]
    ) -> None:
        self._call = call
        self._clock = clock
        self._starts = starts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        """Note the start, then play through the call."""
        self._starts.append((sound, self._clock.now()))
        return await self._call.play(sound, escape_digits)


class _CallContext:
    """:class:`~voicecast.scenarios.runner.ScenarioContext` of one answered attempt."""

    def __init__(self, t: Tracker, opt_out: Callable[[], None]) -> None:
        self._t = t
        self._opt_out = opt_out

    def sound_for(self, node_id: str, prompt: Prompt) -> str:
        """The prompt's PBX sound for this contact (rendered before the dial: a cache hit)."""
        prompts = self._t.runtime.plan.prompts
        if prompts is None:
            raise VoicecastError("the campaign has no prompts")
        return prompts.sound_for(prompt, self._t.fields)

    def record_path(self, node_id: str) -> str:
        """``<replies dir on the PBX>/<attempt id>-<node id>`` (no extension).

        Raises:
            VoicecastError: the plan names no replies folder.
        """
        base = self._t.runtime.plan.replies_dir_on_pbx
        if not base:
            raise VoicecastError("no folder for callees' replies ([pbx] replies_dir)")
        return f"{base}/{self._t.attempt_id}-{node_id}"

    def caller_id_for(self, rule: str) -> str:
        """The campaign's caller ID, or the callee's number (``callee``) for the agent."""
        return self._t.number if rule == "callee" else self._t.runtime.caller_id

    def opt_out(self) -> None:
        """Suppress the callee's number now (see :meth:`Dialer._opt_out_hook`)."""
        self._opt_out()
