"""CRM webhooks: which endpoints want which events, and the outbox of deliveries.

An event is written to ``webhook_deliveries`` (one row per subscribed webhook) in the same
transaction as the fact it reports (an attempt's outcome, an opt-out), so no event is lost
when the process dies; a delivery worker POSTs them later (see :mod:`voicecast.webhooks`'s
``deliver`` functions). Event types:

- ``attempt.completed``: one call attempt reached its final outcome;
- ``optout.created``: a number asked not to be called again (key press, call-back, CLI,
  import, console, API).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.errors import NotFoundError, VoicecastError
from voicecast.storage.models import Webhook, WebhookDelivery

EVENT_TYPES: tuple[str, ...] = ("attempt.completed", "optout.created")


class WebhookError(VoicecastError):
    """An invalid webhook definition; the message names the field."""


def check_url(url: str) -> str:
    """Validate a receiver URL: ``http`` or ``https``, a host, at most 2000 characters.

    Raises:
        WebhookError: the reason.
    """
    if len(url) > 2000 or any(c in url for c in "\r\n\t "):
        raise WebhookError("url: at most 2000 characters, no spaces or line breaks")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"url {url!r}: expected http:// or https:// with a host")
    return url


def check_events(events: list[str]) -> list[str]:
    """Validate a list of event types (at least one, each in :data:`EVENT_TYPES`).

    Raises:
        WebhookError: empty list or unknown type.
    """
    if not events:
        raise WebhookError(f"events: choose at least one of {', '.join(EVENT_TYPES)}")
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise WebhookError(
            f"events: unknown {', '.join(unknown)}; expected {', '.join(EVENT_TYPES)}"
        )
    return sorted(set(events))


def create_webhook(
    session: Session,
    url: str,
    events: list[str],
    *,
    description: str | None = None,
    secret: str | None = None,
) -> Webhook:
    """Add a receiver; its signing secret is generated (256 bits) unless given.

    Raises:
        WebhookError: invalid URL, events, description (at most 200 characters) or secret
            (16 to 200 characters).
    """
    if description is not None and len(description) > 200:
        raise WebhookError("description: at most 200 characters")
    if secret is not None and not 16 <= len(secret) <= 200:
        raise WebhookError("secret: 16 to 200 characters")
    hook = Webhook(
        url=check_url(url),
        events=check_events(events),
        description=description,
        secret=secret or secrets.token_urlsafe(32),
        enabled=True,
    )
    session.add(hook)
    session.flush()
    return hook


def get_webhook(session: Session, webhook_id: int) -> Webhook:
    """The webhook ``webhook_id``.

    Raises:
        NotFoundError: no such webhook.
    """
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFoundError(f"no webhook {webhook_id}")
    return hook


def delete_webhook(session: Session, webhook_id: int) -> None:
    """Remove a webhook and its deliveries.

    Raises:
        NotFoundError: no such webhook.
    """
    session.delete(get_webhook(session, webhook_id))


def enqueue_event(session: Session, event_type: str, data: dict[str, Any], now: datetime) -> int:
    """Queue ``event_type`` with ``data`` for every enabled webhook subscribed to it.

    The payload sent is ``{"id": <uuid>, "type": event_type, "created_at": <ISO 8601 UTC>,
    "data": data}``; one event id is shared by all its deliveries (receivers use it to
    drop duplicates). Returns the number of deliveries queued.

    Raises:
        ValueError: unknown event type.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    hooks = [
        h
        for h in session.scalars(select(Webhook).where(Webhook.enabled.is_(True))).all()
        if event_type in (h.events or [])
    ]
    if not hooks:
        return 0
    event_id = str(uuid.uuid4())
    payload = {
        "id": event_id,
        "type": event_type,
        "created_at": now.isoformat(timespec="seconds"),
        "data": data,
    }
    for hook in hooks:
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event_id=event_id,
                event_type=event_type,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(hooks)
