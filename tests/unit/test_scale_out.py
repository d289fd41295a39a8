"""Several controllers on one PostgreSQL database (real server, see tests/pgserver.py).

Each controller runs in its own thread with its own event loop and its own fake PBX, as two
``voicecast serve`` processes would: their transactions really run side by side. The
properties: no contact dialled twice, the campaign's ``max_channels`` and a trunk's ``cps``
hold for both together, the compliance gate's frequency cap holds when both dial the same
number at the same instant, and the attempts of a controller whose lease expired are closed
by the others (never re-sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tests import pgserver
from tests.unit.test_dialer_controller import EPOCH, GATE, FakePbx, _plan
from voicecast.clock import Clock, ManualClock
from voicecast.dialer import controller as controller_module
from voicecast.dialer.controller import Dialer, live_controllers
from voicecast.pbx.base import NodeSpec, OriginateRequest, TrunkSpec
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import (
    AudioMessage,
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    ControllerLease,
    utcnow,
)

# a Tuesday, 12:00 in Washington DC and 18:00 in Paris: inside every calling window
NOON_DC = datetime(2026, 12, 1, 17, 0, tzinfo=ZoneInfo("UTC"))


@pytest.fixture
def sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def _campaign(
    sessions: sessionmaker[Session], name: str, numbers: Sequence[str], **kw: Any
) -> None:
    with sessions() as s, s.begin():
        clist = ContactList(name=f"list {name}")
        audio = AudioMessage(
            name=f"m {name}",
            file_name="m.wav",
            sha256="0" * 64,
            duration_ms=1000,
            source_name="m.wav",
        )
        s.add_all([clist, audio])
        s.flush()
        c = Campaign(
            name=name,
            list_id=clist.id,
            message_id=audio.id,
            caller_id="+33162000000",
            max_channels=kw.get("max_channels", 10),
            cps=kw.get("cps", 100.0),
            ring_timeout=10,
            retries=0,
            retry_delay=0.0,
            retry_outcomes=["busy", "no_answer", "congestion"],
            amd={},
            status="running",
            purpose="informational",
            audience="b2c",
            sender_name="Test Sender",
            on_behalf_of="Test Sender",
            optout_key="9",
            legal_basis="contract",
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
                    next_attempt_at=EPOCH,
                )
            )


@dataclass
class Controller:
    """One controller's inputs: its fake PBX, the campaigns it runs, its nodes."""

    pbx: FakePbx
    campaigns: list[str]
    nodes: Sequence[NodeSpec] | None = None
    clock: Clock | None = None
    run_for: float | None = None  # seconds; None: until its campaigns are done


def _run_controllers(sessions: sessionmaker[Session], *controllers: Controller) -> list[Dialer]:
    """Run each controller in its own thread and event loop, all at once."""

    def one(c: Controller) -> Dialer:
        async def main() -> Dialer:
            dialer = Dialer(
                sessions,
                c.pbx,  # type: ignore[arg-type]
                _plan,
                gate=GATE,
                clock=c.clock,
                nodes=c.nodes,
            )
            await dialer.start()
            try:
                if c.run_for is None:
                    await asyncio.wait_for(dialer.run(c.campaigns), 60)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(dialer.run(c.campaigns), c.run_for)
            finally:
                await dialer.stop(grace=5.0)
            return dialer

        return asyncio.run(main())

    with ThreadPoolExecutor(len(controllers)) as pool:
        return list(pool.map(one, controllers))


def _attempts(sessions: sessionmaker[Session]) -> list[CallAttempt]:
    with sessions() as s:
        return list(s.scalars(select(CallAttempt)).all())


def test_two_controllers_share_a_campaign_without_dialling_anyone_twice(
    sessions: sessionmaker[Session],
) -> None:
    numbers = [f"+331990{i:05d}" for i in range(60)]
    _campaign(sessions, "c", numbers, max_channels=10)
    one, two = FakePbx(call_seconds=0.05), FakePbx(call_seconds=0.05)
    dialers = _run_controllers(sessions, Controller(one, ["c"]), Controller(two, ["c"]))
    dialled = [r.number for _, r in one.originates + two.originates]
    assert sorted(dialled) == numbers  # every contact once, none twice
    assert one.originates and two.originates  # both controllers dialled
    attempts = _attempts(sessions)
    assert len(attempts) == 60 and {a.state for a in attempts} == {"ended"}
    assert {a.controller for a in attempts} == {d.controller_id for d in dialers}
    with sessions() as s:
        assert s.scalar(select(Campaign.status)) == "completed"
        assert not s.scalar(
            select(func.count()).where(CampaignContact.state != "done")  # type: ignore[arg-type]
        )


