"""Campaign-level rules (voicecast.compliance.checks) at the boundary of each rule.

Pure: no clock, no database. Fictional numbers only (+33 1 99 00 xx xx, +33 2 61 91 xx xx,
+33 3 53 01 xx xx; +1 202 555 01xx; +44 20 7946 0xxx); caller IDs and call-back numbers
that must be NPV, 08, toll-free or premium-rate use the 00 00 00 / 555 01xx / Ofcom drama
blocks of those ranges.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from voicecast.compliance.checks import (
    LEGAL_BASES,
    Declaration,
    Problem,
    caller_id_problems,
    declaration_problems,
    is_npv,
    national_form_fr,
    national_list_problems,
    ring_problems,
)
from voicecast.compliance.packs import build_packs

PACKS = build_packs()
FR, US, UK, GENERIC = PACKS.fr, PACKS.us, PACKS.uk, PACKS.generic
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

FULL = Declaration(
    purpose="marketing",
    audience="b2c",
    sender_name="Société Fictive",
    on_behalf_of="Société Fictive",
    optout_key="9",
    callback_number="+33199000099",
    legal_basis=None,
)
US_FULL = dataclasses.replace(FULL, callback_number="+18005550100")  # toll-free
INFO = dataclasses.replace(
    FULL, purpose="informational", optout_key=None, callback_number=None, legal_basis="contract"
)


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


# --------------------------------------------------------------------------- is_npv (ARCEP)

NPV_PREFIXES = [
    "0162", "0163", "0270", "0271", "0377", "0378", "0424", "0425", "0568", "0569", "0948",
    "0949", "09475", "09476", "09477", "09478", "09479",
]  # fmt: skip


def e164(national: str) -> str:
    """``0162`` -> ``+33162000000``: the prefix padded to ten national digits."""
    return "+33" + (national + "0" * 10)[1:10]


@pytest.mark.parametrize("prefix", NPV_PREFIXES)
def test_every_npv_prefix_is_allowed(prefix: str) -> None:
    number = e164(prefix)
    assert len(number) == 12 and national_form_fr(number) == (prefix + "0" * 10)[:10]
    assert is_npv(number)
    assert caller_id_problems(number, [FR]) == []


@pytest.mark.parametrize(
    "national",
    ["0800000000", "0805000000", "0810000000", "0820000000", "0825000000", "0884000000"],
)
def test_special_08_numbers_other_than_089_are_allowed(national: str) -> None:
    assert is_npv(e164(national))


@pytest.mark.parametrize(
    "national",
    [
        "0890000000", "0891000000", "0899000000",  # premium rate 089
        "0199000000", "0261910000", "0353010000", "0400000000", "0500000000",  # geographic
        "0161000000", "0164000000", "0272000000", "0379000000", "0423000000", "0426000000",
        "0567000000", "0570000000",  # neighbours of NPV blocks
        "0600000000", "0639000000", "0700000000",  # mobiles
        "0900000000", "0937000000", "0938000000", "0939000000",  # platform numbers
        "0947000000", "0947400000", "0950000000", "0970000000", "0990000000",  # other 09
    ],
)  # fmt: skip
def test_other_french_numbers_are_not_npv(national: str) -> None:
    number = e164(national)
    assert not is_npv(number)
    [problem] = caller_id_problems(number, [FR])
    assert problem.code == "caller_id_not_allowed"
    assert problem.source == "ARCEP décision 2022-1583"
    assert number in problem.message


@pytest.mark.parametrize(
    "number", ["+12025550123", "+18005550100", "+442079460000", "+3216200000", "", "0162000000"]
)
def test_non_french_or_non_e164_numbers_are_not_npv(number: str) -> None:
    assert not is_npv(number)


def test_npv_table_is_exactly_arceps() -> None:
    from voicecast.compliance import checks

    assert tuple(NPV_PREFIXES) == checks.NPV_PREFIXES


# --------------------------------------------------------------------------- caller ID


def test_withheld_caller_id_is_refused_everywhere() -> None:
    problems = caller_id_problems("", [FR, US, UK])
    assert codes(problems) == ["caller_id_not_allowed"] * 3
    assert all("(none)" in p.message for p in problems)
    assert {p.source for p in problems} == {
        "ARCEP décision 2022-1583",
        US.caller_id_source,
        UK.caller_id_source,
    }


@pytest.mark.parametrize(
    ("distinct", "allowed"), [(0, True), (1, True), (5, True), (6, False), (50, False)]
)
def test_npv_exemption_holds_up_to_five_distinct_numbers(distinct: int, allowed: bool) -> None:
    geographic = "+33199000000"
    problems = caller_id_problems(
        geographic, [FR], npv_exemption=True, distinct_numbers_30d=distinct
    )
    assert (problems == []) is allowed
    if not allowed:
        [p] = problems
        assert f"{distinct} distinct numbers in 30 days" in p.message
        assert "at most 5" in p.message
        assert p.source == "ARCEP décision 2022-1583"


def test_exemption_not_declared_ignores_the_count() -> None:
    [p] = caller_id_problems("+33199000000", [FR], npv_exemption=False, distinct_numbers_30d=1)
    assert "use an NPV" in p.message


def test_npv_exemption_does_not_waive_us_or_uk_rules() -> None:
    assert codes(caller_id_problems("", [US], npv_exemption=True, distinct_numbers_30d=1)) == [
        "caller_id_not_allowed"
    ]


@pytest.mark.parametrize(
    ("caller_id", "pack", "ok"),
    [
        ("+12025550123", US, True),
        ("+442079460000", UK, True),
        ("+33162000000", US, True),  # a French NPV can be called back from the US
        ("+33199000000", UK, True),  # callable: UK does not need an NPV
        ("+1202555", US, False),  # too short
        ("+447700900000", UK, False),  # not a valid UK number
        ("+33639000000", UK, False),  # not a valid French number
        ("not a number", US, False),
        ("+12025550123", GENERIC, True),
        ("", GENERIC, False),
    ],
)
def test_us_uk_caller_id_must_be_a_valid_callable_number(caller_id: str, pack, ok: bool) -> None:  # type: ignore[no-untyped-def]
    problems = caller_id_problems(caller_id, [pack])
    assert (problems == []) is ok
    if not ok:
        [p] = problems
        assert p.source == pack.caller_id_source and "called back" in p.message


def test_us_caller_id_on_a_french_campaign_is_not_npv() -> None:
    problems = caller_id_problems("+12025550123", [FR, US])
    assert [p.source for p in problems] == ["ARCEP décision 2022-1583"]


def test_duplicate_packs_give_one_problem() -> None:
    assert len(caller_id_problems("+33199000000", [FR, FR, FR])) == 1


# --------------------------------------------------------------------------- declaration


def test_a_full_declaration_has_no_problem() -> None:
    assert declaration_problems(FULL, [FR]) == []
    assert declaration_problems(US_FULL, [FR, US, UK]) == []
    assert declaration_problems(INFO, [FR, US, UK]) == []


def test_an_empty_declaration_names_every_missing_field() -> None:
    empty = Declaration(None, None, None, None, None, None, None)
    problems = declaration_problems(empty, [FR])
    assert codes(problems) == ["declaration_missing"] * 4
    messages = [p.message for p in problems]
    assert [m.split(":")[0] for m in messages] == [
        "purpose",
        "audience",
        "sender name",
        "on behalf of",
    ]
    assert all(p.source == "CPCE L34-5; Code conso L221-16" for p in problems)


@pytest.mark.parametrize(
    ("field", "value", "label"),
    [
        ("purpose", None, "purpose"),
        ("purpose", "survey", "purpose"),
        ("audience", None, "audience"),
        ("audience", "consumers", "audience"),
        ("sender_name", None, "sender name"),
        ("sender_name", "   ", "sender name"),
        ("on_behalf_of", None, "on behalf of"),
        ("on_behalf_of", "", "on behalf of"),
    ],
)
def test_each_missing_field_is_named(field: str, value: str | None, label: str) -> None:
    [p] = declaration_problems(dataclasses.replace(FULL, **{field: value}), [FR])
    assert p.code == "declaration_missing"
    assert p.message.startswith(label + ":")


@pytest.mark.parametrize("key", ["99", "a", "", "10"])
def test_optout_key_must_be_one_key(key: str) -> None:
    problems = declaration_problems(dataclasses.replace(FULL, optout_key=key), [FR])
    assert "declaration_invalid" in codes(problems)


@pytest.mark.parametrize("key", list("0123456789*#"))
def test_every_dtmf_key_is_a_valid_optout_key(key: str) -> None:
    assert declaration_problems(dataclasses.replace(FULL, optout_key=key), [FR]) == []


def test_marketing_without_optout_means_cannot_start() -> None:
    no_means = dataclasses.replace(FULL, optout_key=None, callback_number=None)
    [p] = declaration_problems(no_means, [FR])
    assert p.code == "optout_missing" and "opt-out" in p.message
    assert "L34-5" in p.source
    # either means is enough in France
    assert declaration_problems(dataclasses.replace(FULL, callback_number=None), [FR]) == []
    assert declaration_problems(dataclasses.replace(FULL, optout_key=None), [FR]) == []
    # informational campaigns do not need one
    assert declaration_problems(dataclasses.replace(INFO, optout_key=None), [FR]) == []


def test_us_telemarketing_needs_key_and_toll_free_callback() -> None:
    assert declaration_problems(US_FULL, [US]) == []
    no_key = declaration_problems(dataclasses.replace(US_FULL, optout_key=None), [US])
    assert codes(no_key) == ["optout_missing"]
    assert "opt-out key" in no_key[0].message and no_key[0].source == "47 CFR 64.1200(b)(3)"
    geographic = declaration_problems(
        dataclasses.replace(US_FULL, callback_number="+12025550100"), [US]
    )
    assert codes(geographic) == ["optout_missing"]
    assert "toll-free" in geographic[0].message
    french = declaration_problems(FULL, [US])  # a French geographic call-back
    assert codes(french) == ["optout_missing"]
    none = declaration_problems(dataclasses.replace(US_FULL, callback_number=None), [US])
    assert codes(none) == ["optout_missing"]
    both = declaration_problems(
        dataclasses.replace(US_FULL, optout_key=None, callback_number=None), [US]
    )
    assert codes(both) == ["optout_missing"] * 3  # generic + key + toll-free
    # informational calls to the US: none of this
    assert declaration_problems(INFO, [US]) == []


@pytest.mark.parametrize("toll_free", ["+18005550100", "+18335550100", "+18885550100"])
def test_us_toll_free_prefixes(toll_free: str) -> None:
    assert declaration_problems(dataclasses.replace(US_FULL, callback_number=toll_free), [US]) == []


def test_uk_marketing_needs_a_callback_number() -> None:
    key_only = dataclasses.replace(FULL, callback_number=None)
    assert declaration_problems(key_only, [FR]) == []
    [p] = declaration_problems(key_only, [UK])
    assert p.code == "optout_missing" and p.source == "PECR reg. 24"
    assert "call-back number" in p.message
    assert (
        declaration_problems(dataclasses.replace(FULL, callback_number="+442079460000"), [UK]) == []
    )


@pytest.mark.parametrize(
    "callback",
    [
        "+33891000000",  # FR premium rate (089)
        "+33899000000",
        "+33810000000",  # FR shared cost
        "+449098790000",  # UK premium rate (Ofcom drama block)
    ],
)
def test_premium_rate_callback_is_refused(callback: str) -> None:
    problems = declaration_problems(dataclasses.replace(FULL, callback_number=callback), [FR])
    assert codes(problems) == ["optout_not_free"]
    assert callback in problems[0].message and "L221-16" in problems[0].source


@pytest.mark.parametrize("callback", ["+33800000000", "+33199000099", "+442079460000"])
def test_free_or_ordinary_callback_is_accepted(callback: str) -> None:
    assert declaration_problems(dataclasses.replace(FULL, callback_number=callback), [FR]) == []


@pytest.mark.parametrize("callback", ["+33639000000", "+3319900", "junk"])
def test_invalid_callback_is_refused(callback: str) -> None:
    problems = declaration_problems(dataclasses.replace(FULL, callback_number=callback), [FR])
    assert codes(problems) == ["optout_not_free"]


@pytest.mark.parametrize("basis", [None, "", "because", "marketing"])
def test_informational_needs_a_legal_basis(basis: str | None) -> None:
    [p] = declaration_problems(dataclasses.replace(INFO, legal_basis=basis), [FR])
    assert p.code == "legal_basis_missing" and p.source == "GDPR art. 6(1)"
    for known in LEGAL_BASES:
        assert known in p.message


@pytest.mark.parametrize("basis", LEGAL_BASES)
def test_every_gdpr_basis_is_accepted(basis: str) -> None:
    assert declaration_problems(dataclasses.replace(INFO, legal_basis=basis), [FR]) == []


def test_marketing_does_not_need_a_legal_basis() -> None:
    assert declaration_problems(dataclasses.replace(FULL, legal_basis=None), [FR]) == []


# --------------------------------------------------------------------------- national lists


@pytest.mark.parametrize(
    ("pack", "name", "days", "source"),
    [
        (FR, "bloctel", 30, "Code de la consommation L223-1 (Bloctel)"),
        (US, "us-dnc", 31, "47 CFR 64.1200(c)(2)"),
        (UK, "tps", 28, "PECR reg. 21 (TPS)"),
    ],
)
def test_national_list_age_boundary(pack, name: str, days: int, source: str) -> None:  # type: ignore[no-untyped-def]
    limit = NOW - timedelta(days=days)
    assert national_list_problems([pack], "marketing", {name: limit}, NOW) == []
    assert national_list_problems([pack], "marketing", {name: NOW}, NOW) == []
    stale = national_list_problems([pack], "marketing", {name: limit - timedelta(seconds=1)}, NOW)
    assert codes(stale) == ["national_list_stale"]
    assert stale[0].source == source
    assert name in stale[0].message and f"at most {days}" in stale[0].message
    older = national_list_problems([pack], "marketing", {name: NOW - timedelta(days=40)}, NOW)
    assert "40 days old" in older[0].message


def test_bloctel_thirty_days_in_another_zone() -> None:
    from zoneinfo import ZoneInfo

    now_paris = NOW.astimezone(ZoneInfo("Europe/Paris"))
    dates = {"bloctel": NOW - timedelta(days=30)}
    assert national_list_problems([FR], "marketing", dates, now_paris) == []
    dates = {"bloctel": NOW - timedelta(days=30, seconds=1)}
    assert codes(national_list_problems([FR], "marketing", dates, now_paris)) == [
        "national_list_stale"
    ]


def test_missing_list_is_a_problem_per_pack() -> None:
    problems = national_list_problems([FR, US, UK], "marketing", {}, NOW)
    assert codes(problems) == ["national_list_missing"] * 3
    assert ["bloctel" in problems[0].message, "us-dnc" in problems[1].message] == [True, True]
    assert "tps" in problems[2].message
    assert "voicecast opposition import bloctel FILE" in problems[0].message
    none_date = national_list_problems([FR], "marketing", {"bloctel": None}, NOW)
    assert codes(none_date) == ["national_list_missing"]


def test_only_the_lists_of_the_packs_used_matter() -> None:
    assert national_list_problems([FR], "marketing", {"bloctel": NOW}, NOW) == []
    assert national_list_problems([US], "marketing", {"us-dnc": NOW, "bloctel": None}, NOW) == []
    assert national_list_problems([GENERIC], "marketing", {}, NOW) == []  # no national list
    stale_fr = {"bloctel": NOW - timedelta(days=31), "us-dnc": NOW}
    assert codes(national_list_problems([FR, US], "marketing", stale_fr, NOW)) == [
        "national_list_stale"
    ]


def test_informational_campaigns_are_not_concerned() -> None:
    assert national_list_problems([FR, US, UK], "informational", {}, NOW) == []
    stale = {"bloctel": NOW - timedelta(days=365)}
    assert national_list_problems([FR], "informational", stale, NOW) == []


# --------------------------------------------------------------------------- ring timeout


@pytest.mark.parametrize(("seconds", "ok"), [(14.9, False), (15.0, True), (30.0, True)])
def test_uk_rings_at_least_fifteen_seconds(seconds: float, ok: bool) -> None:
    problems = ring_problems([UK], seconds)
    assert (problems == []) is ok
    if not ok:
        [p] = problems
        assert p.code == "ring_too_short" and "14.9 s" in p.message and "15 s" in p.message
        assert "Ofcom" in p.source


def test_ring_timeout_has_no_minimum_in_france_or_the_us() -> None:
    assert ring_problems([FR, US], 5.0) == []
    assert codes(ring_problems([FR, US, UK, GENERIC], 10.0)) == ["ring_too_short"] * 2


def test_a_national_list_can_be_left_out_of_the_required_ones() -> None:
    from datetime import UTC, datetime

    from voicecast.compliance.checks import national_list_problems
    from voicecast.compliance.packs import build_packs

    packs = build_packs()
    now = datetime(2026, 11, 25, 10, tzinfo=UTC)
    missing = national_list_problems([packs.fr, packs.us], "marketing", {}, now)
    assert {p.code for p in missing} == {"national_list_missing"} and len(missing) == 2
    only_us = national_list_problems([packs.fr, packs.us], "marketing", {}, now, ["us-dnc"])
    assert [p.message.split(":")[0] for p in only_us] == ["us-dnc"]
