"""voicecast.compliance.calendar and .zones: window syntax, legal holidays, local-time checks.

Every French boundary of Code de la consommation D223-9 (mon-fri 10:00-13:00 14:00-20:00,
never on public holidays) is tested with ``now`` built in the callee's local time; the
expected holiday lists are written out by hand, not computed.

Numbers: fictional French (+33 1 99 00, +33 2 61 91, +33 3 53 01), US (555-01xx in area
codes 202 DC, 305 FL, 405 OK) and UK (+44 20 7946 0xxx) ranges. phonenumbers has no
fictional overseas ranges: the overseas and +262 numbers are phonenumbers' own example
numbers (``example_number_for_type``): +262 692 12 34 56 (Réunion mobile) and
+262 639 01 23 45 (Mayotte mobile) have two zones (Indian/Mayotte, Indian/Reunion).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from dateutil.easter import easter
from hypothesis import given, settings
from hypothesis import strategies as st

from voicecast.compliance.calendar import (
    CountryHolidays,
    FrenchHolidays,
    HolidayCalendar,
    NoHolidays,
    TimeRange,
    WeeklyWindows,
    WindowCheck,
    check_window,
    easter_sunday,
    next_open_at_or_after,
    parse_windows,
)
from voicecast.compliance.types import Reason
from voicecast.compliance.zones import (
    french_department_from_fields,
    number_region,
    number_zones,
    us_state,
)

FR = parse_windows("mon-fri 10:00-13:00 14:00-20:00")
US = parse_windows("daily 08:00-21:00")
US_FL_OK = parse_windows("daily 08:00-20:00")
NATIONAL = FrenchHolidays(None, "national")
CONSERVATIVE = FrenchHolidays(None, "conservative")
PARIS = ("Europe/Paris",)


def at(zone: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """An aware instant given as local wall time in ``zone`` (never in a gap here)."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone))


def paris(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return at("Europe/Paris", y, mo, d, h, mi)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def fr(
    now: datetime, calendar: HolidayCalendar = NATIONAL, zones: tuple[str, ...] = PARIS
) -> WindowCheck:
    return check_window(FR, calendar, zones, now)


def assert_closed(check: WindowCheck, reason: Reason, next_open: datetime | None) -> None:
    assert not check.open, check.detail
    assert check.reason is reason, check.detail
    assert check.closes_at is None
    if next_open is None:
        assert check.next_open is None
    else:
        assert check.next_open == next_open, check.detail
        assert check.next_open.tzinfo is UTC


def assert_open(check: WindowCheck, closes_at: datetime | None) -> None:
    assert check.open, check.detail
    assert check.reason is None
    assert check.closes_at == closes_at, check.detail


# --- parse_windows ----------------------------------------------------------------------------


def test_parse_french_window() -> None:
    assert FR.days[0] == (TimeRange(600, 780), TimeRange(840, 1200))
    assert FR.days[4] == FR.days[0]
    assert FR.days[5] == FR.days[6] == ()
    assert str(FR) == "mon-fri 10:00-13:00 14:00-20:00"
    assert FR.days[0][0].start.isoformat() == "10:00:00"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("mon-fri 10:00-13:00 14:00-20:00", "mon-fri 10:00-13:00 14:00-20:00"),
        ("  MON - FRI   14:00-20:00, 10:00 - 13:00 ", "mon-fri 10:00-13:00 14:00-20:00"),
        ("monday-friday 10:00-13:00 14:00-20:00", "mon-fri 10:00-13:00 14:00-20:00"),
        (
            "mon-fri 10:00-13:00 14:00-20:00; sat 10:00-12:00",
            "mon-fri 10:00-13:00 14:00-20:00; sat 10:00-12:00",
        ),
        ("daily 08:00-21:00", "daily 08:00-21:00"),
        ("every day 08:00-21:00", "daily 08:00-21:00"),
        ("mon-sun 8:00-21:00", "daily 08:00-21:00"),
        ("mon,wed, fri 09:00-10:00", "mon,wed,fri 09:00-10:00"),
        ("fri-mon 09:00-10:00", "mon,fri-sun 09:00-10:00"),
        ("mon 10:00-12:00 11:00-13:00 13:00-14:00", "mon 10:00-14:00"),
        ("mon 10:00-12:00; mon 14:00-15:00;", "mon 10:00-12:00 14:00-15:00"),
        ("sat 22:00-24:00", "sat 22:00-24:00"),
        ("daily 00:00-24:00", "any"),
        ("any", "any"),
        ("ANY", "any"),
        ("never", "never"),
        ("mon-tue 09:00-10:00; wed 09:00-10:00; sun 09:00-10:00", "mon-wed,sun 09:00-10:00"),
    ],
)
def test_parse_and_canonical_text(text: str, canonical: str) -> None:
    windows = parse_windows(text)
    assert str(windows) == canonical
    assert parse_windows(canonical) == windows
    assert hash(parse_windows(canonical)) == hash(windows)


