"""Fixtures shared by unit and end-to-end tests: a PostgreSQL server for the session and a
fresh database on it per test (see :mod:`tests.pgserver`; never skipped: without
PostgreSQL these tests fail and say how to install it)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests import pgserver
from tests.pgserver import PgServer, PgServerError

# pytest-xdist's workers get COLUMNS=80 in their environment: the CLI's rich consoles,
# created at import, would then keep 80 columns for good and ignore a test's own COLUMNS
# (as in a plain pytest run, where the variable is unset)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)


@pytest.fixture(scope="session")
def pg_server_handle() -> Iterator[PgServer]:
    """The session's PostgreSQL server (``$VOICECAST_TEST_PG_URL`` or a throwaway one)."""
    stack = contextlib.ExitStack()
    try:
        server = stack.enter_context(pgserver.pg_server())
    except PgServerError as exc:
        error = str(exc)
    else:
        error = ""
    if error:  # outside the except block: the reason alone, not a chained traceback
        pytest.fail(error, pytrace=False)
    with stack:
        yield server


@pytest.fixture(scope="session")
def pg_server(pg_server_handle: PgServer) -> str:
    """SQLAlchemy admin URL (``postgresql+psycopg://``) of the session's PostgreSQL server:
    a role allowed to create databases, on its maintenance database."""
    return pg_server_handle.url


@pytest.fixture
def pg_url(pg_server_handle: PgServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped after the test (its
    open connections are ended first). Dispose of the test's engines before it ends: a
    psycopg connection collected while open raises a ResourceWarning, an error here."""
    url = pg_server_handle.create_database()
    yield url
    pg_server_handle.drop_database(str(make_url(url).database))
