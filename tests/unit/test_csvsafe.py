"""Spreadsheet formula cells neutralised in every CSV voicecast writes (OWASP CSV Injection):
the shared rule, the rejects file of an import (library and CLI), the CLI report."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from voicecast.campaigns.service import REPORT_COLUMNS
from voicecast.cli import main, render_report
from voicecast.contacts import parse_contacts_file, write_rejects_csv
from voicecast.csvsafe import neutralise_cell, neutralise_row

CONFIG = """\
[database]
url = "sqlite:///var/test.db"

[audio]
store_dir = "var/audio"

[pbx]
sounds_dir = "var/sounds"

[sandbox]
enabled = false

[compliance]
hash_key_file = "var/keys/hash.key"
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("+1e5", "'+1e5"),
        ("-1.5.2", "'-1.5.2"),
        ("+33 1 99 00 00 10", "'+33 1 99 00 00 10"),  # not only digits: a formula to Excel
        ("-5,5", "'-5,5"),
        ("+33199000010\n", "'+33199000010\n"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\r=1", "'\r=1"),
        ("\x00=1", "'\x00=1"),
        ("+33199000010", "+33199000010"),  # E.164: read as a number, never evaluated
        ("-5", "-5"),
        ("+1.5", "+1.5"),
        ("1.5", "1.5"),
        ("Camille", "Camille"),
        ("a=1", "a=1"),
        ("", ""),
        (3, 3),
        (-3, -3),
        (None, None),
    ],
)
def test_neutralise_cell(value: object, expected: object) -> None:
    assert neutralise_cell(value) == expected


def test_neutralise_row_keeps_order() -> None:
    assert neutralise_row(["=a", 1, "b", "+33199000010"]) == ["'=a", 1, "b", "+33199000010"]


def read_rows(path: Path, delimiter: str) -> list[list[str]]:
    text = path.read_text(encoding="utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def test_rejects_file_neutralises_formula_cells(tmp_path: Path) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text(
        "Téléphone;Nom;=Note\n"
        '=HYPERLINK("http://evil.example","x");Exemple;+cmd|x\n'
        "+33199000010;-2+3;@SUM(A1)\n"
        "01 99 ABC;Modèle;-5\n",
        encoding="utf-8",
    )
    result = parse_contacts_file(source, phone_column="Téléphone")
    out = tmp_path / "rejects.csv"
    write_rejects_csv(result, out)
    rows = read_rows(out, ";")
    assert rows[0] == ["line", "reason", "Téléphone", "Nom", "'=Note"]
    by_line = {row[0]: row for row in rows[1:]}
    assert by_line["2"][2:] == ['\'=HYPERLINK("http://evil.example","x")', "Exemple", "'+cmd|x"]
    assert by_line["4"][2:] == ["01 99 ABC", "Modèle", "-5"]
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row)


def test_cli_import_writes_a_neutralised_rejects_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    config = tmp_path / "voicecast.toml"
    config.write_text(CONFIG, encoding="utf-8")
    source = tmp_path / "clients.csv"
    source.write_text(
        "Téléphone;Prénom\n01 99 00 00 10;Camille\n=1+1;+cmd|' /C calc'!A0\n", encoding="utf-8"
    )
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "contacts", "import", str(source), "--list", "clients"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "clients-rejects.csv", ";")
    assert rows[1][2:] == ["'=1+1", "'+cmd|' /C calc'!A0"]


def test_cli_report_csv_neutralises_formula_cells() -> None:
    row = dict.fromkeys(REPORT_COLUMNS, "")
    row.update(
        number="+33199000010",
        first_name='=HYPERLINK("http://evil.example","x")',
        last_name="-2+3",
        outcome="human",
        attempts=1,
        q850_cause=16,
        error="@SUM(A1)",
    )
    text = render_report([row], "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(REPORT_COLUMNS)
    got = dict(zip(REPORT_COLUMNS, rows[1], strict=True))
    assert got["number"] == "+33199000010"
    assert got["first_name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert got["last_name"] == "'-2+3"
    assert got["error"] == "'@SUM(A1)"
    assert (got["outcome"], got["attempts"], got["q850_cause"]) == ("human", "1", "16")
