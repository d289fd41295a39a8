"""REST API: campaigns (create, start, pause, resume, stop), live status, per-contact
results and the compliance dry run. Same service calls as ``voicecast campaign ...``."""

from __future__ import annotations

import builtins
import dataclasses
import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.audio.tts import MAX_SPEED, MAX_TEXT_CHARS, MIN_SPEED
from voicecast.campaigns.compliance import campaign_problems, check_campaign
from voicecast.campaigns.service import (
    CampaignError,
    CampaignSpec,
    DeclarationSpec,
    create_campaign,
    get_campaign,
    pacing,
    progress,
    report_rows,
    report_size,
    set_status,
    start_campaign,
)
from voicecast.campaigns.stats import campaign_stats
from voicecast.compliance.types import LEGAL_BASES, OPTOUT_KEYS, Audience, Purpose
from voicecast.dialer.outcomes import DEFAULT_RETRY_OUTCOMES, NEVER_RETRY, Outcome
from voicecast.dialer.policy import AMD_CHOICES_NOTSURE, AMD_CHOICES_SILENCE, DELIVER_CHOICES
from voicecast.storage.models import Campaign
from voicecast.web.api_common import (
    Instant,
    NamePath,
    OneOf,
    Region,
    answer_page,
    blank_to_none,
    now,
)
from voicecast.web.openapi import (
    Call,
    Page,
    PageQuery,
    RequestModel,
    ResponseModel,
    RouteGroup,
    page_answer,
)
from voicecast.web.server import HTTPProblem, context, db_call, gate_env

routes = RouteGroup("campaigns", "Campaigns: create, control, watch, report, dry-run check.")

RETRYABLE: tuple[str, ...] = tuple(o.value for o in Outcome if o not in NEVER_RETRY)
AMD_PARAMS: tuple[str, ...] = (
    "initial_silence",
    "greeting",
    "after_greeting_silence",
    "total_analysis_time",
    "min_word_length",
    "between_words_silence",
    "maximum_number_of_words",
    "silence_threshold",
    "maximum_word_length",
)

OptionalText = Annotated[str | None, Field(max_length=200)]


# --------------------------------------------------------------------------- models


