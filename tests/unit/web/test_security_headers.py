"""Security headers on every class of response of the console (OWASP Secure Headers
Project): pages, API answers, static files, redirects, errors (404, 405, 500), /healthz and
/metrics; cookies HttpOnly + SameSite=Strict (+ Secure over HTTPS); HSTS only over HTTPS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from voicecast.app import Runtime
from voicecast.web.server import SECURITY_HEADERS

from .conftest import Account, api_headers, login_as


def assert_secured(resp: web.StreamResponse | object, *, cached: bool = False) -> None:
    headers = resp.headers  # type: ignore[attr-defined]
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, resp)
    if cached:
        assert headers.get("Cache-Control") != "no-store"
    else:
        assert headers.get("Cache-Control") == "no-store", resp
    assert "Strict-Transport-Security" not in headers  # plain HTTP


@pytest.fixture
async def boom_client(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]], web_app: web.Application
) -> TestClient:
    """The application with one route that fails unexpectedly (the 500 page)."""

    async def boom(_request: web.Request) -> web.Response:
        raise RuntimeError("unexpected")

    web_app.router.add_get("/boom", boom)
    web_app.router.add_get("/api/v1/boom", boom)
    return await aiohttp_client(web_app)


async def test_every_route_class_carries_the_headers(
    boom_client: TestClient, runtime: Runtime, admin: Account
) -> None:
    client = boom_client
    # anonymous: the login page, the redirect to it, the API's 401, health and metrics
    assert_secured(await client.get("/login"))
    redirect = await client.get("/campaigns", allow_redirects=False)
    assert redirect.status in (302, 303) and redirect.headers["Location"].startswith("/login")
    assert_secured(redirect)
    unauthenticated = await client.get("/api/v1/campaigns")
    assert unauthenticated.status == 401
    assert_secured(unauthenticated)
    for path in ("/healthz", "/metrics"):
        assert_secured(await client.get(path))
    # static files may be cached, everything else not
    static = await client.get("/static/console.css")
    assert static.status == 200
    assert_secured(static, cached=True)
    # errors: 404 page and JSON, CSRF 403, 405, 500 page and JSON (its text never shown)
    for path in ("/no-such-page", "/api/v1/no-such-thing"):
        resp = await client.get(path, headers=api_headers(runtime, admin))
        assert resp.status == 404
        assert_secured(resp)
    csrf_refused = await client.post("/campaigns", data={"name": "x"})
    assert csrf_refused.status == 403
    assert_secured(csrf_refused)
    not_allowed = await client.put("/healthz", headers=api_headers(runtime, admin))
    assert not_allowed.status == 405
    assert_secured(not_allowed)
    for path in ("/boom", "/api/v1/boom"):
        resp = await client.get(path, headers=api_headers(runtime, admin))
        assert resp.status == 500 and "unexpected" not in await resp.text()
        assert_secured(resp)
    # logged in: a console page, an API answer
    await login_as(client, runtime, admin)
    page = await client.get("/campaigns")
    assert page.status == 200 and page.content_type == "text/html"
    assert_secured(page)
    api = await client.get("/api/v1/campaigns", headers=api_headers(runtime, admin))
    assert api.status == 200 and api.content_type == "application/json"
    assert_secured(api)


async def test_hsts_only_over_https(client: TestClient, runtime: Runtime) -> None:
    https = {"X-Forwarded-Proto": "https"}
    assert "Strict-Transport-Security" not in (await client.get("/login", headers=https)).headers
    runtime.settings.web.trusted_proxies = ["127.0.0.1"]  # now the proxy is believed
    resp = await client.get("/login", headers=https)
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert_secured(await client.get("/login"))  # the proxy over plain HTTP: none


async def test_cookies_are_httponly_samesite_strict(client: TestClient, runtime: Runtime) -> None:
    resp = await client.get("/login")
    cookies = resp.headers.getall("Set-Cookie")
    assert cookies
    for cookie in cookies:
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path"} <= attributes, cookie
        assert "SameSite=Strict" in cookie and "Secure" not in cookie, cookie
    runtime.settings.web.trusted_proxies = ["127.0.0.1"]
    client.session.cookie_jar.clear()
    resp = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert all("Secure" in c for c in resp.headers.getall("Set-Cookie"))
