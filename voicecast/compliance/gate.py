"""The compliance gate: one pure function decides each dial, first attempt or retry.

:func:`decide` takes what is known of the callee (:class:`ContactFacts`, read from the
database by :mod:`voicecast.compliance.facts`), the campaign's declared rules
(:class:`CampaignRules`), the rule packs and the instant of the dial, and returns a
:class:`~voicecast.compliance.types.Decision`: ``allow``, ``defer`` until the next legal
instant (UTC), or ``block`` with a reason code and the rule's source. Nothing here reads a
clock or a database, so every boundary is testable with a literal ``now``.

Order: blocks first (they are final for the campaign), then the earliest instant at which
every deferring rule is satisfied (campaign start, frequency caps, machine silence), then
the calling window at that instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from voicecast.compliance.calendar import WeeklyWindows, check_window
from voicecast.compliance.packs import CapRule, PackSet, RulePack, holiday_calendar
from voicecast.compliance.types import Audience, Decision, Purpose, Reason, Verdict
from voicecast.compliance.zones import number_region, number_regions, number_zones, us_state

OPT_OUT_SOURCE = "CPCE L34-5; Code conso L221-16; GDPR art. 21(2)-(3); FCC 24-24"
THIRTY_DAYS = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class NumberProfile:
    """What the number alone tells: its region, candidate time zones and US state.

    Attributes:
        number: E.164.
        region: phonenumbers region code (``FR``, ``RE``, ``US``, ``GB``...), None if invalid.
        zones: IANA zones the callee may be in (several for some numbers), sorted.
        state: two-letter US state from the area code, else None.
        regions: every region the number is valid in (shared ranges: +590 690 mobiles are
            GP, BL and MF), for rules that depend on the territory (holidays).
    """

    number: str
    region: str | None
    zones: tuple[str, ...]
    state: str | None
    regions: tuple[str, ...] = ()

    @property
    def all_regions(self) -> tuple[str, ...]:
        """Every region the number may belong to (at least :attr:`region`)."""
        return self.regions or ((self.region,) if self.region else ())


@lru_cache(maxsize=262_144)
def profile_of(number: str) -> NumberProfile:
    """The :class:`NumberProfile` of an E.164 number (cached: phonenumbers is slow)."""
    region = number_region(number)
    return NumberProfile(
        number=number,
        region=region,
        zones=number_zones(number) if region else (),
        state=us_state(number) if region else None,
        regions=number_regions(number) if region else (),
    )


@dataclass(frozen=True, slots=True)
class ConsentView:
    """The consent in force for the campaign's purpose: the ledger's latest record
    (``consent_id``: its ledger row; ``batch``: the import it came with), which the proof
    journal cites as the legal basis of the calls it allows."""

    granted: bool
    recorded_at: datetime
    source: str = ""
    proof_ref: str = ""
    consent_id: int | None = None
    batch: str | None = None
    wording_version: str | None = None


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """Everything the gate needs to know about one callee at one instant.

    Attributes:
        profile: from the number (:func:`profile_of`).
        subdivision: the callee's department/state when known from the contact's fields
            (``"57"``, ``"974"``), else None.
        professional: the contact is marked professional (B2B).
        consent: the latest consent record for the campaign's purpose, or None.
        opted_out: on the organisation's opt-out list.
        on_national_list: on the national opposition list of the callee's pack.
        last_refusal: when the callee last declined an offer (UTC), or None.
        attempts: start instants (UTC, ascending) of the stored attempts to this number by
            every campaign, at least those of the last 30 days.
        last_machine_at: when an answering machine last answered this number (UTC).
        extra_zones: zones the callee may also be in, from the contact's address (an
            overseas department for a metropolitan mobile...): the window must be open in
            these too.
    """

    profile: NumberProfile
    subdivision: str | None = None
    professional: bool = False
    consent: ConsentView | None = None
    opted_out: bool = False
    on_national_list: bool = False
    last_refusal: datetime | None = None
    attempts: tuple[datetime, ...] = ()
    last_machine_at: datetime | None = None
    extra_zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class CampaignRules:
    """A campaign's declaration as the gate uses it.

    Attributes:
        purpose, audience: declared.
        consent_basis: the campaign's legal basis is consent (then informational calls need
            a live consent too).
        legal_basis: the declared GDPR art. 6(1) basis of an informational campaign (stored
            with each allowed dial).
        hours: the campaign's own window, intersected with the pack's (tighten only).
        max_attempts_30d: the campaign's own cap per number per 30 rolling days (tighten).
        starts_at, ends_at: the campaign's dates (UTC), None = open.
    """

    purpose: Purpose
    audience: Audience
    consent_basis: bool = False
    legal_basis: str | None = None
    hours: WeeklyWindows | None = None
    max_attempts_30d: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


def _block(reason: Reason, source: str, detail: str) -> Decision:
    return Decision(Verdict.BLOCK, reason, source, detail)


@lru_cache(maxsize=1024)
def _windows(
    pack: RulePack, purpose: Purpose, state: str | None, campaign_hours: WeeklyWindows | None
) -> tuple[WeeklyWindows | None, str]:
    """The window in force and its source: the pack's (or state's) ∩ the campaign's."""
    hours: WeeklyWindows | None
    if purpose is Purpose.MARKETING:
        rule = pack.state_rules.get(state or "")
        hours, source = (
            (rule.hours, rule.source) if rule is not None else (pack.marketing_hours, "")
        )
        source = source or pack.hours_source
    else:
        hours, source = pack.informational_hours, pack.hours_source
    if campaign_hours is not None:
        if hours is None:
            return campaign_hours, "campaign hours"
        return hours.intersect(campaign_hours), f"{source}; campaign hours"
    return hours, source


