"""Compliance stores: schema vs migrations, hash key, number files, consent ledger, opt-outs,
opposition lists, refusals. Fictional numbers only (+33 1 99 00, +33 2 61 91, +33 3 53 01;
+1 202 555 01xx; +44 20 7946 0xxx)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from voicecast.compliance import numberfile, suppression
from voicecast.compliance.consent import (
    ConsentError,
    consent_history,
    consent_states,
    import_consents,
    parse_instant,
    record_consent,
)
from voicecast.compliance.keys import HashKeyError, key_fingerprint, load_hash_key, number_hash
from voicecast.compliance.numberfile import (
    ImportFormatError,
    InvalidNumberError,
    NumberLine,
    block_width,
    parse_number,
    read_numbers,
)
from voicecast.compliance.suppression import (
    SuppressionError,
    add_opt_out,
    add_refusal,
    import_opposition_list,
    import_opt_outs,
    last_refusals,
    load_store_key,
    opposition_hits,
    opposition_status,
    opt_out_record,
    opted_out,
)
from voicecast.contacts import import_contacts, parse_contacts_file
from voicecast.storage.db import HEAD_REVISION, at_head, migrate, migrations_dir, session_factory
from voicecast.storage.models import (
    Base,
    Consent,
    ContactList,
    HashKeyCheck,
    OppositionEntry,
    OppositionList,
    OptOut,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
FR1, FR2, FR3 = "+33199000010", "+33261910011", "+33353010012"
US1, UK1 = "+12025550123", "+442079460001"


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def valid(lines: list[NumberLine]) -> list[str | None]:
    return [item.e164 for item in lines]


# --------------------------------------------------------------------------- schema


def _alembic(engine: Engine, action: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, target)


def test_head_revision_is_alembics_head_and_a_database_behind_it_is_upgraded(
    engine: Engine,
) -> None:
    """migrate() skips alembic for a database at HEAD_REVISION: the constant must follow
    the newest migration, and a database behind it must still be upgraded."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION
    assert at_head(engine)
    _alembic(engine, "downgrade", "0006")
    assert not at_head(engine)
    migrate(engine)
    assert at_head(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_downgrade_keeps_existing_rows_and_upgrade_again(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO contact_lists (name, created_at) VALUES ('l', '2026-01-01 00:00:00')"
        )
    _alembic(engine, "downgrade", "0001")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM contact_lists").scalar() == 1
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
        assert "opt_outs" not in tables
    _alembic(engine, "upgrade", "head")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_hash_key_check_migration_down_and_up(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO hash_key_check (id, fingerprint, created_at) "
            f"VALUES (1, '{'ab' * 32}', '2026-01-01 00:00:00')"
        )
    with engine.connect() as conn, pytest.raises(IntegrityError):  # one row only: id 1
        conn.exec_driver_sql(
            "INSERT INTO hash_key_check (id, fingerprint, created_at) "
            f"VALUES (2, '{'cd' * 32}', '2026-01-01 00:00:00')"
        )
    _alembic(engine, "downgrade", "0002")
    with engine.connect() as conn:
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
        assert "hash_key_check" not in tables and "opt_outs" in tables
    _alembic(engine, "upgrade", "head")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


# --------------------------------------------------------------------------- hash key


def test_key_is_created_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "hash.key"
    key = load_hash_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert load_hash_key(path) == key
    assert load_hash_key(path, create=False) == key
    assert not [p for p in path.parent.iterdir() if p.name != "hash.key"]  # no temp left


def test_key_file_problems_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HashKeyError, match="not found"):
        load_hash_key(tmp_path / "missing.key", create=False)
    short = tmp_path / "short.key"
    short.write_text("abcd\n")
    short.chmod(0o600)
    with pytest.raises(HashKeyError, match="64 hexadecimal"):
        load_hash_key(short)
    shared = tmp_path / "shared.key"
    shared.write_text(KEY.hex())
    shared.chmod(0o640)
    with pytest.raises(HashKeyError, match="chmod 600"):
        load_hash_key(shared)


