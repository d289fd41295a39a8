"""Nothing awaits forever: a FastAGI client that sends nothing, an AMI manager or an Asterisk
that stops reading, a webhook receiver that accepts and never answers. Each peer here hangs
for good; the ``asyncio.wait_for`` guards only turn a regression into a failure instead of
a stuck test run (they are not speed assertions)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_dialer_controller import GATE, FakePbx, _attempts, _campaign, _plan

from voicecast.agi.server import AgiError, AgiSession, FastAgiServer
from voicecast.ami.client import AmiClient, AmiConnectionError, AmiError
from voicecast.dialer.controller import Dialer
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import WebhookDelivery, utcnow
from voicecast.webhooks import DeliveryWorker, create_webhook, enqueue_event

GUARD = 20.0  # seconds: a hang guard only
BIG = 32 * 1024 * 1024  # bytes: more than loopback socket buffers hold, so a write blocks

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(engine)
    return session_factory(engine)


@contextlib.asynccontextmanager
async def tcp_server(handle: Handler) -> AsyncIterator[int]:
    """A loopback server running ``handle`` per connection; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer)
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def hang(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    """Accept, then neither read nor write."""
    await asyncio.Event().wait()


# --- AMI ---------------------------------------------------------------------------------------


def test_an_ami_server_that_accepts_and_never_answers() -> None:
    async def main() -> None:
        async with tcp_server(hang) as port:
            client = AmiClient("127.0.0.1", port, "voicecast", "s3cret", connect_timeout=0.2)
            with pytest.raises(AmiConnectionError, match="cannot connect"):
                await asyncio.wait_for(client.connect(), GUARD)

    asyncio.run(main())


async def _login_then_stop_reading(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"Asterisk Call Manager/11.0.0\r\n")
    await w.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    action_id = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"actionid:")
    )
    w.write(b"Response: Success\r\nActionID: " + action_id + b"\r\n\r\n")
    await w.drain()
    await asyncio.Event().wait()  # never reads again: the client's socket buffer fills


def test_an_ami_manager_that_stops_reading_cannot_block_an_action_or_the_close() -> None:
    async def main() -> None:
        async with tcp_server(_login_then_stop_reading) as port:
            client = AmiClient("127.0.0.1", port, "voicecast", "s3cret", action_timeout=0.3)
            await asyncio.wait_for(client.connect(), GUARD)
            with pytest.raises(AmiError, match="no answer in time"):
                # the write itself blocks (drain): the action's timeout covers it
                await asyncio.wait_for(
                    client.send_action("Setvar", {"Variable": "X", "Value": "a" * BIG}), GUARD
                )
            await asyncio.wait_for(client.close(), GUARD)  # unsent data: aborted, not awaited
            assert not client.connected

    asyncio.run(main())


# --- FastAGI -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def agi_server(
    handler: Callable[[AgiSession], Awaitable[None]], **kw: float
) -> AsyncIterator[tuple[FastAgiServer, int]]:
    server = FastAgiServer({"flow": handler}, **kw)
    await server.start("127.0.0.1", 0)
    assert server._server is not None
    try:
        yield server, server._server.sockets[0].getsockname()[1]
    finally:
        await server.close()


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached: {what}")
        await asyncio.sleep(0.02)


def test_a_fastagi_client_that_connects_and_sends_nothing_is_dropped() -> None:
    async def handler(session: AgiSession) -> None:
        raise AssertionError("no request: no handler")

    async def main() -> None:
        async with agi_server(handler, header_timeout=0.2) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await _until(lambda: server.active == 1, "connection served")
            assert await asyncio.wait_for(reader.read(), GUARD) == b""  # closed by the server
            await _until(lambda: server.active == 0, "connection task ended")
            writer.close()

    asyncio.run(main())


def test_an_asterisk_that_stops_reading_cannot_block_an_agi_command() -> None:
    failures: list[str] = []

    async def handler(session: AgiSession) -> None:
        try:
            await session.command("VERBOSE", "a" * BIG, "1")
        except AgiError as exc:
            failures.append(str(exc))

    async def main() -> None:
        async with agi_server(handler, command_timeout=0.3) as (server, port):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"agi_network_script: flow\nagi_channel: Local/x;1\n\n")
            await writer.drain()  # ...and never reads the command
            await _until(lambda: bool(failures), "the command timed out")
            await _until(lambda: server.active == 0, "the call's task ended (socket aborted)")
            writer.transport.abort()

    asyncio.run(main())
    assert failures == ["AGI command VERBOSE timed out"]