def test_any_and_never() -> None:
    assert parse_windows("any") == WeeklyWindows.always()
    assert all(d == (TimeRange(0, 1440),) for d in parse_windows("any").days)
    assert parse_windows("never").is_empty
    assert parse_windows("sat 22:00-24:00").days[5][0].end is None


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (";", "no clause"),
        ("mon-fry 10:00-13:00", "'fry'"),
        ("lun-ven 10:00-13:00", "'lun'"),
        ("mon-fri", "no time range after 'mon-fri'"),
        ("10:00-13:00", "missing days before '10:00-13:00'"),
        ("mon-fri 10h00-13h00", "'10h00-13h00'"),
        ("mon-fri 10:00-13:00 foo", "'foo'"),
        ("mon foo 10:00-13:00", "unexpected 'foo'"),
        ("mon 10:60-11:00", "'10:60-11:00'"),
        ("mon 25:00-26:00", "'25:00-26:00'"),
        ("mon 24:00-24:00", "'24:00-24:00'"),
        ("mon 10:00-24:30", "'10:00-24:30'"),
        ("mon 13:00-10:00", "overnight range '13:00-10:00'"),
        ("mon 22:00-02:00", "overnight range '22:00-02:00'"),
        ("mon 10:00-10:00", "empty or overnight range '10:00-10:00'"),
        ("mon,,tue 10:00-11:00", "empty day"),
        ("any; mon 10:00-11:00", "'any' must be the whole window"),
        ("mon 10:00", "'10:00'"),
    ],
)
def test_parse_errors_name_the_token(text: str, token: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        parse_windows(text)
    assert token in str(err.value)


def test_structural_errors() -> None:
    with pytest.raises(ValueError):
        TimeRange(600, 600)
    with pytest.raises(ValueError):
        TimeRange(0, 1441)
    with pytest.raises(ValueError, match="7 days"):
        WeeklyWindows(((),))


def test_intersect_and_is_within() -> None:
    uk = parse_windows("mon-sat 08:00-21:00")
    campaign = parse_windows("mon-fri 09:00-18:00")
    assert str(FR.intersect(campaign)) == "mon-fri 10:00-13:00 14:00-18:00"
    assert FR.intersect(uk) == FR
    assert FR.is_within(uk)
    assert not uk.is_within(FR)
    assert FR.intersect(US) == FR
    assert str(US.intersect(US_FL_OK)) == "daily 08:00-20:00"
    assert US_FL_OK.is_within(US)
    assert str(FR.intersect(parse_windows("sat-sun 10:00-12:00"))) == "never"
    assert parse_windows("never").is_within(FR)
    assert FR.is_within(WeeklyWindows.always())
    assert FR.intersect(WeeklyWindows.always()) == FR
    assert str(FR.intersect(parse_windows("mon 12:00-15:00"))) == "mon 12:00-13:00 14:00-15:00"


_ranges = st.lists(
    st.tuples(st.integers(0, 1439), st.integers(1, 1440))
    .filter(lambda r: r[0] < r[1])
    .map(lambda r: TimeRange(*r)),
    max_size=3,
).map(tuple)
_windows = st.lists(_ranges, min_size=7, max_size=7).map(lambda d: WeeklyWindows(tuple(d)))


@settings(max_examples=100, deadline=None)
@given(_windows, _windows)
def test_windows_algebra(a: WeeklyWindows, b: WeeklyWindows) -> None:
    assert parse_windows(str(a)) == a
    both = a.intersect(b)
    assert both == b.intersect(a)
    assert both.is_within(a)
    assert both.is_within(b)
    assert a.is_within(a)
    for day in range(7):
        for minute in range(0, 1440, 11):
            inside_a = any(r.start_minute <= minute < r.end_minute for r in a.days[day])
            inside_b = any(r.start_minute <= minute < r.end_minute for r in b.days[day])
            inside = any(r.start_minute <= minute < r.end_minute for r in both.days[day])
            assert inside == (inside_a and inside_b)


# --- French weekly boundaries (D223-9), Thursday 2026-12-03 / Friday 2026-12-04 ---------------


@pytest.mark.parametrize(
    ("hh", "mm", "is_open", "edge"),
    [
        (9, 59, False, (10, 0)),
        (10, 0, True, (13, 0)),
        (12, 59, True, (13, 0)),
        (13, 0, False, (14, 0)),
        (13, 59, False, (14, 0)),
        (14, 0, True, (20, 0)),
        (19, 59, True, (20, 0)),
    ],
)
def test_french_hours_boundaries(hh: int, mm: int, is_open: bool, edge: tuple[int, int]) -> None:
    check = fr(paris(2026, 12, 3, hh, mm))
    if is_open:
        assert_open(check, paris(2026, 12, 3, *edge).astimezone(UTC))
        assert check.next_open == paris(2026, 12, 3, hh, mm)
    else:
        assert_closed(check, Reason.OUTSIDE_HOURS, paris(2026, 12, 3, *edge))


def test_french_evening_closes_until_next_morning() -> None:
    assert_closed(fr(paris(2026, 12, 3, 20, 0)), Reason.OUTSIDE_HOURS, paris(2026, 12, 4, 10))
    assert_closed(fr(paris(2026, 12, 3, 23, 59)), Reason.OUTSIDE_HOURS, paris(2026, 12, 4, 10))
    assert_closed(fr(paris(2026, 12, 4, 0, 0)), Reason.OUTSIDE_HOURS, paris(2026, 12, 4, 10))


def test_friday_evening_to_monday_and_detail() -> None:
    check = fr(paris(2026, 12, 4, 20, 0))
    assert_closed(check, Reason.OUTSIDE_HOURS, paris(2026, 12, 7, 10))
    assert check.detail == (
        "20:00 in Europe/Paris on Friday 2026-12-04: outside 10:00-13:00 14:00-20:00; "
        "next 2026-12-07 10:00 Europe/Paris"
    )


@pytest.mark.parametrize("day", [5, 6])
@pytest.mark.parametrize("hh", [0, 10, 11, 15, 19])
def test_weekend_closed(day: int, hh: int) -> None:
    check = fr(paris(2026, 12, day, hh))
    assert_closed(check, Reason.CLOSED_DAY, paris(2026, 12, 7, 10))
    assert "Saturday" in check.detail or "Sunday" in check.detail


def test_open_detail() -> None:
    check = fr(paris(2026, 12, 3, 11, 30))
    assert check.detail == (
        "11:30 in Europe/Paris on Thursday 2026-12-03: inside 10:00-13:00 14:00-20:00 "
        "until 2026-12-03 13:00 Europe/Paris"
    )


# --- French public holidays (Code du travail L3133-1, L3134-13, L3422-2) -------------------

NATIONAL_2026 = [
    date(2026, 1, 1),
    date(2026, 4, 6),  # Easter Monday (Easter 5 April)
    date(2026, 5, 1),
    date(2026, 5, 8),
    date(2026, 5, 14),  # Ascension
    date(2026, 5, 25),  # Whit Monday
    date(2026, 7, 14),
    date(2026, 8, 15),
    date(2026, 11, 1),
    date(2026, 11, 11),
    date(2026, 12, 25),
]
NATIONAL_2027 = [
    date(2027, 1, 1),
    date(2027, 3, 29),  # Easter Monday (Easter 28 March, the DST change day)
    date(2027, 5, 1),
    date(2027, 5, 6),  # Ascension
    date(2027, 5, 8),
    date(2027, 5, 17),  # Whit Monday
    date(2027, 7, 14),
    date(2027, 8, 15),
    date(2027, 11, 1),
    date(2027, 11, 11),
    date(2027, 12, 25),
]


@pytest.mark.parametrize("day", NATIONAL_2026 + NATIONAL_2027, ids=str)
@pytest.mark.parametrize("calendar", [NATIONAL, CONSERVATIVE, FrenchHolidays("75")], ids=repr)
def test_national_holidays_closed(day: date, calendar: FrenchHolidays) -> None:
    for hh, mm in [(10, 0), (11, 0), (14, 0), (19, 59)]:
        check = fr(paris(day.year, day.month, day.day, hh, mm), calendar)
        assert not check.open
        assert check.reason is Reason.PUBLIC_HOLIDAY, check.detail
        assert "public holiday" in check.detail
        assert check.next_open is not None
        assert check.next_open > paris(day.year, day.month, day.day, 23, 59)


@pytest.mark.parametrize(("year", "expected"), [(2026, NATIONAL_2026), (2027, NATIONAL_2027)])
@pytest.mark.parametrize("region", ["75", "2A", "2B", "01", "95", "13", "PM", "975"])
def test_national_days_exactly(year: int, expected: list[date], region: str) -> None:
    assert list(FrenchHolidays(region).days(year)) == expected
    assert list(NATIONAL.days(year)) == expected
    assert FrenchHolidays(region).holiday_name(date(year, 12, 26)) is None


def test_day_before_and_after_a_holiday_are_open() -> None:
    assert fr(paris(2026, 7, 13, 11)).open
    assert fr(paris(2026, 7, 15, 11)).open
    assert_closed(fr(paris(2026, 7, 14, 11)), Reason.PUBLIC_HOLIDAY, paris(2026, 7, 15, 10))


@pytest.mark.parametrize(
    ("friday", "tuesday"),
    [
        ((2026, 4, 3), (2026, 4, 7)),  # Easter Monday 2026-04-06
        ((2026, 5, 22), (2026, 5, 26)),  # Whit Monday 2026-05-25
        ((2027, 5, 14), (2027, 5, 18)),  # Whit Monday 2027-05-17
    ],
)
def test_friday_evening_before_holiday_monday(
    friday: tuple[int, int, int], tuesday: tuple[int, int, int]
) -> None:
    check = fr(paris(*friday, 20, 0), FrenchHolidays("75"))
    assert_closed(check, Reason.OUTSIDE_HOURS, paris(*tuesday, 10))
    # Alsace-Moselle has Good Friday on 2026-04-03 as well:
    assert fr(paris(*friday, 20, 0), FrenchHolidays("57")).next_open == paris(*tuesday, 10)


ALSACE_DAYS = [date(2026, 4, 3), date(2027, 3, 26), date(2025, 12, 26), date(2028, 12, 26)]


@pytest.mark.parametrize("day", ALSACE_DAYS, ids=str)
@pytest.mark.parametrize(
    ("calendar", "closed"),
    [
        (FrenchHolidays("57"), True),
        (FrenchHolidays("67"), True),
        (FrenchHolidays("68"), True),
        (FrenchHolidays(None, "conservative"), True),
        (FrenchHolidays("FR", "conservative"), True),
        (FrenchHolidays("75"), False),
        (FrenchHolidays("2A"), False),
        (FrenchHolidays(None, "national"), False),
        (FrenchHolidays("974"), False),
        (FrenchHolidays("GP"), False),  # Good Friday is a custom there, not a legal holiday
    ],
    ids=repr,
)
def test_alsace_moselle_days(day: date, calendar: FrenchHolidays, closed: bool) -> None:
    check = fr(paris(day.year, day.month, day.day, 11), calendar)
    if closed:
        assert check.reason is Reason.PUBLIC_HOLIDAY, check.detail
        assert not check.open
    else:
        assert_open(check, paris(day.year, day.month, day.day, 13).astimezone(UTC))


# (department, ISO code, zone, an abolition day that is a weekday)
ABOLITION = [
    ("971", "GP", "America/Guadeloupe", date(2026, 5, 27)),
    ("972", "MQ", "America/Martinique", date(2026, 5, 22)),
    ("973", "GF", "America/Cayenne", date(2026, 6, 10)),
    ("974", "RE", "Indian/Reunion", date(2027, 12, 20)),
    ("976", "YT", "Indian/Mayotte", date(2026, 4, 27)),
    ("977", "BL", "America/St_Barthelemy", date(2026, 10, 9)),
    ("978", "MF", "America/Marigot", date(2026, 5, 28)),
]


@pytest.mark.parametrize(("dept", "iso", "zone", "day"), ABOLITION, ids=lambda v: str(v))
def test_abolition_day_in_local_zone(dept: str, iso: str, zone: str, day: date) -> None:
    for region in (dept, iso, iso.lower()):
        calendar = FrenchHolidays(region)
        check = fr(at(zone, day.year, day.month, day.day, 11), calendar, (zone,))
        assert check.reason is Reason.PUBLIC_HOLIDAY, check.detail
        assert f"in {zone} on" in check.detail
        assert "Abolition" in check.detail
        # the evening before and the day after are ordinary days
        before = fr(at(zone, day.year, day.month, day.day - 1, 11), calendar, (zone,))
        after = fr(at(zone, day.year, day.month, day.day + 1, 11), calendar, (zone,))
        assert before.open or day.weekday() == 0 or dept == "978"  # MF: 27 and 28 May
        assert after.open or day.weekday() == 4
    # conservative unknown region blocks it too; national and other departments do not
    check = fr(at(zone, day.year, day.month, day.day, 11), CONSERVATIVE, (zone,))
    assert check.reason is Reason.PUBLIC_HOLIDAY
    assert fr(at(zone, day.year, day.month, day.day, 11), NATIONAL, (zone,)).open
    other = "974" if dept != "974" else "971"
    assert fr(at(zone, day.year, day.month, day.day, 11), FrenchHolidays(other), (zone,)).open


def test_abolition_day_uses_callee_local_date() -> None:
    # 27 May in Guadeloupe (UTC-4) starts at 04:00 UTC: at 03:30 UTC it is still 26 May there.
    gp = FrenchHolidays("971")
    early = check_window(FR, gp, ("America/Guadeloupe",), utc(2026, 5, 27, 3, 30))
    assert early.reason is Reason.OUTSIDE_HOURS  # 23:30 on Tuesday 26 May
    assert early.next_open == at("America/Guadeloupe", 2026, 5, 28, 10)


def test_saint_martin_both_dates() -> None:
    mf = FrenchHolidays("MF")
    assert mf.holiday_name(date(2026, 5, 27)) is not None  # Code du travail L3422-2 text
    assert mf.holiday_name(date(2026, 5, 28)) is not None  # date kept locally since 2019


@pytest.mark.parametrize(
    ("region", "day"),
    [
        ("971", date(2026, 3, 12)),  # Mi-Carême (package)
        ("971", date(2026, 7, 21)),  # Victor Schoelcher Day (package)
        ("972", date(2026, 7, 21)),
        ("971", date(2026, 4, 3)),  # Good Friday (package, Guadeloupe)
    ],
)
def test_package_days_outside_the_allow_list_are_not_blocked(region: str, day: date) -> None:
    subdiv = {"971": "971", "972": "972"}[region]
    assert day in holidays.country_holidays("FR", subdiv=subdiv, years=day.year)
    assert FrenchHolidays(region).holiday_name(day) is None
    assert CONSERVATIVE.holiday_name(day) is None or day == date(2026, 4, 3)


def test_conservative_union_2026() -> None:
    extra = {
        date(2026, 4, 3): "Good Friday",
        date(2026, 12, 26): "26 Dec",
        date(2026, 4, 27): "YT",
        date(2026, 5, 22): "MQ",
        date(2026, 5, 27): "GP, MF",
        date(2026, 5, 28): "MF",
        date(2026, 6, 10): "GF",
        date(2026, 10, 9): "BL",
        date(2026, 12, 20): "RE",
    }
    assert set(CONSERVATIVE.days(2026)) == set(NATIONAL_2026) | set(extra)


@pytest.mark.parametrize("year", range(2020, 2041))
@pytest.mark.parametrize(
    ("region", "subdiv"),
    [
        (None, None),
        ("57", "57"),
        ("67", "6AE"),
        ("971", "971"),
        ("972", "972"),
        ("973", "973"),
        ("974", "974"),
        ("976", "976"),
        ("BL", "BL"),
        ("PM", "PM"),
    ],
)
def test_allow_list_agrees_with_pinned_package(
    year: int, region: str | None, subdiv: str | None
) -> None:
    """Every legal day is a day of the pinned holidays package (which supplies the names)."""
    ours = FrenchHolidays(region, "national").days(year)
    package = holidays.country_holidays("FR", subdiv=subdiv, years=year, language="en_US")
    assert set(ours) <= set(package)
    assert all(ours[d] == package[d] for d in ours)
    extra = {
        "57": [easter(year) - timedelta(days=2), date(year, 12, 26)],
        "67": [easter(year) - timedelta(days=2), date(year, 12, 26)],
        "971": [date(year, 5, 27)],
        "972": [date(year, 5, 22)],
        "973": [date(year, 6, 10)],
        "974": [date(year, 12, 20)],
        "976": [date(year, 4, 27)],
        "BL": [date(year, 10, 9)],
    }.get(region or "", [])
    assert set(ours) == set(NATIONAL.days(year)) | set(extra)


def test_easter() -> None:
    assert easter_sunday(2026) == date(2026, 4, 5)
    assert easter_sunday(2027) == date(2027, 3, 28)
    for year in range(1583, 2500):
        assert easter_sunday(year) == easter(year)


def test_french_region_errors() -> None:
    for bad in ("96", "00", "999", "NC", "Moselle", "20A"):
        with pytest.raises(ValueError, match="unknown French region"):
            FrenchHolidays(bad)
    with pytest.raises(ValueError, match="conservative"):
        FrenchHolidays(None, "strict")  # type: ignore[arg-type]
    assert FrenchHolidays("20").holiday_name(date(2026, 12, 26)) is None


# --- daylight saving time ------------------------------------------------------------------


def test_paris_spring_forward_week() -> None:
    # Friday 2027-03-26 20:00 CET; Monday 29 March is Easter Monday; DST starts 28 March.
    check = fr(paris(2027, 3, 26, 20), FrenchHolidays("75"))
    assert_closed(check, Reason.OUTSIDE_HOURS, utc(2027, 3, 30, 8))  # Tue 10:00 CEST
    plain = check_window(FR, NoHolidays(), PARIS, paris(2027, 3, 26, 20))
    assert plain.next_open == utc(2027, 3, 29, 8)  # Mon 10:00 CEST
    assert plain.detail.endswith("next 2027-03-29 10:00 Europe/Paris")
    # The Friday's own hours are CET (UTC+1).
    assert fr(utc(2027, 3, 26, 18, 59), FrenchHolidays("75")).closes_at == utc(2027, 3, 26, 19)


def test_paris_fall_back_week() -> None:
    check = fr(paris(2026, 10, 23, 20), FrenchHolidays("75"))
    assert_closed(check, Reason.OUTSIDE_HOURS, utc(2026, 10, 26, 9))  # Mon 10:00 CET
    assert fr(utc(2026, 10, 23, 17, 59)).closes_at == utc(2026, 10, 23, 18)  # 20:00 CEST


def test_whole_day_on_23_and_25_hour_days() -> None:
    sundays = parse_windows("sun 00:00-24:00")
    spring = check_window(sundays, NoHolidays(), PARIS, paris(2027, 3, 28, 0))
    assert spring.open
    assert spring.closes_at == utc(2027, 3, 28, 22)  # 23 h after 23:00 UTC on the 27th
    assert spring.closes_at - utc(2027, 3, 27, 23) == timedelta(hours=23)
    autumn = check_window(sundays, NoHolidays(), PARIS, paris(2026, 10, 25, 0))
    assert autumn.open
    assert autumn.closes_at - utc(2026, 10, 24, 22) == timedelta(hours=25)
    # Saturday 23:59 -> opens at the Sunday's local midnight
    assert check_window(sundays, NoHolidays(), PARIS, paris(2026, 10, 24, 23, 59)).next_open == (
        utc(2026, 10, 24, 22)
    )


def test_boundaries_in_gap_and_fold() -> None:
    windows = parse_windows("sun 02:30-03:30")
    # 2027-03-28: 02:00-03:00 does not exist; the range starts at 03:00 CEST (01:00 UTC)
    spring = check_window(windows, NoHolidays(), PARIS, utc(2027, 3, 28, 0, 0))
    assert_closed(spring, Reason.OUTSIDE_HOURS, utc(2027, 3, 28, 1))
    assert check_window(windows, NoHolidays(), PARIS, utc(2027, 3, 28, 1)).closes_at == utc(
        2027, 3, 28, 1, 30
    )
    # 2026-10-25: 02:30 happens twice; the range starts at the first (00:30 UTC, CEST) and
    # ends at 03:30 CET (02:30 UTC)
    autumn = check_window(windows, NoHolidays(), PARIS, utc(2026, 10, 25, 0, 0))
    assert_closed(autumn, Reason.OUTSIDE_HOURS, utc(2026, 10, 25, 0, 30))
    assert check_window(windows, NoHolidays(), PARIS, utc(2026, 10, 25, 0, 30)).closes_at == utc(
        2026, 10, 25, 2, 30
    )
    # a range that lies entirely inside the gap never opens that day
    gap_only = parse_windows("sun 02:10-02:50")
    check = check_window(gap_only, NoHolidays(), PARIS, utc(2027, 3, 28, 0, 0))
    assert check.next_open == paris(2027, 4, 4, 2, 10)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 2026-11-01: 02:00 EDT -> 01:00 EST. Saturday 21:00 EDT -> Sunday 08:00 EST.
        (at("America/New_York", 2026, 10, 31, 21), utc(2026, 11, 1, 13)),
        # 2027-03-14: 02:00 EST -> 03:00 EDT. Saturday 21:00 EST -> Sunday 08:00 EDT.
        (at("America/New_York", 2027, 3, 13, 21), utc(2027, 3, 14, 12)),
    ],
)
def test_us_dst_days(now: datetime, expected: datetime) -> None:
    check = check_window(US, NoHolidays(), ("America/New_York",), now)
    assert_closed(check, Reason.OUTSIDE_HOURS, expected)
    opened = check_window(US, NoHolidays(), ("America/New_York",), expected)
    assert opened.open
    assert opened.closes_at == expected + timedelta(hours=13)


