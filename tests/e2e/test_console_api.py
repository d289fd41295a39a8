"""End-to-end: a CRM integrator's path through the REST API of a running ``voicecast serve``
on the sandbox Asterisk, with signed webhooks received by a test HTTP server.

Everything the integrator does goes over HTTP with an admin's bearer token (created from
the shell, as an operator would): register a webhook receiver, upload the message, import
the example list, create and start an informational campaign, poll its live status, read
the per-contact results, the webhook deliveries, ``/metrics`` and ``/healthz``. The
database and ``voicecast report`` are read only to check what the API and the receiver
saw against what was stored.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from voicecast.storage.models import CallAttempt
from voicecast.webhooks import verify_signature

from . import test_console_browser as browser_tests
from .conftest import REPO, Workspace

pytestmark = pytest.mark.e2e

served = browser_tests.served  # fixture: ``voicecast serve`` on the workspace, its base URL

EXAMPLE_LIST = REPO / "examples" / "contacts.csv"
EXAMPLE_MESSAGE = REPO / "sounds" / "example-message.wav"
EVENTS = ["attempt.completed", "optout.created"]
# examples/contacts.csv through the default flow (no scenario), retries 0: the last digit
# of the simulated number decides the callee's behaviour (see test_broadcast.py)
EXPECTED_BY_LAST_DIGIT = {
    "0": "human",
    "1": "opted_out",  # presses 9, the campaign's opt-out key, during the message
    "2": "machine",
    "3": "busy",
    "4": "no_answer",
    "5": "congestion",
    "6": "invalid_number",
    "7": "human",  # presses 1: no menu in the default flow, the message plays on
    "8": "machine",  # long greeting
    "9": "machine",  # silent answer, amd_on_silence=machine (the default)
}
CAMPAIGN_TIMEOUT = 120.0  # seconds for every contact to be done
# opener without proxies: the server and the receiver are on loopback
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- HTTP client


class ApiError(AssertionError):
    """An API answer with an unexpected status."""


@dataclass
class Api:
    """A bearer-token JSON client of the served ``/api/v1`` (and the public endpoints)."""

    base: str
    token: str

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` of one request (no status check)."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if auth:
            all_headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(
            self.base + path, data=body, headers=all_headers, method=method
        )
        try:
            with _OPENER.open(req, timeout=30) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        expect: int = 200,
    ) -> Any:
        """The JSON answer of one request that must answer ``expect``."""
        extra = dict(headers or {})
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            content_type = "application/json"
        if content_type:
            extra["Content-Type"] = content_type
        if method == "POST" and body is None:
            body = b""
        status, _ctype, raw = self.raw(method, path, body=body, headers=extra)
        if status != expect:
            raise ApiError(f"{method} {path}: HTTP {status} (expected {expect}): {raw[:2000]!r}")
        return json.loads(raw) if raw else None

    def all_items(self, path: str) -> list[Any]:
        """Every item of a paginated list, following ``next`` links."""
        items: list[Any] = []
        url: str | None = path + ("&" if "?" in path else "?") + "limit=100"
        while url:
            page = self.call("GET", url)
            items += page["items"]
            assert len(items) <= page["total"]
            url = page["next"]
        assert len(items) == page["total"]
        return items

    def health(self) -> tuple[int, Any]:
        status, _ctype, raw = self.raw("GET", "/healthz", auth=False)
        return status, json.loads(raw)


def _admin_api(ws: Workspace, base: str) -> Api:
    """An admin created from the shell and an API token of theirs (``voicecast user``)."""
    browser_tests._user_add(ws, "crm-admin", "admin")
    out = ws.vc("user", "token", "crm-admin", "--name", "crm-sync").stdout
    return Api(base, out.strip().split()[-1])


def _wait_healthy(api: Api, timeout: float = 30.0) -> dict[str, Any]:
    """``/healthz`` once the dialer has attached (AMI and scheduler ok, not null)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = api.health()
        checks = body["checks"]
        if status == 200 and checks["ami"]["ok"] is True and checks["scheduler"]["ok"] is True:
            assert body["status"] == "ok" and checks["database"]["ok"] is True, body
            return dict(body)
        if time.monotonic() > deadline:
            pytest.fail(f"/healthz never reported the dialer healthy: {status} {body}")
        time.sleep(0.3)


# --------------------------------------------------------------------------- receiver


@dataclass
class Received:
    """One POST the receiver got: headers (lower-cased names), raw body, when, answer."""

    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


