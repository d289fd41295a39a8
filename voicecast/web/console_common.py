"""What the console pages of campaigns, lists, audio, reports and opt-outs share.

Pagination, form reading, times shown in the report's zone (``[report] timezone``), the
compliance gate's environment, and the templates' ``pathpart`` filter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from voicecast.web.server import HTTPProblem, context

if TYPE_CHECKING:
    pass

PAGE_SIZE = 50
"""Rows per page of every paginated console table."""

FIELD_LABELS: dict[str, str] = {
    "first_name": "First name",
    "last_name": "Last name",
    "company": "Company",
    "region": "Region or department",
    "postal_code": "Postal code",
    "professional": "Professional (B2B)",
}
"""English labels (translated in templates) of the importer's canonical contact fields."""


def path_part(value: object) -> str:
    """``value`` quoted as one URL path segment (``/`` too: ``a/b`` -> ``a%2Fb``)."""
    return quote(str(value), safe="")


@dataclass(frozen=True)
class Pager:
    """One page of a table: ``number`` (1-based), ``size`` rows, ``total`` rows in all.

    ``offset`` is the first row's index; ``pages`` the number of pages (at least 1).
    """

    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages the table has (1 for an empty table)."""
        return max(1, math.ceil(self.total / self.size))

    @property
    def offset(self) -> int:
        """Index of the first row of this page."""
        return (self.number - 1) * self.size

    @property
    def has_previous(self) -> bool:
        """True when a page comes before this one."""
        return self.number > 1

    @property
    def has_next(self) -> bool:
        """True when a page comes after this one."""
        return self.number < self.pages


def page_number(request: web.Request) -> int:
    """The ``page`` query parameter (1-based; 1 when absent).

    Raises:
        HTTPProblem: 400 ``invalid`` when it is not a positive integer.
    """
    raw = request.query.get("page", "1").strip() or "1"
    if not raw.isdigit() or int(raw) < 1 or len(raw) > 9:
        raise HTTPProblem(400, "invalid", f"page: {raw!r} is not a page number (1, 2, ...)")
    return int(raw)


def pager(request: web.Request, total: int, size: int = PAGE_SIZE) -> Pager:
    """The :class:`Pager` of ``request``'s ``page`` over ``total`` rows (a page past the
    end shows the last page)."""
    number = page_number(request)
    last = max(1, math.ceil(total / size))
    return Pager(min(number, last), size, total)


def field(form: Mapping[str, object], name: str) -> str:
    """The text of form field ``name``, stripped ("" when absent or a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def report_zone(request: web.Request) -> tzinfo:
    """The zone console times are shown in (``[report] timezone``, else the machine's).

    Raises:
        ConfigError: an unknown zone name in the settings.
    """
    return context(request).runtime.report_zone()


def time_formatter(zone: tzinfo) -> TimeFormatter:
    """A ``when(value)`` function for templates: an aware instant shown in ``zone``."""
    return TimeFormatter(zone)


@dataclass(frozen=True)
class TimeFormatter:
    """Shows an aware instant as ``YYYY-MM-DD HH:MM:SS ±HH:MM`` in :attr:`zone` ("" for None).

    ``seconds=False`` drops the seconds.
    """

    zone: tzinfo

    def __call__(self, value: datetime | str | None, seconds: bool = True) -> str:
        """Format ``value`` (a datetime, or an ISO 8601 string with offset)."""
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        local = value.astimezone(self.zone)
        text = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
        offset = local.strftime("%z")
        return f"{text} {offset[:3]}:{offset[3:]}" if offset else text
