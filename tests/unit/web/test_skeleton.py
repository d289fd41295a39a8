"""The application skeleton: security headers, JSON errors under /api, CSRF on forms."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from voicecast.web.i18n import negotiate


async def test_unknown_api_path_is_json_404(client: TestClient) -> None:
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["code"] == "not_found"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


async def test_form_post_without_csrf_token_is_refused(client: TestClient) -> None:
    resp = await client.post("/logout", data={"x": "1"})
    assert resp.status == 403
    assert "CSRF" in await resp.text()


def test_accept_language_negotiation() -> None:
    assert negotiate("fr-FR,fr;q=0.9,en;q=0.8") == "fr"
    assert negotiate("de-DE,en;q=0.5,fr;q=0.7") == "fr"
    assert negotiate("en-GB") == "en"
    assert negotiate("de") == "en"
    assert negotiate("fr;q=0, en") == "en"
    assert negotiate(None) == "en"
    assert negotiate(";;;,q=abc") == "en"


async def test_bearer_token_and_session_helpers(client: TestClient, runtime, admin) -> None:
    from .conftest import api_headers, login_as

    resp = await client.get("/api/v1/nothing", headers={"Authorization": "Bearer vc_wrong"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    resp = await client.get("/api/v1/nothing", headers=api_headers(runtime, admin))
    assert resp.status == 404
    csrf = await login_as(client, runtime, admin)
    resp = await client.post("/logout", data={"_csrf": csrf})
    assert resp.status != 403


async def test_secure_cookie_only_over_https_or_from_a_trusted_proxy(
    client: TestClient, runtime
) -> None:
    async def secure_flag(headers: dict[str, str]) -> bool:
        client.session.cookie_jar.clear()
        resp = await client.get("/login", headers=headers)
        return resp.cookies["voicecast_csrf"]["secure"] != ""

    https = {"X-Forwarded-Proto": "https"}
    assert not await secure_flag({})
    assert not await secure_flag(https)  # anyone can write the header: not believed
    runtime.settings.web.trusted_proxies = ["127.0.0.1"]
    assert await secure_flag(https)
    runtime.settings.web.trusted_proxies = []
    runtime.settings.web.secure_cookies = "always"
    assert await secure_flag({})


async def test_a_taken_port_is_a_clear_error(runtime, clock) -> None:
    import socket

    import pytest

    from voicecast.errors import VoicecastError
    from voicecast.web.server import WebContext, start_web

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        runtime.settings.web.port = taken.getsockname()[1]
        with pytest.raises(VoicecastError, match=r"cannot listen on 127\.0\.0\.1:\d+"):
            await start_web(WebContext(runtime, clock))


async def test_static_files_skip_the_session_lookup(
    client: TestClient, runtime, admin, monkeypatch
) -> None:
    from voicecast.web import accounts

    from .conftest import login_as

    await login_as(client, runtime, admin)
    lookups: list[str] = []
    real = accounts.session_for

    def counting(*args, **kwargs):
        lookups.append("x")
        return real(*args, **kwargs)

    monkeypatch.setattr(accounts, "session_for", counting)
    assert (await client.get("/static/console.css")).status == 200
    assert lookups == []
    assert (await client.get("/campaigns")).status == 200
    assert lookups == ["x"]
