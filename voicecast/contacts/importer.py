"""Parse contact files (CSV and Excel ``.xlsx``) into E.164 numbers and a few mapped fields.

Pure parsing: no database. The input is whatever Excel, LibreOffice or a CRM exported:

* CSV in UTF-8 (with or without BOM), Windows-1252 (Excel "CSV (séparateur: point-virgule)"
  on French Windows) or UTF-16/UTF-32 with BOM (Excel "Unicode text", tab separated);
  ``,``, ``;`` or tab delimiters detected from the header line (an Excel ``sep=;`` first
  line is honoured); quoted cells with embedded delimiters, quotes and newlines.
* ``.xlsx`` workbooks: the first worksheet, header = first non-empty row.

Data minimisation: only the phone number and :data:`CANONICAL_FIELDS` are kept; every other
column is dropped (listed in :attr:`ParseResult.ignored_columns`).

Choices worth knowing:

* A leading ``tel:`` (RFC 3966 URI, as some CRMs and vCard converters export) is accepted and
  removed; any other letter in a phone cell rejects the row (``phonenumbers`` would otherwise
  read vanity letters such as ``0800 FLOWERS`` as digits).
* ``+`` may only open the number (optionally after ``(``), as in ``(+33) 1 99 00 00 10``.
* When ``default_region`` is ``FR``, a national number that is not valid in metropolitan
  France is retried as a French overseas number (GP, MQ, GF, RE, YT, PM, BL, MF).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import os
import re
import tempfile
import unicodedata
import warnings
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from voicecast.csvsafe import neutralise_row
from voicecast.digests import file_sha256
from voicecast.errors import VoicecastError
from voicecast.pbx.validation import E164_RE

CANONICAL_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "company",
    "region",
    "postal_code",
    "professional",
)
"""The only contact fields kept besides the phone number (data minimisation).

``region``/``postal_code`` give the callee's department (regional public holidays, Code du
travail L3134-13, L3422-2); ``professional`` marks a B2B contact (CPCE L34-5).
"""

MAX_FIELD_LENGTH = 200
"""Field values are truncated to this many characters."""

DEFAULT_MAX_ROWS = 1_000_000
"""Data rows one contact file may hold unless the caller sets another ``max_rows``: a bigger
file is refused (naming the line where the limit was reached) rather than held in memory;
split it. ``bench/import_huge.py`` measures a file of this size."""

FR_OVERSEAS_REGIONS: tuple[str, ...] = ("GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF")
"""Regions retried, in this order, for a national number that is not valid in region FR."""

_CHUNK = 1 << 20
_SAMPLE_CHARS = 1 << 16
_ZIP_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
_DELIMITERS = (",", ";", "\t")

# Everything str.isspace() calls whitespace (incl. U+00A0, U+202F) plus invisible format
# characters that Excel/CRMs leave around cells (zero-width spaces, BOM, word joiner).
_WS = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + "\u200b\u200c\u200d\u2060\ufeff"
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+")
_SCIENTIFIC_RE = re.compile(r"[+-]?\d+(?:[.,]\d*)?[eE][+-]?\d+")
_SIMPLE_PHONE_RE = re.compile(r"[0-9 .\-/()+]+")
_SEVERAL_SPLIT_RE = re.compile(r"[/,;|&\n\r]")
_NON_DIGIT_RE = re.compile(r"[^0-9]+")
_ALLOWED_PHONE_CHARS = frozenset("0123456789 +.-/()")
_SEP_LINE_RE = re.compile(r"sep=([,;\t|])", re.IGNORECASE)
_FLOAT_EXPORT_RE = re.compile(r"\+?[0-9]+\.0+")

_Records = Generator[tuple[int, list[str]], None, None]
"""(line where the record starts, cells) for every record of a file, blank ones included."""


class ImportFormatError(VoicecastError):
    """The file as a whole cannot be imported (unreadable, not a table, no phone column...).

    The message names the file and, where it applies, the header or line at fault.
    """


class InvalidPhoneError(ValueError):
    """A phone cell is not one valid number; ``str(exc)`` is the human reason.

    Reasons start with ``"phone: "``, e.g. ``"phone: contains letters ('01 99 ABC')"``.
    """


@dataclass(frozen=True, slots=True)
class ParsedContact:
    """One accepted contact.

    Attributes:
        phone_e164: the number in E.164 (``+33199000010``).
        fields: canonical field name -> cleaned value; only mapped, non-empty fields.
        line: 1-based physical line (CSV) or row number (xlsx) where the record starts.
    """

    phone_e164: str
    fields: dict[str, str]
    line: int


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A data row that was not imported.

    Attributes:
        line: 1-based physical line (CSV) or row number (xlsx) where the record starts.
        reason: human reason, e.g. ``"phone: empty"``.
        row: the row's original cells by header name.
    """

    line: int
    reason: str
    row: dict[str, str]


