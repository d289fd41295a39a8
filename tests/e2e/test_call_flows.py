"""End-to-end: call flows through the sandbox Asterisk: spoken text messages, scenarios with
menus, failed transfers and recorded replies, and opt-outs that hold across campaigns.

Proofs come from what crossed Asterisk: the simulated callees' recordings, the replies
Asterisk wrote, and an independent AMI observer's list of dialled numbers.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from voicecast.audio.convert import voiced_span, wav_duration_ms
from voicecast.storage.models import CallAttempt, Recording

from .amimon import AmiMonitor
from .audio_match import locate
from .conftest import INFORMATIONAL, OPTOUT_KEY_9, Workspace

pytestmark = pytest.mark.e2e


def _attempt(ws: Workspace, number: str) -> CallAttempt:
    with ws.sessions() as s:
        (attempt,) = s.scalars(select(CallAttempt).where(CallAttempt.number == number))
        return attempt


def _voiced_length(path: Path) -> float:
    span = voiced_span(path)
    assert span is not None, f"{path.name} holds no voice"
    return span[1] - span[0]


def _host_sound(ws: Workspace, pbx_sound: str) -> Path:
    """The host file of a sound the PBX played (``<sounds on pbx>/tts/tts-...``)."""
    relative = pbx_sound.removeprefix(ws.view.sounds_dir_on_pbx).lstrip("/")
    return ws.view.sounds_dir / f"{relative}.wav"


def test_a_text_message_is_spoken_per_contact_to_people_and_mailboxes(
    workspace: Workspace,
) -> None:
    ws = workspace
    person, mailbox, silent = "+33199000070", "+33199000072", "+33199000079"
    csv = ws.dir / "c.csv"
    csv.write_text(
        f"first_name,phone\nCamille,{person}\nDominique,{mailbox}\nSacha,{silent}\n",
        encoding="utf-8",
    )
    ws.vc("contacts", "import", str(csv), "--list", "l")
    ws.vc(
        "campaign",
        "create",
        "sms-vocal",
        "--list",
        "l",
        "--text",
        "Bonjour {first_name}, [pause 300ms] votre rendez-vous de demain est confirmé.",
        "--voice",
        "fr",
        "--caller-id",
        "+33162000000",
        "--retries",
        "0",
        "--amd-on-silence",
        "no_answer",
        *INFORMATIONAL,
        *OPTOUT_KEY_9,
    )
    ws.vc("campaign", "start", "sms-vocal", "--wait")
    got = {r["number"]: r["outcome"] for r in ws.report("sms-vocal")}
    # digit 9 answers in silence: the campaign's silence setting says no_answer
    assert got == {person: "human", mailbox: "machine", silent: "no_answer"}

    heard = _attempt(ws, person)
    spoken = _host_sound(ws, heard.played[0]["sound"])
    assert heard.played[0]["completed"] and len(heard.played) == 2  # text, then opt-out line
    # the person's recording holds the whole spoken text, then the announcement
    assert _voiced_length(ws.recording(person, heard.id)) >= _voiced_length(spoken) - 0.25
    left = _attempt(ws, mailbox)
    for_mailbox = _host_sound(ws, left.played[0]["sound"])
    assert for_mailbox != spoken  # rendered with Dominique, not Camille
    box = ws.recording(mailbox, left.id)
    span = voiced_span(box)
    assert span is not None and span[1] - span[0] >= _voiced_length(for_mailbox) - 0.25
    assert wav_duration_ms(box) >= wav_duration_ms(for_mailbox) - 250
    match = locate(for_mailbox, box)  # the spoken text from its first word, by envelope
    assert match.whole >= 0.9 and match.first_second >= 0.9, match
    assert any(s.get("step") == "wait_for_beep" for s in left.steps)
    assert _attempt(ws, silent).played == []


MENU_WITH_RECORDING = """
version: 1
start: menu
nodes:
  menu:
    type: menu
    audio: "$message"
    keys: {"1": advisor}
    timeout: 4
    retries: 0
    on_timeout: bye
  advisor:
    type: transfer
    to: {extension: "nobody@sim-agent"}   # no such extension: the transfer fails
    timeout: 10
    on_failure: leave_message
  leave_message:
    type: record
    text: "Laissez votre message après le bip."
    max_seconds: 20
    silence_seconds: 2
    beep: true
    retention_days: 7
    next: thanks
  thanks:
    type: set_result
    result: left_message
    next: bye
  bye:
    type: hangup
"""


def test_a_menu_scenario_records_the_reply_when_the_transfer_fails(
    workspace: Workspace, short_message: Path
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    presses_1 = "+33199000077"
    csv = ws.write_contacts("c.csv", [presses_1])
    ws.vc("contacts", "import", str(csv), "--list", "l")
    scenario = ws.dir / "flow.yaml"
    scenario.write_text(MENU_WITH_RECORDING, encoding="utf-8")
    ws.create_campaign(
        "menu",
        "l",
        "short",
        "--caller-id",
        "+33162000000",
        "--retries",
        "0",
        "--scenario",
        str(scenario),
    )
    ws.vc("campaign", "start", "menu", "--wait")

    attempt = _attempt(ws, presses_1)
    assert attempt.outcome == "human" and attempt.result == "left_message"
    by_node = {step["node"]: step for step in attempt.steps if "node" in step}
    assert by_node["menu"]["result"] == "key" and by_node["menu"]["digit"] == "1"
    assert by_node["advisor"]["result"] == "failed"
    assert by_node["advisor"]["status"] in {"CHANUNAVAIL", "CONGESTION"}
    assert by_node["leave_message"]["result"] == "recorded"
    with ws.sessions() as s:
        (reply,) = s.scalars(select(Recording))
    assert reply.attempt_id == attempt.id and reply.node == "leave_message"
    assert Path(reply.path).is_file(), "Asterisk wrote no reply file"
    assert reply.duration_ms > 0 and wav_duration_ms(Path(reply.path)) > 0
    assert reply.delete_after - reply.created_at == timedelta(days=7)


def test_an_opted_out_number_is_never_dialled_again_by_another_campaign(
    workspace: Workspace, short_message: Path, ami_monitor: AmiMonitor
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "short")
    leaver, busy = "+33199000081", "+33199000083"
    csv = ws.write_contacts("c.csv", [leaver])
    ws.vc("contacts", "import", str(csv), "--list", "first")
    ws.create_campaign(
        "first", "first", "short", "--caller-id", "+33162000000", "--retries", "0", *OPTOUT_KEY_9
    )
    ws.vc("campaign", "start", "first", "--wait")
    assert {r["number"]: r["outcome"] for r in ws.report("first")} == {leaver: "opted_out"}

    csv2 = ws.write_contacts("c2.csv", [leaver, busy])
    ws.vc("contacts", "import", str(csv2), "--list", "second")
    ws.create_campaign("second", "second", "short", "--caller-id", "+33162000000", "--retries", "0")
    ws.vc("campaign", "start", "second", "--wait")
    got = {r["number"]: r for r in ws.report("second")}
    assert got[leaver]["outcome"] == "blocked" and got[busy]["outcome"] == "busy"
    # Asterisk saw the leaver dialled once (by the first campaign), the other number once
    assert sorted(ami_monitor.dialled_numbers()) == sorted([leaver, busy])
