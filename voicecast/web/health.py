"""``GET /healthz`` (liveness/readiness for supervisors and load balancers) and
``GET /metrics`` (Prometheus text exposition format).

Neither needs a login, like a Prometheus node exporter: they reveal counts, never numbers
or names of people, and the web server listens on loopback by default (``[web] host``);
when it listens elsewhere, keep these two paths behind the reverse proxy's own rules.

``/healthz`` answers JSON::

    {"status": "ok" | "degraded" | "down",
     "checks": {"database":  {"ok": true, "detail": "...", "latency_ms": 1.2},
                "ami":       {"ok": true | false | null, "detail": "..."},
                "scheduler": {"ok": true | false | null, "detail": "..."},
                "storage":   {"ok": true | false | null, "detail": "..."}}}

``storage`` is false while the dialer finds the database refusing writes (disk full,
read-only, locked: :attr:`voicecast.dialer.controller.Dialer.storage_error`, whose reason
and database it shows); dialling is paused meanwhile. ``database`` only reads (``SELECT
1``), which a full or read-only database still answers.

``ok`` is null for a check that does not apply: ``ami``, ``scheduler`` and ``storage``
when no dialer runs in this process (the web application alone, or ``voicecast serve`` in
the instant before its dialer has started). ``status``: ``down`` when the database fails,
``degraded`` when the AMI connection, the dialer's scheduler or its writes fail, else
``ok``. HTTP 200 when ``ok``, 503 otherwise.

``/metrics`` reads the database at scrape time (:class:`DatabaseCollector`), so the figures
are right whichever process dials.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from voicecast.storage.models import CallAttempt, Campaign, GateDecision
from voicecast.web.server import CTX, context
from voicecast.webhooks import delivery_counts

if TYPE_CHECKING:
    from voicecast.dialer.controller import Dialer

DB_TIMEOUT = 3.0
"""Seconds the database check may take before it counts as failed."""
HEARTBEAT_MAX_AGE = 10.0
"""Seconds since the dialer's run loop last went round before the scheduler counts as dead
(the loop goes round at least once a second)."""
NOT_HERE = "not in this process"

Check = dict[str, Any]


async def check_database(sessions: sessionmaker[Session], timeout: float = DB_TIMEOUT) -> Check:
    """``SELECT 1`` in a worker thread within ``timeout`` seconds."""

    def ping() -> None:
        with sessions() as s:
            s.execute(text("SELECT 1"))

    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout)
    except TimeoutError:
        return {"ok": False, "detail": f"no answer within {timeout:g} s"}
    except Exception as exc:
        return {"ok": False, "detail": f"{exc.__class__.__name__}: {str(exc)[:200]}"}
    latency = round((time.monotonic() - started) * 1000, 1)
    return {"ok": True, "detail": "reachable", "latency_ms": latency}


def check_ami(dialer: Dialer | None) -> Check:
    """Whether the dialer's PBX backend (AMI) is connected; null when no dialer runs here."""
    if dialer is None:
        return {"ok": None, "detail": NOT_HERE}
    nodes = [n.name for n in getattr(dialer, "nodes", ())]
    if len(nodes) > 1:  # several Asterisk nodes: up while one is; the detail names each
        up: set[str] = getattr(dialer, "nodes_up", set())
        down = [n for n in nodes if n not in up]
        detail = f"nodes up: {', '.join(n for n in nodes if n in up) or 'none'}"
        if down:
            detail += f"; down: {', '.join(down)}"
        return {"ok": dialer.pbx.connected, "detail": detail}
    if dialer.pbx.connected:
        return {"ok": True, "detail": "connected"}
    return {"ok": False, "detail": "not connected to Asterisk (AMI)"}


