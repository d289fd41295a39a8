"""Every API operation's authentication and role checks, driven by the route registry: a
route added without an entry in :data:`SAMPLES` fails :func:`test_every_route_has_a_sample`.

For each operation: 401 without a token, 403 with every role below its minimum (none is
below ``viewer``), and success with exactly its minimum role (on a database holding a
list, campaigns, a webhook...). ``GET /api/v1/openapi.json`` is the one public route.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tones import tone_wav

from voicecast.app import Runtime
from voicecast.storage.models import ROLES
from voicecast.web.api import REGISTRY
from voicecast.web.openapi import OPENAPI_PATH, Route

from .api_helpers import CAMPAIGN, create_campaign
from .conftest import Account, api_headers, make_account


@dataclass(frozen=True)
class Sample:
    """A request that succeeds with the route's minimum role on the seeded database.

    ``path`` may hold ``{token_id}`` / ``{webhook_id}`` (ids made by the seeding)."""

    path: str
    status: int
    json: Any = None
    data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


CSV = b"phone,first_name\n+33199000300,Jade\n"
SAMPLES: dict[tuple[str, str], Sample] = {
    ("GET", "/api/v1/lists"): Sample("/api/v1/lists", 200),
    ("GET", "/api/v1/lists/{name}"): Sample("/api/v1/lists/clients", 200),
    ("GET", "/api/v1/lists/{name}/contacts"): Sample("/api/v1/lists/clients/contacts", 200),
    ("POST", "/api/v1/lists/{name}/contacts"): Sample(
        "/api/v1/lists/clients/contacts", 200, data=CSV, headers={"Content-Type": "text/csv"}
    ),
    ("GET", "/api/v1/campaigns"): Sample("/api/v1/campaigns", 200),
    ("POST", "/api/v1/campaigns"): Sample(
        "/api/v1/campaigns", 201, json={**CAMPAIGN, "name": "autumn"}
    ),
    ("GET", "/api/v1/campaigns/{name}"): Sample("/api/v1/campaigns/spring", 200),
    ("POST", "/api/v1/campaigns/{name}/start"): Sample("/api/v1/campaigns/spring/start", 200),
    ("POST", "/api/v1/campaigns/{name}/pause"): Sample("/api/v1/campaigns/paused/pause", 200),
    ("POST", "/api/v1/campaigns/{name}/resume"): Sample("/api/v1/campaigns/paused/resume", 200),
    ("POST", "/api/v1/campaigns/{name}/stop"): Sample("/api/v1/campaigns/spring/stop", 200),
    ("GET", "/api/v1/campaigns/{name}/status"): Sample("/api/v1/campaigns/spring/status", 200),
    ("GET", "/api/v1/campaigns/{name}/results"): Sample("/api/v1/campaigns/spring/results", 200),
    ("GET", "/api/v1/campaigns/{name}/check"): Sample("/api/v1/campaigns/spring/check", 200),
    ("GET", "/api/v1/audio"): Sample("/api/v1/audio", 200),
    ("POST", "/api/v1/audio"): Sample(
        "/api/v1/audio?name=welcome", 201, data=tone_wav(), headers={"Content-Type": "audio/wav"}
    ),
    ("GET", "/api/v1/optouts"): Sample("/api/v1/optouts", 200),
    ("GET", "/api/v1/optouts/{number}"): Sample("/api/v1/optouts/+33199000100", 200),
    ("POST", "/api/v1/optouts"): Sample("/api/v1/optouts", 200, json={"number": "0199000100"}),
    ("GET", "/api/v1/consents"): Sample("/api/v1/consents?number=%2B33199000100", 200),
    ("POST", "/api/v1/consents"): Sample(
        "/api/v1/consents",
        201,
        json={"number": "+33199000100", "purpose": "marketing", "source": "web", "proof": "f-1"},
    ),
    ("GET", "/api/v1/users"): Sample("/api/v1/users", 200),
    ("POST", "/api/v1/users"): Sample(
        "/api/v1/users",
        201,
        json={"name": "nora", "role": "viewer", "password": "a long enough passphrase"},
    ),
    ("GET", "/api/v1/tokens"): Sample("/api/v1/tokens", 200),
    ("POST", "/api/v1/tokens"): Sample("/api/v1/tokens", 201, json={"name": "crm"}),
    ("DELETE", "/api/v1/tokens/{id}"): Sample("/api/v1/tokens/{token_id}", 200),
    ("GET", "/api/v1/webhooks"): Sample("/api/v1/webhooks", 200),
    ("POST", "/api/v1/webhooks"): Sample(
        "/api/v1/webhooks",
        201,
        json={"url": "https://crm.example.test/hook", "events": ["optout.created"]},
    ),
    ("DELETE", "/api/v1/webhooks/{id}"): Sample("/api/v1/webhooks/{webhook_id}", 204),
    ("GET", "/api/v1/webhooks/{id}/deliveries"): Sample(
        "/api/v1/webhooks/{webhook_id}/deliveries", 200
    ),
    ("POST", "/api/v1/subjects/export"): Sample(
        "/api/v1/subjects/export", 200, json={"number": "+33199000100"}
    ),
    ("POST", "/api/v1/subjects/erase"): Sample(
        "/api/v1/subjects/erase", 200, json={"number": "0199000100"}
    ),
    ("POST", "/api/v1/subjects/rectify"): Sample(
        "/api/v1/subjects/rectify",
        200,
        json={"number": "0199000100", "set": {"first_name": "Camille"}, "list": "clients"},
    ),
    ("POST", "/api/v1/subjects/proof"): Sample(
        "/api/v1/subjects/proof", 200, json={"number": "+33199000100"}
    ),
}

GUARDED = [r for r in REGISTRY.routes if r.role is not None]


def _id(route: Route) -> str:
    return f"{route.method} {route.path}"


def test_every_route_has_a_sample() -> None:
    declared = {(r.method, r.path) for r in GUARDED}
    assert declared == set(SAMPLES)
    public = [r.path for r in REGISTRY.routes if r.role is None]
    assert public == [OPENAPI_PATH]


async def _send(client: TestClient, method: str, sample: Sample, path: str, **headers: str) -> Any:
    return await client.request(
        method,
        path,
        json=sample.json,
        data=sample.data,
        headers={**sample.headers, **headers},
    )


@pytest.mark.parametrize("route", GUARDED, ids=_id)
async def test_without_a_token_is_401(client: TestClient, route: Route) -> None:
    sample = SAMPLES[(route.method, route.path)]
    path = sample.path.format(token_id=1, webhook_id=1)
    resp = await _send(client, route.method, sample, path)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"


LOWER = [(r, low) for r in GUARDED for low in ROLES[: ROLES.index(r.role or "viewer")]]


@pytest.mark.parametrize(("route", "role"), LOWER, ids=[f"{_id(r)} as {low}" for r, low in LOWER])
async def test_role_too_low_is_403(
    client: TestClient, runtime: Runtime, route: Route, role: str
) -> None:
    account = make_account(runtime, f"low-{role}", role)
    sample = SAMPLES[(route.method, route.path)]
    path = sample.path.format(token_id=1, webhook_id=1)
    resp = await _send(client, route.method, sample, path, **api_headers(runtime, account))
    assert resp.status == 403
    body = await resp.json()
    assert body["error"]["code"] == "forbidden"
    assert route.role in body["error"]["message"]


async def _seed(client: TestClient, runtime: Runtime, admin: Account) -> dict[str, int]:
    """A list ``clients``, campaigns ``spring`` (draft) and ``paused``, a webhook, a token."""
    headers = api_headers(runtime, admin)
    await create_campaign(client, headers)
    await create_campaign(client, headers, name="paused")
    for action in ("start", "pause"):
        resp = await client.post(f"/api/v1/campaigns/paused/{action}", headers=headers)
        assert resp.status == 200, await resp.text()
    resp = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://crm.example.test/a", "events": ["attempt.completed"]},
        headers=headers,
    )
    webhook_id = (await resp.json())["id"]
    return {"webhook_id": webhook_id}


@pytest.mark.parametrize("route", GUARDED, ids=_id)
async def test_minimum_role_succeeds(
    client: TestClient, runtime: Runtime, admin: Account, route: Route
) -> None:
    ids = await _seed(client, runtime, admin)
    account = make_account(runtime, f"just-{route.role}", route.role or "viewer")
    headers = api_headers(runtime, account)
    resp = await client.post("/api/v1/tokens", json={"name": "to revoke"}, headers=headers)
    ids["token_id"] = (await resp.json())["id"]
    sample = SAMPLES[(route.method, route.path)]
    resp = await _send(client, route.method, sample, sample.path.format(**ids), **headers)
    text = await resp.text()
    assert resp.status == sample.status, text
    if sample.status != 204:
        assert resp.content_type == "application/json"


async def test_openapi_document_is_public(client: TestClient) -> None:
    resp = await client.get(OPENAPI_PATH)
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["paths"][OPENAPI_PATH]["get"]["security"] == []
    ops = [(m.upper(), p) for p, item in doc["paths"].items() for m in item]
    assert len(ops) == len(REGISTRY.routes)
