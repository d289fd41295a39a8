"""Rule packs: the law of one jurisdiction, as data.

A pack is chosen per contact from the E.164 number's region (``phonenumbers``): France
(metropolitan and overseas), the United States, the United Kingdom, and a generic pack for
every other country whose values are the strictest of the three. A campaign may tighten a
pack (narrower hours, fewer attempts) and never loosen it: :func:`effective_rules` only
intersects windows and takes minimums.

Sources: ``../shared/COMPLIANCE-RULES.md``; each field below names its article.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache

import holidays

from voicecast.compliance.calendar import (
    CountryHolidays,
    FrenchHolidays,
    HolidayCalendar,
    NoHolidays,
    UnionHolidays,
    WeeklyWindows,
    parse_windows,
)
from voicecast.compliance.types import Audience, Purpose

# Regions (phonenumbers region codes) of each pack.
FR_REGIONS = frozenset({"FR", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF"})
UK_REGIONS = frozenset({"GB", "GG", "JE", "IM"})
# 47 CFR 64.1200 covers the US territories too (Puerto Rico, USVI, Guam, N. Mariana, Samoa)
US_REGIONS = frozenset({"US", "PR", "VI", "GU", "MP", "AS"})

# Overseas French regions -> the department code used for their holidays (L3422-2).
OVERSEAS_DEPARTMENTS = {"GP": "971", "MQ": "972", "GF": "973", "RE": "974", "YT": "976"}
# A French department (from the contact's address) -> its time zone (D223-9: local time).
_OVERSEAS_ZONES = {
    "971": "America/Guadeloupe",
    "972": "America/Martinique",
    "973": "America/Cayenne",
    "974": "Indian/Reunion",
    "976": "Indian/Mayotte",
    "977": "America/St_Barthelemy",
    "978": "America/Marigot",
    "PM": "America/Miquelon",
    "BL": "America/St_Barthelemy",
    "MF": "America/Marigot",
}


def department_zone(subdivision: str | None) -> str | None:
    """The IANA zone of a French department (``"974"`` -> ``Indian/Reunion``; metropolitan
    departments -> ``Europe/Paris``), None when unknown."""
    if not subdivision:
        return None
    return _OVERSEAS_ZONES.get(subdivision, "Europe/Paris" if subdivision[:2] < "97" else None)


D223_9 = "Code de la consommation D223-9 (décret 2022-1313)"
L34_5 = "CPCE L34-5"
LOI_2025_594 = "loi 2025-594 art. 13 (consent for all consumer canvassing from 2026-08-11)"
L223_1 = "Code de la consommation L223-1 (Bloctel)"
ARCEP_NPV = "ARCEP décision 2022-1583"
CFR_HOURS = "47 CFR 64.1200(c)(1)"
CFR_CONSENT = "47 CFR 64.1200(a)(2)-(3); FCC 22-85"
CFR_EXEMPT_CAP = "47 CFR 64.1200(a)(3)"
CFR_DNC = "47 CFR 64.1200(c)(2)"
CFR_CALLER_ID = "47 CFR 64.1601(e); 64.1200(b)"
FL_OK = "Fla. Stat. 501.616; 15 O.S. 775C"
PECR_19 = "PECR reg. 19"
PECR_21 = "PECR reg. 21 (TPS)"
PECR_CLI = "PECR as amended 2016 (caller ID)"
OFCOM = "Ofcom persistent-misuse policy"
GENERIC = "voicecast generic pack: the strictest of the FR, US and UK packs"


@dataclass(frozen=True, slots=True)
class OppositionListSpec:
    """A national opposition list voicecast knows.

    Attributes:
        name: ``bloctel`` | ``us-dnc`` | ``tps``.
        country: ISO 3166 country it covers (``FR``, ``US``, ``GB``).
        region: default region for numbers written without a country code.
        title: human name.
        source: the legal source that requires scrubbing against it.
        max_age_days: a stored version older than this is stale.
    """

    name: str
    country: str
    region: str
    title: str
    source: str
    max_age_days: int


OPPOSITION_LISTS: dict[str, OppositionListSpec] = {
    "bloctel": OppositionListSpec("bloctel", "FR", "FR", "Bloctel (France)", L223_1, 30),
    "us-dnc": OppositionListSpec(
        "us-dnc", "US", "US", "National Do Not Call Registry (US)", CFR_DNC, 31
    ),
    "tps": OppositionListSpec("tps", "GB", "GB", "Telephone Preference Service (UK)", PECR_21, 28),
}
"""Known national opposition lists by name: the one place their maximum age and legal
source are stated (rule packs name theirs; the stores import them)."""


@dataclass(frozen=True, slots=True)
class CapRule:
    """At most ``max_attempts`` attempts to one number per rolling ``period``.

    Counted from stored attempts of every campaign (the calling organisation's total).
    ``purposes`` are the campaign purposes the cap applies to.
    """

    max_attempts: int
    period: timedelta
    source: str
    purposes: frozenset[Purpose] = frozenset(Purpose)


@dataclass(frozen=True, slots=True)
class StateRule:
    """A US state's stricter hours and caps (chosen from the number's area code)."""

    hours: WeeklyWindows
    caps: tuple[CapRule, ...]
    source: str


@dataclass(frozen=True, eq=False)  # identity hash: packs are built once and cached
class RulePack:
    """The rules of one jurisdiction.

    Attributes:
        code: ``FR``, ``US``, ``UK`` or ``GENERIC``.
        marketing_hours: local calling window for marketing calls (callee's zone).
        informational_hours: window for informational calls; None = no legal window (the
            canvassing hours of D223-9 / 64.1200(c) do not govern service notices).
        holidays: ``"FR"`` (legal allow-list, by department), ``"country"`` (the ``holidays``
            package for the number's country) or ``"none"``.
        caps: frequency caps (see :class:`CapRule`).
        refusal_silence: no call after a refusal for this long (None: none).
        machine_silence: no repeat call this long after AMD found a machine (None: none).
        consent_required: purposes whose calls need a live consent, per audience.
        b2b_needs_professional: B2B marketing without consent needs the contact marked
            professional.
        national_list: name of the national opposition list (``bloctel``, ``us-dnc``,
            ``tps``; its maximum age and source are in :data:`OPPOSITION_LISTS`).
        caller_id_rule: ``npv_fr`` (ARCEP NPV prefixes) or ``callable``.
        min_ring_timeout: seconds a number must ring at least (UK: 15 s).
    """

    code: str
    name: str
    marketing_hours: WeeklyWindows
    hours_source: str
    informational_hours: WeeklyWindows | None
    holidays: str
    holidays_source: str
    caps: tuple[CapRule, ...]
    refusal_silence: timedelta | None
    refusal_source: str
    machine_silence: timedelta | None
    machine_source: str
    consent_required: frozenset[tuple[Purpose, Audience]]
    consent_source: str
    b2b_needs_professional: bool
    b2b_source: str
    national_list: str | None
    caller_id_rule: str
    caller_id_source: str
    min_ring_timeout: float | None = None
    ring_source: str = ""
    state_rules: dict[str, StateRule] = field(default_factory=dict)

    @property
    def national_list_max_age(self) -> timedelta | None:
        """How old the stored copy of :attr:`national_list` may be, None without a list."""
        spec = OPPOSITION_LISTS.get(self.national_list or "")
        return timedelta(days=spec.max_age_days) if spec else None

    @property
    def national_list_source(self) -> str:
        """The legal source of :attr:`national_list` ("" without a list)."""
        spec = OPPOSITION_LISTS.get(self.national_list or "")
        return spec.source if spec else ""


def _fr() -> RulePack:
    return RulePack(
        code="FR",
        name="France (metropolitan and overseas)",
        marketing_hours=parse_windows("mon-fri 10:00-13:00 14:00-20:00"),
        hours_source=D223_9,
        informational_hours=None,
        holidays="FR",
        holidays_source="Code du travail L3133-1, L3134-13, L3422-2",
        caps=(CapRule(4, timedelta(days=30), D223_9, frozenset({Purpose.MARKETING})),),
        refusal_silence=timedelta(days=60),
        refusal_source=D223_9,
        machine_silence=None,
        machine_source="",
        consent_required=frozenset({(Purpose.MARKETING, Audience.B2C)}),
        consent_source=f"{L34_5}; {LOI_2025_594}",
        b2b_needs_professional=True,
        b2b_source=f"{L34_5}; CNIL guidance 2022 (B2B)",
        national_list="bloctel",
        caller_id_rule="npv_fr",
        caller_id_source=ARCEP_NPV,
    )


def _us() -> RulePack:
    short_day = parse_windows("daily 08:00-20:00")
    daily_cap = CapRule(3, timedelta(hours=24), FL_OK, frozenset({Purpose.MARKETING}))
    return RulePack(
        code="US",
        name="United States",
        marketing_hours=parse_windows("daily 08:00-21:00"),
        hours_source=CFR_HOURS,
        informational_hours=None,
        holidays="none",
        holidays_source="",
        caps=(CapRule(3, timedelta(days=30), CFR_EXEMPT_CAP, frozenset({Purpose.INFORMATIONAL})),),
        refusal_silence=None,
        refusal_source="",
        machine_silence=None,
        machine_source="",
        consent_required=frozenset(
            {(Purpose.MARKETING, Audience.B2C), (Purpose.MARKETING, Audience.B2B)}
        ),
        consent_source=CFR_CONSENT,
        b2b_needs_professional=False,
        b2b_source="",
        national_list="us-dnc",
        caller_id_rule="callable",
        caller_id_source=CFR_CALLER_ID,
        state_rules={
            "FL": StateRule(short_day, (daily_cap,), FL_OK),
            "OK": StateRule(short_day, (daily_cap,), FL_OK),
        },
    )


def _uk(hours: str) -> RulePack:
    return RulePack(
        code="UK",
        name="United Kingdom",
        marketing_hours=parse_windows(hours),
        hours_source="PECR sets no hours: conservative default ([compliance] uk_hours)",
        informational_hours=None,
        holidays="country",
        holidays_source="UK bank holidays (holidays package), conservative default",
        caps=(),
        refusal_silence=None,
        refusal_source="",
        machine_silence=timedelta(hours=24),
        machine_source=f"{OFCOM} (no repeat the same 24 h after AMD found a machine)",
        consent_required=frozenset(
            {(Purpose.MARKETING, Audience.B2C), (Purpose.MARKETING, Audience.B2B)}
        ),
        consent_source=PECR_19,
        b2b_needs_professional=False,
        b2b_source="",
        national_list="tps",
        caller_id_rule="callable",
        caller_id_source=PECR_CLI,
        min_ring_timeout=15.0,
        ring_source=f"{OFCOM} (ring at least 15 s)",
    )


def _generic(hours: str) -> RulePack:
    return RulePack(
        code="GENERIC",
        name="Other countries (strictest of FR, US and UK)",
        marketing_hours=parse_windows(hours),
        hours_source=f"{GENERIC} ([compliance] generic_hours)",
        informational_hours=None,
        holidays="country",
        holidays_source=f"{GENERIC}: the country's public holidays (holidays package)",
        caps=(CapRule(3, timedelta(days=30), GENERIC),),  # every purpose: US exempt-call cap
        refusal_silence=timedelta(days=60),
        refusal_source=GENERIC,
        machine_silence=timedelta(hours=24),
        machine_source=GENERIC,
        consent_required=frozenset(
            {(Purpose.MARKETING, Audience.B2C), (Purpose.MARKETING, Audience.B2B)}
        ),
        consent_source=GENERIC,
        b2b_needs_professional=False,
        b2b_source="",
        national_list=None,
        caller_id_rule="callable",
        caller_id_source=GENERIC,
        min_ring_timeout=15.0,
        ring_source=GENERIC,
    )


@dataclass(frozen=True)
class PackSet:
    """The packs in force, built once from settings (see :func:`build_packs`)."""

    fr: RulePack
    us: RulePack
    uk: RulePack
    generic: RulePack
    unknown_region_holidays: str = "conservative"

    def for_region(self, region: str | None) -> RulePack:
        """The pack of a phonenumbers region code (``FR``, ``RE``, ``US``, ``GB``...)."""
        if region in FR_REGIONS:
            return self.fr
        if region in US_REGIONS:
            return self.us
        if region in UK_REGIONS:
            return self.uk
        return self.generic

    def all(self) -> tuple[RulePack, ...]:
        """Every pack, FR first."""
        return (self.fr, self.us, self.uk, self.generic)


@lru_cache(maxsize=8)
def build_packs(
    *,
    generic_hours: str = "mon-fri 10:00-13:00 14:00-20:00",
    uk_hours: str = "mon-sat 08:00-21:00",
    unknown_region_holidays: str = "conservative",
) -> PackSet:
    """The rule packs, with the configurable values of ``[compliance]``.

    Raises:
        ValueError: a window string is not valid (see ``parse_windows``).
    """
    return PackSet(
        fr=_fr(),
        us=_us(),
        uk=_uk(uk_hours),
        generic=_generic(generic_hours),
        unknown_region_holidays=unknown_region_holidays,
    )


def _union(calendars: Sequence[HolidayCalendar]) -> HolidayCalendar:
    unique = list(dict.fromkeys(calendars))
    if not unique:
        return NoHolidays()
    return unique[0] if len(unique) == 1 else UnionHolidays(tuple(unique))


def _country_union(country: str) -> HolidayCalendar:
    """A country's public holidays in any of its subdivisions (the callee's is unknown)."""
    subdivisions = holidays.list_supported_countries().get(country) or []
    if not subdivisions:
        return CountryHolidays(country, None)
    return _union(
        [CountryHolidays(country, None)] + [CountryHolidays(country, s) for s in subdivisions]
    )


@lru_cache(maxsize=4096)
def holiday_calendar(
    pack: RulePack, regions: tuple[str, ...], subdivision: str | None, unknown: str
) -> HolidayCalendar:
    """The holiday calendar of a callee: closed on a day that is a holiday in any place
    the callee may be.

    Args:
        pack: the callee's pack.
        regions: every phonenumbers region the number is valid in (``("FR",)``,
            ``("BL", "GP", "MF")`` for a +590 690 mobile...).
        subdivision: the callee's department from its address (``"57"``, ``"974"``...),
            else None. Its holidays are added to the number's territory's.
        unknown: ``conservative`` or ``national`` (``[compliance] unknown_region_holidays``).
    """
    calendars: list[HolidayCalendar] = []
    if pack.holidays == "FR":
        national = unknown == "national"
        for region in regions:
            if region == "FR":
                if subdivision is None:
                    # a metropolitan number: the only regional days that can apply are
                    # Alsace-Moselle's, i.e. department 57's calendar
                    calendars.append(
                        FrenchHolidays(None, "national") if national else FrenchHolidays("57")
                    )
            else:
                calendars.append(FrenchHolidays(OVERSEAS_DEPARTMENTS.get(region, region)))
        if subdivision is not None:
            calendars.append(FrenchHolidays(subdivision))
        return _union(calendars)
    if pack.holidays == "country":
        for region in regions:
            if region in UK_REGIONS:
                # the nation is not knowable from the number: every nation's bank holidays
                calendars += [CountryHolidays("GB", n) for n in ("ENG", "NIR", "SCT", "WLS")]
                if region != "GB":
                    calendars.append(CountryHolidays(region, None))
            else:
                calendars.append(_country_union(region))
        return _union(calendars)
    return NoHolidays()
