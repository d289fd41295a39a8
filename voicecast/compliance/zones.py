"""Where a callee is, from the number (phonenumbers) or from imported contact fields.

Pure and cached. The calling windows are in the callee's local time (Code de la
consommation D223-9; 47 CFR 64.1200(c)(1)), so the gate needs the number's candidate time
zones, its region (the rule pack and French overseas holidays), the US state (Florida and
Oklahoma have a narrower window) and, for France, the department when the contact list
gives one (Alsace-Moselle holidays, Code du travail L3134-13).

Facts (phonenumbers 9.x): ``time_zones_for_number`` returns several zones for Réunion and
Mayotte mobiles and special numbers (+262 69x / 639 / 80x: Indian/Mayotte and
Indian/Reunion), for US toll-free and other non-geographic NANP numbers (about 40 zones from
Guam to Newfoundland), for a few US area codes spanning two zones (208, 605, 701, 775, 907,
986) and for UK mobiles (London, Jersey, Guernsey, Isle of Man: same offsets).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

_PLUS_DIGITS_RE = re.compile(r"\+[0-9]{1,15}\Z")

__all__ = [
    "french_department_from_fields",
    "number_region",
    "number_zones",
    "us_state",
]

_US_STATES: dict[str, str] = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "Washington State": "WA",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
    "Washington D.C.": "DC",
    "District of Columbia": "DC",
    "Puerto Rico": "PR",
    "Guam": "GU",
    "US Virgin Islands": "VI",
    "American Samoa": "AS",
    "Northern Mariana Islands": "MP",
}
_USPS_CODES = frozenset(_US_STATES.values())
_US_REGIONS = frozenset({"US", "PR", "GU", "VI", "AS", "MP"})


@lru_cache(maxsize=1 << 16)
def _parse(e164: str) -> phonenumbers.PhoneNumber | None:
    # "+" and digits only: phonenumbers would also read "+33199000010\r\n..." as French.
    # Shorter than E.164 is let through: an invalid number still gets its country's zones.
    if not _PLUS_DIGITS_RE.match(e164):
        return None
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None


def _known_zones(names: tuple[str, ...]) -> tuple[str, ...]:
    out: set[str] = set()
    for name in names:
        if name == pn_timezone.UNKNOWN_TIMEZONE:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        out.add(name)
    return tuple(sorted(out))


@lru_cache(maxsize=1 << 16)
def number_zones(e164: str) -> tuple[str, ...]:
    """Candidate IANA time zones of an E.164 number, sorted and deduplicated.

    From ``phonenumbers.timezone.time_zones_for_number``; when that is unknown
    (``Etc/Unknown`` or empty), the zones of the number's country calling code
    (phonenumbers' country-level data: every zone of +1 for a NANP number); ``()`` when
    still unknown or when the text does not parse. Zones ``zoneinfo`` cannot load are
    dropped. A number with several zones is callable only when every zone is inside the
    window (:func:`voicecast.compliance.calendar.check_window`).
    """
    num = _parse(e164)
    if num is None:
        return ()
    zones = _known_zones(tuple(pn_timezone.time_zones_for_number(num)))
    if not zones:
        zones = _known_zones(tuple(pn_timezone._country_level_time_zones_for_number(num)))
    return zones


@lru_cache(maxsize=1 << 16)
def number_region(e164: str) -> str | None:
    """ISO region of a valid number (``"FR"``, ``"RE"``, ``"YT"``, ``"GP"``, ``"BL"``,
    ``"US"``, ``"GB"``...) per ``phonenumbers.region_code_for_number``; None when the text
    does not parse or is not a valid number (``+33999`` -> None)."""
    num = _parse(e164)
    if num is None or not phonenumbers.is_valid_number(num):
        return None
    region = phonenumbers.region_code_for_number(num)
    return region if region and region != "ZZ" else None


@lru_cache(maxsize=1 << 16)
def number_regions(e164: str) -> tuple[str, ...]:
    """Every region a valid number may belong to, sorted.

    phonenumbers gives one region per number (the first its ranges match), but some ranges
    are shared: +590 690 mobiles are valid in Guadeloupe, Saint-Barthélemy and Saint-Martin,
    some +590 590 landlines in BL and MF, +262 80x in Réunion and Mayotte, UK mobiles in GB
    and the Crown Dependencies. Rules that depend on the territory (holidays) take all of
    them. Empty for an invalid number.
    """
    num = _parse(e164)
    if num is None or num.country_code is None or not phonenumbers.is_valid_number(num):
        return ()
    return tuple(
        sorted(
            r
            for r in phonenumbers.region_codes_for_country_code(num.country_code)
            if phonenumbers.is_valid_number_for_region(num, r)
        )
    )


@lru_cache(maxsize=1 << 16)
def us_state(e164: str) -> str | None:
    """USPS code of the state (or DC, PR, GU, VI, AS, MP) of a NANP number's area code.

    From ``phonenumbers.geocoder.description_for_number(num, "en")``, which gives a state
    (``"Florida"``) or a place (``"Miami, FL"``). Used for the narrower Florida and Oklahoma
    windows (Fla. Stat. 501.616; 15 O.S. 775C). None for non-US numbers, toll-free and
    other non-geographic numbers, or when phonenumbers has no description. The area code
    tells where the number was assigned, not where the callee is.
    """
    num = _parse(e164)
    if num is None or phonenumbers.region_code_for_number(num) not in _US_REGIONS:
        return None
    # imported here: its data take a third of a second to load, and only US numbers need it
    from phonenumbers import geocoder

    desc = geocoder.description_for_number(num, "en").strip()
    if not desc:
        return None
    if desc in _US_STATES:
        return _US_STATES[desc]
    suffix = desc.rsplit(",", 1)[-1].strip()
    return suffix if "," in desc and suffix in _USPS_CODES else None


def _fold_key(key: str) -> str:
    decomposed = unicodedata.normalize("NFKD", key)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[_\-.]", " ", plain.lower()).split())


_DEPARTMENT_KEYS = ("department", "departement", "dept", "dep", "region")
# Names of the departments whose public holidays differ from the national ones (folded).
_DEPARTMENT_NAMES = {
    "moselle": "57",
    "bas rhin": "67",
    "haut rhin": "68",
    "alsace": "67",
    "alsace moselle": "57",
    "collectivite europeenne d alsace": "67",
    "guadeloupe": "971",
    "martinique": "972",
    "guyane": "973",
    "guyane francaise": "973",
    "french guiana": "973",
    "reunion": "974",
    "la reunion": "974",
    "ile de la reunion": "974",
    "mayotte": "976",
    "saint barthelemy": "977",
    "st barthelemy": "977",
    "saint martin": "978",
    "st martin": "978",
}
_POSTAL_KEYS = ("code postal", "postal code", "cp", "zip", "zipcode", "zip code", "codepostal")
_DEPT_RE = re.compile(r"0[1-9]|[1-8]\d|9[0-5]|2[AB]|97[1-8]")
_POSTAL_RE = re.compile(r"\d{5}")
# Postal codes whose first three digits are not the territory's code.
_POSTAL_SPECIAL = {"97133": "977", "97150": "978"}  # Saint-Barthélemy, Saint-Martin


def _as_text(value: object, width: int) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        # Spreadsheets drop leading zeros: 1000 is the postal code 01000, 1 department 01.
        return str(value).zfill(width) if value >= 0 else None
    if isinstance(value, str):
        return "".join(value.split()).upper()
    return None


@lru_cache(maxsize=4096)
def _department(text: str) -> str | None:
    if _DEPT_RE.fullmatch(text):
        return text
    return None


@lru_cache(maxsize=1 << 16)
def _department_of_postal(code: str) -> str | None:
    if not _POSTAL_RE.fullmatch(code):
        return None
    if code in _POSTAL_SPECIAL:
        return _POSTAL_SPECIAL[code]
    if code.startswith("97"):
        return _department(code[:3])
    if code.startswith("20"):
        # Corsica: 200xx-201xx Corse-du-Sud (2A), 202xx-206xx Haute-Corse (2B).
        return "2A" if code[2] in "01" else "2B"
    return _department(code[:2])


def french_department_from_fields(fields: dict[str, object]) -> str | None:
    """The French department found in a contact's imported fields, or None.

    Keys are matched case-, accent- and separator-insensitively: department keys first
    (``department``, ``département``, ``departement``, ``dept``, ``dep``: a value ``01``-
    ``95``, ``2A``, ``2B`` or ``971``-``978``), then postal-code keys (``code postal``,
    ``postal code``, ``postal_code``, ``cp``, ``zip``, ``zipcode``: five digits, mapped to
    the department: ``57000`` -> ``"57"``, ``97411`` -> ``"974"``, ``20000`` -> ``"2A"``,
    ``97133`` -> ``"977"`` Saint-Barthélemy, ``97150`` -> ``"978"`` Saint-Martin). Integers
    from spreadsheets are zero-padded (``1000`` -> ``01000``). ``region`` (the contact
    importer's field) is read like a department; the names of the departments with their
    own holidays are recognised ("Moselle", "Bas-Rhin", "Alsace", "La Réunion"...), other
    names (a region such as "Grand Est") give None: the caller is then conservative. The
    result feeds :class:`voicecast.compliance.calendar.FrenchHolidays` (Code du travail
    L3134-13, L3422-2).
    """
    by_key: dict[str, object] = {}
    for key, value in fields.items():
        by_key.setdefault(_fold_key(str(key)), value)
    for key in _DEPARTMENT_KEYS:
        if key in by_key:
            text = _as_text(by_key[key], 2)
            if text:
                dept = (
                    _department(text)
                    or _department_of_postal(text)
                    or _DEPARTMENT_NAMES.get(_fold_key(str(by_key[key])).replace("'", " "))
                )
                if dept:
                    return dept
    for key in _POSTAL_KEYS:
        if key in by_key:
            text = _as_text(by_key[key], 5)
            if text:
                dept = _department_of_postal(text)
                if dept:
                    return dept
    return None
