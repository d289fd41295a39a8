"""The users admin page (admin only) and the API tokens page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from voicecast.app import Runtime
from voicecast.clock import ManualClock
from voicecast.storage.models import ApiToken, User, WebSession
from voicecast.web import accounts

from .auth_helpers import element_text, post_password
from .conftest import PASSWORD, Account, api_headers, login_as


def db_user(runtime: Runtime, name: str) -> User:
    with runtime.sessions() as s:
        return s.scalars(select(User).where(User.name == name)).one()


def open_session(runtime: Runtime, name: str) -> str:
    with runtime.sessions() as s, s.begin():
        user = s.scalars(select(User).where(User.name == name)).one()
        return accounts.create_session(
            s, user.id, "full", datetime.now(UTC), lifetime=timedelta(hours=1)
        )


def session_count(runtime: Runtime, name: str) -> int:
    with runtime.sessions() as s:
        user = s.scalars(select(User).where(User.name == name)).one()
        return len(list(s.scalars(select(WebSession).where(WebSession.user_id == user.id))))


async def fresh_login(client: TestClient, runtime: Runtime, account: Account) -> str:
    """:func:`login_as` with an empty cookie jar (a CSRF cookie the server set earlier would
    shadow the one login_as plants)."""
    client.session.cookie_jar.clear()
    return await login_as(client, runtime, account)


def user_row(page: str, name: str) -> str:
    found = re.search(rf'<tr data-user="{re.escape(name)}"[^>]*>', page)
    assert found, f"no row of {name}"
    return found.group(0)


async def user_action(
    client: TestClient, csrf: str, name: str, action: str, **extra: str
) -> tuple[int, str]:
    resp = await client.post(
        f"/users/{name}", data={"_csrf": csrf, "action": action, **extra}, allow_redirects=False
    )
    return resp.status, (resp.headers.get("Location") or await resp.text())


async def test_users_page_is_for_admins_only(
    client: TestClient, runtime: Runtime, admin: Account, supervisor: Account, viewer: Account
) -> None:
    resp = await client.get("/users", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/users"
    for account in (viewer, supervisor):
        csrf = await fresh_login(client, runtime, account)
        assert (await client.get("/users")).status == 403
        data = {"_csrf": csrf, "name": "mallory", "role": "admin", "password": PASSWORD + "!"}
        assert (await client.post("/users", data=data)).status == 403
        resp = await client.post(f"/users/{account.name}", data={**data, "action": "role"})
        assert resp.status == 403
        client.session.cookie_jar.clear()
    with runtime.sessions() as s:
        assert accounts.find_user(s, "mallory") is None
        assert s.scalars(select(User).where(User.name == viewer.name)).one().role == "viewer"

    await fresh_login(client, runtime, admin)
    page = await client.get("/users")
    assert page.status == 200
    text = await page.text()
    for account in (admin, supervisor, viewer):
        row = user_row(text, account.name)
        assert f'data-role="{account.role}"' in row and 'data-enrolled="yes"' in row
    assert 'id="new-user-form"' in text


async def test_forms_need_a_console_login_and_csrf(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    headers = api_headers(runtime, admin)
    data = {"name": "bob", "role": "viewer", "password": PASSWORD}
    assert (await client.get("/users", headers=headers)).status == 200
    resp = await client.post("/users", data=data, headers=headers)
    assert resp.status == 403
    assert (await client.post("/tokens", data={"name": "x"}, headers=headers)).status == 403
    csrf = await fresh_login(client, runtime, admin)
    assert (await client.post("/users", data=data)).status == 403
    assert (await client.post("/users", data={**data, "_csrf": csrf + "x"})).status == 403
    with runtime.sessions() as s:
        assert accounts.find_user(s, "bob") is None
    resp = await client.post("/users", data={**data, "_csrf": csrf}, allow_redirects=False)
    assert resp.status == 303


async def test_create_user_and_errors(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account
) -> None:
    csrf = await fresh_login(client, runtime, admin)
    data = {"_csrf": csrf, "name": "bob", "role": "supervisor", "password": PASSWORD}
    resp = await client.post("/users", data=data, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/users?done=created&name=bob"
    page = await client.get(resp.headers["Location"])
    text = await page.text()
    assert "User bob created" in element_text(text, "users-notice")
    row = user_row(text, "bob")
    assert 'data-role="supervisor"' in row and 'data-enrolled="no"' in row
    # bob's first login asks for the enrolment
    client.session.cookie_jar.clear()
    resp = await post_password(client, "bob", PASSWORD)
    assert resp.headers["Location"] == "/login/enrol"

    csrf = await fresh_login(client, runtime, admin)
    cases = [
        ({"name": "bob", "role": "viewer", "password": PASSWORD}, "already exists"),
        ({"name": "carl", "role": "viewer", "password": "short"}, "at least 12 characters"),
        ({"name": "carl", "role": "root", "password": PASSWORD}, "role 'root'"),
        ({"name": "bad name!", "role": "viewer", "password": PASSWORD}, "user name"),
        ({"name": "carl", "role": "viewer", "password": "carl-is-my-password"}, "user name"),
    ]
    for fields, message in cases:
        resp = await client.post("/users", data={"_csrf": csrf, **fields})
        assert resp.status == 400
        text = await resp.text()
        assert message in element_text(text, "users-error").replace("&#39;", "'")
        assert 'type="password"' in text and PASSWORD not in text
    with runtime.sessions() as s:
        assert accounts.find_user(s, "carl") is None


async def test_user_actions(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account, supervisor: Account
) -> None:
    csrf = await fresh_login(client, runtime, admin)
    # role
    assert await user_action(client, csrf, supervisor.name, "role", role="viewer") == (
        303,
        "/users?done=role&name=sam",
    )
    assert db_user(runtime, supervisor.name).role == "viewer"
    status, body = await user_action(client, csrf, supervisor.name, "role", role="boss")
    assert status == 409 and "role 'boss'" in body.replace("&#39;", "'")
    # disable ends the sessions, enable
    open_session(runtime, supervisor.name)
    assert (await user_action(client, csrf, supervisor.name, "disable"))[0] == 303
    assert db_user(runtime, supervisor.name).disabled
    assert session_count(runtime, supervisor.name) == 0
    page = await (await client.get("/users")).text()
    assert 'data-disabled="yes"' in user_row(page, supervisor.name)
    assert 'data-action="enable"' in page
    assert (await user_action(client, csrf, supervisor.name, "enable"))[0] == 303
    assert not db_user(runtime, supervisor.name).disabled
    # unlock
    with runtime.sessions() as s, s.begin():
        user = s.scalars(select(User).where(User.name == supervisor.name)).one()
        user.locked_until = clock.now() + timedelta(minutes=10)
        user.failed_logins = 2
    page = await (await client.get("/users")).text()
    assert 'data-locked="yes"' in user_row(page, supervisor.name)
    assert (await user_action(client, csrf, supervisor.name, "unlock"))[0] == 303
    user = db_user(runtime, supervisor.name)
    assert user.locked_until is None and user.failed_logins == 0
    # reset two-factor: secret, recovery codes and sessions gone; enrolment at next login
    open_session(runtime, supervisor.name)
    assert (await user_action(client, csrf, supervisor.name, "reset-2fa"))[0] == 303
    user = db_user(runtime, supervisor.name)
    assert user.totp_secret is None and user.totp_enrolled_at is None
    assert user.recovery_codes == [] and session_count(runtime, supervisor.name) == 0
    page = await client.get("/users?done=reset-2fa&name=sam")
    assert "Two-factor authentication of sam reset" in await page.text()
    # unknown action or user
    assert (await user_action(client, csrf, supervisor.name, "explode"))[0] == 400
    assert (await user_action(client, csrf, "nobody", "unlock"))[0] == 404
    client.session.cookie_jar.clear()
    resp = await post_password(client, supervisor.name, supervisor.password)
    assert resp.headers["Location"] == "/login/enrol"


async def test_last_enabled_admin_is_kept(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    csrf = await fresh_login(client, runtime, admin)
    for action, extra in (("disable", {}), ("role", {"role": "supervisor"})):
        status, body = await user_action(client, csrf, admin.name, action, **extra)
        assert status == 409
        assert "last enabled admin" in body
    # a disabled admin does not count
    with runtime.sessions() as s, s.begin():
        accounts.create_user(s, "bianca", "admin", PASSWORD)
        accounts.set_disabled(s, "bianca", True)
    assert (await user_action(client, csrf, admin.name, "disable"))[0] == 409
    assert (await user_action(client, csrf, "bianca", "enable"))[0] == 303
    assert (await user_action(client, csrf, admin.name, "role", role="viewer"))[0] == 303
    assert db_user(runtime, admin.name).role == "viewer"
    # the role is effective at once: alice is no admin anymore
    assert (await client.get("/users")).status == 403


def token_ids(page: str) -> dict[str, int]:
    return {
        name: int(token_id)
        for token_id, name in re.findall(r'data-token-id="(\d+)" data-token-name="([^"]*)"', page)
    }


async def test_tokens_create_list_revoke(
    client: TestClient, runtime: Runtime, admin: Account, supervisor: Account
) -> None:
    csrf = await fresh_login(client, runtime, supervisor)
    page = await client.get("/tokens")
    assert "No API tokens yet." in await page.text()
    resp = await client.post("/tokens", data={"_csrf": csrf, "name": "crm sync"})
    assert resp.status == 200
    text = await resp.text()
    token = element_text(text, "new-token")
    assert token.startswith("vc_")
    # shown once: the list shows only its start
    listing = await (await client.get("/tokens")).text()
    assert token not in listing and token[:10] in listing
    assert 'id="new-token"' not in listing
    ids = token_ids(listing)
    assert list(ids) == ["crm sync"]

    headers = {"Authorization": f"Bearer {token}"}
    resp = await client.get("/api/v1/anything", headers=headers)
    assert resp.status == 404  # authenticated: the path simply does not exist
    resp = await client.post(
        f"/tokens/{ids['crm sync']}/revoke", data={"_csrf": csrf}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/tokens"
    resp = await client.get("/api/v1/anything", headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    listing = await (await client.get("/tokens")).text()
    assert 'data-revoked="yes"' in listing

    resp = await client.post("/tokens", data={"_csrf": csrf, "name": "  "})
    assert resp.status == 400
    assert "token name" in element_text(await resp.text(), "tokens-error")


async def test_admin_sees_and_revokes_every_token(
    client: TestClient, runtime: Runtime, admin: Account, supervisor: Account, viewer: Account
) -> None:
    admin_headers = api_headers(runtime, admin)
    supervisor_headers = api_headers(runtime, supervisor)
    with runtime.sessions() as s:
        ids = {owner: t.id for t, owner in accounts.list_api_tokens(s) if owner != viewer.name}
    # a viewer sees none of them and cannot revoke them (404, as if absent)
    csrf = await fresh_login(client, runtime, viewer)
    page = await (await client.get("/tokens")).text()
    assert token_ids(page) == {}
    resp = await client.post(f"/tokens/{ids[admin.name]}/revoke", data={"_csrf": csrf})
    assert resp.status == 404
    assert (await client.get("/api/v1/x", headers=admin_headers)).status == 404
    # a viewer can have tokens of their own
    resp = await client.post("/tokens", data={"_csrf": csrf, "name": "report export"})
    assert element_text(await resp.text(), "new-token").startswith("vc_")
    client.session.cookie_jar.clear()

    csrf = await fresh_login(client, runtime, admin)
    page = await (await client.get("/tokens")).text()
    assert 'data-owner="sam"' in page and 'data-owner="victor"' in page
    assert 'data-field="owner"' in page
    resp = await client.post(
        f"/tokens/{ids[supervisor.name]}/revoke", data={"_csrf": csrf}, allow_redirects=False
    )
    assert resp.status == 303
    assert (await client.get("/api/v1/x", headers=supervisor_headers)).status == 401
    with runtime.sessions() as s:
        assert s.get(ApiToken, ids[supervisor.name]).revoked_at is not None  # type: ignore[union-attr]
    assert (await client.post("/tokens/999/revoke", data={"_csrf": csrf})).status == 404


async def test_disabled_user_tokens_are_refused(
    client: TestClient, runtime: Runtime, admin: Account, supervisor: Account
) -> None:
    headers = api_headers(runtime, supervisor)
    assert (await client.get("/api/v1/x", headers=headers)).status == 404
    with runtime.sessions() as s, s.begin():
        accounts.set_disabled(s, supervisor.name, True)
    assert (await client.get("/api/v1/x", headers=headers)).status == 401


async def test_users_page_in_french(client: TestClient, runtime: Runtime, admin: Account) -> None:
    await fresh_login(client, runtime, admin)
    page = await client.get("/users", headers={"Accept-Language": "fr"})
    text = await page.text()
    assert "Utilisateurs" in text and "administrateur" in text and "Nouvel utilisateur" in text