# --- other zones, several zones, US windows (47 CFR 64.1200(c)(1)) ------------------------


def test_reunion_from_utc() -> None:
    zones = ("Indian/Reunion",)  # UTC+4, no DST
    cal = FrenchHolidays("974")
    assert_closed(
        check_window(FR, cal, zones, utc(2026, 12, 3, 5, 59)),
        Reason.OUTSIDE_HOURS,
        utc(2026, 12, 3, 6),
    )
    assert_open(check_window(FR, cal, zones, utc(2026, 12, 3, 6)), utc(2026, 12, 3, 9))
    assert_closed(
        check_window(FR, cal, zones, utc(2026, 12, 3, 16)),
        Reason.OUTSIDE_HOURS,
        utc(2026, 12, 4, 6),
    )
    # Friday 20:00 UTC is Saturday 00:00 in Réunion: a closed day
    assert_closed(
        check_window(FR, cal, zones, utc(2026, 12, 4, 20)), Reason.CLOSED_DAY, utc(2026, 12, 7, 6)
    )
    # any zone for `now`, same instant, same answer
    same = utc(2026, 12, 3, 7).astimezone(ZoneInfo("America/Los_Angeles"))
    assert check_window(FR, cal, zones, same) == check_window(FR, cal, zones, utc(2026, 12, 3, 7))


