"""`campaign create / declare / start / check` under the compliance gate, through CliRunner.

A temporary voicecast.toml (SQLite, audio store, hash key under tmp_path; no sandbox).
Instants are in the past (the stores refuse future timestamps): Wednesday 2026-11-25 11:00
and Friday 2026-11-20 20:00, Europe/Paris. Fictional numbers only (+33 1 99 00 xx xx,
+33 2 61 91 xx xx, +33 3 53 01 xx xx).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from tones import tone

from voicecast.cli import main
from voicecast.storage.db import make_engine, session_factory
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    GateDecision,
)

PARIS = ZoneInfo("Europe/Paris")
WEDNESDAY = "2026-11-25T11:00:00+01:00"
FRIDAY_EVENING = "2026-11-20T20:00:00+01:00"
MONDAY_TEN_UTC = "2026-11-23T09:00:00+00:00"

CONFIG = """\
[database]
url = "sqlite:///var/test.db"

[audio]
store_dir = "var/audio"

[pbx]
sounds_dir = "var/sounds"

[sandbox]
enabled = false

[report]
timezone = "Europe/Paris"

[compliance]
hash_key_file = "var/keys/hash.key"
"""

# the campaign's list (number, first name, region)
ALLOWED = ["+33199000100", "+33261910101", "+33353010102"]
NO_CONSENT = "+33199000110"
LATE_CONSENT = "+33199000111"  # consent given on 2026-11-26: after the Wednesday instant
WITHDRAWN = "+33199000112"
OPTED_OUT = "+33199000120"
BLOCTEL_CONSENTED = "+33199000130"
BLOCTEL_ONLY = "+33199000131"
CAPPED = ["+33199000140", "+33199000141"]  # 4 attempts each by another campaign
REFUSED = "+33199000150"
EVERYONE = [
    *ALLOWED,
    NO_CONSENT,
    LATE_CONSENT,
    WITHDRAWN,
    OPTED_OUT,
    BLOCTEL_CONSENTED,
    BLOCTEL_ONLY,
    *CAPPED,
    REFUSED,
]
DECLARED = [
    "--purpose", "marketing", "--audience", "b2c", "--sender", "Société Fictive",
    "--on-behalf-of", "Société Fictive", "--optout-key", "9",
]  # fmt: skip


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    monkeypatch.delenv("VOICECAST_CLOCK_START", raising=False)
    path = tmp_path / "voicecast.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def db(config: Path) -> Iterator[Any]:
    """Sessions on the CLI's database (created by the first command)."""
    engine = make_engine(f"sqlite:///{config.parent}/var/test.db")
    yield session_factory(engine)
    engine.dispose()


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def ok(config: Path, *args: str) -> Result:
    result = run(config, *args)
    assert result.exit_code == 0, result.output
    return result


def text(output: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(output.split())


def setup_list(config: Path, numbers: list[str]) -> None:
    """Audio ``msg`` and contact list ``clients`` (the first number from Moselle)."""
    ok(config, "audio", "add", str(tone(config.parent / "msg.wav")), "--name", "msg")
    rows = ["Téléphone;Prénom;Département"]
    rows += [f"{n};Camille {i};{'Moselle' if i == 0 else ''}" for i, n in enumerate(numbers)]
    contacts = config.parent / "clients.csv"
    contacts.write_text("\n".join(rows) + "\n", encoding="utf-8")
    ok(config, "contacts", "import", str(contacts), "--list", "clients")


def consent(config: Path, number: str, at: str, *extra: str) -> None:
    ok(
        config,
        "consent", "add", number, "--purpose", "marketing", "--source", "web",
        "--proof", f"form-{number}", "--at", at, *extra,
    )  # fmt: skip


def import_bloctel(config: Path, numbers: list[str], *extra: str) -> None:
    """Import a Bloctel file; dated today (UTC) unless ``extra`` gives --as-of."""
    if "--as-of" not in extra:
        extra = (*extra, "--as-of", datetime.now(UTC).date().isoformat())
    path = config.parent / "bloctel.txt"
    path.write_text("".join(f"{n}\n" for n in numbers) + "+33199000990\n")
    ok(config, "opposition", "import", "bloctel", str(path), *extra)


def create(config: Path, name: str, *options: str, caller_id: str = "01 62 00 00 00") -> Result:
    return run(
        config,
        "campaign", "create", name, "--list", "clients", "--message", "msg",
        "--caller-id", caller_id, *options,
    )  # fmt: skip


def campaign_row(db: Any, name: str) -> Campaign:
    with db() as s:
        return s.scalars(select(Campaign).where(Campaign.name == name)).one()


def queued(db: Any, name: str) -> int:
    with db() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(CampaignContact)
                .join(Campaign, Campaign.id == CampaignContact.campaign_id)
                .where(Campaign.name == name)
            )
            or 0
        )


