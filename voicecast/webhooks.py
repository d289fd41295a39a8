"""CRM webhooks: which endpoints want which events, the outbox of deliveries, and the worker
that POSTs them.

An event is written to ``webhook_deliveries`` (one row per subscribed webhook) in the same
transaction as the fact it reports (an attempt's outcome, an opt-out), so no event is lost
when the process dies; :class:`DeliveryWorker` (started once by ``voicecast serve``) POSTs
them later. Event types:

- ``attempt.completed``: one call attempt reached its final outcome
  (:func:`enqueue_attempt_completed`, called by the dialer controller);
- ``optout.created``: a number asked not to be called again (key press, call-back, CLI,
  console, API; :func:`enqueue_optout_created`, called by
  :func:`voicecast.compliance.suppression.add_opt_out` when the number is new);
- ``campaign.alert``: a campaign was paused because its calls fail at the PBX (trunk down,
  no route: :func:`enqueue_campaign_alert`, called by the dialer controller);
- ``webhook.test``: sent to one receiver from the console's "send a test event" button.

Each POST carries the JSON body ``{"id", "type", "created_at", "data"}`` and the headers:

- ``X-Voicecast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
  (HMAC: RFC 2104; SHA-256: FIPS 180-4); the receiver checks it with
  :func:`verify_signature` (copy it: it needs only the standard library);
- ``X-Voicecast-Event``: the event type; ``X-Voicecast-Delivery``: the delivery id (the same
  on every retry of one delivery); ``Content-Type: application/json``.

A 2xx answer marks the delivery ``delivered``; anything else (other status, redirect,
timeout, connection error) schedules a retry after an exponential back-off with jitter
(:func:`retry_delay`: about 10 s, 30 s, 1.5 min, 4.5 min ... capped at 1 h) until
``[web] webhook_max_attempts`` tries, then ``failed``. Delivery is at least once: receivers
drop duplicates by the payload's ``id`` (shared by every delivery of one event).

Retention: the payloads carry the callee's number in clear (E.164), which the CRM needs,
whereas the opt-out list itself keeps keyed hashes only. A finished delivery (``delivered``
or ``failed``) is therefore deleted :data:`DELIVERY_KEEP` (30 days) after it finished
(:func:`purge_deliveries`, run by :class:`DeliveryWorker` at start and then every hour).

The outbox runs on the wall clock (UTC): due times are compared with the real time, even
when the controller's clock is shifted for calling-window tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from voicecast.clock import Clock, SystemClock
from voicecast.errors import NotFoundError, VoicecastError
from voicecast.storage.models import (
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    Webhook,
    WebhookDelivery,
)

log = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = ("attempt.completed", "optout.created", "campaign.alert")
TEST_EVENT = "webhook.test"
"""The event type of the console's "send a test event" (sent to one receiver only)."""
DELIVERY_STATUSES: tuple[str, ...] = ("pending", "delivered", "failed")

SIGNATURE_HEADER = "X-Voicecast-Signature"
EVENT_HEADER = "X-Voicecast-Event"
DELIVERY_HEADER = "X-Voicecast-Delivery"
SIGNATURE_TOLERANCE = 300
"""Seconds a signature's timestamp may differ from the receiver's clock (replay window)."""

RETRY_BASE = 10.0  # seconds before the first retry
RETRY_FACTOR = 3.0  # each retry waits this many times longer than the previous one
RETRY_CAP = 3600.0  # seconds: the longest wait between two tries
RETRY_JITTER = 0.2  # +-20 % random spread, so retries of many deliveries do not align

DELIVERY_KEEP = timedelta(days=30)
"""How long a finished delivery (``delivered`` or ``failed``) is kept, counted from when it
finished, before :func:`purge_deliveries` deletes it with its payload.

A payload holds personal data (the callee's E.164 number, the call's outcome) that the
receiving CRM needs; once it is delivered, or given up, voicecast keeps it only for the
console's delivery log (support, "what did we send?") and then deletes it: GDPR art.
5(1)(c) (data minimisation) and 5(1)(e) (storage limitation). A later ``[web]
webhook_keep_days`` setting is meant to replace this default."""
PURGE_INTERVAL = 3600.0
"""Seconds between two purges of finished deliveries by :class:`DeliveryWorker`."""


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
    return len(_queue(session, subscribers(session, event_type), event_type, data, now))


