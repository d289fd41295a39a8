"""Data-subject rights for one phone number: access (GDPR art. 15), rectification (art. 16),
erasure (art. 17).

A person is identified by their number in E.164 (``+33199000010``). Every function takes
the caller's :class:`~sqlalchemy.orm.Session` and never commits: the caller commits the
whole operation (the CLI's ``with sessions() as s, s.begin()``, the web's ``db_call``), or
rolls it back, and then nothing happened. Each one appends its journal entry
(:mod:`voicecast.journal`) in that same transaction, attributed to
:func:`~voicecast.journal.store.current_actor`, naming the person by the keyed hash of the
number only.

* :func:`export_subject` (art. 15): everything held about the number as one JSON-ready
  document (:data:`EXPORT_SCHEMA` version :data:`EXPORT_VERSION`), with the purposes, the
  recipients and the retention periods (art. 15(1)(a), (c), (d)). After an erasure nothing
  is held any more but the opt-out record: the document then says only that.
* :func:`erase_subject` (art. 17): removes the number and the contact fields from every
  table that holds them (contacts of every list, campaign memberships and gate decisions,
  call attempts, recordings of replies, consent records, refusals, inbound calls, webhook
  deliveries) and the files (the WAV of each reply, the speech rendered for the contact by
  text-to-speech, console uploads mentioning the number), and keeps only the keyed hash on
  the opt-out list (source ``erasure``) so that the number is never called again (GDPR art.
  17(3)(b) and 21(3): the objection must keep being honoured). The proof journal keeps its
  entries, which name the person by that hash only (art. 17(3)(e): the defence of legal
  claims). Files are deleted only once the transaction has committed; on SQLite the WAL is
  then checkpointed so that the database file no longer holds the number (deleted rows are
  zeroed by ``PRAGMA secure_delete``, see :mod:`voicecast.storage.db`).
* :func:`rectify_subject` (art. 16): changes contact fields (only
  :data:`~voicecast.contacts.importer.CANONICAL_FIELDS`); speech already rendered with the
  old values is deleted after the commit.

Instants in documents are ISO 8601 strings in UTC.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import phonenumbers
from sqlalchemy import Engine, String, cast, delete, event, or_, select, text, update
from sqlalchemy.orm import Session

from voicecast.compliance.keys import is_e164, number_hash
from voicecast.compliance.numberfile import InvalidNumberError
from voicecast.compliance.suppression import ERASURE_SOURCE, add_opt_out, opt_out_record
from voicecast.contacts.importer import CANONICAL_FIELDS, MAX_FIELD_LENGTH
from voicecast.errors import NotFoundError, VoicecastError
from voicecast.journal import kinds
from voicecast.journal.store import append, iter_entries
from voicecast.register import OPT_OUT_BASIS, PROOF_BASIS, recipients
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Consent,
    Contact,
    ContactList,
    GateDecision,
    InboundCall,
    OppositionEntry,
    OppositionList,
    OptOut,
    Recording,
    Refusal,
    Webhook,
    WebhookDelivery,
    utcnow,
)

if TYPE_CHECKING:
    from voicecast.app import Runtime
    from voicecast.config import Settings

log = logging.getLogger(__name__)

EXPORT_SCHEMA = "voicecast.subject-export"
"""The ``schema`` of an access document."""

EXPORT_VERSION = 1
"""The ``version`` of an access document (raised when its shape changes)."""

UPLOAD_FOLDER_RE = re.compile(r"[0-9a-f]{32}")
"""Console contact uploads waiting for their import: ``<var>/uploads/<32 hex>/``
(:mod:`voicecast.web.console_lists`)."""

_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_PHONE_RUN_RE = re.compile(r"[+(]?[0-9][0-9 .\-/()\u00a0\u202f]*[0-9]")
_LIVE_ATTEMPT_STATES = ("originating", "answered")


class SubjectError(VoicecastError):
    """A data-subject request cannot be carried out as asked (the message says why)."""


class SubjectBusyError(SubjectError):
    """A call to the number is in progress: erase it once the call has ended."""


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class SubjectFiles:
    """Folders whose files may hold a person's data besides the database.

    Attributes:
        tts_dirs: caches of speech rendered by text-to-speech (``tts-<sha256>.wav``); the
            dialer renders each contact's text with their merge fields into
            ``<pbx sounds_dir>/tts`` (:func:`voicecast.app.speaker`).
        replies_dir: where the PBX writes callees' replies (``<attempt id>-<node>.wav``);
            the recordings table names each file, this folder catches those it missed.
        uploads_dir: the console's contact uploads waiting for their import
            (``<var>/uploads``, data file and rejects report).
    """

    tts_dirs: tuple[Path, ...] = ()
    replies_dir: Path | None = None
    uploads_dir: Path | None = None

    @classmethod
    def of(cls, runtime: Runtime) -> SubjectFiles:
        """The folders of a runtime (its settings and sandbox)."""
        settings = runtime.settings
        return cls(
            tts_dirs=(runtime.sounds_dir / "tts", settings.path(settings.audio.tts_cache_dir)),
            replies_dir=runtime.replies_dir,
            # the same folder as voicecast.web.console_lists.upload_root
            uploads_dir=settings.path(settings.web.uploads_dir),
        )


def _national_digits(e164: str) -> str:
    """The national significant number of ``e164`` (``199000010`` for +33199000010)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164.lstrip("+")
    return str(phonenumbers.national_significant_number(parsed))


def _text_mentions(text: str, digits: str) -> bool:
    """``text`` holds a phone number whose digits contain ``digits`` (any written form:
    ``01 99 00 00 10``, ``+33 1 99 00 00 10``, ``0199000010``...)."""
    for run in _PHONE_RUN_RE.finditer(text):
        if digits in "".join(ch for ch in run.group(0) if ch.isdigit()):
            return True
    return False


