"""voicecast.ami.client: the asyncio AMI client against a scripted fake Asterisk manager.

The fake listens on 127.0.0.1 (port 0), sends the banner, answers ``Login`` (and ``Logoff``
like Asterisk: ``Response: Goodbye`` then it closes), and answers other actions through a
per-test script. Every message the client writes is recorded, per connection, so tests can
check that an action was written exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from voicecast.ami.client import AmiClient, AmiConnectionError, AmiError, AmiResponse
from voicecast.ami.protocol import AmiMessage, AmiProtocolError, parse_messages
from voicecast.errors import UnsafeValueError

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
SECRET = "s3cret"
ATTEMPT = "5f2c9a0e7b1d4c3a8e6f0a1b2c3d4e5f"
WAIT = 2.0  # upper bound for anything that should happen "now"


def wire(*pairs: tuple[str, str]) -> bytes:
    """One AMI message as Asterisk writes it."""
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in pairs) + b"\r\n"


def reply(m: AmiMessage, response: str = "Success", *extra: tuple[str, str]) -> bytes:
    return wire(("Response", response), ("ActionID", m.action_id or ""), *extra)


@dataclass
class Conn:
    """One client connection as the fake server sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: list[AmiMessage] = field(default_factory=list)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def drop(self) -> None:
        self.writer.close()


Script = Callable[[Conn, AmiMessage], Awaitable[None]]


class FakeAmi:
    def __init__(
        self,
        *,
        banner: bytes = BANNER,
        secret: str = SECRET,
        script: dict[str, Script] | None = None,
    ) -> None:
        self.banner = banner
        self.secret = secret
        self.script = {k.lower(): v for k, v in (script or {}).items()}
        self.connections: list[Conn] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def received(self) -> list[AmiMessage]:
        return [m for c in self.connections for m in c.received]

    def actions(self, name: str) -> list[AmiMessage]:
        return [m for m in self.received if (m.get("Action") or "").lower() == name.lower()]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for conn in self.connections:
            conn.drop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=WAIT)

    async def broadcast(self, data: bytes) -> None:
        for conn in self.connections:
            if not conn.writer.is_closing():
                await conn.send(data)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Conn(reader, writer)
        self.connections.append(conn)
        try:
            if self.banner:
                await conn.send(self.banner)
            buffer = b""
            while not writer.is_closing():
                data = await reader.read(65536)
                if not data:
                    break
                messages, buffer = parse_messages(buffer + data)
                for m in messages:
                    conn.received.append(m)
                    await self._respond(conn, m)
                    if writer.is_closing():
                        break
        except ConnectionError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _respond(self, conn: Conn, m: AmiMessage) -> None:
        action = (m.get("Action") or "").lower()
        if action in self.script:  # a test's script overrides the built-in answers
            await self.script[action](conn, m)
        elif action == "login":
            if m.get("Username") == "voicecast" and m.get("Secret") == self.secret:
                await conn.send(reply(m, "Success", ("Message", "Authentication accepted")))
                await conn.send(
                    wire(("Event", "FullyBooted"), ("Privilege", "system,all"), ("Status", "ok"))
                )
            else:  # Asterisk answers, then ends the session
                await conn.send(reply(m, "Error", ("Message", "Authentication failed")))
                conn.drop()
        elif action == "logoff":
            await conn.send(reply(m, "Goodbye", ("Message", "Thanks for all the fish.")))
            conn.drop()
        elif action == "ping":
            await conn.send(reply(m, "Success", ("Ping", "Pong")))
        else:
            await conn.send(reply(m, "Error", ("Message", "Invalid/unknown command")))


@contextlib.asynccontextmanager
async def fake_ami(**kwargs: object) -> AsyncIterator[FakeAmi]:
    server = FakeAmi(**kwargs)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def make_client(server: FakeAmi, secret: str = SECRET, **kwargs: float) -> AmiClient:
    kwargs.setdefault("connect_timeout", WAIT)
    kwargs.setdefault("action_timeout", WAIT)
    return AmiClient("127.0.0.1", server.port, "voicecast", secret, **kwargs)