# --- webhooks ----------------------------------------------------------------------------------


def _deliveries(sessions: sessionmaker[Session]) -> list[WebhookDelivery]:
    with sessions() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_a_webhook_receiver_that_accepts_and_never_answers_times_out(
    sessions: sessionmaker[Session],
) -> None:
    async def main() -> None:
        async with tcp_server(hang) as port:
            with sessions() as s, s.begin():
                create_webhook(s, f"http://127.0.0.1:{port}/hook", ["optout.created"])

                enqueue_event(s, "optout.created", {"number": "+33199000010"}, utcnow())
            worker = DeliveryWorker(sessions, timeout=0.3, poll_interval=0.05)
            task = asyncio.create_task(worker.run())
            try:
                await _until(lambda: _deliveries(sessions)[0].attempts == 1, "one try recorded")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    (delivery,) = _deliveries(sessions)
    assert delivery.status == "pending" and delivery.last_status is None
    assert (delivery.last_error or "").startswith("timeout: no complete answer within 0.3 s")


def test_a_hanging_webhook_receiver_does_not_slow_dialling(
    sessions: sessionmaker[Session],
) -> None:
    numbers = [f"+3319900{i:03d}0" for i in range(4)]
    _campaign(sessions, numbers, max_channels=2)
    pbx = FakePbx()

    async def main() -> None:
        async with tcp_server(hang) as port:
            with sessions() as s, s.begin():
                create_webhook(s, f"http://127.0.0.1:{port}/crm", ["attempt.completed"])
            # the receiver never answers and the POST timeout outlasts the whole campaign
            worker = DeliveryWorker(sessions, timeout=600.0, poll_interval=0.05)
            deliveries = asyncio.create_task(worker.run(), name="webhooks")
            dialer = Dialer(sessions, pbx, _plan, gate=GATE)
            await dialer.start()
            runner = asyncio.create_task(dialer.run(["c"]), name="dialer")
            try:
                await _until(lambda: worker.inflight > 0, "a POST hangs")
                await asyncio.wait_for(runner, GUARD)  # the campaign ends anyway
                # every outcome was queued in its own transaction; none was delivered
                rows = _deliveries(sessions)
                assert len(rows) == len(numbers)
                assert all((d.status, d.attempts) == ("pending", 0) for d in rows)
                assert worker.inflight > 0
            finally:
                await dialer.stop()
                deliveries.cancel()
                await asyncio.gather(deliveries, return_exceptions=True)

    asyncio.run(main())
    assert sorted(a.number for a in _attempts(sessions)) == numbers
    assert {a.outcome for a in _attempts(sessions)} == {"human"}


async def _answer_200(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()


def test_a_hanging_receiver_with_many_deliveries_does_not_starve_another(
    sessions: sessionmaker[Session],
) -> None:
    async def main() -> None:
        async with tcp_server(hang) as slow, tcp_server(_answer_200) as fast:
            with sessions() as s, s.begin():
                create_webhook(s, f"http://127.0.0.1:{slow}/crm", ["optout.created"])
                now = utcnow()
                for i in range(10):  # ten deliveries due for the hanging one, queued first
                    enqueue_event(s, "optout.created", {"number": f"+331990000{i:02d}"}, now)
                create_webhook(s, f"http://127.0.0.1:{fast}/crm", ["optout.created"])
                enqueue_event(s, "optout.created", {"number": "+33199000099"}, now)
            worker = DeliveryWorker(sessions, timeout=600.0, poll_interval=0.05, concurrency=4)
            task = asyncio.create_task(worker.run())
            try:
                await _until(
                    lambda: any(d.status == "delivered" for d in _deliveries(sessions)),
                    "the other receiver served",
                )
                assert worker.inflight == worker.per_webhook  # the hanging one: 2 slots only
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    delivered = [d for d in _deliveries(sessions) if d.status == "delivered"]
    assert [d.payload["data"]["number"] for d in delivered] == ["+33199000099"]