def _file_mentions(path: Path, digits: str) -> bool:
    """A contact file (CSV, text, xlsx) or rejects report mentioning the number."""
    from voicecast.contacts.importer import ImportFormatError, open_records

    try:
        records, _encoding, _delimiter = open_records(path)
        with contextlib.closing(records):
            for _line, cells in records:
                if any(_text_mentions(cell, digits) for cell in cells):
                    return True
        return False
    except (ImportFormatError, ValueError, OSError):
        pass
    try:  # not readable as a table: look at its bytes as text
        return _text_mentions(path.read_bytes().decode("latin-1"), digits)
    except OSError:
        return False


def _uploads_mentioning(folder: Path | None, e164: str) -> list[Path]:
    """The console upload folders whose files mention ``e164``."""
    if folder is None or not folder.is_dir():
        return []
    digits = _national_digits(e164)
    found: list[Path] = []
    for upload in sorted(folder.iterdir()):
        if not upload.is_dir() or not UPLOAD_FOLDER_RE.fullmatch(upload.name):
            continue
        for item in sorted(upload.iterdir()):
            if item.is_file() and item.suffix != ".json" and _file_mentions(item, digits):
                found.append(upload)
                break
    return found


def _tts_files(
    session: Session, contacts: Iterable[Contact], tts_dirs: tuple[Path, ...]
) -> set[Path]:
    """The speech files rendered for ``contacts`` by their lists' campaigns (existing ones).

    Mirrors the dialer (:func:`voicecast.app.plan_builder`,
    :class:`voicecast.dialer.prompts.PromptSet`): every text of a campaign that uses a
    contact field (its message text, its scenario's texts) merged with the contact's
    fields, in the campaign's voice (or the prompt's), names one ``tts-<sha256>.wav``.
    Texts without contact fields are shared by every callee and hold nothing personal.
    """
    if not tts_dirs:
        return set()
    from voicecast.audio.tts import (
        DEFAULT_SPEED,
        TtsError,
        Voice,
        cache_key,
        parse_markup,
        render_text,
        template_fields,
    )
    from voicecast.dialer.inbound import language_for
    from voicecast.dialer.prompts import VOICE_FOR_LANGUAGE, scenario_prompts
    from voicecast.scenarios.model import Scenario

    found: set[Path] = set()
    by_list: dict[int, list[Campaign]] = {}
    for contact in contacts:
        if contact.list_id not in by_list:
            by_list[contact.list_id] = list(
                session.scalars(select(Campaign).where(Campaign.list_id == contact.list_id))
            )
        for campaign in by_list[contact.list_id]:
            language = (
                ("fr" if campaign.tts_voice.startswith("fr") else "en")
                if campaign.tts_voice
                else language_for(campaign.caller_id)
            )
            speed = campaign.tts_speed or DEFAULT_SPEED
            texts: list[tuple[str, str]] = []  # (template, voice name)
            base_voice = campaign.tts_voice or VOICE_FOR_LANGUAGE.get(language, "en-gb")
            if campaign.message_text:
                texts.append((campaign.message_text, base_voice))
            if campaign.scenario:
                try:
                    scenario = Scenario.model_validate(campaign.scenario)
                except ValueError:
                    scenario = None
                for _node, prompt in scenario_prompts(scenario) if scenario else ():
                    if prompt.text is not None:
                        texts.append((prompt.text, prompt.voice or base_voice))
            fields = {k: (None if v is None else str(v)) for k, v in (contact.fields or {}).items()}
            for template, voice_name in texts:
                try:
                    names = template_fields(template)
                    if not names - {"optout_key"}:
                        continue  # the same speech for every callee
                    merged: dict[str, str | None] = dict.fromkeys(names)
                    if campaign.optout_key:
                        merged["optout_key"] = campaign.optout_key
                    merged |= fields
                    voices = {Voice(name=voice_name, speed=speed)}
                    if voice_name != base_voice:  # a prompt's own voice speaks at 150 wpm
                        voices.add(Voice(name=voice_name, speed=DEFAULT_SPEED))
                    segments = parse_markup(render_text(template, merged))
                except TtsError:
                    continue  # the dialer could not have rendered it either
                for voice in voices:
                    name = f"tts-{cache_key(segments, voice)}.wav"
                    found.update(d / name for d in tts_dirs if (d / name).exists())
    return found


def _replies_of(replies_dir: Path | None, attempt_ids: Iterable[str]) -> set[Path]:
    """Reply files of the attempts in the replies folder (``<attempt id>-<node>.wav``)."""
    if replies_dir is None or not replies_dir.is_dir():
        return set()
    found: set[Path] = set()
    for attempt_id in attempt_ids:
        found.update(p for p in replies_dir.glob(f"{attempt_id}-*") if p.is_file())
    return found


