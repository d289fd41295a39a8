"""voicecast on a real PostgreSQL server (``pg_url`` of ``tests/conftest.py``): migrations,
the journal's triggers, how database errors are classified, UTC datetimes, and a few
representative flows of the SQLite tests run again on PostgreSQL.

Never skipped: without PostgreSQL's binaries these tests fail and say how to install them
(``./run test`` installs Debian's ``postgresql``). Fictional numbers only.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DatabaseError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from voicecast.app import Runtime, open_runtime
from voicecast.config import load_settings
from voicecast.journal.store import append, purge_before, verify
from voicecast.storage.db import db_fault, make_engine, migrate, migrations_dir, session_factory
from voicecast.storage.models import Base, ContactList, JournalEntry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """A fresh PostgreSQL database migrated to head (voicecast's engine settings)."""
    engine = make_engine(pg_url)
    migrate(engine)
    yield engine
    engine.dispose()  # before pg_url drops the database: no connection left to the GC


@pytest.fixture
def pg_sessions(pg_engine: Engine) -> sessionmaker[Session]:
    return session_factory(pg_engine)


def _alembic(engine: Engine, action: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, target)


def _schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        diff: list[Any] = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        return diff


def _head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


# --------------------------------------------------------------------------- migrations


def test_an_empty_database_migrates_to_head_and_matches_the_models(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        migrate(engine)
        migrate(engine)  # idempotent
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == _head()
            # the journal's guards exist (0006): two row triggers and the TRUNCATE one
            triggers = set(
                conn.scalars(
                    text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname")
                )
            )
            assert {"journal_entries_guard", "journal_head_guard", "journal_no_truncate"} <= (
                triggers
            )
        assert _schema_diff(engine) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_downgrade_to_base_and_upgrade_again(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        request.getfixturevalue("pg_url")
        if dialect == "postgresql"
        else f"sqlite:///{tmp_path}/t.db"
    )
    engine = make_engine(url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO contact_lists (name, created_at) VALUES ('l', :t)"), {"t": T0}
            )
        _alembic(engine, "downgrade", "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        _alembic(engine, "upgrade", "head")
        assert _schema_diff(engine) == []
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM contact_lists")) == 0
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- journal triggers


def _fill(sessions: sessionmaker[Session], count: int) -> None:
    with sessions() as s, s.begin():
        for i in range(count):
            append(s, "call.attempt", {"attempt_no": i + 1}, at=T0 + timedelta(hours=i))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entries SET actor = 'user:mallory' WHERE seq = 2",
        "DELETE FROM journal_entries WHERE seq = 3",
        "DELETE FROM journal_entries",
        "TRUNCATE journal_entries",
        "UPDATE journal_head SET seq = 1",  # a rewind
        "UPDATE journal_head SET anchor_seq = seq + 1",  # anchor past the head
        "UPDATE journal_head SET id = 2",
        "DELETE FROM journal_head",
    ],
)
def test_journal_triggers_refuse_rewrites(
    pg_sessions: sessionmaker[Session], statement: str
) -> None:
    _fill(pg_sessions, 3)
    refused = r"append-only|only moves forward|cannot be deleted"
    with pytest.raises(DatabaseError, match=refused), pg_sessions() as s, s.begin():
        s.execute(text(statement))
    with pg_sessions() as s:
        report = verify(s)
        assert report.ok and report.checked == 3


def test_journal_purge_deletes_up_to_the_anchor_only(pg_sessions: sessionmaker[Session]) -> None:
    _fill(pg_sessions, 6)
    with pg_sessions() as s, s.begin():
        result = purge_before(s, T0 + timedelta(hours=3), at=T0 + timedelta(days=400))
    assert (result.count, result.through_seq) == (3, 3)
    with pytest.raises(DatabaseError, match="append-only"), pg_sessions() as s, s.begin():
        s.execute(text("DELETE FROM journal_entries WHERE seq = 4"))  # past the anchor
    with pg_sessions() as s:
        assert [e.seq for e in s.scalars(select(JournalEntry).order_by(JournalEntry.seq))] == [
            4, 5, 6, 7,
        ]  # fmt: skip
        assert verify(s).ok


def test_concurrent_appends_from_several_connections_keep_one_chain(
    pg_sessions: sessionmaker[Session],
) -> None:
    """Controllers append at once: the head's row lock serializes them (no shared seq)."""
    start = threading.Barrier(3, timeout=10)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            start.wait()
            for i in range(15):
                with pg_sessions() as s, s.begin():
                    append(s, "call.attempt", {"writer": name, "n": i}, at=T0)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with pg_sessions() as s:
        report = verify(s)
        assert report.ok and report.checked == 45 and report.last_seq == 45


# --------------------------------------------------------------------------- db_fault


def _classified(fn: Callable[[], object]) -> tuple[str | None, str | None]:
    """Run ``fn``, which must fail with a DBAPIError: its SQLSTATE and db_fault's kind."""
    with pytest.raises(DBAPIError) as caught:
        fn()
    fault = db_fault(caught.value)
    assert db_fault(caught.value.orig) == fault  # the raw psycopg error too
    return getattr(caught.value.orig, "sqlstate", None), fault.kind if fault else None


def _table(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)"))
        conn.execute(text("INSERT INTO t VALUES (1, 0), (2, 0)"))


def test_lock_timeout_and_statement_timeout_are_busy(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        _table(engine)
        with engine.connect() as holder:
            holder.execute(text("SELECT * FROM t WHERE id = 1 FOR UPDATE"))

            def blocked_update() -> None:
                with engine.begin() as conn:
                    conn.execute(text("SET LOCAL lock_timeout = '100ms'"))
                    conn.execute(text("UPDATE t SET v = 1 WHERE id = 1"))

            assert _classified(blocked_update) == ("55P03", "busy")
            holder.rollback()

        def slow() -> None:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL statement_timeout = '50ms'"))
                conn.execute(text("SELECT pg_sleep(2)"))

        assert _classified(slow) == ("57014", "busy")
    finally:
        engine.dispose()


def test_a_deadlock_is_busy(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        _table(engine)
        both_locked = threading.Barrier(2, timeout=10)
        errors: list[BaseException] = []

        def worker(first: int, second: int) -> None:
            try:
                with engine.begin() as conn:
                    conn.execute(text("UPDATE t SET v = v + 1 WHERE id = :i"), {"i": first})
                    both_locked.wait()
                    conn.execute(text("UPDATE t SET v = v + 1 WHERE id = :i"), {"i": second})
            except DBAPIError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=p) for p in ((1, 2), (2, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(errors) == 1, errors  # PostgreSQL aborts one of the two, the other commits
        orig = errors[0].orig  # type: ignore[attr-defined]
        assert getattr(orig, "sqlstate", None) == "40P01"
        fault = db_fault(errors[0])
        assert fault is not None and fault.kind == "busy"
    finally:
        engine.dispose()


def test_a_serialization_failure_is_busy(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        _table(engine)
        with engine.connect() as first:
            first.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            assert first.scalar(text("SELECT v FROM t WHERE id = 1")) == 0  # snapshot taken
            with engine.begin() as other:
                other.execute(text("UPDATE t SET v = 5 WHERE id = 1"))
            assert _classified(
                lambda: first.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
            ) == ("40001", "busy")
            first.rollback()
    finally:
        engine.dispose()


def test_a_read_only_transaction_is_readonly_and_a_constraint_is_no_fault(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        _table(engine)

        def write_read_only() -> None:
            with engine.begin() as conn:
                conn.execute(text("SET TRANSACTION READ ONLY"))
                conn.execute(text("UPDATE t SET v = 1"))

        assert _classified(write_read_only) == ("25006", "readonly")

        def duplicate() -> None:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1, 1)"))

        assert _classified(duplicate) == ("23505", None)  # a bug or bad data: never retried
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- UTC datetimes


def test_utc_datetimes_round_trip_whatever_the_session_time_zone(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate(engine)
    engine.dispose()
    # a server or role whose TimeZone is not UTC: PostgreSQL answers in that zone
    elsewhere = make_engine(pg_url + "?options=-c%20timezone%3DAmerica/New_York")
    try:
        local = datetime(2026, 3, 29, 2, 30, tzinfo=UTC).astimezone(PARIS)  # DST change day
        sessions = session_factory(elsewhere)
        with sessions() as s, s.begin():
            assert s.scalar(text("SHOW timezone")) == "America/New_York"
            s.add(ContactList(name="paris", created_at=local))
            s.add(ContactList(name="micro", created_at=T0.replace(microsecond=123456)))
        with sessions() as s:
            got = dict(s.execute(select(ContactList.name, ContactList.created_at)).all())
        assert got["paris"] == local and got["paris"].tzinfo is UTC
        assert got["micro"] == T0.replace(microsecond=123456) and got["micro"].tzinfo is UTC
        with pytest.raises(Exception, match="naive datetime"), sessions() as s, s.begin():
            s.add(ContactList(name="naive", created_at=datetime(2026, 1, 1)))
            s.flush()
        with sessions() as s:  # compared in SQL as instants, not as wall-clock texts
            later = s.scalars(
                select(ContactList.name).where(ContactList.created_at > T0 + timedelta(days=1))
            ).all()
        assert later == ["paris"]
    finally:
        elsewhere.dispose()


# --------------------------------------------------------------------------- flows


def _sqlite_test(module: str, name: str) -> Callable[..., None]:
    """A test function of another unit-test module, to run it again on PostgreSQL
    (imported here, not at the top: this file is not to fail when that one does)."""
    test: Callable[..., None] = getattr(importlib.import_module(module), name)
    return test


@pytest.mark.parametrize(
    "test",
    [
        "test_import_creates_list_and_contacts",
        "test_import_twice_counts_duplicates_and_adds_nothing",
        "test_merge_overwrites_with_non_empty_new_fields",
    ],
)
def test_contacts_import_on_postgresql(
    tmp_path: Path, pg_sessions: sessionmaker[Session], test: str
) -> None:
    _sqlite_test("test_contacts_service", test)(tmp_path, pg_sessions)


def test_contacts_import_rolls_back_whole_on_postgresql(
    tmp_path: Path, pg_sessions: sessionmaker[Session]
) -> None:
    """A unique violation after an import, in its transaction, leaves nothing of it (the
    transaction is rolled back whole)."""
    from voicecast.contacts import import_contacts, parse_contacts_file

    csv = tmp_path / "c.csv"
    csv.write_text("phone\n01 99 00 00 10\n02 61 91 00 11\n", encoding="utf-8")
    with pg_sessions.begin() as s:
        assert import_contacts(s, "first", parse_contacts_file(csv))[0] == 2
    with pytest.raises(IntegrityError), pg_sessions.begin() as s:
        import_contacts(s, "second", parse_contacts_file(csv))
        s.add(ContactList(name="first"))  # the list name is unique
        s.flush()
    with pg_sessions() as s:
        assert s.scalars(select(ContactList.name)).all() == ["first"]


@pytest.mark.parametrize(
    "test",
    [
        "test_facts_feed_the_gate",
        "test_five_stored_attempts_defer_the_fifth_call",
        "test_last_machine_in_24_hours",
        "test_opt_outs_and_refusals",
    ],
)
def test_compliance_gate_facts_on_postgresql(pg_sessions: sessionmaker[Session], test: str) -> None:
    _sqlite_test("test_compliance_facts", test)(pg_sessions)


def test_a_dialer_run_on_postgresql(pg_sessions: sessionmaker[Session]) -> None:
    """The fake PBX of test_dialer_controller: every contact gets its outcome, the campaign
    completes."""
    _sqlite_test(
        "test_dialer_controller", "test_every_contact_gets_an_outcome_and_the_campaign_completes"
    )(pg_sessions)


@pytest.fixture
def pg_runtime(tmp_path: Path, pg_url: str) -> Iterator[Runtime]:
    """A workspace like test_subjects' own, on PostgreSQL."""
    cfg = tmp_path / "voicecast.toml"
    cfg.write_text(
        f'[database]\nurl = "{pg_url}"\n'
        "[sandbox]\nenabled = false\n"
        '[audio]\nstore_dir = "var/audio"\ntts_cache_dir = "var/tts-cache"\n'
        '[pbx]\nsounds_dir = "var/sounds"\nreplies_dir = "var/replies"\n'
        '[compliance]\nhash_key_file = "var/compliance/hash.key"\n'
    )
    runtime = open_runtime(load_settings(cfg, environ={}))
    yield runtime
    runtime.engine.dispose()


def test_subject_access_names_a_campaign_not_queued_yet_on_postgresql(
    pg_runtime: Runtime,
) -> None:
    """The campaigns over the person's lists are found without SELECT DISTINCT over their
    json columns (PostgreSQL has no equality operator for json)."""
    _sqlite_test(
        "test_subjects",
        "test_export_names_the_purpose_of_a_campaign_that_has_not_queued_the_number_yet",
    )(pg_runtime)


def test_an_unreachable_database_is_one_line_naming_it(tmp_path: Path) -> None:
    """`voicecast serve` (here `campaign list`) with PostgreSQL down: exit 1 and one error
    line naming the database, password hidden, not a traceback (systemd restarts it)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    cfg = tmp_path / "voicecast.toml"
    cfg.write_text(
        f'[database]\nurl = "postgresql+psycopg://vc:s3cret@127.0.0.1:{port}/vc"\n'
        "[sandbox]\nenabled = false\n"
    )
    cfg.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "voicecast", "-c", str(cfg), "campaign", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"cannot open the database postgresql+psycopg://vc:***@127.0.0.1:{port}/vc" in (
        proc.stderr.replace("\n", " ")
    )
    assert "s3cret" not in proc.stderr


def test_a_server_that_cannot_be_reached_is_a_storage_fault() -> None:
    """Connection refused (PostgreSQL down, restarting, failing over) is classified, so
    the dialer pauses and probes instead of crashing (tests/unit/test_scale_out.py runs a
    real outage)."""
    import socket

    from sqlalchemy.exc import OperationalError

    from voicecast.storage.db import db_fault, make_engine

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://vc@127.0.0.1:{port}/vc")
    try:
        with pytest.raises(OperationalError) as caught:
            engine.connect()
        fault = db_fault(caught.value)
        assert fault is not None and fault.kind == "unreachable"
        assert fault.reason.startswith("the database server cannot be reached")
    finally:
        engine.dispose()
