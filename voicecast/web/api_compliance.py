"""REST API: the opt-out list (keyed hashes only) and the consent ledger.

Same service calls as ``voicecast optout add|check`` and ``voicecast consent add|show``.
Opt-outs are stored as keyed hashes (HMAC-SHA256, CNIL guidance): the list shows hashes;
a number is looked up by hashing it with the same key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from voicecast.compliance.consent import (
    PURPOSES,
    STATUSES,
    consent_history,
    consent_states,
    record_consent,
)
from voicecast.compliance.numberfile import parse_number
from voicecast.compliance.suppression import add_opt_out, opt_out_record
from voicecast.compliance.types import Purpose
from voicecast.storage.models import Campaign, Consent, OptOut
from voicecast.web.api_common import Instant, OneOf, Region, answer_page
from voicecast.web.openapi import (
    Call,
    Page,
    PageQuery,
    RequestModel,
    ResponseModel,
    RouteGroup,
)
from voicecast.web.server import db_call, store_key

optout_routes = RouteGroup(
    "optouts", "The opt-out list: numbers that asked not to be called (keyed hashes)."
)
consent_routes = RouteGroup("consents", "The consent ledger (append-only).")

NUMBER = Field(
    min_length=1,
    max_length=40,
    description="Phone number, E.164 or national.",
    examples=["+33199000100", "01 99 00 01 00"],
)


# --------------------------------------------------------------------------- opt-outs


class OptOutItem(ResponseModel):
    """One opt-out: the number's keyed hash, never the number."""

    hash: str = Field(description="HMAC-SHA256 of the E.164 number with the hash key (hex).")
    recorded_at: datetime = Field(description="When the person asked (earliest request).")
    source: str = Field(description="key-press, call-back, cli, import or api.")
    campaign: str | None = Field(description="The campaign that received the request.")
    note: str | None


class OptOutPage(Page[OptOutItem]):
    """A page of opt-outs, newest first."""


class NumberPath(RequestModel):
    """A phone number in the path."""

    number: str = NUMBER


class RegionQuery(RequestModel):
    """The country of a national number."""

    region: Region = "FR"


class OptOutLookup(ResponseModel):
    """Whether a number is on the opt-out list."""

    number: str = Field(description="The number in E.164.")
    opted_out: bool
    recorded_at: datetime | None
    source: str | None
    campaign: str | None


class OptOutCreate(RequestModel):
    """A number to put on the opt-out list."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"number": "01 99 00 01 00", "note": "by e-mail"}]}
    )

    number: str = NUMBER
    note: str | None = Field(None, max_length=200, description="How the request came.")
    region: Region = "FR"


class OptOutAdded(ResponseModel):
    """The opt-out recorded (or already there: the earliest request is kept)."""

    number: str
    added: bool = Field(description="False when the number was already opted out.")
    recorded_at: datetime
    source: str


def _campaign_name(s: Session, campaign_id: int | None) -> str | None:
    if campaign_id is None:
        return None
    return s.scalar(select(Campaign.name).where(Campaign.id == campaign_id))


@optout_routes.get(
    "/api/v1/optouts",
    "List the opt-outs",
    role="viewer",
    query_model=PageQuery,
    response=OptOutPage,
)
async def list_optouts(call: Call) -> OptOutPage:
    """The opt-out list, newest first: hash, when, how, which campaign (numbers are not
    stored; look one up with GET /api/v1/optouts/{number})."""
    stmt = (
        select(OptOut, Campaign.name)
        .outerjoin(Campaign, Campaign.id == OptOut.campaign_id)
        .order_by(OptOut.recorded_at.desc(), OptOut.number_hash)
    )

    def item(_s: Session, row: Row[*tuple[Any, ...]]) -> OptOutItem:
        optout, campaign = row
        return OptOutItem(
            hash=optout.number_hash,
            recorded_at=optout.recorded_at,
            source=optout.source,
            campaign=campaign,
            note=optout.note,
        )

    return await answer_page(call, OptOutPage, stmt, item)


@optout_routes.get(
    "/api/v1/optouts/{number}",
    "Is this number opted out?",
    role="viewer",
    path_model=NumberPath,
    query_model=RegionQuery,
    response=OptOutLookup,
    errors=(503,),
)
async def get_optout(call: Call) -> OptOutLookup:
    """Hash the number with the key and look it up, as `voicecast optout check`. Always 200
    for a valid number (`opted_out` says); 400 for an invalid one."""
    number = call.path_as(NumberPath).number
    region = call.query_as(RegionQuery).region
    e164 = parse_number(number, region)

    def work(s: Session) -> OptOutLookup:
        record = opt_out_record(s, store_key(call.request, s), e164)
        if record is None:
            return OptOutLookup(
                number=e164, opted_out=False, recorded_at=None, source=None, campaign=None
            )
        return OptOutLookup(
            number=e164,
            opted_out=True,
            recorded_at=record.recorded_at,
            source=record.source,
            campaign=_campaign_name(s, record.campaign_id),
        )

    return await db_call(call.request, work)


@optout_routes.post(
    "/api/v1/optouts",
    "Add a number to the opt-out list",
    role="supervisor",
    body=OptOutCreate,
    response=OptOutAdded,
    errors=(503,),
)
async def create_optout(call: Call) -> OptOutAdded:
    """Put the number on the opt-out list (source `api`), as `voicecast optout add`:
    idempotent, the earliest request is kept (`added` is false when it was there)."""
    body = call.body_as(OptOutCreate)
    e164 = parse_number(body.number, body.region)
    at = datetime.now(UTC)  # when the person asked: the wall clock, as the CLI records it

    def work(s: Session) -> OptOutAdded:
        key = store_key(call.request, s)
        added = add_opt_out(s, key, e164, source="api", at=at, note=body.note)
        record = opt_out_record(s, key, e164)
        assert record is not None
        return OptOutAdded(
            number=e164, added=added, recorded_at=record.recorded_at, source=record.source
        )

    return await db_call(call.request, work)


# --------------------------------------------------------------------------- consents


class ConsentRecord(ResponseModel):
    """One ledger record."""

    id: int
    number: str = Field(description="E.164.")
    purpose: str = Field(description="marketing or informational.")
    status: str = Field(description="granted, or withdrawn (a refusal or a withdrawal).")
    recorded_at: datetime = Field(description="When the person gave or withdrew it.")
    source: str
    proof_ref: str
    wording_version: str | None
    imported_at: datetime
    batch: str | None


class ConsentHistory(ResponseModel):
    """A number's ledger records, oldest first, and the consent in force now per purpose."""

    number: str
    in_force: dict[str, str | None] = Field(
        description="Purpose -> granted | withdrawn | null (nothing recorded), as of now."
    )
    records: list[ConsentRecord]


