"""Campaign-level rules, checked before a campaign starts and while it runs.

Pure functions over a :class:`Declaration` and facts read elsewhere; each returns a list of
:class:`Problem` (empty = fine). A campaign with any problem cannot start, and a running one
pauses when a problem appears (e.g. its national opposition list became too old).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from phonenumbers import PhoneNumberType

from voicecast.compliance.packs import RulePack
from voicecast.compliance.types import LEGAL_BASES, OPTOUT_KEYS, Audience, Purpose

# ARCEP décision 2022-1583: numbers an automated calling system may present in France.
NPV_PREFIXES = (
    "0162",
    "0163",
    "0270",
    "0271",
    "0377",
    "0378",
    "0424",
    "0425",
    "0568",
    "0569",
    "0948",
    "0949",
    "09475",
    "09476",
    "09477",
    "09478",
    "09479",
)
US_TOLL_FREE = re.compile(r"^\+18(00|33|44|55|66|77|88)\d{7}$")
ARCEP_SOURCE = "ARCEP décision 2022-1583"


@dataclass(frozen=True, slots=True)
class Problem:
    """A reason a campaign may not (or no longer) dial.

    Attributes:
        code: stable identifier (``declaration_missing``, ``caller_id_not_allowed``,
            ``national_list_stale``...).
        message: one human sentence naming the field or list.
        source: the rule's legal source.
    """

    code: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        """``message [source]``, as the CLI lists it."""
        return f"{self.message} [{self.source}]" if self.source else self.message


@dataclass(frozen=True)
class Declaration:
    """What a campaign declares before it may start (all strings as stored)."""

    purpose: str | None
    audience: str | None
    sender_name: str | None
    on_behalf_of: str | None
    optout_key: str | None
    callback_number: str | None
    legal_basis: str | None


def declaration_problems(d: Declaration, packs_used: Iterable[RulePack]) -> list[Problem]:
    """Missing or contradictory declaration fields.

    Every message identifies the sender and on whose behalf, and marketing gives a free,
    working opt-out (CPCE L34-5; Code conso L221-16; 47 CFR 64.1200(b); PECR reg. 24): a
    marketing campaign without an opt-out key or call-back number cannot start; US
    telemarketing needs both a key-press opt-out and a toll-free call-back number; UK
    marketing gives a call-back number. Informational campaigns declare a GDPR legal basis.
    """
    problems: list[Problem] = []
    src = "CPCE L34-5; Code conso L221-16"
    if d.purpose not in {p.value for p in Purpose}:
        problems.append(Problem("declaration_missing", "purpose: marketing or informational", src))
    if d.audience not in {a.value for a in Audience}:
        problems.append(Problem("declaration_missing", "audience: b2c or b2b", src))
    if not (d.sender_name or "").strip():
        problems.append(Problem("declaration_missing", "sender name: who is calling", src))
    if not (d.on_behalf_of or "").strip():
        problems.append(
            Problem("declaration_missing", "on behalf of: whose offer or notice it is", src)
        )
    if d.optout_key is not None and d.optout_key not in OPTOUT_KEYS:
        problems.append(Problem("declaration_invalid", "opt-out key: one of 0-9, * or #", src))
    codes = {p.code for p in packs_used}
    if d.purpose == Purpose.MARKETING:
        if not d.optout_key and not d.callback_number:
            problems.append(
                Problem(
                    "optout_missing",
                    "a marketing campaign needs an opt-out means: an opt-out key and/or a "
                    "call-back number",
                    src,
                )
            )
        if "US" in codes:
            if not d.optout_key:
                problems.append(
                    Problem(
                        "optout_missing",
                        "US telemarketing: an automated opt-out key is required",
                        "47 CFR 64.1200(b)(3)",
                    )
                )
            if not d.callback_number or not US_TOLL_FREE.match(d.callback_number):
                problems.append(
                    Problem(
                        "optout_missing",
                        "US telemarketing: a toll-free call-back number (+1 8xx) is "
                        "required for messages left on voicemail",
                        "47 CFR 64.1200(b)(3)",
                    )
                )
        if "UK" in codes and not d.callback_number:
            problems.append(
                Problem(
                    "optout_missing",
                    "UK: the message must give an address or freephone number: set a "
                    "call-back number",
                    "PECR reg. 24",
                )
            )
    if d.callback_number:
        try:
            parsed = phonenumbers.parse(d.callback_number, None)
            premium = phonenumbers.number_type(parsed) in (
                PhoneNumberType.PREMIUM_RATE,
                PhoneNumberType.SHARED_COST,
            )
            valid = phonenumbers.is_valid_number(parsed)
        except phonenumbers.NumberParseException:
            premium, valid = False, False
        if not valid or premium:
            problems.append(
                Problem(
                    "optout_not_free",
                    f"call-back number {d.callback_number}: must be a valid number that is "
                    "free to call (not premium rate)",
                    "Code conso L221-16; CPCE L34-5",
                )
            )
    if d.purpose == Purpose.INFORMATIONAL and d.legal_basis not in LEGAL_BASES:
        problems.append(
            Problem(
                "legal_basis_missing",
                f"legal basis of an informational campaign: one of {', '.join(LEGAL_BASES)}",
                "GDPR art. 6(1)",
            )
        )
    return problems


def national_form_fr(e164: str) -> str | None:
    """``+33162000000`` -> ``0162000000``; None when not a French (+33) number."""
    return "0" + e164[3:] if e164.startswith("+33") else None


def is_npv(e164: str) -> bool:
    """True when ``e164`` may be presented by an automated system calling France.

    ARCEP décision 2022-1583: a verified polyvalent number (NPV: 0162, 0163, 0270, 0271,
    0377, 0378, 0424, 0425, 0568, 0569, 0948, 0949, overseas 09475-09479) or a special
    08 number other than 089. Never 01-05 geographic, 06/07 mobile or other 09 numbers;
    0937-0939 are platform numbers, not NPV.
    """
    national = national_form_fr(e164)
    if national is None:
        return False
    if national.startswith(NPV_PREFIXES):
        return True
    return national.startswith("08") and not national.startswith("089")


def caller_id_problems(
    caller_id: str,
    packs_used: Iterable[RulePack],
    *,
    npv_exemption: bool = False,
    distinct_numbers_30d: int = 0,
) -> list[Problem]:
    """Whether the campaign's caller ID (CLI, E.164) may be presented to its callees.

    Args:
        caller_id: E.164 (empty = withheld).
        packs_used: the packs of the campaign's callees.
        npv_exemption: ``[compliance] npv_exemption``: the operator declares a system
            reaching at most 5 distinct numbers per 30 days (ARCEP 2022-1583).
        distinct_numbers_30d: distinct numbers dialled in the last 30 days plus those of
            this campaign not among them: the exemption holds only while <= 5.

    FR: an NPV or allowed special number (:func:`is_npv`). US, UK and others: present and
    a valid number that can be called back (47 CFR 64.1601(e); PECR as amended 2016).
    """
    problems: list[Problem] = []
    valid = False
    if caller_id:
        try:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(caller_id, None))
        except phonenumbers.NumberParseException:
            valid = False
    for pack in {p.code: p for p in packs_used}.values():
        if pack.caller_id_rule == "npv_fr":
            if is_npv(caller_id):
                continue
            if npv_exemption and distinct_numbers_30d <= 5:
                continue
            why = (
                f"exemption declared but {distinct_numbers_30d} distinct numbers in 30 days "
                "(at most 5)"
                if npv_exemption
                else "use an NPV (0162, 0163, 0270, 0271, 0377, 0378, 0424, 0425, 0568, "
                "0569, 0948, 0949, overseas 09475-09479) or an 08 number other than 089"
            )
            problems.append(
                Problem(
                    "caller_id_not_allowed",
                    f"caller ID {caller_id or '(none)'} may not be presented by an automated "
                    f"system calling France: {why}",
                    ARCEP_SOURCE,
                )
            )
        elif not valid:
            problems.append(
                Problem(
                    "caller_id_not_allowed",
                    f"caller ID {caller_id or '(none)'}: {pack.name} requires a caller ID "
                    "that can be called back",
                    pack.caller_id_source,
                )
            )
    return problems


def national_list_problems(
    packs_used: Iterable[RulePack],
    purpose: str | None,
    list_dates: Mapping[str, datetime | None],
    now: datetime,
    required: Iterable[str] | None = None,
) -> list[Problem]:
    """Marketing to a country with a national opposition list needs a fresh copy of it.

    Args:
        list_dates: list name (``bloctel``, ``us-dnc``, ``tps``) -> the stored version's
            date (UTC), None or absent when never imported.
        now: the instant of the check (aware).
        required: the list names that must be fresh (``[compliance] national_lists``);
            None = every pack's list.

    Maximum ages: Bloctel 30 days (Code conso L223-1), US DNC 31 days (47 CFR
    64.1200(c)(2)), TPS 28 days (PECR reg. 21). Informational campaigns are not scrubbed.
    """
    if purpose != Purpose.MARKETING:
        return []
    wanted = set(required) if required is not None else None
    problems: list[Problem] = []
    for pack in {p.code: p for p in packs_used}.values():
        if pack.national_list is None or pack.national_list_max_age is None:
            continue
        if wanted is not None and pack.national_list not in wanted:
            continue
        date = list_dates.get(pack.national_list)
        if date is None:
            problems.append(
                Problem(
                    "national_list_missing",
                    f"{pack.national_list}: no copy imported; the campaign calls {pack.name} "
                    f"(voicecast opposition import {pack.national_list} FILE --as-of LIST-DATE)",
                    pack.national_list_source,
                )
            )
            continue
        age = now - date
        if age > pack.national_list_max_age:
            problems.append(
                Problem(
                    "national_list_stale",
                    f"{pack.national_list}: the stored copy is {age.days} days old "
                    f"(at most {pack.national_list_max_age.days}); import a fresh one",
                    pack.national_list_source,
                )
            )
    return problems


def ring_problems(packs_used: Iterable[RulePack], ring_timeout: float) -> list[Problem]:
    """Ofcom: an unanswered call rings at least 15 s before the dialler gives up."""
    problems: list[Problem] = []
    for pack in {p.code: p for p in packs_used}.values():
        if pack.min_ring_timeout is not None and ring_timeout < pack.min_ring_timeout:
            problems.append(
                Problem(
                    "ring_too_short",
                    f"ring timeout {ring_timeout:g} s: {pack.name} needs at least "
                    f"{pack.min_ring_timeout:g} s",
                    pack.ring_source,
                )
            )
    return problems
