"""Webhooks console page (admin only): receivers and the status of their deliveries.

Routes (every POST carries the CSRF token; each answers with a redirect to ``/webhooks``
except the creation, which shows the new secret once):

- ``GET /webhooks``: receivers (URL, events, enabled), the add form, and the latest
  deliveries (status, attempts, last HTTP status, last error, next retry); query
  ``status`` (``pending`` | ``delivered`` | ``failed``) and ``webhook`` (id) filter them.
- ``POST /webhooks``: add a receiver (``url``, ``events`` (repeated), ``description``).
- ``POST /webhooks/{id}/enable`` | ``/disable`` | ``/delete`` | ``/test`` (queue a
  ``webhook.test`` event for this receiver).
- ``POST /webhooks/deliveries/{id}/retry``: send a failed delivery again now.

The worker that sends deliveries is :class:`voicecast.webhooks.DeliveryWorker` (started by
``voicecast serve``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.orm import Session

from voicecast import webhooks
from voicecast.storage.models import Webhook, WebhookDelivery, utcnow
from voicecast.web.console_common import time_formatter
from voicecast.web.server import HTTPProblem, context, db_call, gettext, render, require

DELIVERIES_SHOWN = 50


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise HTTPProblem(400, "invalid", f"{name}: expected a whole number")
    return int(raw)


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    created: Webhook | None = None,
    form: dict[str, Any] | None = None,
) -> web.Response:
    _ = gettext(request)
    delivery_status = request.query.get("status") or None
    if delivery_status is not None and delivery_status not in webhooks.DELIVERY_STATUSES:
        raise HTTPProblem(
            400, "invalid", f"status: expected one of {', '.join(webhooks.DELIVERY_STATUSES)}"
        )
    webhook_id = _int_query(request, "webhook")

    def load(s: Session) -> tuple[list[Webhook], list[WebhookDelivery], dict[str, int]]:
        return (
            webhooks.list_webhooks(s),
            webhooks.recent_deliveries(
                s, limit=DELIVERIES_SHOWN, webhook_id=webhook_id, status=delivery_status
            ),
            webhooks.delivery_counts(s),
        )

    hooks, deliveries, counts = await db_call(request, load)
    notices = {
        "created": _("Webhook added."),
        "deleted": _("Webhook deleted."),
        "enabled": _("Webhook enabled."),
        "disabled": _("Webhook disabled: its pending deliveries wait until it is enabled."),
        "test": _("Test event queued: see its delivery below."),
        "retry": _("Delivery queued again."),
    }
    status_labels = {
        "pending": _("to send"),
        "delivered": _("delivered"),
        "failed": _("failed for good"),
    }
    return render(
        request,
        "webhooks.html",
        status=status,
        hooks=hooks,
        urls={h.id: h.url for h in hooks},
        deliveries=deliveries,
        counts=counts,
        event_types=webhooks.EVENT_TYPES,
        statuses=webhooks.DELIVERY_STATUSES,
        status_labels=status_labels,
        keep_days=context(request).runtime.settings.web.webhook_keep_days,
        filter_status=delivery_status or "",
        filter_webhook=webhook_id,
        notice=notices.get(request.query.get("done", "")),
        error=error,
        created=created,
        form=form or {"url": "", "events": list(webhooks.EVENT_TYPES), "description": ""},
        when=time_formatter(context(request).runtime.report_zone()),
        max_attempts=context(request).runtime.settings.web.webhook_max_attempts,
    )


async def webhooks_page(request: web.Request) -> web.Response:
    """``GET /webhooks`` (admin)."""
    require(request, "admin")
    return await _page(request)


async def create(request: web.Request) -> web.Response:
    """``POST /webhooks`` (admin): add a receiver; the page then shows its secret once."""
    require(request, "admin")
    data = await request.post()
    url = str(data.get("url", "")).strip()
    events = [str(e) for e in data.getall("events", [])]
    description = str(data.get("description", "")).strip() or None
    form = {"url": url, "events": events, "description": description or ""}
    try:
        hook = await db_call(
            request,
            lambda s: webhooks.create_webhook(s, url, events, description=description),
        )
    except webhooks.WebhookError as exc:
        return await _page(request, status=400, error=str(exc), form=form)
    return await _page(request, created=hook)


def _hook_id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _back(done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/webhooks?done={done}")


async def enable(request: web.Request) -> web.Response:
    """``POST /webhooks/{id}/enable`` (admin)."""
    require(request, "admin")
    hook_id = _hook_id(request)
    await db_call(request, lambda s: webhooks.set_enabled(s, hook_id, True).id)
    raise _back("enabled")


async def disable(request: web.Request) -> web.Response:
    """``POST /webhooks/{id}/disable`` (admin)."""
    require(request, "admin")
    hook_id = _hook_id(request)
    await db_call(request, lambda s: webhooks.set_enabled(s, hook_id, False).id)
    raise _back("disabled")


async def delete(request: web.Request) -> web.Response:
    """``POST /webhooks/{id}/delete`` (admin): the receiver and its deliveries."""
    require(request, "admin")
    hook_id = _hook_id(request)
    await db_call(request, lambda s: webhooks.delete_webhook(s, hook_id))
    raise _back("deleted")


async def send_test(request: web.Request) -> web.Response:
    """``POST /webhooks/{id}/test`` (admin): queue a ``webhook.test`` event."""
    require(request, "admin")
    hook_id = _hook_id(request)
    now = utcnow()  # the outbox runs on the wall clock (see voicecast.webhooks)
    await db_call(request, lambda s: webhooks.enqueue_test(s, hook_id, now).id)
    raise _back("test")


async def retry(request: web.Request) -> web.Response:
    """``POST /webhooks/deliveries/{id}/retry`` (admin)."""
    require(request, "admin")
    delivery_id = _hook_id(request)
    now = utcnow()
    await db_call(request, lambda s: webhooks.retry_delivery(s, delivery_id, now).id)
    raise _back("retry")


def setup(app: web.Application) -> None:
    """Register the webhooks console routes."""
    app.router.add_get("/webhooks", webhooks_page)
    app.router.add_post("/webhooks", create)
    app.router.add_post(r"/webhooks/{id:\d+}/enable", enable)
    app.router.add_post(r"/webhooks/{id:\d+}/disable", disable)
    app.router.add_post(r"/webhooks/{id:\d+}/delete", delete)
    app.router.add_post(r"/webhooks/{id:\d+}/test", send_test)
    app.router.add_post(r"/webhooks/deliveries/{id:\d+}/retry", retry)
