"""A small asyncio AMI client: login, actions with timeouts, events by name.

Guarantees a dialer needs (each tested):

- an action is written once; on connection loss every pending action fails with
  :class:`AmiConnectionError` and is never re-sent;
- every action has a timeout (:class:`AmiError` on expiry), covering the write too (a
  manager that stops reading fills the socket buffer: ``drain()`` would wait forever);
- closing never waits more than :data:`voicecast.streams.CLOSE_TIMEOUT` for the peer
  (then the socket is aborted);
- an event handler that raises is logged and does not disturb the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from voicecast.ami.protocol import AmiMessage, AmiProtocolError, encode_action, parse_messages
from voicecast.streams import close_writer

log = logging.getLogger(__name__)

EventHandler = Callable[[AmiMessage], None]

"""Seconds :meth:`AmiClient.close` waits for the socket to close before aborting it."""


class AmiError(Exception):
    """An action failed: error response, timeout, or protocol error."""


class AmiConnectionError(AmiError):
    """Not connected, connection refused or lost, or login refused."""


@dataclass
class AmiResponse:
    """The response to one action, plus its list events for list actions (EventList)."""

    message: AmiMessage
    events: list[AmiMessage] = field(default_factory=list)

    @property
    def success(self) -> bool:
        """True when ``Response: Success`` (or ``Follows``)."""
        return (self.message.response or "").lower() in ("success", "follows")


@dataclass
class _Pending:
    future: asyncio.Future[AmiResponse]
    collect_list: bool
    response: AmiMessage | None = None
    events: list[AmiMessage] = field(default_factory=list)


class AmiClient:
    """One AMI connection.

    Args:
        host, port: the Asterisk manager (manager.conf ``bindaddr``/``port``).
        username, secret: the manager account.
        connect_timeout: seconds to connect and log in.
        action_timeout: default seconds to wait for an action's response.
        keepalive: seconds between ``Ping`` actions once logged in (0: none). A Ping
            unanswered within ``action_timeout`` drops the connection as lost (the
            disconnect handlers run), so that a silent network cut, with no TCP reset,
            is noticed within ``keepalive + action_timeout`` seconds, not at the next
            action. ``Ping`` needs no AMI privilege class.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        connect_timeout: float = 5.0,
        action_timeout: float = 10.0,
        keepalive: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.connect_timeout = connect_timeout
        self.action_timeout = action_timeout
        self.keepalive = keepalive
        self._keepalive_task: asyncio.Task[None] | None = None
        self.banner: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._pending: dict[str, _Pending] = {}
        self._handlers: dict[str, list[EventHandler]] = defaultdict(list)
        self._disconnect_handlers: list[Callable[[Exception | None], None]] = []
        self._ids = itertools.count(1)
        self._prefix = f"vc-{secrets.token_hex(4)}"
        self._logged_in = False

    @property
    def connected(self) -> bool:
        """True while the connection is open and logged in."""
        return self._logged_in and self._writer is not None and not self._writer.is_closing()

    def on(self, event: str, handler: EventHandler) -> None:
        """Call ``handler(message)`` for every event named ``event`` (exact, case-insensitive).

        ``"*"`` subscribes to all events. Handlers run in the reader task; exceptions are
        logged and swallowed.
        """
        self._handlers[event.lower()].append(handler)

    def on_disconnect(self, handler: Callable[[Exception | None], None]) -> None:
        """Call ``handler(exc)`` when an established connection is lost."""
        self._disconnect_handlers.append(handler)

    async def connect(self) -> None:
        """Open the connection and log in.

        Raises:
            AmiConnectionError: refused, timed out, not an AMI server, or login refused.
        """
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
            self._reader = reader
            banner = await asyncio.wait_for(reader.readline(), self.connect_timeout)
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: endless banner line
            await self._drop(None, notify=False)
            raise AmiConnectionError(
                f"cannot connect to AMI at {self.host}:{self.port}: {exc or 'timed out'}"
            ) from exc
        self.banner = banner.decode("utf-8", errors="replace").strip()
        if not self.banner.startswith("Asterisk Call Manager"):
            await self._drop(None, notify=False)
            raise AmiConnectionError(
                f"{self.host}:{self.port} is not an Asterisk manager (banner {self.banner!r})"
            )
        self._read_task = asyncio.create_task(self._read_loop(), name="ami-reader")
        try:
            resp = await self._send(
                "Login",
                {"Username": self.username, "Secret": self._secret, "Events": "on"},
                timeout=self.connect_timeout,
                require_login=False,
            )
        except AmiError as exc:
            await self.close()
            raise AmiConnectionError(f"AMI login failed: {exc}") from exc
        if not resp.success:
            await self.close()
            raise AmiConnectionError(
                f"AMI login refused for user {self.username!r}: {resp.message.get('Message')}"
            )
        self._logged_in = True
        log.info("AMI connected to %s:%s (%s)", self.host, self.port, self.banner)
        if self.keepalive > 0:
            self._keepalive_task = asyncio.create_task(self._keep_alive(), name="ami-keepalive")

    async def _keep_alive(self) -> None:
        """Ping every :attr:`keepalive` seconds; no answer in time: the connection is lost."""
        while self.connected:
            await asyncio.sleep(self.keepalive)
            try:
                await self._send("Ping", {}, timeout=self.action_timeout)
            except AmiConnectionError:
                return  # lost already: the reader reported it
            except AmiError:
                log.warning(
                    "AMI: no answer to a Ping within %gs: the connection is lost",
                    self.action_timeout,
                )
                reader, self._read_task = self._read_task, None
                if reader is not None:
                    reader.cancel()
                await self._drop(AmiConnectionError("no answer to the keepalive Ping"), notify=True)
                return

    async def send_action(
        self,
        action: str,
        headers: Mapping[str, str | Sequence[str]] | None = None,
        *,
        timeout: float | None = None,
        collect_list: bool = False,
        action_id: str | None = None,
    ) -> AmiResponse:
        """Send one action and wait for its response.

        Args:
            action: the action name, e.g. ``"Originate"``.
            headers: its headers; values are validated (no CR/LF, see
                :func:`voicecast.ami.protocol.check_value`).
            timeout: seconds (default :attr:`action_timeout`).
            collect_list: wait for the list events up to ``EventList: Complete``.
            action_id: the ``ActionID`` to use (default: a generated one); events that
                later carry it (e.g. OriginateResponse) are dispatched as events.

        Raises:
            AmiConnectionError: not connected, or the connection dropped before the answer.
            AmiError: no answer within the timeout.
            voicecast.errors.UnsafeValueError: a header is unsafe (nothing is sent).
        """
        return await self._send(
            action, headers or {}, timeout=timeout, collect_list=collect_list, action_id=action_id
        )

    async def _send(
        self,
        action: str,
        headers: Mapping[str, str | Sequence[str]],
        *,
        timeout: float | None,
        collect_list: bool = False,
        require_login: bool = True,
        action_id: str | None = None,
    ) -> AmiResponse:
        if (
            self._writer is None
            or self._writer.is_closing()
            or (require_login and not self._logged_in)
        ):
            raise AmiConnectionError("AMI is not connected")
        action_id = action_id or f"{self._prefix}-{next(self._ids)}"
        if action_id in self._pending:
            raise AmiError(f"ActionID {action_id!r} already in use")
        data = encode_action(action, [*_items(headers), ("ActionID", action_id)])
        pending = _Pending(asyncio.get_running_loop().create_future(), collect_list)
        self._pending[action_id] = pending
        writer = self._writer

        async def exchange() -> AmiResponse:
            writer.write(data)
            await writer.drain()
            return await asyncio.shield(pending.future)

        try:  # one deadline for the write and the answer
            return await asyncio.wait_for(exchange(), timeout or self.action_timeout)
        except TimeoutError as exc:
            raise AmiError(f"AMI action {action} got no answer in time") from exc
        except (ConnectionError, OSError) as exc:
            raise AmiConnectionError(f"AMI connection lost while sending {action}") from exc
        finally:
            self._pending.pop(action_id, None)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        buffer = b""
        error: Exception | None = None
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                messages, buffer = parse_messages(buffer + chunk)
                for message in messages:
                    self._dispatch(message)
        except (OSError, AmiProtocolError) as exc:
            error = exc
            log.warning("AMI connection error: %s", exc)
        except asyncio.CancelledError:
            return
        await self._drop(error, notify=True)

    def _dispatch(self, message: AmiMessage) -> None:
        action_id = message.action_id
        pending = self._pending.get(action_id) if action_id else None
        if pending is not None and not pending.future.done():
            if message.response is not None and pending.response is None:
                pending.response = message
                listing = (message.get("EventList") or "").lower() == "start"
                if not (pending.collect_list and listing and message.response == "Success"):
                    pending.future.set_result(AmiResponse(message))
                return
            if pending.collect_list and message.event is not None:
                if (message.get("EventList") or "").lower() == "complete":
                    assert pending.response is not None
                    pending.future.set_result(AmiResponse(pending.response, pending.events))
                else:
                    pending.events.append(message)
                return
        name = message.event
        if name is None:
            return
        for handler in [*self._handlers.get(name.lower(), ()), *self._handlers.get("*", ())]:
            try:
                handler(message)
            except Exception:
                log.exception("AMI event handler failed on %s", name)

    async def _drop(self, error: Exception | None, *, notify: bool) -> None:
        was_up = self._logged_in
        self._logged_in = False
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    AmiConnectionError("AMI connection lost before the answer")
                )
        self._pending.clear()
        if self._writer is not None:
            await close_writer(self._writer)
        self._writer = None
        self._reader = None
        if notify and was_up:
            log.warning("AMI connection to %s:%s lost", self.host, self.port)
            for handler in self._disconnect_handlers:
                try:
                    handler(error)
                except Exception:
                    log.exception("AMI disconnect handler failed")

    async def close(self) -> None:
        """Log off (best effort) and close; pending actions fail. Idempotent."""
        keepalive, self._keepalive_task = self._keepalive_task, None
        if keepalive is not None and keepalive is not asyncio.current_task():
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        if self._writer is not None and self._logged_in:
            self._logged_in = False  # a close, not a loss: no disconnect notice
            with contextlib.suppress(AmiError, OSError):
                await self._send("Logoff", {}, timeout=1.0, require_login=False)
        task, self._read_task = self._read_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop(None, notify=False)


def _items(headers: Mapping[str, str | Sequence[str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in headers.items():
        if isinstance(value, str):
            out.append((key, value))
        else:
            out.extend((key, v) for v in value)
    return out
