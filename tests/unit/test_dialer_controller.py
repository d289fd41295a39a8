"""The controller's logic against a fake PBX: pacing, retries, failures, recovery, lease."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.campaigns.compliance import GateEnv
from voicecast.clock import Clock, ManualClock, ShiftedClock
from voicecast.compliance.consent import record_consent
from voicecast.compliance.suppression import (
    add_opt_out,
    import_opposition_list,
    opt_out_record,
    opted_out,
)
from voicecast.config import ComplianceSettings
from voicecast.dialer import controller as controller_module
from voicecast.dialer.controller import (
    LEASE_TIMEOUT,
    Dialer,
    LeaseHeld,
    acquire_lease,
    lease_holder,
)
from voicecast.dialer.flow import Answerer, FlowPlan, FlowReport
from voicecast.errors import ConfigError
from voicecast.pbx.base import (
    AmdParams,
    CallFlowHandler,
    ChannelInfo,
    OriginateRejected,
    OriginateRequest,
    PbxListener,
    PbxUnavailable,
    PlayResult,
)
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import (
    AudioMessage,
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    ControllerLease,
    GateDecision,
    JournalEntry,
    OppositionList,
    Webhook,
    WebhookDelivery,
    utcnow,
)

PARIS = ZoneInfo("Europe/Paris")
EPOCH = datetime(2020, 1, 1, tzinfo=ZoneInfo("UTC"))
GATE = GateEnv.build(b"k" * 32, ComplianceSettings())


PRESSES_9: set[str] = set()  # attempt ids whose callee presses 9 during the message


class FakeCall:
    def __init__(self, attempt_id: str, amd: tuple[str, str]) -> None:
        self.attempt_id = attempt_id
        self._amd = amd
        self.hung_up = False
        self.played: list[str] = []

    async def detect_machine(self, params: AmdParams) -> tuple[str, str]:
        await asyncio.sleep(0.01)
        return self._amd

    async def wait_for_beep(
        self, silence_ms: int, resume_s: float, timeout: float, beep_hz: int = 1000
    ) -> str:
        return "beep"

    async def sound_exists(self, sound: str) -> bool:
        return True

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        self.played.append(sound)
        await asyncio.sleep(0.05)
        if self.attempt_id in PRESSES_9 and "9" in escape_digits:  # like sim-pstn digit 1
            return PlayResult(400, False, "9")
        return PlayResult(1000, True)

    async def hangup(self) -> None:
        self.hung_up = True


@dataclass
class FakePbx:
    """Behaves by last digit like the sandbox's simulated network, in milliseconds."""

    call_seconds: float = 0.1
    unavailable_first: int = 0
    reject: bool = False
    #: numbers ending with one of these digits: the call fails at the PBX (no route, as a
    #: trunk that is down: OriginateResponse Reason 0, no callee cause)
    no_route_digits: str = ""
    start_failures: int = 0  # PBX unreachable at the first N starts
    connected: bool = True
    originates: list[tuple[float, OriginateRequest]] = field(default_factory=list)
    up: set[str] = field(default_factory=set)
    peak: int = 0
    hangups: list[str] = field(default_factory=list)
    listener: PbxListener | None = None
    flow: CallFlowHandler | None = None

    async def start(self, listener: PbxListener, flow: CallFlowHandler) -> None:
        if self.start_failures > 0:
            self.start_failures -= 1
            raise PbxUnavailable("cannot connect to AMI at 127.0.0.1:5038 (test)")
        self.listener, self.flow = listener, flow
        listener.on_connection(True)

    async def stop(self, *, grace: float = 0.0) -> None:
        return None

    async def originate(self, request: OriginateRequest) -> None:
        if self.unavailable_first > 0:
            self.unavailable_first -= 1
            raise PbxUnavailable("AMI down (test)")
        if self.reject:
            raise OriginateRejected("Asterisk refused the Originate: Extension does not exist")
        self.originates.append((time.monotonic(), request))
        self.up.add(request.attempt_id)
        self.peak = max(self.peak, len(self.up))
        asyncio.get_running_loop().create_task(self._simulate(request))

    async def _simulate(self, req: OriginateRequest) -> None:
        assert self.listener is not None and self.flow is not None
        digit = req.number[-1]
        await asyncio.sleep(0.02)
        if digit in self.no_route_digits:
            self.up.discard(req.attempt_id)
            self.listener.on_originate_result(req.attempt_id, False, 0)
            self.listener.on_hangup(req.attempt_id, 0, "", True)
            return
        if digit == "3":
            self.listener.on_originate_result(req.attempt_id, False, 5)
            self.listener.on_hangup(req.attempt_id, 17, "User busy", False)
        elif digit == "6":
            self.listener.on_originate_result(req.attempt_id, False, 0)
        elif digit == "5":  # congestion through a Local channel, ";2" reported late
            self.listener.on_originate_result(req.attempt_id, False, 8)
            self.up.discard(req.attempt_id)
            self.listener.on_hangup(req.attempt_id, 0, "Unknown", True)
            await asyncio.sleep(0.3)
            self.listener.on_hangup(req.attempt_id, 34, "Circuit/channel congestion", False)
            return
        else:
            self.listener.on_originate_result(req.attempt_id, True, 4)
            await self.flow(FakeCall(req.attempt_id, ("HUMAN", "HUMAN-800-800")))
            await asyncio.sleep(self.call_seconds)
        self.up.discard(req.attempt_id)
        cause = {"3": 0, "6": 1}.get(digit, 16)
        self.listener.on_hangup(req.attempt_id, cause, "", True)

    async def list_channels(self) -> list[ChannelInfo]:
        return [ChannelInfo(f"Local/x-{a};1", a, "Up", a) for a in self.up]

    async def hangup(self, attempt_id: str, cause: int = 16) -> None:
        self.hangups.append(attempt_id)
        self.up.discard(attempt_id)


