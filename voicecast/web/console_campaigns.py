"""Campaign pages: the list, the create form, details and actions, the dry run, the report.

Routes (HTML unless said otherwise):

* ``GET /campaigns``: every campaign (name, status, list, progress, created).
* ``GET /campaigns/new``, ``POST /campaigns``: the create form (supervisor), the fields of
  ``voicecast campaign create``; an invalid field re-shows the form with the message.
* ``GET /campaigns/{name}``: details, declaration, the gate's campaign-level problems, and
  (supervisor) the Start / Pause / Resume / Stop buttons that apply to its status.
* ``POST /campaigns/{name}/start|pause|resume|stop``: as ``voicecast campaign
  start|pause|stop`` (resume = start of a paused campaign, as the CLI does it); stop asks
  for a confirmation first (``confirm=yes``), which ``GET /campaigns/{name}/stop`` also
  shows (a reload of the confirmation page). An action that no longer applies (the status
  changed since the page was shown) re-shows the campaign page in its current state with
  the reason in ``#action-error`` (409).
* ``GET /campaigns/{name}/check``: ``voicecast campaign check`` (dry run, nothing written).
* ``GET /campaigns/{name}/report``: per-contact results, paginated;
  ``GET /campaigns/{name}/report.csv``: the same columns as ``voicecast report --format
  csv``, UTF-8 with BOM and CRLF for Excel, formula cells neutralised (OWASP CSV Injection).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections import Counter
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast.campaigns.compliance import campaign_problems, check_campaign
from voicecast.campaigns.service import (
    REPORT_COLUMNS,
    CampaignError,
    CampaignSpec,
    DeclarationSpec,
    create_campaign,
    get_campaign,
    pacing,
    parse_amd_items,
    progress,
    report_rows,
    set_status,
    start_campaign,
)
from voicecast.compliance.types import LEGAL_BASES, REASON_TEXT, Audience, Purpose, reason_text
from voicecast.csvsafe import neutralise_row
from voicecast.dialer.policy import AMD_CHOICES_NOTSURE, AMD_CHOICES_SILENCE, DELIVER_CHOICES
from voicecast.errors import VoicecastError
from voicecast.storage.models import AudioMessage, Campaign, Contact, ContactList
from voicecast.web.console_common import field, pager, report_zone, time_formatter
from voicecast.web.live import AMD_LABELS, OUTCOME_LABELS, STATUS_CODES
from voicecast.web.server import HTTPProblem, context, db_call, gate_env, gettext, render, require

ACTIONS: dict[str, tuple[str, ...]] = {
    "start": ("draft", "stopped"),
    "resume": ("paused",),
    "pause": ("running",),
    "stop": ("draft", "running", "paused"),
}
"""Action -> the campaign statuses it applies to (``set_status`` / ``start_campaign``)."""
ACTION_LABELS: dict[str, str] = {
    "start": "Start",
    "resume": "Resume",
    "pause": "Pause",
    "stop": "Stop",
}
"""Action -> its button's English text (translated with the page)."""