class _SharedCount:
    """Channels up on both fake PBXes together, and the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.up = 0
        self.peak = 0

    def change(self, delta: int) -> None:
        with self.lock:
            self.up += delta
            self.peak = max(self.peak, self.up)


def _counting_pbx(shared: _SharedCount, call_seconds: float) -> FakePbx:
    class Counting(FakePbx):
        async def originate(self, request: OriginateRequest) -> None:
            shared.change(+1)
            await super().originate(request)

        async def _simulate(self, req: OriginateRequest) -> None:
            try:
                await super()._simulate(req)
            finally:
                shared.change(-1)

    return Counting(call_seconds=call_seconds)


def test_the_campaign_channel_limit_holds_across_controllers(
    sessions: sessionmaker[Session],
) -> None:
    """max_channels 4 with two controllers: never more than 4 calls up together (each
    controller alone would allow 4)."""
    _campaign(sessions, "c", [f"+331990{i:05d}" for i in range(24)], max_channels=4)
    shared = _SharedCount()
    one, two = _counting_pbx(shared, 0.3), _counting_pbx(shared, 0.3)
    _run_controllers(sessions, Controller(one, ["c"]), Controller(two, ["c"]))
    assert len(one.originates) + len(two.originates) == 24
    assert one.originates and two.originates
    assert shared.peak == 4


def test_a_trunk_cps_limit_holds_across_controllers(sessions: sessionmaker[Session]) -> None:
    """One trunk limited to 5 calls per second shared by two controllers (whose campaign
    allows 100): together they start about 5 calls per second, not 10."""
    _campaign(sessions, "c", [f"+331990{i:05d}" for i in range(16)], cps=100.0, max_channels=50)
    nodes = (NodeSpec("pbx", None, (TrunkSpec("carrier", None, 5.0),)),)
    one, two = FakePbx(call_seconds=0.05), FakePbx(call_seconds=0.05)
    _run_controllers(
        sessions, Controller(one, ["c"], nodes=nodes), Controller(two, ["c"], nodes=nodes)
    )
    times = sorted(t for t, _ in one.originates + two.originates)
    assert len(times) == 16 and one.originates and two.originates
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate <= 5.0 * 1.05
    # each gap is the trunk's 0.2 s, give or take one controller's claim delaying the
    # other's send (both run in this process)
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.2 - 0.06
    with sessions() as s:
        assert set(s.scalars(select(CallAttempt.trunk))) == {"carrier"}


def test_the_frequency_cap_holds_when_two_controllers_dial_one_number_at_once(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A US number (informational calls: at most 3 per 30 days, 47 CFR 64.1200(a)(3)) in
    five campaigns, run by two controllers at the same instant. The gate's read of the
    number's history is slowed down so that both controllers' decisions overlap: the
    number's lock makes the second one wait for the first's attempt, so 3 calls go out and
    the other 2 are deferred (frequency_cap)."""
    number = "+12025550142"
    for name in ("c1", "c2", "c3", "c4", "c5"):
        _campaign(sessions, name, [number])
    real = controller_module.load_facts

    def slow_facts(*args: Any, **kwargs: Any) -> Any:
        facts = real(*args, **kwargs)
        time.sleep(0.3)  # both transactions have read the history before either commits
        return facts

    monkeypatch.setattr(controller_module, "load_facts", slow_facts)
    one, two = FakePbx(call_seconds=0.05), FakePbx(call_seconds=0.05)
    clock = ManualClock(NOON_DC)
    _run_controllers(
        sessions,
        Controller(one, ["c1", "c2", "c3"], clock=clock, run_for=6.0),
        Controller(two, ["c4", "c5"], clock=clock, run_for=6.0),
    )
    assert len(one.originates) + len(two.originates) == 3
    with sessions() as s:
        deferred = s.scalars(
            select(CampaignContact.gate_reason).where(CampaignContact.state == "pending")
        ).all()
    assert deferred == ["frequency_cap", "frequency_cap"]


def _stale_attempt(s: Session, holder: str, attempt_id: str, state: str) -> None:
    cc = s.scalars(select(CampaignContact).where(CampaignContact.state == "pending")).first()
    assert cc is not None
    cc.state = "dialing"
    cc.attempts = 1
    cc.last_attempt_id = attempt_id
    s.add(
        CallAttempt(
            id=attempt_id,
            campaign_id=cc.campaign_id,
            campaign_contact_id=cc.id,
            number=cc.phone_e164,
            attempt_no=1,
            state=state,
            controller=holder,
            created_at=utcnow(),
            originate_sent_at=utcnow(),
            pbx_node="default",
        )
    )


