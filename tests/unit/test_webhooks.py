"""Webhooks: signatures, back-off, the delivery worker against a real local receiver, and the
hooks that queue events in the dialer's and the opt-out store's transactions."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.campaigns.compliance import GateEnv
from voicecast.clock import ManualClock
from voicecast.compliance.suppression import add_opt_out
from voicecast.config import ComplianceSettings
from voicecast.dialer.controller import CampaignRuntime, Dialer, Tracker
from voicecast.dialer.flow import FlowPlan, FlowReport
from voicecast.dialer.outcomes import Outcome
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    WebhookDelivery,
)
from voicecast.webhooks import (
    DELIVERY_HEADER,
    DELIVERY_KEEP,
    EVENT_HEADER,
    RETRY_CAP,
    SIGNATURE_HEADER,
    DeliveryWorker,
    create_webhook,
    delivery_counts,
    enqueue_event,
    enqueue_test,
    purge_deliveries,
    retry_delay,
    sign,
    verify_signature,
)

SECRET = "s3cret-for-tests-only-0123456789"
GATE = GateEnv.build(b"k" * 32, ComplianceSettings())


# --------------------------------------------------------------------------- signing


def test_a_signature_verifies_and_any_change_breaks_it() -> None:
    body = b'{"id":"e1","type":"optout.created"}'
    header = sign(SECRET, body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(SECRET, header, body, now=1_700_000_100)
    assert not verify_signature(SECRET, header, body + b" ", now=1_700_000_100)
    assert not verify_signature("another-secret-0123456789", header, body, now=1_700_000_100)
    # replay: too far from the receiver's clock, either way
    assert not verify_signature(SECRET, header, body, now=1_700_000_301)
    assert not verify_signature(SECRET, header, body, now=1_699_999_000)
    assert verify_signature(SECRET, header, body, now=1_700_000_900, tolerance=1000)
    # several v1 entries (secret rotation): one matching is enough
    other = sign("old-secret-0123456789abcdef", body, 1_700_000_000).split(",")[1]
    assert verify_signature(SECRET, f"t=1700000000,{other},{header.split(',')[1]}", body, 1.7e9)
    for bad in ("", "t=abc,v1=00", "v1=00", "t=1700000000", "garbage"):
        assert not verify_signature(SECRET, bad, body, now=1_700_000_000)


def test_back_off_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    first = [retry_delay(1, rng) for _ in range(200)]
    assert min(first) >= 8.0 and max(first) <= 12.0 and len(set(first)) > 100
    assert 24.0 <= retry_delay(2, rng) <= 36.0
    assert 72.0 <= retry_delay(3, rng) <= 108.0
    assert all(retry_delay(n, rng) <= RETRY_CAP for n in range(1, 40))
    assert retry_delay(12, rng) == RETRY_CAP


# --------------------------------------------------------------------------- the worker


@dataclass
class Receiver:
    """A CRM stand-in: verifies each signature, records bodies, answers as planned."""

    plan: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer
    seen: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(
            {
                "path": request.path,
                "at": time.monotonic(),
                "verified": verify_signature(
                    SECRET, request.headers.get(SIGNATURE_HEADER, ""), body, time.time()
                ),
                "event": request.headers.get(EVENT_HEADER),
                "delivery": request.headers.get(DELIVERY_HEADER),
                "content_type": request.headers.get("Content-Type"),
                "body": json.loads(body),
            }
        )
        if request.path == "/slow":
            await asyncio.wait_for(self.release.wait(), 30)
        statuses = self.plan.get(request.path) or [200]
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.Response(status=status, text="nope" if status >= 400 else "ok")


@pytest.fixture
async def receiver(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    server = await aiohttp_server(app)
    yield rec, f"http://127.0.0.1:{server.port}"
    rec.release.set()


def _hook(sessions: sessionmaker[Session], url: str, events: list[str] | None = None) -> int:
    with sessions() as s, s.begin():
        return create_webhook(s, url, events or ["optout.created"], secret=SECRET).id


def _event(sessions: sessionmaker[Session], now: datetime, n: int = 1) -> None:
    with sessions() as s, s.begin():
        for i in range(n):
            enqueue_event(s, "optout.created", {"number": f"+3319900{i:04d}"}, now)


def _deliveries(sessions: sessionmaker[Session]) -> list[WebhookDelivery]:
    with sessions() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Running:
    """Run a worker in the background for the duration of a ``with`` block."""

    def __init__(self, worker: DeliveryWorker) -> None:
        self.worker = worker
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DeliveryWorker:
        self.task = asyncio.create_task(self.worker.run())
        return self.worker

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_a_delivery_is_signed_and_delivered(
    sessions: sessionmaker[Session], receiver: tuple[Receiver, str]
) -> None:
    rec, base = receiver
    _hook(sessions, base + "/crm")
    now = datetime.now(UTC)
    _event(sessions, now)
    worker = DeliveryWorker(sessions, timeout=2.0, poll_interval=0.05)
    async with Running(worker):
        await _until(lambda: _deliveries(sessions)[0].status == "delivered")
    (d,) = _deliveries(sessions)
    assert (d.attempts, d.last_status, d.last_error, d.next_attempt_at) == (1, 200, None, None)
    assert d.delivered_at is not None
    (hit,) = rec.seen
    assert hit["verified"] is True
    assert hit["event"] == "optout.created" and hit["delivery"] == str(d.id)
    assert hit["content_type"] == "application/json"
    assert hit["body"]["type"] == "optout.created"
    assert hit["body"]["id"] == d.event_id
    assert hit["body"]["data"] == {"number": "+33199000000"}


async def test_a_500_is_retried_after_a_back_off_then_delivered(
    sessions: sessionmaker[Session], receiver: tuple[Receiver, str]
) -> None:
    rec, base = receiver
    rec.plan["/crm"] = [500, 200]
    _hook(sessions, base + "/crm")
    clock = ManualClock(datetime.now(UTC))
    _event(sessions, clock.now())
    worker = DeliveryWorker(
        sessions, timeout=2.0, poll_interval=0.05, clock=clock, rng=random.Random(1)
    )
    async with Running(worker):
        await _until(lambda: _deliveries(sessions)[0].attempts == 1)
        (d,) = _deliveries(sessions)
        assert (d.status, d.last_status) == ("pending", 500)
        assert d.last_error == "HTTP 500: nope"
        assert d.next_attempt_at is not None
        wait = (d.next_attempt_at - clock.now()).total_seconds()
        assert 8.0 <= wait <= 12.0  # the first back-off: 10 s +-20 %
        await asyncio.sleep(0.3)
        assert len(rec.seen) == 1  # not before its time
        clock.advance(wait + 0.1)
        worker.wake()
        await _until(lambda: _deliveries(sessions)[0].status == "delivered")
    (d,) = _deliveries(sessions)
    assert (d.attempts, d.last_status, d.last_error) == (2, 200, None)
    assert [h["verified"] for h in rec.seen] == [True, True]
    assert rec.seen[0]["body"] == rec.seen[1]["body"]  # the same event, the same id


async def test_a_delivery_fails_for_good_after_the_last_try(
    sessions: sessionmaker[Session], receiver: tuple[Receiver, str]
) -> None:
    rec, base = receiver
    rec.plan["/down"] = [503]
    _hook(sessions, base + "/down")
    clock = ManualClock(datetime.now(UTC))
    _event(sessions, clock.now())
    worker = DeliveryWorker(sessions, timeout=2.0, max_attempts=3, poll_interval=0.05, clock=clock)
    async with Running(worker):
        for tries in (1, 2, 3):
            await _until(lambda n=tries: _deliveries(sessions)[0].attempts == n)
            clock.advance(3600)
            worker.wake()
        await asyncio.sleep(0.3)
    (d,) = _deliveries(sessions)
    assert (d.status, d.attempts, d.last_status) == ("failed", 3, 503)
    assert d.next_attempt_at is None and d.last_error == "HTTP 503: nope"
    assert len(rec.seen) == 3
    with sessions() as s:
        assert delivery_counts(s) == {"pending": 0, "delivered": 0, "failed": 1}


async def test_a_slow_receiver_times_out_without_delaying_another(
    sessions: sessionmaker[Session], receiver: tuple[Receiver, str]
) -> None:
    _rec, base = receiver
    _hook(sessions, base + "/slow")
    _hook(sessions, base + "/fast")
    now = datetime.now(UTC)
    _event(sessions, now)  # one event, one delivery per receiver
    worker = DeliveryWorker(sessions, timeout=3.0, poll_interval=0.05)
    async with Running(worker):
        await _until(lambda: any(d.status == "delivered" for d in _deliveries(sessions)))
        # the fast one was delivered while the slow one was still hanging (no try recorded
        # yet): an ordering, not a duration, so a loaded machine cannot fail it
        slow_now, _fast_now = _deliveries(sessions)
        assert slow_now.attempts == 0
        await _until(lambda: all(d.attempts == 1 for d in _deliveries(sessions)), timeout=10)
    slow, fast = _deliveries(sessions)
    assert fast.status == "delivered"
    assert (slow.status, slow.last_status) == ("pending", None)
    assert slow.last_error is not None and slow.last_error.startswith("timeout")
    assert slow.next_attempt_at is not None and slow.next_attempt_at > now


async def test_an_unreachable_receiver_is_recorded_and_retried(
    sessions: sessionmaker[Session],
) -> None:
    _hook(sessions, "http://127.0.0.1:9/nothing-listens-here")
    _event(sessions, datetime.now(UTC))
    async with Running(DeliveryWorker(sessions, timeout=2.0, poll_interval=0.05)):
        await _until(lambda: _deliveries(sessions)[0].attempts == 1)
    (d,) = _deliveries(sessions)
    assert d.status == "pending" and d.last_status is None
    assert d.last_error is not None and d.last_error.startswith("connection error")


async def test_disabled_webhooks_wait_and_test_events_go_to_one_receiver(
    sessions: sessionmaker[Session], receiver: tuple[Receiver, str]
) -> None:
    from voicecast.webhooks import WebhookError, set_enabled

    rec, base = receiver
    one = _hook(sessions, base + "/one", ["attempt.completed"])
    two = _hook(sessions, base + "/two")
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        enqueue_test(s, one, now)
        set_enabled(s, two, False)
        with pytest.raises(WebhookError, match="disabled"):
            enqueue_test(s, two, now)
    async with Running(DeliveryWorker(sessions, timeout=2.0, poll_interval=0.05)):
        await _until(lambda: _deliveries(sessions)[0].status == "delivered")
    assert [h["path"] for h in rec.seen] == ["/one"]
    assert rec.seen[0]["event"] == "webhook.test" and rec.seen[0]["verified"]


# --------------------------------------------------------------------------- retention

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _finished(
    sessions: sessionmaker[Session], webhook_id: int, status: str, finished: datetime | None
) -> int:
    """A delivery in ``status``, finished (delivered or last tried) at ``finished``."""
    with sessions() as s, s.begin():
        d = WebhookDelivery(
            webhook_id=webhook_id,
            event_id="00000000-0000-4000-8000-000000000000",
            event_type="optout.created",
            payload={"data": {"number": "+33199000010"}},
            status=status,
            attempts=0 if status == "pending" else 1,
            next_attempt_at=finished if status == "pending" else None,
            last_attempt_at=finished if status != "pending" else None,
            delivered_at=finished if status == "delivered" else None,
            created_at=(finished or T0) - timedelta(minutes=5),
        )
        s.add(d)
        s.flush()
        return d.id


def test_purge_deletes_finished_deliveries_after_the_keep_period(
    sessions: sessionmaker[Session],
) -> None:
    hook = _hook(sessions, "https://crm.example.invalid/hook")
    _finished(sessions, hook, "delivered", T0)  # both deleted at 30 days
    _finished(sessions, hook, "failed", T0)
    recent_delivered = _finished(sessions, hook, "delivered", T0 + timedelta(days=10))
    recent_failed = _finished(sessions, hook, "failed", T0 + timedelta(days=10))
    old_pending = _finished(sessions, hook, "pending", T0)  # still to send: kept
    assert timedelta(days=30) == DELIVERY_KEEP
    with sessions() as s, s.begin():
        # one second short of 30 days: nothing goes
        assert purge_deliveries(s, T0 + DELIVERY_KEEP - timedelta(seconds=1)) == 0
    with sessions() as s, s.begin():
        assert purge_deliveries(s, T0 + DELIVERY_KEEP) == 2
    assert [d.id for d in _deliveries(sessions)] == [recent_delivered, recent_failed, old_pending]
    with sessions() as s, s.begin():  # a shorter keep (the later [web] setting)
        assert purge_deliveries(s, T0 + timedelta(days=11), keep=timedelta(days=1)) == 2
    assert [d.id for d in _deliveries(sessions)] == [old_pending]
    with sessions() as s, pytest.raises(ValueError, match="aware"):
        purge_deliveries(s, datetime(2026, 4, 1))
    with sessions() as s, pytest.raises(ValueError, match="positive"):
        purge_deliveries(s, T0, keep=timedelta(0))


async def test_the_worker_purges_at_start_and_then_periodically(
    sessions: sessionmaker[Session],
) -> None:
    hook = _hook(sessions, "https://crm.example.invalid/hook")
    _finished(sessions, hook, "delivered", T0)
    second = _finished(sessions, hook, "failed", T0 + timedelta(days=20))
    clock = ManualClock(T0 + timedelta(days=31))
    worker = DeliveryWorker(sessions, poll_interval=0.02, clock=clock, purge_interval=0.2)
    async with Running(worker):
        await _until(lambda: [d.id for d in _deliveries(sessions)] == [second])
        clock.advance(timedelta(days=20).total_seconds())  # the second one is now 31 days old
        await _until(lambda: _deliveries(sessions) == [])


async def test_the_worker_purges_at_most_once_per_interval(
    sessions: sessionmaker[Session],
) -> None:
    hook = _hook(sessions, "https://crm.example.invalid/hook")
    clock = ManualClock(T0 + timedelta(days=31))
    worker = DeliveryWorker(sessions, poll_interval=0.02, clock=clock)  # hourly
    async with Running(worker):
        await asyncio.sleep(0.1)  # the purge at start has run
        _finished(sessions, hook, "delivered", T0)
        await asyncio.sleep(0.3)  # many polls, no second purge within the hour
        assert len(_deliveries(sessions)) == 1


# --------------------------------------------------------------------------- the hooks


def _campaign(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    """A running campaign with one contact; returns (campaign id, contact id, cc id)."""
    with sessions() as s, s.begin():
        clist = ContactList(name="crm list")
        s.add(clist)
        s.flush()
        c = Campaign(
            name="Spring offer",
            list_id=clist.id,
            caller_id="+33199000001",
            max_channels=2,
            cps=1.0,
            ring_timeout=20,
            retries=1,
            retry_delay=60,
            retry_outcomes=["busy"],
            amd={},
            status="running",
        )
        contact = Contact(
            list_id=clist.id,
            phone_e164="+33199000042",
            fields={"first_name": "Camille", "external_id": "CRM-42"},
            source_line=2,
        )
        s.add_all([c, contact])
        s.flush()
        cc = CampaignContact(
            campaign_id=c.id,
            contact_id=contact.id,
            phone_e164=contact.phone_e164,
            state="dialing",
            attempts=1,
        )
        s.add(cc)
        s.flush()
        return c.id, contact.id, cc.id


class _NoPbx:
    connected = True


def _dialer(sessions: sessionmaker[Session]) -> Dialer:
    plan = FlowPlan(message="/snd/m", voicemail_message="/snd/m")
    return Dialer(sessions, _NoPbx(), lambda c: plan, gate=GATE)  # type: ignore[arg-type]


def _attempt(sessions: sessionmaker[Session], cid: int, cc_id: int, aid: str) -> None:
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        s.get(CampaignContact, cc_id).last_attempt_id = aid  # type: ignore[union-attr]
        s.add(
            CallAttempt(
                id=aid,
                campaign_id=cid,
                campaign_contact_id=cc_id,
                number="+33199000042",
                attempt_no=1,
                state="answered",
                created_at=now - timedelta(seconds=30),
                originate_sent_at=now - timedelta(seconds=30),
                answered_at=now - timedelta(seconds=20),
                amd_status="HUMAN",
                amd_cause="HUMAN-800-800",
            )
        )


def _tracker(dialer: Dialer, cid: int, cc_id: int, aid: str) -> Tracker:
    rt = CampaignRuntime(
        campaign_id=cid,
        name="Spring offer",
        caller_id="+33199000001",
        max_channels=2,
        ring_timeout=20,
        retries=1,
        retry_delay=60,
        retry_outcomes=["busy"],
        plan=FlowPlan(message="/snd/m", voicemail_message="/snd/m"),
        cps=1.0,
        rules=None,  # type: ignore[arg-type]
    )
    t = Tracker(aid, rt, cc_id, "+33199000042")
    t.causes = [16]
    t.cause_text = "Normal Clearing"
    t.reason = 4
    t.report = FlowReport(amd_status="HUMAN", amd_cause="HUMAN-800-800")
    t.report.scenario.result = "interested"
    dialer.trackers[aid] = t
    return t


def test_a_finished_attempt_queues_attempt_completed_in_its_transaction(
    sessions: sessionmaker[Session],
) -> None:
    cid, contact_id, cc_id = _campaign(sessions)
    with sessions() as s, s.begin():
        create_webhook(s, "https://crm.example.org/hook", ["attempt.completed"], secret=SECRET)
        create_webhook(s, "https://crm.example.org/optouts", ["optout.created"], secret=SECRET)
    _attempt(sessions, cid, cc_id, "a" * 32)
    dialer = _dialer(sessions)
    dialer._finish(_tracker(dialer, cid, cc_id, "a" * 32), Outcome.HUMAN, None)
    (d,) = _deliveries(sessions)  # only the subscribed receiver
    assert d.event_type == "attempt.completed" and d.status == "pending"
    data = d.payload["data"]
    assert data["attempt_id"] == "a" * 32
    assert (data["campaign"], data["campaign_id"]) == ("Spring offer", cid)
    assert (data["number"], data["attempt_no"], data["outcome"]) == ("+33199000042", 1, "human")
    assert data["final"] is True  # human is never retried: the contact is done
    assert data["amd"] == {"status": "HUMAN", "cause": "HUMAN-800-800"}
    assert (data["hangup_cause"], data["hangup_cause_text"]) == (16, "Normal Clearing")
    assert data["answered_at"] and data["ended_at"] and data["originate_sent_at"]
    assert data["result"] == "interested"
    assert data["contact"]["id"] == contact_id and data["contact"]["external_id"] == "CRM-42"
    assert data["contact"]["fields"]["first_name"] == "Camille"
    assert data["contact"]["source_line"] == 2
    with sessions() as s:
        attempt = s.get(CallAttempt, "a" * 32)
        assert attempt is not None and attempt.outcome == "human"


def test_an_attempt_never_sent_queues_nothing_and_no_webhook_costs_nothing(
    sessions: sessionmaker[Session],
) -> None:
    cid, _, cc_id = _campaign(sessions)
    _attempt(sessions, cid, cc_id, "b" * 32)
    dialer = _dialer(sessions)
    dialer._finish(_tracker(dialer, cid, cc_id, "b" * 32), Outcome.HUMAN, None)
    assert _deliveries(sessions) == []  # no webhook configured
    with sessions() as s, s.begin():
        create_webhook(s, "https://crm.example.org/hook", ["attempt.completed"], secret=SECRET)
        s.get(CampaignContact, cc_id).state = "dialing"  # type: ignore[union-attr]
    _attempt(sessions, cid, cc_id, "c" * 32)
    dialer._finish(_tracker(dialer, cid, cc_id, "c" * 32), Outcome.FAILED, "x", not_sent=True)
    assert _deliveries(sessions) == []


def test_an_interrupted_attempt_closed_at_recovery_queues_attempt_completed(
    sessions: sessionmaker[Session],
) -> None:
    cid, _, cc_id = _campaign(sessions)
    with sessions() as s, s.begin():
        create_webhook(s, "https://crm.example.org/hook", ["attempt.completed"], secret=SECRET)
    _attempt(sessions, cid, cc_id, "d" * 32)
    _dialer(sessions)._close_interrupted("d" * 32)
    (d,) = _deliveries(sessions)
    data = d.payload["data"]
    assert data["outcome"] == "human" and data["final"] is True
    assert data["error"].startswith("interrupted")


def test_a_new_opt_out_queues_optout_created_once(sessions: sessionmaker[Session]) -> None:
    cid, _, _ = _campaign(sessions)
    with sessions() as s, s.begin():
        create_webhook(s, "https://crm.example.org/optouts", ["optout.created"], secret=SECRET)
    at = datetime.now(UTC) - timedelta(minutes=5)
    for _ in range(2):  # the repeat is not a new opt-out
        with sessions() as s, s.begin():
            add_opt_out(s, GATE.key, "+33199000042", source="key-press", at=at, campaign_id=cid)
    with sessions() as s, s.begin():  # an earlier request only moves the record back
        add_opt_out(s, GATE.key, "+33199000042", source="cli", at=at - timedelta(days=1))
    (d,) = _deliveries(sessions)
    assert d.event_type == "optout.created"
    assert d.payload["data"] == {
        "number": "+33199000042",
        "source": "key-press",
        "recorded_at": at.isoformat(timespec="seconds"),
        "campaign_id": cid,
        "campaign": "Spring offer",
    }
    with sessions() as s, s.begin():
        add_opt_out(s, GATE.key, "+33199000043", source="cli", at=at)
    assert [d.payload["data"]["number"] for d in _deliveries(sessions)] == [
        "+33199000042",
        "+33199000043",
    ]