def gate_rows(db: Any) -> int:
    with db() as s:
        return int(s.scalar(select(func.count()).select_from(GateDecision)) or 0)


def check(config: Path, name: str, at: str) -> tuple[int, dict[str, Any]]:
    result = run(config, "campaign", "check", name, "--at", at, "--json")
    return result.exit_code, json.loads(result.stdout)


# --------------------------------------------------------------------------- create / declare


def test_create_stores_the_declaration(config: Path, db: Any) -> None:
    setup_list(config, ALLOWED)
    result = create(
        config,
        "spring",
        *DECLARED,
        "--callback", "01 99 00 00 99",
        "--hours", "mon-fri 10:00-12:00",
        "--max-attempts-30d", "2",
        "--starts-at", "2026-12-01T10:00+01:00",
        "--ends-at", "2026-12-20T18:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "campaign spring created (draft)" in text(result.output)
    c = campaign_row(db, "spring")
    assert (c.purpose, c.audience, c.sender_name, c.on_behalf_of) == (
        "marketing",
        "b2c",
        "Société Fictive",
        "Société Fictive",
    )
    assert (c.optout_key, c.callback_number, c.legal_basis) == ("9", "+33199000099", None)
    assert c.caller_id == "+33162000000"
    assert c.hours is not None and "10:00-12:00" in c.hours
    assert c.max_attempts_30d == 2
    assert c.starts_at == datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("UTC"))
    assert c.ends_at == datetime(2026, 12, 20, 18, 0, tzinfo=ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--optout-key", "99"], 1, "opt-out key: one of 0-9, * or #"),
        (["--hours", "every day"], 1, "hours:"),
        (["--max-attempts-30d", "0"], 1, "max attempts per 30 days"),
        (["--callback", "01 99 ABC"], 1, "caller ID"),
        (["--starts-at", "2026-12-01T10:00"], 2, "give the offset"),
        (["--purpose", "survey"], 2, "'survey' is not one of"),
        (
            ["--starts-at", "2026-12-02T10:00Z", "--ends-at", "2026-12-01T10:00Z"],
            1,
            "--ends-at must be after --starts-at",
        ),
    ],
)
def test_create_refuses_an_invalid_declaration(
    config: Path, db: Any, options: list[str], code: int, message: str
) -> None:
    setup_list(config, ALLOWED)
    result = create(config, "spring", *options)
    assert result.exit_code == code
    assert message in text(result.output)
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_declare_changes_fields_and_keeps_the_others(config: Path, db: Any) -> None:
    setup_list(config, ALLOWED)
    assert create(config, "spring", "--purpose", "marketing").exit_code == 0
    out = ok(
        config,
        "campaign", "declare", "spring", "--audience", "b2b", "--sender", "  Société   Fictive ",
        "--on-behalf-of", "Client Fictif", "--callback", "+33 1 99 00 00 98",
    )  # fmt: skip
    assert "marketing / b2b, sender Société Fictive on behalf of Client Fictif" in text(out.output)
    c = campaign_row(db, "spring")
    assert (c.purpose, c.audience, c.sender_name, c.on_behalf_of) == (
        "marketing",
        "b2b",
        "Société Fictive",
        "Client Fictif",
    )
    assert (c.optout_key, c.callback_number) == (None, "+33199000098")
    ok(
        config,
        "campaign", "declare", "spring", "--purpose", "informational",
        "--legal-basis", "contract", "--optout-key", "#", "--callback", "",
    )  # fmt: skip
    c = campaign_row(db, "spring")
    assert (c.purpose, c.audience, c.legal_basis) == ("informational", "b2b", "contract")
    assert (c.optout_key, c.callback_number, c.on_behalf_of) == ("#", None, "Client Fictif")
    bad = run(config, "campaign", "declare", "spring", "--optout-key", "A")
    assert bad.exit_code == 1 and "opt-out key" in bad.stderr
    assert campaign_row(db, "spring").optout_key == "#"  # nothing changed
    missing = run(config, "campaign", "declare", "autumn", "--audience", "b2c")
    assert missing.exit_code == 1 and "no campaign named 'autumn'" in missing.stderr