PURPOSE_LABELS: dict[str, str] = {
    Purpose.INFORMATIONAL.value: "Informational (service notice)",
    Purpose.MARKETING.value: "Marketing (canvassing)",
}
AUDIENCE_LABELS: dict[str, str] = {
    Audience.B2C.value: "Consumers (B2C)",
    Audience.B2B.value: "Professionals (B2B)",
}
LEGAL_BASIS_LABELS: dict[str, str] = {
    "consent": "Consent (a)",
    "contract": "Contract (b)",
    "legal_obligation": "Legal obligation (c)",
    "vital_interest": "Vital interests (d)",
    "public_task": "Public task (e)",
    "legitimate_interest": "Legitimate interests (f)",
}
"""GDPR art. 6(1) bases, with the point of the article that gives each."""
DELIVER_LABELS: dict[str, str] = {
    "both": "People and answering machines",
    "humans": "People only",
    "machines": "Answering machines only (voicemail drop)",
}
AMD_POLICY_LABELS: dict[str, str] = {
    "human": OUTCOME_LABELS["human"],
    "machine": OUTCOME_LABELS["machine"],
    "no_answer": OUTCOME_LABELS["no_answer"],
    "hangup": "Hang up (no answer)",
}
"""What a silent or a not-sure AMD answer counts as (the outcomes' own labels)."""
VALUE_LABELS: dict[str, dict[str, str]] = {
    "purpose": PURPOSE_LABELS,
    "audience": AUDIENCE_LABELS,
    "legal_basis": LEGAL_BASIS_LABELS,
    "deliver_to": DELIVER_LABELS,
    "amd_policy": AMD_POLICY_LABELS,
    "outcome": OUTCOME_LABELS,
    "amd_status": AMD_LABELS,
    "reason": {reason.value: text for reason, text in REASON_TEXT.items()},
    "status": {code: code for code in STATUS_CODES},
}
"""Kind -> stored code -> English label, shown translated on the campaign pages (the
outcome, AMD status, gate reason and status texts are the live dashboard's, translated
once). Codes stay the form values and the ``data-*`` attributes."""

INT_FIELDS = {
    "max_channels": "max channels",
    "retries": "retries",
    "speed": "speed",
    "beep_hz": "beep frequency",
    "max_attempts_30d": "max attempts per 30 days",
}
FLOAT_FIELDS = {
    "cps": "calls per second",
    "ring_timeout": "ring timeout",
    "retry_delay": "retry delay",
}
TEXT_FIELDS = (
    "name",
    "list",
    "message",
    "text",
    "voice",
    "scenario",
    "deliver_to",
    "voicemail_message",
    "caller_id",
    "retry_on",
    "amd_on_silence",
    "amd_on_notsure",
    "amd",
    "default_region",
    "purpose",
    "audience",
    "sender",
    "on_behalf_of",
    "optout_key",
    "callback",
    "legal_basis",
    "hours",
    "starts_at",
    "ends_at",
)
FORM_FIELDS = (*TEXT_FIELDS, *INT_FIELDS, *FLOAT_FIELDS)


def setup(app: web.Application) -> None:
    """Register the campaign and report routes."""
    app.router.add_get("/campaigns", campaigns_page)
    app.router.add_get("/campaigns/new", new_campaign_page)
    app.router.add_post("/campaigns", create_campaign_action)
    app.router.add_get("/campaigns/{name}", campaign_page)
    app.router.add_get("/campaigns/{name}/stop", stop_page)
    app.router.add_post("/campaigns/{name}/{action:start|pause|resume|stop}", campaign_action)
    app.router.add_get("/campaigns/{name}/check", check_page)
    app.router.add_get("/campaigns/{name}/report", report_page)
    app.router.add_get("/campaigns/{name}/report.csv", report_csv)


def value_labels(request: web.Request) -> dict[str, dict[str, str]]:
    """:data:`VALUE_LABELS` translated into the request's language (kind -> code -> text);
    templates show ``labels.<kind>.get(code, code)``, so an unknown code shows as it is."""
    _ = gettext(request)
    return {
        kind: {code: _(text) for code, text in table.items()}
        for kind, table in VALUE_LABELS.items()
    }


def campaign_url(name: str, suffix: str = "") -> str:
    """The console path of campaign ``name`` (quoted), plus ``suffix`` (``/check``...)."""
    return f"/campaigns/{quote(name, safe='')}{suffix}"


# --------------------------------------------------------------------------- list