@contextlib.asynccontextmanager
async def connected(server: FakeAmi, **kwargs: float) -> AsyncIterator[AmiClient]:
    client = make_client(server, **kwargs)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- connecting -------------------------------------------------------------------------------


def test_login_ok() -> None:
    async def main() -> None:
        async with fake_ami() as server, connected(server) as client:
            assert client.connected
            assert client.banner == "Asterisk Call Manager/11.0.0"
            [login] = server.actions("Login")
            assert login["Username"] == "voicecast"
            assert login["Secret"] == SECRET
            assert login["Events"] == "on"
            assert login.action_id
            resp = await client.send_action("Ping")
            assert resp.success
            assert resp.message["Ping"] == "Pong"

    asyncio.run(main())


def test_login_refused() -> None:
    async def main() -> None:
        async with fake_ami() as server:
            client = make_client(server, secret="wrong")
            with pytest.raises(AmiConnectionError, match="refused"):
                await client.connect()
            assert not client.connected
            with pytest.raises(AmiConnectionError):
                await client.send_action("Ping")
            assert len(server.actions("Login")) == 1
            assert server.actions("Ping") == []
            await client.close()  # idempotent after a failed connect

    asyncio.run(main())


def test_login_without_answer_fails() -> None:
    async def silent(conn: Conn, m: AmiMessage) -> None:
        return None

    async def main() -> None:
        async with fake_ami(script={"Login": silent}) as server:
            client = make_client(server, connect_timeout=0.2)
            with pytest.raises(AmiConnectionError, match="login failed"):
                await client.connect()
            assert not client.connected
            await wait_until(lambda: server.connections[0].writer.is_closing())

    asyncio.run(main())


@pytest.mark.parametrize(
    "banner",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\r\n", b"Asterisk\r\n"],
)
def test_non_ami_banner_is_refused(banner: bytes) -> None:
    async def main() -> None:
        async with fake_ami(banner=banner) as server:
            client = make_client(server)
            with pytest.raises(AmiConnectionError, match="not an Asterisk manager"):
                await client.connect()
            assert not client.connected
            await wait_until(lambda: server.connections[0].writer.is_closing())
            assert server.received == []  # not even the Login (no secret leaked)

    asyncio.run(main())


def test_connection_refused() -> None:
    async def main() -> None:
        client = AmiClient("127.0.0.1", free_port(), "voicecast", SECRET, connect_timeout=WAIT)
        with pytest.raises(AmiConnectionError, match="cannot connect"):
            await client.connect()
        assert not client.connected

    asyncio.run(main())


def test_no_banner_times_out() -> None:
    async def main() -> None:
        async with fake_ami(banner=b"") as server:
            client = make_client(server, connect_timeout=0.2)
            with pytest.raises(AmiConnectionError):
                await client.connect()
            assert server.received == []

    asyncio.run(main())


def test_oversized_banner_is_refused() -> None:
    async def main() -> None:
        async with fake_ami(banner=b"A" * 70_000) as server:
            client = make_client(server)
            try:
                with pytest.raises(AmiConnectionError):
                    await client.connect()
            finally:
                await client.close()  # closes the socket the bug leaves open

    asyncio.run(main())


# --- actions ----------------------------------------------------------------------------------


