"""The Asterisk backend: AMI for Originate and call events, FastAGI for the call flow.

Correlation: each attempt's id is sent as the Originate ``ChannelId`` (so it becomes the
channel's ``Uniqueid``), as ``OtherChannelId`` + ``-b`` for the second leg of a Local channel,
as the Originate's ``ActionID`` (the OriginateResponse ``Uniqueid`` can be junk on failure),
and as the first FastAGI argument. References: Asterisk documentation, AMI action
``Originate``, events ``OriginateResponse`` and ``Hangup``, application ``AMD``,
``WaitForSilence``, AGI command ``STREAM FILE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from voicecast.agi.server import AgiError, AgiHangup, AgiSession, FastAgiServer
from voicecast.ami.client import AmiClient, AmiConnectionError, AmiError
from voicecast.ami.protocol import AmiMessage
from voicecast.errors import UnsafeValueError
from voicecast.pbx.base import (
    AmdParams,
    CallFlowHandler,
    CallFlowSession,
    ChannelInfo,
    OriginateRejected,
    OriginateRequest,
    OriginateUnknown,
    PbxListener,
    PbxUnavailable,
    PlayResult,
    RecordResult,
    TransferResult,
)
from voicecast.pbx.validation import (
    EXTENSION_RE,
    QUEUE_RE,
    build_dial_string,
    caller_id_header,
    channel_variable,
    check_attempt_id,
    check_e164,
)

log = logging.getLogger(__name__)

SECOND_LEG_SUFFIX = "-b"
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
SAMPLES_PER_MS = 8  # STREAM FILE reports endpos in samples at 8 kHz

InboundHandler = Callable[[CallFlowSession, "str | None", str], Awaitable[object]]
"""``handler(call, caller, called)``: a call to one of our numbers; ``caller`` is the CLI as
Asterisk gives it (None when absent), ``called`` the number dialled (the first AGI arg)."""

BEEP_MIN_MS = 100
NOISE_MS = 300  # sound that means the greeting goes on after a pause (WaitForNoise)
TRANSFER_BRIDGE_LIMIT = 4 * 3600.0  # seconds an AGI Dial/Queue may last before we give up


@dataclass(frozen=True)
class AsteriskEndpoint:
    """Where and how to reach one Asterisk.

    Attributes:
        ami_host, ami_port, username, secret: the AMI account (manager.conf).
        agi_host, agi_port: where voicecast's FastAGI server listens.
        agi_url: how Asterisk reaches that server (``agi://host:port``).
        dial_string: template such as ``PJSIP/{number}@trunk``.
        context: the dialplan context answered calls enter (``voicecast-outbound``).
        connect_timeout, action_timeout, agi_timeout: seconds.
        keepalive: seconds between AMI Pings (0: none), see :class:`AmiClient`.
    """

    ami_host: str
    ami_port: int
    username: str
    secret: str
    agi_host: str
    agi_port: int
    agi_url: str
    dial_string: str
    context: str = "voicecast-outbound"
    connect_timeout: float = 5.0
    action_timeout: float = 10.0
    agi_timeout: float = 120.0
    keepalive: float = 10.0


def attempt_of(unique_id: str) -> tuple[str, bool] | None:
    """Map a channel Uniqueid to (attempt id, is_primary_leg), or None if not ours."""
    if unique_id.endswith(SECOND_LEG_SUFFIX):
        base = unique_id[: -len(SECOND_LEG_SUFFIX)]
        primary = False
    else:
        base, primary = unique_id, True
    try:
        return check_attempt_id(base), primary
    except ValueError:
        return None


class AsteriskCallFlow:
    """:class:`~voicecast.pbx.base.CallFlowSession` over one FastAGI session."""

    def __init__(self, session: AgiSession, attempt_id: str, dial_string: str = "") -> None:
        self._agi = session
        self.attempt_id = attempt_id
        self._dial_string = dial_string

    @property
    def hung_up(self) -> bool:
        """True once Asterisk reported the hangup."""
        return self._agi.hung_up

    async def detect_machine(self, params: AmdParams) -> tuple[str, str]:
        """``EXEC AMD`` with ``params``; returns (AMDSTATUS, AMDCAUSE)."""
        args = ",".join(
            str(int(v))
            for v in (
                params.initial_silence,
                params.greeting,
                params.after_greeting_silence,
                params.total_analysis_time,
                params.min_word_length,
                params.between_words_silence,
                params.maximum_number_of_words,
                params.silence_threshold,
                params.maximum_word_length,
            )
        )
        try:
            await self._agi.exec("AMD", args, timeout=params.total_analysis_time / 1000 + 10)
            status = await self._agi.get_variable("AMDSTATUS") or "NOTSURE"
            cause = await self._agi.get_variable("AMDCAUSE") or ""
        except AgiHangup:
            return "HANGUP", ""
        return status, cause

    async def sound_exists(self, sound: str) -> bool:
        """Whether ``sound``.wav exists as Asterisk sees it (``STAT(e,...)``)."""
        try:
            return await self._agi.evaluate_function("STAT", "e", f"{sound}.wav") == "1"
        except AgiHangup:
            return True

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        """``STREAM FILE sound escape_digits``; reports ms played and the key pressed."""
        try:
            res = await self._agi.command("STREAM FILE", sound, escape_digits)
        except AgiHangup:
            return PlayResult(0, False)
        played_ms = int(res.extra.get("endpos", "0") or 0) // SAMPLES_PER_MS
        if res.result == "0":
            return PlayResult(played_ms, not self._agi.hung_up)
        if res.result.isdigit() and int(res.result) > 0:
            return PlayResult(played_ms, False, chr(int(res.result)))
        return PlayResult(played_ms, False)

    async def wait_for_digit(self, timeout: float) -> str | None:
        """``WAIT FOR DIGIT timeout_ms``; the key, or None on timeout or hangup."""
        try:
            res = await self._agi.command(
                "WAIT FOR DIGIT", str(max(1, int(timeout * 1000))), timeout=timeout + 10
            )
        except AgiHangup:
            return None
        return chr(int(res.result)) if res.result.isdigit() and int(res.result) > 0 else None

    async def wait_for_beep(
        self, silence_ms: int, resume_s: float, timeout: float, beep_hz: int = 1000
    ) -> str:
        """Wait for a mailbox to start recording, ``timeout`` seconds at most.

        Repeated silence detection, with tone detection as a hint: ``WaitForSilence`` until
        ``silence_ms`` of silence; if a tone of ``beep_hz`` Hz was heard before it
        (``TONE_DETECT``, Asterisk 16.21+), the mailbox beeped: return ``"beep"``. Otherwise
        the silence may be a pause inside the greeting: ``WaitForNoise`` up to ``resume_s``
        seconds; no sound means the mailbox is recording (``"silence"``), sound means the
        greeting goes on and the wait starts again. ``"timeout"`` at the cap, ``"hangup"``
        when the line is gone. References: Asterisk documentation, ``WaitForSilence``,
        ``WaitForNoise``, ``TONE_DETECT``.
        """
        agi = self._agi
        deadline = time.monotonic() + timeout
        try:
            await agi.command("SET VARIABLE", f"TONE_DETECT({int(beep_hz)},{BEEP_MIN_MS})", "")
            while True:
                left = deadline - time.monotonic()
                if left < 1:
                    return "timeout"
                await agi.exec(
                    "WaitForSilence", f"{int(silence_ms)},1,{int(left)}", timeout=left + 10
                )
                if await agi.get_variable("WAITSTATUS") != "SILENCE":
                    return "timeout"
                tones = await agi.evaluate_function("TONE_DETECT", "rx")
                if tones.isdigit() and int(tones) > 0:
                    return "beep"
                left = deadline - time.monotonic()
                wait = max(1, int(min(resume_s, left)))
                await agi.exec("WaitForNoise", f"{NOISE_MS},1,{wait}", timeout=wait + 10)
                if await agi.get_variable("WAITSTATUS") != "NOISE":
                    return "silence"
        except AgiHangup:
            return "hangup"
        finally:
            with contextlib.suppress(AgiError):
                await agi.command("SET VARIABLE", "TONE_DETECT(0,,x)", "")

    async def record(
        self, path: str, max_seconds: float, silence_seconds: float, beep: bool
    ) -> RecordResult:
        """``RECORD FILE path wav # max_ms [BEEP] s=silence``: the callee's reply.

        ``path``: PBX file path without extension. Ends on ``#``, ``silence_seconds`` of
        silence, ``max_seconds``, or a hangup.
        """
        args = [path, "wav", "#", str(int(max_seconds * 1000))]
        if beep:
            args.append("BEEP")
        args.append(f"s={max(1, int(silence_seconds))}")
        try:
            res = await self._agi.command("RECORD FILE", *args, timeout=max_seconds + 15)
        except AgiHangup:
            return RecordResult(0, None, False)
        ms = int(res.extra.get("endpos", "0") or 0) // SAMPLES_PER_MS
        # a key is reported as "(dtmf)"; on silence or timeout the result is not a key
        if res.data == "dtmf" and res.result.isdigit() and int(res.result) > 0:
            return RecordResult(ms, chr(int(res.result)), True)
        return RecordResult(ms, None, res.result != "-1" and not self._agi.hung_up)

    async def transfer(
        self, kind: str, target: str, timeout: float, caller_id: str
    ) -> TransferResult:
        """Bridge the callee to an extension (``exten@context``, dialled as a Local
        channel), a queue (``Queue()``) or a number (the configured dial string).

        ``caller_id`` (E.164) is presented to the target. Returns when the transfer is over:
        ``DIALSTATUS`` and the bridged seconds (``ANSWEREDTIME``), read even when the callee
        hung up during the bridge. References: Asterisk documentation, ``Dial``, ``Queue``.

        Raises:
            UnsafeValueError: ``kind`` is unknown or ``target`` / ``caller_id`` is unsafe.
        """
        agi = self._agi
        if kind == "extension" and EXTENSION_RE.match(target):
            app, data = "Dial", f"Local/{target},{int(timeout)}"
        elif kind == "number":
            app, data = "Dial", f"{build_dial_string(self._dial_string, target)},{int(timeout)}"
        elif kind == "queue" and QUEUE_RE.match(target):
            app, data = "Queue", f"{target},,,,{int(timeout)}"
        else:
            raise UnsafeValueError(f"unsafe transfer target {kind} {target!r}")
        started = time.monotonic()
        try:
            await agi.command("SET VARIABLE", "CALLERID(num)", check_e164(caller_id))
            # inherited by the target's channel: its CDR and logs name the attempt
            await agi.command("SET VARIABLE", "__VC_ATTEMPT", check_attempt_id(self.attempt_id))
            await agi.exec(app, data, timeout=timeout + TRANSFER_BRIDGE_LIMIT)
        except AgiHangup:
            pass
        try:
            if app == "Queue":
                status = await agi.get_variable("QUEUESTATUS", dead_ok=True)
                if status:
                    return TransferResult(status)
                return TransferResult("ANSWER", round(time.monotonic() - started, 1))
            status = await agi.get_variable("DIALSTATUS", dead_ok=True) or "CANCEL"
            talk = await agi.get_variable("ANSWEREDTIME", dead_ok=True) or "0"
        except AgiError:
            return TransferResult("CANCEL")
        try:
            seconds = float(talk)
        except ValueError:
            seconds = 0.0
        return TransferResult(status.upper(), seconds)

    async def hangup(self) -> None:
        """``Hangup(16)``: normal clearing (ignored if already gone)."""
        with contextlib.suppress(AgiError):
            await self._agi.exec("Hangup", "16")


class AsteriskBackend:
    """:class:`~voicecast.pbx.base.PbxBackend` for one Asterisk over AMI + FastAGI.

    Reconnects AMI with back-off after a loss (logging in before anything else) and reports
    the connection state to the listener; an action pending at the loss is never re-sent.
    """

    def __init__(
        self,
        endpoint: AsteriskEndpoint,
        *,
        inbound: InboundHandler | None = None,
        node: str | None = None,
        serve_agi: bool = True,
    ):
        """Args:
        endpoint: the AMI account and the FastAGI address.
        inbound: serves calls to our numbers (the call-back line); None: a goodbye.
        node: this Asterisk's node name, passed to ``on_connection`` and set on each
            :class:`ChannelInfo` (None: the only PBX).
        serve_agi: run the FastAGI server (False in an :class:`AsteriskPool`, whose one
            server serves every node).
        """
        self.endpoint = endpoint
        self.node = node
        self.serve_agi = serve_agi
        self._inbound = inbound
        self._client: AmiClient | None = None
        self._agi: FastAgiServer | None = None
        self._listener: PbxListener | None = None
        self._flow: CallFlowHandler | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def connected(self) -> bool:
        """True while AMI is logged in."""
        return self._client is not None and self._client.connected

    async def start(self, listener: PbxListener, flow: CallFlowHandler) -> None:
        """Connect AMI and start the FastAGI server.

        Raises:
            PbxUnavailable: AMI unreachable or login refused, or the FastAGI port is taken.
        """
        self._listener, self._flow = listener, flow
        self._stopping = False
        if not self.serve_agi:
            await self._connect()
            return
        self._agi = await start_agi(self.endpoint, self._serve_flow, self._serve_inbound)
        try:
            await self._connect()
        except PbxUnavailable:
            await self._agi.close()
            raise

    async def _connect(self) -> None:
        ep = self.endpoint
        client = AmiClient(
            ep.ami_host,
            ep.ami_port,
            ep.username,
            ep.secret,
            connect_timeout=ep.connect_timeout,
            action_timeout=ep.action_timeout,
            keepalive=ep.keepalive,
        )
        client.on("OriginateResponse", self._on_originate_response)
        client.on("Hangup", self._on_hangup)
        client.on_disconnect(self._on_disconnect)
        try:
            await client.connect()
        except AmiConnectionError as exc:
            raise PbxUnavailable(str(exc)) from exc
        self._client = client
        if self._listener is not None:
            self._listener.on_connection(True, self.node)

    def reconnect_later(self, listener: PbxListener) -> None:
        """A node that could not be reached at start: keep trying in the background with
        back-off (:data:`RECONNECT_DELAYS`); ``listener`` hears when it comes up."""
        self._listener = listener
        self._stopping = False
        self._schedule_reconnect()

    def _on_disconnect(self, _exc: Exception | None) -> None:
        if self._listener is not None:
            self._listener.on_connection(False, self.node)
        if not self._stopping:
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._reconnect_task is None:
            self._reconnect_task = asyncio.create_task(self._reconnect(), name="ami-reconnect")

    async def _reconnect(self) -> None:
        attempt = 0
        try:
            while not self._stopping:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                await asyncio.sleep(delay)
                where = f" (node {self.node})" if self.node else ""
                try:
                    await self._connect()
                    log.warning("AMI%s reconnected after %d tries", where, attempt + 1)
                    return
                except PbxUnavailable as exc:
                    attempt += 1
                    log.warning(
                        "AMI%s reconnect failed (%s); next try in %.1fs",
                        where,
                        exc,
                        RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)],
                    )
        finally:
            self._reconnect_task = None

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop serving calls and disconnect."""
        self._stopping = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
        if self._agi is not None:
            await self._agi.close(grace=grace)
        if self._client is not None:
            await self._client.close()

    async def originate(self, request: OriginateRequest) -> None:
        """Send an async Originate (see :meth:`voicecast.pbx.base.PbxBackend.originate`)."""
        ep = self.endpoint
        attempt_id = check_attempt_id(request.attempt_id)
        extra = [channel_variable(k, v, reserved="VC_") for k, v in request.variables.items()]
        variables = {"VC_ATTEMPT": attempt_id, "VC_AGI": ep.agi_url}
        headers = {
            "Channel": build_dial_string(request.dial_string or ep.dial_string, request.number),
            "Context": ep.context,
            "Exten": "s",
            "Priority": "1",
            "CallerID": caller_id_header(request.caller_id, request.caller_name),
            "Timeout": str(int(request.ring_timeout * 1000)),
            "Async": "true",
            "ChannelId": attempt_id,
            "OtherChannelId": attempt_id + SECOND_LEG_SUFFIX,
            "Variable": [*(channel_variable(k, v) for k, v in variables.items()), *extra],
        }
        client = self._client
        if client is None or not client.connected:
            raise PbxUnavailable("not connected to Asterisk (AMI)")
        try:
            resp = await client.send_action("Originate", headers, action_id=attempt_id)
        except AmiConnectionError as exc:
            raise OriginateUnknown(f"AMI connection lost during Originate: {exc}") from exc
        except AmiError as exc:
            raise OriginateUnknown(f"Originate not acknowledged: {exc}") from exc
        if not resp.success:
            raise OriginateRejected(
                f"Asterisk refused the Originate: {resp.message.get('Message') or 'error'}"
            )

    async def list_channels(self) -> list[ChannelInfo]:
        """``CoreShowChannels``: the channels up now, with our attempt ids.

        Raises:
            PbxUnavailable: not connected or no answer.
        """
        client = self._client
        if client is None or not client.connected:
            raise PbxUnavailable("not connected to Asterisk (AMI)")
        try:
            resp = await client.send_action("CoreShowChannels", collect_list=True)
        except AmiError as exc:
            raise PbxUnavailable(f"CoreShowChannels failed: {exc}") from exc
        out = []
        for ev in resp.events:
            if ev.event != "CoreShowChannel":
                continue
            uid = ev.get("Uniqueid") or ""
            ours = attempt_of(uid)
            out.append(
                ChannelInfo(
                    channel=ev.get("Channel") or "",
                    unique_id=uid,
                    state=ev.get("ChannelStateDesc") or "",
                    attempt_id=ours[0] if ours and ours[1] else None,
                    node=self.node,
                )
            )
        return out

    async def hangup(self, attempt_id: str, cause: int = 16) -> None:
        """Hang up the attempt's primary channel if it is up (``Hangup`` action)."""
        for ch in await self.list_channels():
            if ch.attempt_id == attempt_id and self._client is not None:
                with contextlib.suppress(AmiError):
                    await self._client.send_action(
                        "Hangup", {"Channel": ch.channel, "Cause": str(int(cause))}
                    )

    # --- AMI events -> listener ------------------------------------------------------------

    def _on_originate_response(self, msg: AmiMessage) -> None:
        if self._listener is None:
            return
        ours = attempt_of(msg.get("ActionID") or "") or attempt_of(msg.get("Uniqueid") or "")
        if ours is None:
            return
        reason = int(msg.get("Reason") or 0) if (msg.get("Reason") or "0").isdigit() else 0
        answered = (msg.get("Response") or "").lower() == "success"
        self._listener.on_originate_result(ours[0], answered, reason)

    def _on_hangup(self, msg: AmiMessage) -> None:
        if self._listener is None:
            return
        ours = attempt_of(msg.get("Uniqueid") or "")
        if ours is None:
            return
        raw = msg.get("Cause") or "0"
        cause = int(raw) if raw.isdigit() else 0
        self._listener.on_hangup(ours[0], cause, msg.get("Cause-txt") or "", ours[1])

    # --- FastAGI routes --------------------------------------------------------------------

    async def _serve_flow(self, session: AgiSession) -> None:
        assert self._flow is not None
        await serve_flow(session, self._flow, lambda _attempt: self.endpoint.dial_string)

    async def _serve_inbound(self, session: AgiSession) -> None:
        await serve_inbound(session, self._inbound, self.endpoint.dial_string)


async def start_agi(
    ep: AsteriskEndpoint,
    flow: Callable[[AgiSession], Awaitable[None]],
    inbound: Callable[[AgiSession], Awaitable[None]],
) -> FastAgiServer:
    """Start the FastAGI server on ``ep.agi_host:agi_port`` with its ``flow`` and
    ``inbound`` routes.

    Raises:
        PbxUnavailable: the port cannot be listened on (taken, no such address).
    """
    server = FastAgiServer({"flow": flow, "inbound": inbound}, command_timeout=ep.agi_timeout)
    try:
        await server.start(ep.agi_host, ep.agi_port)
    except OSError as exc:
        raise PbxUnavailable(
            f"cannot listen for FastAGI on {ep.agi_host}:{ep.agi_port}: {exc}"
        ) from exc
    return server


async def serve_flow(
    session: AgiSession, flow: CallFlowHandler, dial_string_of: Callable[[str], str]
) -> None:
    """The FastAGI ``flow`` route: the outbound call flow of the attempt named by the first
    AGI argument (hung up when it is not an attempt id). ``dial_string_of(attempt_id)``:
    the trunk a transfer to a number goes out through."""
    raw = session.args[0] if session.args else ""
    try:
        attempt_id = check_attempt_id(raw)
    except ValueError:
        log.warning("FastAGI flow request without a valid attempt id (%r)", raw)
        with contextlib.suppress(AgiError):
            await session.command("HANGUP")
        return
    await flow(AsteriskCallFlow(session, attempt_id, dial_string_of(attempt_id)))


async def serve_inbound(
    session: AgiSession, inbound: InboundHandler | None, dial_string: str
) -> None:
    """The FastAGI ``inbound`` route: a call to one of our numbers (the call-back line);
    without a handler, a goodbye."""
    if inbound is not None:
        called = session.args[0] if session.args else ""
        caller = session.env.get("callerid") or None
        await inbound(AsteriskCallFlow(session, "inbound", dial_string), caller, called)
        return
    with contextlib.suppress(AgiError):
        await session.command("STREAM FILE", "vm-goodbye", "")
        await session.command("HANGUP")


class AsteriskPool:
    """:class:`~voicecast.pbx.base.PbxBackend` over several Asterisk nodes (scale-out).

    One AMI connection per node (an :class:`AsteriskBackend` each, reconnecting on its own
    with back-off) and one FastAGI server for all of them: each Originate carries this
    controller's ``agi://`` URL as it is seen from its node (``VC_AGI``), so every answered
    call's flow comes back here, whichever node carries it. ``on_connection`` reports each
    node by name; the dialer places calls only on nodes that are up (``request.node``).

    Starting succeeds when at least one node answers; the others keep being tried in the
    background and are used once they answer.
    """

    def __init__(
        self,
        nodes: list[tuple[str, AsteriskEndpoint]],
        *,
        inbound: InboundHandler | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("an AsteriskPool needs at least one node")
        self.backends: dict[str, AsteriskBackend] = {
            name: AsteriskBackend(ep, inbound=inbound, node=name, serve_agi=False)
            for name, ep in nodes
        }
        self._first = nodes[0][1]
        self._inbound = inbound
        self._agi: FastAgiServer | None = None
        self._flow: CallFlowHandler | None = None
        #: attempt id -> the dial string it was placed with (a transfer to a number goes
        #: out through the same trunk); dropped when its primary channel hangs up
        self._dial_strings: dict[str, str] = {}

    @property
    def connected(self) -> bool:
        """True while at least one node's AMI is logged in."""
        return any(b.connected for b in self.backends.values())

    def nodes_up(self) -> set[str]:
        """The names of the nodes whose AMI is logged in now."""
        return {name for name, b in self.backends.items() if b.connected}

    async def start(self, listener: PbxListener, flow: CallFlowHandler) -> None:
        """Start the FastAGI server and connect every node (those that do not answer are
        tried again in the background).

        Raises:
            PbxUnavailable: no node answered (each node's reason), or the FastAGI port is
                taken.
        """
        self._flow = flow
        self._agi = await start_agi(self._first, self._serve_flow, self._serve_inbound)
        failures: list[tuple[str, AsteriskBackend, PbxUnavailable]] = []
        for name, backend in self.backends.items():
            try:
                await backend.start(_PoolListener(self, listener), flow)
            except PbxUnavailable as err:
                failures.append((name, backend, err))
        if len(failures) == len(self.backends):
            await self._agi.close()
            raise PbxUnavailable(
                "no PBX node answered: " + "; ".join(f"{n}: {e}" for n, _, e in failures)
            )
        for name, backend, why in failures:
            log.error("PBX node %s cannot be reached (%s): not used until it answers", name, why)
            backend.reconnect_later(_PoolListener(self, listener))

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop serving calls and disconnect every node."""
        for backend in self.backends.values():
            await backend.stop()
        if self._agi is not None:
            await self._agi.close(grace=grace)

    def _backend(self, node: str | None) -> AsteriskBackend:
        if node is None:
            up = [b for b in self.backends.values() if b.connected]
            if not up:
                raise PbxUnavailable("no PBX node is connected (AMI)")
            return up[0]
        backend = self.backends.get(node)
        if backend is None:
            raise PbxUnavailable(f"unknown PBX node {node!r}")
        return backend

    async def originate(self, request: OriginateRequest) -> None:
        """Send the Originate to ``request.node`` (see :meth:`AsteriskBackend.originate`).

        Raises:
            PbxUnavailable: that node is not connected or not configured (nothing sent).
        """
        backend = self._backend(request.node)
        self._dial_strings[request.attempt_id] = request.dial_string or backend.endpoint.dial_string
        try:
            await backend.originate(request)
        except (PbxUnavailable, OriginateRejected, UnsafeValueError):
            self._dial_strings.pop(request.attempt_id, None)
            raise

    async def channels_by_node(self) -> dict[str, list[ChannelInfo] | None]:
        """Each node's channels now (``CoreShowChannels``), None for a node that could not
        be listed (down, or no answer)."""

        async def one(backend: AsteriskBackend) -> list[ChannelInfo] | None:
            try:
                return await backend.list_channels()
            except PbxUnavailable:
                return None

        names = list(self.backends)
        found = await asyncio.gather(*(one(self.backends[n]) for n in names))
        return dict(zip(names, found, strict=True))

    async def list_channels(self) -> list[ChannelInfo]:
        """The channels up on every node that answers (each tagged with its node).

        Raises:
            PbxUnavailable: no node could be listed.
        """
        listed = [c for c in (await self.channels_by_node()).values() if c is not None]
        if not listed:
            raise PbxUnavailable("no PBX node could be listed (AMI)")
        return [ch for chans in listed for ch in chans]

    async def hangup(self, attempt_id: str, cause: int = 16) -> None:
        """Hang up the attempt's primary channel on whichever connected node carries it."""
        for backend in self.backends.values():
            if backend.connected:
                with contextlib.suppress(PbxUnavailable):
                    await backend.hangup(attempt_id, cause)

    # --- FastAGI routes (one server for every node) ------------------------------------------

    async def _serve_flow(self, session: AgiSession) -> None:
        assert self._flow is not None
        default = self._first.dial_string
        await serve_flow(session, self._flow, lambda a: self._dial_strings.get(a, default))

    async def _serve_inbound(self, session: AgiSession) -> None:
        await serve_inbound(session, self._inbound, self._first.dial_string)


class _PoolListener:
    """Forwards a node's events to the dialer, forgetting an attempt's dial string once its
    primary channel hangs up."""

    def __init__(self, pool: AsteriskPool, listener: PbxListener) -> None:
        self._pool, self._listener = pool, listener

    def on_originate_result(self, attempt_id: str, answered: bool, reason: int) -> None:
        self._listener.on_originate_result(attempt_id, answered, reason)

    def on_hangup(self, attempt_id: str, cause: int, cause_text: str, primary: bool) -> None:
        if primary:
            self._pool._dial_strings.pop(attempt_id, None)
        self._listener.on_hangup(attempt_id, cause, cause_text, primary)

    def on_connection(self, connected: bool, node: str | None = None) -> None:
        self._listener.on_connection(connected, node)