class CampaignCreate(RequestModel):
    """A new campaign (draft), as ``voicecast campaign create`` takes it. Fields left out
    take the ``[dialer]`` defaults. The compliance declaration (``purpose`` ... ``ends_at``)
    is required before a start; see ``start_problems`` in the answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "autumn",
                    "list": "spring",
                    "text": "Bonjour {first_name}, ceci est un rappel.",
                    "caller_id": "01 62 00 00 00",
                    "purpose": "informational",
                    "audience": "b2c",
                    "sender": "Société Fictive",
                    "on_behalf_of": "Société Fictive",
                    "optout_key": "9",
                    "legal_basis": "contract",
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=100, description="Letters, digits, space _ . -")
    list: str = Field(min_length=1, max_length=200, description="The contact list to call.")
    message: str | None = Field(
        None, max_length=64, description="Audio library name played to people (or `text`)."
    )
    text: str | None = Field(
        None,
        max_length=MAX_TEXT_CHARS,
        description="Instead of `message`: a text spoken by local TTS, with merge fields "
        "({first_name}...) and pauses ([pause 500ms]).",
    )
    voice: OptionalText = Field(None, description="TTS voice (fr, en-gb, en-us...).")
    speed: int | None = Field(None, ge=MIN_SPEED, le=MAX_SPEED, description="TTS words/minute.")
    scenario: str | dict[str, Any] | None = Field(
        None,
        description="Scenario document (menus, transfers, recordings): YAML or JSON text, or "
        "a JSON object.",
    )
    deliver_to: Annotated[str, OneOf(DELIVER_CHOICES)] = Field(
        "both", description="Who gets the message: machines = voicemail drop only."
    )
    beep_hz: int | None = Field(None, ge=300, le=3400, description="Mailbox beep hint (Hz).")
    voicemail_message: str | None = Field(
        None, max_length=64, description="Audio left on answering machines (default: message)."
    )
    caller_id: str = Field(min_length=1, max_length=30, description="Number presented (CLI).")
    max_channels: int | None = Field(None, ge=1, le=10000, description="Calls up at once.")
    cps: float | None = Field(None, gt=0, le=1000, description="Calls started per second.")
    ring_timeout: float | None = Field(None, ge=5, le=300, description="Seconds of ringing.")
    retries: int | None = Field(None, ge=0, le=20, description="Extra attempts.")
    retry_delay: float | None = Field(
        None, ge=0, le=30 * 86400, description="Seconds between attempts."
    )
    retry_on: builtins.list[Annotated[str, OneOf(RETRYABLE)]] | None = Field(
        None,
        max_length=len(RETRYABLE),
        description="Outcomes retried (default "
        + ", ".join(o.value for o in DEFAULT_RETRY_OUTCOMES)
        + ").",
    )
    amd_on_silence: Annotated[str, OneOf(AMD_CHOICES_SILENCE)] = "machine"
    amd_on_notsure: Annotated[str, OneOf(AMD_CHOICES_NOTSURE)] = "human"
    amd: dict[Annotated[str, OneOf(AMD_PARAMS)], Annotated[int, Field(ge=0, le=100000)]] = Field(
        default_factory=dict, description="AMD() parameter overrides (ms; see CLI --amd)."
    )
    default_region: Region = "FR"
    purpose: Purpose | None = None
    audience: Audience | None = None
    sender: OptionalText = Field(None, description="Who calls (named in the message).")
    on_behalf_of: OptionalText = Field(None, description="Whose offer or notice it is.")
    optout_key: Annotated[str, OneOf(tuple(sorted(OPTOUT_KEYS)))] | None = Field(
        None, description="Key that opts out during the message."
    )
    callback: str | None = Field(
        None, max_length=30, description="Free call-back number that records opt-outs."
    )
    legal_basis: Annotated[str, OneOf(LEGAL_BASES)] | None = Field(
        None, description="GDPR art. 6(1) basis of an informational campaign."
    )
    hours: OptionalText = Field(
        None, description="The campaign's own window, e.g. 'mon-fri 10:00-12:00 14:00-18:00'."
    )
    max_attempts_30d: int | None = Field(None, ge=1, le=100)
    starts_at: Instant | None = Field(None, description="Do not call before (ISO 8601).")
    ends_at: Instant | None = Field(None, description="Do not call from (ISO 8601).")


class Progress(ResponseModel):
    """A campaign's contacts by state."""

    pending: int
    dialing: int
    done: int


class Declaration(ResponseModel):
    """The compliance declaration."""

    purpose: str | None
    audience: str | None
    sender: str | None
    on_behalf_of: str | None
    optout_key: str | None
    callback: str | None
    legal_basis: str | None
    hours: str | None
    max_attempts_30d: int | None
    starts_at: datetime | None
    ends_at: datetime | None


class CampaignItem(ResponseModel):
    """A campaign in a list."""

    name: str
    status: str = Field(description="draft, running, paused, stopped or completed.")
    status_reason: str | None
    list: str
    purpose: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress


class CampaignPage(Page[CampaignItem]):
    """A page of campaigns, oldest first."""


class Problem(ResponseModel):
    """A reason the campaign may not dial (with its legal source)."""

    code: str
    message: str
    source: str


class CampaignDetail(CampaignItem):
    """Everything about one campaign."""

    message: str | None
    voicemail_message: str | None
    text: str | None
    voice: str | None
    speed: int | None
    deliver_to: str
    scenario: dict[str, Any] | None
    caller_id: str
    max_channels: int
    cps: float
    ring_timeout: float
    retries: int
    retry_delay: float
    retry_on: builtins.list[str]
    amd: dict[str, Any]
    declaration: Declaration


class CampaignCreated(CampaignDetail):
    """The campaign just created, and what would stop it from starting now."""

    start_problems: builtins.list[Problem] = Field(
        description="Fix these (declaration, caller ID...) before a start; empty: may start."
    )


class ActionResult(ResponseModel):
    """The campaign's status after start, pause, resume or stop."""

    campaign: str
    status: str
    queued: int | None = Field(description="Contacts queued by a start or resume (else null).")


