"""A small asyncio FastAGI server.

Why not a library: pyst2's ``fastagi`` is Python 2 code (``SocketServer``), and panoramisk
1.4's FastAGI ``Application`` reads the request headers in a loop that never ends when
Asterisk closes early, has no timeouts, and does not expect the asynchronous ``HANGUP`` line
Asterisk sends when the channel hangs up (the next result is then read out of step). This one
puts a timeout on every read and write (the request headers: ``header_timeout``; each
command, its write included: ``command_timeout``; closing: :data:`voicecast.streams.CLOSE_TIMEOUT`),
understands ``HANGUP``, and validates every argument it sends.

Protocol reference: Asterisk documentation, "AGI" / "FastAGI": on connect Asterisk sends
``agi_<name>: <value>`` lines and an empty line; then each command is one line, answered by
``200 result=<n> [(<data>)] [key=value ...]`` (or ``510``/``511``/``520`` errors).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from voicecast.errors import UnsafeValueError
from voicecast.streams import close_writer

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0
"""Seconds a new FastAGI connection has to send its complete ``agi_*`` request headers."""
"""Seconds to wait for a FastAGI socket to close before aborting it."""
MAX_HEADER_BYTES = 64 * 1024
_RESULT_RE = re.compile(r"^(\d{3})[ -](.*)\Z")
_KV_RE = re.compile(r"(\w+)=(\S*)")
_SAFE_ARG_RE = re.compile(r"^[A-Za-z0-9 +_.,:/@=|()*#-]*\Z")
_COMMAND_RE = re.compile(r"^[A-Z][A-Z ]*[A-Z]\Z")


class AgiError(Exception):
    """A FastAGI command failed: timeout, protocol error or error status."""


class AgiHangup(AgiError):
    """The channel hung up (``HANGUP`` notice, ``511`` status, or connection closed)."""


@dataclass(frozen=True)
class AgiResult:
    """One command's answer: ``code`` (200 on success), ``result`` (e.g. ``"0"``, ``"-1"``),
    ``data`` (the parenthesised part) and extra ``key=value`` pairs (e.g. ``endpos``)."""

    code: int
    result: str
    data: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    raw: str = ""


def parse_result(line: str) -> AgiResult:
    """Parse a result line such as ``200 result=1 (timeout) endpos=8000``.

    Raises:
        AgiError: the line is not an AGI result.
    """
    m = _RESULT_RE.match(line)
    if not m:
        raise AgiError(f"unexpected AGI line {line!r}")
    code, rest = int(m.group(1)), m.group(2)
    data = ""
    paren = re.search(r"\((.*)\)", rest)
    if paren:
        data = paren.group(1)
        rest = rest[: paren.start()] + rest[paren.end() :]
    pairs = dict(_KV_RE.findall(rest))
    result = pairs.pop("result", "")
    return AgiResult(code, result, data, pairs, line)


def quote_arg(value: str) -> str:
    """Quote one AGI command argument.

    Only a conservative character set is allowed (letters, digits, space and
    ``+_.,:/@=|()*#-``; ``*`` and ``#`` are DTMF escape digits):
    no quotes, backslashes, CR or LF, so a value can never end the command line or add one.

    Raises:
        UnsafeValueError: the value has any other character.
    """
    if not _SAFE_ARG_RE.match(value):
        raise UnsafeValueError(f"unsafe AGI argument {value!r}")
    return f'"{value}"'


class AgiSession:
    """One FastAGI request: the channel's ``agi_*`` variables and a command channel.

    Attributes:
        env: the request headers without their ``agi_`` prefix (``channel``, ``uniqueid``...).
        script: the route (``agi_network_script``), e.g. ``"flow"``.
        args: the AGI arguments (``agi_arg_1``...).
        hung_up: True once Asterisk reported the hangup.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: dict[str, str],
        command_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.env = env
        self.command_timeout = command_timeout
        self.hung_up = False
        self.script = env.get("network_script", "")
        self.args = [env[k] for k in sorted(_arg_keys(env), key=lambda k: int(k[4:]))]

    async def command(self, name: str, *args: str, timeout: float | None = None) -> AgiResult:
        """Send ``name`` with quoted ``args`` and return the result.

        Args:
            name: the AGI command in capitals, e.g. ``"EXEC"``, ``"STREAM FILE"``.
            args: its arguments (each checked by :func:`quote_arg`).
            timeout: seconds to wait (default: the server's command timeout).

        Raises:
            AgiHangup: the channel is gone.
            AgiError: timeout, or a 5xx status other than 511.
            UnsafeValueError: an argument is unsafe (nothing is sent).
        """
        if not _COMMAND_RE.match(name):
            raise UnsafeValueError(f"invalid AGI command {name!r}")
        line = " ".join([name, *(quote_arg(a) for a in args)])
        return await self._send_line(line, name, timeout)

    async def _send_line(
        self, line: str, name: str, timeout: float | None, *, dead_ok: bool = False
    ) -> AgiResult:
        if self.hung_up and not dead_ok:
            raise AgiHangup("channel already hung up")

        async def exchange() -> AgiResult:
            self._writer.write(line.encode("utf-8") + b"\n")
            await self._writer.drain()
            return await self._read_result()

        try:  # one deadline for the write and the answer
            result = await asyncio.wait_for(exchange(), timeout or self.command_timeout)
        except TimeoutError as exc:
            raise AgiError(f"AGI command {name} timed out") from exc
        except (ConnectionError, OSError) as exc:
            self.hung_up = True
            raise AgiHangup(f"connection closed during {name}") from exc
        if result.code == 511:
            self.hung_up = True
            raise AgiHangup("command not permitted on a dead channel")
        if result.code != 200:
            raise AgiError(f"AGI command {name} failed: {result.raw}")
        return result

    async def _read_result(self) -> AgiResult:
        while True:
            raw = await self._reader.readline()
            if not raw:
                self.hung_up = True
                raise AgiHangup("Asterisk closed the FastAGI connection")
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line == "HANGUP":
                self.hung_up = True
                continue
            if line.startswith("520-"):
                while True:  # multi-line usage text until "520 End of proper usage."
                    more = await self._reader.readline()
                    if not more or more.startswith(b"520 "):
                        break
                return AgiResult(520, "", "", {}, line)
            if not line:
                continue
            result = parse_result(line)
            if result.code == 100:  # "100 result=0 Trying..."
                continue
            return result

    async def exec(self, app: str, data: str = "", *, timeout: float | None = None) -> AgiResult:
        """Run a dialplan application (``EXEC app "data"``)."""
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", app):
            raise UnsafeValueError(f"invalid application name {app!r}")
        return await self.command("EXEC", app, data, timeout=timeout)

    async def evaluate_function(self, function: str, *args: str) -> str:
        """Evaluate a dialplan function, e.g. ``STAT(e,/path/file.wav)`` (``GET FULL VARIABLE``).

        Raises:
            UnsafeValueError: a name or argument outside ``A-Za-z0-9/_.-``.
        """
        if not re.fullmatch(r"[A-Z][A-Z_]*", function) or not all(
            re.fullmatch(r"[A-Za-z0-9/_.-]*", a) for a in args
        ):
            raise UnsafeValueError(f"unsafe dialplan function call {function}{args!r}")
        line = f'GET FULL VARIABLE "${{{function}({",".join(args)})}}"'
        result = await self._send_line(line, "GET FULL VARIABLE", None)
        return result.data if result.result == "1" else ""

    async def get_variable(self, name: str, *, dead_ok: bool = False) -> str | None:
        """The channel variable ``name``, or None when unset.

        ``dead_ok``: ask even after Asterisk reported the hangup (``GET VARIABLE`` is allowed
        on a dead channel while the AGI runs, e.g. to read ``DIALSTATUS`` after a bridge the
        callee ended; Asterisk documentation, "AGI": dead-channel commands).

        Raises:
            AgiHangup: the channel is gone (and ``dead_ok`` is false, or Asterisk refused).
        """
        name = quote_arg(name)
        res = await self._send_line(f"GET VARIABLE {name}", "GET VARIABLE", None, dead_ok=dead_ok)
        return res.data if res.result == "1" else None


Handler = Callable[[AgiSession], Awaitable[None]]


def _arg_keys(env: dict[str, str]) -> list[str]:
    return [k for k in env if re.fullmatch(r"arg_\d+", k)]


class FastAgiServer:
    """Serves FastAGI requests: one ``handler(session)`` task per call.

    Args:
        handlers: route name (``agi_network_script``) -> coroutine function.
        command_timeout: default seconds for each AGI command (``[fastagi]
            command_timeout``).
        header_timeout: seconds a new connection has to send its request headers (a client
            that connects and sends nothing is dropped then); None: :data:`HEADER_TIMEOUT`.
    """

    def __init__(
        self,
        handlers: dict[str, Handler],
        *,
        command_timeout: float = 120.0,
        header_timeout: float | None = None,
    ) -> None:
        self.handlers = handlers
        self.command_timeout = command_timeout
        self.header_timeout = header_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``.

        Raises:
            OSError: the address is in use or cannot be bound.
        """
        self._server = await asyncio.start_server(self._serve, host, port)
        log.info("FastAGI listening on %s:%s", host, port)

    @property
    def active(self) -> int:
        """Number of calls being served."""
        return len(self._tasks)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            limit = self.header_timeout or HEADER_TIMEOUT
            env = await asyncio.wait_for(_read_env(reader), limit)
            session = AgiSession(reader, writer, env, self.command_timeout)
            handler = self.handlers.get(session.script)
            if handler is None:
                log.error("FastAGI request for unknown route %r", session.script)
                return
            await handler(session)
        except TimeoutError:
            log.warning(
                "FastAGI request failed: no complete AGI request within %ss",
                self.header_timeout or HEADER_TIMEOUT,
            )
        except (AgiError, ValueError) as exc:
            log.warning("FastAGI request failed: %s", exc)
        except asyncio.CancelledError:
            log.info("FastAGI call cancelled at shutdown")
        except Exception:
            log.exception("FastAGI handler crashed")
        finally:
            self._tasks.discard(task)
            await close_writer(writer)

    async def close(self, *, grace: float = 0.0) -> None:
        """Stop listening; wait up to ``grace`` seconds for calls in progress, then cancel."""
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stop accepting; wait_closed() last (3.12+ waits for connections)
        if self._tasks and grace > 0:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()


async def _read_env(reader: asyncio.StreamReader) -> dict[str, str]:
    env: dict[str, str] = {}
    size = 0
    while True:
        raw = await reader.readline()
        if not raw:
            raise AgiError("connection closed before the AGI request headers ended")
        size += len(raw)
        if size > MAX_HEADER_BYTES:
            raise AgiError("AGI request headers too large")
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            return env
        key, sep, value = line.partition(":")
        if sep and key.startswith("agi_"):
            env[key[4:]] = value.strip()