Answer = Callable[[dict[str, Any], list["Received"]], int]
"""A receiver's behaviour: the HTTP status for a payload, given the POSTs received before."""


@dataclass
class Receiver:
    """A CRM's webhook endpoint on loopback: records every POST; ``answer`` decides the
    status from the payload and the POSTs already received (before this one)."""

    answer: Answer
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


MakeReceiver = Callable[[Answer], Receiver]


@pytest.fixture
def make_receiver() -> Iterator[MakeReceiver]:
    """Start receivers on loopback (each in its own thread); all stopped at teardown."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> Receiver:
        receiver = Receiver(answer)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.time()
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    try:
                        status = receiver.answer(json.loads(body), list(receiver.received))
                    except ValueError:
                        status = 400
                    receiver.received.append(Received(headers, body, at, status))
                reply = b'{"ok": true}' if status == 200 else b"temporarily unavailable"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
        servers.append(server)
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/voicecast/events"
        return receiver

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _always_ok(payload: dict[str, Any], before: list[Received]) -> int:
    return 200


def _fail_first_of_each_event(payload: dict[str, Any], before: list[Received]) -> int:
    seen = any(r.payload.get("id") == payload.get("id") for r in before)
    return 200 if seen else 500


# --------------------------------------------------------------------------- the journey


def _register_webhook(api: Api, receiver: Receiver) -> tuple[int, str]:
    hook = api.call(
        "POST",
        "/api/v1/webhooks",
        json_body={"url": receiver.url, "events": EVENTS, "description": "CRM sync"},
        expect=201,
    )
    assert hook["events"] == EVENTS and hook["enabled"] is True
    assert len(hook["secret"]) >= 32
    # the secret is shown once: never in the list afterwards
    (listed,) = api.all_items("/api/v1/webhooks")
    assert listed["id"] == hook["id"] and "secret" not in listed
    return int(hook["id"]), str(hook["secret"])


def _upload_and_import(api: Api, list_name: str, csv_bytes: bytes, expect_imported: int) -> None:
    audio = api.call(
        "POST",
        "/api/v1/audio?name=welcome",
        data=EXAMPLE_MESSAGE.read_bytes(),
        content_type="audio/wav",
        headers={"Content-Disposition": 'attachment; filename="example-message.wav"'},
        expect=201,
    )
    assert audio["name"] == "welcome" and audio["duration_ms"] > 8000
    imported = api.call(
        "POST",
        f"/api/v1/lists/{list_name}/contacts",
        data=csv_bytes,
        content_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'},
    )
    assert imported["imported"] == expect_imported and imported["rejected"] == 0, imported


def _create_and_start(api: Api, name: str, list_name: str) -> None:
    created = api.call(
        "POST",
        "/api/v1/campaigns",
        json_body={
            "name": name,
            "list": list_name,
            "message": "welcome",
            "caller_id": "01 62 00 00 00",  # a French NPV number (ARCEP numbering plan)
            "purpose": "informational",
            "audience": "b2c",
            "legal_basis": "contract",
            "sender": "Test Sender",
            "on_behalf_of": "Test Sender",
            "optout_key": "9",
            "cps": 5,
            "max_channels": 10,
            "retries": 0,
        },
        expect=201,
    )
    assert created["status"] == "draft" and created["start_problems"] == [], created
    started = api.call("POST", f"/api/v1/campaigns/{name}/start")
    assert started["status"] == "running" and started["queued"] >= 1, started


def _wait_done(api: Api, name: str, contacts: int) -> dict[str, Any]:
    """Poll the live status until every contact is done and the campaign completed
    (bounded); the last snapshot."""
    deadline = time.monotonic() + CAMPAIGN_TIMEOUT
    seen_calls_up = 0
    while True:
        status = api.call("GET", f"/api/v1/campaigns/{name}/status")
        assert status["contacts"] == contacts, status
        seen_calls_up = max(seen_calls_up, status["calls_up"])
        # the controller marks the campaign completed just after its last contact is done
        if status["done"] == contacts and status["status"] == "completed":
            assert status["calls_up"] == 0 and status["pending"] == 0, status
            assert status["progress"] == 1
            assert seen_calls_up >= 1  # calls were seen live while they happened
            return dict(status)
        if time.monotonic() > deadline:
            pytest.fail(f"campaign {name} not done in {CAMPAIGN_TIMEOUT:g} s: {status}")
        time.sleep(0.5)


def _wait_deliveries(api: Api, hook_id: int, count: int, timeout: float) -> list[dict[str, Any]]:
    """The webhook's deliveries once ``count`` exist and all are delivered (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        items = api.all_items(f"/api/v1/webhooks/{hook_id}/deliveries")
        if len(items) >= count and all(d["status"] == "delivered" for d in items):
            return items
        if time.monotonic() > deadline:
            summary = [(d["id"], d["event_type"], d["status"], d["attempts"]) for d in items]
            pytest.fail(f"deliveries not all delivered in {timeout:g} s: {summary}")
        time.sleep(0.5)


