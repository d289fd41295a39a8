"""Campaign creation rules, start, and the report's shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.campaigns.service import (
    CampaignError,
    CampaignSpec,
    DeclarationSpec,
    apply_declaration,
    create_campaign,
    normalize_caller_id,
    report_rows,
    start_campaign,
)
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import (
    AudioMessage,
    CallAttempt,
    CampaignContact,
    Contact,
    ContactList,
)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(engine)
    sf = session_factory(engine)
    with sf() as s, s.begin():
        clist = ContactList(name="clients")
        s.add(clist)
        s.add(
            AudioMessage(
                name="msg",
                file_name="msg.wav",
                sha256="0" * 64,
                duration_ms=9000,
                source_name="msg.wav",
            )
        )
        s.flush()
        s.add_all(
            Contact(list_id=clist.id, phone_e164=n, fields={"first_name": f}, source_line=i)
            for i, (n, f) in enumerate([("+33199000010", "Camille"), ("+33199000013", "Hugo")])
        )
    return sf


def spec(**kw: object) -> CampaignSpec:
    base: dict[str, object] = {
        "name": "spring",
        "list_name": "clients",
        "message": "msg",
        "caller_id": "01 62 00 00 00",
    }
    base.update(kw)
    return CampaignSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("01 62 00 00 00", "FR", "+33162000000"),
        ("+33 1 62 00 00 00", "US", "+33162000000"),
        ("(202) 555-0100", "US", "+12025550100"),
        ("020 7946 0000", "GB", "+442079460000"),
    ],
)
def test_caller_id_is_normalised_to_e164(raw: str, region: str, expected: str) -> None:
    assert normalize_caller_id(raw, region) == expected


@pytest.mark.parametrize("raw", ["0162ABCDEF", "123", "0162000000\r\nAction: Hangup", "+33 1 62;1"])
def test_bad_caller_ids_are_refused(raw: str) -> None:
    with pytest.raises(CampaignError, match="caller ID"):
        normalize_caller_id(raw)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"name": "bad/name"}, "name"),
        ({"list_name": "nope"}, "list"),
        ({"message": "nope"}, "message"),
        ({"voicemail_message": "nope"}, "voicemail message"),
        ({"max_channels": 0}, "max-channels"),
        ({"cps": 0}, "cps"),
        ({"ring_timeout": 4}, "ring-timeout"),
        ({"retries": 21}, "retries"),
        ({"retry_outcomes": ("human",)}, "never retried"),
        ({"retry_outcomes": ("invalid_number",)}, "never retried"),
        ({"retry_outcomes": ("sometimes",)}, "unknown"),
        ({"amd_on_silence": "human"}, "amd-on-silence"),
        ({"amd_params": (("greting", 100),)}, "amd parameter"),
        ({"amd_params": (("greeting", 70000),)}, "amd parameter"),
        ({"amd_params": (("silence_threshold", 40000),)}, "out of range"),  # a level, not ms
        ({"message": "", "message_text": None}, "give an audio name or a text"),
        ({"message_text": "Bonjour {first_name}"}, "give an audio name or a text"),  # both
        ({"message": "", "message_text": "Bonjour {company}"}, r"merge field\(s\) company"),
        ({"message": "", "message_text": "Bonjour [note]"}, "text: unknown markup"),
        ({"message": "", "message_text": "Bonjour", "tts_speed": 900}, "out of range"),
        ({"deliver_to": "everyone"}, "deliver-to"),
        ({"beep_hz": 5000}, "beep-hz"),
        (
            {
                "scenario_text": (
                    "version: 1\nstart: a\nnodes: {a: {type: play, text: 'Hi {company}'}}"
                )
            },
            r"node 'a': text uses merge field \{company\}",
        ),
        ({"scenario_text": "version: 1\nstart: a\nnodes: {a: {type: goto, target: b}}"}, "'b'"),
        ({"scenario_text": ""}, "the document is empty"),  # an empty --scenario file
    ],
)
def test_invalid_campaigns_name_the_field(
    sessions: sessionmaker[Session], kw: dict[str, object], field: str
) -> None:
    with sessions() as s, pytest.raises(CampaignError, match=field):
        create_campaign(s, spec(**kw))


def test_text_and_scenario_campaigns_are_stored_with_their_list_fields(
    sessions: sessionmaker[Session],
) -> None:
    scenario = "version: 1\nstart: a\nnodes: {a: {type: play, text: 'Hi {first_name}'}}"
    with sessions() as s, s.begin():
        c = create_campaign(
            s,
            spec(
                message="",
                message_text="Bonjour {first_name}",
                tts_voice="fr",
                scenario_text=scenario,
                deliver_to="machines",
            ),
        )
        assert c.message_id is None and c.message_text == "Bonjour {first_name}"
        assert c.scenario is not None and c.scenario["nodes"]["a"]["text"] == "Hi {first_name}"
        assert c.deliver_to == "machines"


ADVISER_ON_9 = """
version: 1
start: menu
nodes:
  menu: {type: menu, audio: "$message", keys: {"9": adviser}, timeout: 3}
  adviser: {type: transfer, to: {extension: "agent@sim-agent"}}