def test_responses_are_matched_by_action_id() -> None:
    held: list[tuple[Conn, AmiMessage]] = []

    async def first(conn: Conn, m: AmiMessage) -> None:
        held.append((conn, m))  # answered later, after "Second"

    async def second(conn: Conn, m: AmiMessage) -> None:
        await conn.send(reply(m, "Success", ("Message", "second")))
        # An answer for an ActionID nobody waits for is ignored.
        await conn.send(wire(("Response", "Success"), ("ActionID", "nobody-1")))
        held_conn, held_m = held.pop()
        await held_conn.send(reply(held_m, "Error", ("Message", "first")))

    async def main() -> None:
        async with (
            fake_ami(script={"First": first, "Second": second}) as server,
            connected(server) as client,
        ):
            task1 = asyncio.create_task(client.send_action("First"))
            await wait_until(lambda: bool(held))
            r2 = await client.send_action("Second", {"X": "y"})
            r1 = await task1
            assert r1.message["Message"] == "first"
            assert not r1.success
            assert r2.message["Message"] == "second"
            assert r2.success
            ids = [server.actions(a)[0].action_id for a in ("First", "Second")]
            assert ids[0] != ids[1]
            assert r1.message.action_id == ids[0]
            assert r2.message.action_id == ids[1]

    asyncio.run(main())


def test_explicit_action_id_is_used_and_must_be_unique_while_pending() -> None:
    held: list[tuple[Conn, AmiMessage]] = []

    async def slow(conn: Conn, m: AmiMessage) -> None:
        held.append((conn, m))

    async def main() -> None:
        async with fake_ami(script={"Slow": slow}) as server, connected(server) as client:
            task = asyncio.create_task(client.send_action("Slow", action_id=ATTEMPT))
            await wait_until(lambda: bool(held))
            with pytest.raises(AmiError, match="already in use"):
                await client.send_action("Slow", action_id=ATTEMPT)
            conn, m = held.pop()
            assert m.action_id == ATTEMPT
            await conn.send(reply(m))
            assert (await task).success
            assert len(server.actions("Slow")) == 1

    asyncio.run(main())


def test_response_split_across_many_writes() -> None:
    async def trickle(conn: Conn, m: AmiMessage) -> None:
        data = reply(m, "Success", ("Message", "Originate successfully queued"))
        data += wire(("Event", "Newchannel"), ("Uniqueid", ATTEMPT))
        for i in range(len(data)):
            await conn.send(data[i : i + 1])

    async def main() -> None:
        async with (
            fake_ami(script={"Originate": trickle}) as server,
            connected(server) as client,
        ):
            seen: list[AmiMessage] = []
            client.on("Newchannel", seen.append)
            resp = await client.send_action("Originate", {"Channel": "Local/1@x"})
            assert resp.message["Message"] == "Originate successfully queued"
            await wait_until(lambda: bool(seen))
            assert seen[0]["Uniqueid"] == ATTEMPT

    asyncio.run(main())


def test_collect_list_gathers_events_until_complete() -> None:
    async def core_show_channels(conn: Conn, m: AmiMessage) -> None:
        aid = m.action_id or ""
        await conn.send(
            wire(
                ("Response", "Success"),
                ("ActionID", aid),
                ("EventList", "start"),
                ("Message", "Channels will follow"),
            )
        )
        for leg, uid in ((1, ATTEMPT), (2, ATTEMPT + "-b")):
            await conn.send(
                wire(
                    ("Event", "CoreShowChannel"),
                    ("ActionID", aid),
                    ("Channel", f"Local/+33199000010@sim-pstn-00000001;{leg}"),
                    ("Uniqueid", uid),
                    ("ChannelStateDesc", "Up"),
                )
            )
            # An unrelated event in the middle of the list goes to the handlers.
            await conn.send(wire(("Event", "Newexten"), ("Uniqueid", uid)))
        await conn.send(
            wire(
                ("Event", "CoreShowChannelsComplete"),
                ("ActionID", aid),
                ("EventList", "Complete"),
                ("ListItems", "2"),
            )
        )

    async def main() -> None:
        async with (
            fake_ami(script={"CoreShowChannels": core_show_channels}) as server,
            connected(server) as client,
        ):
            other: list[AmiMessage] = []
            client.on("Newexten", other.append)
            resp = await client.send_action("CoreShowChannels", collect_list=True)
            assert isinstance(resp, AmiResponse)
            assert resp.success
            assert resp.message["EventList"] == "start"
            assert [e.event for e in resp.events] == ["CoreShowChannel"] * 2
            assert [e["Uniqueid"] for e in resp.events] == [ATTEMPT, ATTEMPT + "-b"]
            assert len(other) == 2

    asyncio.run(main())