def test_262_number_with_two_zones() -> None:
    zones = number_zones("+262692123456")
    assert zones == ("Indian/Mayotte", "Indian/Reunion")  # UTC+3 and UTC+4
    cal = FrenchHolidays("RE")
    reunion = "Indian/Reunion"
    # 13:30 Réunion = 12:30 Mayotte: Réunion's lunch break
    check = check_window(FR, cal, zones, at(reunion, 2026, 12, 3, 13, 30))
    assert_closed(check, Reason.OUTSIDE_HOURS, at(reunion, 2026, 12, 3, 15))
    # 14:00 Réunion is 13:00 in Mayotte: still closed; both open at 14:00 Mayotte
    assert check_window(FR, cal, zones, at(reunion, 2026, 12, 3, 14)).next_open == utc(
        2026, 12, 3, 11
    )
    assert "Indian/Reunion" in check.detail
    assert "next 2026-12-03 15:00 Indian/Reunion" in check.detail
    # 10:30 Réunion = 09:30 Mayotte: closed (Mayotte), opens 11:00 Réunion
    early = check_window(FR, cal, zones, at(reunion, 2026, 12, 3, 10, 30))
    assert_closed(early, Reason.OUTSIDE_HOURS, at(reunion, 2026, 12, 3, 11))
    assert "Indian/Mayotte" in early.detail
    # 11:00 Réunion: open in both until 13:00 Réunion
    assert_open(check_window(FR, cal, zones, at(reunion, 2026, 12, 3, 11)), utc(2026, 12, 3, 9))
    # 19:30 Réunion = 18:30 Mayotte: closes at 20:00 Réunion
    assert_open(
        check_window(FR, cal, zones, at(reunion, 2026, 12, 3, 19, 30)), utc(2026, 12, 3, 16)
    )