@dataclass
class ParseResult:
    """Outcome of :func:`parse_contacts_file`.

    Attributes:
        contacts: unique by ``phone_e164``, in file order; a later duplicate only fills the
            first occurrence's empty fields.
        duplicates: rows merged into an earlier row with the same number.
        rejects: rows not imported, with their reason.
        headers: the header row's column names (stripped; blank ones named ``column N``).
        phone_column: header of the phone column.
        field_columns: canonical field -> header it was read from.
        ignored_columns: headers neither phone nor mapped (their data is dropped).
        encoding: ``utf-8``, ``utf-8-sig``, ``cp1252``, ``utf-16``, ``utf-32`` or ``xlsx``.
        delimiter: ``,``, ``;``, tab (or ``|`` from an Excel ``sep=`` line); None for xlsx.
        rows_read: data rows, excluding the header and fully blank rows.
        file_sha256: SHA-256 hex of the file's bytes (None when built by hand); the
            proof journal's ``contacts.imported`` entry cites it.
        erased: set by :func:`voicecast.contacts.service.import_contacts`: contacts not
            stored because their number was erased at the person's request (GDPR art. 17).
    """

    contacts: list[ParsedContact]
    duplicates: int
    rejects: list[RejectedRow]
    headers: list[str]
    phone_column: str
    field_columns: dict[str, str]
    ignored_columns: list[str]
    encoding: str
    delimiter: str | None
    rows_read: int
    file_sha256: str | None = None
    erased: int = 0


# --------------------------------------------------------------------------- phone numbers


