"""Vocabulary of the compliance gate: purposes, audiences, verdicts and reason codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Purpose(StrEnum):
    """Why a campaign calls: canvassing (``marketing``) or a service notice (``informational``)."""

    MARKETING = "marketing"
    INFORMATIONAL = "informational"


LEGAL_BASES = (
    "consent",
    "contract",
    "legitimate_interest",
    "legal_obligation",
    "vital_interest",
    "public_task",
)
"""GDPR art. 6(1) (a)-(f), the legal basis an informational campaign declares."""

OPTOUT_KEYS = frozenset("0123456789*#")
"""DTMF keys a campaign may declare as its opt-out key."""


class Audience(StrEnum):
    """Consumers (``b2c``) or professionals called about their profession (``b2b``)."""

    B2C = "b2c"
    B2B = "b2b"


class Verdict(StrEnum):
    """The gate's answer for one dial."""

    ALLOW = "allow"
    DEFER = "defer"  # not now: retry at Decision.until (UTC)
    BLOCK = "block"  # not in this campaign


class Reason(StrEnum):
    """Why the gate deferred or blocked a dial (stored with each decision)."""

    OK = "ok"
    # calling windows (defer)
    OUTSIDE_HOURS = "outside_hours"
    CLOSED_DAY = "closed_day"
    PUBLIC_HOLIDAY = "public_holiday"
    CAMPAIGN_NOT_STARTED = "campaign_not_started"
    # caps (defer)
    FREQUENCY_CAP = "frequency_cap"
    MACHINE_RECENTLY = "machine_recently"
    # blocks
    NO_LEGAL_WINDOW = "no_legal_window"
    CAMPAIGN_ENDED = "campaign_ended"
    RECENT_REFUSAL = "recent_refusal"
    NO_CONSENT = "no_consent"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    NOT_PROFESSIONAL = "not_professional"
    OPTED_OUT = "opted_out"
    OPPOSITION_LIST = "opposition_list"
    INVALID_NUMBER = "invalid_number"


REASON_TEXT: dict[Reason, str] = {
    Reason.OK: "allowed",
    Reason.OUTSIDE_HOURS: "outside calling hours",
    Reason.CLOSED_DAY: "not a calling day",
    Reason.PUBLIC_HOLIDAY: "public holiday",
    Reason.CAMPAIGN_NOT_STARTED: "campaign not started yet",
    Reason.FREQUENCY_CAP: "attempt cap reached",
    Reason.MACHINE_RECENTLY: "answering machine in the last 24 h",
    Reason.NO_LEGAL_WINDOW: "no legal calling time",
    Reason.CAMPAIGN_ENDED: "campaign ended",
    Reason.RECENT_REFUSAL: "declined an offer recently",
    Reason.NO_CONSENT: "no consent",
    Reason.CONSENT_WITHDRAWN: "consent refused or withdrawn",
    Reason.NOT_PROFESSIONAL: "not a professional (B2B)",
    Reason.OPTED_OUT: "opted out",
    Reason.OPPOSITION_LIST: "on the national opposition list",
    Reason.INVALID_NUMBER: "invalid number",
}
"""Plain words for each reason code (console and reports)."""


def reason_text(code: str) -> str:
    """Plain words for a stored reason code (the code itself when unknown)."""
    try:
        return REASON_TEXT[Reason(code)]
    except ValueError:
        return code


@dataclass(frozen=True, slots=True)
class Decision:
    """One gate decision.

    Attributes:
        verdict: allow, defer or block.
        reason: the reason code (``ok`` when allowed).
        source: the rule's legal source (e.g. ``"Code de la consommation D223-9"``).
        detail: one human sentence (what, for whom, until when).
        until: for ``defer``, the next legal instant (aware, UTC); else None.
    """

    verdict: Verdict
    reason: Reason
    source: str = ""
    detail: str = ""
    until: datetime | None = None
