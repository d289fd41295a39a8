"""The record of processing activities (GDPR art. 30(1)) of a voicecast installation.

:func:`build_register` gathers, from the configuration and the database, what art. 30(1)
asks the controller to record: (a) the controller's identity (``[organisation]``; empty
values are printed "to complete", but the art. 27 representative, needed only outside the
EU), (b) the purposes (the campaigns' declared purposes and the purposes every
installation has: honouring objections, proof, console security), the legal bases (art.
6(1)), (c) the categories of data subjects and of personal data, (d) the recipients
(:func:`recipients`, also listed in every access document: staff, webhook hosts from the
database, the telephony carrier via the PBX), (e) the transfers outside the EU (none made
by voicecast itself; the webhook hosts are listed for the administrator to check), (f)
the retention periods (``[retention]``, ``[web] webhook_keep_days``, the recording nodes'
``retention_days``) and (g) the security measures (art. 32), with the state of the
configurable ones.

:func:`render_markdown` renders it with a Jinja2 template (``voicecast/data/
register.md.j2``); :func:`render_pdf` renders the same sections with fpdf2 in DejaVu Sans
(Debian package ``fonts-dejavu-core``), so accents and ligatures such as "œ" print.

The register is a starting point the controller reviews and completes, not legal advice.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast import __version__
from voicecast.config import Settings
from voicecast.contacts.importer import CANONICAL_FIELDS
from voicecast.errors import VoicecastError
from voicecast.storage.db import sqlite_file
from voicecast.storage.models import (
    Campaign,
    Consent,
    Contact,
    InboundCall,
    OppositionList,
    OptOut,
    Recording,
    User,
    Webhook,
)

TO_COMPLETE = "to complete"
"""How an empty ``[organisation]`` value is printed."""

NO_REPRESENTATIVE = "not applicable if the controller is established in the EU"
"""How an empty ``[organisation] representative`` is printed (GDPR art. 27 applies only to
a controller established outside the EU)."""

OPT_OUT_BASIS = (
    "legal obligation, GDPR art. 6(1)(c) and art. 21(3); CPCE L34-5; Code de la consommation L223-1"
)
"""The legal basis of the opt-out list, the same in the register and in access documents."""

PROOF_BASIS = (
    "legal obligation, GDPR art. 6(1)(c): proof of consent, art. 7(1), and the records of "
    "Code de la consommation L223-1 and D223-9; and legitimate interests, GDPR art. 6(1)(f): "
    "establishing and defending legal claims"
)
"""The legal basis of the consent ledger and the proof journal, the same in the register
(art. 30(1)(b)) and in access documents (art. 15(1)(a))."""

TEMPLATE = Path(__file__).resolve().parent / "data" / "register.md.j2"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_REGULAR = FONT_DIR / "DejaVuSans.ttf"
FONT_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"

FIELD_MEANINGS: dict[str, str] = {
    "first_name": "first name",
    "last_name": "last name",
    "company": "company of a business contact",
    "region": "region or department, for the regional public holidays",
    "postal_code": "postal code, for the regional public holidays",
    "professional": "professional or B2B marker, CPCE L34-5",
}

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class RegisterError(VoicecastError):
    """The register cannot be rendered (e.g. the PDF font is missing)."""


@dataclass(frozen=True)
class Row:
    """One ``label: value`` line of a section."""

    label: str
    value: str


@dataclass(frozen=True)
class Section:
    """One part of the register: a title, an optional introduction, labelled rows and
    bullet items (either may be empty)."""

    title: str
    intro: str = ""
    rows: tuple[Row, ...] = ()
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Register:
    """The record of processing: its sections, when it was generated (UTC) and the zone
    its dates are shown in."""

    title: str
    generated_at: datetime
    zone: tzinfo
    sections: tuple[Section, ...]
    webhook_hosts: tuple[str, ...] = field(default=())

    @property
    def generated_local(self) -> str:
        """The generation instant in :attr:`zone`, ISO 8601 to the minute."""
        return self.generated_at.astimezone(self.zone).isoformat(timespec="minutes")

    def section(self, title: str) -> Section:
        """The section whose title starts with ``title``.

        Raises:
            KeyError: none does.
        """
        for sec in self.sections:
            if sec.title.startswith(title):
                return sec
        raise KeyError(title)


# --------------------------------------------------------------------------- gathering


def _or_todo(value: str) -> str:
    return value.strip() or TO_COMPLETE


def _controller(settings: Settings) -> Section:
    org = settings.organisation
    return Section(
        "1. Controller (GDPR art. 30(1)(a))",
        rows=(
            Row("Name", _or_todo(org.name)),
            Row("Address", _or_todo(org.address)),
            Row("Contact for data subjects' requests", _or_todo(org.contact)),
            Row("Data protection officer (art. 37)", _or_todo(org.dpo)),
            Row(
                "Representative in the EU (art. 27)",
                org.representative.strip() or NO_REPRESENTATIVE,
            ),
        ),
    )


_BASIS_TEXT: dict[str, str] = {
    "consent": "consent, GDPR art. 6(1)(a)",
    "contract": "performance of a contract, GDPR art. 6(1)(b)",
    "legal_obligation": "legal obligation, GDPR art. 6(1)(c)",
    "vital_interest": "vital interests, GDPR art. 6(1)(d)",
    "public_task": "public task, GDPR art. 6(1)(e)",
    "legitimate_interest": "legitimate interests, GDPR art. 6(1)(f)",
}


def _campaign_purposes(session: Session) -> list[tuple[str, str, str]]:
    """(purpose, legal basis, campaigns) for each declared kind of campaign."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for c in session.scalars(select(Campaign).order_by(Campaign.name)):
        purpose = c.purpose or "marketing"  # undeclared: the strictest, as the gate does
        audience = c.audience or "b2c"
        basis = c.legal_basis or ""
        groups[(purpose, audience, basis)].append(c.name)
    out: list[tuple[str, str, str]] = []
    for (purpose, audience, basis), names in sorted(groups.items()):
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        campaigns = f"{len(names)} campaign(s): {shown}"
        if purpose == "marketing" and audience == "b2b":
            out.append(
                (
                    "Commercial canvassing of professionals about their profession by "
                    "automated calls",
                    "legitimate interests, GDPR art. 6(1)(f) (CPCE L34-5: business "
                    "contacts, about their profession, with a free means to object)",
                    campaigns,
                )
            )
        elif purpose == "marketing":
            out.append(
                (
                    "Commercial canvassing of consumers by automated calls (recorded or "
                    "synthesised messages)",
                    "consent, GDPR art. 6(1)(a) (CPCE L34-5; Code de la consommation "
                    "L223-1 and loi 2025-594)",
                    campaigns,
                )
            )
        else:
            out.append(
                (
                    f"Informational calls ({audience.upper()}): service notices, not canvassing",
                    _BASIS_TEXT.get(basis, f"{basis} (declared)" if basis else TO_COMPLETE),
                    campaigns,
                )
            )
    return out


