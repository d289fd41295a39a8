"""The dialer's wake-up scheduler (APScheduler) in clock time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from voicecast.clock import ShiftedClock
from voicecast.dialer.scheduler import WakeScheduler


def test_wakes_at_an_instant_of_a_shifted_clock_and_keeps_the_earliest() -> None:
    clock = ShiftedClock(datetime(2026, 12, 4, 19, 59, 59, tzinfo=UTC))

    async def main() -> list[tuple[str, float]]:
        fired: list[tuple[str, float]] = []
        scheduler = WakeScheduler(clock)
        scheduler.start()
        t0 = time.monotonic()
        soon = clock.now() + timedelta(seconds=0.3)
        scheduler.wake_at("a", soon, lambda: fired.append(("a", time.monotonic() - t0)))
        # a later request for the same job does not postpone the earlier wake-up
        scheduler.wake_at("a", soon + timedelta(hours=1), lambda: fired.append(("late", 0)))
        scheduler.wake_at("b", clock.now() + timedelta(days=3), lambda: fired.append(("b", 0)))
        assert set(scheduler.pending()) == {"a", "b"}
        await asyncio.sleep(1.5)
        scheduler.cancel("b")
        assert scheduler.pending() == {}
        scheduler.shutdown()
        return fired

    fired = asyncio.run(main())
    assert [name for name, _ in fired] == ["a"]
    assert 0.25 <= fired[0][1] <= 1.4  # generous: CI machines are shared and slow
