"""Console and API actions in the proof journal: ``web.action`` (who asked what, the answer),
``user.changed`` written inside the handler with the user as actor, ``web.login``.

Decision tested here: a refused request of a logged-in user (403: role too low, 409: the
data's state forbids it) IS journaled, ``outcome`` ``refused``; malformed input (400), a
CSRF failure and GETs are not.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from voicecast.app import Runtime
from voicecast.clock import ManualClock
from voicecast.journal import kinds
from voicecast.journal.chain import ChainEntry
from voicecast.journal.store import acting_as, current_actor, iter_entries, verify
from voicecast.web import server
from voicecast.web.server import action_target, db_call, user_actor

from .auth_helpers import post_code, post_password
from .conftest import Account, api_headers, login_as

# fictional numbers (ARCEP drama range 01 99 00)
NUMBER = "+33 1 99 00 12 34"
DIGITS = "199001234"


def entries(runtime: Runtime, *kind: str) -> list[ChainEntry]:
    with runtime.sessions() as s:
        return list(iter_entries(s, kinds=kind or None))


def data(entry: ChainEntry) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(entry.data)
    return loaded


def chain_ok(runtime: Runtime) -> bool:
    with runtime.sessions() as s:
        return verify(s).ok


def assert_no_number(runtime: Runtime) -> None:
    """No journal entry's data holds the test number, in any spelling."""
    for entry in entries(runtime):
        flat = re.sub(r"\D", "", entry.data)
        assert DIGITS not in flat, entry


# --- console ------------------------------------------------------------------------------


async def test_console_form_post_is_journaled_with_the_user(
    client: TestClient, runtime: Runtime, admin: Account, viewer: Account
) -> None:
    csrf = await login_as(client, runtime, admin)
    resp = await client.post(
        f"/users/{viewer.name}",
        data={"_csrf": csrf, "action": "role", "role": "supervisor"},
        allow_redirects=False,
    )
    assert resp.status == 303
    [action] = entries(runtime, kinds.WEB_ACTION)
    assert action.actor == "user:alice"
    assert data(action) == {
        "method": "POST",
        "route": "/users/{name}",
        "target": {"name": "victor"},
        "status": 303,
        "outcome": "done",
        "channel": "console",
        "via": "session",
    }
    # the domain entry, written by the handler in its db_call thread, names the user too
    changed = entries(runtime, kinds.USER_CHANGED)[-1]
    assert changed.actor == "user:alice"
    assert data(changed) == {
        "user": "victor",
        "action": "role_changed",
        "role": "supervisor",
        "previous_role": "viewer",
    }
    assert changed.seq < action.seq  # the change first, then the request record
    assert chain_ok(runtime)


