"""Campaigns: create, start, pause/stop, and the per-contact report.

Units: ``cps`` calls started per second; ``ring_timeout`` and ``retry_delay`` seconds;
stored times are UTC, report times are ISO 8601 with the offset of the report's zone.

Every lifecycle change (created, declared, started, resumed, paused, stopped) is journaled
in the caller's transaction (``campaign.changed``,
:func:`voicecast.journal.events.campaign_changed`); the dialer journals ``completed`` and
its own pauses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast.campaigns.compliance import GateEnv
from voicecast.dialer.outcomes import DEFAULT_RETRY_OUTCOMES, NEVER_RETRY, Outcome
from voicecast.dialer.policy import AMD_CHOICES_NOTSURE, AMD_CHOICES_SILENCE, DELIVER_CHOICES
from voicecast.errors import NotFoundError, VoicecastError
from voicecast.journal.events import campaign_changed
from voicecast.pbx.base import amd_param_problem
from voicecast.storage.models import (
    AudioMessage,
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    utcnow,
)

if TYPE_CHECKING:
    from voicecast.config import DialerSettings

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}\Z")


class CampaignError(VoicecastError):
    """A campaign cannot be created or changed as asked; the message says which field."""


@dataclass(frozen=True)
class CampaignSpec:
    """What ``voicecast campaign create`` asks for.

    Attributes:
        caller_id: as typed (national or international); normalised to E.164.
        ring_timeout, retry_delay: seconds. cps: calls per second.
        retry_outcomes: outcomes retried (never ``human``, ``machine``, ``invalid_number``).
        amd_on_silence: ``machine`` or ``no_answer``. amd_on_notsure: ``human``, ``machine``
            or ``hangup``.
        amd_params: AMD() parameters in ms overriding amd.conf's, by
            :class:`~voicecast.pbx.base.AmdParams` field name (e.g. ``("greeting", 2000)``).
        message: an audio library name, or "" for a text campaign (``message_text``).
        message_text: the text spoken by local TTS (merge fields ``{first_name}``...).
        tts_voice, tts_speed: espeak-ng voice (``fr``, ``en-gb``...) and words per minute.
        scenario_text: a scenario document (YAML or JSON), validated against the audio
            library and the list's columns.
        deliver_to: ``both``, ``humans`` or ``machines`` (voicemail drop only).
        beep_hz: the mailbox beep frequency used as a hint (Hz).
    """

    name: str
    list_name: str
    message: str
    caller_id: str
    voicemail_message: str | None = None
    max_channels: int = 10
    cps: float = 1.0
    ring_timeout: float = 30.0
    retries: int = 2
    retry_delay: float = 600.0
    retry_outcomes: tuple[str, ...] = tuple(o.value for o in DEFAULT_RETRY_OUTCOMES)
    amd_on_silence: str = "machine"
    amd_on_notsure: str = "human"
    amd_params: tuple[tuple[str, int], ...] = ()
    default_region: str = "FR"
    declaration: DeclarationSpec | None = None
    message_text: str | None = None
    tts_voice: str | None = None
    tts_speed: int | None = None
    scenario_text: str | None = None
    deliver_to: str = "both"
    beep_hz: int | None = None


def pacing(
    defaults: DialerSettings,
    *,
    max_channels: int | None,
    cps: float | None,
    ring_timeout: float | None,
    retries: int | None,
    retry_delay: float | None,
) -> dict[str, Any]:
    """The pacing and retry fields of a :class:`CampaignSpec`: each value given, else the
    ``[dialer]`` default (what every front end does with a blank option or field).

    Returns:
        ``{"max_channels", "cps", "ring_timeout", "retries", "retry_delay"}`` to pass as
        keyword arguments (cps in calls per second, times in seconds).
    """
    return {
        "max_channels": defaults.max_channels if max_channels is None else max_channels,
        "cps": defaults.cps if cps is None else cps,
        "ring_timeout": defaults.ring_timeout if ring_timeout is None else ring_timeout,
        "retries": defaults.retries if retries is None else retries,
        "retry_delay": defaults.retry_delay if retry_delay is None else retry_delay,
    }


def parse_amd_items(items: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """``PARAM=MILLISECONDS`` items (``greeting=2000``) as ``(param, ms)`` pairs for
    :attr:`CampaignSpec.amd_params`; :func:`create_campaign` checks names and ranges.

    Raises:
        CampaignError: an item without ``=`` or whose value is not a whole number (the
            message quotes the item).
    """
    parsed: list[tuple[str, int]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise CampaignError(f"{item!r}: expected PARAM=MILLISECONDS")
        parsed.append((key.strip(), int(value)))
    return tuple(parsed)


@dataclass(frozen=True)
class DeclarationSpec:
    """A campaign's compliance declaration (``campaign create`` / ``campaign declare``).

    Attributes:
        purpose: ``marketing`` or ``informational``. audience: ``b2c`` or ``b2b``.
        sender_name, on_behalf_of: who calls, for whom (said in the message).
        optout_key: the key that opts out during the message (``9``), or None.
        callback_number: a free number that records opt-outs (national or E.164), or None.
        legal_basis: GDPR art. 6(1) basis of an informational campaign.
        hours: the campaign's own window (``"mon-fri 10:00-12:00"``), tighter than the law.
        max_attempts_30d: the campaign's own cap per number per 30 rolling days.
        starts_at, ends_at: the campaign's dates (aware; stored UTC).
    Fields left None keep their stored value on ``declare``.
    """

    purpose: str | None = None
    audience: str | None = None
    sender_name: str | None = None
    on_behalf_of: str | None = None
    optout_key: str | None = None
    callback_number: str | None = None
    legal_basis: str | None = None
    hours: str | None = None
    max_attempts_30d: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


def apply_declaration(
    campaign: Campaign, spec: DeclarationSpec, default_region: str = "FR"
) -> None:
    """Validate ``spec`` and store its non-None fields on ``campaign``.

    Raises:
        CampaignError: a field is invalid (the message names it).
    """
    from voicecast.compliance.calendar import parse_windows
    from voicecast.compliance.types import LEGAL_BASES, OPTOUT_KEYS, Audience, Purpose

    if spec.purpose is not None:
        if spec.purpose not in {p.value for p in Purpose}:
            raise CampaignError("purpose: marketing or informational")
        campaign.purpose = spec.purpose
    if spec.audience is not None:
        if spec.audience not in {a.value for a in Audience}:
            raise CampaignError("audience: b2c or b2b")
        campaign.audience = spec.audience
    for field_name in ("sender_name", "on_behalf_of"):
        value = getattr(spec, field_name)
        if value is not None:
            text = " ".join(str(value).split())
            if not text or len(text) > 200:
                raise CampaignError(f"{field_name.replace('_', ' ')}: 1 to 200 characters")
            setattr(campaign, field_name, text)
    if spec.optout_key is not None:
        key = spec.optout_key.strip()
        if key and key not in OPTOUT_KEYS:
            raise CampaignError("opt-out key: one of 0-9, * or #")
        if key and campaign.scenario:  # a menu key may not become the opt-out key
            from voicecast.scenarios.model import Scenario, optout_key_problems

            problems = optout_key_problems(Scenario.model_validate(campaign.scenario), key)
            if problems:
                raise CampaignError("opt-out key: " + "; ".join(str(p) for p in problems))
        campaign.optout_key = key or None
    if spec.callback_number is not None:
        number = spec.callback_number.strip()
        campaign.callback_number = normalize_caller_id(number, default_region) if number else None
    if spec.legal_basis is not None:
        if spec.legal_basis not in LEGAL_BASES:
            raise CampaignError(f"legal basis: one of {', '.join(LEGAL_BASES)}")
        campaign.legal_basis = spec.legal_basis
    if spec.hours is not None:
        if spec.hours.strip():
            try:
                campaign.hours = str(parse_windows(spec.hours))
            except ValueError as exc:
                raise CampaignError(f"hours: {exc}") from exc
        else:
            campaign.hours = None
    if spec.max_attempts_30d is not None:
        if not 1 <= spec.max_attempts_30d <= 100:
            raise CampaignError("max attempts per 30 days: 1 to 100")
        campaign.max_attempts_30d = spec.max_attempts_30d
    for field_name in ("starts_at", "ends_at"):
        value = getattr(spec, field_name)
        if value is not None:
            if value.tzinfo is None:
                raise CampaignError(
                    f"--{field_name.replace('_', '-')}: give the UTC offset (e.g. +01:00)"
                )
            setattr(campaign, field_name, value)
    if campaign.starts_at and campaign.ends_at and campaign.ends_at <= campaign.starts_at:
        raise CampaignError("--ends-at must be after --starts-at")


def normalize_caller_id(raw: str, default_region: str = "FR") -> str:
    """The caller ID (CLI) in E.164.

    Raises:
        CampaignError: not a valid phone number (letters, too short, wrong country...).
    """
    text = raw.strip()
    if not re.fullmatch(r"[+0-9 ().-]{3,30}", text):
        raise CampaignError(f"caller ID {raw!r}: only digits, spaces and + are allowed")
    try:
        parsed = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise CampaignError(f"caller ID {raw!r}: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise CampaignError(f"caller ID {raw!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _audio(session: Session, name: str, field: str) -> AudioMessage:
    audio = session.scalar(select(AudioMessage).where(AudioMessage.name == name))
    if audio is None:
        raise CampaignError(f"{field}: no audio named {name!r} (add it: voicecast audio add)")
    return audio


def _list_fields(session: Session, clist: ContactList) -> set[str]:
    """The merge fields the list's contacts have (the union of their mapped columns)."""
    names: set[str] = set()
    for fields in session.scalars(select(Contact.fields).where(Contact.list_id == clist.id)):
        names.update(k for k, v in (fields or {}).items() if v not in (None, ""))
    return names


