"""A campaign under the compliance gate: its declaration, its start checks, the dry run.

Ties the pure rules of :mod:`voicecast.compliance` to the stored campaign: builds its
:class:`~voicecast.compliance.gate.CampaignRules` and
:class:`~voicecast.compliance.checks.Declaration`, lists the campaign-level problems that
forbid a start (or pause a running campaign), and runs ``voicecast campaign check``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voicecast.compliance.calendar import parse_windows
from voicecast.compliance.checks import (
    Declaration,
    Problem,
    caller_id_problems,
    declaration_problems,
    national_list_problems,
    ring_problems,
)
from voicecast.compliance.facts import load_facts
from voicecast.compliance.gate import CampaignRules, decide, profile_of
from voicecast.compliance.packs import PackSet, RulePack, build_packs
from voicecast.compliance.suppression import opposition_status
from voicecast.compliance.types import Audience, Decision, Purpose, Verdict
from voicecast.config import ComplianceSettings
from voicecast.storage.models import CallAttempt, Campaign, CampaignContact, Contact

BATCH = 500


@dataclass(frozen=True)
class GateEnv:
    """What the gate needs besides the database: the hash key, the packs, the settings."""

    key: bytes
    packs: PackSet
    settings: ComplianceSettings

    @classmethod
    def build(cls, key: bytes, settings: ComplianceSettings) -> GateEnv:
        """Build the packs from ``[compliance]``.

        Raises:
            ValueError: a window string of the settings is invalid.
        """
        packs = build_packs(
            generic_hours=settings.generic_hours,
            uk_hours=settings.uk_hours,
            unknown_region_holidays=settings.unknown_region_holidays,
        )
        return cls(key, packs, settings)


def campaign_rules(campaign: Campaign) -> CampaignRules:
    """The gate's view of a campaign's declaration (purpose defaults to the strictest)."""
    return CampaignRules(
        purpose=Purpose(campaign.purpose or Purpose.MARKETING),
        audience=Audience(campaign.audience or Audience.B2C),
        consent_basis=campaign.legal_basis == "consent",
        legal_basis=campaign.legal_basis,
        hours=parse_windows(campaign.hours) if campaign.hours else None,
        max_attempts_30d=campaign.max_attempts_30d,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
    )


def declaration(campaign: Campaign) -> Declaration:
    """The campaign's declaration fields."""
    return Declaration(
        purpose=campaign.purpose,
        audience=campaign.audience,
        sender_name=campaign.sender_name,
        on_behalf_of=campaign.on_behalf_of,
        optout_key=campaign.optout_key,
        callback_number=campaign.callback_number,
        legal_basis=campaign.legal_basis,
    )


def packs_used(session: Session, campaign: Campaign, packs: PackSet) -> list[RulePack]:
    """The rule packs of the campaign list's numbers (one sample number per 5-char prefix:
    the country code and, for +1, the area code decide the pack)."""
    prefix = func.substr(Contact.phone_e164, 1, 5)
    samples = session.execute(
        select(prefix, func.min(Contact.phone_e164))
        .where(Contact.list_id == campaign.list_id)
        .group_by(prefix)
    ).all()
    found: dict[str, RulePack] = {}
    for _, sample in samples:
        region = profile_of(sample).region
        if region is None:
            continue  # an invalid number: the gate blocks it, no pack applies
        pack = packs.for_region(region)
        found[pack.code] = pack
    return [p for p in packs.all() if p.code in found]


def distinct_numbers_30d(session: Session, campaign: Campaign, now: datetime) -> int:
    """Distinct numbers dialled in the last 30 days by every campaign, plus this campaign's
    list numbers not among them (the ARCEP NPV exemption's count)."""
    dialled = set(
        session.scalars(
            select(CallAttempt.number)
            .where(CallAttempt.created_at > now - timedelta(days=30))
            .distinct()
        )
    )
    if len(dialled) > 5:
        return len(dialled)
    listed = set(
        session.scalars(
            select(Contact.phone_e164).where(Contact.list_id == campaign.list_id).limit(10)
        )
    )
    return len(dialled | listed)


def campaign_problems(
    session: Session, campaign: Campaign, env: GateEnv, now: datetime
) -> list[Problem]:
    """Everything that forbids this campaign to dial at ``now``: declaration, caller ID,
    national opposition lists' age, ring timeout, end date.
    """
    used = packs_used(session, campaign, env.packs)
    problems = declaration_problems(declaration(campaign), used)
    if campaign.hours:
        try:
            parse_windows(campaign.hours)
        except ValueError as exc:
            problems.append(Problem("declaration_invalid", f"hours: {exc}"))
    problems += caller_id_problems(
        campaign.caller_id,
        used,
        npv_exemption=env.settings.npv_exemption,
        distinct_numbers_30d=distinct_numbers_30d(session, campaign, now)
        if env.settings.npv_exemption
        else 0,
    )
    dates = {info.name: info.list_date for info in opposition_status(session)}
    # an undeclared purpose is treated as the strictest (marketing), as the gate does
    problems += national_list_problems(
        used, campaign.purpose or "marketing", dates, now, env.settings.national_lists
    )
    problems += ring_problems(used, campaign.ring_timeout)
    if campaign.ends_at is not None and now >= campaign.ends_at:
        problems.append(
            Problem("campaign_ended", f"the campaign's end date {campaign.ends_at} has passed")
        )
    return problems


