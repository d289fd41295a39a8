"""The console and API on PostgreSQL (``pg_url`` of ``tests/conftest.py``): values PostgreSQL
refuses where SQLite stores them (a NUL character, a text too long for its column) are a
clear 400, never a 500; a data error that is not the request's fault stays a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from voicecast.app import Runtime, open_runtime
from voicecast.config import load_settings
from voicecast.web.server import WebContext, db_call, make_app

from .conftest import Account, api_headers, login_as


@pytest.fixture
def runtime(tmp_path: Path, pg_url: str) -> Iterator[Runtime]:  # the SQLite one, on PostgreSQL
    cfg = tmp_path / "voicecast.toml"
    cfg.write_text(
        f'[database]\nurl = "{pg_url}"\n'
        "[sandbox]\nenabled = false\n"
        f'[audio]\nstore_dir = "{tmp_path}/audio"\n'
        f'[pbx]\nsounds_dir = "{tmp_path}/sounds"\nreplies_dir = "{tmp_path}/replies"\n'
        f'[compliance]\nhash_key_file = "{tmp_path}/hash.key"\n'
    )
    rt = open_runtime(load_settings(cfg, environ={}))
    yield rt
    rt.engine.dispose()


@pytest.fixture
def web_app(web_ctx: WebContext) -> web.Application:
    """The application plus two routes that fail in the database on purpose."""
    app = make_app(web_ctx)

    async def too_long(request: web.Request) -> web.Response:
        sql = "INSERT INTO contact_lists (name, created_at) VALUES (repeat('x', 300), now())"
        await db_call(request, lambda s: s.execute(text(sql)))
        return web.Response(text="stored")

    async def division(request: web.Request) -> web.Response:
        await db_call(request, lambda s: s.execute(text("SELECT 1 / 0")))  # our bug
        return web.Response(text="?")

    app.router.add_get("/test/too-long", too_long)
    app.router.add_get("/test/division", division)
    return app


async def test_a_nul_character_in_the_address_is_a_400(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    await login_as(client, runtime, admin)
    headers = api_headers(runtime, admin)
    for url, kind in [
        ("/lists/a%00b", "text/html"),
        ("/campaigns/a%00b/report", "text/html"),
        ("/optouts?number=a%00b", "text/html"),
        ("/api/v1/lists/a%00b", "application/json"),
        ("/api/v1/campaigns?status=a%00b", "application/json"),
    ]:
        resp = await client.get(url, headers=headers if url.startswith("/api") else None)
        assert resp.status == 400, (url, resp.status)
        assert resp.content_type == kind
        assert "NUL" in await resp.text()


async def test_a_token_named_with_a_nul_is_refused(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    csrf = await login_as(client, runtime, admin)
    resp = await client.post("/tokens", data={"_csrf": csrf, "name": "a\x00b"})
    assert resp.status < 500
    assert "printable" in await resp.text()
    resp = await client.post(
        "/api/v1/tokens", json={"name": "a\x00b"}, headers=api_headers(runtime, admin)
    )
    assert resp.status == 400 and "NUL characters are not allowed" in await resp.text()


async def test_a_value_the_database_refuses_is_a_400_and_a_bug_a_500(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    await login_as(client, runtime, admin)
    resp = await client.get("/test/too-long")
    assert resp.status == 400 and "refused by the database" in await resp.text()
    resp = await client.get("/test/division")
    assert resp.status == 500 and "internal error" in await resp.text()
