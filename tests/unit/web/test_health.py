"""/healthz and /metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from voicecast.app import Runtime
from voicecast.storage.models import Campaign
from voicecast.web.server import WebContext
from voicecast.webhooks import create_webhook, enqueue_event

from .live_data import add_attempt, add_gate_decision, seed_campaign


def fake_dialer(
    connected: bool = True, heartbeat_age: float | None = 0.5, storage_error: str | None = None
) -> Any:
    """What /healthz reads of a Dialer: ``pbx.connected``, ``heartbeat``, ``storage_error``."""
    beat = None if heartbeat_age is None else time.monotonic() - heartbeat_age
    return SimpleNamespace(
        pbx=SimpleNamespace(connected=connected), heartbeat=beat, storage_error=storage_error
    )


async def test_healthz_without_a_dialer_is_ok_with_the_dialer_checks_not_applicable(
    client: TestClient,
) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["ami"] == {"ok": None, "detail": "not in this process"}
    assert body["checks"]["scheduler"] == {"ok": None, "detail": "not in this process"}


async def test_healthz_with_a_healthy_dialer(client: TestClient, web_ctx: WebContext) -> None:
    web_ctx.dialer = fake_dialer()
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "ok"
    assert body["checks"]["ami"] == {"ok": True, "detail": "connected"}
    assert body["checks"]["scheduler"]["ok"] is True


async def test_healthz_degraded_when_ami_is_down_or_the_loop_is_stuck(
    client: TestClient, web_ctx: WebContext
) -> None:
    web_ctx.dialer = fake_dialer(connected=False)
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503 and body["status"] == "degraded"
    assert body["checks"]["ami"]["ok"] is False and body["checks"]["scheduler"]["ok"] is True

    web_ctx.dialer = fake_dialer(heartbeat_age=60.0)
    body = await (await client.get("/healthz")).json()
    assert body["status"] == "degraded" and body["checks"]["scheduler"]["ok"] is False
    assert "stuck" in body["checks"]["scheduler"]["detail"]

    web_ctx.dialer = fake_dialer(storage_error="the disk holding the database is full (x)")
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503 and body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] is True  # reads still work
    assert body["checks"]["storage"] == {
        "ok": False,
        "detail": "dialling paused: the disk holding the database is full (x)",
    }

    web_ctx.dialer = fake_dialer(heartbeat_age=None)
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["scheduler"]["ok"] is False


async def test_healthz_down_when_the_database_fails(
    client: TestClient, web_ctx: WebContext, runtime: Runtime
) -> None:
    def broken() -> Any:
        raise RuntimeError("database is gone")

    runtime.sessions = broken  # type: ignore[assignment]
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503 and body["status"] == "down"
    assert body["checks"]["database"] == {
        "ok": False,
        "detail": "RuntimeError: database is gone",
    }


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_show_the_rows_in_the_database(
    client: TestClient, web_ctx: WebContext, runtime: Runtime
) -> None:
    cid = seed_campaign(runtime, "Spring offer", contacts=5)
    seed_campaign(runtime, "Autumn", contacts=1)
    add_attempt(runtime, cid)  # up now
    add_attempt(runtime, cid, outcome="human", amd="HUMAN")
    add_attempt(runtime, cid, outcome="human", amd="HUMAN")
    add_attempt(runtime, cid, outcome="machine", amd="MACHINE")
    add_gate_decision(runtime, cid, "allow", "ok")
    add_gate_decision(runtime, cid, "defer", "outside_hours")
    add_gate_decision(runtime, cid, "defer", "outside_hours")
    with runtime.sessions() as s, s.begin():
        create_webhook(s, "https://crm.example.org/hook", ["optout.created"])
        enqueue_event(s, "optout.created", {"number": "+33199000010"}, datetime.now(UTC))

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    got = _samples(await resp.text())
    c = (("campaign", "Spring offer"),)
    assert got[("voicecast_calls_up", c)] == 1
    assert got[("voicecast_originates_total", c)] == 4
    assert got[("voicecast_outcomes_total", (*c, ("outcome", "human")))] == 2
    assert got[("voicecast_outcomes_total", (*c, ("outcome", "machine")))] == 1
    assert got[("voicecast_amd_total", (*c, ("status", "HUMAN")))] == 2
    assert got[("voicecast_amd_total", (*c, ("status", "MACHINE")))] == 1
    assert got[("voicecast_gate_decisions_total", (("reason", "ok"), ("verdict", "allow")))] == 1
    assert (
        got[("voicecast_gate_decisions_total", (("reason", "outside_hours"), ("verdict", "defer")))]
        == 2
    )
    assert got[("voicecast_webhook_deliveries", (("status", "pending"),))] == 1
    assert got[("voicecast_webhook_deliveries", (("status", "failed"),))] == 0
    assert ("voicecast_originates_total", (("campaign", "Autumn"),)) not in got
    assert got[("voicecast_calls_up", (("campaign", "Autumn"),))] == 0  # running, no call
    assert not any(name == "voicecast_ami_connected" for name, _ in got)  # no dialer here
    assert not any(name.startswith("python_") for name, _ in got)  # not the global registry

    assert not any(name == "voicecast_campaign_alert" for name, _ in got)  # no alert

    with runtime.sessions() as s, s.begin():
        autumn = s.scalars(select(Campaign).where(Campaign.name == "Autumn")).one()
        autumn.status = "paused"
        autumn.status_reason = "alert: the last 5 call(s) all failed at the PBX"
    got = _samples(await (await client.get("/metrics")).text())
    assert got[("voicecast_campaign_alert", (("campaign", "Autumn"),))] == 1
    assert ("voicecast_campaign_alert", c) not in got

    web_ctx.dialer = fake_dialer(connected=False)
    got = _samples(await (await client.get("/metrics")).text())
    assert got[("voicecast_ami_connected", ())] == 0
    web_ctx.dialer = fake_dialer(connected=True)
    got = _samples(await (await client.get("/metrics")).text())
    assert got[("voicecast_ami_connected", ())] == 1


class _Pbx:
    """Just enough of a PBX backend for a Dialer to start and idle."""

    def __init__(self) -> None:
        self.connected = True

    async def start(self, listener: Any, flow: Any) -> None:
        listener.on_connection(True)

    async def stop(self, *, grace: float = 0.0) -> None:
        return None

    async def list_channels(self) -> list[Any]:
        return []


async def test_healthz_reads_a_real_dialers_state(
    client: TestClient, web_ctx: WebContext, runtime: Runtime
) -> None:
    import asyncio

    from voicecast.campaigns.compliance import GateEnv
    from voicecast.config import ComplianceSettings
    from voicecast.dialer.controller import Dialer
    from voicecast.dialer.flow import FlowPlan

    pbx = _Pbx()
    dialer = Dialer(
        runtime.sessions,
        pbx,  # type: ignore[arg-type]
        lambda c: FlowPlan(message="m", voicemail_message="m"),
        gate=GateEnv.build(b"k" * 32, ComplianceSettings()),
    )
    web_ctx.dialer = dialer
    assert dialer.heartbeat is None
    await dialer.start()
    body = await (await client.get("/healthz")).json()
    assert body["checks"]["scheduler"]["ok"] is False  # run() not started yet
    runner = asyncio.create_task(dialer.run())
    try:
        await asyncio.sleep(0.2)
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "ok", body
        pbx.connected = False
        assert (await client.get("/healthz")).status == 503
    finally:
        await dialer.stop()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