def _check_flow_options(spec: CampaignSpec, clist: ContactList, list_fields: set[str]) -> None:
    from voicecast.audio.tts import (
        DEFAULT_SPEED,
        DEFAULT_VOICE,
        MAX_TEXT_CHARS,
        TtsError,
        Voice,
        parse_markup,
        template_fields,
    )

    if spec.deliver_to not in DELIVER_CHOICES:
        raise CampaignError(f"deliver-to must be one of {', '.join(DELIVER_CHOICES)}")
    if spec.beep_hz is not None and not 300 <= spec.beep_hz <= 3400:
        raise CampaignError("beep-hz must be between 300 and 3400 Hz (the telephone band)")
    try:
        if spec.tts_voice or spec.tts_speed:
            Voice(name=spec.tts_voice or DEFAULT_VOICE, speed=spec.tts_speed or DEFAULT_SPEED)
        if spec.message_text:
            if len(spec.message_text) > MAX_TEXT_CHARS:
                raise CampaignError(
                    f"text: {len(spec.message_text)} characters, the limit is {MAX_TEXT_CHARS}"
                )
            parse_markup(spec.message_text)  # refused now, not at each contact's dial
            missing = template_fields(spec.message_text) - list_fields
            if missing:
                raise CampaignError(
                    f"text: merge field(s) {', '.join(sorted(missing))} are not columns of "
                    f"list {clist.name!r}"
                )
    except TtsError as exc:
        raise CampaignError(f"text: {exc}") from exc


