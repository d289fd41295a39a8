"""A database that refuses writes (disk full, read-only, locked): the dialer places no call it
cannot record, pauses with the reason, keeps the outcomes of calls in flight, and resumes by
itself. Runs the controller against the fake PBX of ``test_dialer_controller``."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from test_dialer_controller import GATE, FakePbx, _attempts, _campaign, _plan

from voicecast.dialer.controller import Dialer, StorageUnavailable
from voicecast.storage.db import db_fault, make_engine, migrate, retry_busy, session_factory
from voicecast.storage.models import CampaignContact

WRITES = ("INSERT", "UPDATE", "DELETE")


class FullDisk:
    """While ``on``: every write statement on ``engine`` fails as SQLite does on a full disk
    (``sqlite3.OperationalError: database or disk is full``, SQLITE_FULL)."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        event.listen(engine, "before_cursor_execute", self._hook)

    def _hook(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.on and statement.lstrip().split(None, 1)[0].upper() in WRITES:
            raise sqlite3.OperationalError("database or disk is full")


class ReadOnly:
    """While ``on``: new sessions open the same file with ``?mode=ro`` (SQLITE_READONLY on
    any write: "attempt to write a readonly database"). Root ignores file modes, hence the
    URI flag rather than chmod."""

    def __init__(self, sessions: sessionmaker[Session], db_file: Path) -> None:
        self.sessions = sessions
        self.rw = sessions.kw["bind"]
        self.ro = create_engine(f"sqlite:///file:{db_file}?mode=ro&uri=true")

    @property
    def on(self) -> bool:
        return self.sessions.kw["bind"] is self.ro

    @on.setter
    def on(self, value: bool) -> None:
        self.sessions.configure(bind=self.ro if value else self.rw)


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "t.db"


@pytest.fixture
def sessions(db_file: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{db_file}", busy_timeout_ms=50)
    migrate(engine)
    return session_factory(engine)


async def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached: {what}")
        await asyncio.sleep(0.02)


def _db_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "database" in r.getMessage()
    ]


@pytest.mark.parametrize("fault", ["full", "readonly"])
def test_a_database_that_refuses_writes_pauses_dialling_and_loses_nothing(
    sessions: sessionmaker[Session],
    db_file: Path,
    fault: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    numbers = [f"+3319900{i:03d}0" for i in range(4)]  # each answered by a person
    _campaign(sessions, numbers, max_channels=2)
    breaker: FullDisk | ReadOnly = (
        FullDisk(sessions.kw["bind"]) if fault == "full" else ReadOnly(sessions, db_file)
    )

    claim = Dialer._claim
    claims: list[Any] = []

    def claim_then_break(self: Dialer, *args: Any, **kwargs: Any) -> Any:
        """The database breaks once the first attempt row is committed: that call goes out
        and is up (its outcome must be kept); the second contact's row cannot be written."""
        claimed = claim(self, *args, **kwargs)
        if not claims:
            breaker.on = True
        claims.append(claimed)
        return claimed

    monkeypatch.setattr(Dialer, "_claim", claim_then_break)
    pbx = FakePbx(call_seconds=0.3)
    caplog.set_level(logging.INFO)

    async def main() -> Dialer:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE)
        dialer.storage_probe_interval = 0.1
        await dialer.start()
        runner = asyncio.create_task(dialer.run(["c"]))
        try:
            await _until(lambda: dialer.storage_error is not None, "dialling paused")
            # the recorded call still goes out at its instant, then on to its end; its
            # outcome waits in memory
            # (the first claim may take both free channels: a claim is a batch)
            first = sorted(c.attempt_id for c in claims[0] if hasattr(c, "attempt_id"))
            assert 1 <= len(first) <= 2
            await _until(lambda: len(pbx.originates) == len(first), "the first calls sent")
            await _until(lambda: not set(first) & set(pbx.up), "the first calls ended")
            await _until(
                lambda: set(first) <= set(dialer._unwritten), "their outcomes kept in memory"
            )
            for _ in range(10):  # several probes while still refused: still paused
                await asyncio.sleep(0.05)
            # nothing dialled that could not be recorded
            assert sorted(r.attempt_id for _, r in pbx.originates) == first
            error = dialer.storage_error or ""
            reason = "disk holding the database is full" if fault == "full" else "read-only"
            assert reason in error and str(db_file) in error
            with sessions() as s:  # reads work: the first attempts are not final yet
                rows = _attempts(sessions)
                assert sorted((r.id, r.state) for r in rows) == [(a, "originating") for a in first]
                states = sorted(cc.state for cc in s.scalars(select(CampaignContact)))
            assert states == ["dialing"] * len(first) + ["pending"] * (4 - len(first))
            breaker.on = False  # space freed / remounted read-write: resumes by itself
            await asyncio.wait_for(runner, 30)
        finally:
            await dialer.stop()
        return dialer

    dialer = asyncio.run(main())
    assert dialer.storage_error is None
    attempts = _attempts(sessions)
    assert sorted(a.number for a in attempts) == numbers  # exactly one attempt each
    assert all((a.state, a.outcome) == ("ended", "human") for a in attempts)
    assert all(a.answered_at is not None for a in attempts)  # the refused write repeated
    sent = [r.attempt_id for _, r in pbx.originates]
    assert sorted(sent) == sorted(a.id for a in attempts)  # no duplicate, none unrecorded
    with sessions() as s:
        assert {cc.state for cc in s.scalars(select(CampaignContact))} == {"done"}
    errors = _db_errors(caplog)
    assert len(errors) == 1, errors  # one clear error, not one per try
    assert "Dialling is paused" in errors[0]
    assert any("takes writes again" in r.getMessage() for r in caplog.records)


def test_a_locked_database_pauses_dialling_until_the_lock_is_released(
    sessions: sessionmaker[Session], db_file: Path
) -> None:
    _campaign(sessions, ["+33199000010", "+33199000020"])
    pbx = FakePbx()
    other = sqlite3.connect(db_file, timeout=0.05)

    async def main() -> Dialer:
        dialer = Dialer(sessions, pbx, _plan, gate=GATE)
        dialer.storage_probe_interval = 0.1
        await dialer.start()
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        runner = asyncio.create_task(dialer.run(["c"]))
        try:
            await _until(lambda: dialer.storage_error is not None, "dialling paused")
            assert "locked" in (dialer.storage_error or "")
            await asyncio.sleep(0.3)
            assert pbx.originates == []
            other.rollback()
            await asyncio.wait_for(runner, 30)
        finally:
            await dialer.stop()
            other.close()
        return dialer

    dialer = asyncio.run(main())
    assert dialer.storage_error is None
    attempts = _attempts(sessions)
    assert sorted(a.number for a in attempts) == ["+33199000010", "+33199000020"]
    assert len(pbx.originates) == 2


def test_a_read_only_database_at_start_is_a_clear_error(
    sessions: sessionmaker[Session], db_file: Path
) -> None:
    ReadOnly(sessions, db_file).on = True
    dialer = Dialer(sessions, FakePbx(), _plan, gate=GATE)
    with pytest.raises(StorageUnavailable, match="read-only") as info:
        asyncio.run(dialer.start())
    assert str(db_file) in str(info.value)


def _locked() -> DBAPIError:
    return DBAPIError("INSERT", {}, sqlite3.OperationalError("database is locked"))


def test_retry_busy_tries_again_while_locked_then_gives_up() -> None:
    calls: list[int] = []

    def twice_locked() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise _locked()
        return "written"

    assert asyncio.run(retry_busy(twice_locked, backoff=0.001)) == "written"
    assert len(calls) == 3

    def always_locked() -> None:
        calls.append(1)
        raise _locked()

    calls.clear()
    with pytest.raises(DBAPIError, match="locked"):
        asyncio.run(retry_busy(always_locked, retries=2, backoff=0.001))
    assert len(calls) == 3  # one try and two retries

    def full() -> None:
        calls.append(1)
        raise DBAPIError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    calls.clear()
    with pytest.raises(DBAPIError, match="full"):
        asyncio.run(retry_busy(full, backoff=0.001))
    assert len(calls) == 1  # a full disk is not retried here


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"pg error {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (sqlite3.OperationalError("database is locked"), "busy"),
        (sqlite3.OperationalError("database or disk is full"), "full"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "readonly"),
        (sqlite3.OperationalError("disk I/O error"), "io"),
        (_PgError("53100"), "full"),
        (_PgError("25006"), "readonly"),
        (_PgError("55P03"), "busy"),
        (sqlite3.IntegrityError("UNIQUE constraint failed: t.x"), None),
        (ValueError("database is locked"), None),  # not a driver error
    ],
)
def test_db_fault_tells_storage_faults_from_other_errors(
    error: Exception, kind: str | None
) -> None:
    fault = db_fault(error)
    assert (fault.kind if fault else None) == kind
    wrapped = IntegrityError("INSERT", {}, error) if kind is None else DBAPIError("X", {}, error)
    fault = db_fault(wrapped)
    assert (fault.kind if fault else None) == kind
