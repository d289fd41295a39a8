"""REST API: data-subject rights for one phone number (admin only).

The same service calls as ``voicecast subject export|erase|rectify|proof``
(:mod:`voicecast.subjects`, :mod:`voicecast.journal.proof`). Every operation is a POST
whose number travels in the JSON body, never in the URL: URLs end up in access logs and
proxies' logs, a body does not. Each one is journaled (``subject.exported``,
``subject.erased``, ``subject.rectified``) under the keyed hash of the number, attributed
to the calling user.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from sqlalchemy.orm import Session

from voicecast.compliance.numberfile import parse_number
from voicecast.contacts.importer import MAX_FIELD_LENGTH
from voicecast.subjects import (
    SubjectBusyError,
    SubjectFiles,
    erase_subject,
    export_subject,
    rectify_subject,
)
from voicecast.web.api_common import Region
from voicecast.web.openapi import Call, RequestModel, ResponseModel, RouteGroup
from voicecast.web.server import HTTPProblem, context, db_call, store_key

routes = RouteGroup(
    "subjects",
    "Data-subject rights (GDPR art. 15-17) and the proof of lawful calls, for one number "
    "(admin). The number is sent in the body.",
)

NUMBER = Field(
    min_length=1,
    max_length=40,
    description="Phone number, E.164 or national (then read in `region`).",
    examples=["+33199000100", "01 99 00 01 00"],
)

FieldName = Literal["first_name", "last_name", "company", "region", "postal_code", "professional"]
"""The contact fields kept at import (:data:`voicecast.contacts.importer.CANONICAL_FIELDS`)."""


class SubjectRequest(RequestModel):
    """Whose data."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"number": "01 99 00 01 00"}]})

    number: str = NUMBER
    region: Region = "FR"


class SubjectExportAnswer(ResponseModel):
    """The access document."""

    number: str = Field(description="The number in E.164.")
    export: dict[str, Any] = Field(
        description="The document of `voicecast subject export` (schema "
        "`voicecast.subject-export`, version 1): contacts, campaigns, call attempts, "
        "recordings (metadata), consents, opt-out, refusals, opposition lists, inbound "
        "calls, webhook deliveries, journal entries, purposes, recipients, retention. "
        "After an erasure: only the opt-out record and the erasure date."
    )


class SubjectErasure(ResponseModel):
    """What the erasure removed."""

    number: str = Field(description="The number in E.164.")
    nothing_held: bool = Field(description="Nothing was held: the number was only suppressed.")
    removed: dict[str, int] = Field(
        description="Rows deleted per kind (contacts, campaign_contacts, gate_decisions, "
        "call_attempts, recordings, consents, refusals, inbound_calls, webhook_deliveries, "
        "opt_out_note)."
    )
    files: dict[str, int] = Field(description="Files found per kind (recordings, speech, uploads).")
    files_removed: int = Field(ge=0, description="Files deleted after the commit.")
    opt_out_added: bool = Field(description="False when the number was already opted out.")
    opted_out_since: datetime = Field(description="The opt-out's recorded instant (UTC).")
    opt_out_source: str = Field(description="`erasure`, or the earlier opt-out's source.")


