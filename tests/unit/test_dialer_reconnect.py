"""The controller across PBX connection losses and restarts (fake PBX, no timing asserts).

The end-to-end versions against the sandbox Asterisk are in ``tests/e2e/test_faults.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_dialer_controller import (  # the fake PBX and helpers of the controller tests
    EPOCH,
    GATE,
    FakeCall,
    FakePbx,
    _attempts,
    _campaign,
    _plan,
    _run,
    sessions,
)

from voicecast.dialer.controller import Dialer
from voicecast.pbx.base import ChannelInfo, OriginateRequest, PbxUnavailable
from voicecast.storage.models import CallAttempt, Campaign, CampaignContact, Contact, utcnow

__all__ = ["sessions"]  # the fixture, re-exported for pytest


class LossPbx(FakePbx):
    """Calls to numbers ending in 0 are answered and stay up until :meth:`end`; the
    channel listing can be held (its snapshot taken at the call, like Asterisk's)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: set[str] = set()
        self.hold_listing: asyncio.Event | None = None
        self.run_flow = True  # False: answered, but the call flow never reaches voicecast

    async def originate(self, request: OriginateRequest) -> None:
        if not self.connected:
            raise PbxUnavailable("AMI down (test)")
        self.originates.append((0.0, request))
        self.up.add(request.attempt_id)
        asyncio.get_running_loop().create_task(self._answer(request))

    async def _answer(self, req: OriginateRequest) -> None:
        assert self.listener is not None and self.flow is not None
        await asyncio.sleep(0.01)
        self.listener.on_originate_result(req.attempt_id, True, 4)
        if self.run_flow:
            await self.flow(FakeCall(req.attempt_id, ("HUMAN", "HUMAN-800-800")))
        self.answered.add(req.attempt_id)

    def end(self, attempt_id: str, *, seen: bool = True) -> None:
        """The call ends; ``seen``: its Hangup event reaches the controller."""
        self.up.discard(attempt_id)
        if seen and self.listener is not None:
            self.listener.on_hangup(attempt_id, 16, "Normal Clearing", True)

    def drop(self) -> None:
        self.connected = False
        assert self.listener is not None
        self.listener.on_connection(False)

    def back(self) -> None:
        self.connected = True
        assert self.listener is not None
        self.listener.on_connection(True)

    async def list_channels(self) -> list[ChannelInfo]:
        if not self.connected:
            raise PbxUnavailable("AMI down (test)")
        snapshot = set(self.up)
        if self.hold_listing is not None:
            await self.hold_listing.wait()
        return [ChannelInfo(f"Local/x-{a};1", a, "Up", a) for a in snapshot]


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def _drive(
    sessions: sessionmaker[Session],
    pbx: LossPbx,
    script: Callable[[Dialer], Awaitable[None]],
    *,
    max_call_duration: float = 600.0,
) -> None:
    async def main() -> None:
        dialer = Dialer(
            sessions,
            pbx,  # type: ignore[arg-type]
            _plan,
            gate=GATE,
            max_call_duration=max_call_duration,
        )
        await dialer.start()
        runner = asyncio.create_task(dialer.run(["c"]))
        try:
            await script(dialer)
        finally:
            await dialer.stop()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    asyncio.run(main())


def _add_contact(sessions: sessionmaker[Session], number: str) -> None:
    with sessions() as s, s.begin():
        campaign = s.scalars(select(Campaign)).one()
        contact = Contact(list_id=campaign.list_id, phone_e164=number, fields={}, source_line=9)
        s.add(contact)
        s.flush()
        s.add(
            CampaignContact(
                campaign_id=campaign.id,
                contact_id=contact.id,
                phone_e164=number,
                state="pending",
                next_attempt_at=EPOCH,
            )
        )


def _ended(sessions: sessionmaker[Session], n: int) -> Callable[[], bool]:
    def check() -> bool:
        with sessions() as s:
            rows = s.scalars(select(CallAttempt.state)).all()
        return len(rows) >= n and all(state == "ended" for state in rows)

    return check


def test_after_a_reconnect_calls_in_flight_are_looked_up_and_nothing_is_resent(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010", "+33199000020"], max_channels=3)
    pbx = LossPbx()

    async def script(dialer: Dialer) -> None:
        await _until(lambda: len(pbx.answered) == 2)
        gone, still_up = (r.attempt_id for _, r in pbx.originates)
        pbx.drop()
        pbx.end(gone, seen=False)  # ended while the controller was away: no Hangup seen
        _add_contact(sessions, "+33199000030")  # due now: must wait for the reconnect
        await asyncio.sleep(0.3)
        assert len(pbx.originates) == 2  # dialling paused while disconnected
        pbx.hold_listing = asyncio.Event()
        pbx.back()
        # a call placed after the reconnect, missing from the listing taken before it
        await _until(lambda: len(pbx.originates) == 3)
        pbx.hold_listing.set()
        await _until(lambda: len(pbx.answered) == 3)
        pbx.end(still_up)
        pbx.end(pbx.originates[2][1].attempt_id)
        await _until(_ended(sessions, 3))

    _drive(sessions, pbx, script)
    by_number = {a.number: a for a in _attempts(sessions)}
    assert by_number["+33199000010"].outcome == "human"
    assert "connection was lost" in (by_number["+33199000010"].error or "")
    assert (by_number["+33199000020"].outcome, by_number["+33199000020"].error) == ("human", None)
    assert (by_number["+33199000030"].outcome, by_number["+33199000030"].error) == ("human", None)
    ids = [r.attempt_id for _, r in pbx.originates]
    assert len(ids) == len(set(ids)) == 3  # no Originate re-sent


def test_a_call_whose_pbx_never_comes_back_is_closed_at_its_deadline_and_not_retried(
    sessions: sessionmaker[Session],
) -> None:
    _campaign(sessions, ["+33199000010"], retries=2)
    with sessions() as s, s.begin():  # even an outcome the campaign retries
        s.scalars(select(Campaign)).one().retry_outcomes = ["failed"]
    pbx = LossPbx()
    pbx.run_flow = False

    async def script(dialer: Dialer) -> None:
        await _until(lambda: len(pbx.answered) == 1)
        pbx.drop()
        await _until(_ended(sessions, 1))

    _drive(sessions, pbx, script, max_call_duration=0.3)
    (attempt,) = _attempts(sessions)
    assert attempt.state == "ended" and attempt.outcome == "failed"
    assert "did not come back in time" in (attempt.error or "")
    with sessions() as s:
        cc = s.scalars(select(CampaignContact)).one()
    assert (cc.state, cc.attempts) == ("done", 1)
    assert len(pbx.originates) == 1


def _stale_attempt(sessions: sessionmaker[Session], retry_failed: bool) -> str:
    _campaign(sessions, ["+33199000010"], retries=1)
    aid = "c" * 32
    with sessions() as s, s.begin():
        if retry_failed:
            s.scalars(select(Campaign)).one().retry_outcomes = ["failed"]
        cc = s.scalars(select(CampaignContact)).one()
        cc.state, cc.attempts, cc.last_attempt_id = "dialing", 1, aid
        s.add(
            CallAttempt(
                id=aid,
                campaign_id=cc.campaign_id,
                campaign_contact_id=cc.id,
                number=cc.phone_e164,
                attempt_no=1,
                state="originating",
                originate_sent_at=utcnow(),
            )
        )
    return aid


def test_an_interrupted_attempt_whose_call_is_over_follows_the_retry_policy(
    sessions: sessionmaker[Session],
) -> None:
    aid = _stale_attempt(sessions, retry_failed=True)
    pbx = FakePbx()
    _run(sessions, pbx)
    first, second = _attempts(sessions)
    assert (first.id, first.outcome) == (aid, "failed")
    assert (first.error or "").startswith("interrupted")
    assert (second.attempt_no, second.outcome) == (2, "human")
    assert [r.attempt_id for _, r in pbx.originates] == [second.id]  # a new attempt


def test_an_interrupted_attempt_is_not_retried_when_the_pbx_cannot_tell_it_is_over(
    sessions: sessionmaker[Session],
) -> None:
    _stale_attempt(sessions, retry_failed=True)

    class Unlisted(FakePbx):
        async def list_channels(self) -> list[ChannelInfo]:
            raise PbxUnavailable("CoreShowChannels failed (test)")

    pbx = Unlisted()
    _run(sessions, pbx)
    (attempt,) = _attempts(sessions)
    assert attempt.outcome == "failed" and pbx.originates == []
    with sessions() as s:
        assert s.scalars(select(CampaignContact.state)).one() == "done"