def _scenario_document(
    session: Session, spec: CampaignSpec, list_fields: set[str]
) -> dict[str, Any] | None:
    """The validated scenario as stored (JSON), or None for the default flow."""
    from voicecast.scenarios.model import ScenarioError, load_scenario

    if spec.scenario_text is None:
        return None
    optout_key = spec.declaration.optout_key if spec.declaration else None
    try:
        scenario = load_scenario(
            spec.scenario_text,
            audio_exists=lambda name: (
                session.scalar(select(AudioMessage.id).where(AudioMessage.name == name)) is not None
            ),
            fields=list_fields,
            optout_key=optout_key,
        )
    except ScenarioError as exc:
        raise CampaignError(f"scenario:\n{exc}") from exc
    return scenario.model_dump(mode="json", exclude_none=True)


def create_campaign(session: Session, spec: CampaignSpec) -> Campaign:
    """Create a campaign in ``draft`` status (does not commit).

    Raises:
        CampaignError: a field is invalid or refers to a missing list or audio; the
            message names the field.
    """
    if not NAME_RE.match(spec.name):
        raise CampaignError(
            f"name {spec.name!r}: use letters, digits, space, '_', '.', '-' (max 100)"
        )
    if session.scalar(select(Campaign.id).where(Campaign.name == spec.name)) is not None:
        raise CampaignError(f"name: a campaign named {spec.name!r} already exists")
    clist = session.scalar(select(ContactList).where(ContactList.name == spec.list_name))
    if clist is None:
        raise CampaignError(
            f"list: no contact list named {spec.list_name!r} (import one: voicecast "
            "contacts import FILE --list NAME)"
        )
    if bool(spec.message) == bool(spec.message_text):
        raise CampaignError("message: give an audio name or a text (--text), one of the two")
    message = _audio(session, spec.message, "message") if spec.message else None
    # one pass over the list's contacts, only when a text or a scenario may use merge fields
    list_fields = _list_fields(session, clist) if spec.message_text or spec.scenario_text else set()
    _check_flow_options(spec, clist, list_fields)
    voicemail = (
        _audio(session, spec.voicemail_message, "voicemail message")
        if spec.voicemail_message
        else None
    )
    if not 1 <= spec.max_channels <= 10000:
        raise CampaignError("max-channels must be between 1 and 10000")
    if not 0 < spec.cps <= 1000:
        raise CampaignError("cps must be > 0 and <= 1000 calls per second")
    if not 5 <= spec.ring_timeout <= 300:
        raise CampaignError("ring-timeout must be between 5 and 300 seconds")
    if not 0 <= spec.retries <= 20:
        raise CampaignError("retries must be between 0 and 20")
    if spec.retry_delay < 0:
        raise CampaignError("retry-delay must be >= 0 seconds")
    known = {o.value for o in Outcome}
    for outcome in spec.retry_outcomes:
        if outcome not in known:
            raise CampaignError(f"retry outcome {outcome!r} unknown (one of {sorted(known)})")
        if Outcome(outcome) in NEVER_RETRY:
            raise CampaignError(f"retry outcome {outcome!r} is never retried")
    if spec.amd_on_silence not in AMD_CHOICES_SILENCE:
        raise CampaignError(f"amd-on-silence must be one of {AMD_CHOICES_SILENCE}")
    if spec.amd_on_notsure not in AMD_CHOICES_NOTSURE:
        raise CampaignError(f"amd-on-notsure must be one of {AMD_CHOICES_NOTSURE}")
    for key, value in spec.amd_params:
        problem = amd_param_problem(key, value)
        if problem is not None:
            raise CampaignError(f"amd parameter {key}={value}: {problem}")
    campaign = Campaign(
        name=spec.name,
        list_id=clist.id,
        message_id=message.id if message else None,
        voicemail_message_id=voicemail.id if voicemail else None,
        message_text=spec.message_text,
        tts_voice=spec.tts_voice,
        tts_speed=spec.tts_speed,
        deliver_to=spec.deliver_to,
        scenario=_scenario_document(session, spec, list_fields),
        caller_id=normalize_caller_id(spec.caller_id, spec.default_region),
        max_channels=spec.max_channels,
        cps=spec.cps,
        ring_timeout=spec.ring_timeout,
        retries=spec.retries,
        retry_delay=spec.retry_delay,
        retry_outcomes=list(spec.retry_outcomes),
        amd={
            "on_silence": spec.amd_on_silence,
            "on_notsure": spec.amd_on_notsure,
            "params": dict(spec.amd_params),
            **({"beep_hz": spec.beep_hz} if spec.beep_hz else {}),
        },
        status="draft",
    )
    if spec.declaration is not None:
        apply_declaration(campaign, spec.declaration, spec.default_region)
    session.add(campaign)
    session.flush()
    campaign_changed(session, campaign, "created")
    return campaign


