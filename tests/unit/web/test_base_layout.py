"""The shared page layout (base.html): an inline empty favicon, so that browsers do not ask
for /favicon.ico (a 404 on every first page)."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from voicecast.app import Runtime

from .conftest import Account, login_as


async def test_pages_declare_an_empty_inline_favicon(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    resp = await client.get("/login")
    html = await resp.text()
    assert resp.status == 200
    head = html[: html.index("</head>")]
    assert '<link rel="icon" href="data:,">' in head
    # the CSP lets the browser use it (img-src covers icons)
    assert re.search(r"img-src [^;]*data:", resp.headers["Content-Security-Policy"])
    await login_as(client, runtime, viewer)
    html = await (await client.get("/campaigns")).text()
    assert '<link rel="icon" href="data:,">' in html[: html.index("</head>")]
