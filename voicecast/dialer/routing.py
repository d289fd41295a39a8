"""Where and when the next call goes: a PBX node and trunk with room, and a start instant
that every rate limit allows, shared by all the controllers of one database.

Scale-out model (several controllers on one PostgreSQL, several Asterisk nodes): the limits
live in the database, not in a controller's memory, so they hold whatever the number of
controllers.

- **Channels**: a campaign's ``max_channels`` and a node's ``max_channels`` count the live
  attempts (``originating`` or ``answered``) of every controller
  (:func:`live_attempts`).
- **Calls per second**: each limit (the campaign's ``cps``, each trunk's ``cps``) has a
  :class:`~voicecast.storage.models.PacingSlot` row holding the next instant a call may
  start. A dial locks the rows of its limits (``SELECT ... FOR UPDATE``, in key order so
  that two dials never wait for each other in a cycle), takes the earliest instant they
  all allow and moves each one ``1/cps`` seconds past it (:func:`reserve`). The call is
  then sent at that instant. Instants come from the database server's clock on
  PostgreSQL (``clock_timestamp()``), so controllers on several hosts share one time line;
  the controller only ever sleeps the *difference*.
- **One number at a time**: :func:`lock_number` takes a PostgreSQL transaction-level
  advisory lock on the number before the compliance gate reads its history, so that two
  controllers dialling the same person from two campaigns decide one after the other (the
  gate's frequency caps and the "one call at a time" rule then hold across controllers).

On SQLite exactly one controller dials (the lease), every write is serialised by the
database, and these functions work the same without the row locks.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from voicecast.pbx.base import NodeSpec, TrunkSpec
from voicecast.storage.models import CallAttempt, PacingSlot, utcnow

NEVER = datetime(2000, 1, 1, tzinfo=UTC)
"""The latest-call instant of a node that never had a call."""
LIVE_STATES = ("originating", "answered")
SEND_LEAD = 0.1
"""Seconds between choosing a route and the earliest instant its call may start: the
claim's transaction (gate, journal, attempt row) commits in between."""
"""Attempt states that hold a channel (or are about to)."""


@dataclass(frozen=True)
class Route:
    """Where the next call goes and when.

    Attributes:
        node: the PBX node's name.
        trunk: the trunk's name on that node.
        dial_string: the trunk's dial string template (None: the node's default).
        at: the reserved start instant (UTC, the database's clock on PostgreSQL).
        delay: seconds from the reservation until ``at`` (0 when it may start now).
        send_at: ``at`` on this process's ``time.monotonic()`` clock.
    """

    node: str
    trunk: str
    dial_string: str | None
    at: datetime
    delay: float
    send_at: float = 0.0


def is_postgresql(session: Session) -> bool:
    """True when ``session`` talks to PostgreSQL (several controllers may share it)."""
    return session.get_bind().dialect.name == "postgresql"


def db_now(session: Session) -> datetime:
    """Now (UTC): the database server's clock on PostgreSQL (``clock_timestamp()``, the
    same time line for every controller host), this machine's elsewhere."""
    if is_postgresql(session):
        value = session.scalar(select(func.clock_timestamp()))
        assert isinstance(value, datetime)
        return value
    return utcnow()


