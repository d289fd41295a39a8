"""Stream the phone numbers of a file in any common shape (opt-out and opposition lists).

Shapes recognised, from the first non-blank line:

* CSV/TSV (or ``.xlsx``) **with a header**: the phone column is found as the contacts
  importer finds it (Téléphone, Phone, Mobile, MSISDN, Numéro...); other columns are ignored.
* **US National Do Not Call Registry** download: ``AreaCode,PhoneNumber`` lines such as
  ``202,5550123`` (-> ``+12025550123``), with or without that header line.
* **one number per line** (``.txt``, Bloctel return files, TPS extracts): the first and only
  non-empty cell of each line.

Reading reuses :mod:`voicecast.contacts.importer` (encodings: UTF-8 with or without BOM,
cp1252, UTF-16/32 with BOM; ``,`` ``;`` tab delimiters, an Excel ``sep=`` line; quoted
cells) and its E.164 normalisation (``+``/``00`` prefixes, ``tel:``, French overseas
numbers written nationally), so a number hashes the same here as in a contact list.

Memory: lines are streamed; a 10-million-line file is never held in memory. Speed:
normalising with ``phonenumbers`` costs ~30 µs a number, so bare digit strings reuse the
result of an earlier number of the same 10,000 (or 1,000) block when the numbering plan of
the result cannot tell numbers of one block apart (checked on ``phonenumbers`` metadata).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator, Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

import phonenumbers
from phonenumbers import PhoneMetadata

from voicecast.contacts import importer
from voicecast.contacts.importer import ImportFormatError, InvalidPhoneError, normalize_phone
from voicecast.errors import VoicecastError

__all__ = [
    "ImportFormatError",
    "InvalidNumberError",
    "NumberLine",
    "Records",
    "open_records",
    "parse_number",
    "read_numbers",
]

Records = Generator[tuple[int, list[str]], None, None]
"""(1-based line or row where the record starts, cells) for every record of a table."""

_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FAST_RE = re.compile(r"\+?[0-9][0-9 \-]{6,22}")
_DIGITS_RE = re.compile(r"\+?[0-9]{7,15}")
_DNC_AREA_RE = re.compile(r"[0-9]{3}")
_DNC_NUMBER_RE = re.compile(r"[0-9]{7}")
_TAIL_RE = re.compile(r"\\d\{(\d+)(?:,\d*)?\}$")
_DESC_NAMES = (
    "general_desc", "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost",
    "personal_number", "voip", "pager", "uan", "voicemail", "no_international_dialling",
)  # fmt: skip
_CACHE_LIMIT = 500_000


class InvalidNumberError(VoicecastError, ValueError):
    """One number given to a command or service is not a valid phone number.

    ``str(exc)`` is the human reason, e.g. ``"phone: contains letters ('01 99 ABC')"``.
    """


class NumberLine(NamedTuple):
    """One non-blank line (or row) of a number file.

    Attributes:
        line: 1-based physical line (CSV/text) or row number (xlsx).
        e164: the number in E.164, or None when the line holds no valid number.
        raw: the cell as read (for the US DNC format, ``"AreaCode,PhoneNumber"``).
        error: why ``e164`` is None (``"phone: too few digits ('0199')"``), else None.
    """

    line: int
    e164: str | None
    raw: str
    error: str | None


def parse_number(raw: str, default_region: str) -> str:
    """Return one number typed by a person (CLI argument, form field) in E.164.

    Stricter than the contacts importer on one point: a control character anywhere (CR/LF,
    tab, NUL...), even at either end, rejects the number, since it can only come from a
    pasted or forged value.

    Raises:
        InvalidNumberError: empty, control characters, letters, several numbers, not valid.
        ValueError: ``default_region`` is unknown to ``phonenumbers``.
    """
    if _CONTROL_RE.search(raw):
        raise InvalidNumberError(f"phone: control character in {raw[:40]!r}")
    try:
        return normalize_phone(raw, default_region)
    except InvalidPhoneError as exc:
        raise InvalidNumberError(str(exc)) from None


# --------------------------------------------------------------------------- fast path


def _alternatives(pattern: str) -> list[str]:
    """The top-level ``|`` alternatives of a regular expression."""
    out: list[str] = []
    current: list[str] = []
    depth, in_class, i = 0, False, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            current.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    out.append("".join(current))
    return out


@cache
def block_width(country_code: int) -> int:
    """How many trailing digits no number pattern of ``country_code`` looks at (0 to 4).

    Every pattern (general, fixed line, mobile...) of every region sharing the code must end
    with ``\\d{k}``: the last ``min(k)`` digits then never change whether a number is valid,
    nor its region; 0 when a pattern ends otherwise.
    """
    width = 4
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        meta = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        if meta is None:
            return 0
        for name in _DESC_NAMES:
            desc = getattr(meta, name, None)
            pattern = getattr(desc, "national_number_pattern", None)
            if not pattern:
                continue
            for alternative in _alternatives(pattern):
                tail = _TAIL_RE.search(alternative)
                if tail is None:
                    return 0
                width = min(width, int(tail.group(1)))
    return width


def _leading_codes(digits: str) -> set[int]:
    """Country codes ``digits`` (after ``+``, ``00`` or ``011``) could start with."""
    codes: set[int] = set()
    for prefix in ("+", "00", "011"):
        if digits.startswith(prefix):
            rest = digits[len(prefix) :]
            codes.update(
                int(rest[:n])
                for n in (1, 2, 3)
                if len(rest) >= n and int(rest[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
            )
    return codes


def _code_of(e164: str) -> int:
    for n in (1, 2, 3):
        if int(e164[1 : 1 + n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(e164[1 : 1 + n])
    raise AssertionError(f"no country code in {e164}")  # E.164 from phonenumbers always has one


class _Normaliser:
    """:func:`parse_number` for one region, with a per-block cache for bare digits.

    Exactness: for input of digits only (``+`` allowed first; spaces and ``-`` ignored), the
    outcome of a number is the outcome of an earlier number that shares every digit but the
    last ``w``: same prefix of the E.164 result, or same reason of rejection. ``w`` is the
    smallest :func:`block_width` (3 or 4) of every country code the parse may consult (the
    region's, France's overseas ones for FR, the one the digits start with, the result's),
    so no ``phonenumbers`` pattern can tell the two numbers apart. Other input takes the
    slow path every time.
    """

    def __init__(self, region: str) -> None:
        self.region = region
        self.base_codes = {phonenumbers.country_code_for_region(region)}
        if region == "FR":
            self.base_codes |= {
                phonenumbers.country_code_for_region(r) for r in importer.FR_OVERSEAS_REGIONS
            }
        # (w, digits but the last w) -> (True, E.164 but the last w) | (False, reason head)
        self.cache: dict[tuple[int, str], tuple[bool, str]] = {}

    def _width(self, digits: str, extra: set[int]) -> int:
        return min(block_width(c) for c in self.base_codes | _leading_codes(digits) | extra)

    def _store(self, width: int, digits: str, value: tuple[bool, str]) -> None:
        if width >= 3:
            if len(self.cache) >= _CACHE_LIMIT:
                self.cache.clear()
            self.cache[(width, digits[:-width])] = value

    def __call__(self, raw: str) -> str:
        digits: str | None = None
        if _FAST_RE.fullmatch(raw) is not None:
            digits = raw.replace(" ", "").replace("-", "")
            if _DIGITS_RE.fullmatch(digits) is None:
                digits = None
        suffix = ""
        if digits is not None:
            suffix = f"({importer._show(raw.strip(importer._WS))})"
            for width in (4, 3):
                hit = self.cache.get((width, digits[:-width]))
                if hit is not None:
                    if hit[0]:
                        return hit[1] + digits[-width:]
                    raise InvalidNumberError(hit[1] + suffix)
        try:
            e164 = parse_number(raw, self.region)
        except InvalidNumberError as exc:
            reason = str(exc)
            if digits is not None and reason.endswith(suffix):
                self._store(self._width(digits, set()), digits, (False, reason[: -len(suffix)]))
            raise
        if digits is not None:
            width = self._width(digits, {_code_of(e164)})
            if width >= 3 and e164[-width:] == digits[-width:]:
                self._store(width, digits, (True, e164[:-width]))
        return e164


# --------------------------------------------------------------------------- tables


def _is_blank(cells: list[str]) -> bool:
    return not any(cell.strip(importer._WS) for cell in cells)


def open_records(path: Path) -> tuple[Records, str, str | None]:
    """Open a number list or consent file (see :func:`voicecast.contacts.importer.open_records`;
    a one-column file without a header is fine here)."""
    return importer.open_records(path)


def _dnc_cells(cells: list[str]) -> tuple[str, str] | None:
    """(area code, number) when the non-empty cells are exactly 3 and 7 digits."""
    values = [c.strip(importer._WS + '"') for c in cells]
    values = [v for v in values if v]
    if (
        len(values) == 2
        and _DNC_AREA_RE.fullmatch(values[0])
        and _DNC_NUMBER_RE.fullmatch(values[1])
    ):
        return values[0], values[1]
    return None


def _is_dnc_header(keys: list[str]) -> bool:
    keys = [k for k in keys if k]
    return (
        len(keys) == 2
        and keys[0] in ("areacode", "area", "npa")
        and keys[1] in ("phonenumber", "number", "phone", "nxxxxxx", "localnumber")
    )


def _number_lines(
    path: Path, records: Records, region: str, phone_column: str | None
) -> Iterator[NumberLine]:
    normalise = _Normaliser(region)
    first = next(((n, c) for n, c in records if not _is_blank(c)), None)
    if first is None:
        raise ImportFormatError(f"{path}: no number in the file (only blank lines)")
    first_line, first_cells = first
    headers = importer._clean_headers(first_cells)
    keys = [importer._key(h) for h in headers]

    dnc_header = phone_column is None and _is_dnc_header(keys)
    phone_idx: int | None = None
    if phone_column is not None:
        phone_idx = importer._find_header(headers, phone_column)
        if phone_idx is None:
            raise ImportFormatError(
                f"{path}: header (line {first_line}): phone column {phone_column!r} not found; "
                f"columns: {importer._listing(headers)}"
            )
    elif not dnc_header:
        ranks = {i: r for i, k in enumerate(keys) if (r := importer._phone_rank(k)) is not None}
        phone_idx = importer._best(ranks)
        if phone_idx is not None:  # 'tel:0199000010' ranks as a header: a number is data
            with contextlib.suppress(InvalidNumberError):
                parse_number(headers[phone_idx], region)
                phone_idx = None

    def one(line: int, raw: str) -> NumberLine:
        try:
            return NumberLine(line, normalise(raw), raw, None)
        except InvalidNumberError as exc:
            return NumberLine(line, None, raw, str(exc))

    if phone_idx is not None:  # CSV (or xlsx) with a header
        for line, cells in records:
            if _is_blank(cells):
                continue
            raw = cells[phone_idx].strip(importer._WS) if phone_idx < len(cells) else ""
            yield one(line, raw)
        return

    if dnc_header or _dnc_cells(first_cells) is not None:  # US DNC registry download

        def dnc(line: int, cells: list[str]) -> NumberLine:
            pair = _dnc_cells(cells)
            raw = ",".join(c.strip(importer._WS) for c in cells)
            if pair is None:
                return NumberLine(line, None, raw, "expected AreaCode,PhoneNumber (3 and 7 digits)")
            return one(line, f"+1{pair[0]}{pair[1]}")._replace(raw=raw)

        if not dnc_header:
            yield dnc(first_line, first_cells)
        for line, cells in records:
            if not _is_blank(cells):
                yield dnc(line, cells)
        return

    filled = [c for c in first_cells if c.strip(importer._WS)]
    if len(filled) != 1 or any(ch.isalpha() for ch in filled[0].replace("tel:", "")):
        hint = "" if len(filled) == 1 else " and the first line has several cells"
        raise ImportFormatError(
            f"{path}: header (line {first_line}): no phone column recognised{hint}; "
            f"columns: {importer._listing(headers)}; name the column Phone or Téléphone, "
            "or give one number per line"
        )

    def single(line: int, cells: list[str]) -> NumberLine:
        if len(cells) == 1:
            return one(line, cells[0].strip(importer._WS))
        values = [c.strip(importer._WS) for c in cells if c.strip(importer._WS)]
        if len(values) != 1:
            shown = ", ".join(repr(v[:20]) for v in values[:3])
            return NumberLine(line, None, "|".join(values), f"several cells ({shown})")
        return one(line, values[0])

    yield single(first_line, first_cells)
    for line, cells in records:
        if not _is_blank(cells):
            yield single(line, cells)


def read_numbers(
    path: Path, default_region: str, *, phone_column: str | None = None
) -> Iterator[NumberLine]:
    """Stream the numbers of ``path`` (see the module docstring for the shapes read).

    Blank lines are skipped; every other data line yields one :class:`NumberLine`, valid or
    not, in file order (duplicates included).

    Args:
        default_region: ISO 3166 region of numbers written without a country code.
        phone_column: header of the phone column, when the file has a header that is not
            recognised.

    Raises:
        ImportFormatError: unreadable or empty file, a header without a phone column, a
            malformed CSV line, or an unknown region (raised on the first ``next()``).
    """
    path = Path(path)
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ImportFormatError(f"unknown region {default_region!r}: expected a code such as FR")
    records, _encoding, _delimiter = open_records(path)
    with contextlib.closing(records):
        try:
            yield from _number_lines(path, records, region, phone_column)
        except OSError as exc:
            raise ImportFormatError(f"{path}: cannot read the file ({exc})") from None
