"""The record of processing (GDPR art. 30(1)): voicecast.register and `voicecast register`.
Fictional organisation, names and hosts only."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pypdf
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session, sessionmaker

from voicecast import app as app_module
from voicecast import register as register_module
from voicecast.cli import main
from voicecast.clock import ManualClock
from voicecast.config import Settings
from voicecast.contacts.importer import CANONICAL_FIELDS
from voicecast.register import (
    NO_REPRESENTATIVE,
    PROOF_BASIS,
    TO_COMPLETE,
    RegisterError,
    build_register,
    recipients,
    render_markdown,
    render_pdf,
)
from voicecast.storage.db import make_engine, session_factory
from voicecast.storage.models import Campaign, ContactList, User, Webhook

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
ORG = "Cœur d'Œuvre Énergie SARL"


def settings(**sections: dict[str, object]) -> Settings:
    data: dict[str, object] = {
        "organisation": {
            "name": ORG,
            "address": "12 rue de l'Exemple, 75011 Paris",
            "contact": "vie-privee@example.org",
            "dpo": "",
            "representative": "",
        },
        "retention": {"contacts_days": 730, "attempts_days": 200, "journal_days": 400},
        "web": {"webhook_keep_days": 14},
    }
    data.update(sections)
    return Settings.model_validate(data)


def seed(s: Session) -> None:
    clist = ContactList(name="clients")
    s.add(clist)
    s.flush()
    common = {
        "list_id": clist.id,
        "message_text": "Bonjour.",
        "caller_id": "+33162000000",
        "max_channels": 1,
        "cps": 1.0,
        "ring_timeout": 20,
        "retries": 0,
        "retry_delay": 0,
        "retry_outcomes": [],
        "amd": {},
    }
    s.add_all(
        [
            Campaign(name="*promo_noël*", purpose="marketing", audience="b2c", **common),
            Campaign(name="salon-pro", purpose="marketing", audience="b2b", **common),
            Campaign(
                name="rappel-rdv",
                purpose="informational",
                audience="b2c",
                legal_basis="contract",
                scenario={
                    "version": 1,
                    "start": "ask",
                    "nodes": {
                        "ask": {"type": "record", "retention_days": 15},
                        "agent": {"type": "transfer", "to": {"queue": "ventes"}},
                    },
                },
                **common,
            ),
            Webhook(url="https://crm.example.com/hooks/voicecast", secret="s", events=["x"]),
            Webhook(
                url="https://hooks.example.org:8443/in?token=t",
                secret="s",
                events=["optout.created"],
                enabled=False,
            ),
            User(name="alice", role="admin", password_hash="x"),
            User(name="bob", role="viewer", password_hash="x"),
        ]
    )


def test_the_register_holds_the_configuration_and_the_database(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s, s.begin():
        seed(s)
    with sessions() as s:
        reg = build_register(s, settings(), NOW, zone=PARIS)
    assert reg.generated_local == "2026-11-25T10:30+01:00"
    controller = {r.label: r.value for r in reg.section("1.").rows}
    assert controller["Name"] == ORG
    assert controller["Data protection officer (art. 37)"] == TO_COMPLETE
    assert controller["Representative in the EU (art. 27)"] == NO_REPRESENTATIVE
    assert reg.webhook_hosts == ("crm.example.com", "hooks.example.org")

    md = render_markdown(reg)
    assert ORG in md and "vie-privee@example.org" in md
    assert md.count(TO_COMPLETE) >= 2
    # purposes from the declared campaigns, names escaped for Markdown
    assert "\\*promo\\_noël\\*" in md
    assert "Commercial canvassing of consumers" in md and "consent, GDPR art. 6(1)(a)" in md
    assert "professionals about their profession" in md
    assert "performance of a contract, GDPR art. 6(1)(b)" in md
    assert "Informational calls (B2C)" in md
    # categories of data: the canonical contact fields
    for name in CANONICAL_FIELDS:
        assert name.replace("_", "\\_") in md
    # recipients and transfers: webhook hosts (never the token in the URL), the carrier
    assert "crm.example.com (enabled" in md and "hooks.example.org (disabled" in md
    assert "token=" not in md and "Webhook host to check: crm.example.com" in md
    assert "by role (1 admin, 1 viewer)" in md
    assert "carrier or SIP trunk" in md and "transfer nodes (1 transfer node)" in md
    # retention periods from [retention], [web] and the record nodes
    assert "730 days after their import" in md
    assert "200 days, then the number is removed" in md
    assert "400 days" in md and "14 days after delivery" in md
    assert "record nodes keep replies up to 15 days" in md
    assert "never purged" in md and "at least 3 years" in md
    # security measures and their state
    for measure in ("argon2id", "TOTP (RFC 6238) mandatory", "HMAC-SHA256", "Ed25519"):
        assert measure in md
    assert "plain HTTP on loopback 127.0.0.1:8080" in md


def test_empty_organisation_and_no_campaign(sessions: sessionmaker[Session]) -> None:
    bare = Settings.model_validate({"web": {"host": "0.0.0.0"}})
    with sessions() as s:
        md = render_markdown(build_register(s, bare, NOW))
    assert md.count(TO_COMPLETE) >= 4
    assert f"Representative in the EU (art. 27)**: {NO_REPRESENTATIVE}" in md
    assert "No campaign is declared yet" in md
    assert "No webhook host configured" in md
    assert "WARNING: plain HTTP on 0.0.0.0:8080, not loopback" in md
    assert "2026-11-25T09:30+00:00" in md


def test_tls_configured_is_said_only_when_its_files_exist(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"

    def web_line(**web: str) -> str:
        with sessions() as s:
            reg = build_register(s, settings(web=dict(web)), NOW)
        return {r.label: r.value for r in reg.section("9.").rows}["Web console and API"]

    missing = web_line(tls_cert=str(cert), tls_key=str(key))
    assert missing.startswith("HTTPS configured but the certificate file is missing")
    assert str(cert) in missing and "refuses to start" in missing
    cert.write_text("-----BEGIN CERTIFICATE-----\n", encoding="ascii")
    assert "the key file is missing" in web_line(tls_cert=str(cert), tls_key=str(key))
    assert "set together" in web_line(tls_cert=str(cert))
    key.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="ascii")
    assert web_line(tls_cert=str(cert), tls_key=str(key)) == (
        f"HTTPS served directly (certificate {cert})"
    )


def test_markdown_keeps_commands_as_code_and_has_no_nested_parentheses(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s, s.begin():
        seed(s)
    with sessions() as s:
        md = render_markdown(build_register(s, settings(), NOW))
    assert "`voicecast retention run --dry-run`" in md and "\\`" not in md
    assert "`voicecast journal verify`" in md
    assert "company (company of a business contact)" in md
    for line in md.splitlines():
        depth = deepest = 0
        # article numbers such as 6(1)(f) or admin(s) are not nesting: drop them first
        for ch in re.sub(r"(?<=\w)(\(\w{1,3}\))+", "", line):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            deepest = max(deepest, depth)
        assert deepest <= 1, line


def test_recipients_and_proof_basis_are_the_same_in_the_register_and_the_export(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s, s.begin():
        seed(s)
    with sessions() as s:
        listed = recipients(s, settings())
        md = render_markdown(build_register(s, settings(), NOW))
    assert [r.kind for r in listed] == [
        "staff",
        "crm_webhook",
        "crm_webhook",
        "telephony",
        "transfer",
    ]
    assert [r.host for r in listed if r.host] == ["crm.example.com", "hooks.example.org"]
    for r in listed:
        assert r.text.replace("_", "\\_") in md
    assert PROOF_BASIS.replace("_", "\\_") in md


def test_the_pdf_is_a_pdf_with_the_same_text(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        seed(s)
    with sessions() as s:
        reg = build_register(s, settings(), NOW, zone=PARIS)
    data = render_pdf(reg)
    assert data.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert reader.metadata is not None and "Record of processing" in str(reader.metadata.title)
    content = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    assert ORG in content  # œ, Œ and É render (DejaVu Sans)
    assert "crm.example.com" in content and "730 days" in content
    assert "*promo_noël*" in content
    assert "9. Security measures" in content


def test_a_missing_font_is_a_clear_error(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(register_module, "FONT_REGULAR", tmp_path / "DejaVuSans.ttf")
    with sessions() as s:
        reg = build_register(s, settings(), NOW)
    with pytest.raises(RegisterError, match="fonts-dejavu-core"):
        render_pdf(reg)


def test_build_needs_an_aware_instant(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, pytest.raises(ValueError, match="aware"):
        build_register(s, settings(), datetime(2026, 11, 25, 9, 30))


# ------------------------------------------------------------------------------------------
# voicecast register

CONFIG = """\
[database]
url = "sqlite:///var/test.db"