@dataclass
class CheckReport:
    """``voicecast campaign check``: what the gate would decide for every contact at ``at``.

    Attributes:
        at: the instant of the dry run (UTC).
        allow: contacts that would be dialled now.
        deferred: reason -> (count, earliest until, latest until) (UTC).
        blocked: reason -> count.
        problems: campaign-level problems (the campaign may not dial at all while any).
        done: contacts already finished in this campaign (not re-checked).
        contacts: with ``details``, one entry per checked contact (number, verdict, reason,
            until (UTC), detail, source), else None.
    """

    at: datetime
    allow: int = 0
    deferred: dict[str, list[Any]] = field(default_factory=dict)
    blocked: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    done: int = 0
    contacts: list[dict[str, Any]] | None = None

    def add(self, decision: Decision) -> None:
        """Count one decision."""
        if decision.verdict is Verdict.ALLOW:
            self.allow += 1
        elif decision.verdict is Verdict.BLOCK:
            self.blocked[decision.reason.value] += 1
        else:
            until = decision.until
            entry = self.deferred.setdefault(decision.reason.value, [0, until, until])
            entry[0] += 1
            if until is not None:
                entry[1] = min(entry[1], until) if entry[1] else until
                entry[2] = max(entry[2], until) if entry[2] else until

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (instants in ISO 8601 UTC)."""

        def iso(v: datetime | None) -> str | None:
            return v.astimezone(UTC).isoformat() if v else None

        return {
            "at": iso(self.at),
            "would_call_now": self.allow,
            "deferred": {
                r: {"count": n, "earliest": iso(a), "latest": iso(b)}
                for r, (n, a, b) in sorted(self.deferred.items())
            },
            "blocked": dict(sorted(self.blocked.items())),
            "already_done": self.done,
            "problems": [
                {"code": p.code, "message": p.message, "source": p.source} for p in self.problems
            ],
            **({"contacts": self.contacts} if self.contacts is not None else {}),
        }


def _candidates(session: Session, campaign: Campaign) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Batches of (number, fields) the campaign would still call: its pending contacts, and
    the list's contacts it has not queued yet."""
    queued = select(CampaignContact.contact_id).where(CampaignContact.campaign_id == campaign.id)
    pending = (
        select(Contact.phone_e164, Contact.fields)
        .join(CampaignContact, CampaignContact.contact_id == Contact.id)
        .where(
            CampaignContact.campaign_id == campaign.id,
            CampaignContact.state.in_(("pending", "dialing")),
        )
    )
    fresh = select(Contact.phone_e164, Contact.fields).where(
        Contact.list_id == campaign.list_id, Contact.id.not_in(queued)
    )
    for query in (pending, fresh):
        batch: list[tuple[str, dict[str, Any]]] = []
        for number, fields in session.execute(query.execution_options(yield_per=BATCH)):
            batch.append((number, fields or {}))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def check_campaign(
    session: Session, campaign: Campaign, env: GateEnv, at: datetime, *, details: bool = False
) -> CheckReport:
    """Dry run of the gate for every contact the campaign would still call, at ``at``.

    Nothing is written and nothing is dialled. Note: a contact's stored retry time is not
    applied; the report answers "if it were due at ``at``". The opt-out and opposition
    lists are the stored ones (today's), whatever ``at`` says.

    Args:
        details: also list every contact's decision (:attr:`CheckReport.contacts`).
    """
    report = CheckReport(at=at.astimezone(UTC), contacts=[] if details else None)
    report.problems = campaign_problems(session, campaign, env, at)
    rules = campaign_rules(campaign)
    report.done = (
        session.scalar(
            select(func.count()).where(
                CampaignContact.campaign_id == campaign.id, CampaignContact.state == "done"
            )
        )
        or 0
    )
    for batch in _candidates(session, campaign):
        facts_batch = load_facts(session, env.key, env.packs, batch, rules.purpose, at)
        for (number, _), facts in zip(batch, facts_batch, strict=True):
            decision = decide(facts, rules, env.packs, at)
            report.add(decision)
            if report.contacts is not None:
                report.contacts.append(
                    {
                        "number": number,
                        "verdict": decision.verdict.value,
                        "reason": decision.reason.value,
                        "until": decision.until.isoformat() if decision.until else None,
                        "detail": decision.detail,
                        "source": decision.source,
                    }
                )
    return report
