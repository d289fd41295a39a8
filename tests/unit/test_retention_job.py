"""Retention per data kind (voicecast.retention): with a clock moved past each period,
expired data is purged or anonymised and journalled, nothing unexpired is touched, a dry
run changes nothing and counts the same; the daily job of `voicecast serve`; the
`voicecast retention` commands. Fictional numbers and names only."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from voicecast import app as app_module
from voicecast import retention as retention_module
from voicecast.campaigns.compliance import GateEnv
from voicecast.cli import main
from voicecast.clock import ManualClock
from voicecast.config import ComplianceSettings, RetentionSettings, Settings
from voicecast.dialer.controller import Dialer
from voicecast.journal import kinds
from voicecast.journal.store import append, iter_entries, verify
from voicecast.retention import (
    CALL_ATTEMPTS,
    CONSENTS,
    CONTACTS,
    INBOUND_CALLS,
    JOURNAL,
    OPT_OUTS,
    RECORDINGS,
    REFUSALS,
    WEBHOOK_DELIVERIES,
    RetentionJob,
    daily_retention,
    last_run,
    plan_retention,
    run_in_session,
    run_retention,
)
from voicecast.storage.db import make_engine, session_factory
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Consent,
    Contact,
    ContactList,
    InboundCall,
    OptOut,
    Recording,
    Refusal,
)

T0 = datetime(2021, 3, 1, 9, 0, tzinfo=UTC)  # before the real "now": real-time entries follow
DAY = timedelta(days=1)
R = RetentionSettings()  # contacts 1095, attempts 365, recordings 30, consents 1825, ...
HASH_A = "a" * 64

NUM_A = "+33199000101"  # called once at T0, campaign completed
NUM_B = "+33199000102"  # still pending in a running campaign
NUM_C = "+33199000103"  # imported at T0, never called
NUM_D = "+33199000104"  # imported 10 days later
NUM_E = "+33199000105"  # a consent, no contact
NUM_IN = "+33261910106"  # called the call-back line

TABLES = (
    "contacts",
    "campaign_contacts",
    "call_attempts",
    "gate_decisions",
    "recordings",
    "inbound_calls",
    "consents",
    "refusals",
    "opt_outs",
    "journal_entries",
    "journal_head",
)


def _campaign(s: Session, name: str, list_id: int, status: str) -> Campaign:
    campaign = Campaign(
        name=name,
        list_id=list_id,
        message_text="Bonjour.",
        caller_id="+33162000000",
        max_channels=1,
        cps=1.0,
        ring_timeout=20,
        retries=0,
        retry_delay=0,
        retry_outcomes=[],
        amd={},
        status=status,
        purpose="marketing",
        created_at=T0,
    )
    s.add(campaign)
    s.flush()
    return campaign


def _contact(s: Session, list_id: int, number: str, at: datetime) -> Contact:
    contact = Contact(
        list_id=list_id,
        phone_e164=number,
        fields={"first_name": "Camille", "last_name": "Exemple"},
        created_at=at,
        updated_at=at,
    )
    s.add(contact)
    s.flush()
    return contact


def seed(s: Session, replies: Path) -> None:
    """The scenario of the timeline test (everything dated from T0)."""
    done_list = ContactList(name="printemps", created_at=T0)
    live_list = ContactList(name="ete", created_at=T0)
    s.add_all([done_list, live_list])
    s.flush()
    a = _contact(s, done_list.id, NUM_A, T0)
    _contact(s, done_list.id, NUM_C, T0)
    _contact(s, done_list.id, NUM_D, T0 + 10 * DAY)
    b = _contact(s, live_list.id, NUM_B, T0)
    done = _campaign(s, "printemps", done_list.id, "completed")
    live = _campaign(s, "ete", live_list.id, "running")
    cc_a = CampaignContact(
        campaign_id=done.id, contact_id=a.id, phone_e164=NUM_A, state="done", outcome="human"
    )
    cc_b = CampaignContact(
        campaign_id=live.id, contact_id=b.id, phone_e164=NUM_B, state="pending", attempts=1
    )
    s.add_all([cc_a, cc_b])
    s.flush()
    for attempt_id, cc, number in (("att-a", cc_a, NUM_A), ("att-b", cc_b, NUM_B)):
        s.add(
            CallAttempt(
                id=attempt_id,
                campaign_id=cc.campaign_id,
                campaign_contact_id=cc.id,
                number=number,
                attempt_no=1,
                state="ended",
                outcome="human",
                created_at=T0,
                ended_at=T0 + timedelta(minutes=1),
            )
        )
    s.flush()
    for name, attempt_id, campaign_id in (("a", "att-a", done.id), ("b", "att-b", live.id)):
        path = replies / f"reply-{name}.wav"
        path.write_bytes(b"RIFF....WAVE")
        s.add(
            Recording(
                attempt_id=attempt_id,
                campaign_id=campaign_id,
                node="avis",
                path=str(path),
                duration_ms=3000,
                created_at=T0,
                delete_after=T0 + 90 * DAY,  # the node's 90 days; capped at 30 by [retention]
            )
        )
    s.add(InboundCall(received_at=T0, called="+33162000000", caller=NUM_IN, action="identified"))
    for number in (NUM_A, NUM_B, NUM_C, NUM_E):
        s.add(
            Consent(
                phone_e164=number,
                purpose="marketing",
                status="granted",
                recorded_at=T0 - DAY,
                source="form",
                proof_ref="formulaire-42",
                imported_at=T0,
            )
        )
    s.add(Refusal(number_hash=HASH_A, refused_at=T0, source="cli"))
    s.add(OptOut(number_hash="b" * 64, recorded_at=T0, source="cli"))
    append(s, kinds.OPTOUT_RECORDED, {"source": "cli"}, subject="b" * 64, at=T0)


def snapshot(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    with sessions() as s:
        return {
            t: [tuple(r) for r in s.execute(text(f"SELECT * FROM {t} ORDER BY 1"))] for t in TABLES
        }


def dry(sessions: sessionmaker[Session], now: datetime) -> dict[str, int]:
    with sessions() as s:
        return plan_retention(s, R, now).counts()


def run(sessions: sessionmaker[Session], now: datetime) -> dict[str, int]:
    """A dry run, checked to change nothing, then the real run with the same counts."""
    before = snapshot(sessions)
    with sessions() as s, s.begin():
        report = run_retention(s, R, now, dry_run=True)
    assert report.dry_run and report.journal_seq is None
    assert snapshot(sessions) == before
    planned = dry(sessions, now)
    assert planned == report.counts()
    with sessions() as s, s.begin():
        done = run_retention(s, R, now)
    assert done.counts() == planned
    assert done.journal_seq is not None
    with sessions() as s:
        entry = list(iter_entries(s, kinds=(kinds.RETENTION_PURGED,)))[-1]
        assert entry.seq == done.journal_seq
        data = json.loads(entry.data)
        assert data.pop("run_at") == {"clock": now.isoformat()}
        assert {k: v["count"] for k, v in data.items()} == done.counts()
        for kind, item in data.items():
            assert item["cutoff"] == done.get(kind).cutoff.isoformat()  # type: ignore[union-attr]
        assert verify(s).ok
    return done.counts()


def rows(sessions: sessionmaker[Session], model: Any) -> list[Any]:
    with sessions() as s:
        return list(s.scalars(select(model)))


def test_each_kind_goes_just_after_its_period_and_not_a_day_before(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions() as s, s.begin():
        seed(s, tmp_path)
    clock = ManualClock(T0)
    nothing = {
        CONTACTS: 0,
        CALL_ATTEMPTS: 0,
        INBOUND_CALLS: 0,
        RECORDINGS: 0,
        CONSENTS: 0,
        REFUSALS: 0,
        JOURNAL: 0,
    }

    # recordings: 30 days ([retention] recordings_days) although the node said 90
    clock.set(T0 + 30 * DAY - DAY)
    assert run(sessions, clock.now()) == nothing
    assert (tmp_path / "reply-a.wav").exists() and (tmp_path / "reply-b.wav").exists()
    clock.set(T0 + 30 * DAY + DAY)
    assert run(sessions, clock.now()) == {**nothing, RECORDINGS: 2}
    assert not (tmp_path / "reply-a.wav").exists() and not (tmp_path / "reply-b.wav").exists()
    assert all(r.deleted_at == clock.now() for r in rows(sessions, Recording))

    # call attempts, inbound calls and refusals: 365 days
    clock.set(T0 + 365 * DAY - DAY)
    assert run(sessions, clock.now()) == nothing
    assert {a.number for a in rows(sessions, CallAttempt)} == {NUM_A, NUM_B}
    assert rows(sessions, InboundCall)[0].caller == NUM_IN
    assert len(rows(sessions, Refusal)) == 1
    clock.set(T0 + 365 * DAY + DAY)
    counts = run(sessions, clock.now())
    assert counts == {**nothing, CALL_ATTEMPTS: 2, INBOUND_CALLS: 1, REFUSALS: 1}
    attempts = rows(sessions, CallAttempt)
    assert {a.number for a in attempts} == {""}
    assert {a.outcome for a in attempts} == {"human"}  # outcomes stay for the reports
    inbound = rows(sessions, InboundCall)[0]
    assert inbound.caller is None and inbound.action == "identified"
    assert rows(sessions, Refusal) == []
    assert run(sessions, clock.now()) == nothing  # an anonymised attempt is not counted again

    # contacts: 1095 days after their last activity; B waits in a running campaign
    clock.set(T0 + 1095 * DAY - DAY)
    assert run(sessions, clock.now()) == nothing
    assert len(rows(sessions, Contact)) == 4
    # A's last call ended at T0 + 1 min: 30 s after C's period, A is still active
    with sessions() as s:
        plan = plan_retention(s, R, T0 + 1095 * DAY + timedelta(seconds=30)).get(CONTACTS)
    assert plan.count == 1 and plan.oldest == T0
    clock.set(T0 + 1095 * DAY + DAY)
    with sessions() as s:
        plan = plan_retention(s, R, clock.now()).get(CONTACTS)
    assert plan.count == 2 and plan.details["skipped"] == 1
    assert plan.details["campaign_contacts"] == 1 and plan.details["call_attempts"] == 1
    assert plan.details["recordings"] == 1
    assert plan.oldest == T0  # C's import
    assert run(sessions, clock.now()) == {**nothing, CONTACTS: 2}
    assert sorted(c.phone_e164 for c in rows(sessions, Contact)) == [NUM_B, NUM_D]
    assert [a.id for a in rows(sessions, CallAttempt)] == ["att-b"]  # A's went with A
    assert [r.attempt_id for r in rows(sessions, Recording)] == ["att-b"]
    assert len(rows(sessions, OptOut)) == 1  # never purged
    clock.set(T0 + 10 * DAY + 1095 * DAY + DAY)
    assert run(sessions, clock.now()) == {**nothing, CONTACTS: 1}  # D, imported later
    assert [c.phone_e164 for c in rows(sessions, Contact)] == [NUM_B]

    # consents: 1825 days after their last change, for numbers no contact holds
    clock.set(T0 + 1825 * DAY - DAY)
    assert run(sessions, clock.now()) == nothing
    assert len(rows(sessions, Consent)) == 4
    # journal: 1825 days; the entries written at T0 are the oldest
    with sessions() as s:
        assert plan_retention(s, R, clock.now()).get(JOURNAL).count == 0
    clock.set(T0 + 1825 * DAY + DAY)
    with sessions() as s:
        plan = plan_retention(s, R, clock.now())
    assert plan.get(CONSENTS).details["numbers"] == 3 and plan.get(CONSENTS).oldest == T0
    assert plan.get(JOURNAL).oldest == T0
    counts = run(sessions, clock.now())
    assert counts[CONSENTS] == 3 and counts[JOURNAL] == 1  # the opt-out entry at T0
    assert [c.phone_e164 for c in rows(sessions, Consent)] == [NUM_B]  # B still holds it
    assert len(rows(sessions, OptOut)) == 1
    with sessions() as s:
        assert [e.kind for e in iter_entries(s)][:1] == [kinds.RETENTION_PURGED]
        assert verify(s).ok
        assert last_run(s) == clock.now()


def test_a_dry_run_changes_neither_rows_nor_files(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions() as s, s.begin():
        seed(s, tmp_path)
    before = snapshot(sessions)
    far = T0 + 4000 * DAY  # everything expired
    with sessions() as s, s.begin():
        report = run_retention(s, R, far, dry_run=True)
    assert report.counts() == {
        CONTACTS: 3,
        CALL_ATTEMPTS: 2,
        INBOUND_CALLS: 1,
        RECORDINGS: 2,
        CONSENTS: 3,
        REFUSALS: 1,
        JOURNAL: 1,
    }
    assert snapshot(sessions) == before
    assert (tmp_path / "reply-a.wav").exists() and (tmp_path / "reply-b.wav").exists()
    with sessions() as s, s.begin():
        assert run_retention(s, R, far).counts() == report.counts()


def test_kinds_not_handled_are_listed_with_who_handles_them(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        plan = plan_retention(s, R, T0, webhook_keep_days=21)
    hooks = plan.get(WEBHOOK_DELIVERIES)
    assert hooks.count is None and hooks.days == 21 and "webhook worker" in hooks.action
    optouts = plan.get(OPT_OUTS)
    assert optouts.count is None and optouts.action == "never purged"
    assert "3 years" in optouts.note and "hashes" in optouts.note
    assert plan.as_dict()["kinds"][0]["kind"] == CONTACTS


def test_attempts_are_kept_at_least_the_31_days_the_caps_count(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(ValidationError, match="attempts_days"):
        RetentionSettings(attempts_days=7)  # the configuration refuses it...
    short = RetentionSettings.model_construct(attempts_days=7)  # ...and the job holds anyway
    with sessions() as s:
        plan = plan_retention(s, short, T0).get(CALL_ATTEMPTS)
    assert plan.days == 31 and plan.cutoff == T0 - 31 * DAY
    assert "frequency caps" in plan.note


def test_a_contact_whose_recording_cannot_be_deleted_stays_for_the_next_run(
    sessions: sessionmaker[Session], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sessions() as s, s.begin():
        seed(s, tmp_path)
        stuck = tmp_path / "stuck.wav"
        stuck.mkdir()  # a folder: unlink fails
        s.execute(
            text("UPDATE recordings SET path = :p WHERE attempt_id = 'att-a'"), {"p": str(stuck)}
        )
    now = T0 + 1095 * DAY + DAY
    with caplog.at_level(logging.ERROR, logger="voicecast"), sessions() as s, s.begin():
        report = run_retention(s, R, now)
    assert "cannot delete" in caplog.text
    assert report.get(CONTACTS).count == 1  # C only; A waits for its file
    assert report.get(CONTACTS).details["skipped"] == 2  # B (running campaign) and A
    assert sorted(c.phone_e164 for c in rows(sessions, Contact)) == [NUM_A, NUM_B, NUM_D]
    stuck.rmdir()
    with sessions() as s, s.begin():
        assert run_retention(s, R, now).get(CONTACTS).count == 1
    assert sorted(c.phone_e164 for c in rows(sessions, Contact)) == [NUM_B, NUM_D]


def test_run_needs_an_aware_instant(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, pytest.raises(ValueError, match="aware"):
        run_retention(s, R, datetime(2026, 1, 1, 3, 30))


def test_the_dialer_caps_a_recording_at_recordings_days() -> None:
    gate = GateEnv.build(b"k" * 32, ComplianceSettings())
    capped = Dialer(None, None, None, gate=gate, recordings_max_days=7)  # type: ignore[arg-type]
    assert capped._recording_days({"retention_days": 90}) == 7
    assert capped._recording_days({"retention_days": 3}) == 3
    uncapped = Dialer(None, None, None, gate=gate)  # type: ignore[arg-type]
    assert uncapped._recording_days({"retention_days": 90}) == 90
    assert uncapped._recording_days({}) == 30


# ------------------------------------------------------------------------------------------
# the daily job


def _settings(run_at: str = "04:15") -> Settings:
    return Settings.model_validate({"retention": {"run_at": run_at}})


def test_the_daily_job_is_registered_at_run_at_local_time(
    sessions: sessionmaker[Session],
) -> None:
    paris = ZoneInfo("Europe/Paris")

    async def main() -> datetime | None:
        job = RetentionJob(sessions, _settings("04:15"), ManualClock(T0), zone=paris)
        assert job.next_run_time is None
        job.start()
        try:
            scheduled = job._scheduler.get_job(RetentionJob.JOB_ID)
            assert scheduled.func == job.run_now
            assert str(scheduled.trigger) == "cron[hour='4', minute='15']"
            return job.next_run_time
        finally:
            job.shutdown()

    when = asyncio.run(main())
    assert when is not None
    local = when.astimezone(paris)
    assert (local.hour, local.minute, local.second) == (4, 15, 0)
    assert timedelta(0) < when - datetime.now(UTC) <= timedelta(days=1, hours=1)


def test_the_default_zone_is_the_machines(sessions: sessionmaker[Session]) -> None:
    async def main() -> datetime | None:
        job = RetentionJob(sessions, _settings("23:59"), ManualClock(T0))
        job.start()
        try:
            return job.next_run_time
        finally:
            job.shutdown()

    when = asyncio.run(main())
    assert when is not None
    local = when.astimezone()  # the machine's zone
    assert (local.hour, local.minute) == (23, 59)


def test_catch_up_runs_when_the_last_run_is_over_a_day_old(
    sessions: sessionmaker[Session],
) -> None:
    clock = ManualClock(T0)
    job = RetentionJob(sessions, _settings(), clock, zone=UTC)

    first = asyncio.run(job.catch_up())  # never ran: runs
    assert first is not None and first.journal_seq is not None
    with sessions() as s:
        assert last_run(s) == T0
    clock.advance(23 * 3600)
    assert asyncio.run(job.catch_up()) is None  # ran 23 h ago
    clock.advance(2 * 3600)
    again = asyncio.run(job.catch_up())  # 25 h: runs
    assert again is not None
    with sessions() as s:
        assert last_run(s) == T0 + timedelta(hours=25)
        assert len(list(iter_entries(s, kinds=(kinds.RETENTION_PURGED,)))) == 2


def test_a_failed_run_is_logged_and_the_job_goes_on(
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(retention_module, "run_daily", broken)
    job = RetentionJob(sessions, _settings(), ManualClock(T0), zone=UTC)
    with caplog.at_level(logging.ERROR, logger="voicecast.retention"):
        assert asyncio.run(job.run_now()) is None
    assert "the purge failed" in caplog.text


def test_serve_runs_the_catch_up_at_start(sessions: sessionmaker[Session]) -> None:
    clock = ManualClock(T0)

    async def main() -> datetime | None:
        async with daily_retention(sessions, _settings(), clock) as job:
            for _ in range(100):
                if job.last_report is not None:
                    break
                await asyncio.sleep(0.05)
            return job.next_run_time

    assert asyncio.run(main()) is not None
    with sessions() as s:
        assert last_run(s) == T0


def test_serve_forever_starts_the_daily_job(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []

    class Recorder:
        def __init__(self, *_a: Any, **_k: Any) -> None:
            pass

        async def __aenter__(self) -> None:
            started.append("retention")

        async def __aexit__(self, *_a: Any) -> None:
            started.append("stopped")

    async def no_dialer(*_a: Any, **_k: Any) -> bool:
        started.append("dialer")
        return True

    class Worker:
        def __init__(self, *_a: Any, **_k: Any) -> None:
            pass

        async def run(self) -> None:
            await asyncio.sleep(3600)

    monkeypatch.setattr(retention_module, "daily_retention", Recorder)
    monkeypatch.setattr(app_module, "run_dialer", no_dialer)
    monkeypatch.setattr("voicecast.webhooks.DeliveryWorker", Worker)
    settings = Settings.model_validate({"web": {"enabled": False}})
    runtime = app_module.Runtime(settings, None, None, None)  # type: ignore[arg-type]
    asyncio.run(app_module.serve_forever(runtime))
    assert started == ["retention", "dialer", "stopped"]


# ------------------------------------------------------------------------------------------
# voicecast retention run / show

CONFIG = """\
[database]
url = "sqlite:///var/test.db"

