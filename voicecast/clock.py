"""Clocks: the controller, the gate and the scheduler ask one of these for "now".

Production uses :class:`SystemClock`. Tests inject :class:`ManualClock` (moves only when
told) or :class:`ShiftedClock` (starts at a chosen instant and then runs at real speed, so a
real Asterisk call can happen "on a Friday at 19:59 in Paris" whatever the real hour).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from voicecast.errors import ConfigError

SHIFT_ENV = "VOICECAST_CLOCK_START"
"""Environment variable: an ISO 8601 instant the controller's clock starts at (tests only)."""


class Clock(Protocol):
    """A source of the current instant."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when :meth:`advance` or :meth:`set` is called (unit tests)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        """The instant last set."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        self._now += timedelta(seconds=seconds)

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (aware)."""
        self._now = instant.astimezone(UTC)


class ShiftedClock:
    """Starts at ``start`` and advances in real time (monotonic)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs an aware datetime")
        self._start = start.astimezone(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        """``start`` plus the real seconds elapsed since this clock was made."""
        return self._start + timedelta(seconds=time.monotonic() - self._t0)


def clock_from_env(*, sandbox: bool, environ: dict[str, str] | None = None) -> Clock:
    """The controller's clock: :class:`SystemClock`, or a :class:`ShiftedClock` when
    ``VOICECAST_CLOCK_START`` is set (end-to-end tests of calling windows).

    Raises:
        ConfigError: the variable is set while the sandbox PBX is not in use (a shifted
            clock would let real calls bypass the calling windows), or is not an aware
            ISO 8601 instant.
    """
    env = os.environ if environ is None else environ
    raw = env.get(SHIFT_ENV, "").strip()
    if not raw:
        return SystemClock()
    if not sandbox:
        raise ConfigError(
            f"{SHIFT_ENV} is only honoured with the sandbox PBX ([sandbox] enabled = true)"
        )
    try:
        start = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(f"{SHIFT_ENV}={raw!r}: not an ISO 8601 instant") from exc
    if start.tzinfo is None:
        raise ConfigError(f"{SHIFT_ENV}={raw!r}: give the offset (e.g. +01:00 or Z)")
    return ShiftedClock(start)