def test_declare_refuses_a_running_campaign(config: Path, db: Any) -> None:
    setup_list(config, ALLOWED)
    import_bloctel(config, [])  # dated today: fresh for a start now
    assert create(config, "spring", *DECLARED).exit_code == 0
    started = ok(config, "campaign", "start", "spring")
    assert "campaign spring: running (3 contacts queued)" in text(started.output)
    refused = run(config, "campaign", "declare", "spring", "--optout-key", "5")
    assert refused.exit_code == 1
    assert "campaign 'spring' is running: pause it before changing its declaration" in text(
        refused.stderr
    )
    assert campaign_row(db, "spring").optout_key == "9"
    ok(config, "campaign", "pause", "spring")
    ok(config, "campaign", "declare", "spring", "--optout-key", "5")
    assert campaign_row(db, "spring").optout_key == "5"


# --------------------------------------------------------------------------- start


def test_start_without_declaration_lists_every_problem_and_queues_nothing(
    config: Path, db: Any
) -> None:
    setup_list(config, ALLOWED)
    assert create(config, "spring", "--purpose", "marketing").exit_code == 0
    result = run(config, "campaign", "start", "spring")
    assert result.exit_code == 1
    err = result.stderr
    assert "error: campaign 'spring' cannot start:" in err
    problems = [line.strip() for line in err.splitlines() if line.strip().startswith("- ")]
    assert problems == [
        "- audience: b2c or b2b [CPCE L34-5; Code conso L221-16]",
        "- sender name: who is calling [CPCE L34-5; Code conso L221-16]",
        "- on behalf of: whose offer or notice it is [CPCE L34-5; Code conso L221-16]",
        "- a marketing campaign needs an opt-out means: an opt-out key and/or a call-back "
        "number [CPCE L34-5; Code conso L221-16]",
        "- bloctel: no copy imported; the campaign calls France (metropolitan and overseas) "
        "(voicecast opposition import bloctel FILE --as-of LIST-DATE) "
        "[Code de la consommation L223-1 (Bloctel)]",
    ]
    assert queued(db, "spring") == 0
    c = campaign_row(db, "spring")
    assert (c.status, c.started_at) == ("draft", None)


def test_start_with_nothing_declared_names_the_purpose(config: Path, db: Any) -> None:
    setup_list(config, ALLOWED)
    assert create(config, "spring").exit_code == 0
    result = run(config, "campaign", "start", "spring")
    assert result.exit_code == 1
    assert "- purpose: marketing or informational [CPCE L34-5" in result.stderr
    assert queued(db, "spring") == 0