def test_attempts_of_a_dead_controller_are_closed_and_a_live_ones_kept(
    sessions: sessionmaker[Session],
) -> None:
    """Two other controllers left attempts: one died (its lease expired), one is alive on
    another host. Starting a third closes only the dead one's, as interrupted and never
    re-sent, and deletes its lease; the live controller's attempt is not touched."""
    _campaign(sessions, "c", ["+33199000010", "+33199000020", "+33199000030"])
    with sessions() as s, s.begin():
        s.execute(
            # both campaigns' contacts wait: nothing gets dialled in this test
            CampaignContact.__table__.update().values(next_attempt_at=NOON_DC + timedelta(days=999))
        )
        old = utcnow() - timedelta(minutes=5)
        s.add(ControllerLease(holder="dead", host=socket.gethostname(), pid=1, heartbeat_at=old))
        s.add(ControllerLease(holder="alive", host="elsewhere", pid=1, heartbeat_at=utcnow()))
        _stale_attempt(s, "dead", "d" * 32, "answered")
        _stale_attempt(s, "alive", "a" * 32, "originating")
    pbx = FakePbx()

    async def main() -> None:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE)  # type: ignore[arg-type]
        assert dialer.shared
        await dialer.start()
        with sessions() as s:
            assert set(live_controllers(s)) == {"alive", dialer.controller_id}
        await dialer.stop()

    asyncio.run(main())
    with sessions() as s:
        dead = s.get(CallAttempt, "d" * 32)
        alive = s.get(CallAttempt, "a" * 32)
        assert dead is not None and alive is not None
        assert dead.state == "ended" and dead.error is not None
        assert dead.error.startswith("interrupted")
        assert alive.state == "originating"
        holders = set(s.scalars(select(ControllerLease.holder)))
    assert "dead" not in holders and "alive" in holders
    assert not pbx.originates


def test_controllers_on_sqlite_stay_exclusive(tmp_path: Any) -> None:
    """SQLite cannot be shared by several hosts: a second controller is refused."""
    engine = make_engine(f"sqlite:///{tmp_path}/one.db")
    migrate(engine)
    sessions = session_factory(engine)

    async def main() -> None:
        first = Dialer(sessions, FakePbx(), _plan, gate=GATE)  # type: ignore[arg-type]
        second = Dialer(sessions, FakePbx(), _plan, gate=GATE)  # type: ignore[arg-type]
        assert not first.shared
        await first.start()
        with pytest.raises(controller_module.LeaseHeld):
            await second.start()
        await first.stop()

    asyncio.run(main())


def _pg_ctl(server: pgserver.PgServer, *args: str) -> None:
    """``pg_ctl`` on ``server``'s cluster, as the server's own user, on its own port."""
    assert server.data_dir is not None
    port = make_url(server.url).port
    options = (
        f"-c port={port} -c listen_addresses=127.0.0.1 "
        f"-c unix_socket_directories={server.data_dir.parent} -c fsync=off"
    )
    cmd = [*pgserver._as_server_user(), str(pgserver.find_bindir() / "pg_ctl"), *args]
    cmd += ["-D", str(server.data_dir), "-w", "-o", options]
    if args[0] == "start":
        cmd += ["-l", str(server.data_dir.parent / "server.log")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=server.data_dir.parent)


def test_a_postgresql_outage_pauses_dialling_and_loses_nothing() -> None:
    """The PostgreSQL server stops while calls are up (a restart, a failover): the
    controller does not crash; it pauses dialling, keeps the outcomes of the calls up in
    memory, and once the server is back writes them and dials the rest, no one twice."""
    numbers = [f"+331990{i:04d}0" for i in range(12)]  # each answered by a person
    with pgserver.start_server() as server:
        engine = make_engine(server.create_database())
        try:
            migrate(engine)
            sessions = session_factory(engine)
            _campaign(sessions, "c", numbers, max_channels=3, cps=20.0)
            pbx = FakePbx(call_seconds=0.5)

            async def main() -> Dialer:
                dialer = Dialer(sessions, pbx, _plan, gate=GATE)  # type: ignore[arg-type]
                dialer.storage_probe_interval = 0.2
                await dialer.start()
                runner = asyncio.create_task(dialer.run(["c"]))
                try:
                    while len(pbx.originates) < 3:
                        await asyncio.sleep(0.02)
                    await asyncio.to_thread(_pg_ctl, server, "stop", "-m", "fast")
                    while dialer.storage_error is None:
                        assert not runner.done(), runner.exception()
                        await asyncio.sleep(0.05)
                    assert "cannot be reached" in dialer.storage_error
                    dialled = len(pbx.originates)
                    await asyncio.sleep(1.5)  # calls up end meanwhile; nothing new goes out
                    assert len(pbx.originates) == dialled and not runner.done()
                    await asyncio.to_thread(_pg_ctl, server, "start")
                    await asyncio.wait_for(runner, 60)
                finally:
                    await dialer.stop()
                return dialer

            dialer = asyncio.run(main())
            assert dialer.storage_error is None
            assert sorted(r.number for _, r in pbx.originates) == numbers  # once each
            attempts = _attempts(sessions)
            assert sorted(a.number for a in attempts) == numbers
            assert {a.state for a in attempts} == {"ended"}
            assert all(a.outcome == "human" for a in attempts), [a.error for a in attempts]
        finally:
            engine.dispose()
