"""Data-subject rights (voicecast.subjects): access, erasure and rectification of one number.

A workspace whose every file lives under ``<tmp>/var`` (database, audio store, PBX sounds
with the speech rendered per contact, replies, console uploads, hash key) is filled the way
the dialer, the importers and the console fill it; after an erasure the number (E.164 and
national), the person's names and their speech are looked for in every table, in the
SQLite file and its WAL, and in every file under ``var/``.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_workspace import make_workspace, run_cli, said
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from tones import tone_wav

from voicecast.app import Runtime, open_runtime, plan_builder
from voicecast.campaigns.compliance import GateEnv, check_campaign
from voicecast.campaigns.service import (
    CampaignSpec,
    DeclarationSpec,
    create_campaign,
    get_campaign,
    start_campaign,
)
from voicecast.compliance.consent import record_consent
from voicecast.compliance.numberfile import InvalidNumberError
from voicecast.compliance.suppression import (
    add_opt_out,
    add_refusal,
    import_opposition_list,
    opposition_hits,
    opt_out_record,
)
from voicecast.config import load_settings
from voicecast.contacts.importer import parse_contacts_file
from voicecast.contacts.service import import_contacts
from voicecast.errors import NotFoundError
from voicecast.journal.store import acting_as, iter_entries, subject_of
from voicecast.register import OPT_OUT_BASIS, PROOF_BASIS, recipients
from voicecast.storage import db as storage_db
from voicecast.storage.models import (
    Base,
    CallAttempt,
    CampaignContact,
    Contact,
    ContactList,
    GateDecision,
    InboundCall,
    JournalEntry,
    OptOut,
    Recording,
    WebhookDelivery,
)
from voicecast.subjects import (
    EXPORT_SCHEMA,
    SubjectBusyError,
    SubjectError,
    SubjectFiles,
    _tts_files,
    erase_subject,
    export_subject,
    rectify_subject,
    vacuum_database,
)
from voicecast.webhooks import create_webhook, enqueue_attempt_completed

NUMBER = "+33199000010"
NATIONAL = "0199000010"
DIGITS = "199000010"  # the national significant number: in every written form
FIRST, LAST = "Philibert", "Quenouille"
OTHER = "+33261910101"
CSV = (
    "Téléphone;Prénom;Nom;Société\n"
    f"01 99 00 00 10;{FIRST};{LAST};Fictive SA\n"
    "02 61 91 01 01;Louis;Démo;\n"
)
VIP_CSV = f"phone,first_name\n+33 1 99 00 00 10,{FIRST}\n"
SCENARIO = """\
version: 1
start: hello
nodes:
  hello:
    type: play
    text: "Hello {first_name} {last_name}."
    voice: en-gb
    next: message
  message:
    type: play
    audio: "$message"
    next: end
  end:
    type: hangup
"""
NEEDLES = (NUMBER, DIGITS, FIRST, LAST)


def _workspace(tmp_path: Path) -> Runtime:
    """A runtime whose every path is relative to the config's folder, under ``var/``."""
    cfg = tmp_path / "voicecast.toml"
    cfg.write_text(
        '[database]\nurl = "sqlite:///var/voicecast.db"\n'
        "[sandbox]\nenabled = false\n"
        '[audio]\nstore_dir = "var/audio"\ntts_cache_dir = "var/tts-cache"\n'
        '[pbx]\nsounds_dir = "var/sounds"\nreplies_dir = "var/replies"\n'
        '[compliance]\nhash_key_file = "var/compliance/hash.key"\n'
    )
    return open_runtime(load_settings(cfg, environ={}))


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = _workspace(tmp_path)
    yield rt
    rt.engine.dispose()


def _key(rt: Runtime, s: Session) -> bytes:
    key, _ = rt.store_key(s)
    return key


def _import(rt: Runtime, list_name: str, body: str, name: str = "clients.csv") -> int:
    """Import ``body`` as the user's file (outside var/); return how many contacts were
    left out because their number was erased."""
    path = rt.settings.base_dir / name
    path.write_text(body, encoding="utf-8")
    result = parse_contacts_file(path)
    with rt.sessions() as s, s.begin():
        import_contacts(s, list_name, result, key=_key(rt, s))
    return result.erased


DECLARATION = DeclarationSpec(
    purpose="informational",
    audience="b2c",
    sender_name="Société Fictive",
    on_behalf_of="Société Fictive",
    optout_key="9",
    legal_basis="contract",
)