def _queue(
    session: Session, hooks: list[Webhook], event_type: str, data: dict[str, Any], now: datetime
) -> list[WebhookDelivery]:
    """One event (its envelope, one event id) queued for each of ``hooks``, due ``now``."""
    if not hooks:
        return []
    event_id = str(uuid.uuid4())
    payload = {
        "id": event_id,
        "type": event_type,
        "created_at": now.isoformat(timespec="seconds"),
        "data": data,
    }
    deliveries = [
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
        for hook in hooks
    ]
    session.add_all(deliveries)
    return deliveries


def subscribers(session: Session, event_type: str) -> list[Webhook]:
    """The enabled webhooks subscribed to ``event_type`` (empty when none: callers skip
    building the event's data)."""
    return [
        h
        for h in session.scalars(select(Webhook).where(Webhook.enabled.is_(True))).all()
        if event_type in (h.events or [])
    ]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value is not None else None


def enqueue_attempt_completed(session: Session, attempt: CallAttempt, now: datetime) -> int:
    """Queue ``attempt.completed`` for an attempt that just got its final outcome.

    Called in the transaction that stores the outcome (after the contact's row was moved on).
    ``data``: ``attempt_id``, ``campaign`` (name), ``campaign_id``, ``number`` (E.164),
    ``attempt_no`` (1 = first try), ``outcome``, ``final`` (True when the contact gets no
    further attempt), ``error``, ``amd`` (``{"status", "cause"}`` from Asterisk's AMD(),
    None when not run), ``hangup_cause`` (Q.850 cause code, ITU-T Q.850) and
    ``hangup_cause_text``, ``originate_sent_at`` / ``answered_at`` / ``ended_at`` (ISO 8601
    UTC or None), ``result`` (the scenario's ``set_result`` value), ``contact``
    (``{"id", "list_id", "source_line", "external_id", "fields"}``: the fields kept at
    import, ``external_id`` = ``fields["external_id"]`` when present) or None.
    ``now``: the wall-clock instant (aware). Returns the number of deliveries queued.
    """
    if not subscribers(session, "attempt.completed"):
        return 0
    campaign = session.get(Campaign, attempt.campaign_id)
    cc = session.get(CampaignContact, attempt.campaign_contact_id)
    contact = session.get(Contact, cc.contact_id) if cc is not None else None
    fields = dict(contact.fields or {}) if contact is not None else {}
    data: dict[str, Any] = {
        "attempt_id": attempt.id,
        "campaign": campaign.name if campaign is not None else None,
        "campaign_id": attempt.campaign_id,
        "number": attempt.number,
        "attempt_no": attempt.attempt_no,
        "outcome": attempt.outcome,
        "final": cc is not None and cc.state == "done",
        "error": attempt.error,
        "amd": (
            {"status": attempt.amd_status, "cause": attempt.amd_cause}
            if attempt.amd_status
            else None
        ),
        "hangup_cause": attempt.hangup_cause,
        "hangup_cause_text": attempt.hangup_cause_text,
        "originate_sent_at": _iso(attempt.originate_sent_at),
        "answered_at": _iso(attempt.answered_at),
        "ended_at": _iso(attempt.ended_at),
        "result": attempt.result,
        "contact": (
            {
                "id": contact.id,
                "list_id": contact.list_id,
                "source_line": contact.source_line,
                "external_id": fields.get("external_id"),
                "fields": fields,
            }
            if contact is not None
            else None
        ),
    }
    return enqueue_event(session, "attempt.completed", data, now)


def enqueue_campaign_alert(
    session: Session,
    campaign: Campaign,
    *,
    reason: str,
    failed_attempts: list[str],
    requeued: int,
    now: datetime,
) -> int:
    """Queue ``campaign.alert``: the dialer paused ``campaign`` because its calls all fail
    at the PBX (see :meth:`voicecast.dialer.controller.Dialer._raise_alert`).

    Called in the transaction that pauses the campaign. ``data``: ``campaign`` (name),
    ``campaign_id``, ``status`` (``paused``), ``reason`` (the campaign's status reason,
    with Asterisk's last error), ``failed_attempts`` (their ids), ``requeued`` (contacts
    put back to be dialled on resume). ``now``: the wall-clock instant (aware). Returns
    the number of deliveries queued.
    """
    if not subscribers(session, "campaign.alert"):
        return 0
    data = {
        "campaign": campaign.name,
        "campaign_id": campaign.id,
        "status": campaign.status,
        "reason": reason,
        "failed_attempts": failed_attempts,
        "requeued": requeued,
    }
    return enqueue_event(session, "campaign.alert", data, now)