def _plan(c: Campaign) -> FlowPlan:
    return FlowPlan(message="/snd/msg", voicemail_message="/snd/msg", optout_key=c.optout_key)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(engine)
    return session_factory(engine)


def _campaign(sessions: sessionmaker[Session], numbers: list[str], **kw: Any) -> str:
    with sessions() as s, s.begin():
        clist = ContactList(name="l")
        audio = AudioMessage(
            name="m", file_name="m.wav", sha256="0" * 64, duration_ms=1000, source_name="m.wav"
        )
        s.add_all([clist, audio])
        s.flush()
        c = Campaign(
            name="c",
            list_id=clist.id,
            message_id=audio.id,
            caller_id="+33162000000",
            max_channels=kw.get("max_channels", 5),
            cps=kw.get("cps", 100.0),
            ring_timeout=10,
            retries=kw.get("retries", 0),
            retry_delay=kw.get("retry_delay", 0.0),
            retry_outcomes=["busy", "no_answer", "congestion"],
            amd={},
            status="running",
            purpose=kw.get("purpose", "informational"),
            audience=kw.get("audience", "b2c"),
            sender_name="Test Sender",
            on_behalf_of="Test Sender",
            optout_key="9",
            legal_basis=kw.get("legal_basis", "contract"),
        )
        s.add(c)
        s.flush()
        for i, n in enumerate(numbers):
            contact = Contact(list_id=clist.id, phone_e164=n, fields={}, source_line=i + 2)
            s.add(contact)
            s.flush()
            s.add(
                CampaignContact(
                    campaign_id=c.id,
                    contact_id=contact.id,
                    phone_e164=n,
                    state="pending",
                    next_attempt_at=EPOCH,  # due whatever the test's clock says
                )
            )
    return "c"


def _run(
    sessions: sessionmaker[Session],
    pbx: FakePbx,
    before: Callable[[Dialer], None] | None = None,
    clock: Clock | None = None,
    alert_after: int = 5,
) -> Dialer:
    async def main() -> Dialer:
        dialer = Dialer(
            sessions,
            pbx,  # type: ignore[arg-type]
            _plan,
            gate=GATE,
            clock=clock,
            alert_after=alert_after,
        )
        if before:
            before(dialer)
        await dialer.start()
        await asyncio.wait_for(dialer.run(["c"]), 30)
        await dialer.stop()
        return dialer

    return asyncio.run(main())


def _attempts(sessions: sessionmaker[Session]) -> list[CallAttempt]:
    with sessions() as s:
        return list(s.scalars(select(CallAttempt).order_by(CallAttempt.created_at)))


