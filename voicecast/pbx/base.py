"""What the dialer needs from a PBX, independent of Asterisk.

Shapes and units: numbers are E.164 strings; durations in seconds (float) unless the name
says ``_ms``; ``cause`` values are Q.850 cause codes (ITU-T Q.850), e.g. 16 normal
clearing, 17 user busy, 19 no answer, 34 congestion, 1 unallocated number.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Protocol

from voicecast.errors import VoicecastError


class PbxError(VoicecastError):
    """The PBX could not be reached or refused an operation."""


class PbxUnavailable(PbxError):
    """Not connected to the PBX (nothing was sent)."""


class OriginateRejected(PbxError):
    """The PBX answered the Originate with an error (the call was not placed)."""


class OriginateUnknown(PbxError):
    """The Originate was written but its answer was lost (timeout or connection loss):
    the call may or may not be up. Never re-send: reconcile from the PBX's channels."""


@dataclass(frozen=True)
class OriginateRequest:
    """One outbound call to place.

    Attributes:
        attempt_id: voicecast's id of this dial; the PBX's channel id (AMI ``ChannelId``).
        number: the callee, E.164.
        caller_id: the number presented (CLI), E.164.
        ring_timeout: seconds to wait for an answer.
        variables: extra channel variables (names and values already validated).
        node: the PBX node to place it on (:class:`NodeSpec` name; None: the only one).
        dial_string: the trunk's dial string template (``{number}``); None: the node's
            default.
    """

    attempt_id: str
    number: str
    caller_id: str
    ring_timeout: float
    caller_name: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    node: str | None = None
    dial_string: str | None = None


@dataclass(frozen=True)
class TrunkSpec:
    """A carrier trunk of a node: its dial string template and its calls-per-second limit
    (``cps``, for every campaign and controller together; None = no trunk limit)."""

    name: str
    dial_string: str | None = None
    cps: float | None = None


@dataclass(frozen=True)
class NodeSpec:
    """A PBX node calls may be placed on: its name, its channel capacity for every
    controller together (``max_channels``; None = no node limit) and its trunks."""

    name: str
    max_channels: int | None = None
    trunks: tuple[TrunkSpec, ...] = (TrunkSpec("default"),)


DEFAULT_NODE = NodeSpec("default")
"""The node of a single-PBX setup (no ``[[pbx.nodes]]``): unlimited, one trunk."""


@dataclass(frozen=True)
class ChannelInfo:
    """A channel up on the PBX now, as the PBX itself reports it."""

    channel: str
    unique_id: str
    state: str
    attempt_id: str | None
    node: str | None = None


@dataclass(frozen=True)
class AmdParams:
    """Answering-machine detection parameters, in milliseconds (Asterisk ``AMD()`` order).

    Defaults are Asterisk's (amd.conf) except ``maximum_number_of_words`` (3).
    """

    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    min_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 3
    silence_threshold: int = 256
    maximum_word_length: int = 5000


AMD_MAX_MS = 60_000
"""Largest AMD() time parameter accepted, in ms (a minute of analysis is already absurd)."""
AMD_MAX_SILENCE_THRESHOLD = 32767
"""Largest ``silence_threshold``: an energy level of 16-bit samples, not a time."""


def amd_param_problem(name: str, value: int) -> str | None:
    """Why ``name=value`` is not a valid :class:`AmdParams` override, or None if it is.

    Bounds: 0 to :data:`AMD_MAX_MS` ms, ``silence_threshold`` 0 to
    :data:`AMD_MAX_SILENCE_THRESHOLD`.
    """
    known = [f.name for f in fields(AmdParams)]
    if name not in known:
        return f"unknown AMD parameter {name!r} ({', '.join(known)})"
    limit = AMD_MAX_SILENCE_THRESHOLD if name == "silence_threshold" else AMD_MAX_MS
    if not 0 <= value <= limit:
        return f"{name}={value} is out of range (0 to {limit})"
    return None


@dataclass(frozen=True)
class PlayResult:
    """What a play step did: ``played_ms`` of audio, stopped by ``digit`` or a hangup."""

    played_ms: int
    completed: bool
    digit: str | None = None


@dataclass(frozen=True)
class RecordResult:
    """What a record step captured: ``duration_ms`` of audio, ended by ``digit``, by the
    silence or time limit (``completed``), or by a hangup (``completed`` False)."""

    duration_ms: int
    digit: str | None = None
    completed: bool = True


