"""Login over HTTP: password, TOTP enrolment, TOTP and recovery codes, lockout, rate limit,
open-redirect refusal, session rotation, idle expiry, CSRF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from voicecast.app import Runtime
from voicecast.clock import ManualClock
from voicecast.storage.models import User, WebSession
from voicecast.web import accounts
from voicecast.web.auth_views import SlidingWindowLimiter, safe_next

from .auth_helpers import (
    code_at,
    csrf_of,
    element_text,
    full_login,
    login_csrf,
    post_code,
    post_password,
    recovery_codes_of,
    session_cookie,
)
from .conftest import PASSWORD, Account, login_as


def db_user(runtime: Runtime, name: str) -> User:
    with runtime.sessions() as s:
        return s.scalars(select(User).where(User.name == name)).one()


def session_rows(runtime: Runtime, name: str) -> list[WebSession]:
    with runtime.sessions() as s:
        user = s.scalars(select(User).where(User.name == name)).one()
        return list(s.scalars(select(WebSession).where(WebSession.user_id == user.id)))


async def logout(client: TestClient) -> None:
    page = await client.get("/tokens")
    resp = await client.post(
        "/logout", data={"_csrf": csrf_of(await page.text())}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/login"


async def test_root_redirects_by_login_state(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    await login_as(client, runtime, admin)
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/campaigns"


async def test_enrolment_totp_and_recovery_codes(
    client: TestClient, runtime: Runtime, clock: ManualClock
) -> None:
    with runtime.sessions() as s, s.begin():
        accounts.create_user(s, "nadia", "admin", PASSWORD)

    # password -> enrolment (no TOTP yet)
    resp = await post_password(client, "nadia", PASSWORD)
    assert resp.status == 303 and resp.headers["Location"] == "/login/enrol"
    page = await client.get("/login/enrol")
    text = await page.text()
    secret = element_text(text, "totp-secret")
    assert len(secret) == 32
    assert 'id="totp-qr" src="data:image/svg+xml;' in text
    assert "otpauth://totp/voicecast:nadia?secret=" + secret in text.replace("&amp;", "&")
    # the page shown again keeps the same secret (the app may already have it)
    assert element_text(await (await client.get("/login/enrol")).text(), "totp-secret") == secret
    # nothing but the enrolment is reachable yet
    resp = await client.get("/tokens", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    resp = await client.get("/login/totp", allow_redirects=False)
    assert resp.headers["Location"] == "/login/enrol"

    wrong = await post_code(client, "000000", path="/login/enrol")
    assert wrong.status == 401
    assert "Wrong code." in await wrong.text()
    assert element_text(await wrong.text(), "totp-secret") == secret

    done = await post_code(client, code_at(secret, clock.now()), path="/login/enrol")
    assert done.status == 200
    page_text = await done.text()
    codes = recovery_codes_of(page_text)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert 'id="continue" href="/"' in page_text
    user = db_user(runtime, "nadia")
    assert user.totp_enrolled_at == clock.now() and user.totp_secret == secret
    assert len(user.recovery_codes) == 10 and not any(c in str(user.recovery_codes) for c in codes)
    resp = await client.get("/", allow_redirects=False)
    assert resp.headers["Location"] == "/campaigns"
    assert (await client.get("/tokens")).status == 200
    # the recovery codes are shown once: the enrolment page is gone
    resp = await client.get("/login/enrol", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    await logout(client)
    resp = await client.get("/tokens", allow_redirects=False)
    assert resp.headers["Location"] == "/login?next=/tokens"

    # a later login with TOTP: the enrolment's code (same step) is a replay
    resp = await post_password(client, "nadia", PASSWORD)
    assert resp.headers["Location"] == "/login/totp"
    replay = await post_code(client, code_at(secret, clock.now()))
    assert replay.status == 401
    assert "already used" in await replay.text()
    clock.advance(30)
    ok = await post_code(client, code_at(secret, clock.now()))
    assert ok.status == 303 and ok.headers["Location"] == "/"
    await logout(client)

    # the same code again in another login: refused
    await post_password(client, "nadia", PASSWORD)
    replay = await post_code(client, code_at(secret, clock.now()))
    assert replay.status == 401
    # a recovery code instead
    used = await post_code(client, codes[0])
    assert used.status == 200
    assert element_text(await used.text(), "recovery-left").endswith("9.")
    assert (await client.get("/tokens")).status == 200
    assert len(db_user(runtime, "nadia").recovery_codes) == 9
    await logout(client)

    # the same recovery code a second time: refused; another one, typed loosely: accepted
    await post_password(client, "nadia", PASSWORD)
    again = await post_code(client, codes[0])
    assert again.status == 401
    assert "Wrong code." in await again.text()
    loose = codes[1].replace("-", " ").upper()
    assert (await post_code(client, loose)).status == 200
    user = db_user(runtime, "nadia")
    assert len(user.recovery_codes) == 8
    assert user.failed_logins == 0 and user.last_login_at == clock.now()


async def test_unknown_user_and_wrong_password_look_the_same(
    client: TestClient, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    real = accounts.password_matches

    def counting(password_hash: str, password: str) -> bool:
        checks.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(accounts, "password_matches", counting)
    unknown = await post_password(client, "nobody", "whatever it is, long")
    wrong = await post_password(client, admin.name, "whatever it is, long")
    assert unknown.status == wrong.status == 401
    message = element_text(await unknown.text(), "login-error")
    assert message == element_text(await wrong.text(), "login-error")
    assert message == (
        "Wrong user name or password. After 5 failed attempts an account is locked for 15 minutes."
    )
    # the unknown name was checked against an argon2 hash too (same time)
    assert len(checks) == 2 and all(h.startswith("$argon2id$") for h in checks)
    assert accounts.SESSION_COOKIE not in unknown.cookies


async def test_lockout_after_failures_and_release(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account
) -> None:
    runtime.settings.web.max_failed_logins = 3
    runtime.settings.web.lockout_minutes = 15
    for _ in range(2):
        assert (await post_password(client, admin.name, "not the password!")).status == 401
    locked = await post_password(client, admin.name, "not the password!")
    # the password page says the same for a locked account as for a wrong password or an
    # unknown name: it does not tell which accounts exist
    assert locked.status == 401
    unknown = await post_password(client, "nobody", "not the password!")
    assert element_text(await locked.text(), "login-error") == element_text(
        await unknown.text(), "login-error"
    )
    assert "locked for 15 minutes" in element_text(await locked.text(), "login-error")
    assert db_user(runtime, admin.name).locked_until == clock.now() + timedelta(minutes=15)
    # locked: even the right password is refused
    resp = await post_password(client, admin.name, admin.password)
    assert resp.status == 401 and accounts.SESSION_COOKIE not in resp.cookies
    clock.advance(15 * 60 - 1)
    assert (await post_password(client, admin.name, admin.password)).status == 401
    clock.advance(2)
    resp = await post_password(client, admin.name, admin.password)
    assert resp.status == 303 and resp.headers["Location"] == "/login/totp"

    # second-factor failures count too, and a lockout ends the pending login
    for _ in range(2):
        assert (await post_code(client, "123456")).status == 401
    resp = await post_code(client, "abcde-fghjk")
    # past the password, the owner is told the account is locked and until when
    assert resp.status == 423
    until = (clock.now() + timedelta(minutes=15)).astimezone(runtime.report_zone())
    message = element_text(await resp.text(), "login-error")
    assert "locked" in message and until.strftime("%Y-%m-%d %H:%M") in message
    assert resp.cookies[accounts.SESSION_COOKIE].value == ""
    assert session_rows(runtime, admin.name) == []
    clock.advance(15 * 60 + 1)

    # a complete login resets the count
    await full_login(client, admin, clock)
    await logout(client)
    for _ in range(2):
        assert (await post_password(client, admin.name, "not the password!")).status == 401
    await full_login(client, admin, clock)
    await logout(client)
    for _ in range(2):
        assert (await post_password(client, admin.name, "not the password!")).status == 401
    assert db_user(runtime, admin.name).locked_until is None


async def test_rate_limit_per_address(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account
) -> None:
    runtime.settings.web.login_rate_per_ip = 3
    runtime.settings.web.login_window = 60
    for _ in range(3):
        assert (await post_password(client, "nobody", "wrong password here")).status == 401
    clock.advance(10)
    limited = await post_password(client, admin.name, admin.password)
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "50"
    assert "Too many login attempts" in await limited.text()
    clock.advance(50)
    resp = await post_password(client, admin.name, admin.password)
    assert resp.status == 303

    # X-Forwarded-For from a peer that is not a trusted proxy is the client's own claim:
    # ignored, so a made-up address per request does not escape the limit
    csrf = await login_csrf(client)
    data = {"_csrf": csrf, "name": "nobody", "password": "wrong password here"}
    for i in range(3):
        forged = {"X-Forwarded-For": f"10.1.2.{i}"}
        status = (await client.post("/login", data=data, headers=forged)).status
        assert status == (401 if i < 2 else 429)
    clock.advance(61)

    # behind a trusted reverse proxy, each forwarded client address has its own budget
    runtime.settings.web.trusted_proxies = ["127.0.0.1"]
    for _ in range(3):
        assert (await post_password(client, "nobody", "wrong password here")).status == 401
    assert (await post_password(client, "nobody", "wrong password here")).status == 429
    csrf = await login_csrf(client)
    data = {"_csrf": csrf, "name": "nobody", "password": "wrong password here"}
    proxied = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(3):
        assert (await client.post("/login", data=data, headers=proxied)).status == 401
    assert (await client.post("/login", data=data, headers=proxied)).status == 429
    other = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
    assert (await client.post("/login", data=data, headers=other)).status == 401


def test_sliding_window_limiter() -> None:
    limiter = SlidingWindowLimiter()
    assert limiter.hit("a", 0.0, limit=2, window=10) is None
    assert limiter.hit("a", 4.0, limit=2, window=10) is None
    assert limiter.hit("b", 4.0, limit=2, window=10) is None
    assert limiter.hit("a", 5.0, limit=2, window=10) == pytest.approx(5.0)
    assert limiter.hit("a", 10.0, limit=2, window=10) is None  # the first one left the window
    assert limiter.hit("a", 11.0, limit=2, window=10) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/tokens", "/tokens"),
        ("/campaigns/7?tab=live", "/campaigns/7?tab=live"),
        ("//evil.example/x", None),
        ("/\\evil.example", None),
        ("https://evil.example/", None),
        ("javascript:alert(1)", None),
        ("evil.example", None),
        ("/login", None),
        ("/login/totp", None),
        ("/x\r\nSet-Cookie: a=b", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_next(value: str | None, expected: str | None) -> None:
    assert safe_next(value) == expected


async def test_next_is_kept_only_when_local(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account
) -> None:
    resp = await client.get("/users", allow_redirects=False)
    assert resp.headers["Location"] == "/login?next=/users"
    page = await client.get("/login?next=/users")
    assert 'name="next" value="/users"' in await page.text()
    resp = await post_password(client, admin.name, admin.password, next_="/users")
    assert resp.headers["Location"] == "/login/totp?next=%2Fusers"
    clock.advance(30)
    resp = await post_code(client, admin.code(clock.now()), next_="/users")
    assert resp.status == 303 and resp.headers["Location"] == "/users"
    await logout(client)

    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        page = await client.get("/login", params={"next": evil})
        assert "evil" not in await page.text()
        resp = await post_password(client, admin.name, admin.password, next_=evil)
        assert resp.headers["Location"] == "/login/totp"
        clock.advance(30)
        resp = await post_code(client, admin.code(clock.now()), next_=evil)
        assert resp.headers["Location"] == "/"
        # logged in: the login page sends on, never to another host
        resp = await client.get("/login", params={"next": evil}, allow_redirects=False)
        assert resp.headers["Location"] == "/"
        await logout(client)


async def test_session_token_rotates_at_every_step(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account
) -> None:
    jar = client.session.cookie_jar
    # a session cookie planted before login (fixation) is replaced, not promoted
    planted = await post_password(client, admin.name, admin.password)
    planted_token = session_cookie(planted)
    resp = await post_password(client, admin.name, admin.password)
    pre_2fa = session_cookie(resp)
    assert pre_2fa != planted_token
    clock.advance(30)
    resp = await post_code(client, admin.code(clock.now()))
    assert resp.status == 303
    full = session_cookie(resp)
    assert full not in (pre_2fa, planted_token)
    rows = session_rows(runtime, admin.name)
    assert [r.id for r in rows] == [accounts.digest(full)]
    assert rows[0].stage == "full"
    assert resp.cookies[accounts.SESSION_COOKIE]["httponly"]
    assert resp.cookies[accounts.SESSION_COOKIE]["samesite"] == "Strict"
    assert resp.cookies[accounts.SESSION_COOKIE]["max-age"] == str(12 * 3600)

    for old in (pre_2fa, planted_token):
        jar.clear()
        jar.update_cookies({accounts.SESSION_COOKIE: old})
        resp = await client.get("/tokens", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login")
        resp = await client.get("/login/totp", allow_redirects=False)
        assert resp.headers["Location"] == "/login"
    jar.clear()
    jar.update_cookies({accounts.SESSION_COOKIE: full})
    assert (await client.get("/tokens")).status == 200


async def test_idle_and_lifetime_expiry(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account
) -> None:
    runtime.settings.web.idle_minutes = 30
    runtime.settings.web.session_hours = 1
    await full_login(client, admin, clock)
    # activity keeps it alive
    for _ in range(2):
        clock.advance(29 * 60)
        assert (await client.get("/tokens", allow_redirects=False)).status == 200
    clock.advance(30 * 60 + 1)
    resp = await client.get("/tokens", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/tokens"
    assert session_rows(runtime, admin.name) == []

    # the lifetime ends a busy session too
    await full_login(client, admin, clock)
    for _ in range(3):
        clock.advance(20 * 60)
        resp = await client.get("/tokens", allow_redirects=False)
    assert resp.status == 303


async def test_pending_stages_give_no_access(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account
) -> None:
    await post_password(client, admin.name, admin.password)
    for path in ("/tokens", "/users", "/"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    resp = await client.get("/login/enrol", allow_redirects=False)
    assert resp.headers["Location"] == "/login/totp"
    # without any session, the second-factor pages send to the login page
    client.session.cookie_jar.clear()
    for path in ("/login/totp", "/login/enrol"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.headers["Location"] == "/login"
    resp = await client.post("/login/totp", data={"_csrf": await login_csrf(client), "code": "1"})
    assert resp.url.path == "/login"


async def test_disabled_account_cannot_log_in(
    client: TestClient, runtime: Runtime, admin: Account, supervisor: Account
) -> None:
    with runtime.sessions() as s, s.begin():
        accounts.set_disabled(s, supervisor.name, True)
    resp = await post_password(client, supervisor.name, supervisor.password)
    assert resp.status == 401
    assert element_text(await resp.text(), "login-error").startswith("Wrong user name or password.")


async def test_csrf_is_required_on_login_and_logout(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    await login_csrf(client)
    fields = {"name": admin.name, "password": admin.password}
    resp = await client.post("/login", data=fields, allow_redirects=False)
    assert resp.status == 403
    resp = await client.post("/login", data={**fields, "_csrf": "forged"}, allow_redirects=False)
    assert resp.status == 403
    assert "CSRF" in await resp.text()
    # a cross-site form post (other Origin) is refused even with a matching token pair
    csrf = await login_csrf(client)
    resp = await client.post(
        "/login",
        data={**fields, "_csrf": csrf},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert resp.status == 403
    await login_as(client, runtime, admin)
    assert (await client.post("/logout", data={"_csrf": "nope"})).status == 403
    page = await client.get("/tokens", allow_redirects=False)
    assert page.status == 200
    csrf = csrf_of(await page.text())  # the jar holds the server's CSRF cookie already
    resp = await client.post("/logout", data={"_csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert (await client.get("/tokens", allow_redirects=False)).status == 303


async def test_french_login_page(client: TestClient, admin: Account) -> None:
    page = await client.get("/login", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    text = await page.text()
    assert "Mot de passe" in text and 'lang="fr"' in text
    csrf = csrf_of(text)
    resp = await client.post(
        "/login",
        data={"_csrf": csrf, "name": admin.name, "password": "wrong password!!"},
        headers={"Accept-Language": "fr"},
    )
    assert "Nom d'utilisateur ou mot de passe incorrect." in (await resp.text()).replace(
        "&#39;", "'"
    )


async def test_argon2_hash_is_upgraded_on_login(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(admin.password)
    with runtime.sessions() as s, s.begin():
        s.scalars(select(User).where(User.name == admin.name)).one().password_hash = weak
    resp = await post_password(client, admin.name, admin.password)
    assert resp.status == 303
    upgraded = db_user(runtime, admin.name).password_hash
    assert upgraded != weak and accounts.password_matches(upgraded, admin.password)


def test_totp_step_window_and_replay() -> None:
    import pyotp

    from voicecast.web.accounts import _totp_step

    secret = pyotp.random_base32()
    now = datetime(2026, 3, 2, 10, 0, 15, tzinfo=UTC)
    step = pyotp.TOTP(secret).timecode(now)
    for offset in (-1, 0, 1):
        code = pyotp.TOTP(secret).at(now + timedelta(seconds=30 * offset))
        assert _totp_step(secret, code, now, None) == step + offset
    too_old = pyotp.TOTP(secret).at(now - timedelta(seconds=60))
    assert _totp_step(secret, too_old, now, None) is None
    current = pyotp.TOTP(secret).at(now)
    assert _totp_step(secret, current, now, step) == -1  # already used
    assert _totp_step(secret, current, now, step - 1) == step