def declare_campaign(
    session: Session, name: str, spec: DeclarationSpec, default_region: str = "FR"
) -> Campaign:
    """Change a campaign's declaration (not while it runs). Does not commit.

    Raises:
        NotFoundError: no such campaign.
        CampaignError: the campaign is running or finished, or a field is invalid.
    """
    campaign = get_campaign(session, name)
    if campaign.status not in ("draft", "paused"):
        raise CampaignError(
            f"campaign {name!r} is {campaign.status}: pause it before changing its declaration"
        )
    apply_declaration(campaign, spec, default_region)
    campaign_changed(session, campaign, "declared")
    return campaign


def get_campaign(session: Session, name: str) -> Campaign:
    """The campaign named ``name``.

    Raises:
        NotFoundError: no such campaign.
    """
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        raise NotFoundError(f"no campaign named {name!r} (see: voicecast campaign list)")
    return campaign


def start_campaign(
    session: Session, name: str, gate: GateEnv | None = None, now: datetime | None = None
) -> tuple[Campaign, int]:
    """Mark the campaign ``running`` and queue every contact of its list not yet queued.

    Returns (campaign, number of contacts queued now). Does not commit.

    Args:
        gate: when given, the campaign-level compliance checks run first (declaration,
            caller ID, national opposition lists, ring timeout, end date).
        now: the instant (aware) of the start, default the system clock.

    Raises:
        NotFoundError: no such campaign.
        CampaignError: the campaign is completed, its list is empty, or a compliance
            problem forbids the start (every problem is listed with its source).
    """
    campaign = get_campaign(session, name)
    if campaign.status == "completed":
        raise CampaignError(f"campaign {name!r} is completed; create a new campaign")
    now = now or utcnow()
    if gate is not None:
        from voicecast.campaigns.compliance import campaign_problems

        problems = campaign_problems(session, campaign, gate, now)
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise CampaignError(f"campaign {name!r} cannot start:\n{lines}")
    already = select(CampaignContact.contact_id).where(CampaignContact.campaign_id == campaign.id)
    rows = session.execute(
        select(Contact.id, Contact.phone_e164).where(
            Contact.list_id == campaign.list_id, Contact.id.not_in(already)
        )
    ).all()
    session.add_all(
        CampaignContact(
            campaign_id=campaign.id,
            contact_id=cid,
            phone_e164=phone,
            state="pending",
            next_attempt_at=now,
        )
        for cid, phone in rows
    )
    total = (
        session.scalar(select(func.count()).where(CampaignContact.campaign_id == campaign.id)) or 0
    )
    if total + len(rows) == 0:
        raise CampaignError(f"campaign {name!r}: its contact list is empty")
    before = campaign.status
    campaign.status = "running"
    campaign.status_reason = None
    campaign.started_at = campaign.started_at or now
    campaign.finished_at = None
    session.flush()
    if before != "running":
        campaign_changed(session, campaign, "started" if before == "draft" else "resumed")
    return campaign, len(rows)


