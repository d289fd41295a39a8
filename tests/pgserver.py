"""A throwaway PostgreSQL server for tests and benchmarks, from the distribution's binaries.

``VOICECAST_TEST_PG_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``, a role
allowed to CREATE DATABASE) names a server to use instead; otherwise :func:`pg_server` runs
``initdb`` into a fresh temporary folder and starts ``postgres`` on a free loopback port,
with its unix socket in that folder, trust authentication, and durability turned off
(``fsync``, ``synchronous_commit``, ``full_page_writes``: a test database need not survive a
power cut). Every caller (each pytest process, each xdist worker, each bench run) gets its
own folder and port; the server is stopped (``pg_ctl stop -m fast``) and its folder removed
on exit.

The binaries come from Debian's or Ubuntu's ``postgresql`` package (``./run test`` installs
it): the newest ``/usr/lib/postgresql/N/bin``, else ``initdb`` on ``PATH``, or the folder in
``VOICECAST_TEST_PG_BINDIR``. ``initdb`` and ``postgres`` refuse to run as root: as root the
server runs as the ``postgres`` system user (created by that package) through ``runuser``.

Nothing here skips: a missing binary or a server that does not start raises
:class:`PgServerError` naming the cause and the fix. Used by the ``pg_server`` and ``pg_url``
fixtures of ``tests/conftest.py``, and importable from bench scripts::

    from tests.pgserver import pg_server
    with pg_server() as server:
        url = server.create_database()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

ENV_URL = "VOICECAST_TEST_PG_URL"
"""Environment variable: the admin URL of an existing server to use instead of starting one."""
ENV_BINDIR = "VOICECAST_TEST_PG_BINDIR"
"""Environment variable: the folder holding ``initdb``, ``pg_ctl`` and ``postgres``."""
SERVER_USER = "postgres"
"""System user the server runs as when the caller is root (Debian's package creates it)."""
START_TIMEOUT_S = 60
"""Seconds ``pg_ctl start`` waits for the server to accept connections."""
START_TRIES = 3
"""Starts tried, each on a new free port (another process may take a port between our probe
and the server's bind)."""
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}
"""Server settings for speed: a test server that crashes is thrown away, never recovered."""
FIX = "`./run test` installs Debian's postgresql package (or: apt-get install postgresql)"


class PgServerError(RuntimeError):
    """PostgreSQL for the tests is missing or does not start; the message says why and how
    to fix it."""