def enqueue_optout_created(
    session: Session,
    e164: str,
    *,
    source: str,
    recorded_at: datetime,
    campaign_id: int | None,
    now: datetime,
) -> int:
    """Queue ``optout.created`` for a number that was not opted out yet.

    ``data``: ``number`` (E.164: the receiver's CRM needs it; voicecast itself keeps only
    its keyed hash), ``source`` (as :func:`~voicecast.compliance.suppression.add_opt_out`
    takes it: ``key-press``, ``call-back``, ``cli``, ``api``, ``console``...),
    ``recorded_at`` (ISO 8601 UTC: when the person asked), ``campaign_id`` and ``campaign``
    (name) of the campaign that received the request, or None. ``now``: the wall-clock
    instant (aware). Returns the number of deliveries queued.
    """
    if not subscribers(session, "optout.created"):
        return 0
    campaign = session.get(Campaign, campaign_id) if campaign_id is not None else None
    data = {
        "number": e164,
        "source": source,
        "recorded_at": _iso(recorded_at),
        "campaign_id": campaign_id,
        "campaign": campaign.name if campaign is not None else None,
    }
    return enqueue_event(session, "optout.created", data, now)


def enqueue_test(session: Session, webhook_id: int, now: datetime) -> WebhookDelivery:
    """Queue a ``webhook.test`` event for one receiver (whatever events it subscribes to).

    Raises:
        NotFoundError: no such webhook.
        WebhookError: the webhook is disabled (enable it first).
    """
    hook = get_webhook(session, webhook_id)
    if not hook.enabled:
        raise WebhookError(f"webhook {webhook_id} is disabled: enable it to send a test event")
    data = {"webhook_id": hook.id, "message": "test event from voicecast"}
    (delivery,) = _queue(session, [hook], TEST_EVENT, data, now)
    session.flush()
    return delivery


def list_webhooks(session: Session) -> list[Webhook]:
    """Every webhook, oldest first."""
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def set_enabled(session: Session, webhook_id: int, enabled: bool) -> Webhook:
    """Enable or disable a webhook. A disabled webhook gets no new events, and its pending
    deliveries wait (they are sent when it is enabled again).

    Raises:
        NotFoundError: no such webhook.
    """
    hook = get_webhook(session, webhook_id)
    hook.enabled = enabled
    return hook


def recent_deliveries(
    session: Session,
    *,
    limit: int = 50,
    webhook_id: int | None = None,
    status: str | None = None,
) -> list[WebhookDelivery]:
    """The latest deliveries (newest first), optionally of one webhook and/or one status.

    Raises:
        WebhookError: ``status`` is not one of :data:`DELIVERY_STATUSES`; ``limit`` not in
            1..1000.
    """
    if status is not None and status not in DELIVERY_STATUSES:
        raise WebhookError(f"status {status!r}: expected one of {', '.join(DELIVERY_STATUSES)}")
    if not 1 <= limit <= 1000:
        raise WebhookError("limit: 1 to 1000")
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query))


def delivery_counts(session: Session) -> dict[str, int]:
    """Deliveries by status (every status of :data:`DELIVERY_STATUSES`, 0 when none)."""
    counts = dict.fromkeys(DELIVERY_STATUSES, 0)
    for status, n in session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    ).all():
        counts[str(status)] = int(n)
    return counts


def retry_delivery(session: Session, delivery_id: int, now: datetime) -> WebhookDelivery:
    """Send a ``failed`` (or still ``pending``) delivery again at once; its attempt count
    is kept, so a failed one that fails again is ``failed`` again after that one try.

    Raises:
        NotFoundError: no such delivery.
        WebhookError: it was delivered already.
    """
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFoundError(f"no webhook delivery {delivery_id}")
    if delivery.status == "delivered":
        raise WebhookError(f"delivery {delivery_id} was delivered already")
    delivery.status = "pending"
    delivery.next_attempt_at = now
    return delivery