async def campaigns_page(request: web.Request) -> web.Response:
    """``GET /campaigns``: name, status, list, progress done/total, created."""
    require(request, "viewer")

    def load(s: Session) -> list[dict[str, Any]]:
        sizes = dict(
            s.execute(select(Contact.list_id, func.count()).group_by(Contact.list_id)).all()
        )
        rows = []
        for c, list_name in s.execute(
            select(Campaign, ContactList.name)
            .join(ContactList, ContactList.id == Campaign.list_id)
            .order_by(Campaign.created_at.desc(), Campaign.id.desc())
        ):
            p = progress(s, c.id)
            queued = sum(p.values())
            rows.append(
                {
                    "name": c.name,
                    "url": campaign_url(c.name),
                    "status": c.status,
                    "status_reason": c.status_reason,
                    "list": list_name,
                    "done": p["done"],
                    "total": queued or sizes.get(c.list_id, 0),
                    "created_at": c.created_at,
                    "purpose": c.purpose,
                }
            )
        return rows

    rows = await db_call(request, load)
    return render(
        request,
        "campaigns.html",
        campaigns=rows,
        labels=value_labels(request),
        when=time_formatter(report_zone(request)),
    )


# --------------------------------------------------------------------------- create


def _default_values(request: web.Request) -> dict[str, str]:
    """The create form's initial values: the CLI's defaults ([dialer] for the pacing)."""
    d = context(request).runtime.settings.dialer
    values = dict.fromkeys(FORM_FIELDS, "")
    values.update(
        max_channels=str(d.max_channels),
        cps=f"{d.cps:g}",
        ring_timeout=f"{d.ring_timeout:g}",
        retries=str(d.retries),
        retry_delay=f"{d.retry_delay:g}",
        deliver_to="both",
        amd_on_silence="machine",
        amd_on_notsure="human",
        default_region="FR",
    )
    return values


async def _form_choices(request: web.Request) -> dict[str, Any]:
    """The select options of the create form: lists, audio messages, the fixed choices."""

    def load(s: Session) -> tuple[list[str], list[str]]:
        lists = list(s.scalars(select(ContactList.name).order_by(ContactList.name)))
        audio = list(s.scalars(select(AudioMessage.name).order_by(AudioMessage.name)))
        return lists, audio

    lists, audio = await db_call(request, load)
    return {
        "lists": lists,
        "audio": audio,
        "purposes": [p.value for p in Purpose],
        "audiences": [a.value for a in Audience],
        "legal_bases": list(LEGAL_BASES),
        "deliver_choices": list(DELIVER_CHOICES),
        "silence_choices": list(AMD_CHOICES_SILENCE),
        "notsure_choices": list(AMD_CHOICES_NOTSURE),
        "zone_name": str(report_zone(request)),
    }


async def _render_form(
    request: web.Request, values: dict[str, str], error: str | None = None
) -> web.Response:
    choices = await _form_choices(request)
    return render(
        request,
        "campaign_new.html",
        status=400 if error else 200,
        values=values,
        error=error,
        labels=value_labels(request),
        **choices,
    )


async def new_campaign_page(request: web.Request) -> web.Response:
    """``GET /campaigns/new``: the empty create form (supervisor)."""
    require(request, "supervisor")
    values = _default_values(request)
    for key in ("list", "message"):  # preselect from links (?list=...)
        if request.query.get(key):
            values[key] = request.query[key]
    return await _render_form(request, values)


def _int(values: dict[str, str], key: str) -> int | None:
    raw = values[key]
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise CampaignError(f"{INT_FIELDS[key]}: {raw!r} is not a whole number") from None


def _float(values: dict[str, str], key: str) -> float | None:
    raw = values[key].replace(",", ".")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise CampaignError(f"{FLOAT_FIELDS[key]}: {values[key]!r} is not a number") from None


