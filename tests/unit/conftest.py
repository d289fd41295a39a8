"""Shared unit-test fixtures: a migrated SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from voicecast.storage.db import make_engine, migrate, session_factory


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite database file, migrated to the latest revision."""
    eng = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions on :func:`engine`."""
    return session_factory(engine)