class CampaignStatus(ResponseModel):
    """Live figures (see :class:`voicecast.campaigns.stats.CampaignStats`)."""

    campaign: str
    status: str
    status_reason: str | None
    at: str = Field(description="Snapshot time, ISO 8601 UTC.")
    calls_up: int = Field(description="Attempts sent to the PBX and not ended.")
    cps: float = Field(description="Originates per second over the last 10 s.")
    attempts: int
    contacts: int
    done: int
    pending: int
    dialing: int
    progress: float = Field(ge=0, le=1, description="done / contacts.")
    outcomes: dict[str, int]
    amd: dict[str, int]
    deferred: dict[str, int] = Field(description="Contacts deferred by the gate, by reason.")
    blocked: dict[str, int] = Field(description="Contacts blocked by the gate, by reason.")


class ResultRow(ResponseModel):
    """One contact's result (``voicecast report``; times ISO 8601 in [report] timezone)."""

    number: str
    first_name: str | None
    last_name: str | None
    outcome: str | None = Field(description="Final outcome; null while not done.")
    state: str
    attempts: int
    amd_status: str | None
    amd_cause: str | None
    q850_cause: int | None
    q850_text: str | None
    message_ms: int | None = Field(description="Audio played in the last attempt (ms).")
    first_attempt_at: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    gate: str | None
    gate_reason: str | None
    gate_detail: str | None
    gate_source: str | None
    error: str | None


class ResultPage(Page[ResultRow]):
    """A page of per-contact results, in file order."""


class CheckQuery(RequestModel):
    """When to check."""

    at: Instant | None = Field(
        None, description="Check as of this instant (ISO 8601 with offset; default now)."
    )


class DeferredCount(ResponseModel):
    """Contacts deferred for one reason, and until when (ISO 8601 UTC)."""

    count: int
    earliest: str | None
    latest: str | None


class CheckResult(ResponseModel):
    """The gate's dry run (``voicecast campaign check``): nothing dialled or written."""

    at: str
    may_start: bool = Field(description="No campaign-level problem forbids dialling.")
    would_call_now: int
    deferred: dict[str, DeferredCount]
    blocked: dict[str, int]
    already_done: int
    problems: list[Problem]


# --------------------------------------------------------------------------- helpers


def _item_fields(s: Session, c: Campaign) -> dict[str, Any]:
    return {
        "name": c.name,
        "status": c.status,
        "status_reason": c.status_reason,
        "list": c.contact_list.name,
        "purpose": c.purpose,
        "created_at": c.created_at,
        "started_at": c.started_at,
        "finished_at": c.finished_at,
        "progress": Progress(**progress(s, c.id)),
    }


def _detail_fields(s: Session, c: Campaign) -> dict[str, Any]:
    amd = dict(c.amd or {})
    return {
        **_item_fields(s, c),
        "message": c.message.name if c.message else None,
        "voicemail_message": c.voicemail_message.name if c.voicemail_message else None,
        "text": c.message_text,
        "voice": c.tts_voice,
        "speed": c.tts_speed,
        "deliver_to": c.deliver_to,
        "scenario": c.scenario,
        "caller_id": c.caller_id,
        "max_channels": c.max_channels,
        "cps": c.cps,
        "ring_timeout": c.ring_timeout,
        "retries": c.retries,
        "retry_delay": c.retry_delay,
        "retry_on": [str(o) for o in c.retry_outcomes or []],
        "amd": amd,
        "declaration": Declaration(
            purpose=c.purpose,
            audience=c.audience,
            sender=c.sender_name,
            on_behalf_of=c.on_behalf_of,
            optout_key=c.optout_key,
            callback=c.callback_number,
            legal_basis=c.legal_basis,
            hours=c.hours,
            max_attempts_30d=c.max_attempts_30d,
            starts_at=c.starts_at,
            ends_at=c.ends_at,
        ),
    }


def _problems(items: list[Any]) -> list[Problem]:
    return [Problem(code=p.code, message=p.message, source=p.source) for p in items]