def test_start_with_a_geographic_caller_id_names_arcep(config: Path, db: Any) -> None:
    setup_list(config, ALLOWED)
    import_bloctel(config, [])
    assert create(config, "spring", *DECLARED, caller_id="+33 1 99 00 00 00").exit_code == 0
    result = run(config, "campaign", "start", "spring")
    assert result.exit_code == 1
    problems = [line.strip() for line in result.stderr.splitlines() if "- " in line]
    assert len(problems) == 1
    assert "caller ID +33199000000 may not be presented by an automated system" in problems[0]
    assert problems[0].endswith("[ARCEP décision 2022-1583]")
    assert queued(db, "spring") == 0 and campaign_row(db, "spring").status == "draft"
    # with an NPV it starts
    ok(config, "campaign", "stop", "spring")
    assert create(config, "autumn", *DECLARED).exit_code == 0
    assert "running (3 contacts queued)" in text(ok(config, "campaign", "start", "autumn").output)
    assert queued(db, "autumn") == 3


def test_error_messages_are_not_read_as_markup(config: Path) -> None:
    setup_list(config, ALLOWED)
    result = run(
        config, "campaign", "create", "spring", "--list", "[bold]x", "--message", "msg",
        "--caller-id", "0162000000",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no contact list named '[bold]x'" in result.stderr


# --------------------------------------------------------------------------- check


def build_mixed_campaign(config: Path, db: Any) -> None:
    """The list EVERYONE, its consents, opt-out, Bloctel (dated 2026-11-18), a refusal and
    four attempts to each CAPPED number by another campaign."""
    setup_list(config, EVERYONE)
    for n in [*ALLOWED, OPTED_OUT, BLOCTEL_CONSENTED, *CAPPED, REFUSED, WITHDRAWN]:
        consent(config, n, "2026-11-01T09:00:00+01:00")
    consent(config, WITHDRAWN, "2026-11-10T09:00:00+01:00", "--withdrawn")
    consent(config, LATE_CONSENT, "2026-11-26T09:00:00+01:00")
    ok(config, "optout", "add", OPTED_OUT)
    import_bloctel(config, [BLOCTEL_CONSENTED, BLOCTEL_ONLY], "--as-of", "2026-11-18")
    ok(config, "refusal", "add", REFUSED, "--at", "2026-11-01T12:00:00+01:00")
    assert create(config, "old", *DECLARED).exit_code == 0
    assert create(config, "spring", *DECLARED).exit_code == 0
    with db() as s, s.begin():
        old = s.scalars(select(Campaign).where(Campaign.name == "old")).one()
        for first_day, number in zip((2, 3), CAPPED, strict=True):
            contact = s.scalars(select(Contact).where(Contact.phone_e164 == number)).one()
            cc = CampaignContact(
                campaign_id=old.id,
                contact_id=contact.id,
                phone_e164=number,
                state="done",
                outcome="no_answer",
                next_attempt_at=datetime(2026, 11, 2, tzinfo=PARIS),
            )
            s.add(cc)
            s.flush()
            for i in range(4):
                at = datetime(2026, 11, first_day + i, 10, 30, tzinfo=PARIS)
                s.add(_attempt(old.id, cc.id, number, i + 1, at))


def _attempt(campaign_id: int, cc_id: int, number: str, no: int, at: datetime) -> CallAttempt:
    return CallAttempt(
        id=f"{number}-{no}",
        campaign_id=campaign_id,
        campaign_contact_id=cc_id,
        number=number,
        attempt_no=no,
        state="ended",
        created_at=at,
        originate_sent_at=at,
        ended_at=at + timedelta(seconds=30),
        outcome="no_answer",
    )


BLOCKED = {
    "consent_withdrawn": 1,
    "no_consent": 2,  # NO_CONSENT, LATE_CONSENT
    "opposition_list": 2,  # before consent: BLOCTEL_ONLY too
    "opted_out": 1,
    "recent_refusal": 1,
}
CAPPED_DEFERRAL = {
    "count": 2,
    "earliest": "2026-12-02T09:30:00+00:00",  # the first of 4 attempts + 30 days
    "latest": "2026-12-03T09:30:00+00:00",
}


def test_check_on_a_wednesday_morning(config: Path, db: Any) -> None:
    build_mixed_campaign(config, db)
    code, data = check(config, "spring", WEDNESDAY)
    assert code == 0
    assert data["at"] == "2026-11-25T10:00:00+00:00"
    assert data["would_call_now"] == len(ALLOWED)
    assert data["deferred"] == {"frequency_cap": CAPPED_DEFERRAL}
    assert data["blocked"] == BLOCKED
    assert (data["problems"], data["already_done"]) == ([], 0)
    total = data["would_call_now"] + sum(d["count"] for d in data["deferred"].values())
    assert total + sum(data["blocked"].values()) == len(EVERYONE)
    # a dry run: nothing queued, nothing decided, nothing changed
    assert (queued(db, "spring"), gate_rows(db)) == (0, 0)
    assert campaign_row(db, "spring").status == "draft"
    table = ok(config, "campaign", "check", "spring", "--at", WEDNESDAY)
    out = text(table.output)
    assert "campaign spring as of 2026-11-25T11:00+01:00" in out
    assert "would call now: 3" in out
    assert (
        "deferred, attempt cap reached (frequency_cap): 2, "
        "until 2026-12-02T10:30+01:00 .. 2026-12-03T10:30+01:00" in out
    )
    assert "blocked, on the national opposition list (opposition_list): 2" in out
    assert "campaign-level checks: ok" in out


def test_check_lists_each_contacts_decision_on_request(config: Path, db: Any) -> None:
    build_mixed_campaign(config, db)
    result = run(config, "campaign", "check", "spring", "--at", WEDNESDAY, "--json", "--contacts")
    contacts = {c["number"]: c for c in json.loads(result.stdout)["contacts"]}
    assert set(contacts) == set(EVERYONE)
    assert {n for n, c in contacts.items() if c["verdict"] == "allow"} == set(ALLOWED)
    assert (contacts[OPTED_OUT]["verdict"], contacts[OPTED_OUT]["reason"]) == (
        "block",
        "opted_out",
    )
    assert "CPCE L34-5" in contacts[OPTED_OUT]["source"]
    table = text(run(config, "campaign", "check", "spring", "--at", WEDNESDAY, "--contacts").output)
    assert OPTED_OUT in table and "organisation's opt-out list" in table


def test_check_on_a_friday_evening_defers_to_monday_ten(config: Path, db: Any) -> None:
    build_mixed_campaign(config, db)
    code, data = check(config, "spring", FRIDAY_EVENING)
    assert code == 0
    assert data["would_call_now"] == 0
    assert data["deferred"] == {
        "outside_hours": {
            "count": len(ALLOWED),
            "earliest": MONDAY_TEN_UTC,
            "latest": MONDAY_TEN_UTC,
        },
        "frequency_cap": CAPPED_DEFERRAL,  # still the cap's end, not Monday
    }
    assert data["blocked"] == BLOCKED
    assert gate_rows(db) == 0


def test_check_exits_3_on_a_campaign_level_problem(config: Path, db: Any) -> None:
    setup_list(config, ALLOWED)
    for n in ALLOWED:
        consent(config, n, "2026-11-01T09:00:00+01:00")
    assert create(config, "spring", *DECLARED).exit_code == 0
    code, data = check(config, "spring", WEDNESDAY)
    assert code == 3
    assert [(p["code"], p["source"]) for p in data["problems"]] == [
        ("national_list_missing", "Code de la consommation L223-1 (Bloctel)")
    ]
    assert data["would_call_now"] == 3  # the per-contact verdicts are still shown
    table = run(config, "campaign", "check", "spring", "--at", WEDNESDAY)
    assert table.exit_code == 3
    assert "the campaign may not dial" in text(table.output)
    assert "bloctel: no copy imported" in text(table.output)
    import_bloctel(config, [], "--as-of", "2026-11-18")
    assert check(config, "spring", WEDNESDAY)[0] == 0
    # 30 days after the list's date it is still fresh; 30 days and one second later it is not
    assert check(config, "spring", "2026-12-18T00:00:00+00:00")[0] == 0
    code, data = check(config, "spring", "2026-12-18T00:00:01+00:00")
    assert code == 3 and data["problems"][0]["code"] == "national_list_stale"
    assert gate_rows(db) == 0


def test_check_after_start_reads_the_queue_and_writes_nothing(config: Path, db: Any) -> None:
    setup_list(config, [*ALLOWED, NO_CONSENT])
    for n in ALLOWED:
        consent(config, n, "2026-11-01T09:00:00+01:00")
    import_bloctel(config, [])  # dated today, so the start (on the system clock) is allowed
    assert create(config, "spring", *DECLARED).exit_code == 0
    ok(config, "campaign", "start", "spring")

    def snapshot() -> list[tuple[Any, ...]]:
        with db() as s:
            return [
                (cc.phone_e164, cc.state, cc.next_attempt_at, cc.gate_verdict, cc.gate_reason)
                for cc in s.scalars(select(CampaignContact).order_by(CampaignContact.id))
            ]

    before = snapshot()
    assert len(before) == 4 and all(row[3] is None for row in before)
    code, data = check(config, "spring", WEDNESDAY)
    assert code == 0
    assert (data["would_call_now"], data["blocked"]) == (3, {"no_consent": 1})
    assert snapshot() == before and gate_rows(db) == 0
    report = ok(config, "report", "spring", "--format", "json")
    assert {row["gate"] for row in json.loads(report.stdout)} == {""}


def test_b2b_check_uses_imported_professional_and_postal_code_columns(
    config: Path, db: Any
) -> None:
    ok(config, "audio", "add", str(tone(config.parent / "msg.wav")), "--name", "msg")
    contacts = config.parent / "pros.csv"
    contacts.write_text(
        "Téléphone;Société;Code postal;Type de client\n"
        "01 99 00 01 00;Société Fictive;75001;Professionnel\n"
        "02 61 91 01 01;Société Fictive;57000;Professionnel\n"
        "03 53 01 01 02;;75001;Particulier\n",
        encoding="utf-8",
    )
    imported = ok(config, "contacts", "import", str(contacts), "--list", "clients", "--json")
    assert json.loads(imported.stdout)["imported"] == 3
    import_bloctel(config, [], "--as-of", "2026-03-20")
    b2b = [("b2b" if option == "b2c" else option) for option in DECLARED]
    assert create(config, "pros", *b2b).exit_code == 0
    assert campaign_row(db, "pros").audience == "b2b"
    # Good Friday 2026: a public holiday in Alsace-Moselle (Code du travail L3134-13) only
    code, data = check(config, "pros", "2026-04-03T11:00:00+02:00")
    assert code == 0
    assert data["would_call_now"] == 1  # Paris professional
    assert data["deferred"] == {
        "public_holiday": {  # Moselle professional: Monday is Easter Monday, so Tuesday
            "count": 1,
            "earliest": "2026-04-07T08:00:00+00:00",
            "latest": "2026-04-07T08:00:00+00:00",
        }
    }
    assert data["blocked"] == {"not_professional": 1}


def test_create_says_at_once_what_would_stop_the_start(config: Path, db: Any) -> None:
    setup_list(config, ALLOWED)
    result = create(config, "geo-cli", *DECLARED, caller_id="01 99 00 00 00")
    assert result.exit_code == 0, result.output  # created as a draft all the same
    out = text(result.output)
    assert "cannot start yet" in out and "ARCEP" in out
    quiet = create(config, "undeclared")
    assert "sender name" in text(quiet.output)


def test_a_deeply_nested_scenario_is_a_clear_error_not_a_traceback(config: Path, db: Any) -> None:
    setup_list(config, ALLOWED)
    deep = config.parent / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000, encoding="utf-8")
    result = create(config, "deep", "--scenario", str(deep))
    assert result.exit_code == 1
    out = text(result.output)
    assert "error: scenario:" in out
    assert "the document is nested too deeply (more than 32 levels)" in out
    assert "Traceback" not in result.output
    big = config.parent / "big.yaml"
    big.write_bytes(b"#" * 1_000_001)
    result = create(config, "big", "--scenario", str(big))
    assert result.exit_code == 1 and "larger than 1000000 bytes" in text(result.output)
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0