def _remove(path: Path) -> bool:
    """Delete a file or a folder; True when it is gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return True
    except OSError as exc:
        log.error("cannot delete %s: %s", path, exc)
        return False


def _checkpoint(session: Session) -> bool:
    """SQLite: copy the WAL into the database file and truncate it (the WAL still holds
    the pages as they were before the deletion). True when it was fully checkpointed."""
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return True
    engine = bind if isinstance(bind, Engine) else bind.engine
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
    except Exception as exc:  # the erasure is committed: report, do not fail
        log.error("WAL checkpoint after an erasure failed: %s", exc)
        return False
    busy = bool(row[0]) if row is not None else True
    if busy:
        log.warning("WAL checkpoint after an erasure: the database was busy; it completes later")
    return not busy


def vacuum_database(engine: Engine) -> bool:
    """SQLite: rebuild the database file (``VACUUM``), then truncate its WAL.

    ``PRAGMA secure_delete`` (on for every connection voicecast opens) zeroes what is
    deleted from now on; a database written before it was on may still hold old copies of
    rows in its free space (an updated row's previous version, a page freed long ago).
    ``VACUUM`` writes a fresh file holding only the live rows. It needs a moment alone with
    the database (it waits up to the busy timeout for other writers) and free disk space
    about the size of the database.

    Returns:
        False on PostgreSQL (there ``VACUUM`` is routine: autovacuum reclaims dead rows).

    Raises:
        sqlalchemy.exc.OperationalError: the database stayed busy, or the disk is full.
    """
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        auto.exec_driver_sql("VACUUM")
        auto.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return True


def _after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's current transaction has committed; never when it
    rolls back."""
    state = {"cancelled": False}

    def committed(_session: Session) -> None:
        if not state["cancelled"]:
            state["cancelled"] = True
            action()

    def rolled_back(_session: Session) -> None:
        state["cancelled"] = True

    event.listen(session, "after_commit", committed, once=True)
    event.listen(session, "after_rollback", rolled_back, once=True)


# --------------------------------------------------------------------------- helpers


def _checked(e164: str) -> str:
    if not is_e164(e164):
        raise InvalidNumberError(f"not an E.164 number: {e164[:40]!r}")
    return e164


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _campaign_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    return dict(
        session.execute(select(Campaign.id, Campaign.name).where(Campaign.id.in_(wanted))).all()
    )


def _deliveries_query(e164: str) -> Any:
    """Webhook deliveries whose payload mentions the number (JSON stored as text)."""
    return select(WebhookDelivery).where(
        cast(WebhookDelivery.payload, String).contains(e164, autoescape=True)
    )


def _mentions(payload: Any, e164: str) -> bool:
    return e164 in json.dumps(payload, ensure_ascii=False)


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


# --------------------------------------------------------------------------- access (art. 15)


def _contacts_section(session: Session, e164: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Contact, ContactList.name)
        .join(ContactList, ContactList.id == Contact.list_id)
        .where(Contact.phone_e164 == e164)
        .order_by(ContactList.name, Contact.id)
    ).all()
    return [
        {
            "list": list_name,
            "fields": dict(contact.fields or {}),
            "source_line": contact.source_line,
            "created_at": _iso(contact.created_at),
            "updated_at": _iso(contact.updated_at),
        }
        for contact, list_name in rows
    ]


def _declaration(campaign: Campaign) -> dict[str, Any]:
    """What a campaign declares about its calls (name, purpose, legal basis, sender, on
    whose behalf, caller ID), as the access export shows it for each campaign."""
    return {
        "campaign": campaign.name,
        "purpose": campaign.purpose,
        "legal_basis": campaign.legal_basis,
        "sender": campaign.sender_name,
        "on_behalf_of": campaign.on_behalf_of,
        "caller_id": campaign.caller_id,
    }


def _memberships_section(session: Session, e164: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(CampaignContact, Campaign)
        .join(Campaign, Campaign.id == CampaignContact.campaign_id)
        .outerjoin(Contact, Contact.id == CampaignContact.contact_id)
        .where(or_(CampaignContact.phone_e164 == e164, Contact.phone_e164 == e164))
        .order_by(CampaignContact.id)
    ).all()
    out: list[dict[str, Any]] = []
    for cc, campaign in rows:
        decisions = session.scalars(
            select(GateDecision)
            .where(GateDecision.campaign_contact_id == cc.id)
            .order_by(GateDecision.decided_at, GateDecision.id)
        ).all()
        out.append(
            {
                **_declaration(campaign),
                "state": cc.state,
                "attempts": cc.attempts,
                "outcome": cc.outcome,
                "next_attempt_at": _iso(cc.next_attempt_at),
                "gate_decisions": [
                    {
                        "decided_at": _iso(d.decided_at),
                        "verdict": d.verdict,
                        "reason": d.reason,
                        "rule_source": d.rule_source,
                        "detail": d.detail,
                        "until": _iso(d.until),
                        "attempt_id": d.attempt_id,
                    }
                    for d in decisions
                ],
            }
        )
    # campaigns over a list holding the number that have not queued it yet (drafts, or
    # started before the contact was imported): they are a purpose of the data too
    queued = {m["campaign"] for m in out}
    # IN (subquery), not DISTINCT over the campaign rows: PostgreSQL has no equality for the
    # json columns (retry_outcomes, amd), so SELECT DISTINCT on them fails there
    pending = session.scalars(
        select(Campaign)
        .where(Campaign.list_id.in_(select(Contact.list_id).where(Contact.phone_e164 == e164)))
        .order_by(Campaign.id)
    ).all()
    for campaign in pending:
        if campaign.name in queued:
            continue
        out.append(
            {
                **_declaration(campaign),
                "state": f"not queued yet (campaign {campaign.status})",
                "attempts": 0,
                "outcome": None,
                "next_attempt_at": None,
                "gate_decisions": [],
            }
        )
    return out


def _attempt_rows(session: Session, e164: str) -> list[CallAttempt]:
    return list(
        session.scalars(
            select(CallAttempt)
            .where(CallAttempt.number == e164)
            .order_by(CallAttempt.created_at, CallAttempt.id)
        )
    )