def _show(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, control characters escaped, long values shortened."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _check_phone_characters(text: str) -> str:
    """``text`` with every space character made a plain space.

    Raises:
        InvalidPhoneError: a character other than digits and phone punctuation.
    """
    if _SIMPLE_PHONE_RE.fullmatch(text) is None:
        letters = False
        for ch in text:
            if ch in _ALLOWED_PHONE_CHARS or unicodedata.category(ch) == "Zs":
                continue
            if ch.isalpha():
                letters = True
                continue
            raise InvalidPhoneError(f"phone: unexpected character {ch!r} ({_show(text)})")
        if letters:
            raise InvalidPhoneError(f"phone: contains letters ({_show(text)})")
        text = "".join(" " if unicodedata.category(ch) == "Zs" else ch for ch in text)
    plus = text.find("+")
    if plus >= 0 and (text.count("+") > 1 or text[:plus].strip(" (")):
        raise InvalidPhoneError(f"phone: '+' must start the number ({_show(text)})")
    return text


def _several_numbers(text: str) -> bool:
    """Two numbers in one cell: two parts of 6+ digits split by ``/ , ; | &`` or a line
    break, or two runs of 8+ digits split by spaces."""
    if _SEVERAL_SPLIT_RE.search(text):
        parts = _SEVERAL_SPLIT_RE.split(text)
        if sum(1 for part in parts if len(_NON_DIGIT_RE.sub("", part)) >= 6) >= 2:
            return True
    if len(_NON_DIGIT_RE.sub("", text)) < 16:  # fast path: no room for two 8-digit runs
        return False
    return sum(1 for part in text.split() if len(_NON_DIGIT_RE.sub("", part)) >= 8) >= 2


def _parse_error_reason(exc: phonenumbers.NumberParseException, text: str) -> str:
    kind = exc.error_type
    if kind == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
        return f"phone: unknown country code ({_show(text)})"
    if kind == phonenumbers.NumberParseException.TOO_LONG:
        return f"phone: too many digits ({_show(text)})"
    if kind in (
        phonenumbers.NumberParseException.TOO_SHORT_NSN,
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD,
    ):
        return f"phone: too few digits ({_show(text)})"
    return f"phone: not a phone number ({_show(text)})"


def _try_parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def normalize_phone(raw: str, default_region: str = "FR") -> str:
    """Return ``raw`` as an E.164 number (``+33199000010``): only ``+`` and digits.

    Accepted: digits with spaces (incl. non-breaking), ``.``, ``-``, ``/``, ``(``, ``)``; an
    international ``+`` or ``00`` prefix; a leading ``tel:``; a national number that lost its
    leading 0 (Excel numeric cell); for FR, overseas numbers written nationally. The number
    must pass ``phonenumbers.is_valid_number``.

    Raises:
        InvalidPhoneError: empty; letters; any other character (``*``, ``#``, ``&``, ``;``,
            CR/LF...); two numbers in one cell; Excel scientific notation; not a valid number.
        ValueError: ``default_region`` is not a region known to ``phonenumbers``.
    """
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {default_region!r}: expected a code such as 'FR'")
    text = raw.strip(_WS)
    if not text:
        raise InvalidPhoneError("phone: empty")
    if _SCIENTIFIC_RE.fullmatch(text):
        raise InvalidPhoneError(
            f"phone: written in scientific notation by Excel, digits lost ({_show(text)})"
        )
    if _FLOAT_EXPORT_RE.fullmatch(text):  # '199000010.0' from a float column (pandas...)
        text = text[: text.index(".")]
    if text[:4].casefold() == "tel:":
        text = text[4:].strip(_WS)
        if not text:
            raise InvalidPhoneError("phone: empty")
    if _several_numbers(text):
        raise InvalidPhoneError(f"phone: several numbers in one cell ({_show(text)})")
    text = _check_phone_characters(text)

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneError(_parse_error_reason(exc, text)) from None
    if not phonenumbers.is_valid_number(number):
        found: phonenumbers.PhoneNumber | None = None
        digits = "".join(ch for ch in text if ch.isdigit())
        national = "+" not in text and not digits.startswith("00")
        if region == "FR" and national:
            for overseas in FR_OVERSEAS_REGIONS:
                found = _try_parse(text, overseas)
                if found is not None:
                    break
        if found is None:
            if number.country_code == phonenumbers.country_code_for_region(region):
                raise InvalidPhoneError(f"phone: not a valid number for {region} ({_show(text)})")
            raise InvalidPhoneError(
                f"phone: not a valid number for +{number.country_code} ({_show(text)})"
            )
        number = found
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if E164_RE.match(e164) is None:  # never expected: the dialler relies on it
        raise InvalidPhoneError(f"phone: cannot be written in E.164 ({_show(text)})")
    return e164


# --------------------------------------------------------------------------- column names


def _key(name: str) -> str:
    """Header comparison key: accents stripped, casefolded, only letters and digits."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed.casefold() if ch.isalnum())


_PHONE_EXACT = frozenset(
    {
        "telephone", "tel", "tele", "phone", "phonenumber", "telephonenumber", "mobile",
        "mobilephone", "mobilenumber", "portable", "telportable", "telephoneportable", "gsm",
        "cell", "cellphone", "cellular", "cellulaire", "numerodetelephone",
        "numerotelephone", "numerodetel", "numtel", "numtelephone", "notel", "notelephone",
        "businessphone", "homephone", "primaryphone", "workphone", "otherphone",
        "phone1value", "phone1", "tel1", "telephone1", "telephonemobile", "telmobile",
        "telephonefixe", "telfixe", "fixe", "telephoneprincipal", "telephonebureau",
        "telbureau", "telephonedomicile", "teldomicile", "telephoneprofessionnel", "telpro",
        "telperso", "msisdn", "contactphone", "phonemobile", "phone2", "tel2", "telephone2",
    }
)  # fmt: skip
_PHONE_GENERIC = frozenset({"numero", "number", "numeros", "numbers"})  # ambiguous: last
_PHONE_CONTAINS = ("phone", "telephone", "mobile", "portable", "gsm", "cellulaire", "msisdn")
_PHONE_EXCLUDE = (
    "fax", "telecopie", "telex", "pager", "automobile", "type", "label", "extension",
    "countrycode", "indicatif", "consent", "optin", "optout", "verified", "valid", "status",
    "statut", "date", "hotel",
)  # fmt: skip


def _phone_rank(key: str) -> int | None:
    """Lower is better; None: not a phone header.

    0: a known phone header; 1: contains a phone word; 2: starts with 'tel'; 3: a bare
    'Numéro'/'Number' (often a customer number, so only when nothing else matches).
    """
    if key in _PHONE_EXACT:
        return 0
    if key in _PHONE_GENERIC:
        return 3
    if any(bad in key for bad in _PHONE_EXCLUDE):
        return None
    if any(word in key for word in _PHONE_CONTAINS):
        return 1
    if key.startswith("tel") and (not key.startswith("tele") or key.startswith("telephon")):
        return 2  # 'Tel pro', 'Tel_2'; not 'Télétravail', 'Télévente'
    return None


_FIELD_EXACT: dict[str, frozenset[str]] = {
    "first_name": frozenset(
        {"prenom", "prenoms", "firstname", "first", "givenname", "given", "forename",
         "prenomcontact", "contactfirstname", "firstnames"}
    ),
    "last_name": frozenset(
        {"nom", "lastname", "last", "surname", "familyname", "nomdefamille", "nomfamille",
         "nomcontact", "contactlastname", "nomdusage", "nomusage"}
    ),
    "company": frozenset(
        {"societe", "entreprise", "company", "companyname", "organisation", "organization",
         "organization1name", "raisonsociale", "accountname", "account", "employer",
         "etablissement", "nomsociete", "nomdelasociete", "nomentreprise",
         "nomdelentreprise", "client"}
    ),
    "region": frozenset(
        {"region", "departement", "dept", "state", "province", "county", "address1region",
         "businessstate", "homestate", "codedepartement", "numerodepartement",
         "stateprovince", "regionstate", "stateregion"}
    ),
    "postal_code": frozenset(
        {"codepostal", "cp", "postalcode", "postcode", "zip", "zipcode", "address1postalcode",
         "businesspostalcode", "homepostalcode", "mailingzippostalcode", "billingpostalcode",
         "mailingpostalcode", "zippostalcode"}
    ),
    "professional": frozenset(
        {"professional", "professionnel", "pro", "b2b", "isprofessional", "typedeclient",
         "typeclient", "customertype", "clienttype", "professionalcontact", "particulierpro",
         "b2bb2c", "b2cb2b"}
    ),
}  # fmt: skip
_FIELD_CONTAINS: dict[str, tuple[str, ...]] = {
    "first_name": ("prenom", "firstname", "givenname", "forename"),
    "last_name": ("lastname", "surname", "familyname", "nomdefamille"),
    "company": ("societe", "entreprise", "company", "organisation", "organization",
                "raisonsociale", "accountname"),
    "region": ("region", "departement", "province"),
    "postal_code": ("codepostal", "postalcode", "zippostal", "postcode"),
    "professional": ("professionnel", "professional"),
}  # fmt: skip
_FIELD_EXCLUDE = (
    "type", "label", "yomi", "phonetic", "title", "titre", "code", "siret", "siren", "url",
    "website", "site", "mail", "size", "taille", "department", "number", "numero",
)  # fmt: skip


def _field_rank(field: str, key: str) -> int | None:
    if key in _FIELD_EXACT[field]:
        return 0
    if any(bad in key for bad in _FIELD_EXCLUDE) or key.endswith("id"):
        return None
    if any(word in key for word in _FIELD_CONTAINS[field]):
        return 1
    return None


def _best(rank: dict[int, int]) -> int | None:
    """Index of the best-ranked header (ties: first in header order)."""
    if not rank:
        return None
    return min(rank, key=lambda idx: (rank[idx], idx))


def _find_header(headers: list[str], wanted: str) -> int | None:
    """Index of the header named ``wanted`` (exact, else case/accent/space-insensitive)."""
    if wanted in headers:
        return headers.index(wanted)
    key = _key(wanted)
    for idx, header in enumerate(headers):
        if key and _key(header) == key:
            return idx
    return None


def _listing(headers: list[str]) -> str:
    return ", ".join(repr(h) for h in headers) if headers else "(none)"


def _clean_headers(cells: list[str]) -> list[str]:
    """Stripped header names; trailing blank ones dropped, other blank ones named, unique."""
    names = [cell.strip(_WS) for cell in cells]
    while names and not names[-1]:
        names.pop()
    result: list[str] = []
    seen: set[str] = set()
    for idx, name in enumerate(names):
        base = name or f"column {idx + 1}"
        unique, n = base, 2
        while unique in seen:
            unique, n = f"{base} ({n})", n + 1
        seen.add(unique)
        result.append(unique)
    return result


def _looks_like_data(headers: list[str], region: str) -> bool:
    for header in headers:
        with contextlib.suppress(InvalidPhoneError):
            normalize_phone(header, region)
            return True
    return False


def _map_columns(
    where: str,
    headers: list[str],
    region: str,
    phone_column: str | None,
    field_map: dict[str, str] | None,
) -> tuple[int, dict[str, int]]:
    """Choose the phone column and field columns: (phone index, field -> index)."""
    if phone_column is not None:
        phone_idx = _find_header(headers, phone_column)
        if phone_idx is None:
            raise ImportFormatError(
                f"{where}: phone column {phone_column!r} not found in the header; "
                f"available columns: {_listing(headers)}"
            )
    else:
        ranks = {i: r for i, h in enumerate(headers) if (r := _phone_rank(_key(h))) is not None}
        found = _best(ranks)
        if found is None:
            hint = (
                " (the first row looks like data: the file needs a header row)"
                if _looks_like_data(headers, region)
                else ""
            )
            raise ImportFormatError(
                f"{where}: no phone column recognised in the header{hint}; "
                f"columns: {_listing(headers)}; name it with --phone-column"
            )
        phone_idx = found

    fields: dict[str, int] = {}
    used = {phone_idx}
    for field, header in (field_map or {}).items():
        if not header:  # explicitly disabled
            fields[field] = -1
            continue
        idx = _find_header(headers, header)
        if idx is None:
            raise ImportFormatError(
                f"{where}: column {header!r} (for {field}) not found in the header; "
                f"available columns: {_listing(headers)}"
            )
        if idx == phone_idx:
            raise ImportFormatError(
                f"{where}: column {headers[idx]!r} is the phone column, it cannot be {field}"
            )
        if idx in used:
            raise ImportFormatError(f"{where}: column {headers[idx]!r} is mapped twice")
        used.add(idx)
        fields[field] = idx
    keys = [_key(h) for h in headers]
    for field in CANONICAL_FIELDS:
        if field in fields:
            continue
        ranks = {
            i: r
            for i, k in enumerate(keys)
            if i not in used and _phone_rank(k) is None and (r := _field_rank(field, k)) is not None
        }
        found = _best(ranks)
        if found is not None:
            fields[field] = found
            used.add(found)
    return phone_idx, {f: i for f, i in fields.items() if i >= 0}


# --------------------------------------------------------------------------- file reading


def _not_text(path: Path, detail: str) -> ImportFormatError:
    return ImportFormatError(
        f"{path}: not a text CSV file ({detail}); export it as CSV or .xlsx from your spreadsheet"
    )


def _detect_encoding(path: Path) -> str:
    """Scan the whole file once (streaming) and return the codec to read it with."""
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            candidates = ["utf-32"]
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            candidates = ["utf-16"]
        elif head.startswith(codecs.BOM_UTF8):
            candidates = ["utf-8-sig"]
        else:
            candidates = ["utf-8", "cp1252"]
        for encoding in candidates:
            fh.seek(0)
            decoder = codecs.getincrementaldecoder(encoding)()
            try:
                while chunk := fh.read(_CHUNK):
                    if encoding in ("utf-8", "cp1252", "utf-8-sig") and b"\x00" in chunk:
                        raise _not_text(path, "NUL bytes; UTF-16 without BOM or binary data")
                    if "\x00" in decoder.decode(chunk):
                        raise _not_text(path, "NUL characters")
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                if encoding == "utf-8":
                    _refuse_mixed_utf8(path)
                continue
            return encoding
    raise _not_text(path, f"undecodable as {' or '.join(candidates)}")


def _refuse_mixed_utf8(path: Path) -> None:
    """Refuse a file that is UTF-8 except for a few bytes (Windows-1252 text pasted into a
    UTF-8 export, two exports concatenated): read as Windows-1252 it would garble every
    accented name (``Prénom`` -> ``PrÃ©nom``), read as UTF-8 it would lose those bytes.

    Mixed means: invalid bytes, and either more valid non-ASCII UTF-8 characters than
    invalid bytes or a line whose non-ASCII text is all valid UTF-8 (one UTF-8 ``Zoé`` line
    before two Windows-1252 names would otherwise be read ``ZoÃ©``). A Windows-1252 file
    (whose accented letters are all invalid UTF-8) passes, even when a line happens to hold
    a valid UTF-8 pair (``Ã©``) beside its accented letters.

    Raises:
        ImportFormatError: naming the first line that is not UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    valid = invalid = utf8_lines = 0
    line = 1
    line_valid = line_invalid = False
    first: tuple[int, int] | None = None
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            text = decoder.decode(chunk)
            for char in text:
                code = ord(char)
                if 0xDC80 <= code <= 0xDCFF:
                    invalid += 1
                    line_invalid = True
                    if first is None:
                        first = (line, code - 0xDC00)
                elif code > 0x7F:
                    valid += 1
                    line_valid = True
                elif char == "\n":
                    utf8_lines += line_valid and not line_invalid
                    line_valid = line_invalid = False
                    line += 1
    utf8_lines += line_valid and not line_invalid
    if first is not None and (valid > invalid or utf8_lines):
        raise ImportFormatError(
            f"{path}: line {first[0]} is not UTF-8 while the rest of the file is (byte "
            f"0x{first[1]:02X}: Windows-1252 text pasted in?); {invalid} such byte(s) in all: "
            "re-save the file as UTF-8"
        )


def _looks_binary(sample: str) -> bool:
    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\n\r\x0b\x0c\x1a")
    return controls > 8 and controls * 100 > len(sample)


def _count_outside_quotes(line: str, delimiter: str) -> int:
    count, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == delimiter and not quoted:
            count += 1
    return count


def _detect_delimiter(sample: str) -> tuple[str | None, bool]:
    """(delimiter, whether the first line is an Excel ``sep=`` line to skip).

    The delimiter is None when the sample holds no header line (only blank lines).
    """
    lines = sample.splitlines()
    if lines and (sep := _SEP_LINE_RE.fullmatch(lines[0].strip(" "))):
        return sep.group(1), True
    header = next((ln for ln in lines if ln.strip(_WS + ",;")), None)
    if header is None:
        return None, False
    counts = {d: _count_outside_quotes(header, d) for d in _DELIMITERS}
    best = max(counts.values())
    if best == 0:
        return ",", False
    # Ties (rare): tab, then ';', then ',' - the rarer the character, the likelier a separator.
    for delimiter in ("\t", ";", ","):
        if counts[delimiter] == best:
            return delimiter, False
    raise AssertionError("unreachable")


def _iter_csv(path: Path, encoding: str, delimiter: str, skip_first_line: bool) -> _Records:
    """(physical line where the record starts, cells) for every record, blank ones too."""
    with path.open(encoding=encoding, newline="") as fh:
        offset = 0
        if skip_first_line:
            fh.readline()
            offset = 1
        reader = csv.reader(fh, delimiter=delimiter)
        previous = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ImportFormatError(
                    f"{path}: line {offset + previous + 1}: {exc} (unbalanced quote?)"
                ) from None
            yield offset + previous + 1, cells
            previous = reader.line_num


def _xlsx_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e17:
            return str(int(value))  # 33199000010.0 -> '33199000010'
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _iter_xlsx(path: Path) -> _Records:
    """(Excel row number, cells as text) for every row of the first worksheet."""
    import openpyxl  # imported lazily: CSV imports never pay for it

    with path.open("rb") as fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                workbook = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except Exception as exc:  # zipfile, XML, KeyError...: whatever a broken file raises
            raise ImportFormatError(
                f"{path}: not a readable .xlsx workbook ({exc or type(exc).__name__}); "
                "save it as .xlsx or CSV"
            ) from None
        try:
            if not workbook.worksheets:
                raise ImportFormatError(f"{path}: the workbook has no worksheet")
            sheet = workbook.worksheets[0]
            sheet.reset_dimensions()  # never trust a <dimension> written by another tool
            rows = sheet.iter_rows(min_row=1, values_only=True)
            line = 0
            while True:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        values = next(rows, None)
                except Exception as exc:
                    raise ImportFormatError(
                        f"{path}: cannot read the worksheet after row {line} ({exc})"
                    ) from None
                if values is None:
                    return
                line += 1
                yield line, [_xlsx_text(v) for v in values]
        finally:
            workbook.close()


# --------------------------------------------------------------------------- parsing


def _clean_value(value: str) -> str:
    """Field value: control characters -> space, stripped, at most MAX_FIELD_LENGTH chars."""
    value = value.strip(_WS)
    if not value:
        return ""
    value = _CONTROL_RE.sub(" ", value).strip(_WS)
    return value[:MAX_FIELD_LENGTH].rstrip(_WS)


def _is_blank(cells: list[str]) -> bool:
    return not any(cell.strip(_WS) for cell in cells)


def _parse_records(
    path: Path,
    records: _Records,
    *,
    encoding: str,
    delimiter: str | None,
    region: str,
    phone_column: str | None,
    field_map: dict[str, str] | None,
    max_rows: int | None,
) -> ParseResult:
    header = next(((n, c) for n, c in records if not _is_blank(c)), None)
    if header is None:
        raise ImportFormatError(f"{path}: no header row (the file is empty)")
    header_line, cells = header
    headers = _clean_headers(cells)
    width = len(cells)  # physical width, incl. trailing unnamed columns (ignored)
    named = len(headers)
    phone_idx, field_idx = _map_columns(
        f"{path}: header (line {header_line})", headers, region, phone_column, field_map
    )
    field_items = list(field_idx.items())

    contacts: list[ParsedContact] = []
    index: dict[str, int] = {}
    rejects: list[RejectedRow] = []
    duplicates = rows_read = 0
    for line, cells in records:
        if _is_blank(cells):
            continue
        rows_read += 1
        if max_rows is not None and rows_read > max_rows:
            raise ImportFormatError(
                f"{path}: more than {max_rows} data rows (limit reached at line {line}); "
                "split the file"
            )
        count = len(cells)
        if count < width:
            cells = cells + [""] * (width - count)
        elif count > width:
            extra = [c for c in cells[width:] if c.strip(_WS)]
            if extra:
                shown = ", ".join(_show(c) for c in extra[:3])
                rejects.append(
                    RejectedRow(
                        line,
                        f"row has {count} cells but the header has {width}: extra cells {shown}",
                        dict(zip(headers, cells[:named], strict=True)),
                    )
                )
                continue
        try:
            phone = normalize_phone(cells[phone_idx], region)
        except InvalidPhoneError as exc:
            row = dict(zip(headers, cells[:named], strict=True))
            rejects.append(RejectedRow(line, str(exc), row))
            continue
        fields: dict[str, str] = {}
        for field, idx in field_items:
            value = _clean_value(cells[idx])
            if value:
                fields[field] = value
        seen = index.get(phone)
        if seen is None:
            index[phone] = len(contacts)
            contacts.append(ParsedContact(phone, fields, line))
        else:
            duplicates += 1
            first = contacts[seen].fields
            for field, value in fields.items():
                first.setdefault(field, value)

    used = {phone_idx, *field_idx.values()}
    return ParseResult(
        contacts=contacts,
        duplicates=duplicates,
        rejects=rejects,
        headers=headers,
        phone_column=headers[phone_idx],
        field_columns={f: headers[i] for f, i in field_idx.items()},
        ignored_columns=[h for i, h in enumerate(headers) if i not in used],
        encoding=encoding,
        delimiter=delimiter,
        rows_read=rows_read,
    )


def open_records(
    path: Path, *, require_delimiter: bool = False
) -> tuple[_Records, str, str | None]:
    """Open a CSV/TSV/text file or ``.xlsx`` workbook as a stream of records.

    Returns ``(records, encoding, delimiter)``: records as (line, cells), blank ones
    included; ``encoding`` is ``xlsx`` for workbooks (``delimiter`` None). Close ``records``
    (``contextlib.closing``) when not read to the end. Used by the contact importer and by
    the compliance imports (consent ledger, number lists).

    Args:
        require_delimiter: a short text file without any ``,`` ``;`` or tab is refused as
            having no header row (contact files need one; one-column number lists do not).

    Raises:
        ImportFormatError: unreadable, empty, legacy ``.xls``, binary, or malformed file.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            magic = fh.read(8)
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if not magic:
        raise ImportFormatError(f"{path}: the file is empty")
    if magic.startswith(_OLE2_MAGIC):
        raise ImportFormatError(
            f"{path}: legacy Excel .xls (or password-protected) workbook; save it as .xlsx or CSV"
        )
    if magic.startswith(_ZIP_MAGIC):
        return _iter_xlsx(path), "xlsx", None
    if path.suffix.casefold() in _XLSX_SUFFIXES:
        raise ImportFormatError(f"{path}: not a valid .xlsx workbook (no zip signature)")
    try:
        encoding = _detect_encoding(path)
        with path.open(encoding=encoding, newline="") as fh:
            sample = fh.read(_SAMPLE_CHARS)
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read the file ({exc})") from None
    if _looks_binary(sample):
        raise _not_text(path, "control characters")
    found, skip_sep = _detect_delimiter(sample)
    if require_delimiter and found is None and len(sample) < _SAMPLE_CHARS:
        raise ImportFormatError(f"{path}: no header row (the file is empty)")
    delimiter = found or ","
    return _iter_csv(path, encoding, delimiter, skip_sep), encoding, delimiter


def parse_contacts_file(
    path: Path,
    *,
    default_region: str = "FR",
    phone_column: str | None = None,
    field_map: dict[str, str] | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
) -> ParseResult:
    """Read a CSV or ``.xlsx`` contact file; stream its rows into a :class:`ParseResult`.

    Args:
        path: the file. ``.xlsx``/``.xlsm`` (or any file starting with the zip signature) is
            read as a workbook, anything else as delimited text.
        default_region: ISO 3166 region for numbers written without a country code.
        phone_column: header of the phone column (case/accent/space-insensitive); None to
            detect it from common French and English names.
        field_map: canonical field (:data:`CANONICAL_FIELDS`) -> header, overriding
            detection; an empty header disables that field.
        max_rows: refuse files with more data rows than this (default
            :data:`DEFAULT_MAX_ROWS`; None: no limit).

    Raises:
        ImportFormatError: unreadable file, not text/xlsx, no header, phone or mapped column
            missing, unknown canonical field or region, too many rows, malformed CSV.
    """
    path = Path(path)
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ImportFormatError(f"unknown region {default_region!r}: expected a code such as FR")
    for field in field_map or {}:
        if field not in CANONICAL_FIELDS:
            raise ImportFormatError(
                f"unknown contact field {field!r}: fields are {', '.join(CANONICAL_FIELDS)}"
            )
    if max_rows is not None and max_rows < 0:
        raise ImportFormatError(f"max_rows must be >= 0, not {max_rows}")
    records, encoding, delimiter = open_records(path, require_delimiter=True)
    with contextlib.closing(records):
        try:
            result = _parse_records(
                path,
                records,
                encoding=encoding,
                delimiter=delimiter,
                region=region,
                phone_column=phone_column,
                field_map=field_map,
                max_rows=max_rows,
            )
            result.file_sha256 = file_sha256(path)
        except OSError as exc:
            raise ImportFormatError(f"{path}: cannot read the file ({exc})") from None
    return result


def read_headers(path: Path) -> list[str]:
    """The header row of a contact file as :func:`parse_contacts_file` names its columns
    (stripped; blank ones named ``column N``; repeated ones numbered), without reading the
    data rows. For a column-mapping form when the phone column is not recognised.

    Raises:
        ImportFormatError: unreadable, empty or malformed file (as
            :func:`parse_contacts_file`).
    """
    path = Path(path)
    records, _, _ = open_records(path, require_delimiter=True)
    with contextlib.closing(records):
        try:
            header = next((cells for _, cells in records if not _is_blank(cells)), None)
        except OSError as exc:
            raise ImportFormatError(f"{path}: cannot read the file ({exc})") from None
    if header is None:
        raise ImportFormatError(f"{path}: no header row (the file is empty)")
    return _clean_headers(header)


# --------------------------------------------------------------------------- rejects


def write_rejects_csv(result: ParseResult, path: Path) -> None:
    """Write ``result.rejects`` to ``path``: ``line``, ``reason``, then the original headers.

    UTF-8 with BOM and CRLF so Excel opens it; the delimiter is the input's (``,`` or
    ``;``, so it opens in the same Excel locale), ``,`` for tab-separated and xlsx input.
    Atomic: written to a temporary file (mode 0600: it holds personal data) in the same
    folder, then renamed over ``path``. Every cell, headers included, goes through
    :func:`voicecast.csvsafe.neutralise_cell`: a rejected cell such as ``=HYPERLINK(...)``
    is written ``'=HYPERLINK(...)`` so that the spreadsheet shows it as text (OWASP "CSV
    Injection"); plain numbers such as ``+33199000010`` stay as they are.

    Raises:
        VoicecastError: the file cannot be written.
    """
    path = Path(path)
    delimiter = result.delimiter if result.delimiter in (",", ";") else ","
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise VoicecastError(f"cannot write the rejects file {path}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh, delimiter=delimiter, lineterminator="\r\n")
            writer.writerow(neutralise_row(["line", "reason", *result.headers]))
            for reject in result.rejects:
                writer.writerow(
                    neutralise_row(
                        [
                            reject.line,
                            reject.reason,
                            *(reject.row.get(h, "") for h in result.headers),
                        ]
                    )
                )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise VoicecastError(f"cannot write the rejects file {path}: {exc}") from None
        raise
