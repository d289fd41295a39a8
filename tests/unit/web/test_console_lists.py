"""Console contact lists: pages, the two-step upload with its mapping, the rejects report."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from voicecast.app import Runtime
from voicecast.clock import ManualClock
from voicecast.storage.models import Contact, ContactList

from .conftest import Account, login_as
from .console_data import seed_list

# "Nom" is read as the last name and "Tel" as the phone; the test remaps the phone to
# "Mobile" and the first name to "Surnom".
CSV_TEXT = (
    "Nom;Surnom;Tel;Mobile;Notes\n"
    "Martin;Camille;;01 99 00 00 10;ok\n"
    "Bernard;Hugo;;01 99 00 00 11;\n"
    "Petit;Léa;;01 99 ABC;\n"
    "Durand;Noé;;02 61 91 00 12;\n"
)


def upload_form(csrf: str, text: str, file_name: str = "clients.csv", **fields: str) -> FormData:
    form = FormData()
    form.add_field("_csrf", csrf)
    form.add_field("list", fields.get("list", "spring-list"))
    form.add_field("default_region", fields.get("region", "FR"))
    data = io.BytesIO(text.encode("utf-8"))
    form.add_field("file", data, filename=file_name, content_type="text/csv")
    return form


def upload_id(html: str) -> str:
    found = re.search(r'data-upload="([0-9a-f]{32})"', html)
    assert found, html
    return found.group(1)


def uploads_dir(runtime: Runtime) -> Path:
    return runtime.settings.path("var") / "uploads"


async def test_pages_render_for_a_viewer_without_upload(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_list(runtime, "clients / 2026")
    await login_as(client, runtime, viewer)
    html = await (await client.get("/lists")).text()
    assert 'data-list="clients / 2026" data-count="3"' in html
    assert 'href="/lists/clients%20%2F%202026"' in html
    assert 'id="upload-list"' not in html
    resp = await client.get("/lists/clients%20%2F%202026")
    html = await resp.text()
    assert resp.status == 200
    assert 'data-number="+33199000010"' in html and "Camille 0" in html
    assert 'id="upload-more"' not in html
    assert (await client.get("/lists/nope")).status == 404
    csrf = await login_as(client, runtime, viewer)
    assert (await client.get("/lists/upload")).status == 403
    resp = await client.post("/lists/upload", data=upload_form(csrf, CSV_TEXT))
    assert resp.status == 403
    assert not uploads_dir(runtime).exists()


async def test_upload_preview_remap_import_and_rejects(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    html = await (await client.get("/lists/upload")).text()
    assert 'id="upload-form"' in html and 'enctype="multipart/form-data"' in html
    resp = await client.post("/lists/upload", data=upload_form(csrf, CSV_TEXT))
    html = await resp.text()
    assert resp.status == 200
    assert 'id="mapping-form"' in html
    uid = upload_id(html)
    form_html = html[
        html.index('id="mapping-form"') : html.index("</form>", html.index('id="mapping-form"'))
    ]
    assert form_html.count('type="submit"') == 1  # Import; Preview is bound from outside
    # detected: phone = Tel (empty cells: every row rejected), last name = Nom
    assert re.search(r'<option value="Tel" selected>', html)
    assert re.search(r'id="map_last_name".*?<option value="Nom" selected>', html, re.S)
    assert 'data-rejected="4"' in html and "phone: empty" in html
    stored = list((uploads_dir(runtime) / uid).iterdir())
    assert sorted(p.name for p in stored) == ["data", "meta.json"]

    mapping = {
        "_csrf": csrf,
        "list": "spring-list",
        "phone_column": "Mobile",
        "map_first_name": "Surnom",
        "map_last_name": "Nom",
    }
    resp = await client.post(f"/lists/upload/{uid}/preview", data=mapping)
    html = await resp.text()
    assert 'data-contacts="3"' in html and 'data-rejected="1"' in html
    assert 'data-number="+33261910012"' in html and ">Noé<" in html
    assert "phone: contains letters" in html

    resp = await client.post(f"/lists/upload/{uid}/import", data=mapping)
    html = await resp.text()
    assert resp.status == 200
    assert 'id="import-summary"' in html
    assert 'data-imported="3" data-updated="0" data-duplicates="0" data-rejected="1"' in html
    with runtime.sessions() as s:
        clist = s.scalars(select(ContactList).where(ContactList.name == "spring-list")).one()
        contacts = s.scalars(select(Contact).where(Contact.list_id == clist.id)).all()
        assert {c.phone_e164: c.fields for c in contacts}["+33199000010"] == {
            "first_name": "Camille",
            "last_name": "Martin",
        }
    assert not (uploads_dir(runtime) / uid / "data").exists()  # removed once imported

    link = re.search(r'id="rejects-link" href="([^"]+)"', html)
    assert link and link.group(1) == f"/lists/upload/{uid}/rejects.csv"
    resp = await client.get(link.group(1))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    body = await resp.read()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == ["line", "reason", "Nom", "Surnom", "Tel", "Mobile", "Notes"]
    assert rows[1][0] == "4" and rows[1][1].startswith("phone: contains letters")
    # imported once only
    resp = await client.post(f"/lists/upload/{uid}/import", data=mapping)
    assert resp.status == 409


async def test_uploaded_file_name_never_becomes_a_path(
    client: TestClient, runtime: Runtime, supervisor: Account, tmp_path: Path
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    text = "Téléphone;Prénom\n01 99 00 00 10;Camille\n"
    for name in ("../../evil.csv", "..\\..\\evil.csv", "/etc/passwd"):
        resp = await client.post("/lists/upload", data=upload_form(csrf, text, file_name=name))
        html = await resp.text()
        assert resp.status == 200, html
        uid = upload_id(html)
        assert sorted(p.name for p in (uploads_dir(runtime) / uid).iterdir()) == [
            "data",
            "meta.json",
        ]
    assert not (tmp_path / "evil.csv").exists()
    assert not (runtime.settings.path("var") / "evil.csv").exists()
    # an upload id that is not 32 hex digits never reaches the file system
    for bad in ("..%2F..%2Fetc", "../meta", "0" * 31 + "g"):
        resp = await client.post(f"/lists/upload/{bad}/import", data={"_csrf": csrf})
        assert resp.status == 404, bad


def older(runtime: Runtime, uid: str, seconds: float) -> None:
    """Make upload ``uid`` look ``seconds`` older (the session would expire if the web
    clock moved instead)."""
    meta_path = uploads_dir(runtime) / uid / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["created"] -= seconds
    meta_path.write_text(json.dumps(meta))


async def test_an_upload_is_only_its_owners_and_expires_after_an_hour(
    client: TestClient, runtime: Runtime, supervisor: Account, admin: Account
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    resp = await client.post("/lists/upload", data=upload_form(csrf, CSV_TEXT))
    uid = upload_id(await resp.text())
    other = await login_as(client, runtime, admin)
    resp = await client.post(f"/lists/upload/{uid}/preview", data={"_csrf": other})
    assert resp.status == 404
    csrf = await login_as(client, runtime, supervisor)
    older(runtime, uid, 3601)
    resp = await client.post(f"/lists/upload/{uid}/preview", data={"_csrf": csrf})
    assert resp.status == 404
    assert not (uploads_dir(runtime) / uid).exists()
    # a new upload sweeps the expired ones
    resp = await client.post("/lists/upload", data=upload_form(csrf, CSV_TEXT))
    first = upload_id(await resp.text())
    older(runtime, first, 3601)
    resp = await client.post("/lists/upload", data=upload_form(csrf, CSV_TEXT))
    second = upload_id(await resp.text())
    assert [p.name for p in uploads_dir(runtime).iterdir()] == [second]
    assert first != second


async def test_bad_uploads_are_refused_clearly(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    form = FormData()
    form.add_field("_csrf", csrf)
    form.add_field("list", "x")
    form.add_field("default_region", "FR")
    resp = await client.post("/lists/upload", data=form)
    assert resp.status == 400
    assert "file: choose a CSV" in await resp.text()
    resp = await client.post("/lists/upload", data=upload_form(csrf, CSV_TEXT, region="XX"))
    assert resp.status == 400
    assert "region" in await resp.text()
    resp = await client.post("/lists/upload", data=upload_form(csrf, "", file_name="empty.csv"))
    html = await resp.text()
    assert resp.status == 400
    assert "empty.csv: the file is empty" in html
    assert str(uploads_dir(runtime)) not in html  # the server path is never shown
    # no phone column recognised: the form lets the user pick it among the headers
    resp = await client.post(
        "/lists/upload", data=upload_form(csrf, "Client;Numéro client2\nA;01 99 00 00 10\n")
    )
    html = await resp.text()
    assert resp.status == 400
    assert 'id="mapping-form"' in html and "no phone column recognised" in html
    assert '<option value="Numéro client2"' in html


async def test_an_oversized_upload_is_refused(
    aiohttp_client: object, runtime: Runtime, supervisor: Account, clock: ManualClock
) -> None:
    from voicecast.web.server import WebContext, make_app

    runtime.settings.web.max_upload_mb = 1
    client: TestClient = await aiohttp_client(make_app(WebContext(runtime, clock)))  # type: ignore[operator]
    csrf = await login_as(client, runtime, supervisor)
    big = "Téléphone\n" + "01 99 00 00 10\n" * 80_000  # 1.2 MB
    resp = await client.post("/lists/upload", data=upload_form(csrf, big))
    assert resp.status == 413
    assert "1 MB" in await resp.text()
    assert not uploads_dir(runtime).exists()