def _attempts_section(session: Session, attempts: list[CallAttempt]) -> list[dict[str, Any]]:
    names = _campaign_names(session, (a.campaign_id for a in attempts))
    return [
        {
            "id": a.id,
            "campaign": names.get(a.campaign_id),
            "attempt_no": a.attempt_no,
            "state": a.state,
            "created_at": _iso(a.created_at),
            "originate_sent_at": _iso(a.originate_sent_at),
            "answered_at": _iso(a.answered_at),
            "ended_at": _iso(a.ended_at),
            "outcome": a.outcome,
            "hangup_cause": a.hangup_cause,
            "hangup_cause_text": a.hangup_cause_text,
            "amd_status": a.amd_status,
            "amd_cause": a.amd_cause,
            "played": list(a.played or []),
            "steps": list(a.steps or []),
            "result": a.result,
            "error": a.error,
        }
        for a in attempts
    ]


def _recordings_section(session: Session, attempt_ids: list[str]) -> list[dict[str, Any]]:
    if not attempt_ids:
        return []
    rows = session.scalars(
        select(Recording)
        .where(Recording.attempt_id.in_(attempt_ids))
        .order_by(Recording.created_at, Recording.id)
    ).all()
    names = _campaign_names(session, (r.campaign_id for r in rows))
    return [
        {
            "attempt_id": r.attempt_id,
            "campaign": names.get(r.campaign_id),
            "node": r.node,
            "duration_ms": r.duration_ms,
            "created_at": _iso(r.created_at),
            "delete_after": _iso(r.delete_after),
            "deleted_at": _iso(r.deleted_at),
            "file_kept": r.deleted_at is None and Path(r.path).is_file(),
        }
        for r in rows
    ]


def _consents_section(session: Session, e164: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Consent).where(Consent.phone_e164 == e164).order_by(Consent.recorded_at, Consent.id)
    ).all()
    return [
        {
            "purpose": c.purpose,
            "status": c.status,
            "recorded_at": _iso(c.recorded_at),
            "source": c.source,
            "proof_ref": c.proof_ref,
            "wording_version": c.wording_version,
            "imported_at": _iso(c.imported_at),
            "batch": c.batch,
        }
        for c in rows
    ]


def _opt_out_section(session: Session, key: bytes, e164: str) -> dict[str, Any]:
    record = opt_out_record(session, key, e164)
    if record is None:
        return {"opted_out": False}
    names = _campaign_names(session, [record.campaign_id])
    return {
        "opted_out": True,
        "since": _iso(record.recorded_at),
        "source": record.source,
        "campaign": names.get(record.campaign_id) if record.campaign_id else None,
        "note": record.note,
    }


def _refusals_section(session: Session, digest: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Refusal).where(Refusal.number_hash == digest).order_by(Refusal.refused_at)
    ).all()
    names = _campaign_names(session, (r.campaign_id for r in rows))
    return [
        {
            "refused_at": _iso(r.refused_at),
            "source": r.source,
            "campaign": names.get(r.campaign_id) if r.campaign_id else None,
        }
        for r in rows
    ]


def _opposition_section(session: Session, digest: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(OppositionList)
        .join(OppositionEntry, OppositionEntry.list_id == OppositionList.id)
        .where(OppositionEntry.number_hash == digest)
        .order_by(OppositionList.name)
    ).all()
    return [{"list": o.name, "country": o.country, "list_date": _iso(o.list_date)} for o in rows]


def _inbound_section(session: Session, e164: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(InboundCall)
        .where(InboundCall.caller == e164)
        .order_by(InboundCall.received_at, InboundCall.id)
    ).all()
    names = _campaign_names(session, (r.campaign_id for r in rows))
    return [
        {
            "received_at": _iso(r.received_at),
            "called": r.called,
            "campaign": names.get(r.campaign_id) if r.campaign_id else None,
            "action": r.action,
            "steps": list(r.steps or []),
        }
        for r in rows
    ]


def _deliveries_section(session: Session, e164: str) -> list[dict[str, Any]]:
    rows = [
        d
        for d in session.scalars(_deliveries_query(e164).order_by(WebhookDelivery.id))
        if _mentions(d.payload, e164)
    ]
    hooks = {
        h.id: h
        for h in session.scalars(
            select(Webhook).where(Webhook.id.in_(sorted({d.webhook_id for d in rows})))
        )
    }
    return [
        {
            "receiver": _host(hooks[d.webhook_id].url) if d.webhook_id in hooks else None,
            "event_type": d.event_type,
            "status": d.status,
            "created_at": _iso(d.created_at),
            "delivered_at": _iso(d.delivered_at),
            "payload": d.payload,
        }
        for d in rows
    ]


def _journal_section(session: Session, digest: str) -> list[dict[str, Any]]:
    # iter_entries expunges the session's objects between chunks: read it last
    return [
        {"seq": e.seq, "at": _iso(e.at), "kind": e.kind, "data": json.loads(e.data)}
        for e in iter_entries(session, subject=digest)
    ]


