"""Contact file parsing: encodings, delimiters, Excel quirks, header detection, phone rules.

Fictional data only: FR 01 99 00 xx xx / 02 61 91 xx xx / 03 53 01 xx xx, US 202 555 01xx,
UK 020 7946 0xxx, names such as "Camille Exemple".
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import pytest

from voicecast.contacts import (
    ImportFormatError,
    InvalidPhoneError,
    ParseResult,
    normalize_phone,
    parse_contacts_file,
    write_rejects_csv,
)


def write(tmp_path: Path, content: str | bytes, name: str = "contacts.csv", **kw: str) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode(kw.get("encoding", "utf-8")))
    else:
        path.write_bytes(content)
    return path


def phones(result: ParseResult) -> list[str]:
    return [c.phone_e164 for c in result.contacts]


# --------------------------------------------------------------------------- normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("01 99 00 00 10", "+33199000010"),
        ("0199000010", "+33199000010"),
        ("01.99.00.00.10", "+33199000010"),
        ("01-99-00-00-10", "+33199000010"),
        ("01/99/00/00/10", "+33199000010"),
        ("+33 1 99 00 00 10", "+33199000010"),
        ("+33199000010", "+33199000010"),
        ("0033 1 99 00 00 10", "+33199000010"),
        ("(+33) 1 99 00 00 10", "+33199000010"),
        ("+33 (0)1 99 00 00 10", "+33199000010"),
        ("199000010", "+33199000010"),  # Excel numeric cell: leading 0 lost
        ("33199000010", "+33199000010"),  # '+' lost
        ("0199000010.0", "+33199000010"),  # float column export
        ("  02 61 91 00 11 ", "+33261910011"),
        ("03\u00a053\u00a001\u202f00\u202f12", "+33353010012"),  # non-breaking spaces
        ("tel:+33199000010", "+33199000010"),
        ("TEL:01 99 00 00 10", "+33199000010"),
        ("0690 00 12 34", "+590690001234"),  # Guadeloupe written nationally
        ("0696 00 12 34", "+596696001234"),  # Martinique
        ("0692 00 12 34", "+262692001234"),  # La Réunion
        ("+1 202 555 0123", "+12025550123"),
        ("+44 20 7946 0123", "+442079460123"),
    ],
)
def test_normalize_phone_accepts(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


def test_normalize_phone_other_regions() -> None:
    assert normalize_phone("(202) 555-0123", "US") == "+12025550123"
    assert normalize_phone("020 7946 0123", "gb") == "+442079460123"
    # overseas retry is for FR only
    with pytest.raises(InvalidPhoneError, match="not a valid number for BE"):
        normalize_phone("0690 00 12 34", "BE")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "phone: empty"),
        ("   \u00a0", "phone: empty"),
        ("01 99 ABC", "phone: contains letters ('01 99 ABC')"),
        ("0800 FLOWERS", "phone: contains letters"),
        ("0199000010&Local/x", "phone: unexpected character '&'"),
        ("0199000010\r\nAction: Originate", "phone: unexpected character '\\r'"),
        ("0199000010\n", None),  # trailing newline is whitespace: accepted (see below)
        ("0199000010*", "phone: unexpected character '*'"),
        ("#0199000010", "phone: unexpected character '#'"),
        ("0199000010,", "phone: unexpected character ','"),
        ("0199000010;x", "phone: unexpected character ';'"),
        ("0199000010|", "phone: unexpected character '|'"),
        ("a@0199000010", "phone: unexpected character '@'"),
        ("3.3199E+10", "phone: written in scientific notation by Excel, digits lost"),
        ("3,3199E+10", "phone: written in scientific notation by Excel, digits lost"),
        ("01 99 00 00 10 / 02 61 91 00 11", "phone: several numbers in one cell"),
        ("0199000010 0261910011", "phone: several numbers in one cell"),
        ("01+99000010", "phone: '+' must start the number"),
        ("12", "phone: not a valid number for FR"),
        ("0590 99 99 99 99 9", "phone: "),
        ("+999 1234567", "phone: unknown country code"),
        ("tel:", "phone: empty"),
    ],
)
def test_normalize_phone_rejects(raw: str, reason: str | None) -> None:
    if reason is None:
        assert normalize_phone(raw) == "+33199000010"
        return
    with pytest.raises(InvalidPhoneError) as info:
        normalize_phone(raw)
    assert str(info.value).startswith(reason)
    assert "\r" not in str(info.value) and "\n" not in str(info.value)


def test_normalize_phone_unknown_region() -> None:
    with pytest.raises(ValueError, match="unknown region"):
        normalize_phone("0199000010", "XX")


# --------------------------------------------------------------------------- encodings


def test_comma_utf8(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Phone,First Name,Last Name,Company,Email\n"
        "01 99 00 00 10,Camille,Exemple,Société Fictive,camille@example.invalid\n"
        "+33 2 61 91 00 11,Dominique,Modèle,,\n",
    )
    result = parse_contacts_file(path)
    assert result.encoding == "utf-8"
    assert result.delimiter == ","
    assert result.phone_column == "Phone"
    assert result.field_columns == {
        "first_name": "First Name",
        "last_name": "Last Name",
        "company": "Company",
    }
    assert result.ignored_columns == ["Email"]
    assert result.rows_read == 2
    assert phones(result) == ["+33199000010", "+33261910011"]
    first = result.contacts[0]
    assert first.fields == {
        "first_name": "Camille",
        "last_name": "Exemple",
        "company": "Société Fictive",
    }
    assert first.line == 2
    assert result.contacts[1].fields == {"first_name": "Dominique", "last_name": "Modèle"}


def test_utf8_file_with_a_stray_cp1252_line_is_refused_naming_the_line(tmp_path: Path) -> None:
    """Read as cp1252 it would garble every name (Prénom -> PrÃ©nom): refuse, name the line."""
    body = "Téléphone;Prénom\n01 99 00 00 10;Zoé\n01 99 00 00 11;Chloé\n".encode()
    path = write(tmp_path, body + "01 99 00 00 12;Dœuf\n".encode("cp1252"))
    with pytest.raises(ImportFormatError, match=r"line 4 is not UTF-8 .*byte 0x9C"):
        parse_contacts_file(path)
    # a whole cp1252 file whose text happens to hold one valid UTF-8 pair is still cp1252
    path = write(tmp_path, "Téléphone;Prénom\n01 99 00 00 10;Hélène Ã©\n".encode("cp1252"))
    assert parse_contacts_file(path).encoding == "cp1252"


def test_semicolon_cp1252_accents(tmp_path: Path) -> None:
    text = (
        "Téléphone;Prénom;Nom;Société;Région\r\n"
        "01 99 00 00 10;Hélène;Exemple;Société Fictive;Île-de-France\r\n"
    )
    path = write(tmp_path, text.encode("cp1252"))
    result = parse_contacts_file(path)
    assert result.encoding == "cp1252"
    assert result.delimiter == ";"
    assert result.phone_column == "Téléphone"
    assert result.field_columns == {
        "first_name": "Prénom",
        "last_name": "Nom",
        "company": "Société",
        "region": "Région",
    }
    assert result.contacts[0].fields["company"] == "Société Fictive"
    assert result.contacts[0].fields["first_name"] == "Hélène"


def test_utf8_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffTéléphone;Nom\n0199000010;Exemple\n", encoding="utf-8")
    result = parse_contacts_file(path)
    assert result.encoding == "utf-8-sig"
    assert result.headers == ["Téléphone", "Nom"]  # BOM not glued to the first header
    assert phones(result) == ["+33199000010"]


def test_utf16_tab_unicode_text(tmp_path: Path) -> None:
    text = 'Téléphone\tPrénom\tSociété\r\n01 99 00 00 10\tCamille\t"Fictive\tet Cie"\r\n'
    path = write(tmp_path, text.encode("utf-16"), name="export.txt")
    result = parse_contacts_file(path)
    assert result.encoding == "utf-16"
    assert result.delimiter == "\t"
    assert result.contacts[0].fields == {"first_name": "Camille", "company": "Fictive et Cie"}


def test_tab_delimited_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "tel\tnom\n0353010011\tExemple\n")
    result = parse_contacts_file(path)
    assert result.delimiter == "\t"
    assert phones(result) == ["+33353010011"]


def test_excel_sep_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sep=;\nPhone;Company\n0199000010;Fictive, SARL\n")
    result = parse_contacts_file(path)
    assert result.delimiter == ";"
    assert result.contacts[0].fields == {"company": "Fictive, SARL"}
    assert result.contacts[0].line == 3


@pytest.mark.parametrize(
    "content",
    [
        b"Phone,Name\n0199000010,\x00\x01\x02binary\n",
        bytes(range(256)) * 20,
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        b"Phone\n" + bytes(range(1, 9)) * 50,  # no NUL, but control characters throughout
        "Phone\n0199000010\n".encode("utf-16-le"),  # UTF-16 without BOM: NUL bytes
        b"Phone,Name\n0199000010,\x81\x8d\x8f\x90\x9d\n",  # neither UTF-8 nor cp1252
    ],
)
def test_not_text(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ImportFormatError, match="not a text CSV file"):
        parse_contacts_file(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="empty"):
        parse_contacts_file(write(tmp_path, b""))
    with pytest.raises(ImportFormatError, match="no header row"):
        parse_contacts_file(write(tmp_path, "\n;;\n  \n", name="blank.csv"))
    with pytest.raises(ImportFormatError, match="cannot read"):
        parse_contacts_file(tmp_path / "absent.csv")


def test_legacy_xls_refused(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), name="old.xls")
    with pytest.raises(ImportFormatError, match=r"legacy Excel \.xls"):
        parse_contacts_file(path)


# --------------------------------------------------------------------------- CSV structure


def test_quoted_fields_newlines_and_line_numbers(tmp_path: Path) -> None:
    text = (
        "Phone;Company;Notes\r\n"  # line 1
        '0199000010;"Fictive; ""SA""";"multi\r\nline\r\nnote"\r\n'  # lines 2-4
        "\r\n"  # line 5 blank
        "0199000011;Modèle;x\r\n"  # line 6
        '"01 99 00 00 12";"Exemple\nSARL";\r\n'  # lines 7-8
        "ABC;bad;\r\n"  # line 9
    )
    path = write(tmp_path, text)
    result = parse_contacts_file(path)
    assert result.rows_read == 4
    assert [(c.phone_e164, c.line) for c in result.contacts] == [
        ("+33199000010", 2),
        ("+33199000011", 6),
        ("+33199000012", 7),
    ]
    assert result.contacts[0].fields == {"company": 'Fictive; "SA"'}
    assert result.contacts[2].fields == {"company": "Exemple SARL"}  # newline -> space
    assert [(r.line, r.reason) for r in result.rejects] == [(9, "phone: contains letters ('ABC')")]
    assert result.ignored_columns == ["Notes"]