def _caps(rules: CampaignRules, pack: RulePack, state: str | None) -> list[CapRule]:
    caps = [c for c in pack.caps if rules.purpose in c.purposes]
    rule = pack.state_rules.get(state or "")
    if rule is not None:
        caps.extend(c for c in rule.caps if rules.purpose in c.purposes)
    if rules.max_attempts_30d is not None:
        caps.append(CapRule(rules.max_attempts_30d, THIRTY_DAYS, "campaign cap"))
    return caps


def cap_until(cap: CapRule, attempts: tuple[datetime, ...], at: datetime) -> datetime | None:
    """When the next attempt is allowed under ``cap``, or None when allowed at ``at``.

    The cap counts attempts in the rolling period ``(at - period, at]``: with
    ``max_attempts`` of them, the next one waits until the oldest that must age out does
    (its start + period). E.g. FR (D223-9): 4 attempts on days 0, 1, 2, 3 -> a 5th waits
    until day 30 at the first attempt's time of day.
    """
    recent = [a for a in attempts if at - cap.period < a <= at]
    if len(recent) < cap.max_attempts:
        return None
    recent.sort()
    return recent[len(recent) - cap.max_attempts] + cap.period


def _allowed(facts: ContactFacts, rules: CampaignRules, pack: RulePack) -> Decision:
    """``allow``, with what made the call lawful (the consent's proof, the B2B basis or the
    declared legal basis) so the stored decision proves it."""
    consent = facts.consent
    if consent is not None and consent.granted:
        return Decision(
            Verdict.ALLOW,
            Reason.OK,
            pack.consent_source,
            f"consent ({rules.purpose}) by {consent.source}, proof {consent.proof_ref}, "
            f"recorded {_fmt(consent.recorded_at)}",
        )
    if rules.purpose is Purpose.MARKETING:
        return Decision(
            Verdict.ALLOW, Reason.OK, pack.b2b_source, "professional contact (B2B), no objection"
        )
    return Decision(
        Verdict.ALLOW,
        Reason.OK,
        "GDPR art. 6(1)",
        f"informational; legal basis: {rules.legal_basis or 'not declared'}",
    )


def allowed_basis(facts: ContactFacts, rules: CampaignRules, packs: PackSet) -> Decision:
    """The ``allow`` decision the gate would give this contact once every other rule is met:
    what would make the call lawful (consent and its proof, the B2B basis or the declared
    legal basis) and its legal source, whatever the hour. For reports (``voicecast subject
    proof``), not for dialling: :func:`decide` is the gate.

    Raises:
        ValueError: the number is not valid (no region, hence no rule pack).
    """
    region = facts.profile.region
    if region is None:
        raise ValueError(f"{facts.profile.number} is not a valid number")
    return _allowed(facts, rules, packs.for_region(region))