def test_multi_zone_holiday_in_one_zone() -> None:
    # 20 Dec 2027 (Monday) is Réunion's day (conservative: blocked in both local dates)
    zones = ("Indian/Mayotte", "Indian/Reunion")
    check = check_window(FR, CONSERVATIVE, zones, at("Indian/Reunion", 2027, 12, 20, 11))
    assert check.reason is Reason.PUBLIC_HOLIDAY
    assert check.next_open == at("Indian/Reunion", 2027, 12, 21, 11)


def test_us_new_york_window() -> None:
    ny = ("America/New_York",)
    assert_open(
        check_window(US, NoHolidays(), ny, at(ny[0], 2026, 12, 6, 20, 59)),
        at(ny[0], 2026, 12, 6, 21).astimezone(UTC),
    )
    assert_closed(
        check_window(US, NoHolidays(), ny, at(ny[0], 2026, 12, 6, 21)),
        Reason.OUTSIDE_HOURS,
        at(ny[0], 2026, 12, 7, 8),
    )
    assert_closed(
        check_window(US, NoHolidays(), ny, at(ny[0], 2026, 12, 6, 7, 59)),
        Reason.OUTSIDE_HOURS,
        at(ny[0], 2026, 12, 6, 8),
    )
    assert check_window(US, NoHolidays(), ny, at(ny[0], 2026, 12, 6, 8)).open