def set_status(session: Session, name: str, status: str) -> Campaign:
    """Pause (``paused``) or stop (``stopped``) a campaign; calls up now finish normally.

    Pausing a paused campaign changes nothing; a draft (never started) cannot be paused,
    only stopped: otherwise a later resume would start a campaign nobody started.

    Raises:
        CampaignError: unknown status, the campaign is already completed or stopped, or
            it is a draft asked to pause (the API answers 409 ``conflict``).
        NotFoundError: no such campaign.
    """
    if status not in ("paused", "stopped"):
        raise CampaignError(f"unknown status {status!r}")
    campaign = get_campaign(session, name)
    if campaign.status not in ("running", "paused", "draft"):
        raise CampaignError(f"campaign {name!r} is already {campaign.status}")
    if status == "paused" and campaign.status == "draft":
        raise CampaignError(
            f"campaign {name!r} is a draft that has never started: there is nothing to "
            "pause (start it when it should call; stop it to cancel it)"
        )
    before = campaign.status
    campaign.status = status
    if before != status:
        campaign_changed(session, campaign, status)
    return campaign


def progress(session: Session, campaign_id: int) -> dict[str, int]:
    """Counts of the campaign's contacts by state (``pending``, ``dialing``, ``done``)."""
    rows = session.execute(
        select(CampaignContact.state, func.count())
        .where(CampaignContact.campaign_id == campaign_id)
        .group_by(CampaignContact.state)
    ).all()
    counts = {"pending": 0, "dialing": 0, "done": 0}
    counts.update({state: n for state, n in rows})
    return counts