def find_bindir() -> Path:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres``: ``$VOICECAST_TEST_PG_BINDIR``,
    else the newest ``/usr/lib/postgresql/N/bin`` (Debian, Ubuntu), else ``initdb``'s folder
    on ``PATH``.

    Raises:
        PgServerError: no PostgreSQL server binaries found.
    """
    given = os.environ.get(ENV_BINDIR)
    if given:
        candidates = [Path(given)]
    else:

        def version(path: Path) -> tuple[int, ...]:
            return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name))

        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
        candidates = [p.parent for p in reversed(found)]
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    where = given or "/usr/lib/postgresql/*/bin or PATH"
    raise PgServerError(
        f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) in {where}: {FIX}"
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sqlalchemy_url(url: str, database: str | None = None) -> str:
    """``url`` with the psycopg 3 driver (``postgresql+psycopg://``), on ``database`` if
    given."""
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str, database: str | None = None) -> str:
    """``url`` as plain libpq understands it (``postgresql://``), on ``database`` if given."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@dataclass
class PgServer:
    """A PostgreSQL server for tests.

    Attributes:
        url: SQLAlchemy admin URL (``postgresql+psycopg://``) of a role that may create
            databases, on its maintenance database.
        data_dir: the cluster folder when this process started the server, else None.
    """

    url: str
    data_dir: Path | None = None
    _created: set[str] = field(default_factory=set)

    def connect(self, database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit psycopg connection as the admin role (CREATE/DROP DATABASE cannot
        run in a transaction)."""
        return psycopg.connect(libpq_url(self.url, database), autocommit=True, connect_timeout=10)

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create an empty database (a copy of ``template`` if given) and return its
        SQLAlchemy URL. Names default to ``vc_test_<random>``, unique across processes."""
        name = name or f"vc_test_{uuid.uuid4().hex[:16]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(statement)
        self._created.add(name)
        return sqlalchemy_url(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, ending its open connections (``WITH (FORCE)``, PG 13+)."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._created.discard(name)

    def drop_created(self) -> None:
        """Drop every database this object created (for a shared server at the end)."""
        for name in sorted(self._created):
            self.drop_database(name)


def _as_server_user() -> list[str]:
    """The command prefix that runs a program as a non-root user: empty unless root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PgServerError(
            f"running as root, and there is no {SERVER_USER!r} system user to run PostgreSQL "
            f"as (initdb refuses root): {FIX}"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PgServerError("running as root and runuser (util-linux) is missing")
    return [runuser, "-u", SERVER_USER, "--"]


def _run(cmd: list[str], what: str, cwd: Path) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise PgServerError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")


def _log_tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    except OSError:
        return "(no server log)"


@contextlib.contextmanager
def start_server() -> Iterator[PgServer]:
    """Start a fresh PostgreSQL server (initdb into a new temporary folder), yield it, then
    stop it and remove its folder.

    Raises:
        PgServerError: binaries missing, initdb failed, or the server did not start.
    """
    bindir = find_bindir()
    prefix = _as_server_user()
    base = Path(tempfile.mkdtemp(prefix="voicecast-pg-"))  # short: the socket path < 108 bytes
    data, log = base / "data", base / "server.log"
    started = False
    try:
        if prefix:
            shutil.chown(base, user=SERVER_USER)
        locale = "C.UTF-8" if _has_c_utf8() else "C"
        _run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", f"--locale={locale}", "--no-sync"],
            "initdb",
            base,  # a folder the server's user may enter (not the caller's, maybe private)
        )  # fmt: skip
        settings = {
            **FAST_SETTINGS,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(base),
        }
        error = ""
        for _ in range(START_TRIES):
            port = free_port()
            options = " ".join(f"-c {k}={v}" for k, v in {**settings, "port": port}.items())
            done = subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(log),
                 "-w", "-t", str(START_TIMEOUT_S), "-o", options],
                capture_output=True, text=True, timeout=START_TIMEOUT_S + 30, check=False,
                cwd=base,
            )  # fmt: skip
            if done.returncode == 0:
                started = True
                break
            error = f"{done.stdout}{done.stderr}".strip() + "\n" + _log_tail(log)
        if not started:
            raise PgServerError(f"PostgreSQL did not start ({bindir}):\n{error}")
        server = PgServer(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", data)
        _wait_ready(server, log)
        yield server
    finally:
        if (data / "postmaster.pid").exists():  # started, or half-started by a failed try
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"],
                capture_output=True, timeout=120, check=False, cwd=base,
            )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def _has_c_utf8() -> bool:
    """glibc 2.35+ (Debian 12, Ubuntu 22.04) has the C.UTF-8 locale built in."""
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    except OSError:
        return False
    return any(name.lower().replace("-", "") == "c.utf8" for name in out.stdout.split())


def _wait_ready(server: PgServer, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with server.connect() as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PgServerError(
                    f"PostgreSQL started but refuses connections: {exc}\n{_log_tail(log)}"
                ) from exc
            time.sleep(0.2)


@contextlib.contextmanager
def pg_server() -> Iterator[PgServer]:
    """The server of ``$VOICECAST_TEST_PG_URL`` (databases created through it are dropped
    at the end), else a fresh one from :func:`start_server`.

    Raises:
        PgServerError: the given server is unreachable, or none could be started.
    """
    given = os.environ.get(ENV_URL)
    if not given:
        with start_server() as server:
            yield server
        return
    server = PgServer(sqlalchemy_url(given))
    try:
        with server.connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise PgServerError(f"{ENV_URL}={given} is unreachable: {exc}") from exc
    try:
        yield server
    finally:
        server.drop_created()


def main() -> None:
    """``python -m tests.pgserver``: start a throwaway server, print its SQLAlchemy URL on
    stdout, keep it until SIGINT/SIGTERM, then stop it and remove its folder."""
    import signal
    import sys
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with start_server() as server:
            print(server.url, flush=True)
            stop.wait()
    except KeyboardInterrupt:
        pass
    except PgServerError as exc:
        sys.exit(f"pgserver: {exc}")


if __name__ == "__main__":
    main()
