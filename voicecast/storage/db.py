"""Engine, sessions and migrations.

SQLite is the default (one file, WAL journal so readers such as ``voicecast report`` never
block the dialer; ``secure_delete`` so that deleted rows are zeroed in the file, not left
readable in free space); PostgreSQL is selected by a ``postgresql+psycopg://`` URL.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from voicecast.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # deleted rows are overwritten with zeros (freelist pages too), so that an erased
    # person's number does not linger in the file (GDPR art. 17; voicecast.subjects)
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH[?options]`` URL; None for an in-memory
    database or another dialect."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///") :].split("?", 1)[0])
    return None


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; for SQLite, create the folder and a missing database
    file (mode 0600: it holds personal data), and set WAL mode.

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
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
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


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
