"""The data-subject requests page (admin): what is held about one number, its access
document, rectification and erasure (GDPR art. 15, 16, 17).

Every form is a POST carrying the number in its body (CSRF token as every console form):
the number never appears in a URL, so neither in the browser's history nor in access logs.

Routes:

* ``GET /subjects``: the search form.
* ``POST /subjects`` (``number``, ``region``): what is held about the number, by kind
  (:func:`voicecast.subjects.collect_subject`, not journaled: a look, not an answer to a
  request), its contacts and fields, its opt-out; then the three actions.
* ``POST /subjects/export`` (``number``, ``region``): the access document as a JSON
  download (:func:`voicecast.subjects.export_subject`, journaled ``subject.exported``).
* ``POST /subjects/rectify`` (``number``, ``region``, ``field``, ``value``, ``list``): set
  one contact field (an empty value removes it) in every list or in ``list``
  (:func:`voicecast.subjects.rectify_subject`, journaled ``subject.rectified``).
* ``POST /subjects/erase`` (``number``, ``region``, ``confirm=yes``): erase everything but
  the keyed hash on the opt-out list (:func:`voicecast.subjects.erase_subject`, journaled
  ``subject.erased``); without the confirmation box nothing happens (400).
"""

from __future__ import annotations

import json
from typing import Any

import phonenumbers
from aiohttp import web
from sqlalchemy.orm import Session

from voicecast.compliance.numberfile import parse_number
from voicecast.contacts.importer import CANONICAL_FIELDS
from voicecast.errors import NotFoundError, VoicecastError
from voicecast.subjects import (
    SubjectBusyError,
    SubjectFiles,
    collect_subject,
    erase_subject,
    export_subject,
    rectify_subject,
    summary_counts,
)
from voicecast.web.console_common import FIELD_LABELS, field, report_zone, time_formatter
from voicecast.web.server import context, db_call, render, require, store_key

REGIONS: tuple[str, ...] = tuple(sorted(phonenumbers.SUPPORTED_REGIONS))

KIND_LABELS: dict[str, str] = {
    "contacts": "Contacts",
    "campaigns": "Campaign memberships",
    "call_attempts": "Call attempts",
    "recordings": "Recorded replies",
    "consents": "Consent records",
    "refusals": "Refusals",
    "opposition_lists": "National opposition lists",
    "inbound_calls": "Inbound calls",
    "webhook_deliveries": "Webhook deliveries",
    "campaign_contacts": "Campaign memberships",
    "gate_decisions": "Gate decisions",
    "opt_out_note": "Opt-out note",
    "speech": "Rendered speech files",
    "uploads": "Console uploads",
}
"""English labels (translated in the template) of the kinds of held data."""


def setup(app: web.Application) -> None:
    """Register the data-subject routes."""
    app.router.add_get("/subjects", subjects_page)
    app.router.add_post("/subjects", search_action)
    app.router.add_post("/subjects/export", export_action)
    app.router.add_post("/subjects/rectify", rectify_action)
    app.router.add_post("/subjects/erase", erase_action)


def _normalise(number: str, region: str) -> str:
    """``number`` in E.164, read as ``voicecast subject export`` reads it.

    Raises:
        VoicecastError: unknown region, or not one valid number (the message says why).
    """
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise VoicecastError(f"region: {region!r} is not a region code such as FR, US, GB")
    try:
        return parse_number(number, region)
    except ValueError as exc:  # InvalidNumberError is a ValueError
        raise VoicecastError(str(exc)) from None


def _form_values(form: Any) -> dict[str, str]:
    values = {key: field(form, key) for key in ("number", "region", "field", "value", "list")}
    values["region"] = (values["region"] or "FR").upper()
    return values