@dataclass
class Seeded:
    """Ids and files made by :func:`_seed`."""

    attempt_id: str
    reply: Path
    orphan_reply: Path
    speech: set[Path]  # rendered for the erased person only
    other_speech: set[Path]  # rendered for the other contact, and the shared texts
    upload_with: Path
    upload_rejects: Path
    upload_without: Path


def _render(rt: Runtime, campaign_name: str, fields: dict[str, str]) -> set[Path]:
    """Render a campaign's prompts for a contact exactly as the dialer does before a dial;
    return the speech files that are the contact's own (absent before)."""
    folder = rt.sounds_dir / "tts"
    before = set(folder.glob("*.wav")) if folder.is_dir() else set()
    with rt.sessions() as s:
        campaign = get_campaign(s, campaign_name)
    plan = plan_builder(rt)(campaign)
    assert plan.prompts is not None and plan.scenario is not None
    plan.prompts.prepare(plan.scenario, fields)
    return set(folder.glob("*.wav")) - before


def _seed(rt: Runtime) -> Seeded:
    var = rt.settings.path("var")
    _import(rt, "clients", CSV)
    _import(rt, "vip", VIP_CSV, "vip.csv")
    now = datetime.now(UTC)
    with rt.sessions() as s, s.begin():
        key = _key(rt, s)
        create_campaign(
            s,
            CampaignSpec(
                name="spring",
                list_name="clients",
                message="",
                message_text="Bonjour {first_name}, ceci est un rappel.",
                caller_id="01 62 00 00 00",
                declaration=DECLARATION,
            ),
        )
        create_campaign(
            s,
            CampaignSpec(
                name="greeting",
                list_name="clients",
                message="",
                message_text="Un message pour vous.",
                caller_id="01 62 00 00 00",
                scenario_text=SCENARIO,
                declaration=DECLARATION,
            ),
        )
        create_webhook(s, "https://crm.example.test/hook", ["attempt.completed", "optout.created"])
        start_campaign(s, "spring", now=now)
        campaign = get_campaign(s, "spring")
        cc = s.scalars(select(CampaignContact).where(CampaignContact.phone_e164 == NUMBER)).one()
        cc.state, cc.outcome, cc.attempts = "done", "machine", 1
        attempt = CallAttempt(
            id=str(uuid.uuid4()),
            campaign_id=campaign.id,
            campaign_contact_id=cc.id,
            number=NUMBER,
            attempt_no=1,
            state="ended",
            created_at=now - timedelta(minutes=5),
            originate_sent_at=now - timedelta(minutes=5),
            answered_at=now - timedelta(minutes=4),
            ended_at=now - timedelta(minutes=3),
            outcome="machine",
            hangup_cause=16,
            hangup_cause_text="Normal Clearing",
            amd_status="MACHINE",
            amd_cause="LONGGREETING-2000-2000",
            played=["voicecast/tts/tts-abc"],
            steps=[{"node": "menu", "key": "1"}],
            result="left-message",
        )
        s.add(attempt)
        s.flush()
        cc.last_attempt_id = attempt.id
        s.add(
            GateDecision(
                campaign_id=campaign.id,
                campaign_contact_id=cc.id,
                decided_at=now - timedelta(minutes=5),
                verdict="allow",
                reason="ok",
                rule_source="",
                detail=f"{NUMBER} may be called",
                attempt_id=attempt.id,
            )
        )
        reply = rt.replies_dir / f"{attempt.id}-record.wav"
        reply.parent.mkdir(parents=True, exist_ok=True)
        reply.write_bytes(tone_wav(0.2))
        orphan = rt.replies_dir / f"{attempt.id}-again.wav"
        orphan.write_bytes(tone_wav(0.2))
        s.add(
            Recording(
                attempt_id=attempt.id,
                campaign_id=campaign.id,
                node="record",
                path=str(reply),
                duration_ms=200,
                created_at=now,
                delete_after=now + timedelta(days=30),
            )
        )
        enqueue_attempt_completed(s, attempt, now)
        record_consent(
            s,
            phone=NATIONAL,
            purpose="marketing",
            status="granted",
            recorded_at=now - timedelta(days=10),
            source="form",
            proof_ref="form-2026-0001",
            key=key,
        )
        add_refusal(s, key, NUMBER, at=now - timedelta(days=1), source="agent")
        s.add(
            InboundCall(
                received_at=now - timedelta(hours=1),
                called="+33162000000",
                caller=NUMBER,
                campaign_id=campaign.id,
                action="identified",
                steps=[{"played": "identify"}],
            )
        )
        # the other contact's call and delivery stay
        other_cc = s.scalars(
            select(CampaignContact).where(CampaignContact.phone_e164 == OTHER)
        ).one()
        other_attempt = CallAttempt(
            id=str(uuid.uuid4()),
            campaign_id=campaign.id,
            campaign_contact_id=other_cc.id,
            number=OTHER,
            attempt_no=1,
            state="ended",
            outcome="human",
        )
        s.add(other_attempt)
        s.flush()
        enqueue_attempt_completed(s, other_attempt, now)
    # the other contact first: its renders include the texts every callee shares
    other = _render(rt, "spring", {"first_name": "Louis", "last_name": "Démo"})
    other |= _render(rt, "greeting", {"first_name": "Louis", "last_name": "Démo"})
    speech = _render(rt, "spring", {"first_name": FIRST, "last_name": LAST})
    speech |= _render(rt, "greeting", {"first_name": FIRST, "last_name": LAST})
    assert len(speech) == 2 and len(other) > 2  # the person's message and greeting
    uploads = var / "uploads"

    def upload(name: str, files: dict[str, str]) -> Path:
        folder = uploads / name
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text('{"created": 0}', encoding="utf-8")
        for file_name, body in files.items():
            (folder / file_name).write_text(body, encoding="utf-8-sig")
        return folder

    return Seeded(
        attempt_id=attempt.id,
        reply=reply,
        orphan_reply=orphan,
        speech=speech,
        other_speech=other,
        upload_with=upload("a" * 32, {"data": CSV}),
        upload_rejects=upload(
            "b" * 32,
            {"rejects.csv": f"line,reason,phone,first_name\n3,two,01.99.00.00.10 / 2,{FIRST}\n"},
        ),
        upload_without=upload("c" * 32, {"data": "phone\n+33353010102\n"}),
    )