def purge_deliveries(session: Session, now: datetime, keep: timedelta = DELIVERY_KEEP) -> int:
    """Delete the finished deliveries older than ``keep``; return how many were deleted.

    A ``delivered`` delivery goes once its ``delivered_at`` is at or before ``now - keep``;
    a ``failed`` one once its last try (``last_attempt_at``, else ``created_at``) is. Pending
    deliveries, however old (a disabled webhook's), are never deleted: they are still to be
    sent. Storage limitation: see :data:`DELIVERY_KEEP`. Does not commit: run it inside the
    caller's transaction.

    Args:
        session: a session in a transaction.
        now: the current instant, timezone-aware (UTC).
        keep: how long a finished delivery is kept (positive).

    Raises:
        ValueError: ``now`` is naive or ``keep`` is not positive.
    """
    if now.tzinfo is None:
        raise ValueError("purge_deliveries needs an aware datetime")
    if keep <= timedelta(0):
        raise ValueError(f"keep must be positive, not {keep}")
    cutoff = now - keep
    result = session.execute(
        delete(WebhookDelivery)
        .where(
            or_(
                and_(
                    WebhookDelivery.status == "delivered",
                    WebhookDelivery.delivered_at <= cutoff,
                ),
                and_(
                    WebhookDelivery.status == "failed",
                    func.coalesce(WebhookDelivery.last_attempt_at, WebhookDelivery.created_at)
                    <= cutoff,
                ),
            )
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --------------------------------------------------------------------------- signing


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact UTF-8 JSON with sorted keys."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode(
        "utf-8"
    )


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Voicecast-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds):
    ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(
        secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, header: str, body: bytes, now: float, tolerance: float = SIGNATURE_TOLERANCE
) -> bool:
    """Check a webhook's ``X-Voicecast-Signature`` header (for receivers: copy this function,
    it needs only ``hashlib`` and ``hmac`` from the standard library).

    Args:
        secret: the webhook's secret (shown once when the webhook was created).
        header: the ``X-Voicecast-Signature`` header, ``t=<unix seconds>,v1=<hex>`` (several
            ``v1=`` entries are accepted: any one matching is enough).
        body: the raw request body, byte for byte as received (not re-serialised JSON).
        now: the receiver's current time, Unix seconds (``time.time()``).
        tolerance: seconds the timestamp may differ from ``now``; a larger gap is refused
            (replays of an old request).

    Returns:
        True when the timestamp is within ``tolerance`` and one ``v1`` equals
        ``hex(HMAC-SHA256(secret, "<t>." + body))`` (RFC 2104 HMAC, compared in constant
        time); False otherwise, including for a malformed header.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1" and value:
            candidates.append(value.strip())
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(
        secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, c) for c in candidates)


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before the next try of a delivery that failed ``attempts`` times
    (>= 1): ``RETRY_BASE * RETRY_FACTOR ** (attempts - 1)`` (10 s, 30 s, 90 s, 270 s...),
    spread by +-:data:`RETRY_JITTER` at random, at most :data:`RETRY_CAP` (1 h)."""
    base = RETRY_BASE * RETRY_FACTOR ** max(0, min(attempts - 1, 20))
    spread = (rng or random).uniform(1.0 - RETRY_JITTER, 1.0 + RETRY_JITTER)
    return min(RETRY_CAP, base * spread)


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class DeliveryJob:
    """One claimed delivery, ready to POST: ``body`` is the exact bytes to send and sign."""

    id: int
    webhook_id: int
    url: str
    secret: str
    event_type: str
    body: bytes
    attempts: int


def claim_due(
    session: Session,
    now: datetime,
    limit: int,
    lease: float,
    *,
    busy: Mapping[int, int] | None = None,
    per_webhook: int | None = None,
) -> list[DeliveryJob]:
    """Claim up to ``limit`` pending deliveries due at ``now`` (UTC) of enabled webhooks,
    oldest due first; with ``per_webhook``, at most that many per webhook counting the
    ``busy`` ones (webhook id -> POSTs already in flight), so that one slow receiver cannot
    take every slot from the others.

    A claimed delivery stays ``pending`` with ``next_attempt_at`` moved ``lease`` seconds
    ahead, so another worker does not take it and, should this process die during the
    POST, it is tried again once the lease has passed.
    """
    taken = dict(busy or {})
    query = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            Webhook.enabled.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    )
    if per_webhook is not None:
        full = [h for h, n in taken.items() if n >= per_webhook]
        if full:
            query = query.where(WebhookDelivery.webhook_id.not_in(full))
        query = query.limit(limit * per_webhook + limit)  # room to skip a crowded webhook
    else:
        query = query.limit(limit)
    rows = session.execute(query).all()
    jobs: list[DeliveryJob] = []
    until = now + timedelta(seconds=lease)
    for delivery, hook in rows:
        if len(jobs) >= limit:
            break
        if per_webhook is not None and taken.get(hook.id, 0) >= per_webhook:
            continue
        claimed = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            continue
        taken[hook.id] = taken.get(hook.id, 0) + 1
        jobs.append(
            DeliveryJob(
                id=delivery.id,
                webhook_id=hook.id,
                url=hook.url,
                secret=hook.secret,
                event_type=delivery.event_type,
                body=encode_body(delivery.payload),
                attempts=delivery.attempts,
            )
        )
    return jobs