def check_scheduler(dialer: Dialer | None, now: float | None = None) -> Check:
    """Whether the dialer's run loop goes round (its :attr:`Dialer.heartbeat` is younger
    than :data:`HEARTBEAT_MAX_AGE` seconds); null when no dialer runs here. ``now``:
    ``time.monotonic()`` (default: the current one)."""
    if dialer is None:
        return {"ok": None, "detail": NOT_HERE}
    beat = dialer.heartbeat
    if beat is None:
        return {"ok": False, "detail": "the dialer's run loop has not started"}
    age = (time.monotonic() if now is None else now) - beat
    if age > HEARTBEAT_MAX_AGE:
        return {"ok": False, "detail": f"the dialer's run loop is stuck or ended ({age:.0f} s)"}
    return {"ok": True, "detail": f"alive ({age:.1f} s ago)", "age_seconds": round(age, 1)}


def check_storage(dialer: Dialer | None) -> Check:
    """Whether the dialer's database takes writes (:attr:`Dialer.storage_error` is None);
    null when no dialer runs here."""
    if dialer is None:
        return {"ok": None, "detail": NOT_HERE}
    error = dialer.storage_error
    if error is not None:
        return {"ok": False, "detail": f"dialling paused: {error}"}
    return {"ok": True, "detail": "writes succeed"}


