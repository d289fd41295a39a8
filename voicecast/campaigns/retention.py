"""Retention of callees' replies: delete each recording when its retention ends.

A scenario ``record`` node keeps the callee's reply ``retention_days`` (1 to 3650 days);
the dialer stores each reply as a :class:`~voicecast.storage.models.Recording` row with its
``delete_after`` instant (UTC). :func:`purge_recordings` deletes the files whose instant has
come; the long-running dialer calls it once an hour, ``voicecast recordings purge`` on
demand.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from voicecast.storage.models import Recording

log = logging.getLogger(__name__)


def purge_recordings(session: Session, now: datetime) -> int:
    """Delete the recordings whose retention has ended; return how many were purged.

    GDPR art. 5(1)(e) (storage limitation): personal data, here a callee's recorded voice,
    is kept no longer than necessary for its purpose, the ``retention_days`` of the node
    that recorded it.

    Every row with ``delete_after <= now`` and ``deleted_at`` NULL (found through the index
    on ``delete_after``) has its file deleted (a file already gone is fine) and gets
    ``deleted_at = now``; the row stays as the trace of the purge. A file that cannot be
    deleted (permissions...) is logged and its row left for the next purge. Does not commit:
    run it inside the caller's transaction. A second purge at the same instant does nothing.

    Args:
        session: a session in a transaction.
        now: the current instant, timezone-aware (stored in UTC).

    Returns:
        The number of recordings purged.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("purge_recordings needs an aware datetime")
    rows = session.scalars(
        select(Recording)
        .where(Recording.delete_after <= now, Recording.deleted_at.is_(None))
        .order_by(Recording.delete_after, Recording.id)
    ).all()
    purged = 0
    for row in rows:
        try:
            Path(row.path).unlink(missing_ok=True)
        except OSError as exc:
            log.error("recording %s: cannot delete %s: %s", row.id, row.path, exc)
            continue
        row.deleted_at = now
        purged += 1
    return purged
