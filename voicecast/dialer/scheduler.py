"""Timed wake-ups of the dialer: deferred attempts, campaign start and end dates.

APScheduler (3.x, ``AsyncIOScheduler``) runs one-shot date jobs on the controller's event
loop. Instants are given in the controller's :class:`~voicecast.clock.Clock` time (UTC) and
converted to the machine's real time when scheduled, so a shifted test clock wakes at the
right moment too. A job only *wakes* a campaign loop: the loop then re-reads the database
and asks the gate again, so a lost or early wake-up can never cause an unlawful call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]

from voicecast.clock import Clock

log = logging.getLogger(__name__)


class WakeScheduler:
    """Schedules wake-up callbacks at instants of the controller's clock.

    Args:
        clock: the controller's clock; instants passed to :meth:`wake_at` are in its time.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._due: dict[str, datetime] = {}

    def start(self) -> None:
        """Start running jobs (needs a running event loop)."""
        if not self._scheduler.running:
            self._scheduler.start()

    def shutdown(self) -> None:
        """Drop every job and stop."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._due.clear()

    def wake_at(self, job: str, when: datetime, callback: Callable[[], None]) -> None:
        """Run ``callback`` at ``when`` (aware, clock time); one pending instant per ``job``
        name, the earliest kept (a later request does not postpone an earlier wake-up).
        """
        if not self._scheduler.running:
            return
        current = self._due.get(job)
        now = self.clock.now()
        if current is not None and now <= current <= when:
            return
        real = datetime.now(UTC) + max(when - now, timedelta(0))
        self._due[job] = when

        def fire() -> None:
            self._due.pop(job, None)
            callback()

        self._scheduler.add_job(
            fire,
            DateTrigger(run_date=real, timezone=UTC),
            id=job,
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )
        log.debug("wake-up %s at %s (clock time)", job, when.isoformat())

    def cancel(self, job: str) -> None:
        """Forget a pending wake-up, if any."""
        self._due.pop(job, None)
        if self._scheduler.running and self._scheduler.get_job(job) is not None:
            self._scheduler.remove_job(job)

    def pending(self) -> dict[str, datetime]:
        """Pending wake-ups: job name -> instant (clock time)."""
        return dict(self._due)