def overall(checks: dict[str, Check]) -> str:
    """``down`` (database failed), ``degraded`` (another check failed) or ``ok``."""
    if checks["database"]["ok"] is not True:
        return "down"
    if any(c["ok"] is False for c in checks.values()):
        return "degraded"
    return "ok"


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: see the module docstring."""
    ctx = context(request)
    checks = {
        "database": await check_database(ctx.runtime.sessions),
        "ami": check_ami(ctx.dialer),
        "scheduler": check_scheduler(ctx.dialer),
        "storage": check_storage(ctx.dialer),
    }
    status = overall(checks)
    return web.json_response(
        {"status": status, "checks": checks}, status=200 if status == "ok" else 503
    )


class DatabaseCollector(Collector):
    """Prometheus collector reading the database at each scrape.

    Metrics (``campaign`` is the campaign's name):

    - ``voicecast_calls_up{campaign}`` (gauge): attempts sent to the PBX and not ended
      (every running campaign has one, 0 between calls);
    - ``voicecast_originates_total{campaign}`` (counter): attempts whose Originate was sent;
    - ``voicecast_outcomes_total{campaign,outcome}`` (counter): ended attempts by outcome;
    - ``voicecast_amd_total{campaign,status}`` (counter): attempts by AMD status;
    - ``voicecast_gate_decisions_total{verdict,reason}`` (counter): compliance gate
      decisions (``allow`` | ``defer`` | ``block``) by reason;
    - ``voicecast_webhook_deliveries{status}`` (gauge): webhook deliveries by status;
    - ``voicecast_campaign_alert{campaign}`` (gauge, 1): one per campaign paused with an
      ``alert:`` reason (its calls fail at the PBX), none otherwise: alert on its presence;
    - ``voicecast_ami_connected`` (gauge, 1/0): only when a dialer runs in this process
      (1 while it reaches at least one Asterisk node);
    - ``voicecast_pbx_node_up{node}`` (gauge, 1/0): each Asterisk node of that dialer.

    The counters count stored rows, so they only go down when rows are removed (a campaign
    deleted); Prometheus' ``rate()`` treats that as a counter reset.
    """

    def __init__(
        self, sessions: sessionmaker[Session], dialer: Callable[[], Dialer | None]
    ) -> None:
        self.sessions = sessions
        self.dialer = dialer

    def collect(self) -> Iterator[Metric]:
        """Yield every metric (runs the queries; called by ``generate_latest``)."""
        calls_up = GaugeMetricFamily(
            "voicecast_calls_up", "Calls sent to the PBX and not ended", labels=["campaign"]
        )
        originates = CounterMetricFamily(
            "voicecast_originates", "Originates sent to the PBX", labels=["campaign"]
        )
        outcomes = CounterMetricFamily(
            "voicecast_outcomes", "Ended call attempts by outcome", labels=["campaign", "outcome"]
        )
        amd = CounterMetricFamily(
            "voicecast_amd", "Call attempts by AMD status", labels=["campaign", "status"]
        )
        gate = CounterMetricFamily(
            "voicecast_gate_decisions",
            "Compliance gate decisions by verdict and reason",
            labels=["verdict", "reason"],
        )
        deliveries = GaugeMetricFamily(
            "voicecast_webhook_deliveries", "Webhook deliveries by status", labels=["status"]
        )
        alerts = GaugeMetricFamily(
            "voicecast_campaign_alert",
            "1 for each campaign the dialer paused with an alert (calls failing at the PBX)",
            labels=["campaign"],
        )
        name = Campaign.name

        def per_campaign(*columns: Any) -> Select[Any]:
            return (
                select(name, *columns, func.count())
                .select_from(CallAttempt)
                .join(Campaign, Campaign.id == CallAttempt.campaign_id)
                .group_by(name, *columns)
            )

        with self.sessions() as s:
            # every running campaign has a calls-up series (0 between calls)
            up = dict.fromkeys(s.scalars(select(name).where(Campaign.status == "running")), 0)
            for campaign, n in s.execute(
                per_campaign().where(
                    CallAttempt.originate_sent_at.is_not(None), CallAttempt.state != "ended"
                )
            ).all():
                up[campaign] = n
            for campaign, n in up.items():
                calls_up.add_metric([campaign], n)
            for campaign, n in s.execute(
                per_campaign().where(CallAttempt.originate_sent_at.is_not(None))
            ).all():
                originates.add_metric([campaign], n)
            for campaign, outcome, n in s.execute(
                per_campaign(CallAttempt.outcome).where(CallAttempt.outcome.is_not(None))
            ).all():
                outcomes.add_metric([campaign, str(outcome)], n)
            for campaign, status, n in s.execute(
                per_campaign(CallAttempt.amd_status).where(CallAttempt.amd_status.is_not(None))
            ).all():
                amd.add_metric([campaign, str(status)], n)
            for verdict, reason, n in s.execute(
                select(GateDecision.verdict, GateDecision.reason, func.count()).group_by(
                    GateDecision.verdict, GateDecision.reason
                )
            ).all():
                gate.add_metric([verdict, reason], n)
            for status, n in delivery_counts(s).items():
                deliveries.add_metric([status], n)
            for campaign in s.scalars(
                select(name).where(
                    Campaign.status == "paused", Campaign.status_reason.startswith("alert:")
                )
            ):
                alerts.add_metric([campaign], 1)
        yield from (calls_up, originates, outcomes, amd, gate, deliveries, alerts)
        dialer = self.dialer()
        if dialer is not None:
            yield GaugeMetricFamily(
                "voicecast_ami_connected",
                "1 when the dialer of this process is connected to Asterisk (AMI)",
                value=1 if dialer.pbx.connected else 0,
            )
            nodes = GaugeMetricFamily(
                "voicecast_pbx_node_up",
                "1 when this process's dialer reaches that Asterisk node (AMI) and places "
                "calls on it",
                labels=["node"],
            )
            reached: set[str] = getattr(dialer, "nodes_up", set())
            for node in getattr(dialer, "nodes", ()):
                nodes.add_metric([node.name], 1 if node.name in reached else 0)
            yield nodes


REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("metrics_registry", CollectorRegistry)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition format (prometheus_client's
    ``CONTENT_TYPE_LATEST``), no login (see the module docstring)."""
    registry = request.app[REGISTRY]
    body = await asyncio.to_thread(generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """Register ``/healthz`` and ``/metrics`` (with a registry of their own, not the
    process-wide default one)."""
    ctx = app[CTX]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(ctx.runtime.sessions, lambda: ctx.dialer))
    app[REGISTRY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