def test_bare_cr_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, "Phone,Company\r0199000010,A\r0199000011,B\r")
    result = parse_contacts_file(path)
    assert [(c.phone_e164, c.line) for c in result.contacts] == [
        ("+33199000010", 2),
        ("+33199000011", 3),
    ]


def test_blank_rows_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "\n\nPhone;Nom\n;\n \u00a0; \n0199000010;Exemple\n;;;\n\n")
    result = parse_contacts_file(path)
    assert result.rows_read == 1
    assert result.rejects == []
    assert result.contacts[0].line == 6


def test_ragged_rows(tmp_path: Path) -> None:
    text = (
        "Phone,First Name,Last Name\n"
        "0199000010\n"  # fewer cells: missing ones empty
        "0199000011,Camille,Exemple,,\n"  # extra empty cells: fine
        "0199000012,Dominique,Modèle,surplus,more\n"  # extra data: rejected
    )
    result = parse_contacts_file(write(tmp_path, text))
    assert phones(result) == ["+33199000010", "+33199000011"]
    assert result.contacts[0].fields == {}
    assert len(result.rejects) == 1
    reject = result.rejects[0]
    assert reject.line == 4
    assert reject.reason == "row has 5 cells but the header has 3: extra cells 'surplus', 'more'"
    assert reject.row == {
        "Phone": "0199000012",
        "First Name": "Dominique",
        "Last Name": "Modèle",
    }


