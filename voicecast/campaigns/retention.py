"""Retention of callees' replies: delete each recording when its retention ends.

A scenario ``record`` node keeps the callee's reply ``retention_days`` (1 to 3650 days);
the dialer stores each reply as a :class:`~voicecast.storage.models.Recording` row with its
``delete_after`` instant (UTC), at most ``[retention] recordings_days`` after the recording.
:func:`purge_recordings` deletes the files whose instant has come; the long-running dialer
calls it once an hour, ``voicecast recordings purge`` on demand, and the daily retention job
(:mod:`voicecast.retention`) also applies the ``recordings_days`` cap to rows stored before
it was lowered.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from voicecast.storage.models import Recording

log = logging.getLogger(__name__)


def expired_recordings(now: datetime, max_age: timedelta | None = None) -> ColumnElement[bool]:
    """The SQL condition of the recordings to purge at ``now``: not yet deleted, and their
    ``delete_after`` has come (``delete_after <= now``) or, with ``max_age``, they were made
    ``max_age`` ago or more (``created_at <= now - max_age``).

    Raises:
        ValueError: ``now`` is naive, or ``max_age`` is not positive.
    """
    if now.tzinfo is None:
        raise ValueError("purge_recordings needs an aware datetime")
    due: ColumnElement[bool] = Recording.delete_after <= now
    if max_age is not None:
        if max_age <= timedelta(0):
            raise ValueError(f"max_age must be positive, not {max_age}")
        due = or_(due, Recording.created_at <= now - max_age)
    return and_(Recording.deleted_at.is_(None), due)


def purge_recordings(session: Session, now: datetime, max_age: timedelta | None = None) -> int:
    """Delete the recordings whose retention has ended; return how many were purged.

    GDPR art. 5(1)(e) (storage limitation): personal data, here a callee's recorded voice,
    is kept no longer than necessary for its purpose, the ``retention_days`` of the node
    that recorded it, and never longer than ``max_age`` (``[retention] recordings_days``).

    Every row with ``delete_after <= now`` (or ``created_at <= now - max_age``) and
    ``deleted_at`` NULL has its file deleted (a file already gone is fine) and gets
    ``deleted_at = now``; the row stays as the trace of the purge. A file that cannot be
    deleted (permissions...) is logged and its row left for the next purge. Does not commit:
    run it inside the caller's transaction. A file is deleted before the commit: if the
    transaction then fails, the row still says "not deleted" and the next purge marks it
    (the reverse order could leave a file the database says is gone). A second purge at the
    same instant does nothing.

    Args:
        session: a session in a transaction.
        now: the current instant, timezone-aware (stored in UTC).
        max_age: the longest any recording is kept, whatever its ``delete_after``.

    Returns:
        The number of recordings purged.

    Raises:
        ValueError: ``now`` is naive, or ``max_age`` is not positive.
    """
    rows = session.scalars(
        select(Recording)
        .where(expired_recordings(now, max_age))
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
