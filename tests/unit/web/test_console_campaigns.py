"""Console campaign pages: list, create form, details and actions, dry run, report, CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from voicecast.app import Runtime
from voicecast.campaigns.service import REPORT_COLUMNS
from voicecast.compliance.suppression import add_opt_out, load_store_key
from voicecast.storage.models import Campaign, CampaignContact, Contact

from .conftest import Account, login_as
from .console_data import seed_audio, seed_campaign, seed_list

FORM = {
    "name": "autumn",
    "list": "clients",
    "message": "msg",
    "caller_id": "01 62 00 00 00",
    "max_channels": "5",
    "cps": "2",
    "ring_timeout": "25",
    "retries": "1",
    "retry_delay": "300",
    "deliver_to": "both",
    "amd_on_silence": "machine",
    "amd_on_notsure": "human",
    "default_region": "FR",
    "purpose": "informational",
    "audience": "b2c",
    "sender": "Société Fictive",
    "on_behalf_of": "Société Fictive",
    "optout_key": "9",
    "legal_basis": "contract",
    "hours": "mon-fri 10:00-12:00",
}


def status_of(runtime: Runtime, name: str) -> str:
    with runtime.sessions() as s:
        return s.scalars(select(Campaign.status).where(Campaign.name == name)).one()


async def test_pages_render_for_a_viewer_without_action_buttons(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_campaign(runtime)
    await login_as(client, runtime, viewer)
    resp = await client.get("/campaigns")
    html = await resp.text()
    assert resp.status == 200
    assert 'data-campaign="spring"' in html and 'data-total="3"' in html
    assert 'id="new-campaign"' not in html
    resp = await client.get("/campaigns/spring")
    html = await resp.text()
    assert resp.status == 200
    assert 'id="dashboard-link" href="/campaigns/spring/dashboard"' in html
    assert 'id="campaign-ok"' in html  # a declared informational campaign may start
    for button in ("start-campaign", "pause-campaign", "resume-campaign", "stop-campaign"):
        assert f'id="{button}"' not in html
    for path in ("/campaigns/spring/check", "/campaigns/spring/report"):
        resp = await client.get(path)
        assert resp.status == 200, path
    assert (await client.get("/campaigns/nope")).status == 404


async def test_viewer_is_refused_every_change(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_campaign(runtime)
    csrf = await login_as(client, runtime, viewer)
    assert (await client.get("/campaigns/new")).status == 403
    resp = await client.post("/campaigns", data={**FORM, "_csrf": csrf})
    assert resp.status == 403
    for action in ("start", "pause", "resume", "stop"):
        resp = await client.post(
            f"/campaigns/spring/{action}", data={"_csrf": csrf, "confirm": "yes"}
        )
        assert resp.status == 403, action
    assert status_of(runtime, "spring") == "draft"
    with runtime.sessions() as s:
        assert s.scalar(select(Campaign.id).where(Campaign.name == "autumn")) is None


async def test_anonymous_is_sent_to_login(client: TestClient) -> None:
    resp = await client.get("/campaigns", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/login?next=/campaigns")


async def test_supervisor_creates_a_campaign_with_its_declaration(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    seed_list(runtime)
    seed_audio(runtime)
    csrf = await login_as(client, runtime, supervisor)
    resp = await client.get("/campaigns/new")
    html = await resp.text()
    assert resp.status == 200
    assert 'id="campaign-form"' in html
    assert '<option value="clients"' in html and '<option value="msg"' in html
    assert 'name="max_channels" value="10"' in html  # [dialer] default
    resp = await client.post(
        "/campaigns", data={**FORM, "_csrf": csrf, "starts_at": "2030-01-02T09:30"}
    )
    assert resp.status == 200
    assert str(resp.url).endswith("/campaigns/autumn")
    with runtime.sessions() as s:
        c = s.scalars(select(Campaign).where(Campaign.name == "autumn")).one()
        assert (c.status, c.caller_id, c.max_channels, c.cps, c.retries) == (
            "draft",
            "+33162000000",
            5,
            2.0,
            1,
        )
        assert (c.purpose, c.legal_basis, c.optout_key) == ("informational", "contract", "9")
        assert c.starts_at is not None and c.starts_at.year == 2030


async def test_create_with_bad_input_shows_the_error_and_keeps_the_values(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    seed_list(runtime)
    seed_audio(runtime)
    csrf = await login_as(client, runtime, supervisor)
    bad = {**FORM, "_csrf": csrf, "caller_id": "0162ABCDEF", "sender": "Acme <b>"}
    resp = await client.post("/campaigns", data=bad)
    html = await resp.text()
    assert resp.status == 400
    assert 'id="form-error"' in html and "caller ID" in html
    assert 'value="0162ABCDEF"' in html
    assert 'value="Acme &lt;b&gt;"' in html  # kept, and escaped
    assert '<option value="informational" selected>' in html
    resp = await client.post("/campaigns", data={**FORM, "_csrf": csrf, "retries": "two"})
    assert resp.status == 400
    assert "retries: &#39;two&#39; is not a whole number" in await resp.text()
    with runtime.sessions() as s:
        assert s.scalar(select(Campaign.id)) is None


async def test_start_pause_resume_stop(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    seed_campaign(runtime)
    csrf = await login_as(client, runtime, supervisor)
    html = await (await client.get("/campaigns/spring")).text()
    assert 'id="start-campaign"' in html and 'id="stop-campaign"' in html
    assert 'id="pause-campaign"' not in html and 'id="resume-campaign"' not in html
    # a draft never started has nothing to pause (a later resume would start it)
    resp = await client.post("/campaigns/spring/pause", data={"_csrf": csrf})
    assert resp.status == 409
    assert "never started: there is nothing to pause" in await resp.text()
    assert status_of(runtime, "spring") == "draft"

    resp = await client.post("/campaigns/spring/start", data={"_csrf": csrf})
    assert resp.status == 200 and str(resp.url).endswith("/campaigns/spring")
    assert status_of(runtime, "spring") == "running"
    html = await resp.text()
    assert 'id="pause-campaign"' in html and 'id="start-campaign"' not in html
    assert 'data-count="pending">3<' in html
    # an action that does not apply is refused: the page as it is now, with the reason
    resp = await client.post("/campaigns/spring/resume", data={"_csrf": csrf})
    assert resp.status == 409
    html = await resp.text()
    assert 'id="action-error"' in html and "“Resume” no longer applies" in html
    assert 'data-status="running"' in html and 'id="pause-campaign"' in html

    await client.post("/campaigns/spring/pause", data={"_csrf": csrf})
    assert status_of(runtime, "spring") == "paused"
    html = await (await client.get("/campaigns/spring")).text()
    assert 'id="resume-campaign"' in html and 'id="pause-campaign"' not in html
    await client.post("/campaigns/spring/resume", data={"_csrf": csrf})
    assert status_of(runtime, "spring") == "running"

    resp = await client.post("/campaigns/spring/stop", data={"_csrf": csrf})
    html = await resp.text()
    assert resp.status == 200 and 'id="confirm-stop"' in html
    assert status_of(runtime, "spring") == "running"  # not before the confirmation
    await client.post("/campaigns/spring/stop", data={"_csrf": csrf, "confirm": "yes"})
    assert status_of(runtime, "spring") == "stopped"


async def test_stop_confirmation_page_survives_a_reload(
    client: TestClient, runtime: Runtime, supervisor: Account, viewer: Account
) -> None:
    seed_campaign(runtime)
    resp = await client.get("/campaigns/spring/stop", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    await login_as(client, runtime, viewer)
    assert (await client.get("/campaigns/spring/stop")).status == 403
    csrf = await login_as(client, runtime, supervisor)
    resp = await client.get("/campaigns/spring/stop")
    html = await resp.text()
    assert resp.status == 200 and 'id="confirm-stop-form"' in html
    assert 'action="/campaigns/spring/stop"' in html and 'name="confirm" value="yes"' in html
    assert status_of(runtime, "spring") == "draft"  # a GET changes nothing
    assert (await client.get("/campaigns/nope/stop")).status == 404
    await client.post("/campaigns/spring/stop", data={"_csrf": csrf, "confirm": "yes"})
    assert status_of(runtime, "spring") == "stopped"
    resp = await client.get("/campaigns/spring/stop")  # stop no longer applies
    html = await resp.text()
    assert resp.status == 409
    assert 'id="action-error"' in html and "now stopped" in html
    assert 'id="start-campaign"' in html and 'id="confirm-stop"' not in html


async def test_a_stale_start_button_shows_the_campaign_as_it_is_now(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    seed_campaign(runtime)
    csrf = await login_as(client, runtime, supervisor)
    await client.post("/campaigns/spring/start", data={"_csrf": csrf})
    # a second tab still shows Start: pressing it does not start anything twice
    resp = await client.post("/campaigns/spring/start", data={"_csrf": csrf})
    html = await resp.text()
    assert resp.status == 409 and resp.content_type == "text/html"
    assert 'id="campaign-name">spring<' in html
    assert 'id="action-error"' in html and "This campaign is now running" in html
    assert 'id="pause-campaign"' in html and 'id="start-campaign"' not in html
    resp = await client.post(
        "/campaigns/spring/start",
        data={"_csrf": csrf},
        headers={"Accept-Language": "fr-FR,fr;q=0.9"},
    )
    html = await resp.text()
    assert "Cette campagne est maintenant en cours" in html and "« Démarrer »" in html
    assert status_of(runtime, "spring") == "running"


async def test_a_refused_start_shows_the_gates_problems(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    seed_campaign(runtime, declared=False)
    csrf = await login_as(client, runtime, supervisor)
    html = await (await client.get("/campaigns/spring")).text()
    assert 'id="campaign-problems"' in html and 'data-code="declaration_missing"' in html
    resp = await client.post("/campaigns/spring/start", data={"_csrf": csrf})
    html = await resp.text()
    assert resp.status == 400
    assert 'id="action-error"' in html and "cannot start" in html
    assert status_of(runtime, "spring") == "draft"


async def test_check_lists_callable_deferred_and_blocked(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_list(runtime, rows=[("01 99 00 00 10", "Camille"), ("01 99 00 00 11", "Hugo")])
    seed_campaign(runtime, hours="mon-fri 10:00-12:00")
    with runtime.sessions() as s, s.begin():
        key, _ = load_store_key(s, runtime.settings.path(runtime.settings.compliance.hash_key_file))
        add_opt_out(s, key, "+33199000011", source="cli", at=datetime.now(UTC))
    await login_as(client, runtime, viewer)
    # a Wednesday at 11:00 in Paris: allowed; a Sunday: deferred to Monday 10:00
    resp = await client.get("/campaigns/spring/check?at=2026-11-25T11:00%2B01:00")
    html = await resp.text()
    assert resp.status == 200
    assert 'id="would-call-now">1<' in html
    assert 'data-reason="opted_out" data-count="1"' in html
    resp = await client.get("/campaigns/spring/check?at=2026-11-29T11:00%2B01:00")
    html = await resp.text()
    assert 'id="would-call-now">0<' in html
    assert 'id="check-deferred"' in html
    monday_ten_paris = datetime(2026, 11, 30, 9, 0, tzinfo=UTC).astimezone(runtime.report_zone())
    assert monday_ten_paris.strftime("%Y-%m-%d %H:%M") in html  # next legal time, report zone
    resp = await client.get("/campaigns/spring/check?at=yesterday")
    assert resp.status == 400


async def test_report_page_and_csv_export(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    seed_list(
        runtime,
        rows=[
            ("01 99 00 00 10", '=HYPERLINK("http://evil.example","x")'),
            ("01 99 00 00 11", "Hélène"),
            ("01 99 00 00 12", "@SUM(1+1)"),
        ],
    )
    seed_campaign(runtime)
    csrf = await login_as(client, runtime, supervisor)
    await client.post("/campaigns/spring/start", data={"_csrf": csrf})
    resp = await client.get("/campaigns/spring/report")
    html = await resp.text()
    assert resp.status == 200
    assert 'data-number="+33199000011"' in html and "Hélène" in html
    resp = await client.get("/campaigns/spring/report.csv")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in resp.headers["Content-Disposition"]
    body = await resp.read()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == list(REPORT_COLUMNS)
    first_names = [r[1] for r in rows[1:]]
    assert first_names == ['\'=HYPERLINK("http://evil.example","x")', "Hélène", "'@SUM(1+1)"]
    assert [r[0] for r in rows[1:]] == ["+33199000010", "+33199000011", "+33199000012"]
    assert b"\r\n" in body


async def test_pages_in_french(client: TestClient, runtime: Runtime, supervisor: Account) -> None:
    seed_campaign(runtime)
    await login_as(client, runtime, supervisor)
    headers = {"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}
    html = await (await client.get("/campaigns", headers=headers)).text()
    assert '<html lang="fr">' in html
    assert "Nouvelle campagne" in html and "brouillon" in html
    html = await (await client.get("/campaigns/spring", headers=headers)).text()
    assert "Démarrer" in html and "Déclaration de conformité" in html


async def test_declared_and_policy_values_are_translated_but_posted_raw(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    seed_campaign(runtime)
    await login_as(client, runtime, supervisor)
    fr = {"Accept-Language": "fr-FR,fr;q=0.9"}
    html = await (await client.get("/campaigns/spring", headers=fr)).text()
    assert 'data-field="purpose" data-value="informational">Information (avis de service)<' in html
    assert 'data-field="audience" data-value="b2c">Particuliers (B2C)<' in html
    assert 'data-field="legal_basis" data-value="contract">Contrat (b)<' in html
    assert 'data-value="both">Personnes et répondeurs<' in html
    assert 'data-field="amd_on_silence" data-value="machine">Répondeur<' in html
    assert 'data-field="amd_on_notsure" data-value="human">Personne<' in html
    assert "Occupé, Pas de réponse, Encombrement" in html  # the retried outcomes
    assert 'data-status="draft">brouillon<' in html
    for raw in (">informational<", ">b2c<", ">both<", ">machine<", ">human<", "busy, no_answer"):
        assert raw not in html, raw
    html = await (await client.get("/campaigns", headers=fr)).text()
    assert '<td class="status">brouillon</td>' in html
    html = await (await client.get("/campaigns/new", headers=fr)).text()
    for value, label in (
        ("informational", "Information (avis de service)"),
        ("marketing", "Prospection commerciale"),
        ("b2b", "Professionnels (B2B)"),
        ("legitimate_interest", "Intérêts légitimes (f)"),
        ("humans", "Personnes seulement"),
        ("no_answer", "Pas de réponse"),
        ("hangup", "Raccrocher (pas de réponse)"),
    ):
        assert re.search(
            rf'<option value="{value}"( selected)?\s*>{re.escape(label)}</option>', html
        )
    html = await (await client.get("/campaigns/new")).text()  # English labels, same values
    assert '<option value="both" selected>People and answering machines</option>' in html
    assert '<option value="machine" selected>Answering machine</option>' in html


async def test_report_outcomes_are_translated(
    client: TestClient, runtime: Runtime, supervisor: Account
) -> None:
    seed_campaign(runtime)
    csrf = await login_as(client, runtime, supervisor)
    await client.post("/campaigns/spring/start", data={"_csrf": csrf})
    with runtime.sessions() as s, s.begin():
        first, second = s.scalars(
            select(CampaignContact).order_by(CampaignContact.id).limit(2)
        ).all()
        first.state, first.outcome = "done", "human"
        second.state, second.outcome = "done", "busy"
    html = await (
        await client.get("/campaigns/spring/report", headers={"Accept-Language": "fr"})
    ).text()
    assert re.search(r'data-outcome="human"[^>]*>.*?<td>Personne</td>', html, re.S)
    assert re.search(r'data-outcome="busy"[^>]*>.*?<td>Occupé</td>', html, re.S)
    assert "(en attente)" in html  # the third contact, still pending
    html = await (await client.get("/campaigns/spring/report")).text()
    assert re.search(r'data-outcome="human"[^>]*>.*?<td>Person</td>', html, re.S)
    body = await (await client.get("/campaigns/spring/report.csv")).read()
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert [r[3] for r in rows[1:]] == ["human", "busy", ""]  # codes in the CSV


async def test_campaign_names_with_spaces_are_linked_quoted(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_campaign(runtime, "Rappel 2026")
    await login_as(client, runtime, viewer)
    html = await (await client.get("/campaigns")).text()
    assert 'href="/campaigns/Rappel%202026"' in html
    assert (await client.get("/campaigns/Rappel%202026")).status == 200
    with runtime.sessions() as s:
        assert s.scalar(select(Contact.id).limit(1)) is not None


async def test_the_campaigns_list_shows_an_alert_reason(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    seed_campaign(runtime)
    reason = "alert: the last 5 call(s) all failed at the PBX before reaching the network"
    with runtime.sessions() as s, s.begin():
        c = s.scalars(select(Campaign).where(Campaign.name == "spring")).one()
        c.status, c.status_reason = "paused", reason
    await login_as(client, runtime, viewer)
    html = await (await client.get("/campaigns")).text()
    assert f'<span class="error alert-reason">{reason}</span>' in html
    with runtime.sessions() as s, s.begin():
        c = s.scalars(select(Campaign).where(Campaign.name == "spring")).one()
        c.status_reason = "paused by supervisor"  # not an alert: the status says enough
    html = await (await client.get("/campaigns")).text()
    assert "alert-reason" not in html