"""


def test_declaring_an_opt_out_key_that_a_menu_uses_is_refused(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s, s.begin():
        c = create_campaign(
            s,
            spec(
                scenario_text=ADVISER_ON_9,
                declaration=DeclarationSpec(optout_key="1"),
            ),
        )
        # pressing 9 for the adviser must not opt the person out of every campaign
        with pytest.raises(
            CampaignError, match=r"opt-out key: node 'menu': key '9' is the campaign's opt-out key"
        ):
            apply_declaration(c, DeclarationSpec(optout_key="9"))
        assert c.optout_key == "1"
        apply_declaration(c, DeclarationSpec(optout_key="5"))
        assert c.optout_key == "5"


def test_a_text_longer_than_the_speech_engine_takes_is_refused_at_create(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s, pytest.raises(CampaignError, match="the limit is 5000"):
        create_campaign(s, spec(message="", message_text="Bonjour. " * 600))


def test_duplicate_name_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        create_campaign(s, spec())
    with sessions() as s, pytest.raises(CampaignError, match="already exists"):
        create_campaign(s, spec())


def test_start_queues_each_contact_once_and_report_shows_every_contact(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s, s.begin():
        c = create_campaign(s, spec(amd_params=(("greeting", 2000),)))
        assert c.amd["params"] == {"greeting": 2000}
        assert c.caller_id == "+33162000000"
    with sessions() as s, s.begin():
        c, queued = start_campaign(s, "spring")
        assert (c.status, queued) == ("running", 2)
    with sessions() as s, s.begin():
        assert start_campaign(s, "spring")[1] == 0  # resuming queues nobody twice
    sent = datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)  # 01:59:30 CET, just before the DST jump
    with sessions() as s, s.begin():
        cc = s.scalar(select(CampaignContact).where(CampaignContact.phone_e164 == "+33199000010"))
        assert cc is not None
        cc.state, cc.outcome, cc.attempts = "done", "human", 1
        s.add(
            CallAttempt(
                id="a" * 32,
                campaign_id=cc.campaign_id,
                campaign_contact_id=cc.id,
                number=cc.phone_e164,
                attempt_no=1,
                state="ended",
                outcome="human",
                originate_sent_at=sent,
                ended_at=sent + timedelta(seconds=40),
                amd_status="HUMAN",
                amd_cause="HUMAN-800-800",
                hangup_cause=16,
                hangup_cause_text="Normal Clearing",
                played=[{"sound": "/s/msg", "ms": 9000, "completed": True}],
            )
        )
    with sessions() as s:
        rows = report_rows(s, "spring", ZoneInfo("Europe/Paris"))
    assert [r["number"] for r in rows] == ["+33199000010", "+33199000013"]
    done, pending = rows
    assert done["outcome"] == "human" and done["attempts"] == 1
    assert done["amd_cause"] == "HUMAN-800-800" and done["q850_cause"] == 16
    assert done["message_ms"] == 9000 and done["first_name"] == "Camille"
    assert done["first_attempt_at"] == "2026-03-29T01:59:30+01:00"
    assert pending["outcome"] == "" and pending["state"] == "pending"
    assert pending["next_attempt_at"].endswith(("+01:00", "+02:00"))


def test_a_completed_campaign_cannot_restart(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        c = create_campaign(s, spec())
        c.status = "completed"
    with sessions() as s, pytest.raises(CampaignError, match="completed"):
        start_campaign(s, "spring")


def test_a_completed_campaign_cannot_be_paused_or_stopped(sessions: sessionmaker[Session]) -> None:
    from voicecast.campaigns.service import set_status

    with sessions() as s, s.begin():
        create_campaign(s, spec()).status = "completed"
    for status in ("paused", "stopped"):
        with sessions() as s, pytest.raises(CampaignError, match="already completed"):
            set_status(s, "spring", status)


def test_a_draft_cannot_be_paused_but_can_be_stopped(sessions: sessionmaker[Session]) -> None:
    from voicecast.campaigns.service import set_status

    with sessions() as s, s.begin():
        create_campaign(s, spec())
    with sessions() as s, pytest.raises(CampaignError, match="never started: there is nothing"):
        set_status(s, "spring", "paused")
    with sessions() as s, s.begin():
        assert set_status(s, "spring", "stopped").status == "stopped"


def test_amd_items_and_pacing_defaults_shared_by_the_front_ends() -> None:
    from voicecast.campaigns.service import CampaignError, pacing, parse_amd_items
    from voicecast.config import DialerSettings

    assert parse_amd_items(["greeting=2000", " total_analysis_time=5000"]) == (
        ("greeting", 2000),
        ("total_analysis_time", 5000),
    )
    for bad in ("greeting", "greeting=2s", "greeting=-5"):
        with pytest.raises(CampaignError, match="expected PARAM=MILLISECONDS"):
            parse_amd_items([bad])
    d = DialerSettings()
    got = pacing(d, max_channels=3, cps=None, ring_timeout=None, retries=0, retry_delay=None)
    assert got == {
        "max_channels": 3,
        "cps": d.cps,
        "ring_timeout": d.ring_timeout,
        "retries": 0,
        "retry_delay": d.retry_delay,
    }