def test_florida_window() -> None:
    number = "+13055550123"
    assert us_state(number) == "FL"
    zones = number_zones(number)
    assert zones == ("America/New_York",)
    assert check_window(US_FL_OK, NoHolidays(), zones, at(zones[0], 2026, 12, 5, 19, 59)).open
    check = check_window(US_FL_OK, NoHolidays(), zones, at(zones[0], 2026, 12, 5, 20))
    assert_closed(check, Reason.OUTSIDE_HOURS, at(zones[0], 2026, 12, 6, 8))
    # Oklahoma is on Central time
    ok = number_zones("+14055550123")
    assert ok == ("America/Chicago",)
    assert not check_window(US_FL_OK, NoHolidays(), ok, utc(2026, 12, 6, 2)).open  # 20:00 CST
    assert check_window(US_FL_OK, NoHolidays(), ok, utc(2026, 12, 6, 1, 59)).open


def _single_open(zones: tuple[str, ...], now: datetime) -> bool:
    return all(check_window(US, NoHolidays(), (z,), now).open for z in zones)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 366 * 24 * 4))
def test_toll_free_intersection_matches_each_zone(quarter_hours: int) -> None:
    zones = number_zones("+18005550123")
    assert len(zones) > 30
    now = utc(2026, 1, 1) + timedelta(minutes=15 * quarter_hours)
    check = check_window(US, NoHolidays(), zones, now)
    assert check.open == _single_open(zones, now)
    assert check.next_open is not None
    assert _single_open(zones, check.next_open)
    if not check.open:
        assert not _single_open(zones, check.next_open - timedelta(minutes=1))
    else:
        assert check.closes_at is not None
        assert not _single_open(zones, check.closes_at)
        assert _single_open(zones, check.closes_at - timedelta(minutes=1))


