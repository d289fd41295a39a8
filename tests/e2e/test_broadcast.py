"""End-to-end: campaigns through the real sandbox Asterisk and its simulated network.

Outcomes are proven from what crossed Asterisk: the simulated callees' recordings and an
independent AMI observer's view of the channels.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from voicecast.audio.convert import voiced_span, wav_duration_ms
from voicecast.dialer.controller import lease_holder
from voicecast.storage.models import (
    CallAttempt,
    CampaignContact,
    Contact,
    ContactList,
    InboundCall,
)

from .amimon import AmiMonitor
from .audio_match import locate
from .conftest import REPO, Workspace

pytestmark = pytest.mark.e2e

EXAMPLE_MESSAGE = REPO / "sounds" / "example-message.wav"
EXAMPLE_LIST = REPO / "examples" / "contacts.csv"
MENU_SCENARIO = REPO / "examples" / "scenarios" / "menu-record-transfer.yaml"
EXPECTED_BY_LAST_DIGIT = {
    "0": "human",
    "1": "opted_out",  # presses 9, the campaign's opt-out key, during the message
    "2": "machine",
    "3": "busy",
    "4": "no_answer",
    "5": "congestion",
    "6": "invalid_number",
    "7": "transferred",  # presses 1: the scenario's menu bridges them to the agent
    "8": "machine",
    "9": "machine",  # silent answer, campaign setting amd-on-silence=machine (default)
}


def _attempts(ws: Workspace, number: str | None = None) -> list[CallAttempt]:
    with ws.sessions() as s:
        q = select(CallAttempt).order_by(CallAttempt.created_at)
        if number:
            q = q.where(CallAttempt.number == number)
        return list(s.scalars(q))


def _voiced_length(path: Path) -> float:
    span = voiced_span(path)
    assert span is not None, f"{path.name} holds no voice"
    return span[1] - span[0]


def test_every_simulated_callee_gets_its_outcome_and_hears_the_whole_message(
    workspace: Workspace,
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(EXAMPLE_MESSAGE), "--name", "msg")
    ws.vc("contacts", "import", str(EXAMPLE_LIST), "--list", "example")
    ws.create_campaign(
        "all-digits",
        "example",
        "msg",
        "--caller-id",
        "01 62 00 00 00",
        "--max-channels",
        "10",
        "--cps",
        "10",
        "--ring-timeout",
        "10",
        "--retries",
        "0",
        "--optout-key",
        "9",
        "--scenario",
        str(MENU_SCENARIO),
    )
    ws.vc("campaign", "start", "all-digits", "--wait")

    rows = ws.report("all-digits")
    assert len(rows) == 10
    got = {r["number"][-1]: r["outcome"] for r in rows}
    assert got == EXPECTED_BY_LAST_DIGIT

    message_voice = _voiced_length(EXAMPLE_MESSAGE)
    message_ms = wav_duration_ms(EXAMPLE_MESSAGE)
    by_digit = {r["number"][-1]: r for r in rows}
    # digit 1 pressed 9 about 2 s into the message: cut there, suppressed everywhere
    (leaver,) = _attempts(ws, by_digit["1"]["number"])
    assert leaver.played and leaver.played[0]["digit"] == "9"
    assert 1000 <= leaver.played[0]["ms"] < message_ms - 2000
    assert "opted out since" in ws.vc("optout", "check", by_digit["1"]["number"]).stdout
    # digit 7 pressed 1 during the message: bridged to the simulated agent, whose recording
    # (named with the attempt id) exists, and whose hello the callee heard after the cut
    (moved,) = _attempts(ws, by_digit["7"]["number"])
    assert moved.played and moved.played[0]["digit"] == "1"
    transfer = next(step for step in moved.steps if step.get("type") == "transfer")
    assert transfer["status"] == "ANSWER", transfer
    agent_calls = list(ws.view.recordings_dir.glob(f"agent-{moved.id}-*-call.wav"))
    assert len(agent_calls) == 1, "the simulated agent recorded no call for this attempt"
    assert wav_duration_ms(agent_calls[0]) >= 10_000  # the bridge held until the callee left
    assert voiced_span(agent_calls[0]) is not None
    assert transfer["talk_seconds"] >= 10
    for digit in "0":  # a person: their recording of what they heard holds all of it
        number = by_digit[digit]["number"]
        (attempt,) = _attempts(ws, number)
        heard = ws.recording(number, attempt.id)
        assert _voiced_length(heard) >= message_voice - 0.25, f"digit {digit} heard a cut message"
        assert attempt.amd_status == "HUMAN"
        assert attempt.played and attempt.played[0]["completed"]
    for digit in "28":  # machines: the mailbox (recording from the beep on) has it from word 1
        number = by_digit[digit]["number"]
        (attempt,) = _attempts(ws, number)
        assert attempt.amd_status == "MACHINE"
        assert (attempt.amd_cause or "").startswith("LONGGREETING")
        mailbox = ws.recording(number, attempt.id)
        span = voiced_span(mailbox)
        assert span is not None, f"digit {digit}: the mailbox recorded nothing"
        assert wav_duration_ms(mailbox) >= message_ms - 250
        assert span[1] - span[0] >= message_voice - 0.25, (
            f"digit {digit}: message started before the beep (mailbox holds {span})"
        )
        # the message's own envelope, first second included, is found in the mailbox
        match = locate(EXAMPLE_MESSAGE, mailbox)
        assert match.whole >= 0.9 and match.first_second >= 0.9, (digit, match)
    # the 12-second greeting of digit 8 was waited out: the drop started after it ended
    (long_greeting,) = _attempts(ws, by_digit["8"]["number"])
    assert long_greeting.answered_at is not None and long_greeting.ended_at is not None
    call_seconds = (long_greeting.ended_at - long_greeting.answered_at).total_seconds()
    assert call_seconds >= 11.5 + message_ms / 1000 - 0.5
    # failures carry Asterisk's Q.850 cause
    assert by_digit["3"]["q850_cause"] == 17
    assert by_digit["5"]["q850_cause"] == 34
    assert by_digit["6"]["q850_cause"] == 1
    assert by_digit["4"]["q850_cause"] == 19


def test_busy_is_retried_after_its_delay_and_an_invalid_number_never(
    workspace: Workspace, short_message: Path
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    csv = ws.write_contacts("c.csv", ["+33199000023", "+33199000026"])
    ws.vc("contacts", "import", str(csv), "--list", "l")
    ws.create_campaign(
        "retry",
        "l",
        "short",
        "--caller-id",
        "+33162000000",
        "--retries",
        "2",
        "--retry-delay",
        "4",
        "--retry-on",
        "busy,no_answer,congestion,failed",
    )
    ws.vc("campaign", "start", "retry", "--wait")

    busy = _attempts(ws, "+33199000023")
    assert [a.outcome for a in busy] == ["busy", "busy", "busy"]
    for before, after in itertools.pairwise(busy):
        assert before.ended_at is not None and after.originate_sent_at is not None
        gap = (after.originate_sent_at - before.ended_at).total_seconds()
        assert 4.0 <= gap <= 5.5, f"retry after {gap:.2f}s, expected 4 s (to the second)"
    invalid = _attempts(ws, "+33199000026")
    assert [a.outcome for a in invalid] == ["invalid_number"]
    assert invalid[0].hangup_cause == 1


def test_never_more_channels_than_the_campaign_allows(
    workspace: Workspace, short_message: Path, ami_monitor: AmiMonitor
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    numbers = [f"+3326191{i:03d}0" for i in range(30)]
    csv = ws.write_contacts("c.csv", numbers)
    ws.vc("contacts", "import", str(csv), "--list", "thirty")
    ws.create_campaign(
        "limit",
        "thirty",
        "short",
        "--caller-id",
        "+33162000000",
        "--max-channels",
        "5",
        "--cps",
        "20",
        "--retries",
        "0",
    )
    ws.vc("campaign", "start", "limit", "--wait")

    assert {r["outcome"] for r in ws.report("limit")} == {"human"}
    dialled = ami_monitor.primary_newchannels()
    assert len(dialled) == 30
    # Asterisk's own view: event order, and its CoreShowChannels count sampled every 0.1 s
    assert ami_monitor.max_concurrent_from_events() == 5
    assert 1 <= ami_monitor.max_concurrent_sampled() <= 5


def test_calls_per_second_limit_holds_on_asterisks_clock(
    workspace: Workspace, short_message: Path, ami_monitor: AmiMonitor
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    numbers = [f"+3335301{i:03d}3" for i in range(12)]  # busy: instant, so only CPS paces
    csv = ws.write_contacts("c.csv", numbers)
    ws.vc("contacts", "import", str(csv), "--list", "twelve")
    ws.create_campaign(
        "pace",
        "twelve",
        "short",
        "--caller-id",
        "+33162000000",
        "--max-channels",
        "20",
        "--cps",
        "3",
        "--retries",
        "0",
    )
    ws.vc("campaign", "start", "pace", "--wait")

    times = sorted(float(e["Timestamp"]) for e in ami_monitor.primary_newchannels())
    assert len(times) == 12
    for i in range(len(times) - 3):
        # never a 4th call within one second of three others (Asterisk's timestamps)
        assert times[i + 3] - times[i] >= 1.0 - 0.02, times
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert 2.4 <= achieved <= 3.05, f"achieved {achieved:.2f} calls/s for a target of 3"


def test_hostile_fields_never_reach_ami(
    workspace: Workspace, short_message: Path, ami_monitor: AmiMonitor
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    csv = ws.dir / "hostile.csv"
    csv.write_text(
        "first_name,last_name,phone\n"
        '"Eve\r\nAction: Originate\r\nChannel: Local/+33199000666@sim-pstn",Fictif,'
        "+33199000030\n"
        "Mallory,Fictif,01 99 00 00 1O\n"
        'Trent,Fictif,"0199000033&Local/+33199000666@sim-pstn"\n'
        'Oscar,Fictif,"0199000033\r\nAction: Hangup"\n'
        "Peggy,Fictif,0199000033;666\n"
        "Victor,Fictif,*31#0199000033\n",
        encoding="utf-8",
    )
    out = ws.vc("contacts", "import", str(csv), "--list", "hostile", "--json").stdout
    assert '"imported": 1' in out and '"rejected": 5' in out
    # a CRM integration bug could write a raw value straight into the table: the dialer
    # must refuse it too
    with ws.sessions() as s, s.begin():
        clist = s.scalar(select(ContactList).where(ContactList.name == "hostile"))
        assert clist is not None
        s.add(
            Contact(
                list_id=clist.id,
                phone_e164="+33199000030\r\nAction: Originate",
                fields={},
                source_line=99,
            )
        )
    ws.create_campaign(
        "hostile",
        "hostile",
        "short",
        "--caller-id",
        "+33162000000",
        "--retries",
        "0",
    )
    ws.vc("campaign", "start", "hostile", "--wait")

    dialled = [e.get("Channel") or "" for e in ami_monitor.primary_newchannels()]
    assert dialled and all(ch.startswith("Local/+33199000030@sim-pstn") for ch in dialled)
    assert len(dialled) == 1
    # no trace of the hostile 666 number anywhere Asterisk reported; clocks and ids are
    # left out: a Timestamp or a hex attempt id may contain "666" by chance
    reported = re.sub(
        rb"(Timestamp|Uniqueid|Linkedid|DestUniqueid|DestLinkedid|ActionID): [^\r]*",
        b"",
        bytes(ami_monitor.raw),
    )
    assert b"666" not in reported
    assert b"Action: Originate" not in bytes(ami_monitor.raw)
    rows = {r["number"]: r for r in ws.report("hostile")}
    bad = rows["+33199000030\r\nAction: Originate"]
    # refused before any attempt by the compliance gate (the PBX layer refuses it too)
    assert (bad["outcome"], bad["gate_reason"], bad["attempts"]) == ("blocked", "invalid_number", 0)
    assert rows["+33199000030"]["outcome"] == "human"


def test_killed_controller_resumes_without_calling_anyone_twice(
    workspace: Workspace, ami_monitor: AmiMonitor
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(EXAMPLE_MESSAGE), "--name", "msg")
    numbers = [f"+3319900{i:03d}0" for i in range(8)]
    csv = ws.write_contacts("c.csv", numbers)
    ws.vc("contacts", "import", str(csv), "--list", "eight")
    ws.create_campaign(
        "crash",
        "eight",
        "msg",
        "--caller-id",
        "+33162000000",
        "--max-channels",
        "3",
        "--cps",
        "5",
        "--retries",
        "1",
        "--retry-delay",
        "1",
    )
    proc = ws.popen("campaign", "start", "crash", "--wait")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with ws.sessions() as s:
            answered = s.scalars(select(CallAttempt).where(CallAttempt.state == "answered")).all()
        if len(answered) >= 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail("no call was answered within a minute")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    killed_midway = {a.id for a in answered}

    ws.vc("campaign", "start", "crash", "--wait")

    attempts = _attempts(ws)
    with ws.sessions() as s:
        contacts = s.scalars(select(CampaignContact)).all()
    assert all(c.state == "done" for c in contacts) and len(contacts) == 8
    assert all(a.state == "ended" and a.outcome for a in attempts)
    interrupted = [a for a in attempts if (a.error or "").startswith("interrupted")]
    assert {a.id for a in interrupted} >= killed_midway
    # Asterisk saw each attempt id at most once: nothing was re-sent
    seen = [e["Uniqueid"] for e in ami_monitor.primary_newchannels()]
    assert len(seen) == len(set(seen))
    assert set(seen) == {a.id for a in attempts if a.originate_sent_at is not None}
    # and a person who was already called is not called again after the restart
    for number in numbers:
        assert len([a for a in attempts if a.number == number]) == 1


def test_serve_dials_a_campaign_started_without_wait_and_stops_on_sigterm(
    workspace: Workspace, short_message: Path
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    csv = ws.write_contacts("c.csv", ["+33199000040", "+33199000042", "+33199000043"])
    ws.vc("contacts", "import", str(csv), "--list", "l")
    ws.create_campaign(
        "served",
        "l",
        "short",
        "--caller-id",
        "+33162000000",
        "--retries",
        "0",
        "--cps",
        "5",
    )
    server = ws.popen("serve")
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the server holds the controller lease
            with ws.sessions() as s:
                if lease_holder(s) is not None:
                    break
            time.sleep(0.2)
        out = ws.vc("campaign", "start", "served", "--wait").stdout
        assert "dialing is done by the running controller" in out
        outcomes = {r["number"]: r["outcome"] for r in ws.report("served")}
        assert outcomes == {
            "+33199000040": "human",
            "+33199000042": "machine",
            "+33199000043": "busy",
        }
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output


def test_a_call_back_from_a_called_number_hears_who_called_and_opts_out_by_key(
    workspace: Workspace, short_message: Path
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    called, stranger = "+33199000050", "+33199000060"
    csv = ws.write_contacts("c.csv", [called])
    ws.vc("contacts", "import", str(csv), "--list", "l")
    ws.create_campaign("cb", "l", "short", "--caller-id", "+33162000000", "--retries", "0")
    ws.vc("campaign", "start", "cb", "--wait")
    server = ws.popen("serve")
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the server answers the call-back line
            with ws.sessions() as s:
                if lease_holder(s) is not None:
                    break
            time.sleep(0.2)
        out = ws.vc(
            "sandbox", "call-back", called, "+33162000000", "--press", "9", "--after", "12"
        ).stdout
        heard = Path(out.rsplit("heard: ", 1)[1].strip())
        unknown = ws.vc("sandbox", "call-back", stranger, "+33162000000", "--after", "2").stdout
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    # the identification was heard before the key: several seconds of speech
    assert _voiced_length(heard) >= 6.0
    assert "opted out since" in ws.vc("optout", "check", called).stdout
    # a number no campaign called recently is opted out by calling the line
    assert "call-back ended" in unknown
    assert "opted out since" in ws.vc("optout", "check", stranger).stdout
    with ws.sessions() as s:
        calls = list(s.scalars(select(InboundCall).order_by(InboundCall.id)))
    assert [(c.caller, c.action) for c in calls] == [
        (called, "opted_out"),
        (stranger, "auto_opted_out"),
    ]
    assert calls[0].campaign_id is not None