[sandbox]
enabled = false

[report]
timezone = "Europe/Paris"
"""


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_retention_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicecast import cli as cli_module

    monkeypatch.setattr(cli_module.console, "width", 250)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    config = tmp_path / "voicecast.toml"
    config.write_text(CONFIG, encoding="utf-8")
    assert cli(config, "init").exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path}/var/test.db")
    sessions = session_factory(engine)
    replies = tmp_path / "replies"
    replies.mkdir()
    with sessions() as s, s.begin():
        seed(s, replies)
    clock = ManualClock(T0 + 366 * DAY)
    monkeypatch.setattr(app_module, "make_clock", lambda _runtime: clock)

    shown = cli(config, "retention", "run", "--dry-run")
    assert shown.exit_code == 0, shown.output
    flat = " ".join(shown.output.split())
    assert "dry run: nothing changed" in flat
    # cutoffs in the [report] zone: T0 + 1 day is 2021-03-02 10:00 in Paris
    assert "call attempts │ 365 days │ 2021-03-02T10:00+01:00 │ 2" in flat
    assert "anonymised (number removed)" in flat
    assert "opt-outs │ │ │ - │ │ never purged" in flat
    assert "CNIL: kept at least 3 years" in flat
    assert "webhook worker" in flat
    assert "would remove or anonymise 6 item(s)" in flat  # 2 recordings, 2 attempts, 1, 1
    with sessions() as s:
        assert last_run(s) is None

    as_json = cli(config, "retention", "run", "--dry-run", "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["dry_run"] is True
    assert {k["kind"]: k["count"] for k in data["kinds"]}[CALL_ATTEMPTS] == 2

    done = cli(config, "retention", "run")
    assert done.exit_code == 0, done.output
    assert "removed or anonymised 6 item(s); journal entry" in " ".join(done.output.split())
    with sessions() as s:
        assert last_run(s) == clock.now()
        entry = list(iter_entries(s, kinds=(kinds.RETENTION_PURGED,)))[-1]
        assert entry.actor.startswith("cli:")

    show = cli(config, "retention", "show")
    assert show.exit_code == 0, show.output
    flat = " ".join(show.output.split())
    assert "would remove or anonymise 0 item(s)" in flat
    assert "last run: 2022-03-02T10:00+01:00" in flat
    engine.dispose()


def test_run_in_session_commits(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with sessions() as s, s.begin():
        seed(s, tmp_path)
    report = run_in_session(sessions, _settings(), T0 + 31 * DAY)
    assert report.get(RECORDINGS).count == 2
    assert all(r.deleted_at is not None for r in rows(sessions, Recording))


def test_purge_recordings_caps_the_age_of_a_recording(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from voicecast.campaigns.retention import purge_recordings

    with sessions() as s, s.begin():
        seed(s, tmp_path)  # two replies made at T0, their node keeps them 90 days
    now = T0 + 30 * DAY
    with sessions() as s, s.begin():
        assert purge_recordings(s, now) == 0  # the node's 90 days alone
        assert purge_recordings(s, now - timedelta(seconds=1), timedelta(days=30)) == 0
        assert purge_recordings(s, now, timedelta(days=30)) == 2
    with sessions() as s, pytest.raises(ValueError, match="positive"):
        purge_recordings(s, now, timedelta(0))


def test_the_daily_run_is_done_once_when_controllers_share_the_database(
    sessions: sessionmaker[Session],
) -> None:
    """Two `voicecast serve` on one database both schedule the daily purge: the first to
    run does it, the other finds it journaled less than 12 h ago and does nothing."""
    clock = ManualClock(T0)
    first = RetentionJob(sessions, _settings(), clock, zone=UTC)
    second = RetentionJob(sessions, _settings(), clock, zone=UTC)
    assert asyncio.run(first.run_now()) is not None
    clock.advance(60)
    assert asyncio.run(second.run_now()) is None
    clock.advance(13 * 3600)
    assert asyncio.run(second.run_now()) is not None  # the next day's run
    with sessions() as s:
        assert len(list(iter_entries(s, kinds=(kinds.RETENTION_PURGED,)))) == 2
