"""Console opt-out list: entries, search by number, adding a number."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from voicecast.app import Runtime
from voicecast.compliance.suppression import add_opt_out, load_store_key
from voicecast.storage.models import OptOut

from .conftest import Account, login_as


def cli_opt_out(runtime: Runtime, e164: str, note: str | None = None) -> None:
    """Record an opt-out as ``voicecast optout add`` does."""
    with runtime.sessions() as s, s.begin():
        key, _ = load_store_key(s, runtime.settings.path(runtime.settings.compliance.hash_key_file))
        add_opt_out(s, key, e164, source="cli", at=datetime.now(UTC), note=note)


async def test_viewer_sees_entries_and_searches_without_the_add_form(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    cli_opt_out(runtime, "+33199000010", note="asked by mail")
    await login_as(client, runtime, viewer)
    resp = await client.get("/optouts")
    html = await resp.text()
    assert resp.status == 200
    assert 'data-source="cli"' in html and "asked by mail" in html
    assert "+33199000010" not in html  # only hashes are stored and shown
    assert 'id="optout-add-form"' not in html
    resp = await client.get("/optouts", params={"number": "01 99 00 00 10", "region": "FR"})
    html = await resp.text()
    assert 'data-number="+33199000010" data-opted-out="yes"' in html
    resp = await client.get("/optouts", params={"number": "(202) 555-0142", "region": "US"})
    html = await resp.text()
    assert 'data-number="+12025550142" data-opted-out="no"' in html
    resp = await client.get("/optouts", params={"number": "01 99 ABC"})
    html = await resp.text()
    assert resp.status == 200 and 'id="search-error"' in html and "letters" in html


async def test_supervisor_adds_a_number_and_finds_it(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    csrf = await login_as(client, runtime, supervisor)
    html = await (await client.get("/optouts")).text()
    assert 'id="optout-add-form"' in html and 'id="no-optouts"' in html
    form = {"_csrf": csrf, "number": "+44 20 7946 0123", "region": "FR", "note": "phoned us"}
    resp = await client.post("/optouts", data=form)
    html = await resp.text()
    assert resp.status == 200
    assert 'id="optout-added"' in html
    assert 'data-number="+442079460123" data-opted-out="yes"' in html
    with runtime.sessions() as s:
        row = s.scalars(select(OptOut)).one()
        assert (row.source, row.note) == ("console", "phoned us")
    resp = await client.post("/optouts", data=form)
    assert 'id="optout-already"' in await resp.text()
    resp = await client.get("/optouts", params={"number": "020 7946 0123", "region": "GB"})
    html = await resp.text()
    assert 'data-opted-out="yes"' in html and "phoned us" in html
    resp = await client.post("/optouts", data={**form, "number": "12"})
    html = await resp.text()
    assert resp.status == 400 and 'id="add-error"' in html
    assert 'id="add-number" name="number" value="12"' in html


async def test_viewer_cannot_add(client: TestClient, runtime: Runtime, viewer: Account) -> None:
    csrf = await login_as(client, runtime, viewer)
    resp = await client.post("/optouts", data={"_csrf": csrf, "number": "01 99 00 00 10"})
    assert resp.status == 403
    with runtime.sessions() as s:
        assert s.scalar(select(OptOut.number_hash)) is None


async def test_opt_out_page_in_french(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    await login_as(client, runtime, viewer)
    resp = await client.get("/optouts", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    html = await resp.text()
    assert "Liste d&#39;opposition" in html and "Rechercher" in html


async def test_page_says_where_plain_numbers_go_and_for_how_long(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    await login_as(client, runtime, viewer)
    html = await (await client.get("/optouts")).text()
    assert "They are kept as keyed hashes only" not in html
    assert "The opt-out list keeps keyed hashes only" in html
    assert (
        "Webhook deliveries carry the number to your CRM and are deleted 30 days after they end."
        in html
    )
    resp = await client.get("/optouts", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    html = await resp.text()
    assert "sont supprimés 30 jours après leur fin" in html


async def test_the_stated_webhook_retention_is_the_configured_one(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    runtime.settings.web.webhook_keep_days = 7
    await login_as(client, runtime, viewer)
    html = await (await client.get("/optouts")).text()
    assert "are deleted 7 days after they end" in html