class SubjectRectify(SubjectRequest):
    """The fields to correct."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"number": "01 99 00 01 00", "set": {"first_name": "Camille"}}]
        }
    )

    set: dict[FieldName, Annotated[str, Field(max_length=MAX_FIELD_LENGTH)]] = Field(
        min_length=1,
        description="Field -> correct value (an empty string removes the field).",
    )
    list: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Only the contact of this list (default: every list).",
    )


class SubjectRectified(ResponseModel):
    """What the rectification changed."""

    number: str
    fields: list[str] = Field(description="The fields asked to change.")
    contacts: int = Field(ge=0, description="Contacts found with the number.")
    changed: int = Field(ge=0, description="Contacts whose fields changed.")
    lists: list[str] = Field(description="Their lists.")


class SubjectProofAnswer(ResponseModel):
    """The proof report."""

    number: str
    proof: dict[str, Any] = Field(
        description="The report of `voicecast subject proof --json`: contacts and the legal "
        "basis of each campaign for them, consents, opt-out, refusals, and the journal's "
        "message drops, gate decisions and attempts (with their seq and hash)."
    )


def _e164(body: SubjectRequest) -> str:
    return parse_number(body.number, body.region)


@routes.post(
    "/api/v1/subjects/export",
    "Everything held about a number (GDPR art. 15)",
    role="admin",
    body=SubjectRequest,
    response=SubjectExportAnswer,
    errors=(503,),
)
async def export_subject_data(call: Call) -> SubjectExportAnswer:
    """The access document of the number, as `voicecast subject export`. Journaled
    (`subject.exported`)."""
    e164 = _e164(call.body_as(SubjectRequest))
    settings = context(call.request).runtime.settings

    def work(s: Session) -> dict[str, Any]:
        return export_subject(s, store_key(call.request, s), e164, settings=settings)

    return SubjectExportAnswer(number=e164, export=await db_call(call.request, work))


@routes.post(
    "/api/v1/subjects/erase",
    "Erase everything held about a number (GDPR art. 17)",
    role="admin",
    body=SubjectRequest,
    response=SubjectErasure,
    errors=(409, 503),
)
async def erase_subject_data(call: Call) -> SubjectErasure:
    """Remove the number and the contact fields from every table and file, keep only its
    keyed hash on the opt-out list (source `erasure`) so it is never called again, as
    `voicecast subject erase --yes`. Journaled (`subject.erased`, counts only). A number
    about which nothing is held is still suppressed (`nothing_held`). 409 while a call to
    the number is in progress."""
    e164 = _e164(call.body_as(SubjectRequest))
    files = SubjectFiles.of(context(call.request).runtime)

    def work(s: Session) -> Any:
        return erase_subject(s, store_key(call.request, s), e164, files=files)

    try:
        result = await db_call(call.request, work)
    except SubjectBusyError as exc:
        raise HTTPProblem(409, "conflict", str(exc)) from None
    return SubjectErasure(
        number=e164,
        nothing_held=result.nothing_held,
        removed=result.removed,
        files=result.file_kinds,
        files_removed=result.files_removed,
        opt_out_added=result.opt_out_added,
        opted_out_since=result.opted_out_since,
        opt_out_source=result.opt_out_source,
    )


@routes.post(
    "/api/v1/subjects/rectify",
    "Correct a number's contact fields (GDPR art. 16)",
    role="admin",
    body=SubjectRectify,
    response=SubjectRectified,
    errors=(404, 503),
)
async def rectify_subject_data(call: Call) -> SubjectRectified:
    """Set the fields of the contacts holding the number (of every list, or of `list`), as
    `voicecast subject rectify`. Journaled (`subject.rectified`, field names only). 404
    when no contact holds the number (in that list) or the list does not exist."""
    body = call.body_as(SubjectRectify)
    e164 = _e164(body)
    files = SubjectFiles.of(context(call.request).runtime)
    changes: dict[str, str] = {str(k): v for k, v in body.set.items()}

    def work(s: Session) -> SubjectRectified:
        result = rectify_subject(
            s, store_key(call.request, s), e164, changes, list_name=body.list, files=files
        )
        return SubjectRectified(**result.to_dict())

    return await db_call(call.request, work)


@routes.post(
    "/api/v1/subjects/proof",
    "The proof that calls to a number were lawful",
    role="admin",
    body=SubjectRequest,
    response=SubjectProofAnswer,
    errors=(503,),
)
async def subject_proof_data(call: Call) -> SubjectProofAnswer:
    """Every contact holding the number with the legal basis each campaign relies on, its
    consents, opt-out and refusals, and from the proof journal the message drops (audio,
    caller ID, when), gate decisions and attempts, as `voicecast subject proof --json`."""
    from voicecast.campaigns.compliance import GateEnv
    from voicecast.journal.proof import subject_proof

    e164 = _e164(call.body_as(SubjectRequest))
    compliance = context(call.request).runtime.settings.compliance

    def work(s: Session) -> dict[str, Any]:
        key = store_key(call.request, s)
        try:
            packs = GateEnv.build(key, compliance).packs
        except ValueError as exc:
            raise HTTPProblem(503, "unavailable", f"[compliance]: {exc}") from None
        return subject_proof(s, key, e164, packs=packs)

    return SubjectProofAnswer(number=e164, proof=await db_call(call.request, work))
