"""voicecast.agi.server (FastAGI) and AsteriskCallFlow, against a fake Asterisk.

The fake connects to the server like Asterisk does for ``AGI(agi://host:port/flow,<id>)``:
it sends the ``agi_*`` request headers and an empty line, then reads each command line and
writes the scripted answer lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from voicecast.agi import server as agi_server
from voicecast.agi.server import (
    AgiError,
    AgiHangup,
    AgiResult,
    AgiSession,
    FastAgiServer,
    parse_result,
    quote_arg,
)
from voicecast.errors import UnsafeValueError
from voicecast.pbx.asterisk import AsteriskBackend, AsteriskCallFlow, AsteriskEndpoint
from voicecast.pbx.base import (
    AmdParams,
    CallFlowSession,
    PlayResult,
    RecordResult,
    TransferResult,
)

ATTEMPT = "5f2c9a0e7b1d4c3a8e6f0a1b2c3d4e5f"
SOUND = "/var/lib/asterisk/sounds/voicecast/msg-1"
WAIT = 2.0
USAGE_520 = (
    "520-Invalid command syntax.  Proper usage follows:\n"
    " Usage: STREAM FILE <filename> <escape digits> [sample offset]\n"
    "  Send the given file, allowing playback to be interrupted by the given digits.\n"
    "520 End of proper usage.\n"
)


def request(script: str = "flow", *args: str, channel: str = "Local/x;1") -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        "agi_request: agi://127.0.0.1:4573/" + script,
        f"agi_channel: {channel}",
        "agi_language: en",
        "agi_type: Local",
        f"agi_uniqueid: {ATTEMPT}",
        "agi_callerid: +33261910000",
        "agi_calleridname: Voicecast Démo",
        "agi_context: voicecast-outbound",
        "agi_extension: s",
        "agi_priority: 6",
        *(f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)),
    ]
    return ("\n".join(lines) + "\n\n").encode()


class FakeAsterisk:
    """The Asterisk side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.commands: list[str] = []

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def command(self) -> str:
        """The next command line voicecast sends."""
        raw = await asyncio.wait_for(self.reader.readline(), WAIT)
        assert raw.endswith(b"\n"), f"connection closed instead of a command ({raw!r})"
        line = raw.decode()[:-1]
        self.commands.append(line)
        return line

    async def answer(self, expected: str, *lines: str) -> None:
        """Check the next command is ``expected`` and answer it with ``lines``."""
        assert await self.command() == expected
        await self.send("".join(line + "\n" for line in lines))

    async def eof(self) -> bytes:
        """Everything left until voicecast closes the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(), WAIT)
        except ConnectionResetError:
            return b""


Dialogue = Callable[[FakeAsterisk], Awaitable[None]]


@contextlib.asynccontextmanager
async def agi(
    handlers: dict[str, Callable[[AgiSession], Awaitable[None]]], command_timeout: float = WAIT
) -> AsyncIterator[tuple[FastAgiServer, int]]:
    server = FastAgiServer(handlers, command_timeout=command_timeout)
    await server.start("127.0.0.1", 0)
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        await server.close(grace=WAIT)


@contextlib.asynccontextmanager
async def asterisk(port: int) -> AsyncIterator[FakeAsterisk]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield FakeAsterisk(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def run_call(
    handler: Callable[[AgiSession], Awaitable[Any]],
    dialogue: Dialogue,
    *,
    head: bytes | None = None,
    command_timeout: float = WAIT,
) -> dict[str, Any]:
    """Serve one call: ``handler`` on voicecast's side, ``dialogue`` on Asterisk's side.

    Returns ``{"value": ...}`` (what the handler returned; what it raised is re-raised here),
    ``"commands"``: the command lines voicecast sent, and ``"tail"``: the bytes voicecast
    wrote after the dialogue, up to its closing the connection.
    """
    outcome: dict[str, Any] = {}

    async def route(session: AgiSession) -> None:
        outcome["session"] = session
        try:
            outcome["value"] = await handler(session)
        except BaseException as exc:  # incl. pytest's failures, re-raised below
            outcome["error"] = exc
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def main() -> None:
        async with agi({"flow": route}, command_timeout) as (_, port), asterisk(port) as fake:
            await fake.send(head if head is not None else request("flow", ATTEMPT))
            await dialogue(fake)
            outcome["tail"] = await fake.eof()
            outcome["commands"] = fake.commands

    asyncio.run(main())
    if "error" in outcome:
        raise outcome["error"]
    return outcome


# --- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "result", "data", "extra"),
    [
        ("200 result=0 endpos=16000", 200, "0", "", {"endpos": "16000"}),
        ("200 result=1 (HUMAN)", 200, "1", "HUMAN", {}),
        ("200 result=1 (timeout) endpos=8000", 200, "1", "timeout", {"endpos": "8000"}),
        ("200 result=-1 endpos=0", 200, "-1", "", {"endpos": "0"}),
        ("200 result=57 endpos=8000", 200, "57", "", {"endpos": "8000"}),
        ("200 result=1 (LONGGREETING-1500-1500)", 200, "1", "LONGGREETING-1500-1500", {}),
        ("200 result=1 (Voicecast Démo)", 200, "1", "Voicecast Démo", {}),
        ("200 result=1 (result=5)", 200, "1", "result=5", {}),
        ("200 result=1 ()", 200, "1", "", {}),
        ("200 result=0", 200, "0", "", {}),
        ("100 result=0 Trying...", 100, "0", "", {}),
        ("510 Invalid or unknown command", 510, "", "", {}),
        ("511 Command Not Permitted on a dead channel or intercept routine", 511, "", "", {}),
        ("520-Invalid command syntax.  Proper usage follows:", 520, "", "", {}),
        ("520 End of proper usage.", 520, "", "", {}),
    ],
)
def test_parse_result(line: str, code: int, result: str, data: str, extra: dict[str, str]) -> None:
    parsed = parse_result(line)
    assert parsed == AgiResult(code, result, data, extra, line)


@pytest.mark.parametrize("line", ["HANGUP", "", "result=0", "20 result=0", "2000result=0", "OK"])
def test_parse_result_refuses_other_lines(line: str) -> None:
    with pytest.raises(AgiError):
        parse_result(line)


def test_parse_result_data_with_parentheses() -> None:
    assert parse_result("200 result=1 (a(b)c)").data == "a(b)c"
    assert parse_result("200 result=1 (f(x)) endpos=8").data == "f(x)"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "hello world",
        "+33199000010",
        SOUND,
        "2500,1500,800,5000,100,50,3,256,5000",
        "a=b|c:d@e(f)-g_h.i",
        "0123456789",
    ],
)
def test_quote_arg_accepts_plain_values(value: str) -> None:
    assert quote_arg(value) == f'"{value}"'


@pytest.mark.parametrize(
    "value",
    [
        '"',
        'a"b',
        "a'b",
        "a\\b",
        "\\",
        "\r",
        "a\rb",
        "a\nb",
        "a\r\nb",
        "x\r\nHANGUP",
        "$",
        "${EXTEN}",
        "a$b",
        "a;b",
        "a`b`",
        "a\tb",
        "a\x00b",
        "é",
        "a{b}",
    ],
)
def test_quote_arg_rejects_unsafe_values(value: str) -> None:
    with pytest.raises(UnsafeValueError):
        quote_arg(value)


@pytest.mark.parametrize("value", ["x\n", "\n", SOUND + "\n"])
def test_quote_arg_rejects_a_trailing_newline(value: str) -> None:
    with pytest.raises(UnsafeValueError):
        quote_arg(value)


# --- the server -------------------------------------------------------------------------------


def test_request_headers_route_and_arguments() -> None:
    head = request("flow", ATTEMPT, "b", "c", "d", "e", "f", "g", "h", "i", "j10")
    head = head.replace(b"\n", b"\r\n").replace(b"agi_network: yes", b"not_agi: x\r\nbogus")

    async def handler(session: AgiSession) -> None:
        assert session.script == "flow"
        assert session.args == [ATTEMPT, "b", "c", "d", "e", "f", "g", "h", "i", "j10"]
        assert session.env["channel"] == "Local/x;1"
        assert session.env["uniqueid"] == ATTEMPT
        assert session.env["calleridname"] == "Voicecast Démo"
        assert "network" not in session.env
        assert "" not in session.env  # the line without ":" is ignored
        assert "not_agi" not in session.env
        assert not session.hung_up

    async def dialogue(fake: FakeAsterisk) -> None:
        return None

    outcome = run_call(handler, dialogue, head=head)
    assert outcome["tail"] == b""


def test_commands_and_answers() -> None:
    async def handler(session: AgiSession) -> list[object]:
        out: list[object] = []
        res = await session.command("STREAM FILE", SOUND, "")
        out.append((res.code, res.result, res.extra))
        out.append(await session.get_variable("AMDSTATUS"))
        res = await session.exec("Playback", "beep")
        out.append(res.result)
        out.append(await session.get_variable("UNSET"))
        res = await session.command("ANSWER")
        out.append(res.raw)
        return out

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(f'STREAM FILE "{SOUND}" ""', "200 result=0 endpos=16000")
        await fake.answer('GET VARIABLE "AMDSTATUS"', "200 result=1 (HUMAN)")
        await fake.answer('EXEC "Playback" "beep"', "100 result=0 Trying...", "200 result=0")
        await fake.answer('GET VARIABLE "UNSET"', "200 result=0")
        await fake.answer("ANSWER", "", "200 result=0")  # a stray empty line is skipped

    outcome = run_call(handler, dialogue)
    assert outcome["value"] == [
        (200, "0", {"endpos": "16000"}),
        "HUMAN",
        "0",
        None,
        "200 result=0",
    ]


def test_multi_line_520_is_an_error_and_stays_in_step() -> None:
    async def handler(session: AgiSession) -> list[object]:
        out: list[object] = []
        with pytest.raises(AgiError, match="520") as info:
            await session.command("STREAM FILE", SOUND, "")
        out.append(type(info.value))
        out.append(session.hung_up)
        out.append(await session.get_variable("AMDCAUSE"))  # the next answer is its own
        return out

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(f'STREAM FILE "{SOUND}" ""', USAGE_520.rstrip("\n"))
        await fake.answer('GET VARIABLE "AMDCAUSE"', "200 result=1 (LONGGREETING-1500-1500)")

    outcome = run_call(handler, dialogue)
    assert outcome["value"] == [AgiError, False, "LONGGREETING-1500-1500"]


def test_510_is_an_error_not_a_hangup() -> None:
    async def handler(session: AgiSession) -> bool:
        with pytest.raises(AgiError) as info:
            await session.command("FOO BAR")
        assert not isinstance(info.value, AgiHangup)
        return session.hung_up

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer("FOO BAR", "510 Invalid or unknown command")

    assert run_call(handler, dialogue)["value"] is False


def test_hangup_line_before_the_result() -> None:
    async def handler(session: AgiSession) -> list[object]:
        res = await session.command("STREAM FILE", SOUND, "")
        out: list[object] = [res.result, res.extra, session.hung_up]
        with pytest.raises(AgiHangup):
            await session.command("ANSWER")  # nothing is sent on a hung-up channel
        return out

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(f'STREAM FILE "{SOUND}" ""', "HANGUP", "200 result=0 endpos=24000")

    outcome = run_call(handler, dialogue)
    assert outcome["value"] == ["0", {"endpos": "24000"}, True]
    assert outcome["commands"] == [f'STREAM FILE "{SOUND}" ""']
    assert outcome["tail"] == b""


def test_511_dead_channel_is_a_hangup() -> None:
    async def handler(session: AgiSession) -> bool:
        with pytest.raises(AgiHangup):
            await session.command("ANSWER")
        return session.hung_up

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(
            "ANSWER", "511 Command Not Permitted on a dead channel or intercept routine"
        )

    assert run_call(handler, dialogue)["value"] is True


def test_eof_during_a_command_is_a_hangup() -> None:
    async def handler(session: AgiSession) -> bool:
        with pytest.raises(AgiHangup):
            await session.command("STREAM FILE", SOUND, "")
        return session.hung_up

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.command()
        fake.writer.write_eof()

    assert run_call(handler, dialogue)["value"] is True


def test_command_timeout_raises_agi_error() -> None:
    async def handler(session: AgiSession) -> list[object]:
        out: list[object] = []
        with pytest.raises(AgiError, match="timed out") as info:
            await session.command("STREAM FILE", SOUND, "", timeout=0.2)
        out.append(isinstance(info.value, AgiHangup))
        with pytest.raises(AgiError, match="timed out"):
            await session.command("ANSWER")  # the server-wide command_timeout
        return out

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.command()
        await fake.command()

    outcome = run_call(handler, dialogue, command_timeout=0.2)
    assert outcome["value"] == [False]


def test_unsafe_argument_sends_nothing() -> None:
    async def handler(session: AgiSession) -> None:
        for args in (("x\r\nHANGUP",), ('a" "b',), ("${SHELL(id)}",)):
            with pytest.raises(UnsafeValueError):
                await session.command("STREAM FILE", *args)
        for name in ("stream file", "EXEC;HANGUP", "A", "", "HANGUP\r\nEXEC"):
            with pytest.raises(UnsafeValueError):
                await session.command(name)
        for app in ("Play back", "1AMD", "AMD,1", "System(id)"):
            with pytest.raises(UnsafeValueError):
                await session.exec(app)
        await session.command("ANSWER")

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer("ANSWER", "200 result=0")

    outcome = run_call(handler, dialogue)
    assert outcome["commands"] == ["ANSWER"]


def test_command_and_application_names_with_trailing_newline_are_refused() -> None:
    async def handler(session: AgiSession) -> None:
        with pytest.raises(UnsafeValueError):
            await session.command("ANSWER\n", timeout=0.2)
        with pytest.raises(UnsafeValueError):
            await session.exec("AMD\n", timeout=0.2)

    async def dialogue(fake: FakeAsterisk) -> None:
        return None

    run_call(handler, dialogue)


def test_evaluate_function() -> None:
    wav = SOUND + ".wav"

    async def handler(session: AgiSession) -> list[str]:
        return [
            await session.evaluate_function("STAT", "e", wav),
            await session.evaluate_function("STAT", "e", wav),
            await session.evaluate_function("LEN", "abc"),
        ]

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(f'GET FULL VARIABLE "${{STAT(e,{wav})}}"', "200 result=1 (1)")
        await fake.answer(f'GET FULL VARIABLE "${{STAT(e,{wav})}}"', "200 result=0")
        await fake.answer('GET FULL VARIABLE "${LEN(abc)}"', "200 result=1 (3)")

    assert run_call(handler, dialogue)["value"] == ["1", "", "3"]


@pytest.mark.parametrize(
    ("function", "args"),
    [
        ("stat", ("e", "/x.wav")),
        ("STAT)", ("e",)),
        ("STAT(", ()),
        ("SHELL}", ()),
        ("", ()),
        ("1STAT", ()),
        ("STAT", ("e", "/x y.wav")),
        ("STAT", ("e", "/x,y.wav")),
        ("STAT", ("e", "/x)}.wav")),
        ("STAT", ("e", "${SHELL(id)}")),
        ("STAT", ("e", '/x".wav')),
        ("STAT", ("e", "/x.wav\n")),
        ("STAT", ("e", "/x\r\n.wav")),
    ],
)
def test_evaluate_function_validation_sends_nothing(function: str, args: tuple[str, ...]) -> None:
    async def handler(session: AgiSession) -> None:
        with pytest.raises(UnsafeValueError):
            await session.evaluate_function(function, *args)
        await session.command("ANSWER")

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer("ANSWER", "200 result=0")

    assert run_call(handler, dialogue)["commands"] == ["ANSWER"]


def test_unknown_route_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    called: list[AgiSession] = []

    async def handler(session: AgiSession) -> None:
        called.append(session)

    async def main() -> None:
        async with agi({"flow": handler}) as (_, port), asterisk(port) as fake:
            await fake.send(request("nope", ATTEMPT))
            assert await fake.eof() == b""

    with caplog.at_level(logging.ERROR, logger="voicecast.agi.server"):
        asyncio.run(main())
    assert called == []
    assert any("unknown route" in r.getMessage() for r in caplog.records)


def test_headers_cut_by_eof_do_not_hang(caplog: pytest.LogCaptureFixture) -> None:
    called: list[AgiSession] = []

    async def handler(session: AgiSession) -> None:
        called.append(session)

    async def main() -> None:
        async with agi({"flow": handler}) as (server, port), asterisk(port) as fake:
            await fake.send(b"agi_network_script: flow\nagi_arg_1: " + ATTEMPT.encode() + b"\n")
            fake.writer.write_eof()
            assert await fake.eof() == b""
            await asyncio.sleep(0.01)
            assert server.active == 0

    with caplog.at_level(logging.WARNING, logger="voicecast.agi.server"):
        asyncio.run(main())
    assert called == []
    assert any("before the AGI request headers ended" in r.getMessage() for r in caplog.records)


def test_headers_that_never_end_time_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(agi_server, "HEADER_TIMEOUT", 0.2)

    async def handler(session: AgiSession) -> None:
        raise AssertionError("not reached")

    async def main() -> None:
        async with agi({"flow": handler}) as (_, port), asterisk(port) as fake:
            await fake.send(b"agi_network_script: flow\n")  # ...and nothing more
            assert await fake.eof() == b""

    with caplog.at_level(logging.WARNING, logger="voicecast.agi.server"):
        asyncio.run(main())
    assert any("FastAGI request failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "head",
    [
        # many lines, more than MAX_HEADER_BYTES in all
        b"".join(b"agi_x%d: %s\n" % (i, b"a" * 1000) for i in range(70)),
        # one line longer than the reader's line limit
        b"agi_network_script: " + b"a" * 70_000 + b"\n",
    ],
    ids=["many-lines", "one-long-line"],
)
def test_oversized_headers_are_refused(head: bytes, caplog: pytest.LogCaptureFixture) -> None:
    called: list[AgiSession] = []

    async def handler(session: AgiSession) -> None:
        called.append(session)

    async def main() -> None:
        async with agi({"flow": handler}) as (server, port), asterisk(port) as fake:
            with contextlib.suppress(ConnectionError):
                await fake.send(head)
            assert await fake.eof() == b""
            await asyncio.sleep(0.01)
            assert server.active == 0

    with caplog.at_level(logging.WARNING, logger="voicecast.agi.server"):
        asyncio.run(main())
    assert called == []
    assert any("FastAGI request failed" in r.getMessage() for r in caplog.records)


def test_handler_crash_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(session: AgiSession) -> None:
        raise RuntimeError("flow bug")

    async def main() -> None:
        async with agi({"flow": handler}) as (_, port):
            for _ in range(2):  # the server keeps serving
                async with asterisk(port) as fake:
                    await fake.send(request("flow", ATTEMPT))
                    assert await fake.eof() == b""

    with caplog.at_level(logging.ERROR, logger="voicecast.agi.server"):
        asyncio.run(main())
    assert sum("handler crashed" in r.getMessage() for r in caplog.records) == 2


def test_close_cancels_calls_in_progress_after_grace() -> None:
    async def main() -> None:
        in_call = asyncio.Event()
        cancelled: list[bool] = []

        async def handler(session: AgiSession) -> None:
            in_call.set()
            try:
                await session.command("EXEC", "Wait", "60", timeout=60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        server = FastAgiServer({"flow": handler})
        await server.start("127.0.0.1", 0)
        assert server._server is not None
        port = server._server.sockets[0].getsockname()[1]
        async with asterisk(port) as fake:
            await fake.send(request("flow", ATTEMPT))
            await asyncio.wait_for(in_call.wait(), WAIT)
            assert server.active == 1
            await asyncio.wait_for(server.close(grace=0.1), WAIT)
            assert cancelled == [True]
            assert server.active == 0
            assert await fake.command() == 'EXEC "Wait" "60"'
            assert await fake.eof() == b""
        await server.close()  # idempotent

    asyncio.run(main())


# --- AsteriskCallFlow over a FastAGI session --------------------------------------------------


def run_flow(
    body: Callable[[AsteriskCallFlow], Awaitable[Any]], dialogue: Dialogue, dial_string: str = ""
) -> dict[str, Any]:
    async def handler(session: AgiSession) -> Any:
        flow = AsteriskCallFlow(session, ATTEMPT, dial_string)
        return await body(flow)

    return run_call(handler, dialogue)


def test_detect_machine() -> None:
    async def body(flow: AsteriskCallFlow) -> tuple[str, str]:
        return await flow.detect_machine(AmdParams())

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer('EXEC "AMD" "2500,1500,800,5000,100,50,3,256,5000"', "200 result=0")
        await fake.answer('GET VARIABLE "AMDSTATUS"', "200 result=1 (MACHINE)")
        await fake.answer('GET VARIABLE "AMDCAUSE"', "200 result=1 (LONGGREETING-1500-1500)")

    assert run_flow(body, dialogue)["value"] == ("MACHINE", "LONGGREETING-1500-1500")


def test_detect_machine_custom_parameters_and_unset_status() -> None:
    params = AmdParams(
        initial_silence=3000,
        greeting=2000,
        after_greeting_silence=1000,
        total_analysis_time=6000,
        min_word_length=120,
        between_words_silence=60,
        maximum_number_of_words=4,
        silence_threshold=300,
        maximum_word_length=4000,
    )

    async def body(flow: AsteriskCallFlow) -> tuple[str, str]:
        return await flow.detect_machine(params)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer('EXEC "AMD" "3000,2000,1000,6000,120,60,4,300,4000"', "200 result=0")
        await fake.answer('GET VARIABLE "AMDSTATUS"', "200 result=0")
        await fake.answer('GET VARIABLE "AMDCAUSE"', "200 result=0")

    assert run_flow(body, dialogue)["value"] == ("NOTSURE", "")


@pytest.mark.parametrize("how", ["hangup-line", "eof", "511"])
def test_detect_machine_on_hangup(how: str) -> None:
    async def body(flow: AsteriskCallFlow) -> tuple[tuple[str, str], bool]:
        return await flow.detect_machine(AmdParams()), flow.hung_up

    async def dialogue(fake: FakeAsterisk) -> None:
        assert (await fake.command()).startswith('EXEC "AMD" ')
        if how == "hangup-line":
            await fake.send("HANGUP\n200 result=-1\n")
        elif how == "eof":
            fake.writer.write_eof()
        else:
            await fake.send("511 Command Not Permitted on a dead channel or intercept routine\n")

    outcome = run_flow(body, dialogue)
    assert outcome["value"] == (("HANGUP", ""), True)
    assert len(outcome["commands"]) == 1


@pytest.mark.parametrize(
    ("escape", "answer", "expected"),
    [
        ("", "200 result=0 endpos=72000", PlayResult(9000, True, None)),
        ("9", "200 result=57 endpos=8000", PlayResult(1000, False, "9")),
        ("", "200 result=-1 endpos=0", PlayResult(0, False, None)),
        ("", "200 result=0", PlayResult(0, True, None)),
        ("0123456789", "200 result=49 endpos=16004", PlayResult(2000, False, "1")),
    ],
)
def test_play(escape: str, answer: str, expected: PlayResult) -> None:
    async def body(flow: AsteriskCallFlow) -> PlayResult:
        return await flow.play(SOUND, escape)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(f'STREAM FILE "{SOUND}" "{escape}"', answer)

    assert run_flow(body, dialogue)["value"] == expected


def test_play_interrupted_by_hangup() -> None:
    async def body(flow: AsteriskCallFlow) -> list[PlayResult]:
        return [await flow.play(SOUND), await flow.play(SOUND)]

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(f'STREAM FILE "{SOUND}" ""', "HANGUP", "200 result=0 endpos=24000")

    outcome = run_flow(body, dialogue)
    assert outcome["value"] == [PlayResult(3000, False), PlayResult(0, False)]
    assert len(outcome["commands"]) == 1


TONE_ON = 'SET VARIABLE "TONE_DETECT(700,100)" ""'
TONE_OFF = 'SET VARIABLE "TONE_DETECT(0,,x)" ""'


def test_wait_for_beep_ends_at_the_silence_after_a_beep() -> None:
    async def body(flow: AsteriskCallFlow) -> str:
        return await flow.wait_for_beep(1500, 1.0, 30.5, 700)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(TONE_ON, "200 result=1")
        await fake.answer('EXEC "WaitForSilence" "1500,1,30"', "200 result=0")
        await fake.answer('GET VARIABLE "WAITSTATUS"', "200 result=1 (SILENCE)")
        await fake.answer('GET FULL VARIABLE "${TONE_DETECT(rx)}"', "200 result=1 (1)")
        await fake.answer(TONE_OFF, "200 result=1")

    assert run_flow(body, dialogue)["value"] == "beep"


def test_wait_for_beep_waits_again_when_the_greeting_resumes_after_a_pause() -> None:
    async def body(flow: AsteriskCallFlow) -> str:
        return await flow.wait_for_beep(1500, 2.0, 30.5, 700)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(TONE_ON, "200 result=1")
        for noise in ("NOISE", "TIMEOUT"):  # a pause in the greeting, then the real silence
            assert (await fake.command()).startswith('EXEC "WaitForSilence" "1500,1,')
            await fake.send("200 result=0\n")
            await fake.answer('GET VARIABLE "WAITSTATUS"', "200 result=1 (SILENCE)")
            await fake.answer('GET FULL VARIABLE "${TONE_DETECT(rx)}"', "200 result=1 (0)")
            await fake.answer('EXEC "WaitForNoise" "300,1,2"', "200 result=0")
            await fake.answer('GET VARIABLE "WAITSTATUS"', f"200 result=1 ({noise})")
        await fake.answer(TONE_OFF, "200 result=1")

    assert run_flow(body, dialogue)["value"] == "silence"


@pytest.mark.parametrize(("answers", "expected"), [(("TIMEOUT",), "timeout"), ((), "hangup")])
def test_wait_for_beep_cap_and_hangup(answers: tuple[str, ...], expected: str) -> None:
    async def body(flow: AsteriskCallFlow) -> str:
        return await flow.wait_for_beep(1500, 1.0, 5.5, 700)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(TONE_ON, "200 result=1")
        if answers:
            await fake.answer('EXEC "WaitForSilence" "1500,1,5"', "200 result=0")
            await fake.answer('GET VARIABLE "WAITSTATUS"', f"200 result=1 ({answers[0]})")
            await fake.answer(TONE_OFF, "200 result=1")
        else:
            await fake.answer('EXEC "WaitForSilence" "1500,1,5"', "HANGUP", "200 result=-1")

    assert run_flow(body, dialogue)["value"] == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("200 result=49", "1"), ("200 result=0", None), ("200 result=-1", None)],
)
def test_wait_for_digit(answer: str, expected: str | None) -> None:
    async def body(flow: AsteriskCallFlow) -> str | None:
        return await flow.wait_for_digit(5)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer('WAIT FOR DIGIT "5000"', answer)

    assert run_flow(body, dialogue)["value"] == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("200 result=0 (timeout) endpos=40000", RecordResult(5000, None, True)),
        ("200 result=35 (dtmf) endpos=8000", RecordResult(1000, "#", True)),
        ("200 result=-1 (hangup) endpos=16000", RecordResult(2000, None, False)),
        # on silence Asterisk puts a number in result that is not a key (seen: 6000)
        ("200 result=6000 (timeout) endpos=48000", RecordResult(6000, None, True)),
    ],
)
def test_record(answer: str, expected: RecordResult) -> None:
    async def body(flow: AsteriskCallFlow) -> RecordResult:
        return await flow.record("/var/spool/asterisk/rec/x", 60, 3, True)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(
            'RECORD FILE "/var/spool/asterisk/rec/x" "wav" "#" "60000" "BEEP" "s=3"', answer
        )

    assert run_flow(body, dialogue)["value"] == expected


def test_transfer_reads_the_dial_status_even_after_the_callee_hung_up() -> None:
    async def body(flow: AsteriskCallFlow) -> TransferResult:
        return await flow.transfer("extension", "agent@sim-agent", 20, "+33199000107")

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer('SET VARIABLE "CALLERID(num)" "+33199000107"', "200 result=1")
        await fake.answer(f'SET VARIABLE "__VC_ATTEMPT" "{ATTEMPT}"', "200 result=1")
        await fake.answer('EXEC "Dial" "Local/agent@sim-agent,20"', "HANGUP", "200 result=-1")
        await fake.answer('GET VARIABLE "DIALSTATUS"', "200 result=1 (ANSWER)")
        await fake.answer('GET VARIABLE "ANSWEREDTIME"', "200 result=1 (12)")

    assert run_flow(body, dialogue)["value"] == TransferResult("ANSWER", 12.0)


def test_transfer_to_a_number_uses_the_dial_string_and_refuses_unsafe_targets() -> None:
    async def body(flow: AsteriskCallFlow) -> list[object]:
        out: list[object] = [await flow.transfer("number", "+33199000100", 15, "+33162000000")]
        for kind, target in [("extension", "a@b,c"), ("queue", "q\r\nx"), ("fax", "1")]:
            try:
                await flow.transfer(kind, target, 15, "+33162000000")
            except UnsafeValueError:
                out.append("refused")
        return out

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer('SET VARIABLE "CALLERID(num)" "+33162000000"', "200 result=1")
        await fake.answer(f'SET VARIABLE "__VC_ATTEMPT" "{ATTEMPT}"', "200 result=1")
        await fake.answer('EXEC "Dial" "PJSIP/+33199000100@trunk,15"', "200 result=0")
        await fake.answer('GET VARIABLE "DIALSTATUS"', "200 result=1 (BUSY)")
        await fake.answer('GET VARIABLE "ANSWEREDTIME"', "200 result=0")

    value = run_flow(body, dialogue, dial_string="PJSIP/{number}@trunk")["value"]
    assert value == [TransferResult("BUSY", 0.0), "refused", "refused", "refused"]


@pytest.mark.parametrize(
    ("answer", "exists"), [("200 result=1 (1)", True), ("200 result=1 (0)", False)]
)
def test_sound_exists(answer: str, exists: bool) -> None:
    async def body(flow: AsteriskCallFlow) -> bool:
        return await flow.sound_exists(SOUND)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer(f'GET FULL VARIABLE "${{STAT(e,{SOUND}.wav)}}"', answer)

    assert run_flow(body, dialogue)["value"] is exists


def test_hangup_command_and_hangup_when_gone() -> None:
    async def body(flow: AsteriskCallFlow) -> bool:
        await flow.hangup()
        await flow.hangup()  # the channel is gone: ignored
        return flow.hung_up

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer('EXEC "Hangup" "16"', "200 result=-1")
        await fake.answer('EXEC "Hangup" "16"', "511 Command Not Permitted on a dead channel")

    outcome = run_flow(body, dialogue)
    assert outcome["value"] is True


# --- the backend's FastAGI route --------------------------------------------------------------


def _backend() -> AsteriskBackend:
    return AsteriskBackend(
        AsteriskEndpoint(
            "127.0.0.1", 5038, "voicecast", "x", "127.0.0.1", 4573, "agi://x:1", "PJSIP/{number}@t"
        )
    )


def test_flow_route_hands_the_call_to_the_flow() -> None:
    backend = _backend()
    seen: list[str] = []

    async def flow(call: CallFlowSession) -> None:
        seen.append(call.attempt_id)
        await call.hangup()

    backend._flow = flow

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer('EXEC "Hangup" "16"', "200 result=-1")

    run_call(backend._serve_flow, dialogue)
    assert seen == [ATTEMPT]


@pytest.mark.parametrize("arg", [None, "", "not valid!", "short"])
def test_flow_route_without_a_valid_attempt_id_hangs_up(arg: str | None) -> None:
    backend = _backend()

    async def flow(call: CallFlowSession) -> None:
        raise AssertionError("the flow must not run")

    backend._flow = flow
    head = request("flow") if arg is None else request("flow", arg)

    async def dialogue(fake: FakeAsterisk) -> None:
        await fake.answer("HANGUP", "200 result=1")

    outcome = run_call(backend._serve_flow, dialogue, head=head)
    assert outcome["commands"] == ["HANGUP"]