[sandbox]
enabled = false

[report]
timezone = "Europe/Paris"

[organisation]
name = "Cœur d'Œuvre Énergie SARL"
"""


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_register_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    config = tmp_path / "voicecast.toml"
    config.write_text(CONFIG, encoding="utf-8")
    config.chmod(0o600)
    assert cli(config, "init").exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path}/var/test.db")
    with session_factory(engine)() as s, s.begin():
        seed(s)
    engine.dispose()
    monkeypatch.setattr(app_module, "make_clock", lambda _runtime: ManualClock(NOW))

    md = cli(config, "register")
    assert md.exit_code == 0, md.output
    assert md.output.startswith("# Record of processing activities")
    assert ORG in md.output and "2026-11-25T10:30+01:00" in md.output
    assert "crm.example.com" in md.output
    # the state of the file modes
    assert "voicecast.toml: mode 0600, owner only" in md.output
    assert "hash.key: not created yet" in md.output

    out = tmp_path / "register.md"
    written = cli(config, "register", "-o", str(out))
    assert written.exit_code == 0 and out.read_text(encoding="utf-8") == md.output

    pdf = tmp_path / "register.pdf"
    made = cli(config, "register", "--format", "pdf", "-o", str(pdf))
    assert made.exit_code == 0, made.output
    assert f"written to {pdf}" in made.output
    assert pdf.read_bytes().startswith(b"%PDF-")

    bad = cli(config, "register", "-o", str(tmp_path / "missing" / "r.md"))
    assert bad.exit_code == 1 and "cannot write" in bad.output