def _table_hits(rt: Runtime, needles: tuple[str, ...]) -> list[str]:
    """``table.column: needle`` for every stored value containing a needle."""
    hits: list[str] = []
    with rt.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()).mappings():
                for column, value in row.items():
                    shown = json.dumps(value, ensure_ascii=False, default=str)
                    hits += [f"{table.name}.{column}: {n}" for n in needles if n in shown]
    return hits


def _file_hits(folder: Path, needles: tuple[str, ...]) -> list[str]:
    """``path: needle`` for every file under ``folder`` whose bytes hold a needle (UTF-8,
    and UTF-16 for a spreadsheet's text)."""
    hits: list[str] = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            data = path.read_bytes()
            for needle in needles:
                forms = (needle.encode("utf-8"), needle.encode("utf-16-le"))
                if any(form in data for form in forms):
                    hits.append(f"{path.relative_to(folder)}: {needle}")
    return hits


def _erase(rt: Runtime, number: str = NUMBER, **kw: object) -> object:
    with rt.sessions() as s, s.begin(), acting_as("cli:tester"):
        return erase_subject(s, _key(rt, s), number, files=SubjectFiles.of(rt), **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- access


def test_export_holds_everything_about_the_number_and_is_journaled(runtime: Runtime) -> None:
    _seed(runtime)
    with runtime.sessions() as s, s.begin(), acting_as("user:alice"):
        doc = export_subject(s, _key(runtime, s), NUMBER, settings=runtime.settings)
    json.dumps(doc)  # JSON-able as is
    assert doc["schema"] == EXPORT_SCHEMA and doc["version"] == 1 and doc["held"] is True
    assert sorted(c["list"] for c in doc["contacts"]) == ["clients", "vip"]
    clients = next(c for c in doc["contacts"] if c["list"] == "clients")
    assert clients["fields"] == {"first_name": FIRST, "last_name": LAST, "company": "Fictive SA"}
    assert clients["created_at"].endswith("+00:00")
    membership, greeting = doc["campaigns"]  # greeting has not queued the number yet
    assert greeting["campaign"] == "greeting" and greeting["state"].startswith("not queued")
    assert (membership["campaign"], membership["state"], membership["outcome"]) == (
        "spring",
        "done",
        "machine",
    )
    assert membership["gate_decisions"][0]["verdict"] == "allow"
    (attempt,) = doc["call_attempts"]
    assert attempt["amd_status"] == "MACHINE" and attempt["hangup_cause"] == 16
    assert attempt["steps"] == [{"node": "menu", "key": "1"}]
    assert attempt["result"] == "left-message" and attempt["ended_at"].endswith("+00:00")
    (recording,) = doc["recordings"]
    assert recording["file_kept"] is True and "path" not in recording
    assert [c["proof_ref"] for c in doc["consents"]] == ["form-2026-0001"]
    assert [r["source"] for r in doc["refusals"]] == ["agent"]
    assert [i["action"] for i in doc["inbound_calls"]] == ["identified"]
    (delivery,) = doc["webhook_deliveries"]
    assert delivery["receiver"] == "crm.example.test"
    assert delivery["payload"]["data"]["number"] == NUMBER
    assert doc["opt_out"] == {"opted_out": False}
    assert doc["retention"]["contacts_days"] == runtime.settings.retention.contacts_days
    assert any(p.get("campaign") == "spring" for p in doc["purposes"])
    # the same recipients and legal bases as the record of processing (voicecast register)
    with runtime.sessions() as s:
        listed = recipients(s, runtime.settings)
    assert doc["recipients"] == [r.to_dict() for r in listed]
    assert [r["kind"] for r in doc["recipients"]] == ["staff", "crm_webhook", "telephony"]
    assert doc["recipients"][1]["host"] == "crm.example.test"
    assert "carrier" in doc["recipients"][2]["recipient"]
    bases = {p["processing"]: p["legal_basis"] for p in doc["purposes"]}
    assert bases["proof journal"] == PROOF_BASIS and bases["opt-out list"] == OPT_OUT_BASIS
    kinds = [e["kind"] for e in doc["journal"]]
    assert "consent.recorded" in kinds and "refusal.recorded" in kinds
    assert all(set(e) == {"seq", "at", "kind", "data"} for e in doc["journal"])
    with runtime.sessions() as s:
        entry = s.scalars(select(JournalEntry).where(JournalEntry.kind == "subject.exported")).one()
    assert entry.actor == "user:alice"
    assert entry.subject == doc["journal_subject"]
    data = json.loads(entry.data)
    assert data["records"]["contacts"] == 2 and data["records"]["call_attempts"] == 1
    assert NUMBER not in entry.data and DIGITS not in entry.data


def test_export_of_an_unknown_number_says_nothing_is_held(runtime: Runtime) -> None:
    with runtime.sessions() as s, s.begin():
        doc = export_subject(s, _key(runtime, s), "+12025550142", settings=runtime.settings)
    assert doc["held"] is False and doc["opt_out"] == {"opted_out": False}
    assert "contacts" not in doc and doc["note"] == "Nothing is held about this number."


def test_export_refuses_a_number_that_is_not_e164(runtime: Runtime) -> None:
    with runtime.sessions() as s, s.begin(), pytest.raises(InvalidNumberError):
        export_subject(s, _key(runtime, s), "0199000010", settings=runtime.settings)


# --------------------------------------------------------------------------- erasure


def test_erasure_leaves_the_number_nowhere_but_its_keyed_hash(runtime: Runtime) -> None:
    seeded = _seed(runtime)
    var = runtime.settings.path("var")
    assert _table_hits(runtime, NEEDLES) and _file_hits(var, (DIGITS, FIRST))
    result = _erase(runtime)
    assert result.committed and result.checkpointed  # type: ignore[attr-defined]
    assert result.removed == {  # type: ignore[attr-defined]
        "contacts": 2,
        "campaign_contacts": 1,
        "gate_decisions": 1,
        "call_attempts": 1,
        "recordings": 1,
        "consents": 1,
        "refusals": 1,
        "inbound_calls": 1,
        "webhook_deliveries": 1,
    }
    assert result.file_kinds == {  # type: ignore[attr-defined]
        "recordings": 2,
        "speech": len(seeded.speech),
        "uploads": 2,
    }
    assert result.files_removed == len(result.files)  # type: ignore[attr-defined]

    # every table, every column: only the keyed hash is left
    assert _table_hits(runtime, NEEDLES) == []
    # the database file and its WAL: deleted rows were zeroed, the WAL checkpointed
    for path in var.glob("voicecast.db*"):
        data = path.read_bytes()
        for needle in NEEDLES:
            assert needle.encode() not in data, f"{path.name} holds {needle}"
    # every file under var/: replies, speech rendered for the person, console uploads
    assert _file_hits(var, NEEDLES) == []
    assert not seeded.reply.exists() and not seeded.orphan_reply.exists()
    assert not any(p.exists() for p in seeded.speech)
    assert all(p.exists() for p in seeded.other_speech)  # the other contact's are kept
    assert not seeded.upload_with.exists() and not seeded.upload_rejects.exists()
    assert seeded.upload_without.exists()

    with runtime.sessions() as s:
        key = _key(runtime, s)
        record = opt_out_record(s, key, NUMBER)
        assert record is not None and record.source == "erasure"
        # the other contact is untouched
        assert s.scalars(select(Contact.phone_e164)).all() == [OTHER]
        assert s.scalar(select(WebhookDelivery.event_type)) == "attempt.completed"
        # no optout.created delivery: the outbox would hold the number in clear
        assert s.scalars(select(WebhookDelivery)).one().payload["data"]["number"] == OTHER
        (entry,) = s.scalars(select(JournalEntry).where(JournalEntry.kind == "subject.erased"))
        assert entry.actor == "cli:tester" and entry.subject == subject_of(key, NUMBER)
        data = json.loads(entry.data)
        assert data["removed"]["contacts"] == 2 and data["files"]["uploads"] == 2
        assert data["opt_out"] == "added"


def test_vacuum_cleans_a_database_written_without_secure_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = storage_db._sqlite_pragmas

    def before_this_version(busy_timeout_ms: int, conn: Any, record: Any) -> None:
        original(busy_timeout_ms, conn, record)
        conn.execute("PRAGMA secure_delete=OFF")

    monkeypatch.setattr(storage_db, "_sqlite_pragmas", before_this_version)
    rt = _workspace(tmp_path)
    try:
        _seed(rt)
        _erase(rt)
        database = rt.settings.path("var") / "voicecast.db"
        assert _table_hits(rt, NEEDLES) == []
        assert NUMBER.encode() in database.read_bytes()  # old copies in free space
        assert vacuum_database(rt.engine) is True
        for path in database.parent.glob("voicecast.db*"):
            for needle in NEEDLES:
                assert needle.encode() not in path.read_bytes(), f"{path.name}: {needle}"
        with rt.sessions() as s:
            assert opt_out_record(s, _key(rt, s), NUMBER) is not None
    finally:
        rt.engine.dispose()


def test_after_erasure_export_is_only_the_suppression_and_reimport_is_not_callable(
    runtime: Runtime,
) -> None:
    _seed(runtime)
    _erase(runtime)
    with runtime.sessions() as s, s.begin():
        doc = export_subject(s, _key(runtime, s), NUMBER, settings=runtime.settings)
    assert set(doc) == {
        "schema",
        "version",
        "generated_at",
        "number",
        "journal_subject",
        "held",
        "opt_out",
        "opposition_lists",
        "erased_at",
        "note",
    }
    assert doc["held"] is False and doc["opposition_lists"] == []
    assert doc["opt_out"]["opted_out"] is True and doc["opt_out"]["source"] == "erasure"
    assert doc["opt_out"]["since"] == doc["erased_at"]

    # the same file imported again (the CRM still holds the person): not stored again
    assert _import(runtime, "clients", CSV) == 1
    with runtime.sessions() as s, s.begin():
        assert not s.scalars(select(Contact).where(Contact.phone_e164 == NUMBER)).all()
        again = export_subject(s, _key(runtime, s), NUMBER, settings=runtime.settings)
    assert again["held"] is False and "contacts" not in again
    # and were it stored another way (a list written before the erasure feature), the
    # gate blocks it
    with runtime.sessions() as s, s.begin():
        lst = s.scalars(select(ContactList).where(ContactList.name == "clients")).one()
        s.add(Contact(list_id=lst.id, phone_e164=NUMBER, fields={}))
    with runtime.sessions() as s:
        env = GateEnv.build(_key(runtime, s), runtime.settings.compliance)
        report = check_campaign(s, get_campaign(s, "spring"), env, datetime.now(UTC), details=True)
    assert report.contacts is not None
    verdict = {c["number"]: (c["verdict"], c["reason"]) for c in report.contacts}
    assert verdict[NUMBER] == ("block", "opted_out")


def test_a_national_list_match_is_a_suppression_fact_kept_after_erasure(
    runtime: Runtime,
) -> None:
    bloctel = runtime.settings.base_dir / "bloctel.txt"  # the national file, outside var/
    bloctel.write_text(f"{NATIONAL}\n0261910101\n", encoding="utf-8")
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        import_opposition_list(s, _key(runtime, s), "bloctel", bloctel, as_of=now, now=now)
    _import(runtime, "clients", CSV)
    _erase(runtime)
    with runtime.sessions() as s, s.begin():
        doc = export_subject(s, _key(runtime, s), NUMBER, settings=runtime.settings)
    assert doc["held"] is False and "contacts" not in doc
    assert [o["list"] for o in doc["opposition_lists"]] == ["bloctel"]
    with runtime.sessions() as s:  # the national list is not the organisation's to edit
        assert opposition_hits(s, _key(runtime, s), "bloctel", [NUMBER, OTHER]) == {
            NUMBER,
            OTHER,
        }


def test_an_earlier_opt_out_keeps_its_date_and_loses_its_note(runtime: Runtime) -> None:
    at = datetime.now(UTC) - timedelta(days=3)
    with runtime.sessions() as s, s.begin():
        add_opt_out(s, _key(runtime, s), NUMBER, source="cli", at=at, note=f"{FIRST} by mail")
    result = _erase(runtime)
    assert result.removed == {"opt_out_note": 1}  # type: ignore[attr-defined]
    assert result.opt_out_added is False and result.opt_out_source == "cli"  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        row = s.scalars(select(OptOut)).one()
        assert (row.recorded_at, row.source, row.note) == (at, "cli", None)
    assert _table_hits(runtime, (FIRST,)) == []


def test_erasing_a_number_nothing_is_held_about_still_suppresses_it(runtime: Runtime) -> None:
    result = _erase(runtime, "+442079460123")
    assert result.nothing_held and result.opt_out_added  # type: ignore[attr-defined]
    assert result.to_dict()["removed"] == {}  # type: ignore[attr-defined]
    with runtime.sessions() as s:
        key = _key(runtime, s)
        assert opt_out_record(s, key, "+442079460123") is not None
        entries = list(iter_entries(s, subject=subject_of(key, "+442079460123")))
    assert [e.kind for e in entries] == ["optout.recorded", "subject.erased"]
    assert json.loads(entries[-1].data)["nothing_held"] is True


def test_a_rolled_back_erasure_deletes_no_file(runtime: Runtime) -> None:
    seeded = _seed(runtime)
    with runtime.sessions() as s:
        s.begin()
        result = erase_subject(s, _key(runtime, s), NUMBER, files=SubjectFiles.of(runtime))
        s.rollback()
        s.commit()  # a later commit of the same session does not run the erasure's deletions
    assert not result.committed and result.files_removed == 0
    assert seeded.reply.exists() and all(p.exists() for p in seeded.speech)
    assert seeded.upload_with.exists()
    with runtime.sessions() as s:
        assert s.scalar(select(Contact.id).where(Contact.phone_e164 == NUMBER)) is not None
        assert opt_out_record(s, _key(runtime, s), NUMBER) is None


def test_a_call_in_progress_refuses_the_erasure(runtime: Runtime) -> None:
    _seed(runtime)
    with runtime.sessions() as s, s.begin():
        s.execute(
            text("UPDATE campaign_contacts SET state = 'dialing' WHERE phone_e164 = :n"),
            {"n": NUMBER},
        )
    with pytest.raises(SubjectBusyError, match="in progress"):
        _erase(runtime)
    with runtime.sessions() as s:
        assert s.scalar(select(Contact.id).where(Contact.phone_e164 == NUMBER)) is not None


def test_the_speech_files_found_are_exactly_the_dialers(runtime: Runtime) -> None:
    seeded = _seed(runtime)
    with runtime.sessions() as s:
        contacts = list(s.scalars(select(Contact).where(Contact.phone_e164 == NUMBER)))
        found = _tts_files(s, contacts, (runtime.sounds_dir / "tts",))
    assert found == seeded.speech


# --------------------------------------------------------------------------- rectification


def test_rectify_changes_fields_and_journals_their_names_only(runtime: Runtime) -> None:
    seeded = _seed(runtime)
    with runtime.sessions() as s, s.begin(), acting_as("user:alice"):
        result = rectify_subject(
            s,
            _key(runtime, s),
            NUMBER,
            {"first_name": "Philippine", "company": ""},
            list_name="clients",
            files=SubjectFiles.of(runtime),
        )
    assert (result.contacts, result.changed, result.lists) == (1, 1, ["clients"])
    assert result.files and result.files_removed == len(result.files)
    assert not any(p.exists() for p in result.files)
    assert set(result.files) <= seeded.speech  # only renders of the old values
    with runtime.sessions() as s:
        fields = {
            c.contact_list.name: c.fields
            for c in s.scalars(select(Contact).where(Contact.phone_e164 == NUMBER))
        }
        entry = s.scalars(
            select(JournalEntry).where(JournalEntry.kind == "subject.rectified")
        ).one()
    assert fields["clients"] == {"first_name": "Philippine", "last_name": LAST}
    assert fields["vip"] == {"first_name": FIRST}  # another list, not named
    assert json.loads(entry.data) == {"fields": ["company", "first_name"], "contacts": 1}
    assert entry.actor == "user:alice"
    assert "Philippine" not in entry.data and NUMBER not in entry.data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "nothing to change"),
        ({"email": "a@example.test"}, "'email' is not a contact field"),
        ({"first_name": "Ann\x00e"}, "first_name: control"),
        ({"last_name": "x" * 201}, "last_name: at most 200"),
        ({"professional": "maybe"}, "professional: 'maybe' is neither yes nor no: use yes, oui"),
        ({"professional": "2"}, "b2c, particulier"),
        ({"postal_code": "ABC"}, "postal_code: 'ABC' is not a postal code"),
        ({"postal_code": "75001!"}, "postal_code: .* at most 12 characters, at least one digit"),
        ({"postal_code": "1234567890123"}, "postal_code"),
    ],
)
def test_rectify_refuses_bad_changes(
    runtime: Runtime, changes: dict[str, str], message: str
) -> None:
    _import(runtime, "clients", CSV)
    with runtime.sessions() as s, s.begin(), pytest.raises(SubjectError, match=message):
        rectify_subject(s, _key(runtime, s), NUMBER, changes)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("professional", ("yes", "Oui", "NON", "no", "true", "False", "1", "0", "B2B", "b2c",
                          "pro", "Professionnel", "particulier")),
        ("postal_code", ("75001", "97411", "2A004", "SW1A 1AA", "20500-0003", "K1A 0B1",
                         "1011 AB", "D02 X285")),
    ],
)  # fmt: skip
def test_rectify_accepts_what_the_importer_and_the_gate_read(
    runtime: Runtime, field: str, values: tuple[str, ...]
) -> None:
    _import(runtime, "clients", CSV)
    for value in values:
        with runtime.sessions() as s, s.begin():
            result = rectify_subject(s, _key(runtime, s), NUMBER, {field: value})
        assert result.changed == 1, value
    with runtime.sessions() as s, s.begin():  # an empty value removes the field
        assert rectify_subject(s, _key(runtime, s), NUMBER, {field: ""}).changed == 1


