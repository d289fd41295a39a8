"""The webhooks console page (admin only): receivers, secret shown once, actions, and the
delivery status."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from voicecast.app import Runtime
from voicecast.storage.models import Webhook, WebhookDelivery
from voicecast.webhooks import create_webhook, enqueue_event

from .conftest import Account, login_as


def _hooks(runtime: Runtime) -> list[Webhook]:
    with runtime.sessions() as s:
        return list(s.scalars(select(Webhook).order_by(Webhook.id)))


async def test_only_admins_see_the_page(
    client: TestClient, runtime: Runtime, admin: Account, supervisor: Account
) -> None:
    resp = await client.get("/webhooks", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    csrf = await login_as(client, runtime, supervisor)
    assert (await client.get("/webhooks")).status == 403
    resp = await client.post(
        "/webhooks", data={"_csrf": csrf, "url": "https://crm.example.org/h", "events": "a"}
    )
    assert resp.status == 403 and _hooks(runtime) == []
    await login_as(client, runtime, admin)
    resp = await client.get("/webhooks")
    assert resp.status == 200
    html = await resp.text()
    assert 'id="webhook-form"' in html and 'id="deliveries"' in html
    assert "are deleted 30 days after they end" in html  # webhooks.DELIVERY_KEEP


async def test_adding_a_webhook_shows_its_secret_once(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    csrf = await login_as(client, runtime, admin)
    resp = await client.post(
        "/webhooks",
        data=[
            ("_csrf", csrf),
            ("url", "https://crm.example.org/voicecast"),
            ("events", "attempt.completed"),
            ("events", "optout.created"),
            ("description", "Our CRM"),
        ],
    )
    assert resp.status == 200
    html = await resp.text()
    (hook,) = _hooks(runtime)
    assert hook.events == ["attempt.completed", "optout.created"] and hook.enabled
    assert f'<code id="webhook-secret" class="secret">{hook.secret}</code>' in html
    assert len(hook.secret) >= 32
    later = await (await client.get("/webhooks")).text()
    assert hook.secret not in later
    assert f'data-webhook-id="{hook.id}" data-enabled="true"' in later
    assert "https://crm.example.org/voicecast" in later and "Our CRM" in later


async def test_an_invalid_webhook_is_refused_with_the_field_named(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    csrf = await login_as(client, runtime, admin)
    resp = await client.post(
        "/webhooks", data={"_csrf": csrf, "url": "ftp://crm.example.org/x", "events": "x"}
    )
    assert resp.status == 400
    html = await resp.text()
    assert 'id="webhook-error"' in html and "url" in html
    assert 'value="ftp://crm.example.org/x"' in html  # the form keeps what was typed
    resp = await client.post("/webhooks", data={"_csrf": csrf, "url": "https://crm.example.org"})
    assert resp.status == 400 and "events: choose at least one" in await resp.text()
    assert _hooks(runtime) == []
    resp = await client.post("/webhooks", data={"url": "https://crm.example.org", "events": "x"})
    assert resp.status == 403  # no CSRF token


async def test_disable_enable_test_and_delete(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    with runtime.sessions() as s, s.begin():
        hook_id = create_webhook(s, "https://crm.example.org/h", ["optout.created"]).id
    csrf = await login_as(client, runtime, admin)
    resp = await client.post(f"/webhooks/{hook_id}/disable", data={"_csrf": csrf})
    assert resp.status == 200 and resp.url.path == "/webhooks"
    assert "Webhook disabled" in await resp.text()
    assert _hooks(runtime)[0].enabled is False
    resp = await client.post(f"/webhooks/{hook_id}/test", data={"_csrf": csrf})
    assert resp.status == 400 and "disabled" in await resp.text()
    await client.post(f"/webhooks/{hook_id}/enable", data={"_csrf": csrf})
    assert _hooks(runtime)[0].enabled is True
    resp = await client.post(f"/webhooks/{hook_id}/test", data={"_csrf": csrf})
    html = await resp.text()
    assert 'data-event="webhook.test"' in html and 'data-status="pending"' in html
    resp = await client.post(f"/webhooks/{hook_id}/delete", data={"_csrf": csrf})
    assert resp.status == 200 and _hooks(runtime) == []
    resp = await client.post("/webhooks/999/delete", data={"_csrf": csrf})
    assert resp.status == 404


async def test_delivery_status_is_visible_and_a_failed_one_can_be_retried(
    client: TestClient, runtime: Runtime, admin: Account
) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        create_webhook(s, "https://crm.example.org/h", ["optout.created"])
        enqueue_event(s, "optout.created", {"number": "+33199000010"}, now)
        enqueue_event(s, "optout.created", {"number": "+33199000011"}, now)
        failed, pending = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        failed.status, failed.attempts, failed.last_status = "failed", 8, 502
        failed.last_error = "HTTP 502: Bad Gateway"
        failed.next_attempt_at = None
        pending.attempts, pending.last_status = 1, None
        pending.last_error = "timeout: no complete answer within 10 s"
        pending.next_attempt_at = now + timedelta(seconds=30)
        failed_id, pending_id = failed.id, pending.id
    csrf = await login_as(client, runtime, admin)
    html = await (await client.get("/webhooks")).text()
    row = re.search(rf'<tr data-delivery-id="{failed_id}" data-status="failed".*?</tr>', html, re.S)
    assert row is not None
    assert '<td class="attempts">8</td>' in row[0] and '<td class="last-status">502</td>' in row[0]
    assert "HTTP 502: Bad Gateway" in row[0] and "delivery-retry" in row[0]
    assert "timeout: no complete answer within 10 s" in html
    assert re.search(r'<td class="next-attempt">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d', html)
    assert '<span data-count="failed">1</span>' in html
    only_failed = await (await client.get("/webhooks?status=failed")).text()
    assert f'data-delivery-id="{failed_id}"' in only_failed
    assert f'data-delivery-id="{pending_id}"' not in only_failed
    assert (await client.get("/webhooks?status=bogus")).status == 400

    resp = await client.post(f"/webhooks/deliveries/{failed_id}/retry", data={"_csrf": csrf})
    assert resp.status == 200
    with runtime.sessions() as s:
        again = s.get(WebhookDelivery, failed_id)
        assert again is not None and again.status == "pending" and again.attempts == 8