# --- API edges, caching --------------------------------------------------------------------


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="aware"):
        check_window(FR, NATIONAL, PARIS, datetime(2026, 12, 3, 11))
    with pytest.raises(ValueError, match="zones is empty"):
        check_window(FR, NATIONAL, (), utc(2026, 12, 3, 11))
    with pytest.raises(ValueError, match="Mars/Olympus"):
        check_window(FR, NATIONAL, ("Mars/Olympus",), utc(2026, 12, 3, 11))
    with pytest.raises(ValueError, match="horizon"):
        check_window(FR, NATIONAL, PARIS, utc(2026, 12, 3, 11), horizon_days=0)


def test_never_and_horizon() -> None:
    check = check_window(parse_windows("never"), NoHolidays(), PARIS, utc(2026, 12, 3, 11))
    assert_closed(check, Reason.CLOSED_DAY, None)
    assert "no calling time within 400 days" in check.detail
    # a window only on 29 Feb-like rare days: sundays, with horizon 3 days from a Monday
    sundays = parse_windows("sun 10:00-11:00")
    assert (
        next_open_at_or_after(sundays, NoHolidays(), PARIS, paris(2026, 12, 7, 12), horizon_days=3)
        is None
    )
    assert next_open_at_or_after(sundays, NoHolidays(), PARIS, paris(2026, 12, 7, 12)) == paris(
        2026, 12, 13, 10
    )


def test_always_open_has_no_close_within_horizon() -> None:
    check = check_window(WeeklyWindows.always(), NoHolidays(), PARIS, utc(2026, 12, 3, 11))
    assert_open(check, None)
    # but a holiday closes it at local midnight
    check = check_window(WeeklyWindows.always(), NATIONAL, PARIS, paris(2026, 12, 24, 12))
    assert_open(check, paris(2026, 12, 25, 0).astimezone(UTC))


def test_results_are_cached() -> None:
    now = paris(2026, 12, 3, 11)
    first = check_window(FR, FrenchHolidays("57"), PARIS, now)
    assert check_window(FR, FrenchHolidays("57"), PARIS, now.astimezone(UTC)) is first
    assert check_window(parse_windows(str(FR)), FrenchHolidays("57"), PARIS, now) is first