def test_trailing_empty_headers_and_unnamed_columns(tmp_path: Path) -> None:
    text = "Téléphone;;Nom;;\n0199000010;secret;Exemple;;\n"
    result = parse_contacts_file(write(tmp_path, text))
    assert result.headers == ["Téléphone", "column 2", "Nom"]
    assert result.ignored_columns == ["column 2"]
    assert result.contacts[0].fields == {"last_name": "Exemple"}


def test_whitespace_and_control_characters_in_fields(tmp_path: Path) -> None:
    long_company = "Fictive " * 40
    text = (
        "\u00a0Phone\u202f,  Prénom ,Société\n"
        f'0199000010,"\u00a0Camille\tAnne\u202f","{long_company}"\n'
        '0199000011,"Dom\x07inique\u202e",x\n'
    )
    result = parse_contacts_file(write(tmp_path, text))
    assert result.headers == ["Phone", "Prénom", "Société"]
    first = result.contacts[0].fields
    assert first["first_name"] == "Camille Anne"
    assert len(first["company"]) <= 200
    assert first["company"].startswith("Fictive Fictive")
    assert result.contacts[1].fields["first_name"] == "Dom inique"


def test_duplicates_merged_first_kept_and_filled(tmp_path: Path) -> None:
    text = (
        "Téléphone;Prénom;Nom;Société\n"
        "01 99 00 00 10;Camille;;\n"
        "+33 1 99 00 00 10;Autre;Exemple;\n"
        "0033199000010;;;Société Fictive\n"
        "02 61 91 00 11;Dominique;Modèle;\n"
    )
    result = parse_contacts_file(write(tmp_path, text))
    assert result.duplicates == 2
    assert result.rows_read == 4
    assert phones(result) == ["+33199000010", "+33261910011"]
    assert result.contacts[0].line == 2
    assert result.contacts[0].fields == {
        "first_name": "Camille",  # first occurrence wins
        "last_name": "Exemple",  # filled from a later duplicate
        "company": "Société Fictive",
    }


