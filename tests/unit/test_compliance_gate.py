"""The compliance gate's decide() at the boundary of every rule (pure: no clock, no DB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from voicecast.compliance.calendar import parse_windows
from voicecast.compliance.gate import (
    CampaignRules,
    ConsentView,
    ContactFacts,
    NumberProfile,
    cap_until,
    decide,
    profile_of,
)
from voicecast.compliance.packs import CapRule, build_packs
from voicecast.compliance.types import Audience, Purpose, Reason, Verdict

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
PACKS = build_packs()

FR = NumberProfile("+33199000010", "FR", ("Europe/Paris",), None)
FR_REUNION_MAYOTTE = NumberProfile(
    "+262269000010", "RE", ("Indian/Mayotte", "Indian/Reunion"), None
)
US_DC = NumberProfile("+12025550110", "US", ("America/New_York",), "DC")
US_FL = NumberProfile("+13055550110", "US", ("America/New_York",), "FL")
UK = NumberProfile("+442079460010", "GB", ("Europe/London",), None)
DE = NumberProfile("+4930123456", "DE", ("Europe/Berlin",), None)

MARKETING_B2C = CampaignRules(Purpose.MARKETING, Audience.B2C)
MARKETING_B2B = CampaignRules(Purpose.MARKETING, Audience.B2B)
INFO = CampaignRules(Purpose.INFORMATIONAL, Audience.B2C)
CONSENT = ConsentView(True, datetime(2026, 1, 5, tzinfo=UTC), "form", "proof-1")
WITHDRAWN = ConsentView(False, datetime(2026, 2, 5, tzinfo=UTC), "form", "proof-2")


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def facts(profile: NumberProfile = FR, **kw: object) -> ContactFacts:
    kw.setdefault("consent", CONSENT)
    return ContactFacts(profile=profile, **kw)  # type: ignore[arg-type]


def verdict_at(now: datetime, f: ContactFacts | None = None, rules: CampaignRules = MARKETING_B2C):
    return decide(f or facts(), rules, PACKS, now)


# --- calling windows, France (D223-9) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hm", "allowed"),
    [
        ((9, 59), False),
        ((10, 0), True),
        ((12, 59), True),
        ((13, 0), False),
        ((13, 59), False),
        ((14, 0), True),
        ((19, 59), True),
        ((20, 0), False),
    ],
)
def test_fr_hours_boundaries(hm: tuple[int, int], allowed: bool) -> None:
    d = verdict_at(paris(2026, 12, 2, *hm))  # a Wednesday
    assert (d.verdict is Verdict.ALLOW) == allowed
    if not allowed:
        assert d.verdict is Verdict.DEFER
        assert d.reason is Reason.OUTSIDE_HOURS
        assert "D223-9" in d.source
        assert d.until is not None and d.until.tzinfo is not None


def test_fr_deferral_lands_on_the_next_legal_instant_in_utc() -> None:
    d = verdict_at(paris(2026, 12, 2, 13, 0))
    assert d.until == paris(2026, 12, 2, 14, 0)
    assert d.until is not None and d.until.utcoffset() == timedelta(0)


def test_friday_evening_defers_to_monday_ten() -> None:
    d = verdict_at(paris(2026, 12, 4, 20, 0))
    assert d.verdict is Verdict.DEFER
    assert d.until == paris(2026, 12, 7, 10, 0)


def test_saturday_is_closed() -> None:
    d = verdict_at(paris(2026, 12, 5, 11, 0))
    assert (d.verdict, d.reason) == (Verdict.DEFER, Reason.CLOSED_DAY)
    assert d.until == paris(2026, 12, 7, 10, 0)


def test_friday_before_a_holiday_monday_defers_to_tuesday() -> None:
    # Whit Monday 2027-05-17 (Code du travail L3133-1)
    d = verdict_at(paris(2027, 5, 14, 20, 0))
    assert d.until == paris(2027, 5, 18, 10, 0)


def test_public_holiday_reason() -> None:
    d = verdict_at(paris(2026, 12, 25, 11, 0))
    assert (d.verdict, d.reason) == (Verdict.DEFER, Reason.PUBLIC_HOLIDAY)
    assert d.until == paris(2026, 12, 28, 10, 0)


def test_alsace_moselle_26_december_when_region_known_or_unknown() -> None:
    now = paris(2025, 12, 26, 11, 0)  # a Friday
    assert verdict_at(now, facts(subdivision="57")).reason is Reason.PUBLIC_HOLIDAY
    assert verdict_at(now, facts(subdivision=None)).reason is Reason.PUBLIC_HOLIDAY  # conservative
    assert verdict_at(now, facts(subdivision="75")).verdict is Verdict.ALLOW
    national = build_packs(unknown_region_holidays="national")
    assert decide(facts(), MARKETING_B2C, national, now).verdict is Verdict.ALLOW


def test_dst_spring_forward_week_in_paris() -> None:
    # Paris moves to CEST on Sunday 2027-03-28 (also Easter: Monday 29 is a holiday).
    # Thursday 20:00 CET -> Friday 10:00 CET (Good Friday is only an Alsace-Moselle day)
    d = verdict_at(paris(2027, 3, 25, 20, 0), facts(subdivision="75"))
    assert d.until == datetime(2027, 3, 26, 9, 0, tzinfo=UTC)
    # Friday 20:00 CET -> Tuesday 10:00 CEST = 08:00 UTC
    d = verdict_at(paris(2027, 3, 26, 20, 0), facts(subdivision="75"))
    assert d.until == datetime(2027, 3, 30, 8, 0, tzinfo=UTC)
    # in Moselle, Good Friday itself is closed
    assert verdict_at(paris(2027, 3, 26, 11, 0), facts(subdivision="57")).reason is (
        Reason.PUBLIC_HOLIDAY
    )


def test_dst_fall_back_week_in_paris() -> None:
    d = verdict_at(paris(2026, 10, 23, 20, 0))
    assert d.until == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)


def test_overseas_number_uses_its_own_zone() -> None:
    reunion = NumberProfile("+262262000010", "RE", ("Indian/Reunion",), None)
    # 06:30 UTC = 10:30 in Réunion (UTC+4) but 07:30 in Paris
    now = datetime(2026, 12, 2, 6, 30, tzinfo=UTC)
    assert verdict_at(now, facts(reunion)).verdict is Verdict.ALLOW
    assert verdict_at(now, facts(FR)).verdict is Verdict.DEFER


def test_number_with_two_zones_needs_both_inside() -> None:
    # 09:30 UTC: 13:30 in Réunion (closed until 14:00), 12:30 in Mayotte (open)
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    d = verdict_at(now, facts(FR_REUNION_MAYOTTE))
    assert d.verdict is Verdict.DEFER
    # 14:00 Réunion = 10:00 UTC = 13:00 Mayotte (closed until 14:00 = 11:00 UTC)
    assert d.until == datetime(2026, 12, 2, 11, 0, tzinfo=UTC)


def test_reunion_abolition_day_20_december() -> None:
    reunion = NumberProfile("+262262000010", "RE", ("Indian/Reunion",), None)
    now = datetime(2027, 12, 20, 8, 0, tzinfo=UTC)  # a Monday, 12:00 in Réunion
    assert verdict_at(now, facts(reunion)).reason is Reason.PUBLIC_HOLIDAY
    # the same Monday is a working day in metropolitan France
    assert verdict_at(paris(2027, 12, 20, 11, 0), facts(FR)).verdict is Verdict.ALLOW


def test_informational_calls_have_no_legal_window_but_campaign_hours_apply() -> None:
    night = paris(2026, 12, 5, 23, 0)
    assert verdict_at(night, rules=INFO).verdict is Verdict.ALLOW
    tight = CampaignRules(
        Purpose.INFORMATIONAL, Audience.B2C, hours=parse_windows("daily 09:00-18:00")
    )
    d = verdict_at(night, rules=tight)
    assert d.verdict is Verdict.DEFER and d.until == paris(2026, 12, 6, 9, 0)


def test_campaign_hours_only_tighten() -> None:
    wide = CampaignRules(Purpose.MARKETING, Audience.B2C, hours=parse_windows("daily 06:00-23:00"))
    assert verdict_at(paris(2026, 12, 2, 21, 0), rules=wide).verdict is Verdict.DEFER
    assert verdict_at(paris(2026, 12, 5, 11, 0), rules=wide).verdict is Verdict.DEFER
    narrow = CampaignRules(
        Purpose.MARKETING, Audience.B2C, hours=parse_windows("mon-fri 11:00-12:00")
    )
    d = verdict_at(paris(2026, 12, 2, 10, 30), rules=narrow)
    assert d.until == paris(2026, 12, 2, 11, 0)


# --- caps (D223-9) ----------------------------------------------------------------------------


def test_fourth_attempt_allowed_fifth_deferred() -> None:
    now = paris(2026, 12, 2, 11, 0)
    three = tuple(now - timedelta(days=d) for d in (20, 10, 1))
    assert verdict_at(now, facts(attempts=three)).verdict is Verdict.ALLOW
    four = tuple(now - timedelta(days=d) for d in (20, 10, 5, 1))
    d = verdict_at(now, facts(attempts=four))
    assert (d.verdict, d.reason) == (Verdict.DEFER, Reason.FREQUENCY_CAP)
    # the oldest ages out after 30 days: 2026-12-12 11:00 Paris, a Saturday -> Monday 10:00
    assert d.until == paris(2026, 12, 14, 10, 0)


def test_cap_is_rolling_thirty_days() -> None:
    cap = CapRule(4, timedelta(days=30), "test")
    now = datetime(2026, 12, 2, 10, tzinfo=UTC)
    oldest = now - timedelta(days=30)
    attempts = (oldest, now - timedelta(days=3), now - timedelta(days=2), now - timedelta(days=1))
    assert cap_until(cap, attempts, now) is None  # exactly 30 days ago is out of the window
    attempts = (oldest + timedelta(seconds=1), *attempts[1:])
    assert cap_until(cap, attempts, now) == oldest + timedelta(seconds=1) + timedelta(days=30)


def test_cap_applies_to_marketing_only_in_france() -> None:
    now = paris(2026, 12, 2, 11, 0)
    four = tuple(now - timedelta(days=d) for d in (4, 3, 2, 1))
    assert verdict_at(now, facts(attempts=four), rules=INFO).verdict is Verdict.ALLOW


def test_campaign_cap_tightens() -> None:
    now = paris(2026, 12, 2, 11, 0)
    rules = CampaignRules(Purpose.MARKETING, Audience.B2C, max_attempts_30d=2)
    two = (now - timedelta(days=2), now - timedelta(days=1))
    assert verdict_at(now, facts(attempts=two), rules=rules).reason is Reason.FREQUENCY_CAP


@pytest.mark.parametrize(("days", "blocked"), [(59, True), (60, False)])
def test_sixty_days_after_a_refusal(days: int, blocked: bool) -> None:
    now = paris(2026, 12, 2, 11, 0)
    d = verdict_at(now, facts(last_refusal=now - timedelta(days=days)))
    assert (d.verdict is Verdict.BLOCK) == blocked
    if blocked:
        assert d.reason is Reason.RECENT_REFUSAL and "D223-9" in d.source


# --- consent, suppression ------------------------------------------------------------------------


def test_b2c_marketing_needs_live_consent() -> None:
    now = paris(2026, 12, 2, 11, 0)
    assert verdict_at(now, facts(consent=None)).reason is Reason.NO_CONSENT
    assert verdict_at(now, facts(consent=WITHDRAWN)).reason is Reason.CONSENT_WITHDRAWN
    assert verdict_at(now, facts(consent=None), rules=INFO).verdict is Verdict.ALLOW


def test_b2b_marketing_needs_professional_and_no_objection() -> None:
    now = paris(2026, 12, 2, 11, 0)
    pro = facts(consent=None, professional=True)
    assert verdict_at(now, pro, MARKETING_B2B).verdict is Verdict.ALLOW
    assert verdict_at(now, facts(consent=None), MARKETING_B2B).reason is Reason.NOT_PROFESSIONAL
    objecting = facts(consent=WITHDRAWN, professional=True)
    assert verdict_at(now, objecting, MARKETING_B2B).reason is Reason.CONSENT_WITHDRAWN
    opted = facts(consent=None, professional=True, opted_out=True)
    assert verdict_at(now, opted, MARKETING_B2B).reason is Reason.OPTED_OUT


def test_opt_out_blocks_every_purpose() -> None:
    now = paris(2026, 12, 2, 11, 0)
    for rules in (MARKETING_B2C, MARKETING_B2B, INFO):
        d = verdict_at(now, facts(opted_out=True), rules)
        assert (d.verdict, d.reason) == (Verdict.BLOCK, Reason.OPTED_OUT)


def test_opposition_list_blocks_marketing_not_information() -> None:
    now = paris(2026, 12, 2, 11, 0)
    d = verdict_at(now, facts(on_national_list=True))
    assert (d.reason, "L223-1" in d.source) == (Reason.OPPOSITION_LIST, True)
    assert verdict_at(now, facts(on_national_list=True), rules=INFO).verdict is Verdict.ALLOW


def test_informational_with_consent_basis_needs_consent() -> None:
    now = paris(2026, 12, 2, 11, 0)
    rules = CampaignRules(Purpose.INFORMATIONAL, Audience.B2C, consent_basis=True)
    assert verdict_at(now, facts(consent=None), rules).reason is Reason.NO_CONSENT


def test_invalid_number_is_blocked() -> None:
    bad = NumberProfile("+33100", None, (), None)
    assert verdict_at(paris(2026, 12, 2, 11, 0), facts(bad)).reason is Reason.INVALID_NUMBER


# --- campaign dates ------------------------------------------------------------------------------


def test_campaign_start_and_end_dates() -> None:
    now = paris(2026, 12, 2, 11, 0)
    later = CampaignRules(Purpose.MARKETING, Audience.B2C, starts_at=paris(2026, 12, 3, 15, 0))
    d = verdict_at(now, rules=later)
    assert (d.reason, d.until) == (Reason.CAMPAIGN_NOT_STARTED, paris(2026, 12, 3, 15, 0))
    ended = CampaignRules(Purpose.MARKETING, Audience.B2C, ends_at=paris(2026, 12, 2, 10, 0))
    assert verdict_at(now, rules=ended).reason is Reason.CAMPAIGN_ENDED
    ends_tonight = CampaignRules(Purpose.MARKETING, Audience.B2C, ends_at=paris(2026, 12, 4, 21, 0))
    d = verdict_at(paris(2026, 12, 4, 20, 0), rules=ends_tonight)
    assert (d.verdict, d.reason) == (Verdict.BLOCK, Reason.CAMPAIGN_ENDED)


# --- United States ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hm", "allowed"), [((7, 59), False), ((8, 0), True), ((20, 59), True), ((21, 0), False)]
)
def test_us_hours(hm: tuple[int, int], allowed: bool) -> None:
    now = datetime(2026, 12, 5, *hm, tzinfo=NEW_YORK)  # a Saturday: every day counts
    d = verdict_at(now, facts(US_DC))
    assert (d.verdict is Verdict.ALLOW) == allowed
    if not allowed:
        assert "64.1200(c)(1)" in d.source


@pytest.mark.parametrize(("hm", "allowed"), [((19, 59), True), ((20, 0), False)])
def test_florida_ends_at_eight(hm: tuple[int, int], allowed: bool) -> None:
    d = verdict_at(datetime(2026, 12, 2, *hm, tzinfo=NEW_YORK), facts(US_FL))
    assert (d.verdict is Verdict.ALLOW) == allowed


def test_florida_three_calls_per_24h() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=NEW_YORK)
    three = tuple(now - timedelta(hours=h) for h in (20, 3, 1))
    d = verdict_at(now, facts(US_FL, attempts=three))
    assert d.reason is Reason.FREQUENCY_CAP
    assert verdict_at(now, facts(US_DC, attempts=three)).verdict is Verdict.ALLOW


def test_us_marketing_needs_consent_even_b2b() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=NEW_YORK)
    f = facts(US_DC, consent=None, professional=True)
    assert verdict_at(now, f, MARKETING_B2B).reason is Reason.NO_CONSENT


def test_us_informational_capped_at_three_per_thirty_days() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=NEW_YORK)
    three = tuple(now - timedelta(days=d) for d in (20, 10, 1))
    assert verdict_at(now, facts(US_DC, attempts=three), INFO).reason is Reason.FREQUENCY_CAP
    two = three[1:]
    assert verdict_at(now, facts(US_DC, attempts=two), INFO).verdict is Verdict.ALLOW


# --- United Kingdom ---------------------------------------------------------------------------


def test_uk_no_repeat_within_24h_of_a_machine() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=LONDON)
    d = verdict_at(now, facts(UK, last_machine_at=now - timedelta(hours=23)))
    assert (d.verdict, d.reason) == (Verdict.DEFER, Reason.MACHINE_RECENTLY)
    assert d.until == now + timedelta(hours=1)
    assert verdict_at(now, facts(UK, last_machine_at=now - timedelta(hours=24))).verdict is (
        Verdict.ALLOW
    )


def test_uk_bank_holiday_and_hours() -> None:
    assert verdict_at(datetime(2026, 12, 25, 12, tzinfo=LONDON), facts(UK)).reason is (
        Reason.PUBLIC_HOLIDAY
    )
    assert verdict_at(datetime(2026, 12, 2, 20, 59, tzinfo=LONDON), facts(UK)).verdict is (
        Verdict.ALLOW
    )
    assert verdict_at(datetime(2026, 12, 2, 21, 0, tzinfo=LONDON), facts(UK)).verdict is (
        Verdict.DEFER
    )


# --- other countries: the strictest ------------------------------------------------------------


def test_generic_pack_is_the_strictest() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert verdict_at(datetime(2026, 12, 2, 9, 59, tzinfo=berlin), facts(DE)).verdict is (
        Verdict.DEFER
    )
    assert verdict_at(datetime(2026, 12, 2, 10, 0, tzinfo=berlin), facts(DE)).verdict is (
        Verdict.ALLOW
    )
    now = datetime(2026, 12, 2, 11, tzinfo=berlin)
    three = tuple(now - timedelta(days=d) for d in (3, 2, 1))
    assert verdict_at(now, facts(DE, attempts=three)).reason is Reason.FREQUENCY_CAP
    assert verdict_at(now, facts(DE, consent=None)).reason is Reason.NO_CONSENT


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        decide(facts(), MARKETING_B2C, PACKS, datetime(2026, 12, 2, 11))


def test_profile_of_fictional_numbers() -> None:
    assert profile_of("+33199000010").region == "FR"
    assert profile_of("+33199000010").zones == ("Europe/Paris",)
    assert profile_of("+12025550110").region == "US"
    assert profile_of("+442079460010").region == "GB"


def test_an_allowed_dial_says_what_made_it_lawful() -> None:
    now = paris(2026, 12, 2, 11, 0)
    d = verdict_at(now)
    assert d.verdict is Verdict.ALLOW and "proof proof-1" in d.detail and "L34-5" in d.source
    pro = verdict_at(now, facts(consent=None, professional=True), MARKETING_B2B)
    assert "professional contact" in pro.detail
    info = CampaignRules(Purpose.INFORMATIONAL, Audience.B2C, legal_basis="contract")
    assert verdict_at(now, facts(consent=None), info).detail == (
        "informational; legal basis: contract"
    )


# --- the whole class of numbers: shared ranges, addresses, territories -----------------------


def test_a_mobile_valid_in_three_territories_avoids_all_their_holidays() -> None:
    # +590 690 mobiles are valid in Guadeloupe, Saint-Barthélemy and Saint-Martin
    mobile = profile_of("+590690881234")
    assert set(mobile.all_regions) == {"GP", "BL", "MF"}
    guadeloupe = ZoneInfo("America/Guadeloupe")
    saint_barth_day = datetime(2026, 10, 9, 11, tzinfo=guadeloupe)  # a Friday
    assert verdict_at(saint_barth_day, facts(mobile)).reason is Reason.PUBLIC_HOLIDAY
    saint_martin_day = datetime(2026, 5, 28, 11, tzinfo=guadeloupe)  # a Thursday
    assert verdict_at(saint_martin_day, facts(mobile)).reason is Reason.PUBLIC_HOLIDAY


def test_the_address_adds_its_department_holidays_and_zone() -> None:
    reunion_landline = profile_of("+262262161234")
    paris_address_day = datetime(2027, 12, 20, 11, tzinfo=ZoneInfo("Indian/Reunion"))
    # Réunion's abolition day stays closed even when the address says Paris
    assert verdict_at(paris_address_day, facts(reunion_landline, subdivision="75")).reason is (
        Reason.PUBLIC_HOLIDAY
    )
    # a metropolitan mobile whose holder lives in Réunion: 21:30 there is outside hours
    mobile = NumberProfile("+33639980010", "FR", ("Europe/Paris",), None)
    evening = datetime(2026, 6, 3, 17, 30, tzinfo=UTC)  # 19:30 Paris, 21:30 Réunion
    assert verdict_at(evening, facts(mobile)).verdict is Verdict.ALLOW
    in_reunion = facts(mobile, subdivision="974", extra_zones=("Indian/Reunion",))
    assert verdict_at(evening, in_reunion).verdict is Verdict.DEFER


def test_us_territories_take_the_us_pack() -> None:
    puerto_rico = profile_of("+17872345678")
    assert PACKS.for_region(puerto_rico.region).code == "US"
    now = datetime(2026, 6, 3, 12, tzinfo=ZoneInfo("America/Puerto_Rico"))
    info = CampaignRules(Purpose.INFORMATIONAL, Audience.B2C, legal_basis="contract")
    three = tuple(now - timedelta(days=d) for d in (3, 2, 1))
    assert verdict_at(now, facts(puerto_rico, attempts=three), info).reason is (
        Reason.FREQUENCY_CAP
    )


def test_generic_pack_caps_informational_calls_and_avoids_regional_holidays() -> None:
    canada = profile_of("+14165551234")
    now = datetime(2026, 6, 3, 12, tzinfo=ZoneInfo("America/Toronto"))
    info = CampaignRules(Purpose.INFORMATIONAL, Audience.B2C, legal_basis="contract")
    three = tuple(now - timedelta(days=d) for d in (3, 2, 1))
    assert verdict_at(now, facts(canada, attempts=three), info).reason is Reason.FREQUENCY_CAP
    munich = profile_of("+4989123456")
    corpus_christi = datetime(2026, 6, 4, 11, tzinfo=ZoneInfo("Europe/Berlin"))  # Bavaria
    assert verdict_at(corpus_christi, facts(munich)).reason is Reason.PUBLIC_HOLIDAY


def test_an_invalid_number_is_blocked_even_in_a_single_region_country() -> None:
    assert verdict_at(paris(2026, 12, 2, 11, 0), facts(profile_of("+3319"))).reason is (
        Reason.INVALID_NUMBER
    )