async def test_console_optout_post_never_journals_the_number(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    resp = await client.post(
        "/optouts", data={"_csrf": csrf, "number": NUMBER, "region": "FR", "note": ""}
    )
    assert resp.status == 200
    [action] = entries(runtime, kinds.WEB_ACTION)
    assert action.actor == "user:sam"
    assert data(action)["route"] == "/optouts"
    assert data(action)["target"] == {}
    assert_no_number(runtime)


async def test_get_requests_are_not_journaled(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    await login_as(client, runtime, admin)
    for path in ("/users", "/tokens", "/campaigns", "/optouts"):
        resp = await client.get(path)
        assert resp.status == 200, path
    resp = await client.get("/api/v1/users", headers=api_headers(runtime, admin))
    assert resp.status == 200
    assert entries(runtime, kinds.WEB_ACTION) == []


async def test_viewer_refused_403_is_journaled_as_refused(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    csrf = await login_as(client, runtime, viewer)
    resp = await client.post(
        "/users", data={"_csrf": csrf, "name": "mallory", "role": "admin", "password": "x" * 20}
    )
    assert resp.status == 403
    [action] = entries(runtime, kinds.WEB_ACTION)
    assert action.actor == "user:victor"
    assert data(action)["outcome"] == "refused"
    assert data(action)["code"] == "forbidden"
    assert data(action)["status"] == 403
    assert data(action)["route"] == "/users"
    assert "x" * 20 not in action.data  # never the body (a password here)
    assert entries(runtime, kinds.USER_CHANGED)[-1].actor != "user:victor"


async def test_business_refusal_409_is_journaled(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    csrf = await login_as(client, runtime, admin)
    resp = await client.post(f"/users/{admin.name}", data={"_csrf": csrf, "action": "disable"})
    assert resp.status == 409  # the last enabled admin
    [action] = entries(runtime, kinds.WEB_ACTION)
    assert (data(action)["outcome"], data(action)["code"]) == ("refused", "conflict")
    assert [data(e)["action"] for e in entries(runtime, kinds.USER_CHANGED)] == ["created"]


async def test_bad_input_and_csrf_failure_are_not_journaled(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    csrf = await login_as(client, runtime, admin)
    resp = await client.post(f"/users/{admin.name}", data={"_csrf": csrf, "action": "explode"})
    assert resp.status == 400
    resp = await client.post(f"/users/{admin.name}", data={"_csrf": "forged", "action": "unlock"})
    assert resp.status == 403
    assert entries(runtime, kinds.WEB_ACTION) == []


# --- API ----------------------------------------------------------------------------------


async def test_api_call_is_journaled_with_the_token_label(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    headers = api_headers(runtime, viewer)
    resp = await client.post("/api/v1/tokens", json={"name": "crm sync"}, headers=headers)
    assert resp.status == 201
    created = await resp.json()
    resp = await client.delete(f"/api/v1/tokens/{created['id']}", headers=headers)
    assert resp.status == 200
    create, revoke = entries(runtime, kinds.WEB_ACTION)
    assert create.actor == revoke.actor == "user:victor"
    used = data(create)["token"]
    assert used["name"] == "tests" and used["prefix"] == headers["Authorization"][7:17]
    assert data(create) == {
        "method": "POST",
        "route": "/api/v1/tokens",
        "target": {},
        "status": 201,
        "outcome": "done",
        "channel": "api",
        "via": "token",
        "token": used,
    }
    assert data(revoke)["route"] == "/api/v1/tokens/{id}"
    assert data(revoke)["target"] == {"id": created["id"]}
    changes = [(e.actor, data(e)["action"]) for e in entries(runtime, kinds.USER_CHANGED)]
    assert changes[-2:] == [("user:victor", "token_created"), ("user:victor", "token_revoked")]
    assert headers["Authorization"][7:] not in json.dumps([e.data for e in entries(runtime)])
    assert created["token"] not in json.dumps([e.data for e in entries(runtime)])


async def test_api_optout_and_refusal_without_number(
    client: TestClient, runtime: Runtime, supervisor: Account, viewer: Account
) -> None:
    body = {"number": NUMBER, "region": "FR"}
    resp = await client.post("/api/v1/optouts", json=body, headers=api_headers(runtime, supervisor))
    assert resp.status in (200, 201)
    resp = await client.post("/api/v1/optouts", json=body, headers=api_headers(runtime, viewer))
    assert resp.status == 403
    done, refused = entries(runtime, kinds.WEB_ACTION)
    assert (done.actor, data(done)["outcome"]) == ("user:sam", "done")
    assert (refused.actor, data(refused)["outcome"]) == ("user:victor", "refused")
    assert data(refused)["channel"] == "api"
    assert_no_number(runtime)


async def test_number_in_the_route_is_dropped(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    # the only route with a number in its path is a GET; a made-up POST under a
    # number-looking name must still not reach the journal
    csrf = await login_as(client, runtime, viewer)
    resp = await client.post(f"/users/{DIGITS}0", data={"_csrf": csrf, "action": "unlock"})
    assert resp.status == 403
    [action] = entries(runtime, kinds.WEB_ACTION)
    assert data(action)["target"] == {} and data(action)["dropped"] == ["name"]
    assert_no_number(runtime)


def test_action_target_keeps_names_and_ids_drops_numbers() -> None:
    assert action_target({"name": "spring", "id": "42"}) == ({"id": 42, "name": "spring"}, [])
    assert action_target({"upload_id": "0123456789abcdef0123456789abcdef"}) == (
        {"upload_id": "0123456789abcdef0123456789abcdef"},
        [],
    )
    for value in ("0199001234", "+33 1 99 00 12 34", "01.99.00.12.34", "(202) 555-0123"):
        assert action_target({"name": value}) == ({}, ["name"]), value
    # names chosen by staff stay whole, dates included (campaign.changed names them too)
    for name in ("demo-20261129-211234", "promo-2026-11", "list 2026"):
        assert action_target({"name": name}) == ({"name": name}, []), name
    assert action_target({"number": "12"}) == ({}, ["number"])
    assert action_target({"id": "0199001234"}) == ({}, ["id"])
    assert action_target({"name": "spring-2026"}) == ({"name": "spring-2026"}, [])
    assert user_actor("alice") == "user:alice"
    assert user_actor("a\nb") == "user:a?b"


async def test_a_failed_journal_write_keeps_the_answer(
    client: TestClient,
    runtime: Runtime,
    admin: Account,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    csrf = await login_as(client, runtime, admin)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise LookupError("journal_head row missing")

    monkeypatch.setattr(server, "append", broken)
    with caplog.at_level(logging.ERROR, logger="voicecast.web.server"):
        resp = await client.post(
            f"/users/{admin.name}", data={"_csrf": csrf, "action": "unlock"}, allow_redirects=False
        )
    assert resp.status == 303  # the change was committed: its answer stands
    assert "could not journal POST /users/{name}" in caplog.text
    assert entries(runtime, kinds.WEB_ACTION) == []
    assert data(entries(runtime, kinds.USER_CHANGED)[-1])["action"] == "unlocked"


async def test_db_call_runs_in_the_callers_actor(web_app: web.Application) -> None:
    with acting_as("user:alice"):
        assert await db_call(web_app, lambda _s: current_actor()) == "user:alice"
    assert await db_call(web_app, lambda _s: current_actor()) == "system"


# --- logins -------------------------------------------------------------------------------


async def test_login_logout_and_lockout_are_web_login_entries(
    client: TestClient, runtime: Runtime, clock: ManualClock, admin: Account
) -> None:
    resp = await post_password(client, admin.name, admin.password)
    assert resp.status == 303
    resp = await post_code(client, admin.code(clock.now()))
    assert resp.status == 303
    page = await client.get("/users")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', await page.text())
    assert csrf is not None
    resp = await client.post("/logout", data={"_csrf": csrf.group(1)}, allow_redirects=False)
    assert resp.status == 303
    # an unknown name is never journaled (it may be a mistyped password)
    resp = await post_password(client, "correct horse", "whatever")
    assert resp.status == 401
    max_failed = runtime.settings.web.max_failed_logins
    for _ in range(max_failed):
        await post_password(client, admin.name, "wrong password " + "x" * 8)
    logins = entries(runtime, kinds.WEB_LOGIN)
    assert [(e.actor, data(e)["outcome"]) for e in logins] == [
        ("user:alice", "success"),
        ("user:alice", "logout"),
        ("system", "locked"),
    ]
    assert data(logins[0]) == {"user": "alice", "outcome": "success", "method": "totp"}
    lockout = timedelta(minutes=runtime.settings.web.lockout_minutes)
    assert data(logins[2]) == {
        "user": "alice",
        "outcome": "locked",
        "until": (clock.now() + lockout).isoformat(),
    }
    everything = json.dumps([e.data for e in entries(runtime)])
    assert admin.password not in everything and "correct horse" not in everything
    assert entries(runtime, kinds.WEB_ACTION) == []  # login steps are not web actions
    assert chain_ok(runtime)
