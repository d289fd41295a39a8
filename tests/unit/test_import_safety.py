"""Imports and exports that fail leave nothing behind; stale or malformed inputs are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_workspace import make_workspace, run_cli, said
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.compliance.suppression import SuppressionError, import_opposition_list
from voicecast.contacts.importer import parse_contacts_file
from voicecast.contacts.service import import_contacts
from voicecast.errors import VoicecastError
from voicecast.storage.models import ContactList, JournalEntry

KEY = bytes(range(32))
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_an_older_national_list_does_not_replace_a_newer_one(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "bloctel.txt"
    path.write_text("0199000010\n0199000011\n", encoding="utf-8")
    with sessions() as s, s.begin():
        import_opposition_list(s, KEY, "bloctel", path, as_of=NOW, now=NOW)
    with pytest.raises(SuppressionError, match="newer than this one"), sessions() as s, s.begin():
        old = datetime(2020, 1, 1, tzinfo=UTC)
        import_opposition_list(s, KEY, "bloctel", path, as_of=old, now=NOW)


def test_a_list_name_with_a_line_break_is_refused(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "c.csv"
    path.write_text("phone\n0199000010\n", encoding="utf-8")
    with pytest.raises(VoicecastError, match="control characters"), sessions() as s, s.begin():
        import_contacts(s, "a\nb", parse_contacts_file(path))


def test_failed_rejects_file_or_export_file_leaves_nothing_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_workspace(tmp_path, monkeypatch)
    (tmp_path / "c.csv").write_text("phone;name\n0199000010;A\nnot a number;B\n", encoding="utf-8")
    bad = run_cli(config, "contacts", "import", "c.csv", "--list", "t", "--rejects",
                  "no/such/dir/r.csv", catch_exceptions=True)  # fmt: skip
    assert bad.exit_code == 1, bad.output
    exported = run_cli(config, "subject", "export", "0199000010", "-o", "no/such/dir/x.json",
                       catch_exceptions=True)  # fmt: skip
    assert exported.exit_code == 1, said(exported)
    from voicecast.app import open_runtime
    from voicecast.config import load_settings

    runtime = open_runtime(load_settings(config))
    with runtime.sessions() as s:
        assert s.scalars(select(ContactList)).all() == []
        assert [e.kind for e in s.scalars(select(JournalEntry))] == []
