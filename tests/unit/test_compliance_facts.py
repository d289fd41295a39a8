"""voicecast.compliance.facts: what the gate knows about callees, read from a real SQLite DB.

Fictional numbers only (+33 1 99 00 xx xx, +33 2 61 91 xx xx, +33 3 53 01 xx xx;
+1 202 555 01xx; +44 20 7946 0xxx).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.compliance.consent import record_consent
from voicecast.compliance.facts import attempt_history, is_professional, load_facts
from voicecast.compliance.gate import CampaignRules, decide
from voicecast.compliance.packs import build_packs
from voicecast.compliance.suppression import add_opt_out, add_refusal, import_opposition_list
from voicecast.compliance.types import Audience, Purpose, Reason, Verdict
from voicecast.storage.models import (
    AudioMessage,
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
)

PARIS = ZoneInfo("Europe/Paris")
KEY = bytes(range(32))
PACKS = build_packs()
NOW = datetime(2026, 11, 25, 11, 0, tzinfo=PARIS)  # a Wednesday, in the past
FR1, FR2, FR3 = "+33199000010", "+33261910011", "+33353010012"
US1, UK1 = "+12025550123", "+442079460001"
_ids = itertools.count(1)


def facts_of(
    s: Session,
    numbers: list[str] | list[tuple[str, dict[str, Any]]],
    purpose: Purpose = Purpose.MARKETING,
    now: datetime = NOW,
) -> dict[str, Any]:
    rows = [n if isinstance(n, tuple) else (n, {}) for n in numbers]
    out = load_facts(s, KEY, PACKS, rows, purpose, now)
    assert [f.profile.number for f in out] == [n for n, _ in rows]  # same order
    return {f.profile.number: f for f in out}


def consent(s: Session, number: str, status: str, at: datetime, purpose: str = "marketing") -> None:
    record_consent(
        s,
        phone=number,
        purpose=purpose,
        status=status,
        recorded_at=at,
        source="form",
        proof_ref=f"form-{number}-{at:%s}",
    )


# --------------------------------------------------------------------------- consent


def test_latest_consent_at_now(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        consent(s, FR1, "granted", NOW - timedelta(days=10))
        consent(s, FR2, "granted", NOW - timedelta(days=10))
        consent(s, FR2, "withdrawn", NOW - timedelta(days=1))  # a later withdrawal wins
        consent(s, FR3, "granted", NOW + timedelta(hours=1))  # recorded after now: ignored
        consent(s, US1, "withdrawn", NOW - timedelta(days=10))
        consent(s, US1, "granted", NOW - timedelta(seconds=1))  # a later grant wins too
        consent(s, UK1, "granted", NOW - timedelta(days=2), purpose="informational")
    with sessions() as s:
        got = facts_of(s, [FR1, FR2, FR3, US1, UK1])
    c1 = got[FR1].consent
    assert c1 is not None and c1.granted and c1.recorded_at == NOW - timedelta(days=10)
    assert c1.source == "form" and c1.proof_ref.startswith("form-")
    c2 = got[FR2].consent
    assert c2 is not None and not c2.granted and c2.recorded_at == NOW - timedelta(days=1)
    assert got[FR3].consent is None
    us = got[US1].consent
    assert us is not None and us.granted
    assert got[UK1].consent is None  # another purpose's consent does not count
    with sessions() as s:
        info = facts_of(s, [UK1], Purpose.INFORMATIONAL)[UK1].consent
        later = facts_of(s, [FR3], now=NOW + timedelta(hours=1))[FR3].consent
    assert info is not None and info.granted
    assert later is not None and later.granted  # exactly at recorded_at: in force


def test_facts_feed_the_gate(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        consent(s, FR1, "granted", NOW - timedelta(days=10))
        consent(s, FR2, "granted", NOW - timedelta(days=10))
        consent(s, FR2, "withdrawn", NOW - timedelta(days=1))
        consent(s, FR3, "granted", NOW + timedelta(hours=1))
    rules = CampaignRules(Purpose.MARKETING, Audience.B2C)
    with sessions() as s:
        got = facts_of(s, [FR1, FR2, FR3])
    verdicts = {n: decide(f, rules, PACKS, NOW) for n, f in got.items()}
    assert verdicts[FR1].verdict is Verdict.ALLOW
    assert verdicts[FR2].reason is Reason.CONSENT_WITHDRAWN
    assert verdicts[FR3].reason is Reason.NO_CONSENT


# --------------------------------------------------------------------------- lists


def test_opt_outs_and_refusals(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_opt_out(s, KEY, FR1, source="cli", at=NOW - timedelta(days=3))
        add_refusal(s, KEY, FR2, at=NOW - timedelta(days=90), source="cli")
        add_refusal(s, KEY, FR2, at=NOW - timedelta(days=20), source="cli")
    with sessions() as s:
        got = facts_of(s, [FR1, FR2, FR3])
    assert (got[FR1].opted_out, got[FR2].opted_out, got[FR3].opted_out) == (True, False, False)
    assert got[FR2].last_refusal == NOW - timedelta(days=20)
    assert got[FR2].last_refusal.tzinfo is not None  # type: ignore[union-attr]
    assert got[FR1].last_refusal is None and got[FR3].last_refusal is None
    with sessions() as s:
        other_key = load_facts(s, bytes(32), PACKS, [(FR1, {})], Purpose.MARKETING, NOW)
    assert not other_key[0].opted_out  # keyed hashes: another key matches nothing


def test_national_list_hits_only_for_the_packs_own_list(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    dnc = tmp_path / "dnc.txt"
    dnc.write_text(f"{US1}\n{FR1}\n{UK1}\n")  # a French and a UK number on the US list
    bloctel = tmp_path / "bloctel.txt"
    bloctel.write_text(f"{FR2}\n")
    tps = tmp_path / "tps.txt"
    tps.write_text("+442079460002\n")
    with sessions.begin() as s:
        for name, path in (("us-dnc", dnc), ("bloctel", bloctel), ("tps", tps)):
            import_opposition_list(s, KEY, name, path, as_of=None, now=NOW)
    with sessions() as s:
        got = facts_of(s, [FR1, FR2, US1, UK1, "+442079460002"])
    assert {n: f.on_national_list for n, f in got.items()} == {
        FR1: False,  # on the US list, but France's list is Bloctel
        FR2: True,
        US1: True,
        UK1: False,
        "+442079460002": True,
    }


# --------------------------------------------------------------------------- attempts


def _campaign(s: Session, name: str) -> Campaign:
    clist = ContactList(name=f"list-{name}")
    audio = AudioMessage(
        name=f"m-{name}", file_name=f"m{name}.wav", sha256="0" * 64, duration_ms=1, source_name="m"
    )
    s.add_all([clist, audio])
    s.flush()
    c = Campaign(
        name=name,
        list_id=clist.id,
        message_id=audio.id,
        caller_id="+33162000000",
        max_channels=1,
        cps=1.0,
        ring_timeout=30,
        retries=0,
        retry_delay=0,
        retry_outcomes=[],
        amd={},
        status="running",
    )
    s.add(c)
    s.flush()
    return c


def _attempt(
    s: Session,
    campaign: Campaign,
    number: str,
    created: datetime,
    *,
    sent: bool = True,
    state: str = "ended",
    outcome: str | None = "no_answer",
    ended: datetime | None = None,
) -> None:
    cc = s.scalar(
        select(CampaignContact).where(
            CampaignContact.campaign_id == campaign.id, CampaignContact.phone_e164 == number
        )
    )
    if cc is None:
        contact = Contact(list_id=campaign.list_id, phone_e164=number, fields={}, source_line=1)
        s.add(contact)
        s.flush()
        cc = CampaignContact(
            campaign_id=campaign.id,
            contact_id=contact.id,
            phone_e164=number,
            state="pending",
            next_attempt_at=created,
        )
        s.add(cc)
        s.flush()
    s.add(
        CallAttempt(
            id=f"att-{next(_ids)}",
            campaign_id=campaign.id,
            campaign_contact_id=cc.id,
            number=number,
            attempt_no=1,
            state=state,
            created_at=created,
            originate_sent_at=created if sent else None,
            ended_at=(ended or created + timedelta(seconds=30)) if state == "ended" else None,
            outcome=outcome if state == "ended" else None,
        )
    )


def test_attempts_of_the_last_31_days_across_campaigns(sessions: sessionmaker[Session]) -> None:
    day = timedelta(days=1)
    with sessions.begin() as s:
        a, b = _campaign(s, "a"), _campaign(s, "b")
        _attempt(s, a, FR1, NOW - 31 * day - timedelta(seconds=1))  # too old
        _attempt(s, a, FR1, NOW - 31 * day + timedelta(seconds=1))
        _attempt(s, b, FR1, NOW - 2 * day)  # another campaign: counts
        _attempt(s, a, FR1, NOW - 3 * day, sent=False)  # never sent to the PBX: not counted
        _attempt(s, b, FR1, NOW - 4 * day, sent=False, state="originating")  # in flight
        _attempt(s, a, FR1, NOW)  # at now: counts
        _attempt(s, a, FR1, NOW + timedelta(seconds=1))  # after now: not yet
        _attempt(s, a, FR2, NOW - day)
    with sessions() as s:
        got = facts_of(s, [FR1, FR2, FR3])
    assert got[FR1].attempts == (
        NOW - 31 * day + timedelta(seconds=1),
        NOW - 4 * day,
        NOW - 2 * day,
        NOW,
    )
    assert all(a.tzinfo is not None for a in got[FR1].attempts)
    assert got[FR2].attempts == (NOW - day,)
    assert got[FR3].attempts == ()


def test_five_stored_attempts_defer_the_fifth_call(sessions: sessionmaker[Session]) -> None:
    day = timedelta(days=1)
    with sessions.begin() as s:
        a, b = _campaign(s, "a"), _campaign(s, "b")
        consent(s, FR1, "granted", NOW - 60 * day)
        consent(s, FR2, "granted", NOW - 60 * day)
        for i, c in enumerate((a, b, a, b)):
            _attempt(s, c, FR1, NOW - (7 + i) * day)
            _attempt(s, c, FR2, NOW - (7 + i) * day, sent=i != 0)  # one never sent
    rules = CampaignRules(Purpose.MARKETING, Audience.B2C)
    with sessions() as s:
        got = facts_of(s, [FR1, FR2])
    capped = decide(got[FR1], rules, PACKS, NOW)
    assert (capped.verdict, capped.reason) == (Verdict.DEFER, Reason.FREQUENCY_CAP)
    assert capped.until == NOW + 20 * day  # the oldest + 30 days: Tuesday 15 Dec, 11:00
    assert decide(got[FR2], rules, PACKS, NOW).verdict is Verdict.ALLOW


def test_last_machine_in_24_hours(sessions: sessionmaker[Session]) -> None:
    hour = timedelta(hours=1)
    with sessions.begin() as s:
        a = _campaign(s, "a")
        _attempt(s, a, UK1, NOW - 30 * hour, outcome="machine")  # too old
        _attempt(s, a, UK1, NOW - 5 * hour, outcome="machine", ended=NOW - 5 * hour)
        _attempt(s, a, UK1, NOW - 2 * hour, outcome="machine", ended=NOW - 2 * hour)
        _attempt(s, a, UK1, NOW - hour, outcome="human")
        _attempt(s, a, "+442079460002", NOW - 25 * hour, outcome="machine")
        _attempt(s, a, "+442079460003", NOW + hour, outcome="machine", ended=NOW + hour)
    with sessions() as s:
        got = facts_of(s, [UK1, "+442079460002", "+442079460003"])
    last = got[UK1].last_machine_at
    assert last == NOW - 2 * hour and last.tzinfo is not None  # type: ignore[union-attr]
    assert got["+442079460002"].last_machine_at is None
    assert got["+442079460003"].last_machine_at is None  # after now: not known yet
    rules = CampaignRules(Purpose.MARKETING, Audience.B2C)
    with sessions() as s:
        consent(s, UK1, "granted", NOW - timedelta(days=30))
        s.flush()
        uk = facts_of(s, [UK1])[UK1]
    d = decide(uk, rules, PACKS, NOW)  # the gate can add the silence to the stored instant
    assert (d.verdict, d.reason) == (Verdict.DEFER, Reason.MACHINE_RECENTLY)
    assert d.until == NOW - 2 * hour + timedelta(hours=24)


def test_attempt_history_with_no_numbers(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        assert attempt_history(s, [], NOW) == ({}, {})


# --------------------------------------------------------------------------- contact fields


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"professional": "Professionnel"}, True),
        ({"professional": "oui"}, True),
        ({"professional": "Oui "}, True),
        ({"professional": "B2B"}, True),
        ({"professional": "Particulier"}, False),
        ({"professional": "non"}, False),
        ({"professional": ""}, False),
        ({"Type de client": "Entreprise"}, True),
        ({"type_client": "société"}, True),
        ({"B2B": "x"}, True),
        ({"company": "Société Fictive"}, False),  # a company name alone is not a marker
        ({"first_name": "oui"}, False),
        ({}, False),
    ],
)
def test_is_professional(fields: dict[str, Any], expected: bool) -> None:
    assert is_professional(fields) is expected


@pytest.mark.parametrize(
    ("fields", "subdivision"),
    [
        ({"region": "Moselle"}, "57"),
        ({"region": "Bas-Rhin"}, "67"),
        ({"postal_code": "57000"}, "57"),
        ({"postal_code": "67000"}, "67"),
        ({"postal_code": "75001"}, "75"),
        ({"region": "Grand Est"}, None),
        ({"region": "Île-de-France"}, None),
        ({"region": "57"}, "57"),
        ({}, None),
    ],
)
def test_subdivision_from_contact_fields(
    sessions: sessionmaker[Session], fields: dict[str, Any], subdivision: str | None
) -> None:
    with sessions() as s:
        got = facts_of(s, [(FR1, fields)])
    assert got[FR1].subdivision == subdivision


def test_subdivision_only_for_french_numbers_and_professional_flag(
    sessions: sessionmaker[Session],
) -> None:
    fields = {"region": "Moselle", "professional": "oui"}
    with sessions() as s:
        got = facts_of(s, [(US1, fields), (FR2, fields), (FR3, {"professional": "Particulier"})])
    assert got[US1].subdivision is None and got[US1].professional
    assert got[FR2].subdivision == "57" and got[FR2].professional
    assert not got[FR3].professional


def test_region_moselle_closes_26_december_only_when_known(
    sessions: sessionmaker[Session],
) -> None:
    boxing_day = datetime(2024, 12, 26, 11, tzinfo=PARIS)  # a Thursday
    with sessions.begin() as s:
        consent(s, FR1, "granted", boxing_day - timedelta(days=10))
    rules = CampaignRules(Purpose.MARKETING, Audience.B2C)
    packs = build_packs(unknown_region_holidays="national")
    with sessions() as s:
        rows = [(FR1, {"region": "Moselle"})]
        moselle = load_facts(s, KEY, packs, rows, Purpose.MARKETING, boxing_day)[0]
        rows = [(FR1, {"postal_code": "75001"})]
        paris = load_facts(s, KEY, packs, rows, Purpose.MARKETING, boxing_day)[0]
    assert decide(moselle, rules, packs, boxing_day).reason is Reason.PUBLIC_HOLIDAY
    assert decide(paris, rules, packs, boxing_day).verdict is Verdict.ALLOW


# --------------------------------------------------------------------------- malformed numbers


@pytest.mark.parametrize(
    "bad",
    [
        "+33199000010\r\n",
        "+33199000010\n",
        "\r+33199000010",
        "+33199000010\r\nAction: Hangup",
        "0199000010",
        "+33 1 99 00 00 10",
        "",
        "+",
    ],
)
def test_a_malformed_number_does_not_raise_and_is_blocked(
    sessions: sessionmaker[Session], bad: str
) -> None:
    with sessions.begin() as s:
        add_opt_out(s, KEY, FR1, source="cli", at=NOW - timedelta(days=1))
        consent(s, FR1, "granted", NOW - timedelta(days=1), purpose="informational")
    with sessions() as s:
        out = load_facts(s, KEY, PACKS, [(bad, {}), (FR2, {})], Purpose.INFORMATIONAL, NOW)
    assert [f.profile.number for f in out] == [bad, FR2]
    facts = out[0]
    assert facts.consent is None and facts.attempts == () and not facts.on_national_list
    for purpose in Purpose:
        d = decide(facts, CampaignRules(purpose, Audience.B2C), PACKS, NOW)
        assert (d.verdict, d.reason) == (Verdict.BLOCK, Reason.INVALID_NUMBER)


def test_now_in_any_zone_gives_the_same_facts(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        a = _campaign(s, "a")
        _attempt(s, a, FR1, NOW - timedelta(minutes=30))
        consent(s, FR1, "granted", NOW - timedelta(minutes=30))
    with sessions() as s:
        paris = facts_of(s, [FR1], now=NOW)[FR1]
        utc = facts_of(s, [FR1], now=NOW.astimezone(UTC))[FR1]
        # 45 minutes earlier, written in Paris time: the attempt and consent are later
        before = facts_of(s, [FR1], now=NOW - timedelta(minutes=45))[FR1]
    assert paris == utc
    assert len(paris.attempts) == 1 and paris.consent is not None
    assert before.attempts == () and before.consent is None


def test_an_overseas_address_adds_its_time_zone(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        got = facts_of(s, [(FR1, {"postal_code": "97411"}), (FR1.replace("10", "11"), {})])
    assert got[FR1].subdivision == "974"
    assert got[FR1].extra_zones == ("Indian/Reunion",)
    assert got[FR1.replace("10", "11")].extra_zones == ()