@dataclass(frozen=True)
class TransferResult:
    """How a transfer ended.

    Attributes:
        status: Asterisk's ``DIALSTATUS`` (``ANSWER``, ``BUSY``, ``NOANSWER``,
            ``CHANUNAVAIL``, ``CONGESTION``, ``CANCEL``) or, for a queue, ``QUEUESTATUS``
            mapped to ``ANSWER`` when an agent took the call.
        talk_seconds: seconds the callee and the agent were bridged (0 when not answered).
    """

    status: str
    talk_seconds: float = 0.0

    @property
    def answered(self) -> bool:
        """True when the transfer target answered (the callee was bridged to it)."""
        return self.status == "ANSWER"


TRANSFER_KINDS = ("extension", "queue", "number")


class CallFlowSession(Protocol):
    """An answered call handed to voicecast (the call-flow hook)."""

    attempt_id: str

    @property
    def hung_up(self) -> bool:
        """True once the callee (or the network) hung up."""
        ...

    async def detect_machine(self, params: AmdParams) -> tuple[str, str]:
        """Run AMD; returns (status, cause), e.g. ("MACHINE", "LONGGREETING-1500-1500")."""
        ...

    async def sound_exists(self, sound: str) -> bool:
        """Whether the PBX has ``sound`` (a sound path without extension)."""
        ...

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        """Play ``sound`` (a PBX sound path without extension) to the callee."""
        ...

    async def wait_for_digit(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for one key; None on timeout or hangup."""
        ...

    async def wait_for_beep(
        self, silence_ms: int, resume_s: float, timeout: float, beep_hz: int = 1000
    ) -> str:
        """Wait for the end of a mailbox greeting and its beep (see the implementation).

        Returns ``"beep"`` (a tone then silence), ``"silence"`` (silence that lasted
        ``resume_s`` seconds more), ``"timeout"`` (the ``timeout`` seconds cap) or
        ``"hangup"``.
        """
        ...

    async def record(
        self, path: str, max_seconds: float, silence_seconds: float, beep: bool
    ) -> RecordResult:
        """Record the callee to ``path`` (PBX path without extension, WAV)."""
        ...

    async def transfer(
        self, kind: str, target: str, timeout: float, caller_id: str
    ) -> TransferResult:
        """Bridge the callee to ``target`` (``kind`` one of :data:`TRANSFER_KINDS`), ringing
        it up to ``timeout`` seconds and presenting ``caller_id`` (E.164); returns once the
        transfer is over (not answered, or the bridge ended)."""
        ...

    async def hangup(self) -> None:
        """Hang the call up."""
        ...


class PbxListener(Protocol):
    """Receives the PBX's call events (implemented by the dialer)."""

    def on_originate_result(self, attempt_id: str, answered: bool, reason: int) -> None:
        """The Originate ended: answered, or failed with an OriginateResponse ``Reason``."""
        ...

    def on_hangup(self, attempt_id: str, cause: int, cause_text: str, primary: bool) -> None:
        """A channel of the attempt hung up with Q.850 ``cause``; ``primary`` is our leg
        (the call is over), otherwise the far leg of a Local channel."""
        ...

    def on_connection(self, connected: bool, node: str | None = None) -> None:
        """The connection to PBX ``node`` (None: the only PBX) came up or went down."""
        ...


CallFlowHandler = Callable[[CallFlowSession], Awaitable[None]]


class PbxBackend(Protocol):
    """A PBX the dialer can drive."""

    @property
    def connected(self) -> bool:
        """True while calls can be placed."""
        ...

    async def start(self, listener: PbxListener, flow: CallFlowHandler) -> None:
        """Connect, subscribe ``listener`` and serve answered calls with ``flow``."""
        ...

    async def stop(self, *, grace: float = 0.0) -> None:
        """Disconnect; wait up to ``grace`` seconds for calls in their flow."""
        ...

    async def originate(self, request: OriginateRequest) -> None:
        """Start one call without waiting for the answer.

        Raises:
            PbxUnavailable: not connected (nothing sent).
            OriginateRejected: the PBX refused it (no call).
            OriginateUnknown: sent, but the answer was lost.
            voicecast.errors.UnsafeValueError: a value is unsafe (nothing sent).
        """
        ...

    async def list_channels(self) -> list[ChannelInfo]:
        """The channels up on the PBX now (on every node it reaches).

        Raises:
            PbxUnavailable: no node answered.
        """
        ...

    async def hangup(self, attempt_id: str, cause: int = 16) -> None:
        """Hang up the attempt's channel if it is still up."""
        ...