def record_attempt(
    session: Session,
    delivery_id: int,
    now: datetime,
    *,
    http_status: int | None,
    error: str | None,
    max_attempts: int,
    rng: random.Random | None = None,
) -> str | None:
    """Store the result of one POST and decide what comes next.

    ``http_status``: the receiver's status, None when no answer came (``error`` says why).
    A 2xx is ``delivered``; otherwise the delivery is retried after :func:`retry_delay`, or
    ``failed`` once it was tried ``max_attempts`` times. Returns the new status, or None
    when the delivery no longer exists (its webhook was deleted meanwhile).
    """
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return None
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status = http_status
    ok = http_status is not None and 200 <= http_status < 300
    delivery.last_error = None if ok else (error or f"HTTP {http_status}")[:1000]
    if ok:
        delivery.status = "delivered"
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.attempts >= max_attempts:
        delivery.status = "failed"
        delivery.next_attempt_at = None
    else:
        delivery.status = "pending"
        delivery.next_attempt_at = now + timedelta(seconds=retry_delay(delivery.attempts, rng))
    return delivery.status


DELIVERY_CONCURRENCY = 8
"""POSTs in flight at once."""
PER_WEBHOOK_CONCURRENCY = 2
"""POSTs in flight at once to one webhook: a receiver that hangs holds at most this many
slots (each until ``[web] webhook_timeout``), never the others' slots."""
POLL_INTERVAL = 1.0  # seconds between looks at the outbox
LEASE_MARGIN = 30.0  # seconds beyond the POST timeout before a claimed delivery is retaken
USER_AGENT = "voicecast-webhooks/1"


