"""REST API behaviour: contacts import, campaigns and their control, status and results,
opt-outs, consents, tokens, webhooks, pagination, errors, CSRF. Fictional numbers only."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Awaitable, Callable
from typing import Any

import openpyxl
import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient

from voicecast.app import Runtime
from voicecast.clock import ManualClock
from voicecast.web.server import WebContext, make_app

from .api_helpers import CAMPAIGN, CSV_GOOD, CSV_WITH_REJECTS, create_campaign, import_csv
from .conftest import Account, api_headers, login_as

Headers = dict[str, str]


@pytest.fixture
def sup(runtime: Runtime, supervisor: Account) -> Headers:
    return api_headers(runtime, supervisor)


@pytest.fixture
def adm(runtime: Runtime, admin: Account) -> Headers:
    return api_headers(runtime, admin)


async def error_of(resp: Any, status: int) -> dict[str, str]:
    body = await resp.json()
    assert resp.status == status, body
    return dict(body["error"])


# --------------------------------------------------------------------------- contacts import


async def test_import_good_file(client: TestClient, sup: Headers) -> None:
    body = await import_csv(client, sup)
    assert body["list"] == "clients"
    assert (body["imported"], body["updated"], body["duplicates"], body["rejected"]) == (3, 0, 0, 0)
    assert body["phone_column"] == "Téléphone"
    assert body["field_columns"] == {"first_name": "Prénom", "last_name": "Nom"}
    assert body["ignored_columns"] == ["Commentaire"]
    resp = await client.get("/api/v1/lists/clients/contacts", headers=sup)
    page = await resp.json()
    assert [c["number"] for c in page["items"]] == ["+33199000100", "+33261910101", "+33353010102"]
    assert page["items"][0]["fields"] == {"first_name": "Camille", "last_name": "Exemple"}
    # importing again merges: nothing new
    again = await import_csv(client, sup)
    assert (again["imported"], again["duplicates"]) == (0, 3)
    resp = await client.get("/api/v1/lists/clients", headers=sup)
    assert (await resp.json())["contacts"] == 3


async def test_import_reports_rejects_with_line_and_reason(
    client: TestClient, sup: Headers
) -> None:
    body = await import_csv(client, sup, "mixed", CSV_WITH_REJECTS)
    assert (body["imported"], body["duplicates"], body["rejected"]) == (2, 1, 2)
    lines = {r["line"]: r["reason"] for r in body["rejects"]}
    assert set(lines) == {3, 6}
    assert lines[3].startswith("phone:") and lines[6].startswith("phone:")


async def test_import_failure_leaves_nothing(client: TestClient, sup: Headers) -> None:
    resp = await client.post(
        "/api/v1/lists/clients/contacts",
        data=b"name,city\nCamille,Metz\n",
        headers={**sup, "Content-Type": "text/csv"},
    )
    err = await error_of(resp, 400)
    assert err["code"] == "invalid"
    assert "/tmp" not in err["message"] and "voicecast-upload" not in err["message"]
    resp = await client.get("/api/v1/lists/clients", headers=sup)
    assert resp.status == 404
    # a list name too long for the store: refused in the transaction, nothing kept
    long_name = "x" * 201
    resp = await client.post(
        f"/api/v1/lists/{long_name}/contacts",
        data=CSV_GOOD.encode(),
        headers={**sup, "Content-Type": "text/csv"},
    )
    assert resp.status == 400
    resp = await client.get("/api/v1/lists", headers=sup)
    assert (await resp.json())["total"] == 0


async def test_import_multipart_xlsx_with_mapping(client: TestClient, sup: Headers) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Numéro fixe", "Given", "Other"])
    sheet.append(["0199000400", "Zoé", "x"])
    sheet.append(["0199000401", "Yann", "y"])
    buf = io.BytesIO()
    book.save(buf)
    form = FormData()
    form.add_field("file", buf.getvalue(), filename="clients.xlsx")
    resp = await client.post(
        "/api/v1/lists/pros/contacts?phone_column=Num%C3%A9ro%20fixe&first_name_column=Given",
        data=form,
        headers=sup,
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["imported"], body["encoding"]) == (2, "xlsx")
    assert body["field_columns"] == {"first_name": "Given"}


async def test_import_refuses_other_media_types_and_empty_bodies(
    client: TestClient, sup: Headers
) -> None:
    resp = await client.post(
        "/api/v1/lists/clients/contacts", json={"phone": "+33199000100"}, headers=sup
    )
    assert (await error_of(resp, 415))["code"] == "unsupported_media_type"
    resp = await client.post(
        "/api/v1/lists/clients/contacts", data=b"", headers={**sup, "Content-Type": "text/csv"}
    )
    assert (await error_of(resp, 400))["message"].startswith("body:")
    resp = await client.post(
        "/api/v1/lists/clients/contacts?default_region=ZZ",
        data=CSV_GOOD.encode(),
        headers={**sup, "Content-Type": "text/csv"},
    )
    assert (await error_of(resp, 400))["message"].startswith("default_region:")


async def test_payload_too_large_is_413(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
    runtime: Runtime,
    clock: ManualClock,
    supervisor: Account,
) -> None:
    settings = runtime.settings.model_copy(
        update={"web": runtime.settings.web.model_copy(update={"max_upload_mb": 1})}
    )
    small = dataclasses.replace(runtime, settings=settings)
    client = await aiohttp_client(make_app(WebContext(small, clock)))
    resp = await client.post(
        "/api/v1/lists/big/contacts",
        data=io.BytesIO(b"phone\n" + b"+33199000100\n" * 100_000),
        headers={**api_headers(runtime, supervisor), "Content-Type": "text/csv"},
    )
    assert (await error_of(resp, 413))["code"] == "payload_too_large"


# --------------------------------------------------------------------------- campaigns


async def test_create_campaign_and_validation(client: TestClient, sup: Headers) -> None:
    created = await create_campaign(client, sup)
    assert created["status"] == "draft"
    assert created["caller_id"] == "+33162000000"
    assert created["declaration"]["legal_basis"] == "contract"
    assert created["start_problems"] == []
    assert created["retries"] == 1 and created["max_channels"] == 10  # [dialer] default
    resp = await client.post("/api/v1/campaigns", json=CAMPAIGN, headers=sup)
    assert (await error_of(resp, 409))["code"] == "conflict"
    cases = [
        ({**CAMPAIGN, "name": "a", "caller_id": "hello"}, "caller ID"),
        ({**CAMPAIGN, "name": "b", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({**CAMPAIGN, "name": "c", "cps": 0}, "cps:"),
        ({**CAMPAIGN, "name": "d", "purpose": "gossip"}, "purpose:"),
        ({**CAMPAIGN, "name": "e", "list": "nobody"}, "list: no contact list"),
        ({**CAMPAIGN, "name": "f", "starts_at": "2026-01-01T10:00:00"}, "starts_at:"),
        ({**CAMPAIGN, "name": "g\x00"}, "name: NUL"),
        ({k: v for k, v in CAMPAIGN.items() if k != "caller_id"}, "caller_id: Field required"),
    ]
    for payload, message in cases:
        resp = await client.post("/api/v1/campaigns", json=payload, headers=sup)
        err = await error_of(resp, 400)
        assert err["code"] == "invalid"
        assert message in err["message"], (payload, err)
    resp = await client.post(
        "/api/v1/campaigns", data=b"{not json", headers={**sup, "Content-Type": "application/json"}
    )
    assert (await error_of(resp, 400))["message"].startswith("body: invalid JSON")
    resp = await client.post(
        "/api/v1/campaigns",
        data=b'{"cps": NaN}',
        headers={**sup, "Content-Type": "application/json"},
    )
    assert (await error_of(resp, 400))["message"].startswith("body: invalid JSON")
    resp = await client.post("/api/v1/campaigns", data=b"name=x", headers=sup)
    assert (await error_of(resp, 415))["code"] == "unsupported_media_type"
    resp = await client.get("/api/v1/campaigns", headers=sup)
    assert [c["name"] for c in (await resp.json())["items"]] == ["spring"]


async def test_campaign_lifecycle(client: TestClient, sup: Headers) -> None:
    await create_campaign(client, sup)

    async def act(action: str, status: int = 200) -> dict[str, Any]:
        resp = await client.post(f"/api/v1/campaigns/spring/{action}", headers=sup)
        body = await resp.json()
        assert resp.status == status, body
        return dict(body)

    assert (await act("resume", 409))["error"]["message"].endswith("nothing to resume")
    refused = (await act("pause", 409))["error"]  # a draft never started: nothing to pause
    assert refused["code"] == "conflict" and "never started" in refused["message"]
    assert (await act("resume", 409))["error"]["message"].endswith("nothing to resume")
    assert await act("start") == {"campaign": "spring", "status": "running", "queued": 3}
    status = await (await client.get("/api/v1/campaigns/spring/status", headers=sup)).json()
    assert (status["status"], status["contacts"], status["pending"]) == ("running", 3, 3)
    assert await act("pause") == {"campaign": "spring", "status": "paused", "queued": None}
    assert await act("resume") == {"campaign": "spring", "status": "running", "queued": 0}
    assert (await act("stop"))["status"] == "stopped"
    assert "already stopped" in (await act("pause", 409))["error"]["message"]
    detail = await (await client.get("/api/v1/campaigns/spring", headers=sup)).json()
    assert detail["status"] == "stopped" and detail["progress"]["pending"] == 3
    resp = await client.post("/api/v1/campaigns/nothing/start", headers=sup)
    assert (await error_of(resp, 404))["code"] == "not_found"


async def test_start_refused_by_the_gate_is_409_with_every_problem(
    client: TestClient, sup: Headers
) -> None:
    created = await create_campaign(client, sup, purpose=None, legal_basis=None, sender=None)
    codes = {p["code"] for p in created["start_problems"]}
    assert codes and all(p["message"] for p in created["start_problems"])
    check = await (await client.get("/api/v1/campaigns/spring/check", headers=sup)).json()
    assert check["may_start"] is False and {p["code"] for p in check["problems"]} == codes
    resp = await client.post("/api/v1/campaigns/spring/start", headers=sup)
    err = await error_of(resp, 409)
    assert "cannot start" in err["message"] and "purpose" in err["message"]
    status = await (await client.get("/api/v1/campaigns/spring/status", headers=sup)).json()
    assert (status["status"], status["contacts"]) == ("draft", 0)


async def test_check_dry_run(client: TestClient, sup: Headers) -> None:
    await create_campaign(client, sup)
    resp = await client.get("/api/v1/campaigns/spring/check", headers=sup)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["may_start"] is True
    assert body["would_call_now"] + sum(d["count"] for d in body["deferred"].values()) == 3
    resp = await client.get(
        "/api/v1/campaigns/spring/check?at=2026-11-25T11:00:00%2B01:00", headers=sup
    )
    assert (await resp.json())["at"] == "2026-11-25T10:00:00+00:00"
    resp = await client.get("/api/v1/campaigns/spring/check?at=2026-11-25T11:00", headers=sup)
    assert (await error_of(resp, 400))["message"].startswith("at:")
    resp = await client.get("/api/v1/campaigns/spring/check?at=0001-01-01T00:00Z", headers=sup)
    assert (await error_of(resp, 400))["message"].startswith("at:")


async def test_results_pagination(client: TestClient, sup: Headers) -> None:
    await create_campaign(client, sup)
    await client.post("/api/v1/campaigns/spring/start", headers=sup)
    resp = await client.get("/api/v1/campaigns/spring/results?limit=2", headers=sup)
    first = await resp.json()
    assert (first["total"], first["limit"], first["offset"]) == (3, 2, 0)
    assert [r["number"] for r in first["items"]] == ["+33199000100", "+33261910101"]
    assert first["items"][0]["first_name"] == "Camille"
    assert first["items"][0]["state"] == "pending" and first["items"][0]["outcome"] is None
    assert first["next"] == "/api/v1/campaigns/spring/results?limit=2&offset=2"
    second = await (await client.get(first["next"], headers=sup)).json()
    assert [r["number"] for r in second["items"]] == ["+33353010102"]
    assert second["next"] is None
    beyond = await (
        await client.get("/api/v1/campaigns/spring/results?offset=10", headers=sup)
    ).json()
    assert (beyond["items"], beyond["total"], beyond["next"]) == ([], 3, None)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999999999", "offset"),
        ("limit=5&limit=6", "limit"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_pagination_parameters(
    client: TestClient, sup: Headers, query: str, field: str
) -> None:
    resp = await client.get(f"/api/v1/campaigns?{query}", headers=sup)
    err = await error_of(resp, 400)
    assert err["code"] == "invalid"
    assert err["message"].startswith(f"{field}:"), err


async def test_lists_pagination(client: TestClient, sup: Headers) -> None:
    for name in ("c-list", "a-list", "b-list"):
        await import_csv(client, sup, name)
    page = await (await client.get("/api/v1/lists?limit=2&offset=1", headers=sup)).json()
    assert [i["name"] for i in page["items"]] == ["b-list", "c-list"]
    assert (page["total"], page["next"]) == (3, None)
    assert page["items"][0]["contacts"] == 3


# --------------------------------------------------------------------------- audio


async def test_audio_upload_and_list(client: TestClient, sup: Headers) -> None:
    from tones import tone_wav

    resp = await client.post(
        "/api/v1/audio?name=welcome",
        data=tone_wav(),
        headers={
            **sup,
            "Content-Type": "audio/wav",
            "Content-Disposition": 'attachment; filename="welcome.wav"',
        },
    )
    body = await resp.json()
    assert resp.status == 201, body
    assert body["name"] == "welcome" and 900 <= body["duration_ms"] <= 1100
    assert body["source_name"] == "welcome.wav"
    resp = await client.post(
        "/api/v1/audio?name=welcome", data=tone_wav(), headers={**sup, "Content-Type": "audio/wav"}
    )
    assert (await error_of(resp, 409))["code"] == "conflict"
    resp = await client.post(
        "/api/v1/audio?name=noise",
        data=b"this is not audio" * 10,
        headers={**sup, "Content-Type": "application/octet-stream"},
    )
    err = await error_of(resp, 400)
    assert err["message"].startswith("file:") and "voicecast-upload" not in err["message"]
    resp = await client.post(
        "/api/v1/audio?name=bad%20name",
        data=tone_wav(),
        headers={**sup, "Content-Type": "audio/wav"},
    )
    assert (await error_of(resp, 400))["message"].startswith("name:")
    page = await (await client.get("/api/v1/audio", headers=sup)).json()
    assert [a["name"] for a in page["items"]] == ["welcome"]


# --------------------------------------------------------------------------- opt-outs, consents


async def test_optout_add_and_lookup(client: TestClient, sup: Headers, runtime: Runtime) -> None:
    resp = await client.post(
        "/api/v1/optouts", json={"number": "01 99 00 01 00", "note": "by e-mail"}, headers=sup
    )
    first = await resp.json()
    assert resp.status == 200, first
    assert (first["number"], first["added"], first["source"]) == ("+33199000100", True, "api")
    resp = await client.post("/api/v1/optouts", json={"number": "+33199000100"}, headers=sup)
    assert (await resp.json())["added"] is False
    found = await (await client.get("/api/v1/optouts/+33199000100", headers=sup)).json()
    assert found["opted_out"] is True and found["source"] == "api"
    national = await (await client.get("/api/v1/optouts/0199000100", headers=sup)).json()
    assert national["opted_out"] is True
    other = await (await client.get("/api/v1/optouts/2025550123?region=US", headers=sup)).json()
    assert (other["number"], other["opted_out"]) == ("+12025550123", False)
    page = await (await client.get("/api/v1/optouts", headers=sup)).json()
    assert page["total"] == 1
    item = page["items"][0]
    assert len(item["hash"]) == 64 and "+33199000100" not in str(item)
    assert item["note"] == "by e-mail"
    resp = await client.get("/api/v1/optouts/hello", headers=sup)
    assert (await error_of(resp, 400))["message"].startswith("phone:")
    resp = await client.post("/api/v1/optouts", json={"number": "12"}, headers=sup)
    assert (await error_of(resp, 400))["code"] == "invalid"


async def test_consent_add_and_list(client: TestClient, sup: Headers) -> None:
    resp = await client.post(
        "/api/v1/consents",
        json={
            "number": "01 99 00 01 00",
            "purpose": "marketing",
            "source": "web",
            "proof": "form-2026-001",
            "wording": "v2",
            "at": "2026-01-10T09:30:00+01:00",
        },
        headers=sup,
    )
    record = await resp.json()
    assert resp.status == 201, record
    assert (record["number"], record["status"], record["source"]) == (
        "+33199000100",
        "granted",
        "web",
    )
    assert record["recorded_at"].startswith("2026-01-10T08:30:00")
    resp = await client.post(
        "/api/v1/consents",
        json={"number": "+33199000100", "purpose": "marketing", "source": "web"},
        headers=sup,
    )
    assert (await error_of(resp, 400))["message"].startswith("proof:")
    history = await (await client.get("/api/v1/consents?number=%2B33199000100", headers=sup)).json()
    assert history["in_force"] == {"marketing": "granted", "informational": None}
    assert [r["proof_ref"] for r in history["records"]] == ["form-2026-001"]
    resp = await client.post(
        "/api/v1/consents",
        json={
            "number": "+33199000100",
            "purpose": "marketing",
            "status": "withdrawn",
            "source": "phone",
        },
        headers=sup,
    )
    assert resp.status == 201
    history = await (await client.get("/api/v1/consents?number=0199000100", headers=sup)).json()
    assert history["in_force"]["marketing"] == "withdrawn" and len(history["records"]) == 2
    resp = await client.get("/api/v1/consents", headers=sup)
    assert (await error_of(resp, 400))["message"] == "number: Field required"


# --------------------------------------------------------------------------- users, tokens


async def test_create_user(client: TestClient, adm: Headers) -> None:
    resp = await client.post(
        "/api/v1/users",
        json={"name": "nora", "role": "supervisor", "password": "a long enough passphrase"},
        headers=adm,
    )
    user = await resp.json()
    assert resp.status == 201, user
    assert (user["role"], user["two_factor_enrolled"]) == ("supervisor", False)
    assert "password" not in str(user)
    resp = await client.post(
        "/api/v1/users",
        json={"name": "nora", "role": "viewer", "password": "another long passphrase"},
        headers=adm,
    )
    assert (await error_of(resp, 409))["code"] == "conflict"
    resp = await client.post(
        "/api/v1/users", json={"name": "olga", "role": "viewer", "password": "short"}, headers=adm
    )
    assert (await error_of(resp, 400))["message"].startswith("password:")
    resp = await client.post(
        "/api/v1/users",
        json={"name": "olga", "role": "owner", "password": "a long enough passphrase"},
        headers=adm,
    )
    assert (await error_of(resp, 400))["message"].startswith("role:")
    names = [
        u["name"] for u in (await (await client.get("/api/v1/users", headers=adm)).json())["items"]
    ]
    assert names == ["alice", "nora"]


async def test_token_create_use_and_revoke(
    client: TestClient, runtime: Runtime, viewer: Account, admin: Account
) -> None:
    mine = api_headers(runtime, viewer)
    resp = await client.post("/api/v1/tokens", json={"name": "crm sync"}, headers=mine)
    created = await resp.json()
    assert resp.status == 201, created
    token = created["token"]
    assert token.startswith("vc_") and created["prefix"] == token[:10]
    fresh = {"Authorization": f"Bearer {token}"}
    listed = await (await client.get("/api/v1/tokens", headers=fresh)).json()
    assert sorted(t["name"] for t in listed["items"]) == ["crm sync", "tests"]
    assert all("token" not in t for t in listed["items"])
    # another user (not admin) cannot revoke it; an admin can revoke anyone's
    other = api_headers(runtime, admin)
    resp = await client.delete(f"/api/v1/tokens/{created['id']}", headers=fresh)
    revoked = await resp.json()
    assert resp.status == 200 and revoked["revoked_at"] is not None
    resp = await client.get("/api/v1/tokens", headers=fresh)
    assert (await error_of(resp, 401))["code"] == "unauthenticated"
    second = await (
        await client.post("/api/v1/tokens", json={"name": "second"}, headers=mine)
    ).json()
    resp = await client.delete(f"/api/v1/tokens/{second['id']}", headers=other)
    assert resp.status == 200
    resp = await client.delete("/api/v1/tokens/999999", headers=mine)
    assert (await error_of(resp, 404))["code"] == "not_found"
    resp = await client.delete("/api/v1/tokens/abc", headers=mine)
    assert (await error_of(resp, 400))["message"].startswith("id:")


async def test_token_of_another_user_is_not_found(
    client: TestClient, runtime: Runtime, viewer: Account, supervisor: Account
) -> None:
    theirs = await (
        await client.post(
            "/api/v1/tokens", json={"name": "x"}, headers=api_headers(runtime, supervisor)
        )
    ).json()
    resp = await client.delete(
        f"/api/v1/tokens/{theirs['id']}", headers=api_headers(runtime, viewer)
    )
    assert (await error_of(resp, 404))["code"] == "not_found"


# --------------------------------------------------------------------------- webhooks


async def test_webhook_create_list_delete(client: TestClient, adm: Headers) -> None:
    resp = await client.post(
        "/api/v1/webhooks",
        json={
            "url": "https://crm.example.test/voicecast",
            "events": ["attempt.completed", "optout.created"],
            "description": "CRM",
        },
        headers=adm,
    )
    hook = await resp.json()
    assert resp.status == 201, hook
    assert len(hook["secret"]) >= 32 and hook["enabled"] is True
    listed = await (await client.get("/api/v1/webhooks", headers=adm)).json()
    assert [h["url"] for h in listed["items"]] == ["https://crm.example.test/voicecast"]
    assert "secret" not in listed["items"][0]
    deliveries = await (
        await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=adm)
    ).json()
    assert deliveries["total"] == 0
    for payload, field in (
        ({"url": "ftp://x.test/", "events": ["optout.created"]}, "url"),
        ({"url": "https://x.test/", "events": []}, "events"),
        ({"url": "https://x.test/", "events": ["call.made"]}, "events.0"),
    ):
        resp = await client.post("/api/v1/webhooks", json=payload, headers=adm)
        assert (await error_of(resp, 400))["message"].startswith(f"{field}"), payload
    resp = await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=adm)
    assert resp.status == 204
    resp = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=adm)
    assert (await error_of(resp, 404))["code"] == "not_found"
    resp = await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=adm)
    assert resp.status == 404


# --------------------------------------------------------------------------- CSRF


async def test_session_cookie_post_needs_the_csrf_header(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    resp = await client.post("/api/v1/optouts", json={"number": "+33199000100"})
    assert (await error_of(resp, 403))["code"] == "csrf_failed"
    resp = await client.get("/api/v1/optouts")  # reads need no CSRF token
    assert resp.status == 200
    resp = await client.post(
        "/api/v1/optouts", json={"number": "+33199000100"}, headers={"X-CSRF-Token": csrf}
    )
    assert resp.status == 200, await resp.text()


async def test_bearer_token_needs_no_csrf(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    resp = await client.post(
        "/api/v1/optouts",
        json={"number": "+33199000101"},
        headers=api_headers(runtime, supervisor),
    )
    assert resp.status == 200, await resp.text()


async def test_session_cookie_multipart_upload_with_the_csrf_field(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    """A console form posting the file with its ``_csrf`` field (read by the CSRF check
    first) reaches the import."""
    csrf = await login_as(client, runtime, supervisor)
    form = FormData()
    form.add_field("_csrf", csrf)
    form.add_field("file", CSV_GOOD.encode(), filename="clients.csv", content_type="text/csv")
    resp = await client.post("/api/v1/lists/clients/contacts", data=form)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["imported"] == 3
    form = FormData(default_to_multipart=True)
    form.add_field("_csrf", csrf)
    form.add_field("other", "x")
    resp = await client.post("/api/v1/lists/clients/contacts", data=form)
    assert (await error_of(resp, 400))["message"].startswith("file:")


# --------------------------------------------------------------------------- input hygiene


async def test_hostile_inputs_are_400(client: TestClient, sup: Headers, adm: Headers) -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": deep}
    resp = await client.post("/api/v1/campaigns", json={**CAMPAIGN, "scenario": deep}, headers=sup)
    assert (await error_of(resp, 400))["message"].startswith("body: nested deeper")
    resp = await client.post(
        "/api/v1/optouts",
        data=b'{"number": "\\ud800"}',
        headers={**sup, "Content-Type": "application/json"},
    )
    assert (await error_of(resp, 400))["message"].startswith("number: not valid Unicode")
    resp = await client.get("/api/v1/lists/a%00b", headers=sup)  # refused before routing
    assert (await error_of(resp, 400))["message"].startswith("NUL characters are not allowed")
    resp = await client.delete(f"/api/v1/webhooks/{2**64}", headers=adm)
    assert (await error_of(resp, 400))["message"].startswith("id:")
    resp = await client.post("/api/v1/campaigns", json=[1, 2], headers=sup)
    assert (await error_of(resp, 400))["code"] == "invalid"
    resp = await client.request("PUT", "/api/v1/campaigns", headers=sup)
    assert resp.status == 405 and "GET" in resp.headers["Allow"]


async def test_deeply_nested_scenario_text_is_400(client: TestClient, sup: Headers) -> None:
    await import_csv(client, sup)
    for scenario in (
        "a: " + "[" * 5000 + "]" * 5000,
        '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    ):
        resp = await client.post(
            "/api/v1/campaigns", json={**CAMPAIGN, "scenario": scenario}, headers=sup
        )
        err = await error_of(resp, 400)
        assert err["code"] == "invalid"
        assert "the document is nested too deeply (more than 32 levels)" in err["message"]
    resp = await client.get("/api/v1/campaigns", headers=sup)
    assert (await resp.json())["items"] == []


async def test_enum_errors_name_the_value(client: TestClient, sup: Headers) -> None:
    resp = await client.post(
        "/api/v1/lists/zz/contacts?default_region=ZZ",
        data=CSV_GOOD.encode("utf-8"),
        headers={**sup, "Content-Type": "text/csv"},
    )
    err = await error_of(resp, 400)
    assert err["message"].startswith("default_region: 'ZZ': not a region code (ISO 3166-1")
    assert "{" not in err["message"]
    resp = await client.post(
        "/api/v1/campaigns", json={**CAMPAIGN, "deliver_to": "{hint} all"}, headers=sup
    )
    err = await error_of(resp, 400)
    assert "deliver_to: '{hint} all': expected one of both, humans, machines" in err["message"]


async def test_errors_have_a_stable_shape(client: TestClient, sup: Headers) -> None:
    resp = await client.get("/api/v1/campaigns/nothing", headers=sup)
    body = await resp.json()
    assert resp.status == 404
    assert body == {"error": {"code": "not_found", "message": body["error"]["message"]}}
    assert "nothing" in body["error"]["message"]


async def test_results_page_carries_its_contacts_attempts(
    client: TestClient, sup: Headers, runtime: Runtime
) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import select

    from voicecast.storage.models import CallAttempt, CampaignContact

    await create_campaign(client, sup)
    await client.post("/api/v1/campaigns/spring/start", headers=sup)
    with runtime.sessions() as s, s.begin():
        cc = s.scalars(
            select(CampaignContact).where(CampaignContact.phone_e164 == "+33353010102")
        ).one()
        s.add(
            CallAttempt(
                id="00000000-0000-4000-8000-000000000001",
                campaign_id=cc.campaign_id,
                campaign_contact_id=cc.id,
                number=cc.phone_e164,
                attempt_no=1,
                state="ended",
                created_at=datetime.now(UTC),
                outcome="busy",
                hangup_cause=17,
                hangup_cause_text="User busy",
            )
        )
    page = await (
        await client.get("/api/v1/campaigns/spring/results?limit=1&offset=2", headers=sup)
    ).json()
    (row,) = page["items"]
    assert (row["number"], row["attempts"], row["q850_cause"]) == ("+33353010102", 1, 17)
    first = await (await client.get("/api/v1/campaigns/spring/results?limit=1", headers=sup)).json()
    assert first["items"][0]["attempts"] == 0 and first["items"][0]["q850_cause"] is None