def test_collect_list_with_error_response_returns_at_once() -> None:
    async def refuse(conn: Conn, m: AmiMessage) -> None:
        await conn.send(reply(m, "Error", ("Message", "Permission denied")))

    async def main() -> None:
        async with (
            fake_ami(script={"CoreShowChannels": refuse}) as server,
            connected(server) as client,
        ):
            resp = await client.send_action("CoreShowChannels", collect_list=True)
            assert not resp.success
            assert resp.events == []
            assert resp.message["Message"] == "Permission denied"

    asyncio.run(main())


def test_action_without_answer_times_out() -> None:
    late: list[tuple[Conn, AmiMessage]] = []

    async def never(conn: Conn, m: AmiMessage) -> None:
        late.append((conn, m))

    async def main() -> None:
        async with fake_ami(script={"Originate": never}) as server, connected(server) as client:
            started = time.monotonic()
            with pytest.raises(AmiError) as info:
                await client.send_action("Originate", {"Channel": "Local/1@x"}, timeout=0.2)
            elapsed = time.monotonic() - started
            assert not isinstance(info.value, AmiConnectionError)
            assert 0.15 <= elapsed < 1.5
            # The connection is still usable, and a late answer is ignored.
            conn, m = late.pop()
            await conn.send(reply(m, "Success"))
            resp = await client.send_action("Ping")
            assert resp.message["Ping"] == "Pong"
            assert client.connected
            assert len(server.actions("Originate")) == 1

    asyncio.run(main())


def test_default_action_timeout() -> None:
    async def never(conn: Conn, m: AmiMessage) -> None:
        return None

    async def main() -> None:
        async with (
            fake_ami(script={"Slow": never}) as server,
            connected(server, action_timeout=0.2) as client,
        ):
            with pytest.raises(AmiError, match="no answer"):
                await client.send_action("Slow")

    asyncio.run(main())


def test_connection_lost_while_pending_fails_and_is_never_resent() -> None:
    """The key dialer guarantee: an Originate is written once, whatever happens."""

    async def drop(conn: Conn, m: AmiMessage) -> None:
        conn.drop()  # Asterisk goes away before answering

    async def main() -> None:
        async with fake_ami(script={"Originate": drop}) as server:
            client = make_client(server)
            lost: list[Exception | None] = []
            client.on_disconnect(lost.append)
            await client.connect()
            try:
                with pytest.raises(AmiConnectionError):
                    await client.send_action(
                        "Originate",
                        {"Channel": "Local/+33199000010@sim-pstn", "ChannelId": ATTEMPT},
                        action_id=ATTEMPT,
                        timeout=WAIT,
                    )
                assert lost == [None]
                assert not client.connected
                with pytest.raises(AmiConnectionError):
                    await client.send_action("Ping")

                await client.connect()  # a new connection (what the backend's reconnect does)
                assert client.connected
                assert (await client.send_action("Ping")).success
                await asyncio.sleep(0.05)
            finally:
                await client.close()
            assert len(server.connections) == 2
            originates = server.actions("Originate")
            assert len(originates) == 1
            assert originates[0].action_id == ATTEMPT
            assert [m.get("Action") for m in server.connections[1].received] == [
                "Login",
                "Ping",
                "Logoff",
            ]

    asyncio.run(main())


def test_send_when_not_connected_writes_nothing() -> None:
    async def main() -> None:
        async with fake_ami() as server:
            client = make_client(server)
            with pytest.raises(AmiConnectionError):
                await client.send_action("Originate", {"Channel": "Local/1@x"})
            assert server.connections == []

    asyncio.run(main())


