"""End-to-end: a sandbox campaign over the simulated network journals every attempt, the
chain verifies, and ``voicecast subject proof`` shows an answering machine's message drop
with its audio, caller ID and legal basis.

Numbers (../shared/SIM-PSTN.md, by last digit): 0 a person, 2 an answering machine,
3 busy (retried once), 4 no answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voicecast.journal import kinds
from voicecast.journal.store import verify
from voicecast.storage.models import AudioMessage, CallAttempt, JournalEntry

from .conftest import Workspace

pytestmark = pytest.mark.e2e

PERSON, MACHINE, BUSY, NO_ANSWER = "+33353010020", "+33353010022", "+33353010023", "+33353010024"
CALLER_ID = "+33162000000"


def test_a_sandbox_campaign_journals_every_attempt_and_proves_the_machine_drop(
    workspace: Workspace, short_message: Path
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(short_message), "--name", "notice")
    csv = ws.write_contacts("c.csv", [PERSON, MACHINE, BUSY, NO_ANSWER])
    ws.vc("contacts", "import", str(csv), "--list", "journal")
    ws.create_campaign(
        "journaled",
        "journal",
        "notice",
        "--caller-id",
        CALLER_ID,
        "--max-channels",
        "4",
        "--ring-timeout",
        "8",
        "--retries",
        "1",
        "--retry-delay",
        "2",
        "--retry-on",
        "busy",
    )
    ws.vc("campaign", "start", "journaled", "--wait")

    outcomes = {r["number"]: r["outcome"] for r in ws.report("journaled")}
    assert outcomes == {PERSON: "human", MACHINE: "machine", BUSY: "busy", NO_ANSWER: "no_answer"}
    with ws.sessions() as s:
        attempt_ids = set(s.scalars(select(CallAttempt.id)))
        sha = s.scalars(select(AudioMessage.sha256).where(AudioMessage.name == "notice")).one()
        journaled = [
            json.loads(data)["attempt_id"]
            for data in s.scalars(
                select(JournalEntry.data).where(JournalEntry.kind == kinds.CALL_ATTEMPT)
            )
        ]
        drops = s.scalar(select(func.count()).where(JournalEntry.kind == kinds.MESSAGE_DROPPED))
        report = verify(s)
    # every attempt (the busy retry included) has its call.attempt entry, and only once
    assert len(attempt_ids) == 5
    assert sorted(journaled) == sorted(attempt_ids)
    assert drops == 2  # the person and the machine heard the message
    assert report.ok, report.first_problem()
    assert report.checked >= len(attempt_ids) + drops

    shown = ws.vc("subject", "proof", MACHINE)
    out = " ".join(shown.stdout.split())
    assert "Message drops (journal)" in out
    assert "notice" in out and CALLER_ID in out and "machine" in out
    assert "contract (declared)" in out  # the campaign's declared basis (informational)
    assert "journal chain: verified" in out

    proof = json.loads(ws.vc("subject", "proof", MACHINE, "--json").stdout)
    ((drop,),) = [proof["journal"]["drops"]]
    data = drop["data"]
    assert (data["audio"], data["audio_sha256"], data["caller_id"]) == ("notice", sha, CALLER_ID)
    assert data["delivered_to"] == "machine" and data["played_ms"] > 1000
    assert data["legal_basis"]["basis"] == "contract"
    assert data["legal_basis"]["purpose"] == "informational"
    assert data["played_at"] and drop["seq"] >= 1 and len(drop["hash"]) == 64
    ((attempt,),) = [proof["journal"]["attempts"]]
    assert attempt["data"]["outcome"] == "machine" and attempt["data"]["amd_status"] == "MACHINE"
    assert [e["data"]["verdict"] for e in proof["journal"]["gate_decisions"]] == ["allow"]
    # a number's digits never appear in the journal's data
    with ws.sessions() as s:
        for text in s.scalars(select(JournalEntry.data)):
            for number in (PERSON, MACHINE, BUSY, NO_ANSWER):
                assert number.lstrip("+") not in text and number[3:] not in text