REPORT_COLUMNS = (
    "number",
    "first_name",
    "last_name",
    "outcome",
    "state",
    "attempts",
    "amd_status",
    "amd_cause",
    "q850_cause",
    "q850_text",
    "message_ms",
    "first_attempt_at",
    "last_attempt_at",
    "next_attempt_at",
    "gate",
    "gate_reason",
    "gate_detail",
    "gate_source",
    "error",
)


def _iso(value: datetime | None, zone: tzinfo) -> str:
    return value.astimezone(zone).isoformat(timespec="seconds") if value else ""


def report_rows(
    session: Session, name: str, zone: tzinfo, *, offset: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """One row per contact of the campaign (columns :data:`REPORT_COLUMNS`).

    ``outcome`` is the final outcome (``blocked`` when the compliance gate refused the
    number), or empty while the contact is not done; ``gate*`` give the gate's latest
    decision (``defer``: ``next_attempt_at`` is the next legal instant); the AMD and
    Q.850 columns come from the last attempt; times are ISO 8601 in ``zone`` with offset.
    ``offset`` / ``limit`` give one page of the rows (in the same order; the REST API
    pages with them); :func:`report_size` counts them all.

    Raises:
        NotFoundError: no such campaign.
    """
    campaign = get_campaign(session, name)
    query = (
        select(CampaignContact, Contact)
        .join(Contact, Contact.id == CampaignContact.contact_id)
        .where(CampaignContact.campaign_id == campaign.id)
        .order_by(Contact.source_line, Contact.id)
    )
    paged = bool(offset) or limit is not None
    if paged:
        query = query.offset(offset).limit(limit)
    ccs = session.execute(query).all()
    attempts_query = (
        select(CallAttempt)
        .where(CallAttempt.campaign_id == campaign.id)
        .order_by(CallAttempt.attempt_no, CallAttempt.created_at)
    )
    if paged:
        attempts_query = attempts_query.where(
            CallAttempt.campaign_contact_id.in_([cc.id for cc, _ in ccs])
        )
    attempts: dict[int, list[CallAttempt]] = {}
    for attempt in session.scalars(attempts_query):
        attempts.setdefault(attempt.campaign_contact_id, []).append(attempt)
    rows: list[dict[str, Any]] = []
    for cc, contact in ccs:
        tries = attempts.get(cc.id, [])
        last = tries[-1] if tries else None
        played = sum(int(p.get("ms", 0)) for p in (last.played if last else []))
        rows.append(
            {
                "number": cc.phone_e164,
                "first_name": contact.fields.get("first_name", ""),
                "last_name": contact.fields.get("last_name", ""),
                "outcome": cc.outcome if cc.state == "done" else "",
                "state": cc.state,
                "attempts": len(tries),
                "amd_status": (last.amd_status if last else None) or "",
                "amd_cause": (last.amd_cause if last else None) or "",
                "q850_cause": "" if not last or last.hangup_cause is None else last.hangup_cause,
                "q850_text": (last.hangup_cause_text if last else None) or "",
                "message_ms": played if last else "",
                "first_attempt_at": _iso(tries[0].originate_sent_at or tries[0].created_at, zone)
                if tries
                else "",
                "last_attempt_at": _iso(last.originate_sent_at or last.created_at, zone)
                if last
                else "",
                "next_attempt_at": _iso(cc.next_attempt_at, zone) if cc.state == "pending" else "",
                "gate": cc.gate_verdict or "",
                "gate_reason": cc.gate_reason or "",
                "gate_detail": cc.gate_detail or "",
                "gate_source": cc.gate_source or "",
                "error": (last.error if last else None) or "",
            }
        )
    return rows


def report_size(session: Session, name: str) -> int:
    """How many rows :func:`report_rows` gives for campaign ``name`` (its queued contacts).

    Raises:
        NotFoundError: no such campaign.
    """
    campaign = get_campaign(session, name)
    return (
        session.scalar(
            select(func.count())
            .select_from(CampaignContact)
            .join(Contact, Contact.id == CampaignContact.contact_id)
            .where(CampaignContact.campaign_id == campaign.id)
        )
        or 0
    )