def test_professional_values_mean_to_the_gate_what_they_say(runtime: Runtime) -> None:
    from voicecast.compliance.facts import is_professional
    from voicecast.subjects import PROFESSIONAL_NO_VALUES

    for value in ("yes", "oui", "true", "1", "b2b", "pro", "Professionnel"):
        assert is_professional({"professional": value}), value
    for value in PROFESSIONAL_NO_VALUES:
        assert not is_professional({"professional": value}), value


def test_rectify_names_a_missing_list_or_contact(runtime: Runtime) -> None:
    _import(runtime, "clients", CSV)
    with runtime.sessions() as s, s.begin():
        key = _key(runtime, s)
        with pytest.raises(NotFoundError, match="no contact list named 'nope': nothing changed"):
            rectify_subject(s, key, NUMBER, {"first_name": "A"}, list_name="nope")
        with pytest.raises(NotFoundError, match="no contact with this number: nothing changed"):
            rectify_subject(s, key, "+12025550142", {"first_name": "A"})


def test_a_rectification_that_changes_nothing_is_not_journaled(runtime: Runtime) -> None:
    _import(runtime, "clients", CSV)
    with runtime.sessions() as s, s.begin():
        result = rectify_subject(s, _key(runtime, s), NUMBER, {"first_name": FIRST})
    assert (result.contacts, result.changed, result.files) == (1, 0, [])
    with runtime.sessions() as s:
        rectified = s.scalars(
            select(JournalEntry).where(JournalEntry.kind == "subject.rectified")
        ).all()
    assert rectified == []


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_workspace(
        tmp_path, monkeypatch, '[pbx]\nsounds_dir = "var/sounds"\nreplies_dir = "var/replies"\n'
    )
    (tmp_path / "clients.csv").write_text(CSV, encoding="utf-8")
    return path