def test_country_holidays() -> None:
    eng = CountryHolidays("GB", "ENG")
    assert eng.holiday_name(date(2026, 8, 31)) is not None  # Summer Bank Holiday
    assert eng.holiday_name(date(2026, 12, 25)) == "Christmas Day"
    assert CountryHolidays("GB").holiday_name(date(2026, 8, 31)) is None
    assert CountryHolidays("GB", "ZZ").holiday_name(date(2026, 12, 25)) == "Christmas Day"
    assert CountryHolidays("XX").holiday_name(date(2026, 12, 25)) is None
    assert NoHolidays().holiday_name(date(2026, 12, 25)) is None
    uk = parse_windows("mon-sat 08:00-21:00")
    check = check_window(uk, eng, ("Europe/London",), at("Europe/London", 2026, 12, 25, 12))
    # Sat 26 Boxing Day, Sun closed, Mon 28 Boxing Day (observed)
    assert_closed(check, Reason.PUBLIC_HOLIDAY, at("Europe/London", 2026, 12, 29, 8))


# --- zones.py -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "zones", "region"),
    [
        ("+33199000011", ("Europe/Paris",), "FR"),
        ("+33261910011", ("Europe/Paris",), "FR"),
        ("+33353010011", ("Europe/Paris",), "FR"),
        ("+12025550123", ("America/New_York",), "US"),
        ("+442079460123", ("Europe/London",), "GB"),
        ("+262262161234", ("Indian/Reunion",), "RE"),
        ("+262269601234", ("Indian/Mayotte",), "YT"),
        ("+262692123456", ("Indian/Mayotte", "Indian/Reunion"), "RE"),
        ("+262639012345", ("Indian/Mayotte", "Indian/Reunion"), "YT"),
        ("+590590201234", ("America/Guadeloupe",), "GP"),
        ("+590590271234", ("America/Guadeloupe",), "BL"),
        ("+596596301234", ("America/Martinique",), "MQ"),
        ("+594594101234", ("America/Cayenne",), "GF"),
        ("+508430123", ("America/Miquelon",), "PM"),
    ],
)
def test_number_zones_and_region(number: str, zones: tuple[str, ...], region: str) -> None:
    assert number_zones(number) == zones
    assert number_region(number) == region


def test_number_zone_fallbacks() -> None:
    toll_free = number_zones("+18005550123")
    assert toll_free == tuple(sorted(set(toll_free)))
    assert {"America/New_York", "Pacific/Honolulu", "Pacific/Guam"} <= set(toll_free)
    assert number_region("+18005550123") == "US"
    # invalid but parseable: the country calling code's zones
    assert number_zones("+33999") == ("Europe/Paris",)
    assert number_region("+33999") is None  # invalid: no region, the gate blocks it
    assert number_zones("+262269123456") == ("Indian/Mayotte", "Indian/Reunion")
    assert number_region("+262269123456") is None  # +262 is shared by RE and YT
    assert number_zones("not a number") == ()
    assert number_region("not a number") is None
    # UK mobiles: London and the Crown Dependencies
    assert "Europe/London" in number_zones("+447700900123")


@pytest.mark.parametrize(
    ("number", "state"),
    [
        ("+13055550123", "FL"),
        ("+14055550123", "OK"),
        ("+19185550123", "OK"),
        ("+12025550123", "DC"),
        ("+12125550123", "NY"),
        ("+13052345678", "FL"),  # geocoder says "Miami, FL"
        ("+18005550123", None),  # toll-free
        ("+14165550123", None),  # Canada
        ("+33199000011", None),
        ("junk", None),
    ],
)
def test_us_state(number: str, state: str | None) -> None:
    assert us_state(number) == state


@pytest.mark.parametrize(
    ("fields", "dept"),
    [
        ({"Département": "57"}, "57"),
        ({"departement": "2a"}, "2A"),
        ({"DEPT": 7}, "07"),
        ({"dep": "974"}, "974"),
        ({"dep": "67000"}, "67"),
        ({"Code postal": "57000"}, "57"),
        ({"postal_code": "97411"}, "974"),
        ({"CP": "97600"}, "976"),
        ({"zip": 1000}, "01"),
        ({"zipcode": 68100.0}, "68"),
        ({"Postal-Code": " 75 008 "}, "75"),
        ({"cp": "20000"}, "2A"),
        ({"cp": "20200"}, "2B"),
        ({"cp": "97133"}, "977"),
        ({"cp": "97150"}, "978"),
        ({"département": "Moselle", "cp": "57100"}, "57"),
        ({"dept": "57", "cp": "75001"}, "57"),
        ({"département": "Moselle"}, "57"),  # names of departments with own holidays
        ({"région": "Grand Est"}, None),
        ({"cp": "98000"}, None),
        ({"cp": "1234"}, None),
        ({"dep": "96"}, None),
        ({"dep": True}, None),
        ({"dep": None}, None),
        ({"city": "Metz"}, None),
        ({}, None),
    ],
)
def test_french_department_from_fields(fields: dict[str, object], dept: str | None) -> None:
    assert french_department_from_fields(fields) == dept
    if dept is not None:
        FrenchHolidays(dept)  # accepted as a region
