"""The live dashboard of a campaign and the WebSocket that feeds it.

- ``GET /campaigns/{name}/dashboard`` (viewer and up): the page, rendered with a first
  snapshot; ``static/dashboard.js`` then keeps it current without reloading.
- ``GET /ws/campaigns/{name}`` (viewer and up, the console's session cookie or an API
  token; a browser's ``Origin`` must be this server's: RFC 6455 §10.2): every
  :data:`PUSH_INTERVAL` seconds the figures of
  :func:`voicecast.campaigns.stats.campaign_stats` are computed from the database and sent
  as ``{"type": "snapshot", "stats": CampaignStats.to_dict()}`` when they changed (the
  ``at`` field aside), else ``{"type": "heartbeat", "at": ...}`` every
  :data:`HEARTBEAT_INTERVAL` seconds. The session is checked again every
  :data:`AUTH_RECHECK` seconds: a logged-out or expired session closes the socket with
  code 4401; a deleted campaign with 4404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy.orm import Session

from voicecast.campaigns.service import get_campaign
from voicecast.campaigns.stats import campaign_stats
from voicecast.compliance.types import REASON_TEXT
from voicecast.dialer.outcomes import Outcome
from voicecast.errors import NotFoundError
from voicecast.web import accounts
from voicecast.web.server import (
    HTTPProblem,
    context,
    db_call,
    gettext,
    principal,
    render,
    require,
)

if TYPE_CHECKING:
    from voicecast.dialer.controller import Dialer

log = logging.getLogger(__name__)

PUSH_INTERVAL = 1.0  # seconds between two computations of the figures
HEARTBEAT_INTERVAL = 15.0  # seconds without a change before a heartbeat message
AUTH_RECHECK = 60.0  # seconds between two checks that the session is still valid
CLOSE_UNAUTHENTICATED = 4401  # application close codes (RFC 6455 §7.4.2: 4000-4999)
CLOSE_NOT_FOUND = 4404
CLOSE_INTERNAL = 1011

OUTCOME_LABELS: dict[str, str] = {
    Outcome.HUMAN.value: "Person",
    Outcome.MACHINE.value: "Answering machine",
    Outcome.OPTED_OUT.value: "Opted out",
    Outcome.TRANSFERRED.value: "Transferred",
    Outcome.BUSY.value: "Busy",
    Outcome.NO_ANSWER.value: "No answer",
    Outcome.CONGESTION.value: "Congestion",
    Outcome.INVALID_NUMBER.value: "Invalid number",
    Outcome.REJECTED.value: "Rejected",
    Outcome.FAILED.value: "Failed",
    "blocked": "Blocked by the compliance gate",
}
"""Outcome code -> English label (the rows of the outcomes table, in this order)."""
AMD_LABELS: dict[str, str] = {
    "HUMAN": "Person (AMD)",
    "MACHINE": "Machine (AMD)",
    "NOTSURE": "Not sure (AMD)",
    "HANGUP": "Hung up during AMD",
}
"""Asterisk ``AMD()`` status (``AMDSTATUS``) -> English label."""
STATUS_CODES = ("draft", "running", "paused", "stopped", "completed")

SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey(
    "live_sockets", weakref.WeakSet
)


def labels(request: web.Request) -> dict[str, Any]:
    """The translated labels the page's script needs (outcomes, AMD statuses, gate reasons,
    campaign statuses, connection states)."""
    _ = gettext(request)
    return {
        "outcomes": {k: _(v) for k, v in OUTCOME_LABELS.items()},
        "outcome_order": list(OUTCOME_LABELS),  # JSON objects lose their order (sort_keys)
        "amd": {k: _(v) for k, v in AMD_LABELS.items()},
        "reasons": {r.value: _(text) for r, text in REASON_TEXT.items()},
        "status": {k: _(k) for k in STATUS_CODES},
        "state": {
            "connecting": _("connecting…"),
            "live": _("live"),
            "disconnected": _("disconnected"),
        },
        "dialing": {
            "pbx_down": _("Dialling paused: Asterisk (AMI) cannot be reached; reconnecting…"),
            "storage": _("Dialling paused: the database cannot be written."),
        },
        "chart": {
            "calls_up": _("Calls up now"),
            "cps": _("Calls per second"),
            "count": _("Count"),
        },
    }


def _snapshot(session: Session, name: str, now: datetime) -> dict[str, Any]:
    return campaign_stats(session, get_campaign(session, name), now).to_dict()


def dialing_state(dialer: Dialer | None) -> dict[str, Any]:
    """Whether this process's dialer can dial, for the dashboard's banner:
    ``{"state": "ok" | "pbx_down" | "storage" | "unknown", "detail": str}``.

    ``pbx_down``: the AMI connection to Asterisk is lost (the dialer pauses every campaign
    and reconnects with back-off); ``storage``: the database cannot be written (the dialer
    places no call it could not record); ``unknown``: no dialer runs in this process.
    """
    if dialer is None:
        return {"state": "unknown", "detail": ""}
    if not dialer.pbx.connected:
        return {"state": "pbx_down", "detail": ""}
    storage = getattr(dialer, "storage_error", None)
    if storage:
        return {"state": "storage", "detail": str(storage)}
    return {"state": "ok", "detail": ""}


async def dashboard(request: web.Request) -> web.Response:
    """``GET /campaigns/{name}/dashboard``: the live dashboard page (viewer and up)."""
    require(request, "viewer")
    name = request.match_info["name"]
    now = context(request).clock.now()
    stats = await db_call(request, lambda s: _snapshot(s, name, now))
    stats["dialing"] = dialing_state(context(request).dialer)
    return render(
        request,
        "dashboard.html",
        campaign=name,
        campaign_path=f"/campaigns/{quote(name, safe='')}",
        ws_path=f"/ws/campaigns/{quote(name, safe='')}",
        stats=stats,
        labels=labels(request),
        outcome_codes=list(OUTCOME_LABELS),
        amd_codes=list(AMD_LABELS),
    )


def same_origin(request: web.Request) -> bool:
    """True when the request has no ``Origin`` (not a browser) or this server's own; an
    ``Origin: null`` (sandboxed or file pages) is refused."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.host