def _fmt(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M UTC")


def decide(facts: ContactFacts, rules: CampaignRules, packs: PackSet, now: datetime) -> Decision:
    """Decide one dial at instant ``now`` (aware; any zone).

    Returns:
        ``allow``; ``defer`` with ``until`` (UTC) = the next instant at which every rule
        is met (campaign start, frequency caps, machine silence, then the callee's calling
        window in every candidate zone); or ``block`` when the number may not be called in
        this campaign (opted out, opposition list, no or withdrawn consent, not a
        professional for B2B, recent refusal, no legal instant before the campaign ends,
        unknown number or zone). Each carries its reason code and legal source.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    profile = facts.profile
    if profile.region is None:
        return _block(Reason.INVALID_NUMBER, "", f"{profile.number} is not a valid number")
    pack = packs.for_region(profile.region)
    marketing = rules.purpose is Purpose.MARKETING

    # --- blocks ---------------------------------------------------------------------------
    if facts.opted_out:
        return _block(Reason.OPTED_OUT, OPT_OUT_SOURCE, "on the organisation's opt-out list")
    if marketing and pack.national_list and facts.on_national_list:
        return _block(
            Reason.OPPOSITION_LIST,
            pack.national_list_source,
            f"on the national opposition list ({pack.national_list})",
        )
    consent = facts.consent
    needs_consent = (rules.purpose, rules.audience) in pack.consent_required or (
        rules.consent_basis and not marketing
    )
    if consent is not None and not consent.granted and (needs_consent or marketing):
        return _block(
            Reason.CONSENT_WITHDRAWN,
            pack.consent_source,
            f"consent ({rules.purpose}) refused or withdrawn on {_fmt(consent.recorded_at)}",
        )
    if needs_consent and consent is None:
        return _block(
            Reason.NO_CONSENT,
            pack.consent_source if marketing else "GDPR art. 6(1)(a) (declared legal basis)",
            f"no {rules.purpose} consent recorded for this number",
        )
    if (
        marketing
        and rules.audience is Audience.B2B
        and pack.b2b_needs_professional
        and not facts.professional
        and consent is None
    ):
        return _block(
            Reason.NOT_PROFESSIONAL,
            pack.b2b_source,
            "B2B campaign: the contact is not marked professional and has no consent",
        )
    if marketing and pack.refusal_silence and facts.last_refusal is not None:
        free_at = facts.last_refusal + pack.refusal_silence
        if now < free_at:
            return _block(
                Reason.RECENT_REFUSAL,
                pack.refusal_source,
                f"declined on {_fmt(facts.last_refusal)}: no call before {_fmt(free_at)}",
            )
    if rules.ends_at is not None and now >= rules.ends_at:
        return _block(Reason.CAMPAIGN_ENDED, "", f"the campaign ended {_fmt(rules.ends_at)}")
    zones = profile.zones
    if facts.extra_zones:
        zones = tuple(sorted(set(zones) | set(facts.extra_zones)))
    if not zones:
        return _block(
            Reason.NO_LEGAL_WINDOW, pack.hours_source, "the callee's time zone is unknown"
        )

    # --- the earliest instant every deferring rule allows -----------------------------------
    at = now
    reason: Reason | None = None
    source = ""
    detail = ""
    if rules.starts_at is not None and at < rules.starts_at:
        at, reason, source = rules.starts_at, Reason.CAMPAIGN_NOT_STARTED, ""
        detail = f"the campaign starts {_fmt(rules.starts_at)}"
    for cap in _caps(rules, pack, profile.state):
        until = cap_until(cap, facts.attempts, at)
        if until is not None and until > at:
            if reason is None:
                reason, source = Reason.FREQUENCY_CAP, cap.source
                detail = (
                    f"{cap.max_attempts} attempts in {cap.period.days or 1} "
                    f"{'days' if cap.period.days else 'day'} reached"
                )
            at = until
    if pack.machine_silence and facts.last_machine_at is not None:
        free_at = facts.last_machine_at + pack.machine_silence
        if free_at > at:
            if reason is None:
                reason, source = Reason.MACHINE_RECENTLY, pack.machine_source
                detail = f"an answering machine answered on {_fmt(facts.last_machine_at)}"
            at = free_at

    windows, window_source = _windows(pack, rules.purpose, profile.state, rules.hours)
    if windows is not None:
        calendar = holiday_calendar(
            pack, profile.all_regions, facts.subdivision, packs.unknown_region_holidays
        )
        check = check_window(windows, calendar, zones, at)
        if not check.open:
            if check.next_open is None:
                return _block(
                    Reason.NO_LEGAL_WINDOW, window_source, f"no legal instant: {check.detail}"
                )
            if reason is None:
                reason, source, detail = (
                    check.reason or Reason.OUTSIDE_HOURS,
                    window_source,
                    check.detail,
                )
            at = check.next_open
    if reason is None:
        return _allowed(facts, rules, pack)
    if rules.ends_at is not None and at >= rules.ends_at:
        return _block(
            Reason.CAMPAIGN_ENDED,
            source,
            f"{detail}; the next legal instant {_fmt(at)} is after the campaign's end",
        )
    return Decision(Verdict.DEFER, reason, source, detail, until=at.astimezone(UTC))