GENERAL_PURPOSES: tuple[tuple[str, str], ...] = (
    (
        "Voice broadcasting of messages to contact lists, with the compliance checks "
        "(calling hours, attempt caps, consent, opposition lists) and campaign reports",
        "the basis of each campaign (below); the checks themselves: legal obligation, "
        "GDPR art. 6(1)(c)",
    ),
    (
        "Honouring objections: the company opt-out list, the opt-out key and the call-back "
        "line, so that a person who objected is never called again",
        OPT_OUT_BASIS,
    ),
    (
        "Screening against national opposition lists (Bloctel, US DNC, UK TPS)",
        "legal obligation, GDPR art. 6(1)(c) (Code de la consommation L223-1; "
        "47 CFR 64.1200(c)(2); PECR reg. 21)",
    ),
    (
        "Proof of lawful calling: the consent ledger and the hash-chained proof journal "
        "(the controller demonstrates compliance, GDPR art. 5(2))",
        PROOF_BASIS,
    ),
    (
        "Security of the console and API: user accounts, logins, audit of changes",
        "legitimate interests, GDPR art. 6(1)(f), and art. 32 (security of processing)",
    ),
)


def _purposes(session: Session) -> tuple[Section, Section]:
    campaign_rows = _campaign_purposes(session)
    rows = [Row(f"General purpose {i}", text) for i, (text, _b) in enumerate(GENERAL_PURPOSES, 1)]
    bases = [
        Row(f"General purpose {i}", basis) for i, (_t, basis) in enumerate(GENERAL_PURPOSES, 1)
    ]
    for i, (text, basis, campaigns) in enumerate(campaign_rows, 1):
        rows.append(Row(f"Campaigns {i}", f"{text}. {campaigns}"))
        bases.append(Row(f"Campaigns {i}", basis))
    intro = (
        "From the campaigns' declared purposes (`voicecast campaign declare`)."
        if campaign_rows
        else "No campaign is declared yet: each campaign declares its purpose (marketing or "
        "informational), audience and, for informational calls, its legal basis."
    )
    return (
        Section("2. Purposes of the processing (art. 30(1)(b))", intro, tuple(rows)),
        Section("3. Legal bases (art. 6(1))", rows=tuple(bases)),
    )