def test_rows_with_invalid_phones_rejected_with_reason(tmp_path: Path) -> None:
    text = (
        "Phone,Company\n"
        "01 99 ABC,A\n"
        ",B\n"
        '"0199000010&Local/x",C\n'
        '"0199000010\r\nAction: Originate",D\n'
        "3.3199E+10,E\n"
        '"01 99 00 00 10 / 02 61 91 00 11",F\n'
        "0690 00 12 34,G\n"
        "12345,H\n"
    )
    result = parse_contacts_file(write(tmp_path, text))
    assert phones(result) == ["+590690001234"]
    reasons = {r.row["Company"]: (r.line, r.reason) for r in result.rejects}
    assert reasons["A"] == (2, "phone: contains letters ('01 99 ABC')")
    assert reasons["B"] == (3, "phone: empty")
    assert reasons["C"][1].startswith("phone: unexpected character '&'")
    assert reasons["D"][0] == 5
    assert reasons["D"][1].startswith("phone: unexpected character '\\r'")
    assert reasons["E"] == (
        7,
        "phone: written in scientific notation by Excel, digits lost ('3.3199E+10')",
    )
    assert reasons["F"][1].startswith("phone: several numbers in one cell")
    assert reasons["H"] == (10, "phone: not a valid number for FR ('12345')")


def test_max_rows(tmp_path: Path) -> None:
    text = "Phone\n0199000010\n\n0199000011\n0199000012\n"
    path = write(tmp_path, text)
    assert parse_contacts_file(path, max_rows=3).rows_read == 3
    with pytest.raises(ImportFormatError, match="more than 2 data rows"):
        parse_contacts_file(path, max_rows=2)


def test_default_region(tmp_path: Path) -> None:
    path = write(tmp_path, "Phone\n(202) 555-0123\n202.555.0145\n")
    result = parse_contacts_file(path, default_region="US")
    assert phones(result) == ["+12025550123", "+12025550145"]
    with pytest.raises(ImportFormatError, match="unknown region"):
        parse_contacts_file(path, default_region="ZZ")


# --------------------------------------------------------------------------- header detection