def _instant(raw: str, label: str, zone: tzinfo) -> datetime | None:
    """An ISO 8601 instant; one without an offset (a ``datetime-local`` field) is read in
    the console's zone."""
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise CampaignError(f"{label}: {raw!r} is not a date and time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _amd_params(raw: str) -> tuple[tuple[str, int], ...]:
    """``greeting=2000 total_analysis_time=5000`` (spaces, commas or lines between)."""
    try:
        return parse_amd_items(item for item in re.split(r"[\s,]+", raw) if item)
    except CampaignError as exc:
        raise CampaignError(f"AMD parameters: {exc}") from None


def build_spec(values: dict[str, str], defaults: Any, zone: tzinfo) -> CampaignSpec:
    """The :class:`CampaignSpec` of the create form's ``values``, as ``campaign create``
    builds it from its options (blank pacing fields take ``defaults``, the [dialer]
    settings; blank declaration fields stay unset).

    Raises:
        CampaignError: a number, an instant or an AMD parameter cannot be read (the
            message names the field).
    """

    def text(key: str) -> str | None:
        return values[key] or None

    declaration = DeclarationSpec(
        purpose=text("purpose"),
        audience=text("audience"),
        sender_name=text("sender"),
        on_behalf_of=text("on_behalf_of"),
        optout_key=text("optout_key"),
        callback_number=text("callback"),
        legal_basis=text("legal_basis"),
        hours=text("hours"),
        max_attempts_30d=_int(values, "max_attempts_30d"),
        starts_at=_instant(values["starts_at"], "starts at", zone),
        ends_at=_instant(values["ends_at"], "ends at", zone),
    )
    spec = CampaignSpec(
        name=values["name"],
        list_name=values["list"],
        message=values["message"],
        voicemail_message=text("voicemail_message"),
        caller_id=values["caller_id"],
        **pacing(
            defaults,
            max_channels=_int(values, "max_channels"),
            cps=_float(values, "cps"),
            ring_timeout=_float(values, "ring_timeout"),
            retries=_int(values, "retries"),
            retry_delay=_float(values, "retry_delay"),
        ),
        amd_on_silence=values["amd_on_silence"] or "machine",
        amd_on_notsure=values["amd_on_notsure"] or "human",
        amd_params=_amd_params(values["amd"]),
        default_region=(values["default_region"] or "FR").upper(),
        declaration=declaration,
        message_text=text("text"),
        tts_voice=text("voice"),
        tts_speed=_int(values, "speed"),
        scenario_text=text("scenario"),
        deliver_to=values["deliver_to"] or "both",
        beep_hz=_int(values, "beep_hz"),
    )
    if values["retry_on"]:
        outcomes = tuple(x.strip() for x in values["retry_on"].split(",") if x.strip())
        spec = dataclasses.replace(spec, retry_outcomes=outcomes)
    return spec


async def create_campaign_action(request: web.Request) -> web.StreamResponse:
    """``POST /campaigns``: create the campaign (draft) and show it; an invalid field
    re-shows the form with the error and the values typed (400)."""
    require(request, "supervisor")
    form = await request.post()
    values = {key: field(form, key) for key in FORM_FIELDS}
    values["text"] = _raw(form, "text")
    values["scenario"] = _raw(form, "scenario")
    defaults = context(request).runtime.settings.dialer
    try:
        spec = build_spec(values, defaults, report_zone(request))
        await db_call(request, lambda s: create_campaign(s, spec))
    except VoicecastError as exc:
        return await _render_form(request, values, str(exc))
    raise web.HTTPSeeOther(campaign_url(spec.name))


def _raw(form: Any, key: str) -> str:
    """A multi-line field as typed (only the ends' blank lines removed)."""
    value = form.get(key)
    return value.strip("\r\n") if isinstance(value, str) and value.strip() else ""


# --------------------------------------------------------------------------- details


async def _campaign_view(request: web.Request, name: str) -> dict[str, Any]:
    """Everything the details page shows about campaign ``name``.

    Raises:
        NotFoundError: no such campaign (404).
    """
    env = await gate_env(request)
    now = context(request).clock.now()

    def load(s: Session) -> dict[str, Any]:
        c = get_campaign(s, name)
        p = progress(s, c.id)
        size = s.scalar(select(func.count()).where(Contact.list_id == c.list_id)) or 0
        problems = campaign_problems(s, c, env, now)
        return {
            "c": c,
            "list_name": c.contact_list.name,
            "message_name": c.message.name if c.message else None,
            "voicemail_name": c.voicemail_message.name if c.voicemail_message else None,
            "progress": p,
            "total": sum(p.values()) or size,
            "list_size": size,
            "problems": problems,
        }

    view = await db_call(request, load)
    status = view["c"].status
    view["actions"] = [a for a, statuses in ACTIONS.items() if status in statuses]
    view["url"] = campaign_url(name)
    view["urls"] = {
        "dashboard": campaign_url(name, "/dashboard"),
        "check": campaign_url(name, "/check"),
        "report": campaign_url(name, "/report"),
        "csv": campaign_url(name, "/report.csv"),
    }
    return view


async def campaign_page(request: web.Request) -> web.Response:
    """``GET /campaigns/{name}``: details, declaration, problems, the actions that apply."""
    require(request, "viewer")
    name = request.match_info["name"]
    view = await _campaign_view(request, name)
    return render(
        request,
        "campaign.html",
        labels=value_labels(request),
        when=time_formatter(report_zone(request)),
        **view,
    )


async def _campaign_error_page(
    request: web.Request, name: str, message: str, status: int
) -> web.Response:
    """The details page of campaign ``name`` as it is now, with ``message`` in
    ``#action-error``, answered with HTTP ``status``."""
    view = await _campaign_view(request, name)
    return render(
        request,
        "campaign.html",
        status=status,
        action_error=message,
        labels=value_labels(request),
        when=time_formatter(report_zone(request)),
        **view,
    )


async def _stale_action(request: web.Request, name: str, action: str, status: str) -> web.Response:
    """The answer to an action that does not apply to the campaign's ``status`` (a button
    shown before the status changed): the details page in its current state, with the
    reason, 409 Conflict (RFC 9110 §15.5.10)."""
    _ = gettext(request)
    if action == "pause" and status == "draft":  # as set_status refuses it
        message = _(
            "This campaign has never started: there is nothing to pause. Start it when it "
            "should call; stop it to cancel it."
        )
    else:
        message = _(
            "This campaign is now {status}: “{action}” no longer applies. The page shows its "
            "current state.",
            status=_(status),
            action=_(ACTION_LABELS[action]),
        )
    return await _campaign_error_page(request, name, message, 409)


async def stop_page(request: web.Request) -> web.Response:
    """``GET /campaigns/{name}/stop`` (supervisor): the stop confirmation page (what ``POST``
    without ``confirm=yes`` shows; a reload of that page lands here); the campaign page with
    the reason (409) when stop does not apply to its status."""
    require(request, "supervisor")
    name = request.match_info["name"]
    status = await db_call(request, lambda s: get_campaign(s, name).status)
    if status not in ACTIONS["stop"]:
        return await _stale_action(request, name, "stop", status)
    return render(request, "campaign_stop.html", name=name, url=campaign_url(name))


async def campaign_action(request: web.Request) -> web.StreamResponse:
    """``POST /campaigns/{name}/start|pause|resume|stop`` (supervisor).

    Start and resume run :func:`start_campaign` with the gate's campaign-level checks (as
    ``voicecast campaign start``); pause and stop run :func:`set_status`. An action that
    does not apply to the status (a stale button) re-shows the campaign page as it is now
    with the reason in ``#action-error`` (409); a refused start re-shows the page with the
    problems (400). Stop without ``confirm=yes`` shows a confirmation page.
    """
    require(request, "supervisor")
    name = request.match_info["name"]
    action = request.match_info["action"]
    form = await request.post()
    status = await db_call(request, lambda s: get_campaign(s, name).status)
    if status not in ACTIONS[action]:
        return await _stale_action(request, name, action, status)
    if action == "stop" and field(form, "confirm") != "yes":
        return render(request, "campaign_stop.html", name=name, url=campaign_url(name))
    try:
        if action in ("start", "resume"):
            env = await gate_env(request)
            now = context(request).clock.now()
            await db_call(request, lambda s: start_campaign(s, name, env, now))
        else:
            new_status = "paused" if action == "pause" else "stopped"
            await db_call(request, lambda s: set_status(s, name, new_status))
    except VoicecastError as exc:
        return await _campaign_error_page(request, name, str(exc), 400)
    raise web.HTTPSeeOther(campaign_url(name))


# --------------------------------------------------------------------------- dry run


async def check_page(request: web.Request) -> web.Response:
    """``GET /campaigns/{name}/check[?at=...]``: the gate's dry run (``campaign check``).

    Shows who would be called now, the deferred contacts by reason with the next legal
    time, the blocked ones by reason and legal source, and the campaign-level problems.
    ``at`` (ISO 8601; without an offset, in the console's zone) checks another instant.
    """
    require(request, "viewer")
    name = request.match_info["name"]
    zone = report_zone(request)
    try:
        given = _instant(request.query.get("at", "").strip(), "at", zone)
    except CampaignError as exc:
        raise HTTPProblem(400, "invalid", str(exc)) from exc
    at = given or context(request).clock.now()
    env = await gate_env(request)

    def run(s: Session) -> Any:
        return check_campaign(s, get_campaign(s, name), env, at, details=True)

    report = await db_call(request, run)
    blocked: Counter[tuple[str, str]] = Counter()
    for entry in report.contacts or []:
        if entry["verdict"] == "block":
            blocked[(entry["reason"], entry["source"] or "")] += 1
    deferred = [
        {
            "reason": reason,
            "text": reason_text(reason),
            "count": count,
            "earliest": earliest,
            "latest": latest,
        }
        for reason, (count, earliest, latest) in sorted(report.deferred.items())
    ]
    blocked_rows = [
        {"reason": reason, "text": reason_text(reason), "source": source, "count": count}
        for (reason, source), count in sorted(blocked.items())
    ]
    return render(
        request,
        "campaign_check.html",
        name=name,
        url=campaign_url(name),
        report=report,
        deferred=deferred,
        blocked=blocked_rows,
        at_value=given.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if given else "",
        when=time_formatter(zone),
        zone_name=str(zone),
    )


# --------------------------------------------------------------------------- report


async def report_page(request: web.Request) -> web.Response:
    """``GET /campaigns/{name}/report[?page=N]``: per-contact results (``report_rows``)."""
    require(request, "viewer")
    name = request.match_info["name"]
    zone = report_zone(request)
    rows = await db_call(request, lambda s: report_rows(s, name, zone))
    page = pager(request, len(rows))
    return render(
        request,
        "report.html",
        name=name,
        url=campaign_url(name),
        csv_url=campaign_url(name, "/report.csv"),
        rows=rows[page.offset : page.offset + page.size],
        page=page,
        labels=value_labels(request),
        when=time_formatter(zone),
    )


def report_csv_text(rows: list[dict[str, Any]]) -> str:
    """The report as CSV text: a BOM, the header :data:`REPORT_COLUMNS`, CRLF lines
    (RFC 4180), every cell through :func:`voicecast.csvsafe.neutralise_cell` (OWASP CSV
    Injection)."""
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow(neutralise_row(row[column] for column in REPORT_COLUMNS))
    return buf.getvalue()


async def report_csv(request: web.Request) -> web.Response:
    """``GET /campaigns/{name}/report.csv``: the whole report as a CSV download
    (``text/csv; charset=utf-8``, RFC 6266 ``Content-Disposition``)."""
    require(request, "viewer")
    name = request.match_info["name"]
    zone = report_zone(request)
    rows = await db_call(request, lambda s: report_rows(s, name, zone))
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    disposition = (
        f"attachment; filename=\"report-{safe}.csv\"; filename*=UTF-8''report-"
        f"{quote(name, safe='')}.csv"
    )
    return web.Response(
        body=report_csv_text(rows).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": disposition},
    )