def _subjects(session: Session) -> Section:
    users = int(session.scalar(select(func.count(User.id))) or 0)
    contacts = int(session.scalar(select(func.count(Contact.id))) or 0)
    return Section(
        "4. Categories of data subjects (art. 30(1)(c))",
        items=(
            f"Persons called: the contacts of the imported lists ({contacts} stored now), "
            "consumers or professionals",
            "Persons who call back the campaigns' numbers (call-back and opt-out line)",
            "Persons who gave or withdrew consent (consent ledger)",
            "Persons who objected (company opt-out list) or declined an offer (refusals), "
            "and persons registered on national opposition lists (keyed hashes only)",
            f"Users of the console and API, the organisation's staff ({users} account(s))",
        ),
    )


def _data_categories(session: Session) -> Section:
    fields = ", ".join(f"{name} ({FIELD_MEANINGS.get(name, name)})" for name in CANONICAL_FIELDS)
    recordings = int(session.scalar(select(func.count(Recording.id))) or 0)
    optouts = int(session.scalar(select(func.count()).select_from(OptOut)) or 0)
    consents = int(session.scalar(select(func.count(Consent.id))) or 0)
    inbound = int(session.scalar(select(func.count(InboundCall.id))) or 0)
    lists = ", ".join(session.scalars(select(OppositionList.name).order_by(OppositionList.name)))
    return Section(
        "5. Categories of personal data (art. 30(1)(c))",
        "Only the phone number and these contact fields are kept at import; every other "
        "column of an imported file is dropped (data minimisation, art. 5(1)(c)).",
        rows=(
            Row("Phone number", "E.164 form, of each contact and of each call attempt"),
            Row("Contact fields", fields),
            Row(
                "Call attempts and outcomes",
                "times, outcome (human, machine, no answer...), answering-machine "
                "verdict, Q.850 cause, what was played, keys pressed, scenario results",
            ),
            Row(
                "Recordings of replies",
                f"the callee's voice, when a scenario record node asks for a reply "
                f"({recordings} recording row(s) now)",
            ),
            Row(
                "Calls to the call-back line",
                f"caller's number, number called, action taken ({inbound} now)",
            ),
            Row(
                "Consent records",
                f"number, purpose, granted or withdrawn, when, source, proof reference, "
                f"wording version ({consents} now)",
            ),
            Row(
                "Opt-outs and refusals",
                f"keyed hash (HMAC-SHA256) of the number, date, source ({optouts} opt-outs "
                "now); the number itself is not kept",
            ),
            Row(
                "National opposition lists",
                f"keyed hashes of the listed numbers ({lists or 'none imported'})",
            ),
            Row(
                "Proof journal",
                "gate decisions, calls, messages left, opt-outs, consents, imports, "
                "erasures and console/API changes; people named only by the keyed hash of "
                "their number; actors by user name",
            ),
            Row(
                "Console users",
                "user name, role, argon2id password hash, TOTP secret, hashed recovery "
                "codes and API tokens, login times, address and browser of sessions",
            ),
            Row(
                "Webhook deliveries",
                "event payloads sent to the configured CRM endpoints (they carry the "
                "number and the outcome)",
            ),
        ),
    )