@pytest.mark.parametrize(
    ("header", "phone", "fields"),
    [
        (
            ["Prénom", "Nom", "Société", "Téléphone", "Département"],
            "Téléphone",
            {"first_name": "Prénom", "last_name": "Nom", "company": "Société",
             "region": "Département"},
        ),
        (
            ["PRENOM", "NOM DE FAMILLE", "Raison sociale", "N° de téléphone"],
            "N° de téléphone",
            {"first_name": "PRENOM", "last_name": "NOM DE FAMILLE", "company": "Raison sociale"},
        ),
        (
            ["First Name", "Last Name", "Company", "Phone Number", "State"],
            "Phone Number",
            {"first_name": "First Name", "last_name": "Last Name", "company": "Company",
             "region": "State"},
        ),
        (  # Google Contacts
            ["Name", "Given Name", "Family Name", "Organization 1 - Name",
             "Organization 1 - Title", "Phone 1 - Type", "Phone 1 - Value",
             "Phone 2 - Type", "Phone 2 - Value", "Address 1 - Region"],
            "Phone 1 - Value",
            {"first_name": "Given Name", "last_name": "Family Name",
             "company": "Organization 1 - Name", "region": "Address 1 - Region"},
        ),
        (  # Outlook: first of the exact names in header order
            ["Title", "First Name", "Middle Name", "Last Name", "Company", "Department",
             "Business State", "Business Fax", "Business Phone", "Company Main Phone",
             "Mobile Phone", "E-mail Address"],
            "Business Phone",
            {"first_name": "First Name", "last_name": "Last Name", "company": "Company",
             "region": "Business State"},
        ),
        (  # CRM style: only a contains-match
            ["Contact", "Téléphone portable pro", "Fax"],
            "Téléphone portable pro",
            {},
        ),
        (  # exact names beat contains-matches, 'tel' prefixes and bare 'Numéro'
            ["Numéro", "Tél. perso 9", "Téléphones", "Portable"],
            "Portable",
            {},
        ),
        (  # a bare 'Number' is often a customer number: last resort
            ["No.", "Number", "Téléphones"],
            "Téléphones",
            {},
        ),
        (
            ["Client", "Numéro"],
            "Numéro",
            {"company": "Client"},
        ),
        (  # 'Mobile' inside 'Automobile' is not a phone column
            ["Marque automobile", "GSM"],
            "GSM",
            {},
        ),
    ],
)  # fmt: skip
def test_header_detection(
    tmp_path: Path, header: list[str], phone: str, fields: dict[str, str]
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    row = ["x"] * len(header)
    row[header.index(phone)] = "01 99 00 00 10"
    writer.writerow(row)
    result = parse_contacts_file(write(tmp_path, buf.getvalue()))
    assert result.phone_column == phone
    assert result.field_columns == fields
    assert phones(result) == ["+33199000010"]
    assert set(result.ignored_columns) == set(header) - {phone, *fields.values()}


def test_tel_prefix_last_resort_and_duplicate_headers(tmp_path: Path) -> None:
    text = "Télétravail;Tél. pro;Nom;Nom\noui;0199000010;Exemple;Autre\n"
    result = parse_contacts_file(write(tmp_path, text))
    assert result.phone_column == "Tél. pro"
    assert result.headers == ["Télétravail", "Tél. pro", "Nom", "Nom (2)"]
    assert result.field_columns == {"last_name": "Nom"}
    assert result.ignored_columns == ["Télétravail", "Nom (2)"]


def test_unbalanced_quote_reports_line(tmp_path: Path) -> None:
    text = 'Phone;Nom\n0199000010;Exemple\n0199000011;"Modèle\n' + "x;" * 70_000 + "\n"
    with pytest.raises(ImportFormatError, match=r"line 3: .*unbalanced quote"):
        parse_contacts_file(write(tmp_path, text))


def test_explicit_phone_column(tmp_path: Path) -> None:
    text = "Téléphone fixe;Téléphone Mobile;Nom\n01 99 00 00 10;02 61 91 00 11;Exemple\n"
    path = write(tmp_path, text)
    assert parse_contacts_file(path).phone_column == "Téléphone fixe"
    result = parse_contacts_file(path, phone_column="telephone  MOBILE")
    assert result.phone_column == "Téléphone Mobile"
    assert phones(result) == ["+33261910011"]
    assert result.ignored_columns == ["Téléphone fixe"]


def test_missing_phone_column_lists_headers(tmp_path: Path) -> None:
    path = write(tmp_path, "Prénom;Nom;Ville\nCamille;Exemple;Lyon\n")
    with pytest.raises(ImportFormatError) as info:
        parse_contacts_file(path)
    message = str(info.value)
    assert "no phone column" in message
    assert "'Prénom', 'Nom', 'Ville'" in message
    assert "--phone-column" in message
    with pytest.raises(ImportFormatError, match=r"'Portable' not found.*'Prénom', 'Nom'"):
        parse_contacts_file(path, phone_column="Portable")


def test_headerless_file_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "0199000010;Camille\n0199000011;Dominique\n")
    with pytest.raises(ImportFormatError, match="looks like data"):
        parse_contacts_file(path)