def test_keyed_hash_depends_on_the_key_and_wants_e164() -> None:
    assert number_hash(KEY, FR1) == number_hash(KEY, FR1)
    assert len(number_hash(KEY, FR1)) == 64
    assert number_hash(KEY, FR1) != number_hash(OTHER_KEY, FR1)
    assert number_hash(KEY, FR1) != number_hash(KEY, FR2)
    for bad in (FR1 + "\n", "\r" + FR1, " " + FR1, "0199000010", "+0199000010", "+33 1 99"):
        with pytest.raises(ValueError):
            number_hash(KEY, bad)
    with pytest.raises(ValueError):
        number_hash(b"short", FR1)


def test_store_key_is_never_recreated_over_hashed_data(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    path = tmp_path / "k" / "hash.key"
    with sessions.begin() as s:
        key, created = load_store_key(s, path)
        assert created
        add_opt_out(s, key, FR1, source="cli", at=NOW)
    assert load_store_key(sessions(), path) == (key, False)
    path.unlink()
    with sessions() as s, pytest.raises(HashKeyError, match="restore the key"):
        load_store_key(s, path)


def _stored_fingerprint(sessions: sessionmaker[Session]) -> str | None:
    with sessions() as s:
        return s.scalar(select(HashKeyCheck.fingerprint))


def _write_key(path: Path, key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)


def test_key_fingerprint_is_an_hmac_not_the_key() -> None:
    import hashlib
    import hmac

    assert (
        key_fingerprint(KEY)
        == hmac.new(KEY, b"voicecast hash key check v1", hashlib.sha256).hexdigest()
    )
    assert key_fingerprint(KEY) != key_fingerprint(OTHER_KEY)
    assert KEY.hex() not in key_fingerprint(KEY)
    with pytest.raises(ValueError):
        key_fingerprint(b"short")


def test_store_key_fingerprint_is_kept_without_the_callers_commit(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    path = tmp_path / "hash.key"
    with sessions() as s:  # no begin, no commit (as voicecast.app.gate_env)
        key, created = load_store_key(s, path)
    assert created
    assert _stored_fingerprint(sessions) == key_fingerprint(key)
    with sessions() as s:
        [row] = s.scalars(select(HashKeyCheck)).all()
        assert row.id == 1 and key.hex() not in row.fingerprint
        assert abs(row.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    with sessions.begin() as s:  # the caller's transaction is rolled back: the row stays
        assert load_store_key(s, path) == (key, False)
        add_opt_out(s, key, FR1, source="cli", at=NOW)
        s.rollback()
    assert _stored_fingerprint(sessions) == key_fingerprint(key)


def test_another_valid_key_is_refused(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    path = tmp_path / "hash.key"
    _write_key(path, KEY)
    with sessions.begin() as s:
        assert load_store_key(s, path) == (KEY, False)
        add_opt_out(s, KEY, FR1, source="cli", at=NOW)
    # a fresh install's key next to the restored database: FR1 would not match any more
    _write_key(path, OTHER_KEY)
    with sessions() as s, pytest.raises(HashKeyError) as info:
        load_store_key(s, path)
    message = str(info.value)
    assert str(path) in message and "is not the key" in message
    assert "restore the right key from your backup" in message
    assert _stored_fingerprint(sessions) == key_fingerprint(KEY)  # not overwritten
    _write_key(path, KEY)
    with sessions() as s:
        assert load_store_key(s, path) == (KEY, False)
        assert opted_out(s, KEY, [FR1]) == {FR1}


def test_another_key_is_refused_even_before_anything_is_hashed(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    path = tmp_path / "hash.key"
    _write_key(path, KEY)
    with sessions() as s:
        load_store_key(s, path)
    _write_key(path, OTHER_KEY)
    with sessions() as s, pytest.raises(HashKeyError, match="is not the key"):
        load_store_key(s, path)


def test_database_from_before_the_check_trusts_the_key_on_first_use(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    path = tmp_path / "hash.key"
    _write_key(path, KEY)
    with sessions.begin() as s:
        add_opt_out(s, KEY, FR1, source="cli", at=NOW)  # hashed data, no fingerprint (< 0003)
    assert _stored_fingerprint(sessions) is None
    with sessions() as s:
        assert load_store_key(s, path) == (KEY, False)
    assert _stored_fingerprint(sessions) == key_fingerprint(KEY)
    _write_key(path, OTHER_KEY)
    with sessions() as s, pytest.raises(HashKeyError, match="is not the key"):
        load_store_key(s, path)


def test_lost_key_without_hashed_data_is_replaced_with_its_fingerprint(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    path = tmp_path / "hash.key"
    with sessions() as s:
        old, _ = load_store_key(s, path)
    path.unlink()  # nothing was hashed with it: a new key loses nothing
    with sessions() as s:
        new, created = load_store_key(s, path)
    assert created and new != old
    assert _stored_fingerprint(sessions) == key_fingerprint(new)
    with sessions() as s:
        assert load_store_key(s, path) == (new, False)


def test_store_key_on_a_connection_bound_session(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "hash.key"
    with engine.connect() as conn, Session(conn) as s:
        key, _ = load_store_key(s, path)
        s.commit()
    with engine.connect() as conn:
        stored = conn.scalar(select(HashKeyCheck.fingerprint))
    assert stored == key_fingerprint(key)


# --------------------------------------------------------------------------- number files


def test_parse_number_rejects_control_characters_and_junk() -> None:
    assert parse_number("01 99 00 00 10", "FR") == FR1
    assert parse_number("tel:+33199000010", "FR") == FR1
    for bad in ("0199000010\r\n", "01 99\n00 00 10", "0199000010\x00", "01 99 00 00 1O", ""):
        with pytest.raises(InvalidNumberError, match="phone:"):
            parse_number(bad, "FR")


def test_one_number_per_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "list.txt",
        "01 99 00 00 10\n\n+33261910011\r\n0033353010012\n33199000013\nnot a number\n0199\n",
    )
    lines = list(read_numbers(path, "FR"))
    assert valid(lines) == [FR1, FR2, FR3, "+33199000013", None, None]
    assert [item.line for item in lines] == [1, 3, 4, 5, 6, 7]
    assert lines[4].error is not None and "letters" in lines[4].error
    assert lines[5].raw == "0199"


def test_csv_with_header_semicolons_cp1252(tmp_path: Path) -> None:
    text = "Nom;Téléphone;Société\nMartin;01 99 00 00 10;Exemple\nDurand;02 61 91 00 11;Modèle\n"
    path = write(tmp_path, "list.csv", text, "cp1252")
    assert valid(list(read_numbers(path, "FR"))) == [FR1, FR2]


def test_csv_with_utf8_bom_and_commas(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "\ufeffPhone,Name\n+1 202 555 0123,Sam\n", "utf-8")
    assert valid(list(read_numbers(path, "US"))) == [US1]


def test_us_dnc_two_column_format(tmp_path: Path) -> None:
    with_header = write(tmp_path, "dnc.txt", "AreaCode,PhoneNumber\n202,5550123\n202,5550124\n")
    assert valid(list(read_numbers(with_header, "US"))) == [US1, "+12025550124"]
    bare = write(tmp_path, "dnc2.txt", "202,5550123\n202,555012\n")
    lines = list(read_numbers(bare, "US"))
    assert valid(lines) == [US1, None]
    assert lines[0].raw == "202,5550123"
    assert lines[1].error is not None and "AreaCode,PhoneNumber" in lines[1].error


def test_xlsx_numbers(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Mobile", "Note"])
    sheet.append([33199000010, "x"])
    sheet.append(["02 61 91 00 11", None])
    path = tmp_path / "list.xlsx"
    workbook.save(path)
    assert valid(list(read_numbers(path, "FR"))) == [FR1, FR2]


def test_unrecognised_header_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "Client;Ville\nA;Paris\n")
    with pytest.raises(ImportFormatError, match=r"no phone column.*'Client', 'Ville'"):
        list(read_numbers(path, "FR"))
    title = write(tmp_path, "title.txt", "Liste\n0199000010\n")  # a title is not a header
    with pytest.raises(ImportFormatError, match=r"line 1\): no phone column.*'Liste'"):
        list(read_numbers(title, "FR"))
    named = write(tmp_path, "named.txt", "Liste\n0199000010\n")
    assert valid(list(read_numbers(named, "FR", phone_column="liste"))) == [FR1]
    with pytest.raises(ImportFormatError, match="empty"):
        list(read_numbers(write(tmp_path, "empty.txt", ""), "FR"))


def test_block_cache_gives_the_slow_path_results() -> None:
    assert block_width(33) == 4
    assert block_width(1) == 3
    formats = {
        "FR": ["01 99 00 {a:02d} {b:02d}", "+3319900{a:02d}{b:02d}", "00332619100{b:02d}",
               "035301{a:02d}{b:02d}", "0199-00-{a:02d}-{b:02d}", "3319900{a:02d}{b:02d}",
               "019900{a:02d}{b:02d}0", "9900{a:02d}{b:02d}"],
        "US": ["202555{a:02d}{b:02d}", "+1 202 555 {a:02d}{b:02d}", "1202555{a:02d}{b:02d}"],
        "GB": ["02079460{b:03d}", "+44207946{a:01d}{b:03d}"],
    }  # fmt: skip
    for region, shapes in formats.items():
        fast = numberfile._Normaliser(region)
        for shape in shapes:
            for a in (0, 1):
                for b in range(100):
                    raw = shape.format(a=a, b=b)
                    try:
                        expected: str = parse_number(raw, region)
                    except InvalidNumberError as exc:
                        expected = f"invalid: {exc}"
                    try:
                        got = fast(raw)
                    except InvalidNumberError as exc:
                        got = f"invalid: {exc}"
                    assert got == expected, raw
        assert fast.cache or region == "GB"  # GB: some patterns read the last digit


# --------------------------------------------------------------------------- consent ledger


def grant(s: Session, phone: str = FR1, **kw: Any) -> Consent:
    values: dict[str, Any] = {
        "phone": phone,
        "purpose": "marketing",
        "status": "granted",
        "recorded_at": NOW - timedelta(days=10),
        "source": "web",
        "proof_ref": "form-2026-0042",
        "now": NOW,
    }
    values.update(kw)
    return record_consent(s, **values)


def test_record_consent_validates_every_field(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        record = grant(s, "01 99 00 00 10", wording_version="v3")
        assert record.phone_e164 == FR1
        assert record.recorded_at == NOW - timedelta(days=10)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"phone": "0199000010\r\n"}, "phone:"),
        ({"phone": "01 99 ABC"}, "phone:"),
        ({"purpose": "sales"}, "purpose:"),
        ({"status": "maybe"}, "status:"),
        ({"recorded_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"recorded_at": NOW + timedelta(minutes=6)}, "in the future"),
        ({"proof_ref": "  "}, "proof: required"),
        ({"source": "a web form!"}, "source:"),
        ({"wording_version": "x" * 101}, "wording:"),
    ]
    for change, message in cases:
        with sessions() as s, pytest.raises(ConsentError, match=message):
            grant(s, **change)
    with sessions.begin() as s:  # a withdrawal needs no proof; 4 minutes ahead is clock skew
        grant(s, status="withdrawn", proof_ref="", recorded_at=NOW + timedelta(minutes=4))


def test_latest_record_at_the_instant_decides(sessions: sessionmaker[Session]) -> None:
    t0 = NOW - timedelta(days=30)
    with sessions.begin() as s:
        grant(s, FR1, recorded_at=t0)
        grant(s, FR1, recorded_at=t0 + timedelta(days=10), status="withdrawn", proof_ref="")
        grant(s, FR2, recorded_at=t0)
        grant(s, FR2, recorded_at=t0, status="withdrawn", proof_ref="mail")  # tie
        grant(s, FR3, recorded_at=t0, purpose="informational")
    with sessions() as s:
        before = consent_states(s, [FR1, FR2, FR3], "marketing", t0 + timedelta(days=5))
        assert before[FR1].granted and before[FR1].proof_ref == "form-2026-0042"
        assert before[FR2].status == "withdrawn"
        assert FR3 not in before
        after = consent_states(s, [FR1], "marketing", NOW)
        assert after[FR1].status == "withdrawn"
        assert after[FR1].recorded_at == t0 + timedelta(days=10)
        assert consent_states(s, [FR1], "marketing", t0 - timedelta(seconds=1)) == {}
        assert consent_states(s, [FR3], "informational", NOW)[FR3].granted
        assert [r.status for r in consent_history(s, FR1)] == ["granted", "withdrawn"]
        with pytest.raises(ConsentError):
            consent_states(s, [FR1], "sales", NOW)


def test_consent_states_chunks_long_lists(sessions: sessionmaker[Session]) -> None:
    numbers = [f"+331990{i:05d}" for i in range(1200)]
    with sessions.begin() as s:
        for n in numbers[::2]:
            grant(s, n)
    with sessions() as s:
        states = consent_states(s, numbers, "marketing", NOW)
    assert set(states) == set(numbers[::2])


CONSENT_CSV = (
    "Téléphone;Finalité;Statut;Date du consentement;Preuve;Source;Version;Ville\n"
    "01 99 00 00 10;prospection;oui;01/02/2026 14:30;scan-001;paper;v1;Paris\n"
    "+33 2 61 91 00 11;marketing;opt-in;2026-02-01T09:00:00Z;rec-17.wav;recording;;Lyon\n"
    "03 53 01 00 12;informational;accordé;2026-02-03;contrat 12;contract;v2;Metz\n"
    "01 99 00 00 10;prospection;non;15/02/2026;;email;;Paris\n"
)


def test_import_consents_tolerant_headers_and_values(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    path = write(tmp_path, "consents.csv", CONSENT_CSV, "cp1252")
    with sessions.begin() as s:
        summary = import_consents(s, path, now=NOW)
    assert (summary.rows_read, summary.imported, summary.duplicates) == (4, 4, 0)
    assert summary.columns["proof"] == "Preuve"
    assert summary.ignored_columns == ["Ville"]
    with sessions() as s:
        rows = {(r.phone_e164, r.recorded_at, r.status) for r in s.scalars(select(Consent))}
        batch = {r.batch for r in s.scalars(select(Consent))}
    assert rows == {
        (FR1, datetime(2026, 2, 1, 13, 30, tzinfo=UTC), "granted"),  # Paris is UTC+1
        (FR2, datetime(2026, 2, 1, 9, 0, tzinfo=UTC), "granted"),
        (FR3, datetime(2026, 2, 2, 23, 0, tzinfo=UTC), "granted"),
        (FR1, datetime(2026, 2, 14, 23, 0, tzinfo=UTC), "withdrawn"),
    }
    assert batch == {summary.batch}
    with sessions.begin() as s:  # the same file again adds nothing
        again = import_consents(s, path, now=NOW)
    assert (again.imported, again.duplicates) == (0, 4)


def test_a_bad_row_in_the_middle_writes_nothing(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    lines = CONSENT_CSV.splitlines()
    lines.insert(3, "02 61 91 00 15;marketing;oui;31/02/2026;p;web;;x")
    path = write(tmp_path, "consents.csv", "\n".join(lines) + "\n")
    expected = r"consents.csv: line 4: date: .*31/02/2026"
    with pytest.raises(ConsentError, match=expected), sessions.begin() as s:
        import_consents(s, path, now=NOW)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Consent)) == 0
    with sessions.begin() as s:
        summary = import_consents(s, path, now=NOW, skip_invalid=True)
    assert (summary.imported, summary.rejected) == (4, 1)
    assert summary.rejects[0][0] == 4 and summary.rejects[0][1].startswith("date:")


def test_consent_file_errors_name_the_header_line_and_field(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    no_proof = write(
        tmp_path, "a.csv", "phone,purpose,status,date\n0199000010,marketing,yes,2026-01-01\n"
    )
    with (
        sessions() as s,
        pytest.raises(ConsentError, match=r"a.csv: header \(line 1\): no 'proof'"),
    ):
        import_consents(s, no_proof, now=NOW)
    no_status = write(tmp_path, "b.csv", "phone;purpose;date;proof\n")
    with sessions() as s, pytest.raises(ConsentError, match="no 'status' column"):
        import_consents(s, no_status, now=NOW)
    bad_phone = write(
        tmp_path,
        "c.csv",
        "phone,purpose,status,date,proof\n"
        "0199000010,marketing,yes,2026-01-01,p\n"
        "01 99 AB,marketing,yes,2026-01-01,p\n",
    )
    with (
        sessions() as s,
        pytest.raises(ConsentError, match=r"c.csv: line 3: phone: contains letters"),
    ):
        import_consents(s, bad_phone, now=NOW)
    future = write(
        tmp_path,
        "d.csv",
        "phone,purpose,status,date,proof\n0199000010,marketing,yes,2027-01-01,p\n",
    )
    with sessions() as s, pytest.raises(ConsentError, match=r"line 2: date: .* in the future"):
        import_consents(s, future, now=NOW)
    with sessions() as s, pytest.raises(ConsentError, match="time zone"):
        import_consents(s, bad_phone, timezone="Mars/Olympus")


def test_consent_xlsx(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Phone", "Purpose", "Status", "Timestamp", "Proof ref", "Wording version"])
    sheet.append([33199000010, "marketing", "granted", datetime(2026, 1, 5, 12, 0), "p1", "v9"])
    path = tmp_path / "c.xlsx"
    workbook.save(path)
    with sessions.begin() as s:
        summary = import_consents(s, path, timezone="UTC", now=NOW)
    assert summary.imported == 1
    with sessions() as s:
        record = s.scalars(select(Consent)).one()
    assert (record.recorded_at, record.wording_version, record.source) == (
        datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
        "v9",
        "import",
    )


def test_parse_instant_shapes() -> None:
    paris = __import__("zoneinfo").ZoneInfo("Europe/Paris")
    assert parse_instant("2026-07-01T10:00:00+02:00", paris) == datetime(2026, 7, 1, 8, tzinfo=UTC)
    assert parse_instant("01/07/2026 10h05", paris) == datetime(2026, 7, 1, 8, 5, tzinfo=UTC)
    assert parse_instant("01.07.2026", paris) == datetime(2026, 6, 30, 22, tzinfo=UTC)
    for bad in ("tomorrow", "2026-13-01", "32/01/2026"):
        with pytest.raises(ConsentError, match="date:"):
            parse_instant(bad, paris)


# --------------------------------------------------------------------------- opt-outs


def test_opt_out_is_idempotent_and_keeps_the_earliest(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        assert add_opt_out(s, KEY, FR1, source="key-press", at=NOW - timedelta(days=1))
        assert not add_opt_out(s, KEY, FR1, source="cli", at=NOW, note="again")
    with sessions() as s:
        record = opt_out_record(s, KEY, FR1)
        assert record is not None
        assert (record.recorded_at, record.source) == (NOW - timedelta(days=1), "key-press")
    with sessions.begin() as s:
        assert not add_opt_out(s, KEY, FR1, source="import", at=NOW - timedelta(days=3))
    with sessions() as s:
        record = opt_out_record(s, KEY, FR1)
        assert record is not None and record.source == "import"
        assert s.scalar(select(func.count()).select_from(OptOut)) == 1
        stored = s.scalars(select(OptOut.number_hash)).one()
        assert stored == number_hash(KEY, FR1) and "199000010" not in stored
        assert opted_out(s, KEY, [FR1, FR2, FR1]) == {FR1}
        assert opted_out(s, OTHER_KEY, [FR1]) == set()
    with sessions() as s:
        with pytest.raises(SuppressionError, match="source"):
            add_opt_out(s, KEY, FR2, source="robot", at=NOW)
        with pytest.raises(InvalidNumberError):
            add_opt_out(s, KEY, "0199000010", source="cli", at=NOW)
        with pytest.raises(SuppressionError, match="future"):
            add_opt_out(s, KEY, FR2, source="cli", at=datetime.now(UTC) + timedelta(hours=1))


def test_opt_outs_survive_contact_reimports(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    contacts = write(tmp_path, "contacts.csv", "Téléphone;Prénom\n01 99 00 00 10;Camille\n")
    with sessions.begin() as s:
        import_contacts(s, "clients", parse_contacts_file(contacts))
        add_opt_out(s, KEY, FR1, source="key-press", at=NOW)
    with sessions.begin() as s:  # the list is deleted, then imported again
        s.execute(delete(ContactList))
    with sessions.begin() as s:
        import_contacts(s, "clients", parse_contacts_file(contacts))
    with sessions() as s:
        assert opted_out(s, KEY, [FR1]) == {FR1}


def test_import_opt_outs(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    path = write(tmp_path, "optouts.txt", "0199000010\n+33261910011\n01 99 00 00 10\nbad\n")
    with sessions.begin() as s:
        add_opt_out(s, KEY, FR2, source="cli", at=NOW - timedelta(days=2))
        summary = import_opt_outs(s, KEY, path, "FR", at=NOW)
    assert (summary.lines_read, summary.added, summary.already, summary.invalid_lines) == (
        4,
        1,
        2,
        1,
    )
    assert summary.invalid_samples[0][0] == 4
    with sessions() as s:
        assert opted_out(s, KEY, [FR1, FR2, FR3]) == {FR1, FR2}
        record = opt_out_record(s, KEY, FR2)
        assert record is not None and record.source == "cli"  # earliest kept
    empty = write(tmp_path, "none.txt", "0199\nworse\n")
    with sessions() as s, pytest.raises(SuppressionError, match="no valid phone number"):
        import_opt_outs(s, KEY, empty, "FR")


# --------------------------------------------------------------------------- opposition lists


def bloctel_file(tmp_path: Path, numbers: list[str], name: str = "bloctel.txt") -> Path:
    return write(tmp_path, name, "\n".join(numbers) + "\n")


def test_opposition_import_and_hits(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    path = bloctel_file(tmp_path, ["0199000010", "0199000010", "+33261910011", "junk", ""])
    with sessions.begin() as s:
        summary = import_opposition_list(
            s, KEY, "bloctel", path, as_of=NOW - timedelta(days=3), now=NOW
        )
    assert (summary.entries, summary.valid_lines, summary.invalid_lines) == (2, 3, 1)
    assert summary.invalid_samples == [(4, "phone: contains letters ('junk')")]
    assert summary.replaced_entries is None and len(summary.sha256) == 64
    with sessions() as s:
        assert opposition_hits(s, KEY, "bloctel", [FR1, FR2, FR3]) == {FR1, FR2}
        assert opposition_hits(s, KEY, "tps", [FR1]) == set()  # never imported
        assert opposition_hits(s, OTHER_KEY, "bloctel", [FR1]) == set()
        [info] = opposition_status(s)
    assert (info.name, info.country, info.entries, info.list_date) == (
        "bloctel",
        "FR",
        2,
        NOW - timedelta(days=3),
    )
    assert info.age_days(NOW) == 3 and not info.stale(NOW)
    assert info.stale(NOW + timedelta(days=28))
    with sessions() as s, pytest.raises(SuppressionError, match="unknown opposition list"):
        opposition_hits(s, KEY, "robinson", [FR1])


def test_opposition_reimport_replaces_the_old_version(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as s:
        import_opposition_list(
            s,
            KEY,
            "bloctel",
            bloctel_file(tmp_path, ["0199000010", "0261910011"]),
            as_of=None,
            now=NOW,
        )
        import_opposition_list(
            s, KEY, "tps", write(tmp_path, "tps.txt", "020 7946 0001\n"), as_of=None, now=NOW
        )
    later = NOW + timedelta(days=30)
    with sessions.begin() as s:
        summary = import_opposition_list(
            s,
            KEY,
            "bloctel",
            bloctel_file(tmp_path, ["0353010012"], "v2.txt"),
            as_of=None,
            now=later,
        )
    assert (summary.entries, summary.replaced_entries) == (1, 2)
    with sessions() as s:
        assert opposition_hits(s, KEY, "bloctel", [FR1, FR2, FR3]) == {FR3}
        assert opposition_hits(s, KEY, "tps", [UK1]) == {UK1}
        assert s.scalar(select(func.count()).select_from(OppositionList)) == 2
        assert s.scalar(select(func.count()).select_from(OppositionEntry)) == 2
        status = {i.name: i for i in opposition_status(s)}
    assert status["bloctel"].list_date == later and status["bloctel"].source_file.endswith("v2.txt")


def test_a_failed_reimport_keeps_the_previous_version(
    tmp_path: Path, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with sessions.begin() as s:
        import_opposition_list(
            s, KEY, "bloctel", bloctel_file(tmp_path, ["0199000010"]), as_of=None, now=NOW
        )
    no_valid = bloctel_file(tmp_path, ["0199", "junk"], "bad.txt")
    expected = r"bad.txt: no valid phone number in 2 line.*line 1: phone: "
    with pytest.raises(SuppressionError, match=expected), sessions.begin() as s:
        import_opposition_list(s, KEY, "bloctel", no_valid, as_of=None, now=NOW)

    def broken(staged: Any) -> Iterator[list[str]]:
        yield from original(staged)
        raise OSError("disk full")

    original = suppression._staged_chunks
    monkeypatch.setattr(suppression, "INSERT_CHUNK", 2)
    monkeypatch.setattr(suppression, "_staged_chunks", broken)
    many = bloctel_file(tmp_path, ["0261910011", "0353010012", "0199000013"], "v2.txt")
    with pytest.raises(OSError, match="disk full"), sessions.begin() as s:
        import_opposition_list(s, KEY, "bloctel", many, as_of=None, now=NOW)
    with sessions() as s:
        assert opposition_hits(s, KEY, "bloctel", [FR1, FR2, FR3]) == {FR1}
        assert [i.entries for i in opposition_status(s)] == [1]


def test_us_dnc_download_and_invalid_samples(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    lines = ["202,5550123", "202,5550124"] + [f"202,55501{i:02d}x" for i in range(25)]
    path = write(tmp_path, "dnc.txt", "\n".join(lines) + "\n")
    with sessions.begin() as s:
        summary = import_opposition_list(s, KEY, "us-dnc", path, as_of=None, now=NOW)
    assert (summary.entries, summary.invalid_lines, len(summary.invalid_samples)) == (2, 25, 20)
    assert summary.invalid_samples[0][0] == 3
    assert summary.to_dict()["invalid_samples"][0]["line"] == 3
    with sessions() as s:
        assert opposition_hits(s, KEY, "us-dnc", [US1, "+12025550125"]) == {US1}


def test_opposition_dates_are_checked(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    path = bloctel_file(tmp_path, ["0199000010"])
    with sessions() as s:
        with pytest.raises(SuppressionError, match="future"):
            import_opposition_list(s, KEY, "bloctel", path, as_of=NOW + timedelta(days=2), now=NOW)
        with pytest.raises(SuppressionError, match="unknown opposition list"):
            import_opposition_list(s, KEY, "dnc", path, as_of=None, now=NOW)


# --------------------------------------------------------------------------- refusals


def test_refusals_latest_per_number(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_refusal(s, KEY, FR1, at=NOW - timedelta(days=90), source="cli")
        add_refusal(s, KEY, FR1, at=NOW - timedelta(days=5), source="agent")
        add_refusal(s, KEY, FR2, at=NOW - timedelta(days=1), source="api")
    with sessions() as s:
        assert last_refusals(s, KEY, [FR1, FR2, FR3]) == {
            FR1: NOW - timedelta(days=5),
            FR2: NOW - timedelta(days=1),
        }
        assert last_refusals(s, OTHER_KEY, [FR1]) == {}
        with pytest.raises(SuppressionError, match="aware"):
            add_refusal(s, KEY, FR1, at=datetime(2026, 1, 1), source="cli")
        with pytest.raises(InvalidNumberError):
            add_refusal(s, KEY, FR1 + "\n", at=NOW, source="cli")


def test_no_plain_number_in_hashed_tables(tmp_path: Path, engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as s:
        add_opt_out(s, KEY, FR1, source="cli", at=NOW)
        add_refusal(s, KEY, FR2, at=NOW, source="cli")
        import_opposition_list(
            s, KEY, "bloctel", bloctel_file(tmp_path, ["0353010012"]), as_of=None, now=NOW
        )
    engine.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    for digits in (b"199000010", b"261910011", b"353010012"):
        assert digits not in raw
    assert os.path.exists(tmp_path / "t.db")
