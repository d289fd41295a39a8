"""Data-subject rights over the REST API (``/api/v1/subjects/...``) and in the console
(``/subjects``): admin only, the number in the body, CSRF on the console forms."""

from __future__ import annotations

import json
from typing import get_args

from aiohttp.test_utils import TestClient
from sqlalchemy import select, text

from voicecast.app import Runtime
from voicecast.contacts.importer import CANONICAL_FIELDS
from voicecast.storage.models import Contact, JournalEntry
from voicecast.web.api_subjects import FieldName

from .api_helpers import import_csv
from .conftest import Account, api_headers, login_as

NUMBER = "+33199000100"  # Camille Exemple in api_helpers.CSV_GOOD


def _contacts(runtime: Runtime, number: str = NUMBER) -> list[dict[str, str]]:
    with runtime.sessions() as s:
        return [
            dict(c.fields) for c in s.scalars(select(Contact).where(Contact.phone_e164 == number))
        ]


def _journal(runtime: Runtime, kind: str) -> list[JournalEntry]:
    with runtime.sessions() as s:
        return list(s.scalars(select(JournalEntry).where(JournalEntry.kind == kind)))


def test_the_api_field_names_are_the_importers() -> None:
    assert get_args(FieldName) == CANONICAL_FIELDS


# --------------------------------------------------------------------------- API