def _attempts(ws: Workspace) -> list[CallAttempt]:
    with ws.sessions() as s:
        return list(s.scalars(select(CallAttempt).order_by(CallAttempt.created_at)))


def _check_signatures(received: list[Received], secret: str) -> None:
    for r in received:
        header = r.headers["x-voicecast-signature"]
        assert verify_signature(secret, header, r.body, now=r.at), header
        # and not with another secret, nor for another body
        assert not verify_signature(secret + "x", header, r.body, now=r.at)
        assert not verify_signature(secret, header, r.body + b" ", now=r.at)
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-voicecast-event"] == r.payload["type"]


def _metric_samples(api: Api, family: str) -> list[tuple[dict[str, str], float]]:
    status, ctype, raw = api.raw("GET", "/metrics", auth=False)
    assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
    for fam in text_string_to_metric_families(raw.decode("utf-8")):
        if fam.name == family:
            return [(dict(s.labels), float(s.value)) for s in fam.samples]
    raise AssertionError(f"/metrics has no {family}")


# --------------------------------------------------------------------------- tests


def test_a_crm_runs_a_campaign_over_the_api_and_gets_every_result_by_signed_webhook(
    workspace: Workspace,
    served: str,
    make_receiver: MakeReceiver,
) -> None:
    ws = workspace
    api = _admin_api(ws, served)
    _wait_healthy(api)
    receiver = make_receiver(_always_ok)

    # the integrator builds from the OpenAPI document: every operation used is in it
    doc = api.call("GET", "/api/v1/openapi.json")
    for path, method in [
        ("/api/v1/webhooks", "post"),
        ("/api/v1/audio", "post"),
        ("/api/v1/lists/{name}/contacts", "post"),
        ("/api/v1/campaigns", "post"),
        ("/api/v1/campaigns/{name}/start", "post"),
        ("/api/v1/campaigns/{name}/status", "get"),
        ("/api/v1/campaigns/{name}/results", "get"),
        ("/api/v1/webhooks/{id}/deliveries", "get"),
    ]:
        assert method in doc["paths"][path], (method, path)
    fields = doc["components"]["schemas"]["CampaignCreate"]["properties"]
    assert {"caller_id", "purpose", "audience", "legal_basis", "optout_key"} <= set(fields)

    hook_id, secret = _register_webhook(api, receiver)
    _upload_and_import(api, "clients", EXAMPLE_LIST.read_bytes(), expect_imported=10)
    _create_and_start(api, "crm-api", "clients")
    final = _wait_done(api, "crm-api", 10)
    health_status, health = api.health()  # while serve runs, after the campaign
    assert health_status == 200 and health["status"] == "ok", health
    assert health["checks"]["ami"]["ok"] is True and health["checks"]["scheduler"]["ok"] is True

    # per-contact results: the API, the CLI report and the simulated behaviours agree
    results = api.all_items("/api/v1/campaigns/crm-api/results")
    assert len(results) == 10
    got = {r["number"]: r["outcome"] for r in results}
    report = {r["number"]: r["outcome"] for r in ws.report("crm-api")}
    assert got == report
    assert {n[-1]: o for n, o in got.items()} == EXPECTED_BY_LAST_DIGIT
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in results), results
    assert final["outcomes"] == dict(Counter(got.values()))

    # webhooks: one attempt.completed per stored attempt, one optout.created, all signed
    attempts = _attempts(ws)
    assert len(attempts) == 10 and all(a.outcome for a in attempts)
    deliveries = _wait_deliveries(api, hook_id, len(attempts) + 1, timeout=30)
    assert len(deliveries) == len(attempts) + 1
    assert all(d["attempts"] == 1 and d["last_status"] == 200 for d in deliveries), deliveries
    received = receiver.snapshot()
    assert len(received) == len(deliveries)
    assert all(r.status == 200 for r in received)
    assert sorted(int(r.headers["x-voicecast-delivery"]) for r in received) == sorted(
        d["id"] for d in deliveries
    )
    _check_signatures(received, secret)
    payloads = [r.payload for r in received]
    assert len({p["id"] for p in payloads}) == len(payloads)  # one event id per event

    completed = [p["data"] for p in payloads if p["type"] == "attempt.completed"]
    per_attempt = Counter(d["attempt_id"] for d in completed)
    assert set(per_attempt) == {a.id for a in attempts}
    assert set(per_attempt.values()) == {1}
    by_id = {a.id: a for a in attempts}
    for d in completed:
        stored = by_id[d["attempt_id"]]
        assert (d["number"], d["outcome"]) == (stored.number, stored.outcome)
        assert d["outcome"] == got[d["number"]]
        assert d["campaign"] == "crm-api" and d["attempt_no"] == 1 and d["final"] is True
        assert d["contact"]["fields"].get("first_name"), d
    invalid = next(d for d in completed if d["outcome"] == "invalid_number")
    assert invalid["hangup_cause"] == 1

    optouts = [p["data"] for p in payloads if p["type"] == "optout.created"]
    assert len(optouts) == 1, optouts
    assert optouts[0]["number"] == "+33199000011"
    assert optouts[0]["source"] == "key-press" and optouts[0]["campaign"] == "crm-api"

    # Prometheus: the campaign's outcome counts and originates
    outcomes = {
        labels["outcome"]: value
        for labels, value in _metric_samples(api, "voicecast_outcomes")
        if labels.get("campaign") == "crm-api" and "outcome" in labels
    }
    assert outcomes == {k: float(v) for k, v in Counter(got.values()).items()}
    originates = [
        value
        for labels, value in _metric_samples(api, "voicecast_originates")
        if labels.get("campaign") == "crm-api"
    ]
    assert originates == [10.0]
    delivered = {
        labels["status"]: value
        for labels, value in _metric_samples(api, "voicecast_webhook_deliveries")
    }
    assert delivered == {"pending": 0.0, "delivered": 11.0, "failed": 0.0}


