"""Retention purge of callees' replies: purge_recordings, the dialer's hourly purge and the
`voicecast recordings list / purge` commands. Fictional numbers only (+33199000xxx)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast import cli as cli_module
from voicecast.campaigns.compliance import GateEnv
from voicecast.campaigns.retention import purge_recordings
from voicecast.cli import main
from voicecast.clock import ManualClock
from voicecast.config import ComplianceSettings
from voicecast.dialer import controller
from voicecast.dialer.controller import Dialer
from voicecast.storage.db import make_engine, session_factory
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    Recording,
)

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
ZONE = ZoneInfo("Europe/Paris")
US = timedelta(microseconds=1)


def seed(s: Session, name: str = "c", number: str = "+33199000301") -> tuple[int, str]:
    """A campaign with one contact and one ended attempt; returns (campaign id, attempt id)."""
    clist = ContactList(name=f"list-{name}")
    s.add(clist)
    s.flush()
    contact = Contact(list_id=clist.id, phone_e164=number, fields={})
    campaign = Campaign(
        name=name,
        list_id=clist.id,
        message_text="Bonjour.",
        caller_id="+33162000000",
        max_channels=1,
        cps=1.0,
        ring_timeout=20,
        retries=0,
        retry_delay=0,
        retry_outcomes=[],
        amd={},
        status="completed",
    )
    s.add_all([contact, campaign])
    s.flush()
    cc = CampaignContact(campaign_id=campaign.id, contact_id=contact.id, phone_e164=number)
    s.add(cc)
    s.flush()
    attempt_id = f"att-{name}"
    s.add(
        CallAttempt(
            id=attempt_id,
            campaign_id=campaign.id,
            campaign_contact_id=cc.id,
            number=number,
            attempt_no=1,
            state="ended",
            outcome="human",
        )
    )
    s.flush()
    return campaign.id, attempt_id


def add_recording(
    s: Session,
    campaign_id: int,
    attempt_id: str,
    path: Path,
    delete_after: datetime,
    *,
    node: str = "ask",
    write: bool = True,
) -> int:
    if write:
        path.write_bytes(b"RIFF....WAVE")
    rec = Recording(
        attempt_id=attempt_id,
        campaign_id=campaign_id,
        node=node,
        path=str(path),
        duration_ms=4200,
        created_at=delete_after - timedelta(days=30),
        delete_after=delete_after,
    )
    s.add(rec)
    s.flush()
    return rec.id


def purge(sessions: sessionmaker[Session], now: datetime) -> int:
    with sessions() as s, s.begin():
        return purge_recordings(s, now)


def deleted_at(sessions: sessionmaker[Session], rec_id: int) -> datetime | None:
    with sessions() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        return rec.deleted_at


# ------------------------------------------------------------------------------------------
# purge_recordings


def test_purge_at_the_boundary(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    due, later = tmp_path / "due.wav", tmp_path / "later.wav"
    with sessions() as s, s.begin():
        cid, aid = seed(s)
        due_id = add_recording(s, cid, aid, due, NOW)
        later_id = add_recording(s, cid, aid, later, NOW + US)

    assert purge(sessions, NOW - US) == 0  # one microsecond before: kept
    assert due.exists() and deleted_at(sessions, due_id) is None

    assert purge(sessions, NOW) == 1  # delete_after == now: purged
    assert not due.exists() and later.exists()
    assert deleted_at(sessions, due_id) == NOW
    assert deleted_at(sessions, later_id) is None

    assert purge(sessions, NOW) == 0  # a second purge does nothing
    assert deleted_at(sessions, due_id) == NOW

    assert purge(sessions, NOW + US) == 1
    assert not later.exists() and deleted_at(sessions, later_id) == NOW + US
    assert purge(sessions, NOW + timedelta(days=365)) == 0
    assert deleted_at(sessions, due_id) == NOW  # the trace of the first purge is kept


def test_a_missing_file_is_fine(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with sessions() as s, s.begin():
        cid, aid = seed(s)
        rec_id = add_recording(s, cid, aid, tmp_path / "gone.wav", NOW, write=False)
    assert purge(sessions, NOW + timedelta(hours=1)) == 1
    assert deleted_at(sessions, rec_id) == NOW + timedelta(hours=1)


def test_an_undeletable_file_is_left_for_the_next_purge(
    sessions: sessionmaker[Session], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "not-a-file.wav"
    folder.mkdir()
    ok_file = tmp_path / "ok.wav"
    with sessions() as s, s.begin():
        cid, aid = seed(s)
        stuck = add_recording(s, cid, aid, folder, NOW - timedelta(days=1), write=False)
        done = add_recording(s, cid, aid, ok_file, NOW - timedelta(days=1))
    with caplog.at_level(logging.ERROR, logger="voicecast.campaigns.retention"):
        assert purge(sessions, NOW) == 1
    assert f"cannot delete {folder}" in caplog.text
    assert deleted_at(sessions, stuck) is None and deleted_at(sessions, done) == NOW
    folder.rmdir()
    assert purge(sessions, NOW) == 1
    assert deleted_at(sessions, stuck) == NOW


def test_purge_needs_an_aware_instant(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, pytest.raises(ValueError, match="aware"):
        purge_recordings(s, datetime(2026, 11, 25, 10, 0))


def test_the_query_uses_the_delete_after_index(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        plan = s.connection().exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM recordings "
            "WHERE delete_after <= '2026-11-25 10:00:00.000000' AND deleted_at IS NULL"
        )
        assert "ix_recordings_delete_after" in " ".join(str(row) for row in plan)


# ------------------------------------------------------------------------------------------
# the dialer purges at start, then at most once per PURGE_INTERVAL


def _run_dialer(sessions: sessionmaker[Session], seconds: float) -> Dialer:
    gate = GateEnv.build(b"k" * 32, ComplianceSettings())
    dialer = Dialer(sessions, None, lambda c: None, gate=gate, clock=ManualClock(NOW))  # type: ignore[arg-type]
    dialer.controller_id = "test-controller"  # the next run takes over the same lease

    async def main() -> None:
        runner = asyncio.create_task(dialer.run())
        await asyncio.sleep(seconds)
        dialer._stopping.set()
        await asyncio.wait_for(runner, 5)

    asyncio.run(main())
    return dialer


def test_the_dialer_purges_at_start_and_at_most_once_an_hour(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = tmp_path / "due.wav"
    with sessions() as s, s.begin():
        cid, aid = seed(s)
        rec_id = add_recording(s, cid, aid, due, NOW)
        add_recording(s, cid, aid, tmp_path / "later.wav", NOW + timedelta(days=1))
    calls: list[datetime] = []

    def counting(session: Session, now: datetime) -> int:
        calls.append(now)
        return purge_recordings(session, now)

    monkeypatch.setattr(controller, "purge_recordings", counting)
    _run_dialer(sessions, 1.3)  # two turns of the loop (one a second)
    assert calls == [NOW]  # the dialer's clock, once
    assert not due.exists() and deleted_at(sessions, rec_id) == NOW
    assert (tmp_path / "later.wav").exists()

    calls.clear()
    monkeypatch.setattr(controller, "PURGE_INTERVAL", 0.0)
    _run_dialer(sessions, 1.3)
    assert len(calls) >= 2


# ------------------------------------------------------------------------------------------
# voicecast recordings list / purge

CONFIG = """\
[database]
url = "sqlite:///var/test.db"