async def _page(
    request: web.Request,
    values: dict[str, str],
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    erased: dict[str, Any] | None = None,
    rectify_error: str | None = None,
    erase_error: str | None = None,
) -> web.Response:
    """The page, with what is held about ``values["number"]`` when it is a valid number."""
    found: dict[str, Any] | None = None
    if values["number"] and error is None:
        try:
            e164 = _normalise(values["number"], values["region"])
        except VoicecastError as exc:
            error, status = str(exc), 400
        else:
            settings = context(request).runtime.settings

            def look(s: Session) -> dict[str, Any]:
                return collect_subject(s, store_key(request, s), e164, settings=settings)

            doc = await db_call(request, look)
            found = {
                "number": e164,
                "held": doc["held"],
                "counts": summary_counts(doc),
                "contacts": doc.get("contacts", []),
                "opt_out": doc["opt_out"],
                "erased_at": doc.get("erased_at"),
                "journal": len(doc.get("journal", [])),
            }
    return render(
        request,
        "subjects.html",
        status=status,
        values=values,
        regions=REGIONS,
        found=found,
        error=error,
        notice=notice,
        erased=erased,
        rectify_error=rectify_error,
        erase_error=erase_error,
        fields=CANONICAL_FIELDS,
        field_labels=FIELD_LABELS,
        kind_labels=KIND_LABELS,
        when=time_formatter(report_zone(request)),
    )


async def subjects_page(request: web.Request) -> web.Response:
    """``GET /subjects``: the search form (admin)."""
    require(request, "admin")
    return await _page(request, _form_values({}))


async def search_action(request: web.Request) -> web.Response:
    """``POST /subjects``: what is held about the number (admin); a bad number re-shows the
    form with the error (400)."""
    require(request, "admin")
    values = _form_values(await request.post())
    if not values["number"]:
        return await _page(request, values, status=400, error="number: type a phone number")
    return await _page(request, values)


async def export_action(request: web.Request) -> web.StreamResponse:
    """``POST /subjects/export``: the access document as ``subject-export.json``."""
    require(request, "admin")
    values = _form_values(await request.post())
    try:
        e164 = _normalise(values["number"], values["region"])
    except VoicecastError as exc:
        return await _page(request, values, status=400, error=str(exc))
    settings = context(request).runtime.settings

    def work(s: Session) -> dict[str, Any]:
        return export_subject(s, store_key(request, s), e164, settings=settings)

    doc = await db_call(request, work)
    body = json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")
    return web.Response(
        body=body,
        content_type="application/json",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="subject-export.json"'},
    )


async def rectify_action(request: web.Request) -> web.Response:
    """``POST /subjects/rectify``: set one field of the number's contacts (admin); a bad
    field, value or list re-shows the page with the error (400, 404)."""
    require(request, "admin")
    values = _form_values(await request.post())
    try:
        e164 = _normalise(values["number"], values["region"])
    except VoicecastError as exc:
        return await _page(request, values, status=400, error=str(exc))
    files = SubjectFiles.of(context(request).runtime)
    changes = {values["field"]: values["value"]}
    list_name = values["list"] or None

    def work(s: Session) -> Any:
        key = store_key(request, s)
        return rectify_subject(s, key, e164, changes, list_name=list_name, files=files)

    try:
        result = await db_call(request, work)
    except NotFoundError as exc:
        return await _page(request, values, status=404, rectify_error=str(exc))
    except VoicecastError as exc:
        return await _page(request, values, status=400, rectify_error=str(exc))
    notice = "rectified" if result.changed else "unchanged"
    return await _page(request, {**values, "field": "", "value": ""}, notice=notice)


async def erase_action(request: web.Request) -> web.Response:
    """``POST /subjects/erase`` (``confirm=yes``): erase the number (admin); without the
    confirmation, or while a call to it is in progress, nothing is done (400, 409)."""
    require(request, "admin")
    form = await request.post()
    values = _form_values(form)
    try:
        e164 = _normalise(values["number"], values["region"])
    except VoicecastError as exc:
        return await _page(request, values, status=400, error=str(exc))
    if field(form, "confirm") != "yes":
        return await _page(
            request,
            values,
            status=400,
            erase_error="tick the box to confirm the erasure: it cannot be undone",
        )
    files = SubjectFiles.of(context(request).runtime)

    def work(s: Session) -> Any:
        return erase_subject(s, store_key(request, s), e164, files=files)

    try:
        result = await db_call(request, work)
    except SubjectBusyError as exc:
        return await _page(request, values, status=409, erase_error=str(exc))
    erased = {
        "nothing_held": result.nothing_held,
        "removed": result.removed,
        "files": result.file_kinds,
        "files_removed": result.files_removed,
        "since": result.opted_out_since,
        "source": result.opt_out_source,
    }
    return await _page(request, values, erased=erased)
