"""Every place that writes the proof journal: the dialer (gate decisions, attempts, message
drops, campaign completion, key-press opt-outs, recovery) and the services (opt-outs,
refusals, consents, contact / consent / opposition imports, campaign lifecycle).

Each test checks the entry's subject (keyed hash of the number), actor and data, and that
no entry's data holds a callee's number. Fictional numbers only (+33 1 99 00 xx xx).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from journal_fakes import (
    AUDIO_SHA,
    CALLER_ID,
    GATE,
    PARIS,
    VOICEMAIL_SHA,
    FakePbx,
    assert_no_number,
    entries,
    make_campaign,
    run_dialer,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.audio.tts import Voice
from voicecast.campaigns.service import (
    CampaignSpec,
    DeclarationSpec,
    create_campaign,
    declare_campaign,
    set_status,
    start_campaign,
)
from voicecast.clock import ManualClock
from voicecast.compliance.consent import import_consents, record_consent
from voicecast.compliance.suppression import (
    add_opt_out,
    add_refusal,
    import_opposition_list,
    import_opt_outs,
)
from voicecast.contacts.importer import parse_contacts_file
from voicecast.contacts.service import import_contacts
from voicecast.dialer.flow import FlowPlan
from voicecast.dialer.prompts import PromptSet, Speaker
from voicecast.journal import acting_as, kinds, subject_of
from voicecast.journal.events import AudioIndex, played_prompts, scrub
from voicecast.journal.store import head
from voicecast.scenarios.model import MESSAGE_AUDIO, VOICEMAIL_AUDIO
from voicecast.storage.models import (
    AudioMessage,
    CallAttempt,
    Campaign,
    CampaignContact,
    Consent,
    GateDecision,
    OppositionList,
    utcnow,
)

KEY = GATE.key
HUMAN, OPTING_OUT, MACHINE, BUSY, NO_ANSWER, NOWHERE = (
    "+33199000010",
    "+33199000011",
    "+33199000012",
    "+33199000013",
    "+33199000014",
    "+33199000016",
)
WEDNESDAY = datetime(2026, 11, 25, 11, tzinfo=PARIS)  # in the past of the stores' checks


def _subject(number: str) -> str:
    return subject_of(KEY, number)


# --- the dialer ----------------------------------------------------------------------------


def test_every_attempt_decision_and_drop_of_a_campaign_is_journaled(
    sessions: sessionmaker[Session],
) -> None:
    numbers = [HUMAN, MACHINE, BUSY, NO_ANSWER, NOWHERE]
    make_campaign(sessions, numbers)
    run_dialer(sessions, FakePbx())

    with sessions() as s:
        attempts = {a.id: a for a in s.scalars(select(CallAttempt))}
        decisions = list(s.scalars(select(GateDecision)))
        outcomes = {a.number: a.outcome for a in attempts.values()}
    assert outcomes == {
        HUMAN: "human",
        MACHINE: "machine",
        BUSY: "busy",
        NO_ANSWER: "no_answer",
        NOWHERE: "invalid_number",
    }
    # one call.attempt per attempt row, naming its subject, with the row's facts
    journaled = entries(sessions, kinds.CALL_ATTEMPT)
    assert len(journaled) == len(attempts) == 5
    for row, data in journaled:
        attempt = attempts[data["attempt_id"]]
        assert row.subject == _subject(attempt.number)
        assert row.actor == "system"
        assert data["outcome"] == attempt.outcome
        assert data["campaign"] == "spring" and data["caller_id"] == CALLER_ID
        assert data["attempt_no"] == 1 and data["ended_at"] and data["started_at"]
    busy = next(d for _, d in journaled if d["outcome"] == "busy")
    assert busy["hangup_cause"] == 17
    # one gate.decision per stored decision; an allow carries the declared legal basis
    gates = entries(sessions, kinds.GATE_DECISION)
    assert len(gates) == len(decisions) == 5
    for row, data in gates:
        assert data["verdict"] == "allow" and data["attempt_id"] in attempts
        assert row.subject == _subject(attempts[data["attempt_id"]].number)
        assert data["legal_basis"]["basis"] == "contract"
        assert data["legal_basis"]["declared"] is True
        assert data["legal_basis"]["purpose"] == "informational"
    # a drop for the person and the machine, none for the calls nobody answered
    drops = {row.subject: data for row, data in entries(sessions, kinds.MESSAGE_DROPPED)}
    assert set(drops) == {_subject(HUMAN), _subject(MACHINE)}
    person, machine = drops[_subject(HUMAN)], drops[_subject(MACHINE)]
    assert (person["delivered_to"], person["audio"], person["audio_sha256"]) == (
        "human",
        "spring-message",
        AUDIO_SHA,
    )
    assert (machine["delivered_to"], machine["audio"], machine["audio_sha256"]) == (
        "machine",
        "spring-voicemail",
        VOICEMAIL_SHA,
    )
    for drop in (person, machine):
        assert drop["caller_id"] == CALLER_ID
        assert drop["played_at"] and drop["played_ms"] == 1000 and drop["completed"] is True
        assert drop["legal_basis"]["basis"] == "contract"
        assert (drop["purpose"], drop["sender"]) == ("informational", "Fictive Energie")
        assert drop["attempt_id"] in attempts
    # the campaign's completion, by the dialer
    ((row, data),) = entries(sessions, kinds.CAMPAIGN_CHANGED)
    assert (data["action"], data["status"], row.actor) == ("completed", "completed", "system")
    assert_no_number(sessions, numbers)
    with sessions() as s:
        assert head(s).seq == len(entries(sessions))


def test_a_consent_campaign_drop_cites_the_consent_the_gate_relied_on(
    sessions: sessionmaker[Session],
) -> None:
    make_campaign(sessions, [HUMAN], purpose="marketing", legal_basis=None)
    with sessions() as s, s.begin():
        # an older withdrawn record and the grant in force: the grant is cited
        record_consent(
            s,
            phone=HUMAN,
            purpose="marketing",
            status="withdrawn",
            recorded_at=WEDNESDAY - timedelta(days=30),
            source="email",
            proof_ref="mail-1",
            now=WEDNESDAY,
            key=KEY,
        )
        granted = record_consent(
            s,
            phone=HUMAN,
            purpose="marketing",
            status="granted",
            recorded_at=WEDNESDAY - timedelta(days=3),
            source="form",
            proof_ref="form-2026-118",
            wording_version="v3",
            batch="crm-2026-11",
            now=WEDNESDAY,
            key=KEY,
        )
        consent_id = granted.id
        s.add(
            OppositionList(
                name="bloctel",
                country="FR",
                list_date=WEDNESDAY - timedelta(days=2),
                imported_at=WEDNESDAY - timedelta(days=2),
                entries=0,
                invalid_lines=0,
                source_file="bloctel.txt",
                sha256="0" * 64,
            )
        )
    run_dialer(sessions, FakePbx(), clock=ManualClock(WEDNESDAY))

    ((row, drop),) = entries(sessions, kinds.MESSAGE_DROPPED)
    assert row.subject == _subject(HUMAN)
    basis = drop["legal_basis"]
    assert basis["basis"] == "consent" and basis["purpose"] == "marketing"
    assert "L34-5" in basis["rule_source"]
    assert basis["consent"] == {
        "id": consent_id,
        "proof_ref_sha256": hashlib.sha256(b"form-2026-118").hexdigest(),
        "source": "form",
        "recorded_at": "2026-11-22T10:00:00+00:00",
        "batch": "crm-2026-11",
        "wording_version": "v3",
    }
    ((_, gate),) = entries(sessions, kinds.GATE_DECISION)
    assert gate["legal_basis"] == basis
    assert_no_number(sessions, [HUMAN])


def test_blocked_and_deferred_decisions_are_journaled_without_the_number(
    sessions: sessionmaker[Session],
) -> None:
    malformed = "+3319900001"  # E.164 in form, but no such French number: blocked
    make_campaign(sessions, [HUMAN, malformed], purpose="marketing", legal_basis=None)
    with sessions() as s, s.begin():
        s.add(
            OppositionList(
                name="bloctel",
                country="FR",
                list_date=WEDNESDAY - timedelta(days=2),
                imported_at=WEDNESDAY - timedelta(days=2),
                entries=0,
                invalid_lines=0,
                source_file="bloctel.txt",
                sha256="0" * 64,
            )
        )
    run_dialer(sessions, FakePbx(), clock=ManualClock(WEDNESDAY))
    gates = {row.subject: data for row, data in entries(sessions, kinds.GATE_DECISION)}
    assert gates[_subject(HUMAN)]["verdict"] == "block"
    assert gates[_subject(HUMAN)]["reason"] == "no_consent"
    assert "legal_basis" not in gates[_subject(HUMAN)]
    invalid = gates[_subject(malformed)]
    assert (invalid["verdict"], invalid["reason"]) == ("block", "invalid_number")
    assert invalid["detail"] == "<number> is not a valid number"
    assert entries(sessions, kinds.CALL_ATTEMPT) == []
    assert_no_number(sessions, [HUMAN, malformed])


def test_a_key_press_opt_out_is_journaled_as_the_callee(sessions: sessionmaker[Session]) -> None:
    make_campaign(sessions, [OPTING_OUT])
    run_dialer(sessions, FakePbx())
    ((row, data),) = entries(sessions, kinds.OPTOUT_RECORDED)
    assert row.subject == _subject(OPTING_OUT) and row.actor == "callee"
    assert (data["source"], data["campaign"]) == ("key-press", "spring")
    ((_, attempt),) = entries(sessions, kinds.CALL_ATTEMPT)
    assert attempt["outcome"] == "opted_out"
    ((_, drop),) = entries(sessions, kinds.MESSAGE_DROPPED)  # 400 ms heard before the key
    assert drop["played_ms"] == 400 and drop["completed"] is False
    assert_no_number(sessions, [OPTING_OUT])


def test_an_attempt_never_sent_and_one_left_by_a_killed_controller_are_journaled(
    sessions: sessionmaker[Session],
) -> None:
    cid = make_campaign(sessions, [HUMAN, BUSY])
    with sessions() as s, s.begin():  # a killed controller left this attempt answered
        cc = s.scalars(select(CampaignContact).where(CampaignContact.phone_e164 == BUSY)).one()
        cc.state, cc.attempts, cc.last_attempt_id = "dialing", 1, "f" * 32
        s.add(
            CallAttempt(
                id="f" * 32,
                campaign_id=cid,
                campaign_contact_id=cc.id,
                number=BUSY,
                attempt_no=1,
                state="answered",
                created_at=utcnow() - timedelta(minutes=1),
                originate_sent_at=utcnow() - timedelta(minutes=1),
                amd_status="MACHINE",
                amd_cause="LONGGREETING-1500-1500",
            )
        )
    run_dialer(sessions, FakePbx(unavailable_first=1))
    with sessions() as s:
        rows = list(s.scalars(select(CallAttempt)))
    journaled = {d["attempt_id"]: (row, d) for row, d in entries(sessions, kinds.CALL_ATTEMPT)}
    assert set(journaled) == {a.id for a in rows} and len(rows) == 3
    recovered = journaled["f" * 32][1]
    assert recovered["outcome"] == "machine" and recovered["error"].startswith("interrupted")
    not_sent = [d for _, d in journaled.values() if (d["error"] or "").startswith("not sent")]
    assert len(not_sent) == 1 and not_sent[0]["outcome"] == "failed"
    assert journaled["f" * 32][0].subject == _subject(BUSY)
    assert_no_number(sessions, [HUMAN, BUSY])


# --- services ------------------------------------------------------------------------------


def test_opt_outs_are_journaled_once_with_the_acting_user(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin(), acting_as("cli:tester"):
        assert add_opt_out(s, KEY, HUMAN, source="cli", at=utcnow(), note=f"asked {HUMAN}")
        assert not add_opt_out(s, KEY, HUMAN, source="api", at=utcnow())  # already there
    ((row, data),) = entries(sessions, kinds.OPTOUT_RECORDED)
    assert (row.subject, row.actor) == (_subject(HUMAN), "cli:tester")
    assert data["source"] == "cli" and data["campaign"] is None and "note" not in data
    with sessions() as s, s.begin():
        add_opt_out(s, KEY, MACHINE, source="call-back", at=utcnow())
    assert entries(sessions, kinds.OPTOUT_RECORDED)[-1][0].actor == "callee"
    assert_no_number(sessions, [HUMAN, MACHINE])


def test_an_opt_out_file_journals_each_number_it_adds(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions() as s, s.begin():
        add_opt_out(s, KEY, HUMAN, source="cli", at=utcnow())
    path = tmp_path / "optouts.csv"
    path.write_text(f"phone\n{HUMAN}\n{MACHINE}\n01 99 00 00 13\nnot a number\n")
    with sessions() as s, s.begin():
        summary = import_opt_outs(s, KEY, path, "FR")
    assert (summary.added, summary.already) == (2, 1)
    journaled = entries(sessions, kinds.OPTOUT_RECORDED)
    assert [row.subject for row, _ in journaled] == [
        _subject(HUMAN),
        _subject(MACHINE),
        _subject(BUSY),
    ]
    assert {d["source"] for _, d in journaled[1:]} == {"import"}
    assert_no_number(sessions, [HUMAN, MACHINE, BUSY])


def test_a_refusal_is_journaled_with_its_campaign(sessions: sessionmaker[Session]) -> None:
    cid = make_campaign(sessions, [HUMAN])
    with sessions() as s, s.begin():
        add_refusal(s, KEY, HUMAN, at=utcnow(), campaign_id=cid, source="agent")
    ((row, data),) = entries(sessions, kinds.REFUSAL_RECORDED)
    assert row.subject == _subject(HUMAN)
    assert (data["campaign"], data["campaign_id"], data["source"]) == ("spring", cid, "agent")
    assert_no_number(sessions, [HUMAN])


def test_a_consent_is_journaled_with_its_subject_and_a_file_once(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    now = utcnow()
    with sessions() as s, s.begin():
        one = record_consent(
            s,
            phone="01 99 00 00 10",
            purpose="marketing",
            status="granted",
            recorded_at=now - timedelta(days=1),
            source="web",
            proof_ref="form-42",
            key=KEY,
        )
        consent_id = one.id
    ((row, data),) = entries(sessions, kinds.CONSENT_RECORDED)
    assert row.subject == _subject(HUMAN)
    assert data["consent_id"] == consent_id and data["proof_ref_sha256"] == (
        hashlib.sha256(b"form-42").hexdigest()
    )
    assert (data["purpose"], data["status"], data["source"]) == ("marketing", "granted", "web")
    path = tmp_path / "consents.csv"
    path.write_text(
        "telephone,purpose,status,date,proof,nom\n"
        f"{MACHINE},marketing,granted,2026-01-05,doc-1,Camille Fictif\n"
        f"{BUSY},marketing,withdrawn,2026-01-06,doc-2,Dominique Fictif\n"
        "bad,marketing,granted,2026-01-06,doc-3,Alex Fictif\n",
        encoding="utf-8",
    )
    with sessions() as s, s.begin():
        summary = import_consents(s, path, skip_invalid=True)
    ((row, data),) = entries(sessions, kinds.CONSENTS_IMPORTED)
    assert row.subject is None
    assert data["batch"] == summary.batch
    assert data["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (data["rows"], data["imported"], data["rejected"]) == (3, 2, 1)
    assert data["columns_dropped"] == ["nom"] and "telephone" in data["columns_kept"]
    with sessions() as s:
        batches = set(s.scalars(select(Consent.batch).where(Consent.batch.is_not(None))))
    assert batches == {summary.batch}
    assert len(entries(sessions, kinds.CONSENT_RECORDED)) == 1  # the file: one entry only
    for entry, _ in entries(sessions):
        assert "Camille" not in entry.data and "Dominique" not in entry.data
    assert_no_number(sessions, [HUMAN, MACHINE, BUSY])


def test_a_contact_import_is_journaled_with_the_file_hash_and_columns(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_text(
        "prénom,nom,téléphone,commentaire\n"
        f"Camille,Fictif,{HUMAN},rappeler lundi\n"
        f"Dominique,Fictif,{MACHINE},\n"
        "Alex,Fictif,pas de numéro,\n",
        encoding="utf-8",
    )
    result = parse_contacts_file(path)
    with sessions() as s, s.begin():
        assert import_contacts(s, "clients", result) == (2, 0, 0)
    ((row, data),) = entries(sessions, kinds.CONTACTS_IMPORTED)
    assert row.subject is None and row.actor == "system"
    assert data["list"] == "clients"
    assert data["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (data["rows"], data["imported"], data["rejected"]) == (3, 2, 1)
    assert data["columns_kept"][0] == "téléphone"
    assert set(data["columns_kept"]) == {"téléphone", "prénom", "nom"}
    assert data["columns_dropped"] == ["commentaire"]
    assert "Camille" not in row.data and "lundi" not in row.data
    assert_no_number(sessions, [HUMAN, MACHINE])


def test_an_opposition_list_import_is_journaled(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "bloctel.txt"
    path.write_text(f"{HUMAN}\n{MACHINE}\nnope\n")
    with sessions() as s, s.begin():
        import_opposition_list(s, KEY, "bloctel", path, as_of=None, now=utcnow())
    ((row, data),) = entries(sessions, kinds.OPPOSITION_IMPORTED)
    assert row.subject is None
    assert (data["list"], data["entries"], data["invalid_lines"]) == ("bloctel", 2, 1)
    assert data["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_no_number(sessions, [HUMAN, MACHINE])


def test_the_campaign_lifecycle_is_journaled(sessions: sessionmaker[Session]) -> None:
    make_campaign(sessions, [HUMAN], name="base")  # a list and audio to build on
    with sessions() as s, s.begin(), acting_as("user:alice"):
        spec = CampaignSpec(
            name="autumn",
            list_name="base-list",
            message="spring-message",
            caller_id="01 62 00 00 00",
            max_channels=1,
            cps=1.0,
            ring_timeout=20,
            retries=0,
            retry_delay=60,
            retry_outcomes=(),
            declaration=DeclarationSpec(
                purpose="informational",
                audience="b2c",
                sender_name="Fictive Energie",
                on_behalf_of="Fictive Energie",
                optout_key="9",
                legal_basis="contract",
            ),
        )
        create_campaign(s, spec)
        start_campaign(s, "autumn")
        set_status(s, "autumn", "paused")
        declare_campaign(
            s,
            "autumn",
            DeclarationSpec(
                purpose="informational",
                audience="b2c",
                sender_name="Fictive Energie",
                on_behalf_of="Fictive Energie",
                optout_key="9",
                legal_basis="legitimate_interest",
            ),
        )
        start_campaign(s, "autumn")
        start_campaign(s, "autumn")  # already running: no change, no entry
        set_status(s, "autumn", "stopped")
    changes = [(row.actor, d["action"], d["status"]) for row, d in entries(sessions)]
    assert changes == [
        ("user:alice", "created", "draft"),
        ("user:alice", "started", "running"),
        ("user:alice", "paused", "paused"),
        ("user:alice", "declared", "paused"),
        ("user:alice", "resumed", "running"),
        ("user:alice", "stopped", "stopped"),
    ]
    created = entries(sessions)[0][1]
    assert (created["legal_basis"], created["caller_id"]) == ("contract", CALLER_ID)
    assert entries(sessions)[3][1]["legal_basis"] == "legitimate_interest"


def test_a_rolled_back_transaction_leaves_no_entry(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    make_campaign(sessions, [HUMAN])
    before = len(entries(sessions))
    with sessions() as s:
        s.begin()
        add_opt_out(s, KEY, HUMAN, source="cli", at=utcnow())
        add_refusal(s, KEY, HUMAN, at=utcnow(), source="cli")
        set_status(s, "spring", "paused")
        assert head(s).seq == before + 3
        s.rollback()
    with sessions() as s:
        assert head(s).seq == before
        assert s.get(Campaign, 1).status == "running"  # type: ignore[union-attr]
    assert len(entries(sessions)) == before
    path = tmp_path / "c.csv"
    path.write_text(f"phone\n{MACHINE}\n")
    with pytest.raises(RuntimeError), sessions() as s, s.begin():
        import_contacts(s, "doomed", parse_contacts_file(path))
        raise RuntimeError("the caller fails after the import")
    assert len(entries(sessions)) == before


# --- pieces ----------------------------------------------------------------------------------


def test_scrub_removes_the_number_in_any_writing() -> None:
    assert scrub(f"not sent: bad number {HUMAN}", HUMAN) == "not sent: bad number <number>"
    assert scrub("dial 33199000010 failed", HUMAN) == "dial <number> failed"
    assert scrub("call 01 99 00 00 10 later", HUMAN) == "call <number> later"
    assert scrub("other +33 2 61 91 00 00 here", HUMAN) == "other <number> here"
    assert scrub("Q.850 cause 17, attempt 3", HUMAN) == "Q.850 cause 17, attempt 3"
    assert scrub(None, HUMAN) is None


def test_the_audio_index_names_library_audio_and_hashes_spoken_texts(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    cid = make_campaign(sessions, [HUMAN])
    tts = tmp_path / "tts"
    tts.mkdir()
    (tts / "tts-abc.wav").write_bytes(b"RIFF fake speech")
    speaker = Speaker(cache_dir=tts, cache_dir_on_pbx="/pbx/sounds/tts")
    prompts = PromptSet(
        speaker,
        Voice(name="fr"),
        {MESSAGE_AUDIO: "/pbx/sounds/spring-message", VOICEMAIL_AUDIO: "/pbx/sounds/vm"},
    )
    flow = FlowPlan(message="/pbx/sounds/spring-message", voicemail_message="", prompts=prompts)
    with sessions() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        audio = {a.name: a for a in s.scalars(select(AudioMessage))}
        index = AudioIndex.for_plan(s, campaign, flow)
    assert index.lookup("/pbx/sounds/spring-message") == ("spring-message", AUDIO_SHA)
    assert index.lookup("/pbx/sounds/vm") == ("spring-voicemail", audio["spring-voicemail"].sha256)
    speech = hashlib.sha256(b"RIFF fake speech").hexdigest()
    assert index.lookup("/pbx/sounds/tts/tts-abc") == ("tts/tts-abc", speech)
    assert index.lookup("/pbx/sounds/tts/tts-missing") == ("tts/tts-missing", None)
    assert index.lookup("/elsewhere/beep") == ("beep", None)
    t0 = datetime(2026, 1, 5, 10, tzinfo=PARIS)
    played = played_prompts(
        [
            {"sound": "/pbx/sounds/spring-message", "ms": 1200, "completed": True},
            {"sound": "/pbx/sounds/tts/tts-abc", "ms": 0, "completed": False},
            {"sound": "/pbx/sounds/vm", "ms": 0, "completed": False, "missing": True},
        ],
        [("/pbx/sounds/spring-message", t0), ("/pbx/sounds/tts/tts-abc", t0)],
        index,
    )
    assert played == [
        {
            "audio": "spring-message",
            "audio_sha256": AUDIO_SHA,
            "at": t0,
            "ms": 1200,
            "completed": True,
        }
    ]