def test_field_map(tmp_path: Path) -> None:
    text = "Tel;Client;Secteur;Prénom\n0199000010;Société Fictive;Nord;Camille\n"
    path = write(tmp_path, text)
    result = parse_contacts_file(
        path, field_map={"company": "client", "region": "SECTEUR", "first_name": ""}
    )
    assert result.field_columns == {"company": "Client", "region": "Secteur"}
    assert result.contacts[0].fields == {"company": "Société Fictive", "region": "Nord"}
    assert result.ignored_columns == ["Prénom"]
    with pytest.raises(ImportFormatError, match=r"'Ville' .*not found.*'Tel', 'Client'"):
        parse_contacts_file(path, field_map={"region": "Ville"})
    with pytest.raises(ImportFormatError, match="unknown contact field 'email'"):
        parse_contacts_file(path, field_map={"email": "Client"})
    with pytest.raises(ImportFormatError, match="is the phone column"):
        parse_contacts_file(path, field_map={"company": "Tel"})


# --------------------------------------------------------------------------- xlsx


def make_xlsx(path: Path, rows: list[list[object]], title_rows: int = 0) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for _ in range(title_rows):
        sheet.append([])
    for row in rows:
        sheet.append(row)
    extra = workbook.create_sheet("Autre")
    extra.append(["Téléphone"])
    extra.append(["0261910099"])
    workbook.save(path)
    return path


def test_xlsx_numeric_cells(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["Téléphone", "Prénom", "Société", "Code"],
            [199000010, "Camille", "Société Fictive", 75],  # leading 0 lost
            [33199000011.0, "Dominique", None, 1.5],  # '+' lost, stored as float
            ["01 99 00 00 12", "Claude\nMarie", 42, None],
            [None, None, None, None],
            [3.3353010013e10, "Sci", None, None],  # shown 3.34E+10 by Excel, digits kept
            ["ABC", "Bad", None, None],
        ],
        title_rows=2,
    )
    result = parse_contacts_file(path)
    assert result.encoding == "xlsx"
    assert result.delimiter is None
    assert result.rows_read == 5
    assert [(c.phone_e164, c.line) for c in result.contacts] == [
        ("+33199000010", 4),
        ("+33199000011", 5),
        ("+33199000012", 6),
        ("+33353010013", 8),
    ]
    assert result.contacts[0].fields == {"first_name": "Camille", "company": "Société Fictive"}
    assert result.contacts[2].fields == {"first_name": "Claude Marie", "company": "42"}
    assert [(r.line, r.reason) for r in result.rejects] == [(9, "phone: contains letters ('ABC')")]
    assert result.ignored_columns == ["Code"]


def test_xlsx_detected_by_magic_and_broken_workbooks(tmp_path: Path) -> None:
    real = make_xlsx(tmp_path / "a.xlsx", [["Phone"], ["0199000010"]])
    renamed = tmp_path / "export.csv"
    renamed.write_bytes(real.read_bytes())
    assert phones(parse_contacts_file(renamed)) == ["+33199000010"]

    fake = write(tmp_path, "Phone\n0199000010\n", name="fake.xlsx")
    with pytest.raises(ImportFormatError, match=r"not a valid \.xlsx"):
        parse_contacts_file(fake)
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(real.read_bytes()[:300])
    with pytest.raises(ImportFormatError, match=r"not a readable \.xlsx"):
        parse_contacts_file(truncated)