def _host(url: str) -> str:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    return host or url[:60]


def _webhooks(session: Session) -> list[tuple[str, bool, list[str]]]:
    """(host, enabled, events) per webhook."""
    return [
        (_host(w.url), bool(w.enabled), [str(e) for e in w.events])
        for w in session.scalars(select(Webhook).order_by(Webhook.id))
    ]


def _scenario_nodes(session: Session) -> tuple[int, int]:
    """(longest record node retention in days, transfer nodes) over every campaign."""
    longest = 0
    transfers = 0
    for doc in session.scalars(select(Campaign.scenario).where(Campaign.scenario.is_not(None))):
        nodes = dict((doc or {}).get("nodes") or {})
        for node in nodes.values():
            if not isinstance(node, dict):
                continue
            if node.get("type") == "record":
                longest = max(longest, int(node.get("retention_days") or 30))
            elif node.get("type") == "transfer":
                transfers += 1
    return longest, transfers


@dataclass(frozen=True)
class Recipient:
    """A recipient, or category of recipients, of personal data (GDPR art. 4(9)): what the
    record of processing lists (art. 30(1)(d)) and every access document tells the person
    (art. 15(1)(c)), from :func:`recipients`.

    Attributes:
        kind: ``staff``, ``crm_webhook``, ``telephony`` or ``transfer``.
        recipient: who, in words.
        detail: its state (accounts by role, webhook enabled or disabled and its events,
            the dial string); may be empty.
        data: what it receives.
        host: a webhook's host name (never the URL's path or query, which may hold a
            token); None for the other kinds.
    """

    kind: str
    recipient: str
    detail: str
    data: str
    host: str | None = None

    @property
    def text(self) -> str:
        """One line: ``recipient (detail): data``."""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.recipient}{detail}: {self.data}"

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form (``host`` only for a webhook)."""
        out = {
            "kind": self.kind,
            "recipient": self.recipient,
            "detail": self.detail,
            "data": self.data,
        }
        if self.host is not None:
            out["host"] = self.host
        return out


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def recipients(session: Session, settings: Settings) -> tuple[Recipient, ...]:
    """Who receives personal data from this installation: the organisation's staff through
    the console and API, each CRM webhook endpoint (enabled or not: a disabled one may have
    received data before), the telephony carrier behind the PBX and the destinations of the
    scenarios' transfer nodes. voicecast sends personal data nowhere else.

    Used by :func:`build_register` (art. 30(1)(d)) and by
    :func:`voicecast.subjects.collect_subject` (art. 15(1)(c)), so both say the same.
    """
    roles = Counter(session.scalars(select(User.role).where(User.disabled.is_(False))).all())
    staff = ", ".join(_counted(n, role) for role, n in sorted(roles.items())) or "no account yet"
    out = [
        Recipient(
            "staff",
            "Authorised staff of the controller, through the console and API, by role",
            staff,
            "the contacts, campaigns and reports their role shows; admins also answer the "
            "data-subject requests",
        )
    ]
    for host, enabled, events in _webhooks(session):
        state = "enabled" if enabled else "disabled"
        out.append(
            Recipient(
                "crm_webhook",
                f"CRM webhook endpoint {host}",
                f"{state}; events: {', '.join(events) or 'none'}",
                "the events it subscribes to, with the number called and the outcome",
                host=host,
            )
        )
    if settings.sandbox.enabled:
        telephony = Recipient(
            "telephony",
            "The telephony carrier or SIP trunk behind the PBX",
            "now the sandbox's simulated network, from which nothing leaves this machine",
            "the numbers called and the calls",
        )
    else:
        telephony = Recipient(
            "telephony",
            "The telephony carrier or SIP trunk behind the PBX",
            f"dial string {settings.pbx.dial_string}",
            "the numbers called and the calls",
        )
    out.append(telephony)
    _, transfers = _scenario_nodes(session)
    if transfers:
        out.append(
            Recipient(
                "transfer",
                "The destinations of the scenarios' transfer nodes",
                _counted(transfers, "transfer node"),
                "the call, to which the callee is connected",
            )
        )
    return tuple(out)


def _recipients(
    session: Session, settings: Settings, hooks: list[tuple[str, bool, list[str]]]
) -> Section:
    items = [r.text for r in recipients(session, settings)]
    if not hooks:
        items.insert(1, "CRM webhook endpoints: none configured")
    items.append("No other recipient: voicecast sends personal data nowhere else")
    return Section("6. Recipients (art. 30(1)(d))", items=tuple(items))


def _transfers(hooks: list[tuple[str, bool, list[str]]]) -> Section:
    hosts = sorted({host for host, _e, _v in hooks})
    items = (
        tuple(f"Webhook host to check: {h}" for h in hosts)
        if hosts
        else ("No webhook host configured",)
    )
    return Section(
        "7. Transfers to third countries (art. 30(1)(e))",
        "voicecast itself transfers nothing outside the EU: it runs on your server, and "
        "speech synthesis is local. Check where these receivers and your telephony carrier "
        "process data; a transfer needs a safeguard of GDPR chapter V (adequacy decision, "
        "standard contractual clauses).",
        items=items,
    )


def _retention(session: Session, settings: Settings) -> Section:
    r = settings.retention
    longest_node, _ = _scenario_nodes(session)
    nodes = (
        f"; the scenarios' record nodes keep replies up to {longest_node} days"
        if longest_node
        else ""
    )
    return Section(
        "8. Retention periods (art. 30(1)(f), art. 5(1)(e))",
        f"A daily job of voicecast serve (at {r.run_at}, local time) purges or anonymises "
        "what expired and journals it; `voicecast retention run --dry-run` shows what "
        "would go.",
        rows=(
            Row(
                "Contacts without activity",
                f"{r.contacts_days} days after their import, last change or last call",
            ),
            Row(
                "Call attempts and calls to the call-back line",
                f"{r.attempts_days} days, then the number is removed (outcomes stay)",
            ),
            Row(
                "Recordings of replies",
                f"the record node's retention_days, at most {r.recordings_days} days{nodes}",
            ),
            Row(
                "Consents of numbers no contact holds",
                f"{r.consents_days} days after their last change",
            ),
            Row("Refusals", f"{r.refusals_days} days"),
            Row("Proof journal", f"{r.journal_days} days (the chain keeps an anchor)"),
            Row(
                "Webhook deliveries",
                f"{settings.web.webhook_keep_days} days after delivery or failure",
            ),
            Row(
                "Opt-outs",
                "never purged: an objection is honoured for as long as calls are made "
                "(CNIL: at least 3 years); keyed hashes only",
            ),
            Row("National opposition lists", "replaced by each new import"),
            Row(
                "Console sessions",
                f"at most {settings.web.session_hours:g} hours, "
                f"{settings.web.idle_minutes:g} minutes idle",
            ),
        ),
    )


def _mode(path: Path) -> str:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return "not created yet"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    state = "owner only" if mode & 0o077 == 0 else "READABLE BY OTHERS: chmod 600"
    return f"mode {mode:04o}, {state}"


def _tls_state(settings: Settings) -> str:
    """What ``[web] tls_cert``/``tls_key`` give: HTTPS only when both name existing files
    (``voicecast serve`` refuses to start otherwise)."""
    web = settings.web
    if not (web.tls_cert and web.tls_key):
        return (
            "HTTPS configured incompletely: [web] tls_cert and tls_key must be set together; "
            "voicecast serve refuses to start"
        )
    cert, key = settings.path(web.tls_cert), settings.path(web.tls_key)
    if not cert.is_file():
        return (
            f"HTTPS configured but the certificate file is missing ({cert}); voicecast "
            "serve refuses to start"
        )
    if not key.is_file():
        return (
            f"HTTPS configured but the key file is missing ({key}); voicecast serve "
            "refuses to start"
        )
    return f"HTTPS served directly (certificate {cert})"


def _security(settings: Settings) -> Section:
    web = settings.web
    if web.tls_cert or web.tls_key:
        tls = _tls_state(settings)
    elif web.host in LOOPBACK_HOSTS:
        tls = (
            f"plain HTTP on loopback {web.host}:{web.port}; put a TLS reverse proxy in "
            "front before opening it to a network"
        )
    else:
        tls = (
            f"WARNING: plain HTTP on {web.host}:{web.port}, not loopback, and no "
            "certificate set: only safe behind a TLS reverse proxy"
        )
    if not web.enabled:
        tls = "console and API disabled ([web] enabled = false)"
    files: list[Row] = []
    if settings.source is not None:
        files.append(Row("Configuration file", f"{settings.source}: {_mode(settings.source)}"))
    for label, value in (
        ("Keyed-hash key", settings.compliance.hash_key_file),
        ("Journal signing key", settings.journal.signing_key_file),
    ):
        path = settings.path(value)
        files.append(Row(label, f"{path}: {_mode(path)}"))
    db = sqlite_file(settings.database_url())
    if db is not None:
        files.append(Row("Database file", f"{db}: {_mode(db)}"))
    bound = "loopback" if web.host in LOOPBACK_HOSTS else "NOT loopback"
    ami = "sandbox PBX" if settings.sandbox.enabled else f"{settings.ami.host}:{settings.ami.port}"
    return Section(
        "9. Security measures (art. 30(1)(g), art. 32)",
        rows=(
            Row(
                "Passwords",
                "argon2id hashes; accounts locked after "
                f"{web.max_failed_logins} failed logins for {web.lockout_minutes:g} minutes",
            ),
            Row(
                "Two-factor authentication",
                "TOTP (RFC 6238) mandatory for every console account; one-time recovery "
                "codes stored hashed; API tokens stored as SHA-256",
            ),
            Row(
                "Keyed hashes",
                "opt-out, refusal and opposition lists hold HMAC-SHA256 of the number "
                "under a secret key, never the number",
            ),
            Row(
                "Proof journal",
                "hash-chained, append-only: database triggers refuse UPDATE and DELETE; "
                "`voicecast journal verify` names any altered entry; exports signed "
                "(Ed25519)",
            ),
            Row("Web console and API", tls),
            Row(
                "Network exposure",
                f"console bound to {web.host} ({bound}); Asterisk manager interface: {ami}",
            ),
            *files,
        ),
    )


def build_register(
    session: Session, settings: Settings, now: datetime, *, zone: tzinfo | None = None
) -> Register:
    """The record of processing of this installation at ``now``.

    Args:
        session: any session (only reads).
        settings: the configuration.
        now: aware instant, the generation date.
        zone: the zone dates are shown in (default UTC).

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("build_register needs an aware datetime")
    hooks = _webhooks(session)
    purposes, bases = _purposes(session)
    sections = (
        _controller(settings),
        purposes,
        bases,
        _subjects(session),
        _data_categories(session),
        _recipients(session, settings, hooks),
        _transfers(hooks),
        _retention(session, settings),
        _security(settings),
    )
    return Register(
        title="Record of processing activities: voice broadcasting (voicecast)",
        generated_at=now.astimezone(UTC),
        zone=zone or UTC,
        sections=sections,
        webhook_hosts=tuple(sorted({h for h, _e, _v in hooks})),
    )


