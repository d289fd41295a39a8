"""End-to-end: the compliance gate in front of the real sandbox Asterisk.

What was dialled is read from Asterisk's own channels (an independent AMI observer), not
from the controller's records. Marketing campaigns run on a shifted controller clock
(``VOICECAST_CLOCK_START``, honoured only with the sandbox) set to a past weekday inside the
French calling window, so these tests pass at any real hour.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from voicecast.clock import SHIFT_ENV
from voicecast.compliance.calendar import FrenchHolidays, check_window, parse_windows
from voicecast.storage.models import CallAttempt, CampaignContact, GateDecision

from .amimon import AmiMonitor
from .conftest import Workspace

pytestmark = pytest.mark.e2e

PARIS = ZoneInfo("Europe/Paris")
HOLIDAYS = FrenchHolidays(None, "conservative")
DECLARE = ("--sender", "Test Sender", "--on-behalf-of", "Test Sender", "--optout-key", "9")


def _past_weekday(weekday: int, hour: int, minute: int, second: int = 0) -> datetime:
    """The latest past ``weekday`` (0 = Monday) at that Paris time, at least a day ago,
    that is not a French public holiday (any region)."""
    day = datetime.now(PARIS).date() - timedelta(days=1)
    while day.weekday() != weekday or HOLIDAYS.holiday_name(day) is not None:
        day -= timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=PARIS)


def _iso(instant: datetime) -> str:
    return instant.isoformat()


def _setup(ws: Workspace, short_message: Path, rows: list[tuple[str, str]]) -> None:
    ws.vc("audio", "add", str(short_message), "--name", "msg")
    csv = ws.dir / "contacts.csv"
    lines = ["phone,first_name,professional"] + [f"{n},Test,{pro}" for n, pro in rows]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ws.vc("contacts", "import", str(csv), "--list", "l")


def _consent(ws: Workspace, number: str, at: datetime, *, withdrawn: bool = False) -> None:
    args = ["consent", "add", number, "--purpose", "marketing", "--source", "form"]
    args += ["--proof", f"web-form-{number}", "--at", _iso(at)]
    ws.vc(*args, *(["--withdrawn"] if withdrawn else []))


def _gate(ws: Workspace, number: str) -> CampaignContact | None:
    with ws.sessions() as s:
        return s.scalars(
            select(CampaignContact).where(CampaignContact.phone_e164 == number)
        ).one_or_none()


def _verdict(ws: Workspace, number: str) -> str | None:
    cc = _gate(ws, number)
    return cc.gate_verdict if cc is not None else None


def test_a_mixed_list_dials_exactly_the_lawful_numbers(
    workspace: Workspace, ami_monitor: AmiMonitor, short_message: Path
) -> None:
    ws = workspace
    wednesday = _past_weekday(2, 11, 0)
    consented, plain, pro, opted, listed, withdrawn = (
        "+33199000100",
        "+33199000110",
        "+33199000120",
        "+33199000130",
        "+33199000140",
        "+33199000150",
    )
    _setup(
        ws,
        short_message,
        [
            (consented, "non"),
            (plain, "particulier"),
            (pro, "professionnel"),
            (opted, "professionnel"),
            (listed, "non"),
            (withdrawn, "professionnel"),
        ],
    )
    before = wednesday - timedelta(days=10)
    for number in (consented, listed, withdrawn):
        _consent(ws, number, before)
    _consent(ws, withdrawn, before + timedelta(days=1), withdrawn=True)
    ws.vc("optout", "add", opted)
    bloctel = ws.dir / "bloctel.txt"
    bloctel.write_text(f"{listed}\n+33199000990\n0199000991\n", encoding="utf-8")
    as_of = (wednesday - timedelta(days=1)).date().isoformat()
    ws.vc("opposition", "import", "bloctel", str(bloctel), "--as-of", as_of)
    ws.create_campaign(
        "b2b", "l", "msg",
        "--caller-id", "01 62 00 00 00", "--ring-timeout", "15", "--retries", "0",
        "--cps", "10", "--purpose", "marketing", "--audience", "b2b", *DECLARE,
        declare=(),
    )  # fmt: skip
    clock = {SHIFT_ENV: _iso(wednesday)}
    check = ws.vc("campaign", "check", "b2b", "--at", _iso(wednesday), "--json")
    assert '"would_call_now": 2' in check.stdout, check.stdout
    ws.vc("campaign", "start", "b2b", "--wait", env=clock)

    assert sorted(ami_monitor.dialled_numbers()) == [consented, pro]
    rows = {r["number"]: r for r in ws.report("b2b")}
    assert rows[consented]["outcome"] == rows[pro]["outcome"] == "human"
    assert {n: rows[n]["gate_reason"] for n in (plain, opted, listed, withdrawn)} == {
        plain: "not_professional",
        opted: "opted_out",
        listed: "opposition_list",
        withdrawn: "consent_withdrawn",
    }
    assert all(rows[n]["outcome"] == "blocked" for n in (plain, opted, listed, withdrawn))
    with ws.sessions() as s:
        allowed = s.scalars(select(GateDecision).where(GateDecision.verdict == "allow")).all()
        attempts = s.scalars(select(CallAttempt)).all()
    # every dial has its stored "allow" decision, made in the shifted Wednesday
    assert {d.attempt_id for d in allowed} == {a.id for a in attempts}
    assert all(abs(d.decided_at - wednesday) < timedelta(minutes=5) for d in allowed)
    # ... and says what made it lawful: the consent's proof, or the B2B basis
    number_of = {a.id: a.number for a in attempts}
    why = {number_of[d.attempt_id or ""]: d.detail for d in allowed}
    assert f"proof web-form-{consented}" in why[consented]
    assert "professional contact" in why[pro]


def test_an_opt_out_recorded_during_the_campaign_stops_the_next_retry(
    workspace: Workspace, ami_monitor: AmiMonitor, short_message: Path
) -> None:
    ws = workspace
    leaving, staying = "+33199000203", "+33199000213"  # both busy (last digit 3)
    _setup(ws, short_message, [(leaving, ""), (staying, "")])
    ws.create_campaign(
        "notice", "l", "msg",
        "--caller-id", "01 62 00 00 00", "--retries", "2", "--retry-delay", "10",
        "--purpose", "informational", "--audience", "b2c", "--legal-basis", "contract",
        *DECLARE,
        declare=(),
    )  # fmt: skip
    proc = ws.popen("campaign", "start", "notice", "--wait")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with ws.sessions() as s:
                ended = s.scalars(
                    select(CallAttempt).where(
                        CallAttempt.number == leaving, CallAttempt.state == "ended"
                    )
                ).all()
            if ended:
                break
            time.sleep(0.2)
        assert ended, "the first attempt never ended"
        ws.vc("optout", "add", leaving)  # another process, while the campaign runs
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    dialled = ami_monitor.dialled_numbers()
    assert dialled.count(leaving) == 1
    assert dialled.count(staying) == 3  # first attempt + 2 retries
    rows = {r["number"]: r for r in ws.report("notice")}
    assert (rows[leaving]["outcome"], rows[leaving]["gate_reason"]) == ("blocked", "opted_out")
    assert rows[staying]["outcome"] == "busy"


def test_a_busy_retry_falling_after_20h_on_friday_waits_for_the_next_legal_morning(
    workspace: Workspace, ami_monitor: AmiMonitor, short_message: Path
) -> None:
    ws = workspace
    friday = _past_weekday(4, 19, 59, 54)
    busy = "+33199000303"
    _setup(ws, short_message, [(busy, "")])
    _consent(ws, busy, friday - timedelta(days=3))
    bloctel = ws.dir / "bloctel.txt"
    bloctel.write_text("+33199000990\n", encoding="utf-8")
    as_of = (friday - timedelta(days=1)).date().isoformat()
    ws.vc("opposition", "import", "bloctel", str(bloctel), "--as-of", as_of)
    ws.create_campaign(
        "late", "l", "msg",
        "--caller-id", "01 62 00 00 00", "--retries", "1", "--retry-delay", "8",
        "--purpose", "marketing", "--audience", "b2c", *DECLARE,
        declare=(),
    )  # fmt: skip
    proc = ws.popen("campaign", "start", "late", "--wait", env={SHIFT_ENV: _iso(friday)})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _verdict(ws, busy) != "defer":
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    cc = _gate(ws, busy)
    assert cc is not None
    assert (cc.state, cc.outcome, cc.gate_reason) == ("pending", "busy", "outside_hours")
    # the next legal instant: Monday 10:00 Paris, or later when Monday is a public holiday
    window = parse_windows("mon-fri 10:00-13:00 14:00-20:00")
    expected = check_window(window, HOLIDAYS, ("Europe/Paris",), friday + timedelta(minutes=1))
    assert expected.next_open is not None
    assert cc.next_attempt_at == expected.next_open
    local = expected.next_open.astimezone(PARIS)
    assert local.hour == 10 and local.weekday() in (0, 1) and local.date() > friday.date()
    assert ami_monitor.dialled_numbers() == [busy]  # the retry never reached Asterisk