run = run_cli


def test_cli_export_erase_and_export_again(cli_config: Path) -> None:
    assert run(cli_config, "contacts", "import", "clients.csv", "--list", "clients").exit_code == 0
    out = cli_config.parent / "access.json"
    exported = run(cli_config, "subject", "export", "01 99 00 00 10", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["number"] == NUMBER and doc["contacts"][0]["fields"]["first_name"] == FIRST

    unattended = run(cli_config, "subject", "erase", "0199000010")
    assert unattended.exit_code == 1
    assert "error: subject erase asks for confirmation: add --yes" in said(unattended)
    erased = run(cli_config, "subject", "erase", "0199000010", "--yes", "--vacuum")
    assert erased.exit_code == 0, erased.output
    assert f"{NUMBER}: erased 1 contact(s); no file held" in said(erased)
    assert "database file rebuilt (VACUUM)" in said(erased)
    assert NUMBER.encode() not in (cli_config.parent / "var" / "test.db").read_bytes()
    assert "keyed hash on the opt-out list" in said(erased) and "source erasure" in said(erased)

    again = run(cli_config, "subject", "export", "+33199000010")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    assert doc["held"] is False and doc["opt_out"]["source"] == "erasure"
    assert "contacts" not in doc
    check = run(cli_config, "optout", "check", "0199000010")
    assert "opted out since" in said(check) and "(erasure)" in said(check)

    nothing = run(cli_config, "subject", "erase", "+1 202 555 0142", "--yes")
    assert nothing.exit_code == 0, nothing.output
    assert "nothing was held about this number; it is now on the opt-out list" in said(nothing)


def test_cli_rectify(cli_config: Path) -> None:
    assert run(cli_config, "contacts", "import", "clients.csv", "--list", "clients").exit_code == 0
    done = run(
        cli_config, "subject", "rectify", "0199000010", "--set", "first_name=Philippine",
        "--set", "company=", "--list", "clients",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert f"{NUMBER}: company, first_name corrected in 1 contact(s) (clients)" in said(done)
    same = run(cli_config, "subject", "rectify", "0199000010", "--set", "first_name=Philippine")
    assert f"{NUMBER}: nothing changed: 1 contact(s) in clients already had these values" in (
        said(same)
    )
    maybe = run(cli_config, "subject", "rectify", "0199000010", "--set", "professional=maybe")
    assert maybe.exit_code == 1
    assert "professional: 'maybe' is neither yes nor no" in said(maybe)
    pro = run(cli_config, "subject", "rectify", "0199000010", "--set", "professional=oui")
    assert "professional corrected in 1 contact(s)" in said(pro)
    exported = json.loads(run(cli_config, "subject", "export", "0199000010").stdout)
    assert exported["contacts"][0]["fields"] == {
        "first_name": "Philippine",
        "last_name": LAST,
        "professional": "oui",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rectify", "0199000010", "--set", "first_name"), "'first_name': expected FIELD=VALUE"),
        (("rectify", "0199000010", "--set", "email=x"), "'email' is not a contact field"),
        (("rectify", "0199000010", "--set", "first_name=A", "--list", "nope"), "no contact list"),
        (
            ("rectify", "+12025550142", "--set", "first_name=A"),
            "no contact with this number: nothing changed",
        ),
        (("rectify", "0199000010", "--set", "postal_code=ABC"), "'ABC' is not a postal code"),
        (("export", "01 99 ABC"), "letters"),
        (("erase", "12", "--yes"), "phone:"),
    ],
)
def test_cli_errors_are_one_clear_line(
    cli_config: Path, args: tuple[str, ...], message: str
) -> None:
    assert run(cli_config, "contacts", "import", "clients.csv", "--list", "clients").exit_code == 0
    result = run(cli_config, "subject", *args)
    assert result.exit_code != 0
    assert message in said(result)
    assert "Traceback" not in result.output


def test_export_names_the_purpose_of_a_campaign_that_has_not_queued_the_number_yet(
    runtime: Runtime,
) -> None:
    """Art. 15(1)(a): a contact in a list that only a draft campaign targets is held for
    that campaign's purpose, which the access document must say."""
    _import(runtime, "clients", CSV)
    with runtime.sessions() as s, s.begin():
        create_campaign(
            s,
            CampaignSpec(
                name="autumn",
                list_name="clients",
                message="",
                message_text="Un rappel.",
                caller_id="01 62 00 00 00",
                declaration=DECLARATION,
            ),
        )
    with runtime.sessions() as s, s.begin():
        doc = export_subject(s, _key(runtime, s), NUMBER, settings=runtime.settings)
    [autumn] = [c for c in doc["campaigns"] if c["campaign"] == "autumn"]
    assert autumn["state"] == "not queued yet (campaign draft)"
    assert autumn["purpose"] == "informational"
    assert any(p.get("campaign") == "autumn" for p in doc["purposes"])