def _spec(body: CampaignCreate, call: Call) -> CampaignSpec:
    """The :class:`CampaignSpec` of a request, defaults from ``[dialer]`` (as the CLI)."""
    scenario = body.scenario
    scenario_text = json.dumps(scenario) if isinstance(scenario, dict) else scenario
    spec = CampaignSpec(
        name=body.name,
        list_name=body.list,
        message=body.message or "",
        voicemail_message=body.voicemail_message,
        caller_id=body.caller_id,
        **pacing(
            context(call.request).runtime.settings.dialer,
            max_channels=body.max_channels,
            cps=body.cps,
            ring_timeout=body.ring_timeout,
            retries=body.retries,
            retry_delay=body.retry_delay,
        ),
        amd_on_silence=body.amd_on_silence,
        amd_on_notsure=body.amd_on_notsure,
        amd_params=tuple(body.amd.items()),
        default_region=body.default_region,
        declaration=DeclarationSpec(
            purpose=body.purpose.value if body.purpose else None,
            audience=body.audience.value if body.audience else None,
            sender_name=body.sender,
            on_behalf_of=body.on_behalf_of,
            optout_key=body.optout_key,
            callback_number=body.callback,
            legal_basis=body.legal_basis,
            hours=body.hours,
            max_attempts_30d=body.max_attempts_30d,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
        ),
        message_text=body.text,
        tts_voice=body.voice,
        tts_speed=body.speed,
        scenario_text=scenario_text,
        deliver_to=body.deliver_to,
        beep_hz=body.beep_hz,
    )
    if body.retry_on is not None:
        spec = dataclasses.replace(spec, retry_outcomes=tuple(body.retry_on))
    return spec


# --------------------------------------------------------------------------- routes


@routes.get(
    "/api/v1/campaigns",
    "List the campaigns",
    role="viewer",
    query_model=PageQuery,
    response=CampaignPage,
)
async def list_campaigns(call: Call) -> CampaignPage:
    """The campaigns, oldest first, with status and progress."""
    return await answer_page(
        call,
        CampaignPage,
        select(Campaign).order_by(Campaign.created_at, Campaign.id),
        lambda s, row: CampaignItem(**_item_fields(s, row[0])),
    )


@routes.post(
    "/api/v1/campaigns",
    "Create a campaign",
    role="supervisor",
    body=CampaignCreate,
    response=CampaignCreated,
    status=201,
    errors=(409, 503),
)
async def create_campaign_(call: Call) -> CampaignCreated:
    """Create a draft campaign, as `voicecast campaign create` does, and say what would
    stop it from starting now (`start_problems`). 409 when the name is taken."""
    body = call.body_as(CampaignCreate)
    spec = _spec(body, call)
    env = await gate_env(call.request)
    at = now(call.request)

    def work(s: Session) -> CampaignCreated:
        if s.scalar(select(Campaign.id).where(Campaign.name == spec.name)) is not None:
            raise HTTPProblem(409, "conflict", f"name: a campaign named {spec.name!r} exists")
        c = create_campaign(s, spec)
        problems = campaign_problems(s, c, env, at)
        return CampaignCreated(**_detail_fields(s, c), start_problems=_problems(problems))

    return await db_call(call.request, work)


@routes.get(
    "/api/v1/campaigns/{name}",
    "Show a campaign",
    role="viewer",
    path_model=NamePath,
    response=CampaignDetail,
)
async def get_campaign_(call: Call) -> CampaignDetail:
    """Everything about one campaign: flow, pacing, retries, AMD, declaration, progress."""
    name = call.path_as(NamePath).name
    return await db_call(
        call.request, lambda s: CampaignDetail(**_detail_fields(s, get_campaign(s, name)))
    )


async def _start(call: Call, *, resume: bool) -> ActionResult:
    name = call.path_as(NamePath).name
    env = await gate_env(call.request)
    at = now(call.request)

    def work(s: Session) -> ActionResult:
        if resume:
            status = get_campaign(s, name).status
            if status != "paused":
                raise HTTPProblem(
                    409, "conflict", f"campaign {name!r} is {status}, not paused: nothing to resume"
                )
        try:
            c, queued = start_campaign(s, name, env, at)
        except CampaignError as exc:
            raise HTTPProblem(409, "conflict", str(exc)) from None
        return ActionResult(campaign=c.name, status=c.status, queued=queued)

    return await db_call(call.request, work)


async def _set(call: Call, status: str) -> ActionResult:
    name = call.path_as(NamePath).name

    def work(s: Session) -> ActionResult:
        try:
            c = set_status(s, name, status)
        except CampaignError as exc:
            raise HTTPProblem(409, "conflict", str(exc)) from None
        return ActionResult(campaign=c.name, status=c.status, queued=None)

    return await db_call(call.request, work)