async def test_api_export_rectify_erase_then_export_again(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    headers = api_headers(runtime, admin)
    await import_csv(client, headers)
    resp = await client.post(
        "/api/v1/subjects/export", json={"number": "01 99 00 01 00"}, headers=headers
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body["number"] == NUMBER
    assert body["export"]["contacts"][0]["fields"]["first_name"] == "Camille"

    resp = await client.post(
        "/api/v1/subjects/rectify",
        json={"number": NUMBER, "set": {"first_name": "Camilla", "last_name": ""}},
        headers=headers,
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body == {
        "number": NUMBER,
        "fields": ["first_name", "last_name"],
        "contacts": 1,
        "changed": 1,
        "lists": ["clients"],
    }
    assert _contacts(runtime) == [{"first_name": "Camilla"}]
    resp = await client.post(  # the same again: nothing changed, nothing journaled
        "/api/v1/subjects/rectify",
        json={"number": NUMBER, "set": {"first_name": "Camilla"}},
        headers=headers,
    )
    assert (await resp.json())["changed"] == 0
    (entry,) = _journal(runtime, "subject.rectified")
    assert entry.actor == "user:alice" and "Camilla" not in entry.data

    resp = await client.post("/api/v1/subjects/erase", json={"number": NUMBER}, headers=headers)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["removed"] == {"contacts": 1} and body["nothing_held"] is False
    assert body["opt_out_added"] is True and body["opt_out_source"] == "erasure"
    assert _contacts(runtime) == []
    (entry,) = _journal(runtime, "subject.erased")
    assert entry.actor == "user:alice" and NUMBER not in entry.data

    resp = await client.post("/api/v1/subjects/export", json={"number": NUMBER}, headers=headers)
    export = (await resp.json())["export"]
    assert export["held"] is False and export["opt_out"]["source"] == "erasure"
    assert "contacts" not in export and "erased_at" in export


async def test_api_subjects_are_for_admins_only(
    client: TestClient, runtime: Runtime, admin: Account, supervisor: Account
) -> None:
    await import_csv(client, api_headers(runtime, admin))
    headers = api_headers(runtime, supervisor)
    for action in ("export", "erase", "rectify", "proof"):
        payload: dict[str, object] = {"number": NUMBER}
        if action == "rectify":
            payload["set"] = {"first_name": "X"}
        resp = await client.post(f"/api/v1/subjects/{action}", json=payload, headers=headers)
        assert resp.status == 403, action
        assert (await resp.json())["error"]["code"] == "forbidden"
    assert _contacts(runtime) == [{"first_name": "Camille", "last_name": "Exemple"}]
    assert _journal(runtime, "subject.exported") == []


async def test_api_errors(client: TestClient, runtime: Runtime, admin: Account) -> None:
    headers = api_headers(runtime, admin)
    await import_csv(client, headers)

    async def post(action: str, payload: object) -> tuple[int, dict[str, str]]:
        resp = await client.post(f"/api/v1/subjects/{action}", json=payload, headers=headers)
        return resp.status, (await resp.json())["error"]

    status, error = await post("export", {"number": "01 99 ABC"})
    assert status == 400 and "letters" in error["message"]
    status, error = await post("rectify", {"number": NUMBER, "set": {"email": "x"}})
    assert status == 400 and error["message"].startswith("set.email")
    status, error = await post("rectify", {"number": NUMBER, "set": {}})
    assert status == 400 and error["message"].startswith("set:")
    status, error = await post("rectify", {"number": NUMBER, "set": {"company": "A\nB"}})
    assert status == 400 and "company: control" in error["message"]
    status, error = await post("rectify", {"number": NUMBER, "set": {"postal_code": "ABC"}})
    assert status == 400 and "postal_code: 'ABC' is not a postal code" in error["message"]
    status, error = await post("rectify", {"number": NUMBER, "set": {"professional": "peut-être"}})
    assert status == 400 and "use yes, oui, true, 1, b2b, pro" in error["message"]
    status, error = await post("rectify", {"number": "+12025550142", "set": {"company": "A"}})
    assert status == 404 and "no contact with this number: nothing changed" in error["message"]
    assert _journal(runtime, "subject.rectified") == []
    status, error = await post("rectify", {"number": NUMBER, "set": {"company": "A"}, "list": "x"})
    assert status == 404 and "no contact list named 'x'" in error["message"]
    status, error = await post("erase", {"number": NUMBER, "extra": 1})
    assert status == 400 and error["message"].startswith("extra")


async def test_api_erase_refuses_during_a_call(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    from .api_helpers import create_campaign

    headers = api_headers(runtime, admin)
    await create_campaign(client, headers)
    resp = await client.post("/api/v1/campaigns/spring/start", headers=headers)
    assert resp.status == 200, await resp.text()
    with runtime.sessions() as s, s.begin():
        s.execute(
            text("UPDATE campaign_contacts SET state = 'dialing' WHERE phone_e164 = :n"),
            {"n": NUMBER},
        )
    resp = await client.post("/api/v1/subjects/erase", json={"number": NUMBER}, headers=headers)
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "conflict"
    assert "in progress" in body["error"]["message"]
    assert len(_contacts(runtime)) == 1


async def test_api_proof(client: TestClient, runtime: Runtime, admin: Account) -> None:
    headers = api_headers(runtime, admin)
    await import_csv(client, headers)
    resp = await client.post("/api/v1/subjects/proof", json={"number": NUMBER}, headers=headers)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["number"] == NUMBER
    assert [c["list"] for c in body["proof"]["contacts"]] == ["clients"]


# --------------------------------------------------------------------------- console


async def test_console_page_is_for_admins(
    client: TestClient, runtime: Runtime, admin: Account, supervisor: Account
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    assert 'href="/subjects"' not in await (await client.get("/optouts")).text()
    assert (await client.get("/subjects")).status == 403
    resp = await client.post("/subjects", data={"_csrf": csrf, "number": NUMBER})
    assert resp.status == 403
    await login_as(client, runtime, admin)
    html = await (await client.get("/optouts")).text()
    assert 'href="/subjects"' in html
    resp = await client.get("/subjects")
    assert resp.status == 200 and 'id="subject-search-form" method="post"' in await resp.text()


async def test_console_forms_need_the_csrf_token(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    await import_csv(client, api_headers(runtime, admin))
    await login_as(client, runtime, admin)
    for path in ("/subjects", "/subjects/export", "/subjects/rectify", "/subjects/erase"):
        data = {"number": NUMBER, "confirm": "yes", "field": "company", "value": "X"}
        resp = await client.post(path, data={**data, "_csrf": "forged"})
        assert resp.status == 403, path
        assert "csrf" in (await resp.text()).lower()
    assert _contacts(runtime) == [{"first_name": "Camille", "last_name": "Exemple"}]


async def test_console_search_export_rectify_and_erase(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    await import_csv(client, api_headers(runtime, admin))
    csrf = await login_as(client, runtime, admin)
    form = {"_csrf": csrf, "number": "01 99 00 01 00", "region": "FR"}

    resp = await client.post("/subjects", data=form)
    html = await resp.text()
    assert resp.status == 200
    assert f'data-number="{NUMBER}" data-held="yes"' in html
    assert '<tr data-kind="contacts"><td>Contacts</td><td>1</td></tr>' in html
    assert '<td data-field="first_name">Camille</td>' in html
    assert _journal(runtime, "subject.exported") == []  # a look is not an access answer

    resp = await client.post("/subjects/export", data=form)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert NUMBER not in resp.headers["Content-Disposition"]
    doc = json.loads(await resp.read())
    assert doc["number"] == NUMBER and doc["contacts"][0]["list"] == "clients"
    assert len(_journal(runtime, "subject.exported")) == 1

    resp = await client.post(
        "/subjects/rectify", data={**form, "field": "company", "value": "Fictive SA", "list": ""}
    )
    html = await resp.text()
    assert resp.status == 200 and 'id="subject-rectified"' in html
    assert '<td data-field="company">Fictive SA</td>' in html
    resp = await client.post("/subjects/rectify", data={**form, "field": "email", "value": "x"})
    html = await resp.text()
    assert resp.status == 400 and 'id="rectify-error"' in html and "not a contact field" in html
    resp = await client.post(
        "/subjects/rectify", data={**form, "field": "professional", "value": "maybe", "list": ""}
    )
    html = await resp.text()
    assert resp.status == 400 and "professional: &#39;maybe&#39; is neither yes nor no" in html
    resp = await client.post(  # the same value again: nothing changed, nothing journaled
        "/subjects/rectify", data={**form, "field": "company", "value": "Fictive SA", "list": ""}
    )
    html = await resp.text()
    assert resp.status == 200 and 'id="subject-unchanged"' in html and "Nothing changed" in html
    assert len(_journal(runtime, "subject.rectified")) == 1

    resp = await client.post("/subjects/erase", data=form)  # the box not ticked
    html = await resp.text()
    assert resp.status == 400 and 'id="erase-error"' in html
    assert len(_contacts(runtime)) == 1
    resp = await client.post("/subjects/erase", data={**form, "confirm": "yes"})
    html = await resp.text()
    assert resp.status == 200
    assert 'id="subject-erased" data-nothing-held="no"' in html
    assert '<li data-kind="contacts">Contacts: 1</li>' in html
    assert f'data-number="{NUMBER}" data-held="no"' in html
    assert 'id="subject-nothing"' in html and "it was erased on" in html
    assert "(source: erasure)" in html
    assert _contacts(runtime) == []
    (entry,) = _journal(runtime, "subject.erased")
    assert entry.actor == "user:alice"


async def test_console_bad_number_and_french(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    csrf = await login_as(client, runtime, admin)
    resp = await client.post("/subjects", data={"_csrf": csrf, "number": "01 99 ABC"})
    html = await resp.text()
    assert resp.status == 400 and 'id="subject-error"' in html and "letters" in html
    resp = await client.post(
        "/subjects",
        data={"_csrf": csrf, "number": "+1 202 555 0142", "region": "US"},
        headers={"Accept-Language": "fr-FR,fr;q=0.9"},
    )
    html = await resp.text()
    assert "Demandes des personnes concernées" in html
    assert "Rien n&#39;est détenu sur ce numéro." in html
    assert "Effacer" in html
