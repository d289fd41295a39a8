"""Calling windows and public holidays, evaluated in the callee's local time.

Everything here is pure (no DB, no I/O) and cached, because the compliance gate asks the
same questions for up to a million contacts that share a handful of zone sets.

Three pieces:

* :func:`parse_windows` reads the window syntax of the rule packs and of ``voicecast.toml``
  (``"mon-fri 10:00-13:00 14:00-20:00; sat 10:00-12:00"``) into a :class:`WeeklyWindows`.
* Holiday calendars (:class:`HolidayCalendar`): :class:`FrenchHolidays` (the legal days of
  the Code du travail only), :class:`CountryHolidays` (the ``holidays`` package's public
  holidays of another country) and :class:`NoHolidays`.
* :func:`check_window`: is ``now`` inside the window in every candidate zone of a number,
  and if not, why, and when does it next open (a UTC instant)?

Legal sources of the windows themselves live in the rule packs: France, Code de la
consommation D223-9 (Monday to Friday 10:00-13:00 and 14:00-20:00, never on public
holidays, callee's local time); United States, 47 CFR 64.1200(c)(1) (08:00-21:00 callee's
local time; Florida and Oklahoma 08:00-20:00 by state law).

Wall-clock rules on daylight-saving change days (applied to every range boundary):

* a wall time that does not exist (spring-forward gap) starts or ends at the first instant
  after the gap (Paris 2027-03-28 02:30 -> 03:00 CEST = 01:00 UTC);
* an ambiguous wall time (fall-back fold) is its first occurrence (``fold=0``);
* ``24:00`` is the next local midnight, so ``00:00-24:00`` covers a 23 h or 25 h day whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from voicecast.compliance.types import Reason

__all__ = [
    "CountryHolidays",
    "FrenchHolidays",
    "HolidayCalendar",
    "NoHolidays",
    "TimeRange",
    "WeeklyWindows",
    "WindowCheck",
    "check_window",
    "easter_sunday",
    "next_open_at_or_after",
    "parse_windows",
]

MINUTES_PER_DAY = 24 * 60
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_LONG = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY_ALIASES: dict[str, int] = {
    **{name: i for i, name in enumerate(DAY_NAMES)},
    **{name.lower(): i for i, name in enumerate(_WEEKDAY_LONG)},
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}

# --------------------------------------------------------------------------------------------
# Weekly windows
# --------------------------------------------------------------------------------------------


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True, slots=True, order=True)
class TimeRange:
    """A local wall-clock range of one day, in minutes after local midnight.

    ``start_minute`` is inclusive, ``end_minute`` exclusive; ``0 <= start < end <= 1440``
    (``1440`` is ``24:00``, the next local midnight). ``str()`` gives ``"10:00-13:00"``.

    Raises:
        ValueError: bounds out of order or out of ``0..1440``.
    """

    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < self.end_minute <= MINUTES_PER_DAY:
            raise ValueError(
                f"invalid time range {self.start_minute}-{self.end_minute} (minutes): "
                "need 0 <= start < end <= 1440"
            )

    @property
    def start(self) -> time:
        """Local start time (inclusive)."""
        return time(self.start_minute // 60, self.start_minute % 60)

    @property
    def end(self) -> time | None:
        """Local end time (exclusive); None for ``24:00`` (the next midnight)."""
        if self.end_minute == MINUTES_PER_DAY:
            return None
        return time(self.end_minute // 60, self.end_minute % 60)

    def __str__(self) -> str:
        return f"{_hhmm(self.start_minute)}-{_hhmm(self.end_minute)}"


def _normalize(ranges: tuple[TimeRange, ...]) -> tuple[TimeRange, ...]:
    """Sort and merge overlapping or touching ranges."""
    out: list[TimeRange] = []
    for r in sorted(ranges):
        if out and r.start_minute <= out[-1].end_minute:
            if r.end_minute > out[-1].end_minute:
                out[-1] = TimeRange(out[-1].start_minute, r.end_minute)
        else:
            out.append(r)
    return tuple(out)


def _intersect_day(a: tuple[TimeRange, ...], b: tuple[TimeRange, ...]) -> tuple[TimeRange, ...]:
    out: list[TimeRange] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i].start_minute, b[j].start_minute)
        hi = min(a[i].end_minute, b[j].end_minute)
        if lo < hi:
            out.append(TimeRange(lo, hi))
        if a[i].end_minute < b[j].end_minute:
            i += 1
        else:
            j += 1
    return tuple(out)


@dataclass(frozen=True, slots=True)
class WeeklyWindows:
    """When calls are allowed, per weekday, in local wall-clock time.

    ``days[0]`` is Monday ... ``days[6]`` Sunday; each is a tuple of :class:`TimeRange`,
    normalized on construction (sorted, overlapping or touching ranges merged), so equal
    windows compare and hash equal. A weekday with no range is a closed day. Holidays are
    not part of the windows: they come from a :class:`HolidayCalendar` at evaluation.

    ``str()`` gives the canonical syntax read back by :func:`parse_windows`.

    Raises:
        ValueError: ``days`` does not have 7 entries.
    """

    days: tuple[tuple[TimeRange, ...], ...]
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError(f"WeeklyWindows needs 7 days (Monday first), got {len(self.days)}")
        days = tuple(_normalize(tuple(d)) for d in self.days)
        object.__setattr__(self, "days", days)
        # Hashed once: the window is part of every cache key of check_window.
        object.__setattr__(self, "_hash", hash(days))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def always(cls) -> WeeklyWindows:
        """Every day 00:00-24:00 (syntax ``any``)."""
        return cls(tuple((TimeRange(0, MINUTES_PER_DAY),) for _ in range(7)))

    @classmethod
    def never(cls) -> WeeklyWindows:
        """No calling time at all (syntax ``never``)."""
        return cls(tuple(() for _ in range(7)))

    @property
    def is_empty(self) -> bool:
        """True when no weekday has any range."""
        return not any(self.days)

    def ranges(self, weekday: int) -> tuple[TimeRange, ...]:
        """The ranges of ``weekday`` (0 = Monday)."""
        return self.days[weekday]

    def intersect(self, other: WeeklyWindows) -> WeeklyWindows:
        """The times inside both windows (a campaign may only tighten a rule pack)."""
        return WeeklyWindows(
            tuple(_intersect_day(a, b) for a, b in zip(self.days, other.days, strict=True))
        )

    def is_within(self, other: WeeklyWindows) -> bool:
        """True when every time inside ``self`` is also inside ``other`` (no wider)."""
        return self.intersect(other) == self

    def __str__(self) -> str:
        if self.is_empty:
            return "never"
        if self == WeeklyWindows.always():
            return "any"
        groups: dict[tuple[TimeRange, ...], list[int]] = {}
        for i, ranges in enumerate(self.days):
            if ranges:
                groups.setdefault(ranges, []).append(i)
        clauses = []
        for ranges, days in groups.items():
            spec = "daily" if len(days) == 7 else _format_days(days)
            clauses.append(spec + " " + " ".join(str(r) for r in ranges))
        return "; ".join(clauses)


def _format_days(days: list[int]) -> str:
    runs: list[list[int]] = []
    for d in days:
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(
        DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}" for r in runs
    )


_RANGE_RE = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")


def _parse_day(token: str, clause: str) -> int:
    day = _DAY_ALIASES.get(token)
    if day is None:
        raise ValueError(
            f"unknown day {token!r} in {clause!r}: use mon, tue, wed, thu, fri, sat, sun, "
            "ranges (mon-fri), lists (mon,wed) or 'daily'"
        )
    return day


def _parse_days(spec: str, clause: str) -> list[int]:
    if spec in ("daily", "everyday"):
        return list(range(7))
    days: list[int] = []
    for item in spec.split(","):
        if not item:
            raise ValueError(f"empty day in {clause!r}")
        if "-" in item:
            first_s, _, last_s = item.partition("-")
            first, last = _parse_day(first_s, clause), _parse_day(last_s, clause)
            # A range may wrap around the week end: "fri-mon" is fri, sat, sun, mon.
            span = (last - first) % 7
            days.extend((first + k) % 7 for k in range(span + 1))
        else:
            days.append(_parse_day(item, clause))
    return days


def _parse_minute(hh: str, mm: str, token: str, clause: str, *, is_end: bool) -> int:
    h, m = int(hh), int(mm)
    if m > 59 or h > 24 or (h == 24 and (m != 0 or not is_end)):
        raise ValueError(
            f"bad time in {token!r} of {clause!r}: hours 00-23 (24:00 only as an end), "
            "minutes 00-59"
        )
    return h * 60 + m


def parse_windows(text: str) -> WeeklyWindows:
    """Parse the calling-window syntax into :class:`WeeklyWindows` (local wall-clock).

    Syntax: clauses separated by ``;``, each ``DAYS RANGE [RANGE...]``.

    * ``DAYS``: ``mon``..``sun`` (full names accepted), ranges ``mon-fri`` (may wrap:
      ``fri-mon``), lists ``mon,wed,fri``, or ``daily`` / ``every day``.
    * ``RANGE``: ``HH:MM-HH:MM``, start inclusive, end exclusive; ``24:00`` is allowed as an
      end (the next local midnight). A range may not cross midnight: write
      ``fri 22:00-24:00; sat 00:00-02:00``.
    * The whole text ``any`` means always open (every day 00:00-24:00); ``never`` means no
      calling time (the canonical form of an empty intersection).

    Clauses naming the same day add up. Case and extra spaces are ignored. Example (the
    French window of Code de la consommation D223-9): ``"mon-fri 10:00-13:00 14:00-20:00"``.

    Raises:
        ValueError: the text is empty or a token is not understood; the message names it.
    """
    norm = " ".join(text.lower().split())
    if not norm:
        raise ValueError("empty calling window: write e.g. 'mon-fri 10:00-13:00' or 'never'")
    if norm == "any":
        return WeeklyWindows.always()
    if norm == "never":
        return WeeklyWindows.never()
    per_day: list[list[TimeRange]] = [[] for _ in range(7)]
    clauses = [c.strip() for c in norm.split(";")]
    if not any(clauses):
        raise ValueError(f"no clause in calling window {text!r}")
    for clause in clauses:
        if not clause:
            continue  # tolerate "a; ; b" and a trailing ";"
        compact = re.sub(r"\s*([-,])\s*", r"\1", clause).replace("every day", "daily")
        tokens = compact.split(" ")
        first_time = next((i for i, t in enumerate(tokens) if t[:1].isdigit()), len(tokens))
        if first_time == 0:
            raise ValueError(f"missing days before {tokens[0]!r} in {clause!r}")
        if first_time > 1:
            raise ValueError(f"unexpected {tokens[1]!r} after {tokens[0]!r} in {clause!r}")
        spec = tokens[0]
        if spec in ("any", "never"):
            raise ValueError(f"{spec!r} must be the whole window, not part of {clause!r}")
        days = _parse_days(spec, clause)
        range_tokens = [t for t in tokens[first_time:] for t in t.split(",") if t]
        if not range_tokens:
            raise ValueError(f"no time range after {spec!r} in {clause!r} (e.g. 10:00-13:00)")
        for tok in range_tokens:
            m = _RANGE_RE.fullmatch(tok)
            if m is None:
                raise ValueError(f"bad time range {tok!r} in {clause!r}: expected HH:MM-HH:MM")
            start = _parse_minute(m[1], m[2], tok, clause, is_end=False)
            end = _parse_minute(m[3], m[4], tok, clause, is_end=True)
            if start >= end:
                raise ValueError(
                    f"empty or overnight range {tok!r} in {clause!r}: the end must be after "
                    "the start; split a range that crosses midnight at 24:00"
                )
            for d in days:
                per_day[d].append(TimeRange(start, end))
    return WeeklyWindows(tuple(tuple(r) for r in per_day))


# --------------------------------------------------------------------------------------------
# Holiday calendars
# --------------------------------------------------------------------------------------------


class HolidayCalendar(Protocol):
    """A public-holiday calendar. Implementations are immutable and hashable (they are part
    of the cache keys of :func:`check_window`) and answer in about a microsecond."""

    def holiday_name(self, d: date, /) -> str | None:
        """The holiday's name when the local date ``d`` is a public holiday, else None."""
        ...

    def __hash__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class NoHolidays:
    """A calendar without holidays."""

    def holiday_name(self, d: date, /) -> str | None:
        """Always None."""
        return None


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday of ``year`` (anonymous Gregorian algorithm, Meeus/Jones/
    Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


# Code du travail L3133-1: the 11 legal public holidays (fixed dates; Easter-relative days).
_FR_NATIONAL_FIXED: dict[tuple[int, int], str] = {
    (1, 1): "New Year's Day",
    (5, 1): "Labour Day",
    (5, 8): "Victory in Europe Day",
    (7, 14): "National Day",
    (8, 15): "Assumption Day",
    (11, 1): "All Saints' Day",
    (11, 11): "Armistice Day",
    (12, 25): "Christmas Day",
}
_FR_NATIONAL_EASTER: dict[int, str] = {
    1: "Easter Monday",
    39: "Ascension Day",
    50: "Whit Monday",
}
# Code du travail L3134-13 (Moselle 57, Bas-Rhin 67, Haut-Rhin 68). Good Friday is legally a
# holiday only in communes with a Protestant or mixed church: blocked department-wide.
_FR_ALSACE_MOSELLE_FIXED: dict[tuple[int, int], str] = {(12, 26): "Saint Stephen's Day"}
_FR_ALSACE_MOSELLE_EASTER: dict[int, str] = {-2: "Good Friday"}
# Code du travail L3422-2: abolition of slavery day. Saint-Martin: the Code says 27 May but
# the territory has kept 28 May since 2019 (prefectoral circular): both are blocked.
_FR_ABOLITION: dict[str, tuple[tuple[int, int], ...]] = {
    "971": ((5, 27),),  # Guadeloupe
    "972": ((5, 22),),  # Martinique
    "973": ((6, 10),),  # Guyane
    "974": ((12, 20),),  # La Réunion
    "976": ((4, 27),),  # Mayotte
    "977": ((10, 9),),  # Saint-Barthélemy
    "978": ((5, 27), (5, 28)),  # Saint-Martin
}
_FR_ISO_TO_DEPT = {
    "GP": "971",
    "MQ": "972",
    "GF": "973",
    "RE": "974",
    "PM": "975",
    "YT": "976",
    "BL": "977",
    "MF": "978",
}
# holidays.country_holidays("FR", subdiv=...) for each rule key (names only, see below).
_FR_PACKAGE_SUBDIV = {
    "57": "57",
    "67": "6AE",
    "68": "6AE",
    "971": "971",
    "972": "972",
    "973": "973",
    "974": "974",
    "975": "PM",
    "976": "976",
    "977": "BL",
    "978": "MF",
}
_FR_METRO_DEPT_RE = re.compile(r"0[1-9]|[1-8]\d|9[0-5]|2A|2B")
_UNKNOWN = "?"


def _fr_rule_key(region: str | None) -> str:
    """Department code ("57", "974"...), "" for national-only, or "?" for unknown."""
    if region is None:
        return _UNKNOWN
    r = region.strip().upper()
    if r in ("", "FR"):
        return _UNKNOWN
    r = _FR_ISO_TO_DEPT.get(r, r)
    if r in ("57", "67", "68") or r in _FR_ABOLITION or r == "975":
        return r
    if _FR_METRO_DEPT_RE.fullmatch(r) or r == "20":
        return ""
    raise ValueError(
        f"unknown French region {region!r}: expected a department code (01-95, 2A, 2B, "
        "971-978) or an ISO code (GP, MQ, GF, RE, YT, PM, BL, MF)"
    )


def _fr_legal_days(key: str, year: int) -> dict[date, str]:
    easter = easter_sunday(year)
    fixed = dict(_FR_NATIONAL_FIXED)
    rel = dict(_FR_NATIONAL_EASTER)
    if key in ("57", "67", "68", _UNKNOWN):
        fixed.update(_FR_ALSACE_MOSELLE_FIXED)
        rel.update(_FR_ALSACE_MOSELLE_EASTER)
    for dept, dates in _FR_ABOLITION.items():
        if key in (dept, _UNKNOWN):
            for md in dates:
                fixed.setdefault(md, "Abolition of Slavery")
    days = {date(year, m, d): name for (m, d), name in fixed.items()}
    days.update({easter + timedelta(days=n): name for n, name in rel.items()})
    return days


@lru_cache(maxsize=1024)
def _fr_year(key: str, year: int) -> Mapping[date, str]:
    legal = _fr_legal_days(key, year)
    if key == _UNKNOWN:
        subdivs: list[str | None] = [None, *sorted(set(_FR_PACKAGE_SUBDIV.values()))]
    else:
        subdivs = [_FR_PACKAGE_SUBDIV.get(key)]
    package: dict[date, str] = {}
    for subdiv in subdivs:
        cal = holidays.country_holidays("FR", subdiv=subdiv, years=year, language="en_US")
        for d, name in cal.items():
            package.setdefault(d, name)
    # The allow-list decides which days are blocked; the package only names them. Package
    # days outside it (Mi-Carême, Victor Schoelcher Day, Good Friday in Guadeloupe...) are
    # dropped; a legal day the package lacked would still be blocked under our name.
    return MappingProxyType({d: package.get(d, name) for d, name in sorted(legal.items())})


@dataclass(frozen=True, slots=True)
class FrenchHolidays:
    """French legal public holidays for the callee's department (Code de la consommation
    D223-9 forbids canvassing calls on public holidays).

    Blocked days, and only these (a tested allow-list; the ``holidays`` package, pinned,
    provides the names; its other days such as Mi-Carême or Victor Schoelcher Day are not
    blocked):

    * everywhere: the 11 days of Code du travail L3133-1 (1 Jan, Easter Monday, 1 May, 8 May,
      Ascension, Whit Monday, 14 Jul, 15 Aug, 1 Nov, 11 Nov, 25 Dec);
    * Moselle, Bas-Rhin, Haut-Rhin (57, 67, 68): Good Friday and 26 Dec (L3134-13);
    * abolition-of-slavery day (L3422-2): Guadeloupe 971 27 May, Martinique 972 22 May,
      Guyane 973 10 Jun, La Réunion 974 20 Dec, Mayotte 976 27 Apr, Saint-Barthélemy 9 Oct,
      Saint-Martin 27 and 28 May (the Code says 27, the territory has used 28 since 2019).

    Args:
        region: a department code (``"57"``, ``"75"``, ``"2A"``, ``"974"``; ``"977"``/
            ``"978"`` for Saint-Barthélemy/Saint-Martin) or an ISO code (``"GP"``, ``"MQ"``,
            ``"GF"``, ``"RE"``, ``"YT"``, ``"PM"``, ``"BL"``, ``"MF"``); None, ``""`` or
            ``"FR"`` when unknown. Metropolitan departments other than 57/67/68 and
            Saint-Pierre-et-Miquelon get the national days only.
        unknown: region unknown: ``"conservative"`` blocks the union of every regional day
            above, ``"national"`` only the 11 national days.

    Raises:
        ValueError: ``region`` is not a French department or overseas ISO code.
    """

    region: str | None = None
    unknown: Literal["conservative", "national"] = "conservative"
    _key: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.unknown not in ("conservative", "national"):
            raise ValueError(f"unknown must be 'conservative' or 'national', not {self.unknown!r}")
        key = _fr_rule_key(self.region)
        if key == _UNKNOWN and self.unknown == "national":
            key = ""
        object.__setattr__(self, "_key", key)

    def holiday_name(self, d: date, /) -> str | None:
        """The legal holiday's name on local date ``d``, else None (cached per year)."""
        return _fr_year(self._key, d.year).get(d)

    def days(self, year: int) -> Mapping[date, str]:
        """Every blocked day of ``year`` with its name, in date order."""
        return _fr_year(self._key, year)


@lru_cache(maxsize=1024)
def _country_year(country: str, subdiv: str | None, year: int) -> Mapping[date, str]:
    try:
        cal = holidays.country_holidays(country, subdiv=subdiv, years=year, categories="public")
    except NotImplementedError:
        if subdiv is None:
            return MappingProxyType({})  # country unknown to the package: no holidays
        return _country_year(country, None, year)  # subdivision unknown: the country's days
    return MappingProxyType(dict(sorted(cal.items())))


@dataclass(frozen=True, slots=True)
class CountryHolidays:
    """Public holidays of a country other than France, from the pinned ``holidays`` package
    (its ``public`` category), e.g. ``CountryHolidays("GB", "ENG")``, ``("US", "FL")``.

    No law of the US or UK rule packs forbids calls on holidays; packs use this only where
    a campaign or setting asks for it. A country the package does not know has no holidays;
    a subdivision it does not know falls back to the country's nationwide days.

    Args:
        country: ISO 3166-1 alpha-2 code as the package spells it (UK is ``"GB"``).
        subdiv: the package's subdivision code (``"ENG"``, ``"SCT"``, ``"FL"``...) or None.
    """

    country: str
    subdiv: str | None = None

    def holiday_name(self, d: date, /) -> str | None:
        """The public holiday's name on local date ``d``, else None (cached per year)."""
        return _country_year(self.country, self.subdiv, d.year).get(d)


# --------------------------------------------------------------------------------------------
# Window evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """Result of :func:`check_window`.

    Attributes:
        open: ``now`` is inside the window in every zone.
        reason: None when open; else ``PUBLIC_HOLIDAY`` (now's local date is a holiday in
            some zone), ``CLOSED_DAY`` (a weekday without ranges), or ``OUTSIDE_HOURS``.
        detail: one human sentence in local time, e.g. ``"20:00 in Europe/Paris on Friday
            2026-12-04: outside 10:00-13:00 14:00-20:00; next 2026-12-07 10:00
            Europe/Paris"``.
        next_open: earliest UTC instant >= now at which every zone is inside (``now`` itself
            when open); None when there is none within the horizon.
        closes_at: when open, the UTC instant the (intersected) window closes; None when
            closed, or when it stays open past the horizon.
    """

    open: bool
    reason: Reason | None
    detail: str
    next_open: datetime | None
    closes_at: datetime | None


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """UTC instant of a naive local wall time (gap: first instant after it; fold: first)."""
    u = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: first occurrence of a fold
    if u.astimezone(zone).replace(tzinfo=None) == wall:
        return u
    # In a gap: fold=0 and fold=1 give instants either side of the transition; bisect (to
    # the second: tz transitions are on whole seconds) for the first instant whose wall
    # time is at or after `wall`, i.e. the transition itself.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = min(u, other), max(u, other)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def _local_to_utc(d: date, minute: int, zone: ZoneInfo) -> datetime:
    if minute == MINUTES_PER_DAY:
        d += timedelta(days=1)
        minute = 0
    return _wall_to_utc(datetime(d.year, d.month, d.day, minute // 60, minute % 60), zone)


Interval = tuple[datetime, datetime]


@lru_cache(maxsize=1 << 16)
def _day_intervals(
    windows: WeeklyWindows, calendar: HolidayCalendar, zone_name: str, d: date
) -> tuple[Interval, ...]:
    """UTC intervals of local date ``d`` in the zone (empty on closed days and holidays)."""
    ranges = windows.days[d.weekday()]
    if not ranges or calendar.holiday_name(d) is not None:
        return ()
    zone = _zone(zone_name)
    out: list[list[datetime]] = []
    for r in ranges:
        s, e = _local_to_utc(d, r.start_minute, zone), _local_to_utc(d, r.end_minute, zone)
        if e <= s:
            continue  # a range entirely inside a DST gap
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return tuple((s, e) for s, e in out)


def _zone_interval(
    windows: WeeklyWindows,
    calendar: HolidayCalendar,
    zone_name: str,
    t: datetime,
    limit: datetime,
) -> tuple[datetime, datetime | None] | None:
    """The zone's open interval containing ``t`` or the first one after it (merged across
    midnight), if it starts before ``limit``; end None when it runs past ``limit``."""
    zone = _zone(zone_name)
    d = t.astimezone(zone).date() - timedelta(days=1)
    last = limit.astimezone(zone).date() + timedelta(days=1)
    start: datetime | None = None
    end = t
    one_day = timedelta(days=1)
    while d <= last:
        day = _day_intervals(windows, calendar, zone_name, d)
        if start is not None and (not day or day[0][0] != end):
            return start, end
        for s, e in day:
            if start is None:
                if e <= t:
                    continue
                if s >= limit:
                    return None
                start, end = s, e
            elif s == end:
                end = e
            else:
                return start, end
            if end >= limit:
                return start, None
        d += one_day
    return None if start is None else (start, end)


def _search(
    windows: WeeklyWindows,
    calendar: HolidayCalendar,
    zones: tuple[str, ...],
    now: datetime,
    limit: datetime,
) -> tuple[datetime | None, datetime | None]:
    """(first instant >= now inside every zone, when that common interval closes)."""
    t = now
    while t < limit:
        found = [_zone_interval(windows, calendar, z, t, limit) for z in zones]
        intervals = [iv for iv in found if iv is not None]
        if len(intervals) < len(found):
            return None, None
        start = max(s for s, _ in intervals)
        if start <= t:
            ends = [e for _, e in intervals]
            return t, None if None in ends else min(e for e in ends if e is not None)
        t = start
    return None, None


def _local_text(instant: datetime, zone_name: str) -> str:
    local = instant.astimezone(_zone(zone_name))
    return f"{local:%Y-%m-%d %H:%M} {zone_name}"


@lru_cache(maxsize=1 << 14)
def _check_window_utc(
    windows: WeeklyWindows,
    calendar: HolidayCalendar,
    zones: tuple[str, ...],
    now: datetime,
    horizon_days: int,
) -> WindowCheck:
    for z in zones:
        _zone(z)  # ValueError on an unknown zone
    limit = now + timedelta(days=horizon_days)
    next_open, closes_at = _search(windows, calendar, zones, now, limit)
    several = f" (all {len(zones)} candidate zones)" if len(zones) > 1 else ""

    def where(zone_name: str) -> tuple[str, date, str]:
        local = now.astimezone(_zone(zone_name))
        d = local.date()
        head = f"{local:%H:%M} in {zone_name} on {_WEEKDAY_LONG[d.weekday()]} {d.isoformat()}"
        return head, d, " ".join(str(r) for r in windows.days[d.weekday()])

    if next_open == now:
        head, _, ranges = where(zones[0])
        until = f" until {_local_text(closes_at, zones[0])}" if closes_at else ""
        detail = f"{head}: inside {ranges}{until}{several}"
        return WindowCheck(True, None, detail, now, closes_at)

    # Closed: name the most telling zone (holiday > closed day > outside hours).
    best: tuple[int, Reason, str, str] | None = None
    for z in zones:
        head, d, ranges = where(z)
        holiday = calendar.holiday_name(d)
        if holiday is not None:
            cand = (0, Reason.PUBLIC_HOLIDAY, f"{head}: public holiday ({holiday})", z)
        elif not ranges:
            cand = (1, Reason.CLOSED_DAY, f"{head}: no calling hours on this weekday", z)
        else:
            iv = _zone_interval(windows, calendar, z, now, limit)
            if iv is not None and iv[0] <= now:
                continue  # this zone is inside: not the cause
            cand = (2, Reason.OUTSIDE_HOURS, f"{head}: outside {ranges}", z)
        if best is None or cand[0] < best[0]:
            best = cand
    if best is None:  # cannot happen: a closed intersection has a closed zone
        head, _, ranges = where(zones[0])
        best = (2, Reason.OUTSIDE_HOURS, f"{head}: outside {ranges}", zones[0])
    _, reason, text, zone_name = best
    if next_open is None:
        text += f"; no calling time within {horizon_days} days{several}"
    else:
        text += f"; next {_local_text(next_open, zone_name)}{several}"
    return WindowCheck(False, reason, text, next_open, None)


def check_window(
    windows: WeeklyWindows,
    calendar: HolidayCalendar,
    zones: tuple[str, ...],
    now: datetime,
    *,
    horizon_days: int = 400,
) -> WindowCheck:
    """Is ``now`` inside ``windows`` in the callee's local time, in every candidate zone?

    A local date is closed when its weekday has no range or ``calendar`` names it a holiday
    (the zone's own local date). A number with several candidate zones (phonenumbers gives
    two for +262 mobiles, ~40 for US toll-free) may be called only when it is inside the
    window in every zone, i.e. in the intersection of the zones' open times. DST rules: see
    the module docstring. Legal sources: France, Code de la consommation D223-9 (with
    :class:`FrenchHolidays`); US, 47 CFR 64.1200(c)(1).

    Results are cached (all arguments are hashable): the gate calls this for many contacts
    with the same zone set and ``now``; a repeated call costs about a microsecond.

    Args:
        windows: the allowed local wall-clock ranges per weekday.
        calendar: holidays, tested on each zone's local date.
        zones: IANA zone names (``zoneinfo``); order only chooses the zone shown in
            ``detail`` when open.
        now: the instant to check; timezone-aware, any zone.
        horizon_days: how far ahead to look for ``next_open``.

    Returns:
        A :class:`WindowCheck`; its instants are aware UTC datetimes.

    Raises:
        ValueError: ``now`` is naive, ``zones`` is empty or names an unknown zone, or
            ``horizon_days`` is not positive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    if not zones:
        raise ValueError("zones is empty: the callee's time zone is unknown")
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    if now.tzinfo is not UTC:
        now = now.astimezone(UTC)
    return _check_window_utc(windows, calendar, zones, now, horizon_days)


def next_open_at_or_after(
    windows: WeeklyWindows,
    calendar: HolidayCalendar,
    zones: tuple[str, ...],
    t: datetime,
    *,
    horizon_days: int = 400,
) -> datetime | None:
    """Earliest UTC instant ``>= t`` inside the window in every zone (``t`` itself when
    open), or None within ``horizon_days``. Same rules and errors as :func:`check_window`."""
    return check_window(windows, calendar, zones, t, horizon_days=horizon_days).next_open


@dataclass(frozen=True, slots=True)
class UnionHolidays:
    """Closed on a day when any of ``calendars`` is (a conservative calendar when the
    callee's subdivision is unknown, e.g. every UK nation's bank holidays)."""

    calendars: tuple[HolidayCalendar, ...]

    def holiday_name(self, d: date, /) -> str | None:
        """The first calendar's holiday name on local date ``d``, else None."""
        for calendar in self.calendars:
            name = calendar.holiday_name(d)
            if name is not None:
                return name
        return None