def test_unsafe_header_is_refused_and_nothing_is_written() -> None:
    async def main() -> None:
        async with fake_ami() as server, connected(server) as client:
            for bad in (
                {"Channel": "Local/+33199000010@sim-pstn", "CallerID": "x\r\nAction: Originate"},
                {"Variable": ["A=1", "B=2\nAction: Originate"]},
                {"Bad Key": "x"},
            ):
                with pytest.raises(UnsafeValueError):
                    await client.send_action("Originate", bad)
            with pytest.raises(UnsafeValueError):
                await client.send_action("Originate", {}, action_id="x\r\nAction: Originate")
            with pytest.raises(UnsafeValueError):
                await client.send_action("Originate\r\nAction: Originate", {})
            assert client._pending == {}
            assert (await client.send_action("Ping")).success
            assert [m.get("Action") for m in server.received] == ["Login", "Ping"]
            assert server.actions("Originate") == []

    asyncio.run(main())


# --- events -----------------------------------------------------------------------------------


def test_events_by_name_case_insensitive_and_star() -> None:
    async def main() -> None:
        async with fake_ami() as server, connected(server) as client:
            hangups: list[AmiMessage] = []
            newchannels: list[AmiMessage] = []
            everything: list[AmiMessage] = []
            client.on("HANGUP", hangups.append)
            client.on("newchannel", newchannels.append)
            client.on("*", everything.append)
            await server.broadcast(
                wire(("Event", "Newchannel"), ("Uniqueid", ATTEMPT))
                + wire(("Event", "hangup"), ("Uniqueid", ATTEMPT), ("Cause", "17"))
                + wire(("Event", "Newexten"), ("Uniqueid", ATTEMPT))
                + wire(("Event", "Hangup"), ("Uniqueid", ATTEMPT + "-b"), ("Cause", "17"))
                + wire(("Response", "Success"), ("Message", "not an event"))
            )
            await wait_until(lambda: len(everything) >= 4)
            await asyncio.sleep(0.02)
            assert [m["Uniqueid"] for m in hangups] == [ATTEMPT, ATTEMPT + "-b"]
            assert [m.event for m in newchannels] == ["Newchannel"]
            assert [m.event for m in everything] == ["Newchannel", "hangup", "Newexten", "Hangup"]

    asyncio.run(main())


def test_handler_that_raises_does_not_break_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        async with fake_ami() as server, connected(server) as client:
            seen: list[str] = []

            def bad(m: AmiMessage) -> None:
                raise RuntimeError("handler bug")

            client.on("Newchannel", bad)
            client.on("Newchannel", lambda m: seen.append("after bad"))
            client.on("Hangup", lambda m: seen.append("hangup"))
            await server.broadcast(wire(("Event", "Newchannel"), ("Uniqueid", ATTEMPT)))
            await server.broadcast(wire(("Event", "Hangup"), ("Uniqueid", ATTEMPT)))
            await wait_until(lambda: "hangup" in seen)
            assert seen == ["after bad", "hangup"]
            assert client.connected
            assert (await client.send_action("Ping")).success

    with caplog.at_level(logging.ERROR, logger="voicecast.ami.client"):
        asyncio.run(main())
    assert any("handler failed" in r.getMessage() for r in caplog.records)


def test_on_disconnect_is_called_when_the_server_drops() -> None:
    async def main() -> None:
        async with fake_ami() as server:
            client = make_client(server)
            lost: list[Exception | None] = []
            client.on_disconnect(lost.append)
            client.on_disconnect(lambda exc: 1 / 0)  # a failing handler is contained
            client.on_disconnect(lambda exc: lost.append(exc))
            await client.connect()
            try:
                server.connections[0].drop()
                await wait_until(lambda: len(lost) == 2)
                assert lost == [None, None]
                assert not client.connected
            finally:
                await client.close()

    asyncio.run(main())