class ConsentQuery(RequestModel):
    """Whose consents."""

    number: str = NUMBER
    region: Region = "FR"


class ConsentCreate(RequestModel):
    """A consent, refusal or withdrawal to append to the ledger."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "+33199000100",
                    "purpose": "marketing",
                    "source": "web",
                    "proof": "form-2026-0001",
                    "at": "2026-01-10T09:30:00+01:00",
                }
            ]
        }
    )

    number: str = NUMBER
    purpose: Purpose
    status: Annotated[str, OneOf(STATUSES)] = Field(
        "granted", description="granted, or withdrawn (a refusal or a withdrawal)."
    )
    source: str = Field(
        min_length=1, max_length=40, description="How it was collected: form, contract, web..."
    )
    proof: str = Field(
        "", max_length=500, description="Where the proof is kept (required when granted)."
    )
    wording: str | None = Field(None, max_length=100, description="Consent text version.")
    at: Instant | None = Field(None, description="When (ISO 8601 with offset; default now).")
    region: Region = "FR"


def _record(c: Consent) -> ConsentRecord:
    return ConsentRecord(
        id=c.id,
        number=c.phone_e164,
        purpose=c.purpose,
        status=c.status,
        recorded_at=c.recorded_at,
        source=c.source,
        proof_ref=c.proof_ref,
        wording_version=c.wording_version,
        imported_at=c.imported_at,
        batch=c.batch,
    )


@consent_routes.get(
    "/api/v1/consents",
    "A number's consent records",
    role="viewer",
    query_model=ConsentQuery,
    response=ConsentHistory,
)
async def list_consents(call: Call) -> ConsentHistory:
    """The ledger history of a number (every purpose), oldest first, and what is in force
    now, as `voicecast consent show --json`."""
    query = call.query_as(ConsentQuery)
    e164 = parse_number(query.number, query.region)
    at = datetime.now(UTC)

    def work(s: Session) -> ConsentHistory:
        history = consent_history(s, e164)
        in_force: dict[str, str | None] = {}
        for purpose in PURPOSES:
            state = consent_states(s, [e164], purpose, at).get(e164)
            in_force[purpose] = state.status if state else None
        return ConsentHistory(number=e164, in_force=in_force, records=[_record(c) for c in history])

    return await db_call(call.request, work)


@consent_routes.post(
    "/api/v1/consents",
    "Record a consent",
    role="supervisor",
    body=ConsentCreate,
    response=ConsentRecord,
    status=201,
)
async def create_consent(call: Call) -> ConsentRecord:
    """Append one consent (status `granted`) or refusal / withdrawal (`withdrawn`) to the
    ledger, as `voicecast consent add`. The ledger is append-only: the latest record at the
    time of a call decides."""
    body = call.body_as(ConsentCreate)
    at = body.at or datetime.now(UTC)

    def work(s: Session) -> ConsentRecord:
        record = record_consent(
            s,
            phone=body.number,
            purpose=body.purpose.value,
            status=body.status,
            recorded_at=at,
            source=body.source,
            proof_ref=body.proof,
            wording_version=body.wording,
            default_region=body.region,
            key=store_key(call.request, s),
        )
        return _record(record)

    return await db_call(call.request, work)
