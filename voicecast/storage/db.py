"""Engine, sessions and migrations.

SQLite is the default (one file, WAL journal so readers such as ``voicecast report`` never
block the dialer; ``secure_delete`` so that deleted rows are zeroed in the file, not left
readable in free space); PostgreSQL is selected by a ``postgresql+psycopg://`` URL.

Waiting on the database is bounded: a SQLite connection waits at most ``busy_timeout``
(:data:`SQLITE_BUSY_TIMEOUT_MS`) for another writer's lock; a PostgreSQL connection gets
``lock_timeout`` (:data:`PG_LOCK_TIMEOUT_MS`) and ``statement_timeout``
(:data:`PG_STATEMENT_TIMEOUT_MS`) unless its URL sets ``options`` itself. What a failed
write means is told by :func:`db_fault` (busy: retry later; disk full, read-only, I/O error:
stop writing and say why).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from voicecast.errors import ConfigError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""Milliseconds a SQLite connection waits for another writer's lock before ``database is
locked`` (``PRAGMA busy_timeout``)."""
PG_LOCK_TIMEOUT_MS = 10_000
"""PostgreSQL ``lock_timeout`` (ms) of voicecast's connections: the SQLite wait's twin."""
PG_STATEMENT_TIMEOUT_MS = 60_000
"""PostgreSQL ``statement_timeout`` (ms) of voicecast's connections (migrations lift it)."""

FaultKind = Literal["busy", "full", "readonly", "io", "unreachable"]

# SQLite's messages (sqlite3 result codes SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL,
# SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN: https://www.sqlite.org/rescode.html)
_SQLITE_MESSAGES: tuple[tuple[str, FaultKind], ...] = (
    ("database is locked", "busy"),
    ("database table is locked", "busy"),
    ("database schema is locked", "busy"),
    ("database or disk is full", "full"),
    ("readonly database", "readonly"),
    ("read-only", "readonly"),
    ("disk i/o error", "io"),
    ("unable to open database file", "io"),
)
# PostgreSQL SQLSTATE codes (PostgreSQL documentation, appendix A "Error Codes")
_PG_STATES: dict[str, FaultKind] = {
    "55P03": "busy",  # lock_not_available (lock_timeout)
    "40P01": "busy",  # deadlock_detected
    "40001": "busy",  # serialization_failure
    "57014": "busy",  # query_canceled (statement_timeout)
    "53100": "full",  # disk_full
    "53200": "full",  # out_of_memory
    "25006": "readonly",  # read_only_sql_transaction (hot standby, default_transaction_read_only)
    "58030": "io",  # io_error
    "57P01": "unreachable",  # admin_shutdown (the server is stopping)
    "57P02": "unreachable",  # crash_shutdown
    "57P03": "unreachable",  # cannot_connect_now (starting up, recovering)
}
_FAULT_TEXT: dict[FaultKind, str] = {
    "busy": "the database is locked by another writer",
    "full": "the disk holding the database is full",
    "readonly": "the database is read-only",
    "io": "the database cannot be written (I/O error)",
    "unreachable": "the database server cannot be reached",
}


@dataclass(frozen=True)
class DbFault:
    """Why a database operation failed, when it is the storage's fault rather than a bug.

    Attributes:
        kind: ``busy`` (locked by another writer: try again later), ``full`` (no space
            left), ``readonly`` (file, folder or server read-only), ``io`` (I/O error,
            file cannot be opened) or ``unreachable`` (the PostgreSQL server is down,
            restarting, or the connection to it was lost).
        detail: the driver's own message (one line).
    """

    kind: FaultKind
    detail: str

    @property
    def reason(self) -> str:
        """A sentence for people: what is wrong, then the driver's message."""
        return f"{_FAULT_TEXT[self.kind]} ({self.detail})"


def db_fault(exc: BaseException) -> DbFault | None:
    """Classify ``exc`` (a SQLAlchemy ``DBAPIError`` or a raw ``sqlite3``/``psycopg``
    error): a :class:`DbFault` for a busy, full, read-only or failing database, None for
    anything else (a constraint violation, a bug: not to be retried)."""
    orig: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    detail = " ".join(str(orig).split())[:300]
    if isinstance(state, str) and state in _PG_STATES:
        return DbFault(_PG_STATES[state], detail)
    if isinstance(state, str) and state.startswith("08"):  # connection_exception class
        return DbFault("unreachable", detail)
    lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
    # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all
    # (refused, unknown host, server closed the connection)
    refused = type(orig).__name__ == "OperationalError" and type(orig).__module__.startswith(
        "psycopg"
    )
    if lost or (refused and not state):
        return DbFault("unreachable", detail)
    if isinstance(orig, sqlite3.DatabaseError):
        low = detail.lower()
        for text, kind in _SQLITE_MESSAGES:
            if text in low:
                return DbFault(kind, detail)
    return None


