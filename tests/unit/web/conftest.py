"""Web fixtures: a migrated SQLite database, the aiohttp application over it (no PBX, no
dialer), and users of each role already enrolled in TOTP.

``client`` is an aiohttp ``TestClient`` (pytest-aiohttp) on a real TCP socket of the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from voicecast.app import Runtime, open_runtime
from voicecast.clock import ManualClock
from voicecast.config import load_settings
from voicecast.storage.models import User
from voicecast.web import accounts
from voicecast.web.server import CSRF_COOKIE, WebContext, make_app

PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    """A test user: name, role, password and TOTP secret (already enrolled)."""

    name: str
    role: str
    password: str
    totp_secret: str

    def code(self, at: datetime | None = None) -> str:
        """The TOTP code of ``at`` (default: now)."""
        return pyotp.TOTP(self.totp_secret).at(at or datetime.now(UTC))


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    cfg = tmp_path / "voicecast.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/voicecast.db"\n'
        "[sandbox]\nenabled = false\n"
        f'[audio]\nstore_dir = "{tmp_path}/audio"\n'
        f'[pbx]\nsounds_dir = "{tmp_path}/sounds"\nreplies_dir = "{tmp_path}/replies"\n'
        f'[compliance]\nhash_key_file = "{tmp_path}/hash.key"\n'
    )
    return open_runtime(load_settings(cfg, environ={}))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def web_ctx(runtime: Runtime, clock: ManualClock) -> WebContext:
    return WebContext(runtime, clock)


@pytest.fixture
def web_app(web_ctx: WebContext) -> web.Application:
    return make_app(web_ctx)


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]], web_app: web.Application
) -> TestClient:
    return await aiohttp_client(web_app)


def make_account(runtime: Runtime, name: str, role: str) -> Account:
    """Create ``name`` with ``role``, enrolled in TOTP (as if they had scanned the QR code)."""
    secret = pyotp.random_base32()
    with runtime.sessions() as s, s.begin():
        user = accounts.create_user(s, name, role, PASSWORD)
        user.totp_secret = secret
        user.totp_enrolled_at = datetime.now(UTC)
    return Account(name, role, PASSWORD, secret)


@pytest.fixture
def admin(runtime: Runtime) -> Account:
    return make_account(runtime, "alice", "admin")


@pytest.fixture
def supervisor(runtime: Runtime) -> Account:
    return make_account(runtime, "sam", "supervisor")


@pytest.fixture
def viewer(runtime: Runtime) -> Account:
    return make_account(runtime, "victor", "viewer")


def api_headers(runtime: Runtime, account: Account) -> dict[str, str]:
    """``Authorization: Bearer`` headers of a fresh API token of ``account``."""
    with runtime.sessions() as s, s.begin():
        user = s.scalars(select(User).where(User.name == account.name)).one()
        token = accounts.create_api_token(s, user.id, "tests", datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


async def login_as(client: TestClient, runtime: Runtime, account: Account) -> str:
    """Give ``client`` a full console session of ``account`` (cookie set directly, as if it
    had logged in with password and TOTP) and a CSRF cookie; return the CSRF token to post
    in forms (``_csrf``) or the ``X-CSRF-Token`` header."""
    with runtime.sessions() as s, s.begin():
        user = s.scalars(select(User).where(User.name == account.name)).one()
        token = accounts.create_session(
            s, user.id, "full", datetime.now(UTC), lifetime=timedelta(hours=1)
        )
    csrf = "test-csrf-token-" + account.name
    # scoped to the server's URL, so they replace any cookie the server set earlier
    client.session.cookie_jar.update_cookies(
        {accounts.SESSION_COOKIE: token, CSRF_COOKIE: csrf}, response_url=client.make_url("/")
    )
    return csrf