# --------------------------------------------------------------------------- rejects file


def test_write_rejects_csv(tmp_path: Path) -> None:
    text = 'Téléphone;Nom;Note\n01 99 ABC;Exemple;"a;b"\n0199000010;Modèle;\n;Vide;x\n'
    result = parse_contacts_file(write(tmp_path, text))
    out = tmp_path / "rejects.csv"
    out.write_text("old content")
    write_rejects_csv(result, out)
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert rows == [
        ["line", "reason", "Téléphone", "Nom", "Note"],
        ["2", "phone: contains letters ('01 99 ABC')", "01 99 ABC", "Exemple", "a;b"],
        ["4", "phone: empty", "", "Vide", "x"],
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_write_rejects_csv_xlsx_uses_comma(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "c.xlsx", [["Phone", "Company"], ["bad", "A, B"]])
    result = parse_contacts_file(path)
    out = tmp_path / "rejects.csv"
    write_rejects_csv(result, out)
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"), newline="")))
    assert rows[1] == ["2", "phone: contains letters ('bad')", "bad", "A, B"]


def test_write_rejects_csv_failure_leaves_no_file(tmp_path: Path) -> None:
    result = parse_contacts_file(write(tmp_path, "Phone\nbad\n"))
    from voicecast.errors import VoicecastError

    with pytest.raises(VoicecastError, match="cannot write the rejects file"):
        write_rejects_csv(result, tmp_path / "missing-dir" / "rejects.csv")


# --------------------------------------------------------------------------- compliance fields


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Code postal", "postal_code"),
        ("CP", "postal_code"),
        ("Zip Code", "postal_code"),
        ("Postal code", "postal_code"),
        ("Type de client", "professional"),
        ("B2B", "professional"),
        ("Professionnel", "professional"),
        ("Professional", "professional"),
    ],
)
def test_postal_code_and_professional_columns_are_kept(
    tmp_path: Path, header: str, field: str
) -> None:
    text = (
        f"Téléphone;Prénom;{header};Email;Commentaire\n"
        "01 99 00 00 10;Camille;57000;c@example.invalid;vip\n"
    )
    result = parse_contacts_file(write(tmp_path, text))
    assert result.field_columns == {"first_name": "Prénom", field: header}
    assert result.contacts[0].fields == {"first_name": "Camille", field: "57000"}
    assert result.ignored_columns == ["Email", "Commentaire"]


def test_department_postal_code_and_b2b_columns_together(tmp_path: Path) -> None:
    text = (
        "Téléphone;Nom;Société;Région;Code postal;Type de client;Date de naissance;Notes\n"
        "01 99 00 00 10;Exemple;Société Fictive;Moselle;57000;Professionnel;01/01/1980;x\n"
        "02 61 91 00 11;Modèle;;Grand Est;67000;Particulier;02/02/1990;y\n"
    )
    result = parse_contacts_file(write(tmp_path, text))
    assert result.field_columns == {
        "last_name": "Nom",
        "company": "Société",
        "region": "Région",
        "postal_code": "Code postal",
        "professional": "Type de client",
    }
    assert result.ignored_columns == ["Date de naissance", "Notes"]
    assert result.contacts[0].fields == {
        "last_name": "Exemple",
        "company": "Société Fictive",
        "region": "Moselle",
        "postal_code": "57000",
        "professional": "Professionnel",
    }
    assert result.contacts[1].fields["professional"] == "Particulier"


def test_postal_code_from_a_numeric_xlsx_cell(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "c.xlsx", [["Téléphone", "Code postal", "B2B"], ["0199000010", 57000, "oui"]]
    )
    result = parse_contacts_file(path)
    assert result.contacts[0].fields == {"postal_code": "57000", "professional": "oui"}


def test_field_map_accepts_the_new_fields(tmp_path: Path) -> None:
    text = "Tel;Secteur postal;Segment\n0199000010;57000;PRO\n"
    result = parse_contacts_file(
        write(tmp_path, text),
        field_map={"postal_code": "Secteur postal", "professional": "Segment"},
    )
    assert result.contacts[0].fields == {"postal_code": "57000", "professional": "PRO"}