class DeliveryWorker:
    """The asyncio task that POSTs due deliveries (one per ``voicecast serve`` process).

    Every :data:`POLL_INTERVAL` seconds (or at once after :meth:`wake` or a POST ending) it
    claims due deliveries (:func:`claim_due`) into the free slots of ``concurrency``, POSTs
    each with :mod:`aiohttp` (``timeout`` seconds in all, redirects not followed) and
    stores the result (:func:`record_attempt`). Database work runs in worker threads
    (:func:`asyncio.to_thread`) so that neither the outbox nor a slow receiver ever blocks
    the event loop the dialer shares. At start and then every ``purge_interval`` seconds it
    deletes the deliveries finished more than ``keep`` ago (:func:`purge_deliveries`).

    Args:
        sessions: SQLAlchemy session factory.
        timeout: seconds per POST (``[web] webhook_timeout``).
        max_attempts: tries before ``failed`` (``[web] webhook_max_attempts``).
        concurrency: POSTs in flight at once.
        per_webhook: POSTs in flight at once to one webhook (:data:`PER_WEBHOOK_CONCURRENCY`):
            a hanging receiver holds no more slots than that.
        poll_interval: seconds between looks at the outbox when idle.
        clock: wall clock for due times and the purge's cutoff (default: the system clock).
        rng: randomness of the back-off jitter (tests pass a seeded one).
        keep: how long finished deliveries are kept (:data:`DELIVERY_KEEP`).
        purge_interval: seconds between two purges (:data:`PURGE_INTERVAL`).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        timeout: float = 10.0,
        max_attempts: int = 8,
        concurrency: int = DELIVERY_CONCURRENCY,
        per_webhook: int = PER_WEBHOOK_CONCURRENCY,
        poll_interval: float = POLL_INTERVAL,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        keep: timedelta = DELIVERY_KEEP,
        purge_interval: float = PURGE_INTERVAL,
    ) -> None:
        if keep <= timedelta(0):
            raise ValueError(f"keep must be positive, not {keep}")
        self.sessions = sessions
        self.keep = keep
        self.purge_interval = purge_interval
        self._next_purge = time.monotonic()  # the first purge runs at once
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.concurrency = concurrency
        self.per_webhook = per_webhook
        self._per_hook: Counter[int] = Counter()  # webhook id -> POSTs in flight
        self.poll_interval = poll_interval
        self.clock: Clock = clock or SystemClock()
        self.rng = rng
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    @property
    def inflight(self) -> int:
        """POSTs in progress."""
        return len(self._inflight)

    async def run(self) -> None:
        """POST due deliveries until cancelled (in-flight POSTs are cancelled with it; their
        deliveries are retaken after their lease)."""
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as http:
            try:
                while True:
                    self._wake.clear()
                    await self._purge_if_due()
                    try:
                        await self._fill(http)
                    except Exception:
                        log.exception("webhook outbox: cannot claim deliveries")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            finally:
                for task in list(self._inflight):
                    task.cancel()
                await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _purge_if_due(self) -> None:
        """Run :func:`purge_deliveries` when ``purge_interval`` seconds (monotonic) have
        passed since the last one; a failure is logged and tried again at the next one."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self.purge_interval
        now = self.clock.now()
        try:
            purged = await asyncio.to_thread(
                self._db, lambda s: purge_deliveries(s, now, self.keep)
            )
        except Exception:
            log.exception("webhook outbox: cannot purge finished deliveries")
            return
        if purged:
            log.info(
                "webhook outbox: deleted %d delivery(ies) finished over %s ago", purged, self.keep
            )

    async def _fill(self, http: aiohttp.ClientSession) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return
        now = self.clock.now()
        lease = self.timeout + LEASE_MARGIN
        busy = dict(self._per_hook)
        jobs = await asyncio.to_thread(
            self._db,
            lambda s: claim_due(s, now, free, lease, busy=busy, per_webhook=self.per_webhook),
        )
        for job in jobs:
            self._per_hook[job.webhook_id] += 1
            task = asyncio.create_task(self._deliver(http, job), name=f"webhook-{job.id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    def _db(self, fn: Callable[[Session], Any]) -> Any:
        with self.sessions() as s, s.begin():
            return fn(s)

    async def _deliver(self, http: aiohttp.ClientSession, job: DeliveryJob) -> None:
        try:
            http_status, error = await self.post(http, job)
        finally:
            self._per_hook[job.webhook_id] -= 1
            if self._per_hook[job.webhook_id] <= 0:
                del self._per_hook[job.webhook_id]
        now = self.clock.now()
        try:
            status = await asyncio.to_thread(
                self._db,
                lambda s: record_attempt(
                    s,
                    job.id,
                    now,
                    http_status=http_status,
                    error=error,
                    max_attempts=self.max_attempts,
                    rng=self.rng,
                ),
            )
        except Exception:
            log.exception("webhook delivery %s: cannot store the result", job.id)
            return
        if status != "delivered":
            log.warning(
                "webhook delivery %s to %s (try %d): %s -> %s",
                job.id,
                job.url,
                job.attempts + 1,
                error,
                status,
            )

    async def post(
        self, http: aiohttp.ClientSession, job: DeliveryJob
    ) -> tuple[int | None, str | None]:
        """POST one delivery, signed now; returns ``(HTTP status or None, error or None)``."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(job.secret, job.body, int(time.time())),
            EVENT_HEADER: job.event_type,
            DELIVERY_HEADER: str(job.id),
        }
        try:
            async with http.post(
                job.url,
                data=job.body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                if 200 <= resp.status < 300:
                    return resp.status, None
                text = (await resp.content.read(300)).decode("utf-8", "replace")
                text = " ".join(text.split())
                if 300 <= resp.status < 400:
                    where = resp.headers.get("Location", "?")
                    return resp.status, f"HTTP {resp.status}: redirect to {where} not followed"
                return resp.status, f"HTTP {resp.status}" + (f": {text}" if text else "")
        except TimeoutError:
            return None, f"timeout: no complete answer within {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            return None, f"connection error: {exc.__class__.__name__}: {exc}"[:500]
        except (OSError, ValueError) as exc:
            return None, f"error: {exc.__class__.__name__}: {exc}"[:500]