T = TypeVar("T")

BUSY_RETRIES = 3
"""Further tries of a write that found the database locked (each try itself waits up to
the busy timeout), before the caller treats the lock as a fault."""
BUSY_BACKOFF = 0.5
"""Seconds before the first retry of a locked write; doubled at each further retry."""


async def retry_busy(
    fn: Callable[[], T], *, retries: int = BUSY_RETRIES, backoff: float = BUSY_BACKOFF
) -> T:
    """Run the synchronous transaction ``fn`` and return its result, trying again up to
    ``retries`` times, after ``backoff``, ``2 * backoff``... seconds (asyncio sleeps: the
    event loop keeps serving calls meanwhile), while it fails because the database is
    locked (:func:`db_fault` kind ``busy``).

    ``fn`` must be one whole transaction (it opens and commits its own session), so a
    failed try leaves nothing behind. A small helper rather than a retry library
    (tenacity...): one loop, and the caller decides what a lasting fault means.

    Raises:
        sqlalchemy.exc.DBAPIError: any other database error at once, or the lock error
            after the last retry.
    """
    delay = backoff
    for left in range(retries, -1, -1):
        try:
            return fn()
        except DBAPIError as exc:
            fault = db_fault(exc)
            if fault is None or fault.kind != "busy" or left == 0:
                raise
            log.warning("database locked, trying again in %.1f s: %s", delay, fault.detail)
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _sqlite_pragmas(busy_timeout_ms: int, dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # deleted rows are overwritten with zeros (freelist pages too), so that an erased
    # person's number does not linger in the file (GDPR art. 17; voicecast.subjects)
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cur.close()


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH[?options]`` URL; None for an in-memory
    database or another dialect."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///") :].split("?", 1)[0])
    return None


def make_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """Create the engine for ``url``; for SQLite, create the folder and a missing database
    file (mode 0600: it holds personal data), and set WAL mode and ``busy_timeout``
    (``busy_timeout_ms``, milliseconds). For PostgreSQL, every connection gets
    ``lock_timeout`` = :data:`PG_LOCK_TIMEOUT_MS` and ``statement_timeout`` =
    :data:`PG_STATEMENT_TIMEOUT_MS`, unless the URL sets ``options`` (e.g.
    ``?options=-c%20statement_timeout%3D30000``: then the URL's values alone apply).

    Raises:
        ConfigError: the SQLite folder cannot be created.
    """
    db_file = sqlite_file(url)
    if db_file is not None:
        folder = db_file.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # personal data: a new database file (and so its -wal and -shm, which SQLite
            # creates with the same mode) is readable by its owner only
            with contextlib.suppress(FileExistsError):
                os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise ConfigError(f"cannot create the database folder {folder}: {exc}") from exc
    connect_args: dict[str, Any] = {}
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "options" not in parsed.query:
        connect_args["options"] = (
            f"-c lock_timeout={PG_LOCK_TIMEOUT_MS} -c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"
        )
    # PostgreSQL: a pooled connection is checked before use, so that after a server restart
    # the pool replaces its dead connections instead of failing once each
    engine = create_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=parsed.get_backend_name() == "postgresql",
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_timeout_ms))
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (objects are read after commits)."""
    return sessionmaker(engine, expire_on_commit=False)


def migrations_dir() -> Path:
    """The alembic folder (``migrations/`` at the project root).

    Raises:
        ConfigError: voicecast was installed without its migrations folder.
    """
    here = Path(__file__).resolve().parent.parent.parent / "migrations"
    if not (here / "env.py").is_file():
        raise ConfigError(f"migrations folder not found at {here}")
    return here


MIGRATION_LOCK_KEY = 0x766F6963  # "voic"
"""PostgreSQL advisory lock key held by :func:`migrate` for its transaction."""


HEAD_REVISION = "0007"
"""The newest revision in ``migrations/versions`` (a test checks it is alembic's head)."""


def at_head(engine: Engine) -> bool:
    """Whether the database's ``alembic_version`` is :data:`HEAD_REVISION`; False when it
    is not, or cannot be read (no table yet)."""
    try:
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:
        return False
    return [v for (v,) in versions] == [HEAD_REVISION]


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest alembic revision (idempotent). A database
    already at :data:`HEAD_REVISION` is left alone without loading alembic's scripts (a
    fifth of a second of CPU at every start of a controller or command).

    On PostgreSQL the upgrade holds a transaction-level advisory lock
    (``pg_advisory_xact_lock``): controllers started together run it one after the other,
    the later ones finding the schema at head (without it, concurrent ``CREATE TABLE``
    fail with duplicate-key or lock-timeout errors).
    """
    if at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # a long migration is not a stuck statement
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            conn.exec_driver_sql("SET LOCAL lock_timeout = 0")  # wait for the other migrator
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