async def _still_allowed(request: web.Request) -> bool:
    """The socket's session (or API token) is still live and its user still enabled."""
    ctx = context(request)
    now = ctx.clock.now()
    who = principal(request)
    if who is None:
        return False
    if who.via == "token":
        token = request.headers.get("Authorization", "").partition(" ")[2].strip()
        return await db_call(
            request, lambda s: accounts.user_for_api_token(s, token, now) is not None
        )
    cookie = request.cookies.get(accounts.SESSION_COOKIE, "")
    idle = ctx.runtime.settings.web.idle_minutes

    def check(s: Session) -> bool:
        found = accounts.session_for(s, cookie, now, idle=timedelta(minutes=idle))
        return found is not None and found[0].stage == "full"

    return await db_call(request, check)


async def _push(request: web.Request, ws: web.WebSocketResponse, name: str) -> None:
    """Send snapshots / heartbeats until the socket closes; close it on an error."""
    try:
        await _push_loop(request, ws, name)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("dashboard socket of campaign %s failed", name)
        await ws.close(code=CLOSE_INTERNAL, message=b"internal error")


async def _push_loop(request: web.Request, ws: web.WebSocketResponse, name: str) -> None:
    ctx = context(request)
    last: dict[str, Any] | None = None
    last_sent = time.monotonic()
    next_auth = time.monotonic() + AUTH_RECHECK
    while not ws.closed:
        try:
            stats = await db_call(request, partial(_snapshot, name=name, now=ctx.clock.now()))
        except NotFoundError:
            await ws.close(code=CLOSE_NOT_FOUND, message=b"campaign deleted")
            return
        stats["dialing"] = dialing_state(ctx.dialer)
        key = {k: v for k, v in stats.items() if k != "at"}
        if key != last:
            await ws.send_json({"type": "snapshot", "stats": stats})
            last, last_sent = key, time.monotonic()
        elif time.monotonic() - last_sent >= HEARTBEAT_INTERVAL:
            await ws.send_json({"type": "heartbeat", "at": stats["at"]})
            last_sent = time.monotonic()
        if time.monotonic() >= next_auth:
            next_auth = time.monotonic() + AUTH_RECHECK
            if not await _still_allowed(request):
                await ws.close(code=CLOSE_UNAUTHENTICATED, message=b"session ended")
                return
        await asyncio.sleep(PUSH_INTERVAL)


async def campaign_socket(request: web.Request) -> web.StreamResponse:
    """``GET /ws/campaigns/{name}``: the dashboard's WebSocket (see the module docstring).

    Raises:
        HTTPProblem: 403 for a foreign ``Origin``, 401 without a login, 403 below viewer,
            400 when not a WebSocket upgrade.
        NotFoundError: no such campaign (404).
    """
    if not same_origin(request):
        raise HTTPProblem(403, "forbidden", "WebSocket from another origin refused")
    if principal(request) is None:
        raise HTTPProblem(401, "unauthenticated", "log in first")
    require(request, "viewer")
    name = request.match_info["name"]
    await db_call(request, lambda s: get_campaign(s, name).id)
    ws = web.WebSocketResponse(heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        raise HTTPProblem(400, "bad_request", "expected a WebSocket upgrade")
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    pusher = asyncio.create_task(_push(request, ws, name))
    try:
        async for msg in ws:  # the page sends nothing; reading notices the close
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pusher
        request.app[SOCKETS].discard(ws)
    return ws


async def _close_sockets(app: web.Application) -> None:
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def setup(app: web.Application) -> None:
    """Register the dashboard page and its WebSocket; close open sockets at shutdown."""
    app[SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/campaigns/{name}/dashboard", dashboard)
    app.router.add_get("/ws/campaigns/{name}", campaign_socket)
