"""The opt-out list page: recent entries, the search by number, and (supervisor) adding one.

Routes:

* ``GET /optouts[?page=N][&number=...&region=FR]``: the entries, newest first (hash prefix,
  recorded at, source, campaign, note), paginated; with ``number``, whether that number is
  opted out and since when. The number is read as ``voicecast optout check`` reads it
  (:func:`~voicecast.compliance.numberfile.parse_number` with the region, E.164) and looked
  up by its keyed hash (:func:`~voicecast.compliance.suppression.opt_out_record`): the
  opt-out list never stores the plain number. (An ``optout.created`` webhook delivery
  carries it to the CRM and is deleted ``[web] webhook_keep_days`` after it
  ends; the page says so.)
* ``POST /optouts`` (``number``, ``region``, ``note``): put the number on the list as
  ``voicecast optout add`` does, with the source ``console``
  (:func:`~voicecast.compliance.suppression.add_opt_out`; idempotent, the earliest
  request kept).
"""

from __future__ import annotations

from typing import Any

import phonenumbers
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast.compliance.numberfile import parse_number
from voicecast.compliance.suppression import add_opt_out, opt_out_record
from voicecast.errors import VoicecastError
from voicecast.storage.models import Campaign, OptOut
from voicecast.web.console_common import field, pager, report_zone, time_formatter
from voicecast.web.server import context, db_call, render, require, store_key

SOURCE = "console"
"""The opt-out source recorded for numbers added on this page."""

HASH_SHOWN = 12
"""Hex digits of an entry's keyed hash shown in the table."""

REGIONS: tuple[str, ...] = tuple(sorted(phonenumbers.SUPPORTED_REGIONS))


def setup(app: web.Application) -> None:
    """Register the opt-out routes."""
    app.router.add_get("/optouts", optouts_page)
    app.router.add_post("/optouts", add_optout_action)


def _normalise(number: str, region: str) -> str:
    """``number`` in E.164, read as ``voicecast optout check`` reads it.

    Raises:
        VoicecastError: unknown region, or not one valid number (the message says why).
    """
    region = (region or "FR").upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise VoicecastError(f"region: {region!r} is not a region code such as FR, US, GB")
    try:
        return parse_number(number, region)
    except ValueError as exc:  # InvalidNumberError is a ValueError
        raise VoicecastError(str(exc)) from None


def _lookup(request: web.Request, e164: str) -> Any:
    def find(s: Session) -> dict[str, Any] | None:
        record = opt_out_record(s, store_key(request, s), e164)
        if record is None:
            return None
        campaign = s.get(Campaign, record.campaign_id) if record.campaign_id else None
        return {
            "recorded_at": record.recorded_at,
            "source": record.source,
            "campaign": campaign.name if campaign else None,
            "note": record.note,
        }

    return find


async def _page(
    request: web.Request,
    *,
    number: str = "",
    region: str = "FR",
    status: int = 200,
    added: bool | None = None,
    form_values: dict[str, str] | None = None,
    add_error: str | None = None,
) -> web.Response:
    """The opt-out page, with the search result of ``number`` when given."""
    search: dict[str, Any] | None = None
    search_error: str | None = None
    if number:
        try:
            e164 = _normalise(number, region)
        except VoicecastError as exc:
            search_error = str(exc)
        else:
            found = await db_call(request, _lookup(request, e164))
            search = {"number": e164, "record": found}

    def count(s: Session) -> int:
        return s.scalar(select(func.count()).select_from(OptOut)) or 0

    page = pager(request, await db_call(request, count))

    def load(s: Session) -> list[dict[str, Any]]:
        rows = s.execute(
            select(OptOut, Campaign.name)
            .outerjoin(Campaign, Campaign.id == OptOut.campaign_id)
            .order_by(OptOut.recorded_at.desc(), OptOut.number_hash)
            .offset(page.offset)
            .limit(page.size)
        ).all()
        return [
            {
                "hash": o.number_hash[:HASH_SHOWN],
                "recorded_at": o.recorded_at,
                "source": o.source,
                "campaign": name,
                "note": o.note or "",
            }
            for o, name in rows
        ]

    entries = await db_call(request, load)
    return render(
        request,
        "optouts.html",
        status=status,
        entries=entries,
        page=page,
        number=number,
        region=region.upper() or "FR",
        regions=REGIONS,
        search=search,
        search_error=search_error,
        added=added,
        form=form_values or {"number": "", "region": "FR", "note": ""},
        webhook_keep_days=context(request).runtime.settings.web.webhook_keep_days,
        add_error=add_error,
        when=time_formatter(report_zone(request)),
    )


async def optouts_page(request: web.Request) -> web.Response:
    """``GET /optouts[?page=N][&number=...&region=FR]``: the list and the search."""
    require(request, "viewer")
    number = request.query.get("number", "").strip()
    region = request.query.get("region", "FR").strip() or "FR"
    return await _page(request, number=number, region=region)


async def add_optout_action(request: web.Request) -> web.Response:
    """``POST /optouts`` (supervisor): add the number (source ``console``); the page then
    shows it as opted out. A bad number or note re-shows the form with the error (400)."""
    require(request, "supervisor")
    form = await request.post()
    values = {key: field(form, key) for key in ("number", "region", "note")}
    values["region"] = values["region"] or "FR"
    now = context(request).clock.now()
    try:
        e164 = _normalise(values["number"], values["region"])

        def add(s: Session) -> bool:
            key = store_key(request, s)
            note = values["note"] or None
            return add_opt_out(s, key, e164, source=SOURCE, at=now, note=note)

        added = await db_call(request, add)
    except VoicecastError as exc:
        return await _page(request, status=400, form_values=values, add_error=str(exc))
    return await _page(
        request,
        number=e164,
        region=values["region"],
        added=added,
        form_values={"number": "", "region": values["region"], "note": ""},
    )
