"""Storing parsed contact files: lists, merges, one transaction per import. Fictional data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from voicecast.contacts import (
    ImportSummary,
    ParsedContact,
    ParseResult,
    import_contacts,
    parse_contacts_file,
)
from voicecast.contacts import service as service_module
from voicecast.errors import VoicecastError
from voicecast.storage.models import Contact, ContactList


def csv_file(tmp_path: Path, text: str, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


FIRST = (
    "Téléphone;Prénom;Nom;Société\n"
    "01 99 00 00 10;Camille;Exemple;\n"
    "02 61 91 00 11;Dominique;Modèle;Société Fictive\n"
    "+33 1 99 00 00 10;;;Exemple SARL\n"
    "bad;x;y;z\n"
)


def stored(sessions: sessionmaker[Session], list_name: str) -> dict[str, dict[str, Any]]:
    with sessions() as session:
        rows = session.execute(
            select(Contact.phone_e164, Contact.fields)
            .join(ContactList)
            .where(ContactList.name == list_name)
        )
        return {phone: fields for phone, fields in rows}


def test_import_creates_list_and_contacts(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    result = parse_contacts_file(csv_file(tmp_path, FIRST))
    with sessions.begin() as session:
        counts = import_contacts(session, "Clients test", result)
    assert counts == (2, 0, 0)
    assert stored(sessions, "Clients test") == {
        "+33199000010": {
            "first_name": "Camille",
            "last_name": "Exemple",
            "company": "Exemple SARL",  # filled from the duplicate on line 4
        },
        "+33261910011": {
            "first_name": "Dominique",
            "last_name": "Modèle",
            "company": "Société Fictive",
        },
    }
    with sessions() as session:
        rows = session.execute(select(Contact.phone_e164, Contact.source_line))
        lines = {phone: line for phone, line in rows}
        created = session.scalars(select(Contact.created_at)).first()
    assert lines == {"+33199000010": 2, "+33261910011": 3}
    assert created is not None and created.tzinfo is not None

    summary = ImportSummary.build("Clients test", "contacts.csv", result, counts, None)
    data = summary.to_dict()
    assert data["imported"] == 2
    assert data["duplicates"] == 1  # one duplicate inside the file
    assert data["rejected"] == 1
    assert data["rows_read"] == 4
    assert data["phone_column"] == "Téléphone"
    assert data["delimiter"] == ";"
    assert data["rejects_file"] is None


def test_import_twice_counts_duplicates_and_adds_nothing(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    result = parse_contacts_file(csv_file(tmp_path, FIRST))
    with sessions.begin() as session:
        assert import_contacts(session, "L", result) == (2, 0, 0)
    before = stored(sessions, "L")
    with sessions.begin() as session:
        assert import_contacts(session, "L", result) == (0, 0, 2)
    assert stored(sessions, "L") == before
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 2
        assert session.scalar(select(func.count()).select_from(ContactList)) == 1


def test_merge_overwrites_with_non_empty_new_fields(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        import_contacts(session, "L", parse_contacts_file(csv_file(tmp_path, FIRST)))
    second = (
        "Phone,First Name,Company\n"
        "0199000010,,Nouvelle Fictive\n"  # company changes, empty first name ignored
        "0261910011,Dominique,Société Fictive\n"  # identical: duplicate, not updated
        "0353010012,Claude,\n"  # new
    )
    result = parse_contacts_file(csv_file(tmp_path, second, name="second.csv"))
    with sessions.begin() as session:
        assert import_contacts(session, "L", result) == (1, 1, 2)
    contacts = stored(sessions, "L")
    assert contacts["+33199000010"] == {
        "first_name": "Camille",
        "last_name": "Exemple",
        "company": "Nouvelle Fictive",
    }
    assert contacts["+33353010012"] == {"first_name": "Claude"}
    assert len(contacts) == 3


def test_lists_are_separate(tmp_path: Path, sessions: sessionmaker[Session]) -> None:
    result = parse_contacts_file(csv_file(tmp_path, FIRST))
    with sessions.begin() as session:
        assert import_contacts(session, "A", result) == (2, 0, 0)
        assert import_contacts(session, "B", result) == (2, 0, 0)
    assert set(stored(sessions, "A")) == set(stored(sessions, "B"))


def test_many_contacts_in_chunks(
    tmp_path: Path, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "CHUNK_SIZE", 7)
    lines = ["Phone,Company"] + [f"0199{i:06d},Fictive {i}" for i in range(50)]
    result = parse_contacts_file(csv_file(tmp_path, "\n".join(lines) + "\n"))
    with sessions.begin() as session:
        assert import_contacts(session, "Big", result) == (50, 0, 0)
    assert len(stored(sessions, "Big")) == 50


def test_failing_statement_leaves_nothing_written(
    tmp_path: Path, engine: Engine, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "CHUNK_SIZE", 2)
    lines = ["Phone"] + [f"0261910{i:03d}" for i in range(6)]
    result = parse_contacts_file(csv_file(tmp_path, "\n".join(lines) + "\n"))
    inserts = 0

    def fail_second_contact_insert(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        nonlocal inserts
        if statement.startswith("INSERT INTO contacts"):
            inserts += 1
            if inserts == 2:
                raise OperationalError(statement, params, Exception("disk I/O error (simulated)"))

    event.listen(engine, "before_cursor_execute", fail_second_contact_insert)
    try:
        with pytest.raises(OperationalError), sessions.begin() as session:
            import_contacts(session, "Atomic", result)
    finally:
        event.remove(engine, "before_cursor_execute", fail_second_contact_insert)
    assert inserts == 2  # the first chunk and the list were written, then rolled back
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ContactList)) == 0
        assert session.scalar(select(func.count()).select_from(Contact)) == 0


def test_hand_built_result_with_repeated_number(sessions: sessionmaker[Session]) -> None:
    result = ParseResult(
        contacts=[
            ParsedContact("+33199000010", {"first_name": "Camille"}, 2),
            ParsedContact("+33199000010", {"last_name": "Exemple"}, 3),
        ],
        duplicates=0,
        rejects=[],
        headers=["Phone"],
        phone_column="Phone",
        field_columns={},
        ignored_columns=[],
        encoding="utf-8",
        delimiter=",",
        rows_read=2,
    )
    with sessions.begin() as session:
        assert import_contacts(session, "L", result) == (1, 0, 0)
    assert stored(sessions, "L") == {
        "+33199000010": {"first_name": "Camille", "last_name": "Exemple"}
    }


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_list_name(name: str, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    result = parse_contacts_file(csv_file(tmp_path, FIRST))
    with pytest.raises(VoicecastError, match="list name"), sessions.begin() as session:
        import_contacts(session, name, result)