# --------------------------------------------------------------------------- rendering

_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|"})
_CODE_SPAN_RE = re.compile(r"`([^`]+)`")


def _md(value: Any) -> str:
    """Escape the characters that change inline Markdown (emphasis, links, HTML, table
    cells) and fold whitespace, so a value from the database or the configuration (a
    campaign named "*x*", a URL with "_") prints as written, on one line. A span between
    two backticks (a command such as `voicecast journal verify`) stays a code span, which
    Markdown prints as written; a lone backtick is escaped."""
    text = " ".join(str(value).split())
    out: list[str] = []
    last = 0
    for match in _CODE_SPAN_RE.finditer(text):
        out.append(text[last : match.start()].translate(_MD_SPECIAL))
        out.append(match.group(0))
        last = match.end()
    out.append(text[last:].translate(_MD_SPECIAL))
    return "".join(out)


def _plain(value: str) -> str:
    """A value for the PDF: code spans lose their backticks."""
    return _CODE_SPAN_RE.sub(r"\1", value)


def render_markdown(register: Register) -> str:
    """The register as Markdown (``voicecast/data/register.md.j2``).

    Raises:
        RegisterError: the template is missing from the installation.
    """
    try:
        source = TEMPLATE.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegisterError(f"register template missing: {TEMPLATE}: {exc.strerror}") from exc
    env = jinja2.Environment(
        autoescape=False,  # noqa: S701 - Markdown, not HTML: values are escaped by |md
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md"] = _md
    return env.from_string(source).render(
        register=register, version=__version__, to_complete=TO_COMPLETE
    )


def _font_paths() -> tuple[Path, Path]:
    for path in (FONT_REGULAR, FONT_BOLD):
        if not path.is_file() or not os.access(path, os.R_OK):
            raise RegisterError(
                f"the PDF needs the DejaVu Sans font ({path} is missing): install the "
                "Debian package fonts-dejavu-core, or use --format md"
            )
    return FONT_REGULAR, FONT_BOLD


def render_pdf(register: Register) -> bytes:
    """The register as a PDF (A4, DejaVu Sans, the same sections as the Markdown).

    Raises:
        RegisterError: the DejaVu Sans font files are missing.
    """
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    regular, bold = _font_paths()
    pdf = FPDF(format="A4")
    pdf.set_title(register.title)
    pdf.set_author("voicecast")
    pdf.set_creation_date(register.generated_at)
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(bold))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    def para(text: str, size: float = 10, style: str = "", gap: float = 1.5) -> None:
        pdf.set_font("DejaVu", style, size)
        pdf.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(gap)

    para(register.title, 15, "B", 2)
    para(
        f"Generated by voicecast {__version__} on {register.generated_local}. "
        "Review and complete it before filing it with your records.",
        9,
    )
    for section in register.sections:
        pdf.ln(2)
        para(section.title, 12, "B", 1)
        if section.intro:
            para(_plain(section.intro), 10)
        for row in section.rows:
            pdf.set_font("DejaVu", "B", 10)
            pdf.multi_cell(0, 5, row.label, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_x(pdf.l_margin + 5)
            pdf.set_font("DejaVu", "", 10)
            pdf.multi_cell(0, 5, _plain(row.value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
        for item in section.items:
            pdf.set_font("DejaVu", "", 10)
            pdf.set_x(pdf.l_margin + 2)
            pdf.multi_cell(0, 5, f"•  {_plain(item)}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(0.5)
    return bytes(pdf.output())