[sandbox]
enabled = false

[pbx]
sounds_dir = "var/sounds"

[report]
timezone = "Europe/Paris"
"""


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_recordings_list_and_purge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module.console, "width", 200)  # table rows on one line each
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    monkeypatch.delenv("VOICECAST_CLOCK_START", raising=False)
    config = tmp_path / "voicecast.toml"
    config.write_text(CONFIG, encoding="utf-8")
    assert cli(config, "init").exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path}/var/test.db")
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    expired, kept, other = tmp_path / "expired.wav", tmp_path / "kept.wav", tmp_path / "o.wav"
    with sessions() as s, s.begin():
        cid, aid = seed(s, "printemps", "+33199000301")
        add_recording(s, cid, aid, expired, datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
        add_recording(s, cid, aid, kept, now + timedelta(days=30), node="avis")
        cid2, aid2 = seed(s, "automne", "+33199000302")
        add_recording(s, cid2, aid2, other, now + timedelta(days=30), node="autre")

    listed = cli(config, "recordings", "list")
    assert listed.exit_code == 0, listed.output
    flat = " ".join(listed.output.split())
    for header in ("attempt", "node", "duration s", "created", "delete after", "deleted"):
        assert header in flat
    # times in the [report] zone: 12:00 UTC is 13:00 in Paris in January
    assert "att-printemps" in flat and "att-automne" in flat and "4.2" in flat
    assert "2026-01-10T13:00:00+01:00" in flat

    only = " ".join(cli(config, "recordings", "list", "--campaign", "automne").output.split())
    assert "att-automne" in only and "att-printemps" not in only
    unknown = cli(config, "recordings", "list", "--campaign", "hiver")
    assert unknown.exit_code == 1 and "no campaign named 'hiver'" in unknown.output

    purged = cli(config, "recordings", "purge")
    assert purged.exit_code == 0, purged.output
    assert "purged 1 recording(s)" in purged.output
    assert not expired.exists() and kept.exists() and other.exists()
    with sessions() as s:
        rows = {r.node: r for r in s.scalars(select(Recording))}
    assert rows["ask"].deleted_at is not None
    assert rows["avis"].deleted_at is None and rows["autre"].deleted_at is None
    deleted = rows["ask"].deleted_at.astimezone(ZONE).isoformat(timespec="seconds")
    assert deleted in " ".join(cli(config, "recordings", "list").output.split())

    again = cli(config, "recordings", "purge")
    assert again.exit_code == 0 and "purged 0 recording(s)" in again.output
    engine.dispose()