def test_a_receiver_failing_first_gets_every_event_after_the_back_off(
    workspace: Workspace,
    served: str,
    make_receiver: MakeReceiver,
) -> None:
    ws = workspace
    api = _admin_api(ws, served)
    _wait_healthy(api)
    receiver = make_receiver(_fail_first_of_each_event)
    hook_id, secret = _register_webhook(api, receiver)
    # a person (digit 0) and one who presses 9 (digit 1): both event types
    csv = ws.write_contacts("two.csv", ["+33199000010", "+33199000011"])
    _upload_and_import(api, "two", csv.read_bytes(), expect_imported=2)
    _create_and_start(api, "flaky-crm", "two")
    _wait_done(api, "flaky-crm", 2)

    attempts = _attempts(ws)
    assert sorted((a.number, a.outcome) for a in attempts) == [
        ("+33199000010", "human"),
        ("+33199000011", "opted_out"),
    ]
    # 2 attempt.completed + 1 optout.created; the first try of each got a 500
    deliveries = _wait_deliveries(api, hook_id, 3, timeout=40)
    assert len(deliveries) == 3
    received = receiver.snapshot()
    _check_signatures(received, secret)
    for d in deliveries:
        assert d["attempts"] >= 2 and d["last_status"] == 200 and d["last_error"] is None, d
        tries = [r for r in received if r.headers["x-voicecast-delivery"] == str(d["id"])]
        assert len(tries) == d["attempts"], (d, [r.status for r in tries])
        assert [r.status for r in tries] == [500] * (len(tries) - 1) + [200]
        assert all(r.body == tries[0].body for r in tries)  # the same event each time
        assert tries[0].payload == d["payload"]
        # retried after the back-off (about 10 s, +-20 %), signed anew at each try
        gap = tries[1].at - tries[0].at
        assert gap >= 7.5, f"delivery {d['id']} retried after {gap:.1f} s"
        stamps = [r.headers["x-voicecast-signature"].split(",")[0] for r in tries]
        assert stamps[0] != stamps[1]

    # nothing lost, nothing accepted twice
    accepted = [r.payload for r in received if r.status == 200]
    assert len(accepted) == 3
    assert {p["data"]["attempt_id"] for p in accepted if p["type"] == "attempt.completed"} == {
        a.id for a in attempts
    }
    (optout,) = [p["data"] for p in accepted if p["type"] == "optout.created"]
    assert optout["number"] == "+33199000011"
    assert len({p["id"] for p in accepted}) == 3