def lock_number(session: Session, number: str) -> None:
    """Hold a PostgreSQL advisory lock on ``number`` (E.164) until the transaction ends, so
    that the compliance gate's read of its history and the attempt written after it are one
    step for every controller (PostgreSQL documentation, "Advisory Locks",
    ``pg_advisory_xact_lock``). No-op on SQLite, whose single controller is alone."""
    if not is_postgresql(session):
        return
    digest = hashlib.sha256(b"voicecast-number:" + number.encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def live_attempts(session: Session, *, campaign_id: int | None = None) -> dict[str | None, int]:
    """Live attempts (``originating`` or ``answered``) of every controller, by PBX node
    (None: attempts placed before nodes were recorded); only ``campaign_id``'s when given."""
    query = select(CallAttempt.pbx_node, func.count()).where(CallAttempt.state.in_(LIVE_STATES))
    if campaign_id is not None:
        query = query.where(CallAttempt.campaign_id == campaign_id)
    rows = session.execute(query.group_by(CallAttempt.pbx_node)).all()
    return {node: int(n) for node, n in rows}


def live_counts(session: Session, campaign_id: int) -> tuple[dict[str | None, int], int]:
    """:func:`live_attempts` of every campaign by node, and ``campaign_id``'s total, in one
    query (the claim needs both: a campaign's ``max_channels`` and each node's)."""
    mine = func.sum(case((CallAttempt.campaign_id == campaign_id, 1), else_=0))
    rows = session.execute(
        select(CallAttempt.pbx_node, func.count(), mine)
        .where(CallAttempt.state.in_(LIVE_STATES))
        .group_by(CallAttempt.pbx_node)
    ).all()
    return {node: int(n) for node, n, _ in rows}, sum(int(m or 0) for _, _, m in rows)


def campaign_key(campaign_id: int) -> str:
    """The :class:`PacingSlot` key of a campaign's ``cps``."""
    return f"campaign:{campaign_id}"


def node_key(node: str) -> str:
    """The :class:`PacingSlot` key holding a node's latest call instant (ties between
    equally loaded nodes go to the one used least recently: calls alternate)."""
    return f"node:{node}"


def trunk_key(node: str, trunk: str) -> str:
    """The :class:`PacingSlot` key of a trunk's ``cps``."""
    return f"trunk:{node}/{trunk}"


_known_slots: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
"""Per engine: the pacing keys known to have a row."""


def _lock_slots(session: Session, keys: Iterable[str], now: datetime) -> dict[str, PacingSlot]:
    """The pacing rows of ``keys``, created when missing (``ON CONFLICT DO NOTHING``: two
    controllers may create the same row at once) and locked ``FOR UPDATE`` in key order."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    bind = session.get_bind()
    known = _known_slots.setdefault(bind, set())
    if not known.issuperset(wanted):
        insert = pg_insert if is_postgresql(session) else sqlite_insert
        session.execute(
            insert(PacingSlot)
            # a rate limit may start now; a node never used is the least recently used
            .values(
                [{"key": k, "next_at": NEVER if k.startswith("node:") else now} for k in wanted]
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )
    rows = session.scalars(
        select(PacingSlot)
        .where(PacingSlot.key.in_(wanted))
        .order_by(PacingSlot.key)
        .with_for_update()
    ).all()
    found = {row.key: row for row in rows}
    if len(found) < len(wanted):  # the cache was wrong (a rolled-back insert): create them
        known.difference_update(wanted)
        return _lock_slots(session, wanted, now)
    # the rows exist from now on (rows are never deleted): later claims skip the insert
    # (on every call's path); a rollback of this transaction is caught above
    known.update(wanted)
    return found


def _later(a: datetime, b: datetime) -> datetime:
    return a if a >= b else b


def plan_route(
    session: Session,
    *,
    campaign_id: int,
    campaign_cps: float,
    nodes: Sequence[NodeSpec],
    up: set[str],
    live: dict[str | None, int] | None = None,
    slots: dict[str, PacingSlot] | None = None,
) -> tuple[Route, list[tuple[PacingSlot, float]]] | None:
    """Choose the node and trunk of a campaign's next call and the instant it may start,
    without reserving it yet (:func:`reserve` does, once the gate allows the call).

    Candidates are the trunks of the nodes in ``up`` (reachable from this controller) whose
    live attempts are fewer than their ``max_channels``. The chosen one has the earliest
    instant every limit allows (the campaign's slot and the trunk's); ties go to the node
    with the smallest share of its channels in use (then the fewest live attempts, then
    the one whose latest call is oldest, then the order of ``nodes``), so calls spread
    over the nodes even when each ends before the next starts. The pacing rows stay
    locked until the transaction ends.

    Returns:
        The route and the (row, interval in seconds) pairs :func:`reserve` moves on; None
        when no node in ``up`` has a free channel. ``live``: :func:`live_attempts` when
        the caller has just read it (read here otherwise). ``slots``: the pacing rows this
        transaction already locked, by key (several plans in one transaction lock each row
        once; the rows locked here are added).
    """
    if live is None:
        live = live_attempts(session)
    candidates: list[tuple[NodeSpec, TrunkSpec, tuple[float, int]]] = []
    for node in nodes:
        if node.name not in up:
            continue
        used = live.get(node.name, 0)
        if node.max_channels is not None and used >= node.max_channels:
            continue
        load = (used / node.max_channels if node.max_channels else 0.0, used)
        candidates.extend((node, trunk, load) for trunk in node.trunks)
    if not candidates:
        return None
    now = db_now(session)
    mono = time.monotonic()
    ckey = campaign_key(campaign_id)
    keys = [
        ckey,
        *(trunk_key(n.name, t.name) for n, t, _ in candidates if t.cps),
        *(node_key(n.name) for n, _, _ in candidates),
    ]
    if slots is None:
        slots = {}
    missing = [k for k in keys if k not in slots]
    if missing:
        slots.update(_lock_slots(session, missing, now))
    # never before the claim can have committed: a call sent later than its instant would
    # leave less than one interval before the next one
    start = _later(now + timedelta(seconds=SEND_LEAD), slots[ckey].next_at)
    best: tuple[datetime, tuple[float, int], datetime, int] | None = None
    chosen: tuple[NodeSpec, TrunkSpec] | None = None
    for index, (node, trunk, load) in enumerate(candidates):
        at = start
        if trunk.cps:
            at = _later(at, slots[trunk_key(node.name, trunk.name)].next_at)
        rank = (at, load, slots[node_key(node.name)].next_at, index)
        if best is None or rank < best:
            best, chosen = rank, (node, trunk)
    assert best is not None and chosen is not None
    node, trunk = chosen
    at = best[0]
    moves = [(slots[ckey], 1.0 / campaign_cps)]
    if trunk.cps:
        moves.append((slots[trunk_key(node.name, trunk.name)], 1.0 / trunk.cps))
    moves.append((slots[node_key(node.name)], 0.0))  # its latest call: ties go elsewhere
    delay = (at - now).total_seconds()
    route = Route(
        node.name,
        trunk.name,
        trunk.dial_string,
        at,
        delay,
        send_at=mono + delay,
    )
    return route, moves


def reserve(route: Route, moves: list[tuple[PacingSlot, float]]) -> None:
    """Take ``route.at``: move each limit's next instant one interval past it (in the
    session's transaction; committed with the attempt row)."""
    for slot, interval in moves:
        slot.next_at = route.at + timedelta(seconds=interval)