@routes.post(
    "/api/v1/campaigns/{name}/start",
    "Start a campaign",
    role="supervisor",
    path_model=NamePath,
    response=ActionResult,
    errors=(409, 503),
)
async def start_campaign_(call: Call) -> ActionResult:
    """Start (or resume) the campaign: the compliance checks run first (declaration, caller
    ID, national lists...), then every contact of its list not yet queued is queued; the
    running `voicecast serve` dials it. 409 when the campaign is completed, its list is
    empty, or a compliance problem forbids the start (each problem listed)."""
    return await _start(call, resume=False)


@routes.post(
    "/api/v1/campaigns/{name}/pause",
    "Pause a campaign",
    role="supervisor",
    path_model=NamePath,
    response=ActionResult,
    errors=(409,),
)
async def pause_campaign(call: Call) -> ActionResult:
    """No new calls; calls up now finish. `resume` (or `start`) continues. 409 when the
    campaign is already stopped or completed, or is a draft never started."""
    return await _set(call, "paused")


@routes.post(
    "/api/v1/campaigns/{name}/resume",
    "Resume a paused campaign",
    role="supervisor",
    path_model=NamePath,
    response=ActionResult,
    errors=(409, 503),
)
async def resume_campaign(call: Call) -> ActionResult:
    """Start a paused campaign again (as `voicecast campaign start` does for a paused
    campaign). 409 when it is not paused or a compliance problem forbids it."""
    return await _start(call, resume=True)


@routes.post(
    "/api/v1/campaigns/{name}/stop",
    "Stop a campaign",
    role="supervisor",
    path_model=NamePath,
    response=ActionResult,
    errors=(409,),
)
async def stop_campaign(call: Call) -> ActionResult:
    """No new calls; calls up now finish. A stopped campaign can be started again. 409
    when it is already stopped or completed."""
    return await _set(call, "stopped")


@routes.get(
    "/api/v1/campaigns/{name}/status",
    "Live figures of a campaign",
    role="viewer",
    path_model=NamePath,
    response=CampaignStatus,
)
async def campaign_status(call: Call) -> CampaignStatus:
    """Calls up now, calls per second, outcomes, AMD split, deferred and blocked counts by
    reason, progress (the dashboard's figures)."""
    name = call.path_as(NamePath).name
    at = now(call.request)
    return await db_call(
        call.request,
        lambda s: CampaignStatus(**campaign_stats(s, get_campaign(s, name), at).to_dict()),
    )


@routes.get(
    "/api/v1/campaigns/{name}/results",
    "Per-contact results of a campaign",
    role="viewer",
    path_model=NamePath,
    query_model=PageQuery,
    response=ResultPage,
)
async def campaign_results(call: Call) -> ResultPage:
    """One row per queued contact, as `voicecast report`: outcome, attempts, AMD, Q.850
    cause, times (ISO 8601 in the [report] timezone), the gate's latest decision."""
    name = call.path_as(NamePath).name
    page = call.query_as(PageQuery)
    zone = context(call.request).runtime.report_zone()

    def work(s: Session) -> tuple[int, list[ResultRow]]:
        total = report_size(s, name)
        rows = report_rows(s, name, zone, offset=page.offset, limit=page.limit)
        return total, [ResultRow(**blank_to_none(r)) for r in rows]

    total, items = await db_call(call.request, work)
    return page_answer(ResultPage, call.request, page, total, items)


@routes.get(
    "/api/v1/campaigns/{name}/check",
    "Dry run of the compliance gate",
    role="supervisor",
    path_model=NamePath,
    query_model=CheckQuery,
    response=CheckResult,
    errors=(503,),
)
async def check_campaign_(call: Call) -> CheckResult:
    """Who the campaign would call now, defer (until when) or block, and the campaign-level
    problems, as `voicecast campaign check`. Nothing is dialled or written."""
    name = call.path_as(NamePath).name
    at = call.query_as(CheckQuery).at or now(call.request)
    env = await gate_env(call.request)

    def work(s: Session) -> CheckResult:
        data = check_campaign(s, get_campaign(s, name), env, at).as_dict()
        return CheckResult(
            at=data["at"],
            may_start=not data["problems"],
            would_call_now=data["would_call_now"],
            deferred={k: DeferredCount(**v) for k, v in data["deferred"].items()},
            blocked=data["blocked"],
            already_done=data["already_done"],
            problems=[Problem(**p) for p in data["problems"]],
        )

    return await db_call(call.request, work)
