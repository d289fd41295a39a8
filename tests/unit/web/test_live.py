"""The live dashboard page and its WebSocket."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from voicecast.app import Runtime
from voicecast.web import live
from voicecast.web.server import WebContext

from .conftest import Account, api_headers, login_as
from .live_data import add_attempt, add_gate_decision, seed_campaign

WS = "/ws/campaigns/Spring%20offer"


def _origin(client: TestClient) -> str:
    return str(client.make_url("/")).rstrip("/")


async def _next_snapshot(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(ws.receive_json(), 10)
        if message["type"] == "snapshot":
            return message["stats"]


async def test_the_dashboard_renders_for_a_viewer(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    cid = seed_campaign(runtime)
    add_attempt(runtime, cid)
    add_attempt(runtime, cid, outcome="human", amd="HUMAN")
    add_gate_decision(runtime, cid, "defer", "outside_hours")
    await login_as(client, runtime, viewer)
    resp = await client.get("/campaigns/Spring%20offer/dashboard")
    assert resp.status == 200
    html = await resp.text()
    for element in (
        "stat-calls-up",
        "stat-cps",
        "stat-attempts",
        "stat-done",
        "stat-contacts",
        "stat-progress",
        "progress-bar",
        "campaign-status",
        "live-state",
        "chart-outcomes",
        "chart-activity",
    ):
        assert f'id="{element}"' in html, element
    assert re.search(r'id="stat-calls-up">1<', html)
    assert re.search(r'id="stat-attempts">2<', html)
    assert re.search(r'id="stat-contacts">4<', html)
    assert re.search(r'id="stat-progress">25.0 %<', html)
    assert re.search(r'data-outcome="human"><td>Person</td><td class="count">1<', html)
    assert re.search(r'data-amd="HUMAN"><td>[^<]*</td><td class="count">1<', html)
    assert re.search(r'data-reason="outside_hours"><td>outside calling hours</td>', html)
    assert 'data-status="running"' in html and 'data-updated="0"' in html
    assert 'data-ws="/ws/campaigns/Spring%20offer"' in html
    # no inline script (CSP script-src 'self'); the chart library is served locally
    assert re.findall(r"<script(?: [^>]*)?>", html) == [
        '<script src="/static/chart.umd.min.js">',
        '<script src="/static/dashboard.js">',
    ]
    for path in ("/static/chart.umd.min.js", "/static/dashboard.js", "/static/dashboard.css"):
        assert (await client.get(path)).status == 200, path


async def test_the_dashboard_speaks_french_and_needs_a_login(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_campaign(runtime)
    resp = await client.get("/campaigns/Spring%20offer/dashboard", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    await login_as(client, runtime, viewer)
    resp = await client.get(
        "/campaigns/Spring%20offer/dashboard", headers={"Accept-Language": "fr-FR"}
    )
    html = await resp.text()
    assert "Tableau de bord en direct" in html and "Appels en cours" in html
    resp = await client.get("/campaigns/Nothing/dashboard")
    assert resp.status == 404


async def test_the_socket_sends_a_snapshot_then_another_when_the_database_changes(
    client: TestClient, runtime: Runtime, viewer: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "PUSH_INTERVAL", 0.1)
    cid = seed_campaign(runtime)
    await login_as(client, runtime, viewer)
    async with client.ws_connect(WS, origin=_origin(client)) as ws:
        first = await _next_snapshot(ws)
        assert first["campaign"] == "Spring offer" and first["status"] == "running"
        assert (first["calls_up"], first["attempts"], first["outcomes"]) == (0, 0, {})
        add_attempt(runtime, cid)
        second = await _next_snapshot(ws)
        assert (second["calls_up"], second["attempts"]) == (1, 1)
        add_attempt(runtime, cid, outcome="machine", amd="MACHINE")
        third = await _next_snapshot(ws)
        assert third["outcomes"] == {"machine": 1} and third["amd"] == {"MACHINE": 1}
        assert third["done"] == 1 and third["progress"] == 0.25


async def test_an_unchanged_campaign_gets_heartbeats_only(
    client: TestClient, runtime: Runtime, viewer: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "PUSH_INTERVAL", 0.05)
    monkeypatch.setattr(live, "HEARTBEAT_INTERVAL", 0.2)
    seed_campaign(runtime)
    await login_as(client, runtime, viewer)
    async with client.ws_connect(WS) as ws:  # no Origin: not a browser, allowed
        assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "snapshot"
        assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "heartbeat"


async def test_the_socket_accepts_an_api_token(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_campaign(runtime)
    async with client.ws_connect(WS, headers=api_headers(runtime, viewer)) as ws:
        assert (await _next_snapshot(ws))["campaign"] == "Spring offer"


async def test_the_socket_refuses_without_a_session(client: TestClient, runtime: Runtime) -> None:
    seed_campaign(runtime)
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect(WS, origin=_origin(client))
    assert err.value.status == 401


async def test_the_socket_refuses_another_origin(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_campaign(runtime)
    await login_as(client, runtime, viewer)
    for origin in ("https://evil.example", "null"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect(WS, origin=origin)
        assert err.value.status == 403, origin


async def test_the_socket_of_an_unknown_campaign_is_404(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    await login_as(client, runtime, viewer)
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect("/ws/campaigns/Nothing", origin=_origin(client))
    assert err.value.status == 404


async def test_the_socket_closes_when_the_session_ends(
    client: TestClient, runtime: Runtime, viewer: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicecast.storage.models import WebSession

    monkeypatch.setattr(live, "PUSH_INTERVAL", 0.05)
    monkeypatch.setattr(live, "AUTH_RECHECK", 0.1)
    seed_campaign(runtime)
    await login_as(client, runtime, viewer)
    async with client.ws_connect(WS, origin=_origin(client)) as ws:
        await _next_snapshot(ws)
        with runtime.sessions() as s, s.begin():  # logged out elsewhere
            s.query(WebSession).delete()
        message = await asyncio.wait_for(ws.receive(), 10)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await asyncio.wait_for(ws.receive(), 10)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == live.CLOSE_UNAUTHENTICATED


async def test_the_dashboard_says_when_dialling_is_paused_because_asterisk_is_down(
    client: TestClient,
    runtime: Runtime,
    viewer: Account,
    web_ctx: WebContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "PUSH_INTERVAL", 0.1)
    seed_campaign(runtime)
    dialer = SimpleNamespace(pbx=SimpleNamespace(connected=False), storage_error=None)
    web_ctx.dialer = dialer  # type: ignore[assignment]
    await login_as(client, runtime, viewer)
    html = await (await client.get("/campaigns/Spring%20offer/dashboard")).text()
    banner = re.search(r'<p class="error" id="dialing-state"[^>]*>([^<]*)</p>', html)
    assert banner is not None and "hidden" not in banner.group(0)
    assert "Asterisk (AMI) cannot be reached" in banner.group(1)
    async with client.ws_connect(WS, origin=_origin(client)) as ws:
        assert (await _next_snapshot(ws))["dialing"] == {"state": "pbx_down", "detail": ""}
        dialer.pbx.connected = True  # reconnected: the next snapshot clears the banner
        assert (await _next_snapshot(ws))["dialing"]["state"] == "ok"
        dialer.storage_error = "the disk holding the database is full"
        stats = await _next_snapshot(ws)
        assert stats["dialing"] == {
            "state": "storage",
            "detail": "the disk holding the database is full",
        }
    web_ctx.dialer = None
    html = await (await client.get("/campaigns/Spring%20offer/dashboard")).text()
    assert re.search(r'id="dialing-state"[^>]*\shidden', html)
