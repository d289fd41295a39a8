"""``voicecast subject proof``: the service (:func:`voicecast.journal.proof.subject_proof`)
over a campaign run by the dialer against a fake PBX, and the command through CliRunner.

Fictional numbers only (+33 1 99 00 xx xx).
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_workspace import make_workspace, run_cli, said
from click.testing import CliRunner
from journal_fakes import (
    AUDIO_SHA,
    CALLER_ID,
    GATE,
    VOICEMAIL_SHA,
    FakePbx,
    entries,
    make_campaign,
    run_dialer,
)
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from voicecast.app import open_runtime
from voicecast.cli import main
from voicecast.compliance.consent import import_consents
from voicecast.compliance.suppression import add_refusal
from voicecast.config import load_settings
from voicecast.journal import kinds, subject_of
from voicecast.journal.proof import ProofError, subject_proof
from voicecast.storage.models import utcnow

KEY = GATE.key
HUMAN, MACHINE, BUSY, NOBODY = "+33199000010", "+33199000012", "+33199000013", "+33199000099"


def _seqs(sessions: sessionmaker[Session], kind: str, number: str) -> dict[int, str]:
    subject = subject_of(KEY, number)
    return {row.seq: row.hash for row, _ in entries(sessions, kind) if row.subject == subject}


def test_the_proof_of_a_machine_shows_its_drop_with_audio_caller_id_and_legal_basis(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    make_campaign(sessions, [HUMAN, MACHINE, BUSY])
    consents = tmp_path / "consents.csv"
    consents.write_text(
        f"phone,purpose,status,date,proof\n{MACHINE},informational,granted,2025-06-01,doc-7\n"
    )
    with sessions() as s, s.begin():
        summary = import_consents(s, consents)
    run_dialer(sessions, FakePbx())
    with sessions() as s, s.begin():
        add_refusal(s, KEY, MACHINE, at=utcnow(), source="agent")

    with sessions() as s:
        proof = subject_proof(s, KEY, MACHINE, packs=GATE.packs)
    assert proof["number"] == MACHINE and proof["subject"] == subject_of(KEY, MACHINE)
    # the contact, its campaign and the basis it relies on now: the imported consent
    ((contact,),) = [proof["contacts"]]
    assert contact["list"] == "spring-list" and contact["professional"] is False
    ((membership,),) = [contact["campaigns"]]
    assert membership["campaign"] == "spring" and membership["outcome"] == "machine"
    assert membership["legal_basis"]["basis"] == "consent"
    assert membership["legal_basis_text"].startswith("consent: proof doc-7")
    assert proof["consent_in_force"]["informational"]["batch"] == summary.batch
    assert proof["consent_in_force"]["marketing"] is None
    # the journal: the drop, with what was played, from which number, on what basis
    journal = proof["journal"]
    ((drop,),) = [journal["drops"]]
    assert drop["data"]["audio"] == "spring-voicemail"
    assert drop["data"]["audio_sha256"] == VOICEMAIL_SHA
    assert drop["data"]["caller_id"] == CALLER_ID
    assert drop["data"]["delivered_to"] == "machine"
    basis = drop["data"]["legal_basis"]
    assert basis["basis"] == "consent" and basis["consent"]["batch"] == summary.batch
    assert basis["consent"]["proof_ref_sha256"] == hashlib.sha256(b"doc-7").hexdigest()
    # each entry with the seq and hash an auditor finds in a bundle
    assert {drop["seq"]: drop["hash"]} == _seqs(sessions, kinds.MESSAGE_DROPPED, MACHINE)
    assert [e["data"]["outcome"] for e in journal["attempts"]] == ["machine"]
    assert [e["data"]["verdict"] for e in journal["gate_decisions"]] == ["allow"]
    assert [e["kind"] for e in journal["rights"]] == [kinds.REFUSAL_RECORDED]
    assert [e["kind"] for e in journal["imports"]] == [kinds.CONSENTS_IMPORTED]
    # the ledger row points at the import entry that brought it
    ((ledger,),) = [proof["consents"]]
    assert ledger["journal"] == {
        "seq": journal["imports"][0]["seq"],
        "hash": journal["imports"][0]["hash"],
    }
    assert proof["refusals"][0]["source"] == "agent" and proof["opt_out"] is None
    assert proof["chain"]["verified"] is True and proof["chain"]["problem"] is None
    json.dumps(proof, default=str)  # JSON-able


def test_the_proof_of_an_unknown_number_is_empty_and_a_bad_number_refused(
    sessions: sessionmaker[Session],
) -> None:
    make_campaign(sessions, [HUMAN])
    run_dialer(sessions, FakePbx())
    with sessions() as s:
        proof = subject_proof(s, KEY, NOBODY, verify_chain=False)
        assert proof["contacts"] == [] and proof["consents"] == []
        assert all(not section for section in proof["journal"].values())
        assert proof["chain"]["verified"] is None
        assert proof["chain"]["hint"] == "voicecast journal verify"
        with pytest.raises(ProofError, match=r"not an E\.164"):
            subject_proof(s, KEY, "0199000010")
        human = subject_proof(s, KEY, HUMAN)
    ((drop,),) = [human["journal"]["drops"]]
    assert (drop["data"]["audio"], drop["data"]["audio_sha256"]) == ("spring-message", AUDIO_SHA)
    ((membership,),) = [human["contacts"][0]["campaigns"]]
    assert membership["legal_basis_text"] == "contract (declared)"


# --- the command ------------------------------------------------------------------------------

_run = run_cli
_text = said


def test_subject_proof_command_shows_the_drop_the_basis_and_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecast import cli
    from voicecast.journal.events import message_dropped

    config = make_workspace(tmp_path, monkeypatch)
    monkeypatch.setattr(cli.console, "_width", 200)  # a wide terminal: no folded cells
    added = _run(
        config,
        "consent", "add", "01 99 00 00 12", "--purpose", "marketing", "--source", "web",
        "--proof", "form-42", "--at", "2026-01-10T10:00:00",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    runtime = open_runtime(load_settings(config))
    with runtime.sessions() as s:
        key, _ = runtime.store_key(s)
    cid = make_campaign(runtime.sessions, [MACHINE])
    with runtime.sessions() as s, s.begin():
        played = utcnow() - timedelta(minutes=5)
        message_dropped(
            s,
            key,
            number=MACHINE,
            campaign="spring",
            campaign_id=cid,
            attempt_id="a" * 32,
            caller_id=CALLER_ID,
            delivered_to="machine",
            prompts=[
                {
                    "audio": "spring-voicemail",
                    "audio_sha256": VOICEMAIL_SHA,
                    "at": played,
                    "ms": 5200,
                    "completed": True,
                }
            ],
            basis={"basis": "contract", "declared": True, "purpose": "informational"},
            purpose="informational",
            sender="Fictive Energie",
            on_behalf_of="Fictive Energie",
        )
    runtime.engine.dispose()

    shown = _run(config, "subject", "proof", "01 99 00 00 12")
    assert shown.exit_code == 0, shown.output
    out = _text(shown)
    assert "Proof for +33199000012" in out
    assert "spring-voicemail" in out and CALLER_ID in out
    assert "contract (declared)" in out  # the drop's legal basis
    assert "consent: proof form-42" not in out  # an informational campaign: not a consent
    assert "marketing consent: granted (proof form-42, web, 2026-01-10T10:00:00+01:00" in out
    assert "journal chain: verified" in out
    assert "+01:00" in out  # times in the report's zone
    assert "consent.recorded" in out and "cli:" in out  # who recorded the consent

    as_json = _run(config, "subject", "proof", "+33199000012", "--json", "--no-verify")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    ((drop,),) = [data["journal"]["drops"]]
    assert drop["data"]["audio"] == "spring-voicemail" and drop["seq"] >= 1
    assert len(drop["hash"]) == 64
    assert data["chain"]["verified"] is None
    assert data["contacts"][0]["campaigns"][0]["legal_basis"]["basis"] == "contract"

    bad = CliRunner().invoke(main, ["--config", str(config), "subject", "proof", "12ab"])
    assert bad.exit_code == 1 and "error" in bad.output


# --- the command in a narrow and a wide terminal -------------------------------------------

DEMO = "demo-20261129-211234"


def _consent_drops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any, int]:
    """A workspace where +33 1 99 00 00 12 gave a marketing consent (proof ``form-42``) and
    campaign :data:`DEMO` dropped two messages on it: one cut off after 2.5 s by a key press,
    one left whole on a machine (two prompts). Returns (config, runtime, consent id)."""
    from voicecast.journal.events import message_dropped
    from voicecast.journal.kinds import proof_digest
    from voicecast.storage.models import Consent

    config = make_workspace(tmp_path, monkeypatch)
    added = _run(
        config,
        "consent", "add", "01 99 00 00 12", "--purpose", "marketing", "--source", "web",
        "--proof", "form-42", "--at", "2026-01-10T10:00:00",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    runtime = open_runtime(load_settings(config))
    with runtime.sessions() as s:
        key, _ = runtime.store_key(s)
        consent_id = s.scalars(select(Consent.id)).one()
    cid = make_campaign(runtime.sessions, [MACHINE], purpose="marketing", name=DEMO)
    basis = {
        "basis": "consent",
        "purpose": "marketing",
        "audience": "b2c",
        "rule_source": "Code conso L223-1",
        "consent": {
            "id": consent_id,
            "proof_ref_sha256": proof_digest("form-42"),
            "source": "web",
            "recorded_at": "2026-01-10T09:00:00+00:00",
            "batch": None,
            "wording_version": None,
        },
    }
    played = utcnow() - timedelta(minutes=5)
    drops: list[tuple[str, list[tuple[str, str | None, int, bool]]]] = [
        ("human", [("spring-message", AUDIO_SHA, 2500, False)]),
        ("machine", [
            ("spring-voicemail", VOICEMAIL_SHA, 5200, True), ("tts/tts-ab12", None, 1300, True)
        ]),
    ]  # fmt: skip
    with runtime.sessions() as s, s.begin():
        for n, (to, prompts) in enumerate(drops):
            message_dropped(
                s,
                key,
                number=MACHINE,
                campaign=DEMO,
                campaign_id=cid,
                attempt_id=f"{n}" * 32,
                caller_id=CALLER_ID,
                delivered_to=to,
                prompts=[
                    {"audio": a, "audio_sha256": h, "at": played, "ms": ms, "completed": done}
                    for a, h, ms, done in prompts
                ],
                basis=basis,
                purpose="marketing",
                sender="Fictive Energie",
                on_behalf_of="Fictive Energie",
            )
    return config, runtime, consent_id


def _lines(result: Any) -> list[str]:
    return [line.rstrip() for line in result.output.splitlines()]


def test_the_proof_is_readable_in_an_80_column_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecast import cli

    config, runtime, _ = _consent_drops(tmp_path, monkeypatch)
    runtime.engine.dispose()
    monkeypatch.setattr(cli.console, "_width", 80)
    shown = _run(config, "subject", "proof", "01 99 00 00 12")
    assert shown.exit_code == 0, shown.output
    lines = _lines(shown)
    assert max(len(line) for line in lines) <= 80
    # one block of "Label: value" lines per record, identifiers whole on their line
    assert any(line.split() == ["Campaign:", DEMO] for line in lines), shown.output
    assert any(line.split() == ["Audio", "SHA-256:", VOICEMAIL_SHA[:12] + "…"] for line in lines)
    assert sum(line.strip().startswith("Played:") for line in lines) == 2
    # how much was heard: the cut-off drop does not look like a full one
    assert any(line.split() == ["Heard:", "2.5", "s,", "cut", "off"] for line in lines)
    at = lines.index("  Heard:         5.2 s, complete")  # two prompts, a line each
    assert lines[at + 1 : at + 3] == [" " * 17 + "1.3 s, complete", " " * 17 + "6.5 s in all"]
    assert lines[at - 4 : at - 2] == [
        "  Audio:         spring-voicemail",
        " " * 17 + "tts/tts-ab12",
    ]
    # the consent the drops relied on, checked against the ledger row now
    out = _text(shown)
    assert "consent: proof form-42 (web" in out
    assert out.count("ledger row unchanged: its proof matches the journaled SHA-256") == 2

    monkeypatch.setattr(cli.console, "_width", 200)
    wide = _run(config, "subject", "proof", "01 99 00 00 12")
    assert wide.exit_code == 0, wide.output
    lines = _lines(wide)
    assert max(len(line) for line in lines) <= 200
    assert not any(line.strip().startswith(("Played:", "Campaign:")) for line in lines)
    (header,) = [line for line in lines if "Played" in line and "Heard" in line]
    assert "Caller ID" in header and "Entry hash" in header  # one table row per drop
    assert sum(DEMO in line and "cut off" in line for line in lines) == 1
    assert "2.5 s, cut off" in wide.output


def test_a_changed_or_erased_consent_row_is_named_in_the_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecast import cli
    from voicecast.journal.kinds import proof_digest

    config, runtime, consent_id = _consent_drops(tmp_path, monkeypatch)
    with runtime.engine.begin() as conn:
        conn.execute(
            text("UPDATE consents SET proof_ref = 'form-43' WHERE id = :i"), {"i": consent_id}
        )
    monkeypatch.setattr(cli.console, "_width", 80)
    changed = _run(config, "subject", "proof", "01 99 00 00 12")
    assert changed.exit_code == 0, changed.output
    out = _text(changed)
    assert out.count(f"ledger row #{consent_id} CHANGED after the drop") == 2
    assert "its proof is now 'form-43'" in out
    data = json.loads(_run(config, "subject", "proof", "+33199000012", "--json").stdout)
    checks = [d["consent_ledger"] for d in data["journal"]["drops"]]
    assert (
        checks
        == [
            {
                "id": consent_id,
                "state": "changed",
                "proof_ref_sha256": proof_digest("form-42"),
                "proof_ref": "form-43",
                "ledger_sha256": proof_digest("form-43"),
            }
        ]
        * 2
    )

    with runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM consents WHERE id = :i"), {"i": consent_id})
    runtime.engine.dispose()
    gone = _run(config, "subject", "proof", "01 99 00 00 12")
    assert gone.exit_code == 0, gone.output
    assert max(len(line) for line in _lines(gone)) <= 80
    out = _text(gone)
    assert out.count(f"ledger row #{consent_id} gone (erased or past retention)") == 2
    assert out.count(f"consent: proof sha256 {str(proof_digest('form-42'))[:12]}… (web") == 2
    assert out.count("only the journaled SHA-256 of its proof remains") == 2
    data = json.loads(_run(config, "subject", "proof", "+33199000012", "--json").stdout)
    assert {d["consent_ledger"]["state"] for d in data["journal"]["drops"]} == {"gone"}


def test_a_contact_in_no_campaign_gets_one_line_not_an_empty_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecast.storage.models import Contact, ContactList

    config = make_workspace(tmp_path, monkeypatch)
    runtime = open_runtime(load_settings(config))
    with runtime.sessions() as s, s.begin():
        clist = ContactList(name="autumn-list")
        s.add(clist)
        s.flush()
        s.add(Contact(list_id=clist.id, phone_e164=MACHINE, fields={}, source_line=2))
    runtime.engine.dispose()
    shown = _run(config, "subject", "proof", "01 99 00 00 12")
    assert shown.exit_code == 0, shown.output
    out = _text(shown)
    assert "autumn-list" in out and "In no campaign yet." in out
    assert "Campaigns and the legal basis" not in out
