"""The call-back line's pure parts: who is calling, in which language."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.clock import ManualClock
from voicecast.compliance.suppression import opt_out_record
from voicecast.dialer.inbound import CallbackLine, caller_e164, language_for
from voicecast.pbx.base import PlayResult
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    InboundCall,
)

OUR_CLI = "+33162000000"


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+33199000005", "+33199000005"),
        ("0199000005", "+33199000005"),  # national, read in the country of our number
        ("01 99 00 00 05", "+33199000005"),
        ("0690001234", "+590690001234"),  # a Guadeloupe mobile written nationally
        ("+12025550123", "+12025550123"),
        ("anonymous", None),
        ("", None),
        (None, None),
        ("0199000005\r\nAction: Originate", None),
        ("123", None),
    ],
)
def test_caller_e164(caller: str | None, expected: str | None) -> None:
    assert caller_e164(caller, OUR_CLI) == expected


def test_caller_e164_needs_our_number_in_e164() -> None:
    assert caller_e164("0199000005", "0162000000") is None


@pytest.mark.parametrize(
    ("number", "language"),
    [
        ("+33199000005", "fr"),
        ("+262262123456", "fr"),
        ("+12025550123", "en"),
        ("+442079460123", "en"),
    ],
)
def test_language_for(number: str, language: str) -> None:
    assert language_for(number) == language


# --- the line, on a real database with a scripted call ----------------------------------------

CALLED = "+33199000050"


class ScriptedCall:
    """Presses ``key`` during the first prompt (or never)."""

    attempt_id = "inbound"

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.played: list[str] = []
        self.hung_up = False

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        self.played.append(sound)
        if self.key and self.key in escape_digits:
            return PlayResult(1500, False, self.key)
        return PlayResult(4000, True)

    async def wait_for_digit(self, timeout: float) -> str | None:
        return None

    async def hangup(self) -> None:
        self.hung_up = True


@pytest.fixture
def db(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The shared migrated database, with one campaign that called CALLED two days ago."""
    sf = sessions
    with sf() as s, s.begin():
        clist = ContactList(name="l")
        s.add(clist)
        s.flush()
        campaign = Campaign(
            name="c",
            list_id=clist.id,
            caller_id=OUR_CLI,
            max_channels=1,
            cps=1.0,
            ring_timeout=20,
            retries=0,
            retry_delay=0,
            retry_outcomes=[],
            amd={},
            purpose="marketing",
            sender_name="Acme [pause 9s] Énergie",
            on_behalf_of="Acme Énergie",
            optout_key="9",
        )
        s.add(campaign)
        s.flush()
        contact = Contact(list_id=clist.id, phone_e164=CALLED, fields={}, source_line=2)
        s.add(contact)
        s.flush()
        cc = CampaignContact(campaign_id=campaign.id, contact_id=contact.id, phone_e164=CALLED)
        s.add(cc)
        s.flush()
        s.add(
            CallAttempt(
                id="a" * 32,
                campaign_id=campaign.id,
                campaign_contact_id=cc.id,
                number=CALLED,
                attempt_no=1,
                created_at=NOW - timedelta(days=2),
            )
        )
    return sf


NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _line(sessions: sessionmaker[Session], said: list[str]) -> CallbackLine:
    async def speak(text: str, language: str) -> str:
        said.append(text)
        return f"/snd/tts/{len(said)}"

    return CallbackLine(sessions, b"k" * 32, speak, ManualClock(NOW))


def test_a_called_number_hears_who_why_and_when_then_opts_out(
    db: sessionmaker[Session],
) -> None:
    said: list[str] = []
    call = ScriptedCall("9")
    action = asyncio.run(_line(db, said).serve(call, "0199000050", OUR_CLI))
    assert action == "opted_out" and call.hung_up
    who = said[0]
    # the sender's brackets are spoken as text, never read as a pause
    assert "le 25 novembre par Acme (pause 9s) Énergie, pour le compte de Acme" in who
    assert "pour vous présenter une offre commerciale" in who and "tapez 9" in who
    assert "[pause 9s]" not in who and "Votre demande est enregistrée" in said[1]
    with db() as s:
        assert opt_out_record(s, b"k" * 32, CALLED) is not None
        (row,) = s.scalars(select(InboundCall))
        assert (row.caller, row.action, row.campaign_id) == (CALLED, "opted_out", 1)


def test_no_key_keeps_the_number_and_a_stranger_is_opted_out_by_calling(
    db: sessionmaker[Session],
) -> None:
    said: list[str] = []
    line = _line(db, said)
    assert asyncio.run(line.serve(ScriptedCall(None), CALLED, OUR_CLI)) == "identified"
    assert asyncio.run(line.serve(ScriptedCall(None), "+33199000060", OUR_CLI)) == (
        "auto_opted_out"
    )
    assert asyncio.run(line.serve(ScriptedCall(None), "anonymous", OUR_CLI)) == "hidden_number"
    with db() as s:
        assert opt_out_record(s, b"k" * 32, CALLED) is None
        assert opt_out_record(s, b"k" * 32, "+33199000060") is not None
        actions = [r.action for r in s.scalars(select(InboundCall).order_by(InboundCall.id))]
    assert actions == ["identified", "auto_opted_out", "hidden_number"]


def test_a_number_that_is_not_ours_changes_nothing(db: sessionmaker[Session]) -> None:
    said: list[str] = []
    line = _line(db, said)
    # another number of the trunk routed to the inbound context: no automatic opt-out
    assert asyncio.run(line.serve(ScriptedCall("9"), "+33199000060", "+33162999999")) == (
        "not_ours"
    )
    assert "ne reçoit pas d'appels" in said[0]
    with db() as s:
        assert opt_out_record(s, b"k" * 32, "+33199000060") is None