def test_protocol_error_drops_the_connection() -> None:
    async def main() -> None:
        async with fake_ami() as server:
            client = make_client(server)
            lost: list[Exception | None] = []
            client.on_disconnect(lost.append)
            await client.connect()
            try:
                await server.broadcast(b"Event: Flood\r\nData: " + b"x" * (1024 * 1024 + 10))
                await wait_until(lambda: bool(lost))
                assert isinstance(lost[0], AmiProtocolError)
                assert not client.connected
            finally:
                await client.close()

    asyncio.run(main())


def test_originate_response_of_an_answered_action_goes_to_handlers() -> None:
    async def originate(conn: Conn, m: AmiMessage) -> None:
        aid = m.action_id or ""
        # The ack and the asynchronous result in the same TCP segment.
        await conn.send(
            reply(m, "Success", ("Message", "Originate successfully queued"))
            + wire(
                ("Event", "OriginateResponse"),
                ("Privilege", "call,all"),
                ("ActionID", aid),
                ("Response", "Failure"),
                ("Channel", "Local/+33199000013@sim-pstn"),
                ("Reason", "5"),
                ("Uniqueid", "<null>"),
            )
        )

    async def main() -> None:
        async with (
            fake_ami(script={"Originate": originate}) as server,
            connected(server) as client,
        ):
            results: list[AmiMessage] = []
            client.on("OriginateResponse", results.append)
            resp = await client.send_action(
                "Originate",
                {"Channel": "Local/+33199000013@sim-pstn", "Async": "true"},
                action_id=ATTEMPT,
            )
            assert resp.success
            assert resp.message["Message"] == "Originate successfully queued"
            await wait_until(lambda: bool(results))
            assert results[0].action_id == ATTEMPT
            assert results[0]["Reason"] == "5"
            # Later, on its own, too.
            await server.broadcast(
                wire(
                    ("Event", "OriginateResponse"),
                    ("ActionID", ATTEMPT),
                    ("Response", "Success"),
                    ("Reason", "4"),
                )
            )
            await wait_until(lambda: len(results) == 2)

    asyncio.run(main())


def test_close_logs_off_and_is_idempotent() -> None:
    async def main() -> None:
        async with fake_ami() as server:
            client = make_client(server)
            await client.connect()
            await client.close()
            assert not client.connected
            await client.close()
            assert len(server.actions("Logoff")) == 1
            with pytest.raises(AmiConnectionError):
                await client.send_action("Ping")

    asyncio.run(main())


def test_keepalive_pings_and_a_silent_peer_counts_as_a_lost_connection() -> None:
    """A network cut without a TCP reset: Asterisk's answers stop coming. The keepalive Ping
    goes unanswered within action_timeout and the connection is dropped as lost."""
    silent = False

    async def ping(conn: Conn, m: AmiMessage) -> None:
        if not silent:
            await conn.send(reply(m, "Success", ("Ping", "Pong")))

    async def main() -> None:
        nonlocal silent
        async with fake_ami(script={"Ping": ping}) as server:
            client = make_client(server, keepalive=0.05, action_timeout=0.2)
            lost: list[Exception | None] = []
            client.on_disconnect(lost.append)
            await client.connect()
            try:
                await wait_until(lambda: len(server.actions("Ping")) >= 3)
                assert client.connected and lost == []  # answered Pings: all is well
                silent = True
                await wait_until(lambda: len(lost) == 1)
                assert not client.connected
                assert isinstance(lost[0], AmiConnectionError)
                with pytest.raises(AmiConnectionError):
                    await client.send_action("Ping")
            finally:
                await client.close()

    asyncio.run(main())


def test_no_keepalive_by_default_and_close_stops_it() -> None:
    async def main() -> None:
        async with fake_ami() as server:
            async with connected(server):
                await asyncio.sleep(0.2)
            assert server.actions("Ping") == []
            client = make_client(server, keepalive=0.05)
            await client.connect()
            await wait_until(lambda: len(server.actions("Ping")) >= 1)
            await client.close()
            count = len(server.actions("Ping"))
            await asyncio.sleep(0.2)
            assert len(server.actions("Ping")) == count

    asyncio.run(main())
