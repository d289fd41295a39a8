"""Helpers of the accounts tests: drive the login pages over HTTP like a browser would."""

from __future__ import annotations

import html
import re
from datetime import datetime

import pyotp
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from voicecast.clock import ManualClock
from voicecast.web import accounts

from .conftest import Account

CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token in a page's forms."""
    found = CSRF_RE.search(page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def element_text(page: str, element_id: str) -> str:
    """The text inside the element of id ``element_id`` (tags removed, unescaped)."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no #{element_id} on the page"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def recovery_codes_of(page: str) -> list[str]:
    """The codes listed in ``#recovery-codes``."""
    found = re.search(r'id="recovery-codes">(.*?)</ul>', page, re.S)
    assert found, "no #recovery-codes on the page"
    return [html.unescape(c).strip() for c in re.findall(r"<li>(.*?)</li>", found.group(1))]


def session_cookie(resp: ClientResponse) -> str:
    """The session token a response sets."""
    return resp.cookies[accounts.SESSION_COOKIE].value


def code_at(secret: str, at: datetime) -> str:
    """The TOTP code of ``secret`` at ``at``."""
    return pyotp.TOTP(secret).at(at)


async def login_csrf(client: TestClient) -> str:
    """Open the login page (sets the CSRF cookie); return the CSRF token of its form."""
    resp = await client.get("/login")
    assert resp.status == 200
    return csrf_of(await resp.text())


async def post_password(
    client: TestClient, name: str, password: str, *, next_: str | None = None
) -> ClientResponse:
    """Open the login page and post the name and password (redirects not followed)."""
    csrf = await login_csrf(client)
    data = {"_csrf": csrf, "name": name, "password": password}
    if next_ is not None:
        data["next"] = next_
    return await client.post("/login", data=data, allow_redirects=False)


async def post_code(
    client: TestClient, code: str, *, path: str = "/login/totp", next_: str | None = None
) -> ClientResponse:
    """Post a second-factor code to ``path`` (redirects not followed)."""
    page = await client.get(path, allow_redirects=False)
    assert page.status == 200, page.status
    data = {"_csrf": csrf_of(await page.text()), "code": code}
    if next_ is not None:
        data["next"] = next_
    return await client.post(path, data=data, allow_redirects=False)


async def full_login(client: TestClient, account: Account, clock: ManualClock) -> str:
    """Log ``account`` in with password and TOTP at the clock's time (moving the clock to
    the next 30-second step first, so that a code is never a replay); return the session
    token."""
    clock.advance(30)
    resp = await post_password(client, account.name, account.password)
    assert resp.status == 303 and resp.headers["Location"] == "/login/totp"
    resp = await post_code(client, account.code(clock.now()))
    assert resp.status == 303, await resp.text()
    return session_cookie(resp)