def test_every_contact_gets_an_outcome_and_the_campaign_completes(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010", "+33199000013", "+33199000016"])
    _run(sessions, FakePbx())
    outcomes = {a.number: a.outcome for a in _attempts(sessions)}
    assert outcomes == {
        "+33199000010": "human",
        "+33199000013": "busy",
        "+33199000016": "invalid_number",
    }
    with sessions() as s:
        assert s.scalar(select(Campaign.status)) == "completed"
        assert {c.state for c in s.scalars(select(CampaignContact))} == {"done"}
    human = next(a for a in _attempts(sessions) if a.outcome == "human")
    assert human.amd_status == "HUMAN" and human.played[0]["completed"] is True
    assert human.originate_sent_at is not None and human.answered_at is not None


@pytest.mark.parametrize(
    ("opted_out", "ended_by", "transferred", "expected"),
    [
        (True, "hangup", False, ("opted_out", None)),
        # the number is suppressed already: the outcome says so, the note says what failed
        (True, "missing", False, ("opted_out", "the opt-out confirmation is missing on the PBX")),
        (False, "missing", False, ("failed", "a sound of the scenario is missing on the PBX")),
        (False, "transferred", True, ("transferred", None)),
    ],
)
def test_answered_outcome_of_a_scenario(
    opted_out: bool, ended_by: str, transferred: bool, expected: tuple[str, str | None]
) -> None:
    report = FlowReport(answerer=Answerer.HUMAN, opted_out=opted_out)
    report.scenario.ended_by = ended_by  # type: ignore[assignment]
    report.scenario.transferred = transferred
    tracker = SimpleNamespace(report=report, flow_started=True)
    outcome, note = Dialer._answered_outcome(tracker)  # type: ignore[arg-type]
    assert (outcome.value, note) == expected


def test_a_campaign_whose_plan_cannot_be_built_is_paused_with_the_reason(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010"])

    def broken(c: Campaign) -> FlowPlan:
        raise ConfigError(f"campaign {c.name}: its message audio was deleted")

    async def main() -> None:
        dialer = Dialer(sessions, FakePbx(), broken, gate=GATE)  # type: ignore[arg-type]
        await dialer.start()
        await asyncio.wait_for(dialer.run(["c"]), 30)  # returns: the campaign no longer runs
        await dialer.stop()

    asyncio.run(main())
    with sessions() as s:
        c = s.scalars(select(Campaign)).one()
        assert c.status == "paused"
        assert c.status_reason == "cannot run: campaign c: its message audio was deleted"
    assert _attempts(sessions) == []


def test_the_q850_cause_of_a_late_second_leg_is_kept(sessions: sessionmaker[Session]) -> None:
    # a Local channel's ";1" half ends with cause 0, its ";2" half carries the callee's 34,
    # and AMI may deliver the ";2" Hangup after the ";1" one (seen in CI)
    _campaign(sessions, ["+33199000015"])
    _run(sessions, FakePbx())
    (attempt,) = _attempts(sessions)
    assert (attempt.outcome, attempt.hangup_cause) == ("congestion", 34)
    assert attempt.hangup_cause_text == "Circuit/channel congestion"


def test_channel_limit_is_never_exceeded(sessions: sessionmaker[Session]) -> None:
    _campaign(sessions, [f"+3319900{i:03d}0" for i in range(20)], max_channels=3)
    pbx = FakePbx(call_seconds=0.1)
    _run(sessions, pbx)
    assert pbx.peak == 3
    assert len(pbx.originates) == 20


def test_cps_spaces_originates(sessions: sessionmaker[Session]) -> None:
    _campaign(sessions, [f"+3319900{i:03d}3" for i in range(6)], cps=10.0, max_channels=50)
    pbx = FakePbx()
    _run(sessions, pbx)
    times = [t for t, _ in pbx.originates]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.1 - 0.005
    # and no drift: a late wake-up is not carried into the next slots (the target rate)
    assert times[-1] - times[0] <= 0.5 + 0.03


def test_retry_waits_its_delay_and_stops_after_the_last_retry(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000013"], retries=2, retry_delay=0.5)
    _run(sessions, FakePbx())
    attempts = _attempts(sessions)
    assert [a.attempt_no for a in attempts] == [1, 2, 3]
    for before, after in itertools.pairwise(attempts):
        assert before.ended_at and after.originate_sent_at
        gap = (after.originate_sent_at - before.ended_at).total_seconds()
        assert 0.5 <= gap < 1.5


def test_an_originate_that_could_not_be_sent_is_recorded_and_not_counted(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010"])
    _run(sessions, FakePbx(unavailable_first=1))
    first, second = _attempts(sessions)
    assert first.outcome == "failed" and first.error and "not sent" in first.error
    assert first.originate_sent_at is None
    assert second.outcome == "human" and second.attempt_no == 1


def test_a_refused_originate_fails_with_asterisks_reason(sessions: sessionmaker[Session]) -> None:
    _campaign(sessions, ["+33199000010"], retries=3)
    _run(sessions, FakePbx(reject=True))
    (attempt,) = _attempts(sessions)
    assert attempt.outcome == "failed"
    assert attempt.error == "Asterisk refused the Originate: Extension does not exist"


def _status(sessions: sessionmaker[Session]) -> tuple[str, str | None]:
    with sessions() as s:
        c = s.scalars(select(Campaign)).one()
        return c.status, c.status_reason


def _resume(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        c = s.scalars(select(Campaign)).one()
        c.status, c.status_reason = "running", None


def test_calls_failing_at_the_pbx_pause_the_campaign_with_an_alert_and_are_dialled_on_resume(
    sessions: sessionmaker[Session],
) -> None:
    numbers = [f"+3319900001{i}" for i in range(8)]
    _campaign(sessions, numbers, max_channels=1)
    with sessions() as s, s.begin():
        hook = Webhook(url="http://127.0.0.1:9/h", secret="s" * 32, events=["campaign.alert"])
        s.add(hook)
    pbx = FakePbx(reject=True)
    _run(sessions, pbx, alert_after=5)
    status, reason = _status(sessions)
    assert status == "paused"
    assert reason is not None and reason.startswith("alert: the last 5 call(s) all failed")
    assert "Extension does not exist" in reason
    failed = _attempts(sessions)
    assert len(failed) == 5 and {a.outcome for a in failed} == {"failed"}
    assert all(a.error and "Asterisk refused the Originate" in a.error for a in failed)
    with sessions() as s:
        states = {c.phone_e164: c.state for c in s.scalars(select(CampaignContact))}
        assert set(states.values()) == {"pending"}  # the five requeued, three never dialled
        (delivery,) = s.scalars(select(WebhookDelivery)).all()
        assert delivery.event_type == "campaign.alert"
        assert delivery.payload["data"]["requeued"] == 5
        assert sorted(delivery.payload["data"]["failed_attempts"]) == sorted(a.id for a in failed)
        changes = [
            json.loads(e.data)
            for e in s.scalars(select(JournalEntry).where(JournalEntry.kind == "campaign.changed"))
        ]
        assert [c["action"] for c in changes] == ["paused"]
        assert changes[0]["reason"].startswith("alert: ")
    # the trunk is back: resuming dials every contact, the five a second time
    pbx.reject = False
    _resume(sessions)
    _run(sessions, pbx, alert_after=5)
    assert _status(sessions) == ("completed", None)
    attempts = _attempts(sessions)
    assert len(attempts) == 13
    by_number: dict[str, list[str]] = {}
    for a in attempts:
        by_number.setdefault(a.number, []).append(a.outcome or "")
    assert all(outcomes[-1] != "failed" for outcomes in by_number.values())
    assert sum(len(v) == 2 for v in by_number.values()) == 5


def test_an_unanswered_call_without_a_callee_state_fails_with_asterisks_reason(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010", "+33199000013"])
    _run(sessions, FakePbx(no_route_digits="0"))
    by_number = {a.number: a for a in _attempts(sessions)}
    failed = by_number["+33199000010"]
    assert failed.outcome == "failed"
    assert failed.error is not None and failed.error.startswith(
        "Asterisk could not place the call: OriginateResponse Reason 0 (the call could not "
        "be placed"
    )
    assert by_number["+33199000013"].outcome == "busy"  # a callee state: no alert
    assert _status(sessions) == ("completed", None)


@dataclass
class StoppingPbx(FakePbx):
    """A PBX being stopped (`core stop now`): the calls it is placing fail with Reason 0
    and no cause, as a dead trunk's would, then its AMI connection closes (and comes back
    a second later)."""

    stopped: bool = False

    async def _simulate(self, req: OriginateRequest) -> None:
        assert self.listener is not None
        await asyncio.sleep(0.02)
        self.up.discard(req.attempt_id)
        self.listener.on_originate_result(req.attempt_id, False, 0)
        self.listener.on_hangup(req.attempt_id, 0, "", True)
        if not self.stopped:
            self.stopped = True
            await asyncio.sleep(0.3)
            self.connected = False
            self.listener.on_connection(False)
            await asyncio.sleep(1.0)
            self.connected = True
            self.listener.on_connection(True)


def test_calls_failed_by_a_pbx_stopping_are_not_a_trunk_alert_and_are_not_redialled(
    sessions: sessionmaker[Session],
) -> None:
    """The helper's trial: `voicecast sandbox down` during ringing calls failed them as
    "could not place", paused the campaign with the trunk alert, and its resume dialled
    people whose phones had rung a second time."""
    numbers = [f"+3319900001{i}" for i in range(6)]
    _campaign(sessions, numbers, max_channels=6, retries=2)
    _run(sessions, StoppingPbx(), alert_after=5)
    assert _status(sessions) == ("completed", None)  # no alert
    attempts = _attempts(sessions)
    assert sorted(a.number for a in attempts) == numbers  # each once: not re-dialled
    assert {a.outcome for a in attempts} == {"failed"}
    assert all(a.error and a.error.startswith("the PBX stopped while") for a in attempts)
    with sessions() as s:
        assert {c.state for c in s.scalars(select(CampaignContact))} == {"done"}


def test_a_campaign_whose_every_call_failed_at_the_pbx_ends_with_an_alert_not_completed(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010", "+33199000020"])  # fewer calls than alert_after
    _run(sessions, FakePbx(no_route_digits="0"), alert_after=5)
    status, reason = _status(sessions)
    assert status == "paused"
    assert reason is not None and reason.startswith("alert: the last 2 call(s)")
    with sessions() as s:
        assert {c.state for c in s.scalars(select(CampaignContact))} == {"pending"}


def test_failures_broken_by_a_call_that_reached_the_network_raise_no_alert(
    sessions: sessionmaker[Session],
) -> None:
    # four failures, a busy line, four failures: never five in a row
    numbers = [f"+331990000{i}0" for i in range(4)] + ["+33199000043"]
    numbers += [f"+331990001{i}0" for i in range(4)]
    _campaign(sessions, numbers, max_channels=1)
    _run(sessions, FakePbx(no_route_digits="0"), alert_after=5)
    assert _status(sessions) == ("completed", None)
    assert [a.outcome for a in _attempts(sessions)].count("failed") == 8


def test_a_number_that_is_not_dialable_never_reaches_the_pbx(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010\r\nAction: Originate"], retries=3)

    class CheckingPbx(FakePbx):
        async def originate(self, request: OriginateRequest) -> None:
            from voicecast.pbx.validation import build_dial_string

            build_dial_string("Local/{number}@sim-pstn", request.number)
            await super().originate(request)

    pbx = CheckingPbx()
    _run(sessions, pbx)
    # the compliance gate refuses it before any attempt (and the PBX layer would too)
    assert _attempts(sessions) == []
    with sessions() as s:
        cc = s.scalars(select(CampaignContact)).one()
    assert (cc.state, cc.outcome, cc.gate_reason) == ("done", "blocked", "invalid_number")
    assert pbx.originates == []


def test_recovery_closes_what_a_killed_controller_left_without_redialling(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010", "+33199000020"])
    with sessions() as s, s.begin():
        ccs = list(s.scalars(select(CampaignContact).order_by(CampaignContact.id)))
        for cc, (aid, amd) in zip(ccs, [("a" * 32, "HUMAN"), ("b" * 32, None)], strict=True):
            cc.state, cc.attempts, cc.last_attempt_id = "dialing", 1, aid
            s.add(
                CallAttempt(
                    id=aid,
                    campaign_id=cc.campaign_id,
                    campaign_contact_id=cc.id,
                    number=cc.phone_e164,
                    attempt_no=1,
                    state="answered" if amd else "originating",
                    originate_sent_at=utcnow(),
                    amd_status=amd,
                    amd_cause="HUMAN-800-800" if amd else None,
                )
            )
    pbx = FakePbx()
    pbx.up.add("b" * 32)  # still ringing on the PBX
    _run(sessions, pbx)
    attempts = {a.id: a for a in _attempts(sessions)}
    assert attempts["a" * 32].outcome == "human"
    assert attempts["b" * 32].outcome == "failed"
    assert all((a.error or "").startswith("interrupted") for a in attempts.values())
    assert pbx.hangups == ["b" * 32]
    assert pbx.originates == []  # nobody is called again


def test_lease(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        acquire_lease(s, "one")
        assert lease_holder(s) == "one"
        with pytest.raises(LeaseHeld):
            acquire_lease(s, "two")
        lease = s.get(ControllerLease, 1)
        assert lease is not None
        lease.heartbeat_at = utcnow() - LEASE_TIMEOUT - timedelta(seconds=1)
        s.commit()
        acquire_lease(s, "two")  # stale heartbeat: taken over
        lease.pid = 2**22 + 12345  # a process that does not exist on this host
        lease.heartbeat_at = utcnow()
        s.commit()
        assert lease_holder(s) is None
        acquire_lease(s, "three")
        assert lease_holder(s) == "three"
        assert lease.pid == os.getpid()


def test_pausing_lets_calls_in_progress_finish_and_dials_no_more(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, [f"+3319900{i:03d}0" for i in range(6)], max_channels=2)
    pbx = FakePbx(call_seconds=0.5)

    async def main() -> None:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE)  # type: ignore[arg-type]
        await dialer.start()
        runner = asyncio.create_task(dialer.run(["c"]))
        while len(pbx.originates) < 2:
            await asyncio.sleep(0.01)
        with sessions() as s, s.begin():
            campaign = s.scalar(select(Campaign))
            assert campaign is not None
            campaign.status = "paused"
        await asyncio.wait_for(runner, 10)
        await dialer.stop()

    asyncio.run(main())
    attempts = _attempts(sessions)
    assert len(attempts) == 2 and all(a.outcome == "human" for a in attempts)
    with sessions() as s:
        states = sorted(c.state for c in s.scalars(select(CampaignContact)))
    assert states == ["done", "done", "pending", "pending", "pending", "pending"]


def test_waiting_for_a_free_channel_does_not_spin(sessions: sessionmaker[Session]) -> None:
    _campaign(sessions, [f"+3319900{i:03d}0" for i in range(3)], max_channels=1)
    opened = 0

    def counting() -> Session:
        nonlocal opened
        opened += 1
        return sessions()

    _run(counting, FakePbx(call_seconds=1.0))  # type: ignore[arg-type]
    # ~3 s of saturated channels: a handful of queries per call, not thousands
    assert opened < 100, f"{opened} database sessions opened while waiting"


def test_a_pbx_shutting_down_keeps_the_contact_for_later(sessions: sessionmaker[Session]) -> None:
    _campaign(sessions, ["+33199000010"])

    class ShuttingDownOnce(FakePbx):
        refused = False

        async def originate(self, request: OriginateRequest) -> None:
            if not self.refused:
                self.refused = True
                assert self.listener is not None
                asyncio.get_running_loop().call_later(0.2, self.listener.on_connection, True)
                raise OriginateRejected("Asterisk refused the Originate: Asterisk is shutting down")
            await super().originate(request)

    _run(sessions, ShuttingDownOnce())
    first, second = _attempts(sessions)
    assert first.outcome == "failed" and "not sent" in (first.error or "")
    assert second.outcome == "human" and second.attempt_no == 1


# --- the compliance gate at dial time ----------------------------------------------------------


def _wait_until(
    sessions: sessionmaker[Session],
    pbx: FakePbx,
    done: Callable[[Session], bool],
    clock: Clock | None = None,
    timeout: float = 20.0,
) -> None:
    """Run the dialer until ``done(session)`` holds (campaigns that stay deferred never end)."""

    async def main() -> None:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE, clock=clock)  # type: ignore[arg-type]
        await dialer.start()
        runner = asyncio.create_task(dialer.run(["c"]))
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with sessions() as s:
                    if done(s):
                        return
                await asyncio.sleep(0.05)
            raise AssertionError("condition not reached")
        finally:
            await dialer.stop()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    asyncio.run(main())


def _consent_all(s: Session, numbers: list[str], at: datetime) -> None:
    """A marketing consent for each number, recorded 3 days before ``at``."""
    for n in numbers:
        record_consent(
            s,
            phone=n,
            purpose="marketing",
            status="granted",
            recorded_at=at - timedelta(days=3),
            source="form",
            proof_ref=f"form-{n}",
            now=at,
        )


def _bloctel(s: Session, list_date: datetime) -> None:
    """A stored Bloctel copy dated ``list_date`` (no entries)."""
    s.add(
        OppositionList(
            name="bloctel",
            country="FR",
            list_date=list_date,
            imported_at=list_date,
            entries=0,
            invalid_lines=0,
            source_file="bloctel.txt",
            sha256="0" * 64,
        )
    )


def _cc(s: Session, number: str) -> CampaignContact:
    return s.scalars(select(CampaignContact).where(CampaignContact.phone_e164 == number)).one()


@pytest.mark.parametrize(
    ("friday", "expected"),
    [
        # an ordinary Friday: Monday 10:00 Paris
        (datetime(2026, 12, 4, 19, 59, 58, tzinfo=PARIS), datetime(2026, 12, 7, 10, tzinfo=PARIS)),
        # the Friday before Whit Monday 2027-05-17: Tuesday 10:00
        (datetime(2027, 5, 14, 19, 59, 58, tzinfo=PARIS), datetime(2027, 5, 18, 10, tzinfo=PARIS)),
    ],
)
def test_a_busy_retry_after_20h_on_friday_is_deferred_to_the_next_legal_instant(
    sessions: sessionmaker[Session], friday: datetime, expected: datetime
) -> None:
    busy = "+33199000013"
    _campaign(
        sessions,
        [busy],
        retries=2,
        retry_delay=2.5,
        purpose="marketing",
    )
    with sessions() as s, s.begin():
        _consent_all(s, [busy], friday)
        _bloctel(s, friday - timedelta(days=2))
    clock = ShiftedClock(friday)
    pbx = FakePbx()
    _wait_until(sessions, pbx, lambda s: _cc(s, busy).gate_verdict == "defer", clock)
    assert len(pbx.originates) == 1  # the first attempt at 19:59:58; the retry is not dialled
    with sessions() as s:
        cc = _cc(s, busy)
        assert (cc.state, cc.outcome, cc.gate_reason) == ("pending", "busy", "outside_hours")
        assert cc.next_attempt_at == expected
        decisions = s.scalars(select(GateDecision).order_by(GateDecision.id)).all()
        assert [(d.verdict, d.reason) for d in decisions] == [
            ("allow", "ok"),
            ("defer", "outside_hours"),
        ]
        assert decisions[0].attempt_id is not None
        assert decisions[1].until == expected and "D223-9" in decisions[1].rule_source


def test_only_lawful_numbers_are_dialled_and_every_decision_is_stored(
    sessions: sessionmaker[Session],
) -> None:
    consented, unconsented, opted, listed = (
        "+33199000100",
        "+33199000110",
        "+33199000120",
        "+33199000130",
    )
    pro = "+33199000140"
    now = datetime(
        2026, 11, 25, 11, tzinfo=PARIS
    )  # a Wednesday (in the past: stores refuse future instants)
    _campaign(sessions, [consented, unconsented, opted, listed, pro], purpose="marketing")
    key = GATE.key
    bloctel = Path(os.environ.get("TMPDIR", "/tmp")) / f"bloctel-{os.getpid()}.txt"
    bloctel.write_text(f"{listed}\n+33199000990\n")
    with sessions() as s, s.begin():
        for n in (consented, opted, listed):
            record_consent(
                s,
                phone=n,
                purpose="marketing",
                status="granted",
                recorded_at=now - timedelta(days=1),
                source="form",
                proof_ref=f"form-{n}",
                now=now,
            )
        add_opt_out(s, key, opted, source="cli", at=now - timedelta(hours=1))
        import_opposition_list(s, key, "bloctel", bloctel, as_of=None, now=now)
        s.get(Contact, 5).fields = {"professional": "oui"}  # type: ignore[union-attr]
    bloctel.unlink()
    pbx = FakePbx()
    _wait_until(
        sessions,
        pbx,
        lambda s: all(cc.state == "done" for cc in s.scalars(select(CampaignContact))),
        ManualClock(now),
    )
    assert [r.number for _, r in pbx.originates] == [consented]
    with sessions() as s:
        reasons = {n: _cc(s, n).gate_reason for n in (unconsented, opted, listed, pro)}
        assert _cc(s, opted).outcome == "blocked"
    assert reasons == {
        unconsented: "no_consent",
        opted: "opted_out",
        listed: "opposition_list",
        pro: "no_consent",  # a B2C campaign: being professional does not replace consent
    }


def test_a_stale_national_list_pauses_a_running_marketing_campaign(
    sessions: sessionmaker[Session],
) -> None:
    now = datetime(2026, 12, 2, 11, tzinfo=PARIS)
    _campaign(sessions, ["+33199000100"], purpose="marketing")
    with sessions() as s, s.begin():
        _bloctel(s, now - timedelta(days=31))
    pbx = FakePbx()
    _run(sessions, pbx, clock=ManualClock(now))
    assert pbx.originates == []
    with sessions() as s:
        c = s.scalars(select(Campaign)).one()
    assert c.status == "paused"
    assert "bloctel" in (c.status_reason or "") and "31 days old" in (c.status_reason or "")


def test_campaign_past_its_end_date_completes_without_dialling(
    sessions: sessionmaker[Session],
) -> None:
    now = datetime(2026, 12, 2, 11, tzinfo=PARIS)
    _campaign(sessions, ["+33199000100"])
    with sessions() as s, s.begin():
        s.scalars(select(Campaign)).one().ends_at = now - timedelta(minutes=1)
    pbx = FakePbx()
    _run(sessions, pbx, clock=ManualClock(now))
    assert pbx.originates == []
    with sessions() as s:
        c = s.scalars(select(Campaign)).one()
    assert (c.status, c.status_reason) == ("completed", "end date reached")


def test_a_window_closing_mid_run_defers_the_rest_and_resumes_at_the_next_legal_instant(
    sessions: sessionmaker[Session],
) -> None:
    numbers = [f"+331990002{i}0" for i in range(6)]  # all answered by a person (last digit 0)
    _campaign(sessions, numbers, purpose="marketing", max_channels=1, cps=100.0)
    friday = datetime(2026, 11, 20, 19, 59, 59, tzinfo=PARIS)
    monday = datetime(2026, 11, 23, 10, 0, tzinfo=PARIS)
    clock = ManualClock(friday)
    with sessions() as s, s.begin():
        _consent_all(s, numbers, friday)
        _bloctel(s, friday - timedelta(days=1))

    class TickingPbx(FakePbx):
        async def originate(self, request: OriginateRequest) -> None:
            await super().originate(request)
            clock.advance(1.0)  # each call takes the clock one second further

    pbx = TickingPbx()

    async def main() -> None:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE, clock=clock)  # type: ignore[arg-type]
        await dialer.start()
        runner = asyncio.create_task(dialer.run(["c"]))
        try:
            for _ in range(200):  # the one call before 20:00, then everyone else deferred
                with sessions() as s:
                    ccs = s.scalars(select(CampaignContact)).all()
                if sum(cc.gate_verdict == "defer" for cc in ccs) == 5:
                    break
                await asyncio.sleep(0.05)
            assert len(pbx.originates) == 1
            assert all(cc.next_attempt_at == monday for cc in ccs if cc.gate_verdict == "defer")
            clock.set(monday)  # the weekend passes
            await asyncio.wait_for(runner, 30)
        finally:
            await dialer.stop()

    asyncio.run(main())
    assert sorted(r.number for _, r in pbx.originates) == sorted(numbers)  # nobody lost
    with sessions() as s:
        ccs = s.scalars(select(CampaignContact)).all()
        campaign = s.scalars(select(Campaign)).one()
    assert {cc.outcome for cc in ccs} == {"human"}
    assert all(cc.attempts == 1 for cc in ccs)
    assert campaign.status == "completed"


def test_the_opt_out_key_suppresses_the_number_everywhere_at_once(
    sessions: sessionmaker[Session],
) -> None:
    leaving, staying = "+33199000011", "+33199000010"
    _campaign(sessions, [leaving, staying])
    with sessions() as s, s.begin():
        s.scalars(select(Campaign)).one().optout_key = "9"

    class PressingPbx(FakePbx):
        async def originate(self, request: OriginateRequest) -> None:
            if request.number == leaving:
                PRESSES_9.add(request.attempt_id)
            await super().originate(request)

    _run(sessions, PressingPbx())
    with sessions() as s:
        assert _cc(s, leaving).outcome == "opted_out"
        assert _cc(s, staying).outcome == "human"
        assert opted_out(s, GATE.key, [leaving, staying]) == {leaving}
        record = opt_out_record(s, GATE.key, leaving)
        assert record is not None and record.source == "key-press"
        (attempt,) = s.scalars(select(CallAttempt).where(CallAttempt.number == leaving)).all()
        assert attempt.outcome == "opted_out" and attempt.played[0]["digit"] == "9"


def test_stopping_before_the_originate_goes_out_keeps_the_contact_for_later(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM between the attempt's row and its Originate: nothing was sent, so the
    attempt is recorded as not sent and its contact waits for the next run."""
    _campaign(sessions, ["+33199000010", "+33199000020"])
    slots = 0
    blocked = asyncio.Event()

    async def second_dial_waits(self: Dialer, route: object) -> None:
        nonlocal slots
        slots += 1
        if slots > 1:
            blocked.set()
            await asyncio.sleep(3600)

    monkeypatch.setattr(Dialer, "_wait_slot", second_dial_waits)
    pbx = FakePbx(call_seconds=0.2)

    async def main() -> None:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE)  # type: ignore[arg-type]
        await dialer.start()
        runner = asyncio.create_task(dialer.run(["c"]))
        await asyncio.wait_for(blocked.wait(), 10)
        await dialer.stop(grace=5.0)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    asyncio.run(main())
    assert len(pbx.originates) == 1
    by_number = {a.number: a for a in _attempts(sessions)}
    sent = pbx.originates[0][1].number
    (held,) = [a for n, a in by_number.items() if n != sent]
    assert held.state == "ended" and held.outcome == "failed"
    assert held.error == "not sent: the dialer stopped before sending it"
    assert held.originate_sent_at is None
    with sessions() as s:
        cc = s.scalars(
            select(CampaignContact).where(CampaignContact.phone_e164 == held.number)
        ).one()
        assert (cc.state, cc.attempts) == ("pending", 0)


def test_calls_in_flight_when_the_alert_pauses_the_campaign_are_requeued_too(
    sessions: sessionmaker[Session],
) -> None:
    """Ten calls at once, all failing at the PBX: the alert comes at the fifth, the five
    still in flight fail after it. None of the fifteen contacts is left done: every one is
    dialled again on resume. And nothing is originated once the pause is stored."""
    _campaign(sessions, [f"+3319900{i:03d}0" for i in range(15)], max_channels=10)
    pbx = FakePbx(no_route_digits="0")
    _run(sessions, pbx, alert_after=5)
    assert _status(sessions)[0] == "paused"
    attempts = _attempts(sessions)
    assert {a.outcome for a in attempts} == {"failed"}
    with sessions() as s:
        assert {c.state for c in s.scalars(select(CampaignContact))} == {"pending"}
        paused_at = s.scalars(
            select(JournalEntry.at).where(JournalEntry.kind == "campaign.changed")
        ).one()
    assert len(pbx.originates) == len(attempts) < 15
    assert all(a.created_at <= paused_at for a in attempts)
    pbx.no_route_digits = ""
    _resume(sessions)
    _run(sessions, pbx, alert_after=5)
    assert _status(sessions) == ("completed", None)
    with sessions() as s:
        assert {c.outcome for c in s.scalars(select(CampaignContact))} == {"human"}


def test_a_pbx_unreachable_at_start_up_is_waited_for_when_asked(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``voicecast serve`` at boot, before Asterisk: it keeps trying, then dials."""
    monkeypatch.setattr(controller_module, "PBX_START_DELAYS", (0.01,))
    _campaign(sessions, ["+33199000010"])
    pbx = FakePbx(start_failures=3)

    async def main() -> None:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE)  # type: ignore[arg-type]
        with pytest.raises(PbxUnavailable):  # without waiting: the error at once
            await dialer.start()
        assert await dialer.start(wait_for_pbx=True) is True
        await asyncio.wait_for(dialer.run(["c"]), 30)
        await dialer.stop()

    asyncio.run(main())
    assert pbx.start_failures == 0
    assert [a.outcome for a in _attempts(sessions)] == ["human"]


def test_waiting_for_the_pbx_at_start_up_can_be_aborted(sessions: sessionmaker[Session]) -> None:
    _campaign(sessions, ["+33199000010"])
    pbx = FakePbx(start_failures=10**6)

    async def main() -> bool:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE)  # type: ignore[arg-type]
        starting = asyncio.create_task(dialer.start(wait_for_pbx=True))
        await asyncio.sleep(0.1)
        dialer.abort_start()
        started = await asyncio.wait_for(starting, 5)
        await dialer.stop()
        return started

    assert asyncio.run(main()) is False
    with sessions() as s:
        assert lease_holder(s) is None  # released: another controller may start at once
    assert _attempts(sessions) == []
