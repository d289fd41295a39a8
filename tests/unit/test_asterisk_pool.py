"""AsteriskPool over fake AMI servers: a node down at start is used once it answers, each
Originate goes to its node with its trunk's dial string, channel lists say which node
could be listed, and no node at all is a clear error."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tests.unit.test_ami_client import ATTEMPT, SECRET, WAIT, Conn, FakeAmi, reply, wire
from voicecast.ami.protocol import AmiMessage
from voicecast.pbx.asterisk import AsteriskEndpoint, AsteriskPool
from voicecast.pbx.base import CallFlowSession, OriginateRequest, PbxUnavailable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _endpoint(ami_port: int, agi_port: int) -> AsteriskEndpoint:
    return AsteriskEndpoint(
        ami_host="127.0.0.1",
        ami_port=ami_port,
        username="voicecast",
        secret=SECRET,
        agi_host="127.0.0.1",
        agi_port=agi_port,
        agi_url=f"agi://127.0.0.1:{agi_port}",
        dial_string="PJSIP/{number}@default",
        connect_timeout=WAIT,
        action_timeout=WAIT,
        keepalive=0,
    )


async def _originate(conn: Conn, m: AmiMessage) -> None:
    await conn.send(reply(m, "Success", ("Message", "Originate successfully queued")))


async def _channels(conn: Conn, m: AmiMessage) -> None:
    aid = m.action_id or ""
    await conn.send(wire(("Response", "Success"), ("ActionID", aid), ("EventList", "start")))
    await conn.send(
        wire(
            ("Event", "CoreShowChannel"),
            ("ActionID", aid),
            ("Channel", "PJSIP/carrier-00000001"),
            ("Uniqueid", ATTEMPT),
            ("ChannelStateDesc", "Up"),
        )
    )
    await conn.send(
        wire(
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", aid),
            ("EventList", "Complete"),
            ("ListItems", "1"),
        )
    )


SCRIPT = {"Originate": _originate, "CoreShowChannels": _channels}


class Listener:
    """Records the pool's connection reports."""

    def __init__(self) -> None:
        self.connections: list[tuple[bool, str | None]] = []
        self.changed = asyncio.Event()

    def on_originate_result(self, attempt_id: str, answered: bool, reason: int) -> None:
        pass

    def on_hangup(self, attempt_id: str, cause: int, cause_text: str, primary: bool) -> None:
        pass

    def on_connection(self, connected: bool, node: str | None = None) -> None:
        self.connections.append((connected, node))
        self.changed.set()

    async def wait_for(self, event: tuple[bool, str | None], timeout: float = 10.0) -> None:
        async def seen() -> None:
            while event not in self.connections:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(seen(), timeout)


async def _flow(_call: CallFlowSession) -> None:
    return None


async def _serve_on(fake: FakeAmi, port: int) -> asyncio.Server:
    """Serve ``fake`` on a given port (a node that comes up where the pool expects it)."""
    server = await asyncio.start_server(fake._handle, "127.0.0.1", port)
    fake.port = port
    fake._server = server
    return server


@pytest.fixture
async def node_a() -> AsyncIterator[FakeAmi]:
    fake = FakeAmi(script=SCRIPT)
    await fake.start()
    yield fake
    await fake.stop()


async def test_a_node_down_at_start_is_used_once_it_answers(node_a: FakeAmi) -> None:
    port_b, agi = _free_port(), _free_port()
    pool = AsteriskPool(
        [("a", _endpoint(node_a.port, agi)), ("b", _endpoint(port_b, agi))],
    )
    listener = Listener()
    await pool.start(listener, _flow)
    try:
        assert pool.connected and pool.nodes_up() == {"a"}
        assert (True, "a") in listener.connections
        listing = await pool.channels_by_node()
        assert listing["b"] is None  # down: it proves nothing about its calls
        assert [c.attempt_id for c in listing["a"] or []] == [ATTEMPT]
        assert all(c.node == "a" for c in await pool.list_channels())
        with pytest.raises(PbxUnavailable):
            await pool.originate(
                OriginateRequest(ATTEMPT, "+33199000010", "+33162000000", 20, node="b")
            )

        node_b = FakeAmi(script=SCRIPT)
        await _serve_on(node_b, port_b)  # node b comes up: the pool reconnects by itself
        try:
            await listener.wait_for((True, "b"))
            assert pool.nodes_up() == {"a", "b"}
            request = OriginateRequest(
                ATTEMPT,
                "+33199000010",
                "+33162000000",
                20,
                node="b",
                dial_string="PJSIP/{number}@carrier2",
            )
            await pool.originate(request)
            (sent,) = node_b.actions("Originate")
            assert sent["Channel"] == "PJSIP/+33199000010@carrier2"
            assert sent["ChannelId"] == ATTEMPT
            assert f"VC_AGI=agi://127.0.0.1:{agi}" in (sent.get_all("Variable") or [])
            assert not node_a.actions("Originate")
        finally:
            await node_b.stop()
        await listener.wait_for((False, "b"))
        assert pool.nodes_up() == {"a"}
    finally:
        await pool.stop()


async def test_no_node_answering_is_one_error_naming_each() -> None:
    agi = _free_port()
    pool = AsteriskPool(
        [("a", _endpoint(_free_port(), agi)), ("b", _endpoint(_free_port(), agi))],
    )
    with pytest.raises(PbxUnavailable, match=r"no PBX node answered: a: .*; b: "):
        await pool.start(Listener(), _flow)
    # the FastAGI port was given back: a later start can listen again
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", agi))


def test_a_pool_needs_a_node() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        AsteriskPool([])