def _purposes(memberships: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Art. 15(1)(a): why the data is processed, and on what legal basis."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for m in memberships:
        ident = (m["campaign"], m["purpose"], m["legal_basis"])
        if ident in seen:
            continue
        seen.add(ident)
        out.append(
            {
                "processing": "voice broadcast campaign",
                "campaign": m["campaign"],
                "purpose": m["purpose"],
                "legal_basis": m["legal_basis"],
                "sender": m["sender"],
                "on_behalf_of": m["on_behalf_of"],
            }
        )
    out.append(
        {
            "processing": "opt-out list",
            "purpose": "never call again a number that objected (GDPR art. 21)",
            "legal_basis": OPT_OUT_BASIS,
            "kept_as": "keyed hash of the number (HMAC-SHA256), never the number",
        }
    )
    out.append(
        {
            "processing": "proof journal",
            "purpose": "proof that each call was lawful (GDPR art. 5(2), art. 17(3)(e))",
            "legal_basis": PROOF_BASIS,
            "kept_as": "entries naming the person by the keyed hash of the number only",
        }
    )
    return out


def _retention(settings: Settings) -> dict[str, Any]:
    """Art. 15(1)(d): how long each kind of data is kept, in days."""
    r = settings.retention
    return {
        "contacts_days": r.contacts_days,
        "call_attempts_days": r.attempts_days,
        "recordings_days": r.recordings_days,
        "consents_days": r.consents_days,
        "refusals_days": r.refusals_days,
        "journal_days": r.journal_days,
        "webhook_deliveries_days": settings.web.webhook_keep_days,
        "opt_out": "kept as long as the organisation calls (the objection must be honoured)",
    }


def _controller(settings: Settings) -> dict[str, str]:
    o = settings.organisation
    return {
        "name": o.name,
        "address": o.address,
        "contact": o.contact,
        "dpo": o.dpo,
        "representative": o.representative,
    }


_RECORD_SECTIONS = (
    "contacts",
    "campaigns",
    "call_attempts",
    "recordings",
    "consents",
    "refusals",
    "inbound_calls",
    "webhook_deliveries",
)
"""The sections of data held about the person. Apart: the suppression facts (the opt-out
record and the national opposition lists holding the number, both keyed hashes) and the
journal."""


def collect_subject(
    session: Session,
    key: bytes,
    e164: str,
    *,
    settings: Settings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The access document of ``e164`` (what :func:`export_subject` returns), without
    journaling it: for a console summary.

    Raises:
        InvalidNumberError: ``e164`` is not E.164.
    """
    e164 = _checked(e164)
    digest = number_hash(key, e164)
    now = now or utcnow()
    attempts = _attempt_rows(session, e164)
    memberships = _memberships_section(session, e164)
    sections: dict[str, list[dict[str, Any]]] = {
        "contacts": _contacts_section(session, e164),
        "campaigns": memberships,
        "call_attempts": _attempts_section(session, attempts),
        "recordings": _recordings_section(session, [a.id for a in attempts]),
        "consents": _consents_section(session, e164),
        "refusals": _refusals_section(session, digest),
        "inbound_calls": _inbound_section(session, e164),
        "webhook_deliveries": _deliveries_section(session, e164),
    }
    opt_out = _opt_out_section(session, key, e164)
    opposition = _opposition_section(session, digest)
    journal = _journal_section(session, digest)
    erasures = [e for e in journal if e["kind"] == kinds.SUBJECT_ERASED]
    held = any(sections[name] for name in _RECORD_SECTIONS)
    head = {
        "schema": EXPORT_SCHEMA,
        "version": EXPORT_VERSION,
        "generated_at": _iso(now),
        "number": e164,
        "journal_subject": digest,
        "held": held,
    }
    if not held and (erasures or not journal):
        # nothing but (perhaps) the suppression facts: say only that
        doc = {**head, "opt_out": opt_out, "opposition_lists": opposition}
        if erasures:
            last = erasures[-1]
            doc["erased_at"] = (last.get("data") or {}).get("erased_at") or last["at"]
            doc["note"] = (
                "Everything held about this number was erased (GDPR art. 17). Only its keyed "
                "hash is kept, on the opt-out list, so that it is never called again; the "
                "proof journal names it by that hash only."
            )
        elif opt_out["opted_out"] or opposition:
            doc["note"] = (
                "Nothing is held about this number but its keyed hash on the opt-out list "
                "or a national opposition list."
            )
        else:
            doc["note"] = "Nothing is held about this number."
        return doc
    return {
        **head,
        "controller": _controller(settings),
        "purposes": _purposes(memberships),
        "recipients": [r.to_dict() for r in recipients(session, settings)],
        "retention": _retention(settings),
        "source": "contact lists imported by the organisation (list and file line in "
        "'contacts'); consent records as collected (their 'source' and 'proof_ref')",
        "rights": "rectification (art. 16), erasure (art. 17), restriction (art. 18), "
        "objection (art. 21) from the controller's contact above; complaint to a "
        "supervisory authority (in France the CNIL, art. 77)",
        **sections,
        "opt_out": opt_out,
        "opposition_lists": opposition,
        "journal": journal,
    }


def export_subject(
    session: Session,
    key: bytes,
    e164: str,
    *,
    settings: Settings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Everything held about ``e164`` (GDPR art. 15), as a JSON-ready document, journaled.

    The document: ``schema`` (:data:`EXPORT_SCHEMA`), ``version``, ``generated_at`` (UTC),
    ``number`` (E.164), ``journal_subject`` (the keyed hash naming the person in the
    journal), ``held`` (False when no table holds the number), then ``controller``,
    ``purposes`` (with the legal bases the record of processing states,
    :data:`voicecast.register.OPT_OUT_BASIS`, :data:`~voicecast.register.PROOF_BASIS`),
    ``recipients`` (the register's, :func:`voicecast.register.recipients`: ``kind``,
    ``recipient``, ``detail``, ``data``, a webhook's ``host``), ``retention`` (days),
    ``source``, ``rights`` and the held
    data: ``contacts`` (list, fields, file line, created/updated), ``campaigns`` (each
    membership: state, outcome, the gate's decisions), ``call_attempts`` (times, outcome,
    Q.850 hangup cause, AMD, what was played, key presses and steps, result),
    ``recordings`` (metadata; the audio is not embedded), ``consents``, ``refusals``,
    ``inbound_calls``, ``webhook_deliveries`` (the payloads); then the suppression facts
    ``opt_out`` and ``opposition_lists`` (which national list holds the number), and
    ``journal`` (seq, at, kind, data; not who acted, staff names being others' data, art.
    15(4)).

    When nothing is held and the journal holds nothing or records an erasure, the document
    is only the head, the suppression facts (``opt_out``: ``{"opted_out", "since",
    "source", ...}``; ``opposition_lists``), ``erased_at`` and a ``note``: after an
    erasure, the suppression is all that is kept.

    Appends ``subject.exported`` (``records``: count per section) in the caller's
    transaction.

    Raises:
        InvalidNumberError: ``e164`` is not E.164.
    """
    doc = collect_subject(session, key, e164, settings=settings, now=now)
    counts = {name: len(doc.get(name) or []) for name in _RECORD_SECTIONS}
    counts["opposition_lists"] = len(doc["opposition_lists"])
    counts["opt_out"] = 1 if doc["opt_out"]["opted_out"] else 0
    counts["journal"] = len(doc.get("journal") or [])
    append(
        session,
        kinds.SUBJECT_EXPORTED,
        {"records": counts},
        subject=doc["journal_subject"],
    )
    return doc


def summary_counts(doc: Mapping[str, Any]) -> dict[str, int]:
    """Count per held section of an access document (zero counts left out)."""
    names = (*_RECORD_SECTIONS, "opposition_lists")
    return {name: len(doc.get(name) or []) for name in names if doc.get(name)}


# --------------------------------------------------------------------------- erasure (art. 17)


@dataclass
class ErasureResult:
    """What :func:`erase_subject` removed.

    Attributes:
        number: the number erased (E.164; for the operator's screen, never journaled).
        removed: rows deleted per kind (``contacts``, ``campaign_contacts``,
            ``gate_decisions``, ``call_attempts``, ``recordings``, ``consents``,
            ``refusals``, ``inbound_calls``, ``webhook_deliveries``, ``opt_out_note``);
            only kinds with something removed.
        files: files and folders to delete (reply WAVs, rendered speech, console uploads).
        files_removed: how many of them were deleted (set after the commit).
        file_kinds: count of ``files`` per kind (``recordings``, ``speech``, ``uploads``).
        opt_out_added: False when the number was already on the opt-out list.
        opted_out_since: the opt-out's recorded instant (UTC; the earliest request).
        opt_out_source: its source (``erasure``, or the earlier request's).
        committed: the transaction committed and the files were deleted.
        checkpointed: SQLite's WAL was copied and truncated after the commit.
    """

    number: str
    removed: dict[str, int]
    files: list[Path]
    file_kinds: dict[str, int]
    opt_out_added: bool
    opted_out_since: datetime
    opt_out_source: str
    files_removed: int = 0
    committed: bool = False
    checkpointed: bool = False
    failed_files: list[Path] = field(default_factory=list)

    @property
    def nothing_held(self) -> bool:
        """Nothing was held about the number (it was only put on the opt-out list)."""
        return not self.removed and not self.files

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (instants ISO 8601 UTC; files counted, not named)."""
        return {
            "number": self.number,
            "nothing_held": self.nothing_held,
            "removed": dict(self.removed),
            "files": dict(self.file_kinds),
            "files_removed": self.files_removed,
            "opt_out_added": self.opt_out_added,
            "opted_out_since": _iso(self.opted_out_since),
            "opt_out_source": self.opt_out_source,
        }


def _deleted(session: Session, statement: Any) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def erase_subject(
    session: Session,
    key: bytes,
    e164: str,
    *,
    files: SubjectFiles | None = None,
    at: datetime | None = None,
) -> ErasureResult:
    """Erase everything held about ``e164`` (GDPR art. 17) but the keyed hash of the
    opt-out list, in the caller's transaction.

    Deleted: the contacts with that number in every list, their campaign memberships and
    gate decisions; every call attempt to it and the recordings of its replies (rows and
    WAV files); its consent records; its refusals; the inbound calls it made; every
    webhook delivery whose payload names it (pending or finished); the speech rendered for
    those contacts (:func:`_tts_files`) and the console uploads mentioning it. An opt-out's
    free-text note is cleared. Then the number is put on the opt-out list (source
    ``erasure``; an earlier opt-out keeps its date and source) so that no later import
    makes it callable again, and ``subject.erased`` is journaled with the counts (no
    number). A number about which nothing is held is still put on the opt-out list and
    journaled (:attr:`ErasureResult.nothing_held`).

    Files are deleted only after the transaction commits (nothing is deleted when it rolls
    back); on SQLite the WAL is then checkpointed (``wal_checkpoint(TRUNCATE)``). A
    database written before ``secure_delete`` was on may keep old copies of rows in its
    free space: :func:`vacuum_database` rewrites it.

    Args:
        files: the folders to look into (:meth:`SubjectFiles.of`); None: the database only
            (and the reply files its rows name).
        at: the erasure instant (aware; default now), the opt-out's recorded time.

    Raises:
        InvalidNumberError: ``e164`` is not E.164.
        SubjectBusyError: a call to the number is in progress (nothing is changed).
    """
    e164 = _checked(e164)
    files = files or SubjectFiles()
    at = at or utcnow()
    digest = number_hash(key, e164)
    if session.get_bind().dialect.name == "sqlite":
        # voicecast's engines set it on every connection (storage.db); be sure of it here
        session.execute(text("PRAGMA secure_delete=ON"))

    contacts = list(session.scalars(select(Contact).where(Contact.phone_e164 == e164)))
    contact_ids = [c.id for c in contacts]
    cc_query = select(CampaignContact.id, CampaignContact.state).where(
        or_(CampaignContact.phone_e164 == e164, CampaignContact.contact_id.in_(contact_ids))
    )
    memberships = session.execute(cc_query).all()
    cc_ids = [row[0] for row in memberships]
    attempts = session.execute(
        select(CallAttempt.id, CallAttempt.state).where(
            or_(CallAttempt.number == e164, CallAttempt.campaign_contact_id.in_(cc_ids))
        )
    ).all()
    if any(state == "dialing" for _id, state in memberships) or any(
        state in _LIVE_ATTEMPT_STATES for _id, state in attempts
    ):
        raise SubjectBusyError(
            "a call to this number is in progress: erase it once the call has ended "
            "(pause its campaign to be sure no new call starts)"
        )
    attempt_ids = [row[0] for row in attempts]

    # the files, found before their rows go
    recordings = (
        list(session.scalars(select(Recording).where(Recording.attempt_id.in_(attempt_ids))))
        if attempt_ids
        else []
    )
    reply_files = {Path(r.path) for r in recordings if r.path} | _replies_of(
        files.replies_dir, attempt_ids
    )
    speech = _tts_files(session, contacts, files.tts_dirs)
    uploads = _uploads_mentioning(files.uploads_dir, e164)

    removed: Counter[str] = Counter()
    if attempt_ids:
        removed["recordings"] = _deleted(
            session, delete(Recording).where(Recording.attempt_id.in_(attempt_ids))
        )
    if cc_ids or attempt_ids:
        removed["gate_decisions"] = _deleted(
            session,
            delete(GateDecision).where(
                or_(
                    GateDecision.campaign_contact_id.in_(cc_ids),
                    GateDecision.attempt_id.in_(attempt_ids),
                )
            ),
        )
    if attempt_ids:
        removed["call_attempts"] = _deleted(
            session, delete(CallAttempt).where(CallAttempt.id.in_(attempt_ids))
        )
    if cc_ids:
        removed["campaign_contacts"] = _deleted(
            session, delete(CampaignContact).where(CampaignContact.id.in_(cc_ids))
        )
    if contact_ids:
        removed["contacts"] = _deleted(session, delete(Contact).where(Contact.id.in_(contact_ids)))
    removed["consents"] = _deleted(session, delete(Consent).where(Consent.phone_e164 == e164))
    removed["refusals"] = _deleted(session, delete(Refusal).where(Refusal.number_hash == digest))
    removed["inbound_calls"] = _deleted(
        session, delete(InboundCall).where(InboundCall.caller == e164)
    )
    delivery_ids = [
        d.id for d in session.scalars(_deliveries_query(e164)) if _mentions(d.payload, e164)
    ]
    if delivery_ids:
        removed["webhook_deliveries"] = _deleted(
            session, delete(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids))
        )
    removed["opt_out_note"] = _deleted(
        session,
        update(OptOut)
        .where(OptOut.number_hash == digest, OptOut.note.is_not(None))
        .values(note=None),
    )
    session.expire_all()

    added = add_opt_out(session, key, e164, source=ERASURE_SOURCE, at=at)
    record = session.get(OptOut, digest, populate_existing=True)
    assert record is not None

    kept = {k: v for k, v in removed.items() if v}
    targets = sorted(reply_files | speech) + uploads
    file_kinds = {
        k: v
        for k, v in (
            ("recordings", len(reply_files)),
            ("speech", len(speech)),
            ("uploads", len(uploads)),
        )
        if v
    }
    result = ErasureResult(
        number=e164,
        removed=kept,
        files=targets,
        file_kinds=file_kinds,
        opt_out_added=added,
        opted_out_since=record.recorded_at,
        opt_out_source=record.source,
    )
    append(
        session,
        kinds.SUBJECT_ERASED,
        {
            "removed": kept,
            "files": file_kinds,
            "opt_out": "added" if added else "already",
            "nothing_held": result.nothing_held,
            "erased_at": at,
        },
        subject=digest,
    )

    def finish() -> None:
        for path in targets:
            if _remove(path):
                result.files_removed += 1
            else:
                result.failed_files.append(path)
        result.committed = True
        result.checkpointed = _checkpoint(session)

    _after_commit(session, finish)
    return result


# --------------------------------------------------------------------------- rectification


@dataclass
class RectifyResult:
    """What :func:`rectify_subject` changed.

    Attributes:
        number: E.164 (for the operator's screen, never journaled).
        fields: the field names asked to change (sorted).
        contacts: contacts found with the number (in the list, if one was named).
        changed: contacts whose fields actually changed.
        lists: the names of the lists of the contacts found.
        files: speech rendered with the old values, deleted after the commit.
        files_removed: how many of them were deleted (set after the commit).
    """

    number: str
    fields: list[str]
    contacts: int
    changed: int
    lists: list[str]
    files: list[Path] = field(default_factory=list)
    files_removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "number": self.number,
            "fields": list(self.fields),
            "contacts": self.contacts,
            "changed": self.changed,
            "lists": list(self.lists),
        }


PROFESSIONAL_NO_VALUES = frozenset(
    {"no", "non", "false", "0", "n", "b2c", "particulier", "consumer", "private", "individual"}
)
"""Values of ``professional`` that say "not a professional" (compared case- and
accent-insensitively). The values that say "professional" are the gate's
(:data:`voicecast.compliance.facts.PROFESSIONAL_VALUES`: yes, oui, true, 1, b2b, pro...)."""

POSTAL_CODE_RE = re.compile(r"(?=[^0-9]*[0-9])[A-Za-z0-9](?:[A-Za-z0-9 -]{0,10}[A-Za-z0-9])?")
"""A postal code as written in any country: letters, digits, spaces and hyphens, at most 12
characters, at least one digit (French ``75001``, UK ``SW1A 1AA``, US ``20500-0003``,
Canada ``K1A 0B1``, Netherlands ``1011 AB``)."""


def _fold(value: str) -> str:
    text = unicodedata.normalize("NFKD", value)
    return "".join(c for c in text if not unicodedata.combining(c)).casefold().strip()


def _check_professional(value: str) -> None:
    """``professional`` must be read by the gate as yes or no (CPCE L34-5: a consumer
    wrongly marked professional would lose the consent requirement; an unreadable value
    would silently count as "not professional")."""
    from voicecast.compliance.facts import is_professional

    if is_professional({"professional": value}) or _fold(value) in PROFESSIONAL_NO_VALUES:
        return
    yes = "yes, oui, true, 1, b2b, pro"
    no = "no, non, false, 0, b2c, particulier"
    raise SubjectError(
        f"professional: {value[:40]!r} is neither yes nor no: use {yes} (a professional "
        f"contact) or {no} (a consumer), or professional= to remove the field"
    )


def _check_postal_code(value: str) -> None:
    """``postal_code`` must be one (:data:`POSTAL_CODE_RE`): the gate reads French five-digit
    codes for the department's public holidays (Code du travail L3134-13, L3422-2)."""
    if not POSTAL_CODE_RE.fullmatch(value):
        raise SubjectError(
            f"postal_code: {value[:40]!r} is not a postal code: letters, digits, spaces and "
            "hyphens, at most 12 characters, at least one digit (French codes are five "
            "digits, e.g. 75001; other countries' forms such as SW1A 1AA are kept as "
            "written)"
        )


def clean_changes(changes: Mapping[str, str | None]) -> dict[str, str]:
    """Validated field changes: name -> new value (``""``: remove the field).

    Values are stripped; they must be at most
    :data:`~voicecast.contacts.importer.MAX_FIELD_LENGTH` characters without control or
    invisible format characters (the importer's rules). ``professional`` must read as yes
    or no to the gate (:data:`~voicecast.compliance.facts.PROFESSIONAL_VALUES`,
    :data:`PROFESSIONAL_NO_VALUES`); ``postal_code`` must match :data:`POSTAL_CODE_RE`.

    Raises:
        SubjectError: no change, a field that is not one of
            :data:`~voicecast.contacts.importer.CANONICAL_FIELDS`, or a bad value (the
            message names the field and what it accepts).
    """
    if not changes:
        raise SubjectError(f"nothing to change: give FIELD=VALUE ({', '.join(CANONICAL_FIELDS)})")
    out: dict[str, str] = {}
    for name, raw in changes.items():
        if name not in CANONICAL_FIELDS:
            raise SubjectError(
                f"{str(name)[:40]!r} is not a contact field: fields are "
                f"{', '.join(CANONICAL_FIELDS)}"
            )
        value = (raw or "").strip()
        if _CONTROL_RE.search(value):
            raise SubjectError(f"{name}: control or invisible characters are not allowed")
        if len(value) > MAX_FIELD_LENGTH:
            raise SubjectError(f"{name}: at most {MAX_FIELD_LENGTH} characters ({len(value)})")
        if value and name == "professional":
            _check_professional(value)
        elif value and name == "postal_code":
            _check_postal_code(value)
        out[name] = value
    return out


def rectify_subject(
    session: Session,
    key: bytes,
    e164: str,
    changes: Mapping[str, str | None],
    *,
    list_name: str | None = None,
    files: SubjectFiles | None = None,
) -> RectifyResult:
    """Change the fields of the contacts with number ``e164`` (GDPR art. 16), in the
    caller's transaction.

    Args:
        changes: field -> new value (``""`` or None removes the field, completing or
            correcting what was imported); only
            :data:`~voicecast.contacts.importer.CANONICAL_FIELDS`.
        list_name: only the contact of this list; None: the contacts of every list.
        files: where speech rendered with the old values may be
            (:meth:`SubjectFiles.of`); those files are deleted after the commit.

    Appends ``subject.rectified`` (``fields``: the names only, ``contacts``: how many
    changed) when a contact changed; a rectification that changes nothing (the contacts
    already hold these values: :attr:`RectifyResult.changed` 0) journals nothing.

    Raises:
        InvalidNumberError: ``e164`` is not E.164.
        SubjectError: bad changes (see :func:`clean_changes`).
        NotFoundError: no such list, or no contact with that number (in it): nothing
            changed.
    """
    e164 = _checked(e164)
    cleaned = clean_changes(changes)
    query = (
        select(Contact, ContactList.name)
        .join(ContactList, ContactList.id == Contact.list_id)
        .where(Contact.phone_e164 == e164)
        .order_by(Contact.id)
    )
    if list_name is not None:
        if session.scalar(select(ContactList.id).where(ContactList.name == list_name)) is None:
            raise NotFoundError(f"no contact list named {list_name!r}: nothing changed")
        query = query.where(ContactList.name == list_name)
    rows = session.execute(query).all()
    if not rows:
        where = f" in list {list_name!r}" if list_name is not None else ""
        raise NotFoundError(f"no contact with this number{where}: nothing changed")
    contacts = [c for c, _ in rows]
    stale = _tts_files(session, contacts, files.tts_dirs) if files else set()
    changed = 0
    now = utcnow()
    for contact in contacts:
        current = dict(contact.fields or {})
        updated = dict(current)
        for name, value in cleaned.items():
            if value:
                updated[name] = value
            else:
                updated.pop(name, None)
        if updated != current:
            contact.fields = updated
            contact.updated_at = now
            changed += 1
    session.flush()
    # only the renders of the old values: the new ones are made when next needed
    stale -= _tts_files(session, contacts, files.tts_dirs) if files else set()
    result = RectifyResult(
        number=e164,
        fields=sorted(cleaned),
        contacts=len(contacts),
        changed=changed,
        lists=sorted({name for _, name in rows}),
        files=sorted(stale),
    )
    if changed:
        append(
            session,
            kinds.SUBJECT_RECTIFIED,
            {"fields": result.fields, "contacts": changed},
            subject=number_hash(key, e164),
        )

    def finish() -> None:
        result.files_removed = sum(1 for path in result.files if _remove(path))

    if result.files:
        _after_commit(session, finish)
    return result
