"""AMI wire format, without I/O.

An AMI message is a block of ``Key: Value`` lines terminated by CRLF, ended by an empty line
(``\\r\\n\\r\\n``). The connection starts with one banner line (``Asterisk Call Manager/x.y``).
Reference: Asterisk documentation, "AMI v2 Specification".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from voicecast.errors import UnsafeValueError

TERMINATOR = b"\r\n\r\n"
MAX_MESSAGE_BYTES = 1024 * 1024
_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
_UNSAFE_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


class AmiProtocolError(Exception):
    """The byte stream is not AMI (e.g. a message larger than :data:`MAX_MESSAGE_BYTES`)."""


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message: its headers in order (duplicates kept, e.g. several ``Variable``)."""

    headers: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (case-insensitive), or ``default``."""
        low = key.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` (case-insensitive), in order."""
        low = key.lower()
        return [v for k, v in self.headers if k.lower() == low]

    @property
    def event(self) -> str | None:
        """The ``Event`` header, for events."""
        return self.get("Event")

    @property
    def response(self) -> str | None:
        """The ``Response`` header (``Success``, ``Error``, ``Goodbye``...), for responses."""
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        """The ``ActionID`` header."""
        return self.get("ActionID")

    def as_dict(self) -> dict[str, str]:
        """Headers as a dict (first value of each key wins)."""
        out: dict[str, str] = {}
        for k, v in self.headers:
            out.setdefault(k, v)
        return out


def parse_block(block: bytes) -> AmiMessage | None:
    """Parse one message block (without its terminator). Returns None for an empty block.

    Lines are split on CRLF (a lone LF is accepted too); a line without ``:`` is kept
    under the empty key ``""`` so nothing is silently lost. Bytes that are not UTF-8 are
    replaced with U+FFFD.
    """
    text = block.decode("utf-8", errors="replace")
    headers: list[tuple[str, str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            headers.append(("", line))
            continue
        headers.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return AmiMessage(tuple(headers)) if headers else None


def parse_messages(buffer: bytes) -> tuple[list[AmiMessage], bytes]:
    """Split ``buffer`` into complete messages and the bytes left for the next read.

    Returns:
        (messages, rest): every complete message in order, and the incomplete tail.

    The result does not depend on how the stream was cut into reads: feeding the rest back
    with the next bytes gives the same messages as parsing everything at once.

    Raises:
        AmiProtocolError: a message (without its terminator) is larger than
            :data:`MAX_MESSAGE_BYTES`, whether complete or still arriving.
    """
    messages: list[AmiMessage] = []
    start = 0
    while True:
        end = buffer.find(TERMINATOR, start)
        if end < 0:
            break
        if end - start > MAX_MESSAGE_BYTES:
            raise AmiProtocolError(f"AMI message larger than {MAX_MESSAGE_BYTES} bytes")
        message = parse_block(buffer[start:end])
        if message is not None:
            messages.append(message)
        start = end + len(TERMINATOR)
    rest = buffer[start:]
    # the tail may end with the first bytes of a terminator still arriving: not counted
    partial = next(n for n in range(len(TERMINATOR) - 1, -1, -1) if rest.endswith(TERMINATOR[:n]))
    if len(rest) - partial > MAX_MESSAGE_BYTES:
        raise AmiProtocolError(f"AMI message larger than {MAX_MESSAGE_BYTES} bytes")
    return messages, rest


def check_value(key: str, value: str) -> str:
    """Return ``value`` if it is safe as an AMI header value.

    Raises:
        UnsafeValueError: the value holds CR, LF, NUL or another control character (a CR/LF
            would let a contact's field inject a header or a whole action).
    """
    if _UNSAFE_VALUE_RE.search(value):
        raise UnsafeValueError(f"AMI header {key!r}: value contains a control character")
    return value


def encode_action(
    action: str, headers: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]
) -> bytes:
    """Encode an action; a sequence value repeats its header (e.g. ``Variable``).

    Raises:
        UnsafeValueError: a key is not a plain header name, or a value is unsafe
            (see :func:`check_value`).
    """
    items: Iterable[tuple[str, str | Sequence[str]]]
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = [f"Action: {check_value('Action', action)}"]
    if not _KEY_RE.match(action):
        raise UnsafeValueError(f"invalid AMI action name {action!r}")
    for key, value in items:
        if not _KEY_RE.match(key):
            raise UnsafeValueError(f"invalid AMI header name {key!r}")
        values = [value] if isinstance(value, str) else list(value)
        for v in values:
            if not isinstance(v, str):
                raise UnsafeValueError(f"AMI header {key!r}: value must be text")
            lines.append(f"{key}: {check_value(key, v)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
