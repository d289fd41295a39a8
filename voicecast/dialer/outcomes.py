"""Outcomes of a call attempt, and the retry policy. Pure functions.

Sources: OriginateResponse ``Reason`` codes are Asterisk's control-frame values (0 failed,
1 hangup, 3 ringing = no answer, 4 answered, 5 busy, 8 congestion); ``cause`` is the Q.850
cause of the hangup (ITU-T Q.850 table 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum


class Outcome(StrEnum):
    """Final outcome of one attempt (and of a contact: the outcome of its last attempt)."""

    HUMAN = "human"
    OPTED_OUT = "opted_out"  # a person pressed the opt-out key: suppressed everywhere
    TRANSFERRED = "transferred"  # a person was bridged to an agent (scenario transfer)
    MACHINE = "machine"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    INVALID_NUMBER = "invalid_number"
    REJECTED = "rejected"
    FAILED = "failed"


#: Outcomes retried by default (the issue's policy): transient network states only.
DEFAULT_RETRY_OUTCOMES: tuple[Outcome, ...] = (Outcome.BUSY, Outcome.NO_ANSWER, Outcome.CONGESTION)
#: Outcomes that are never retried whatever a campaign says: the message was delivered, or
#: the number cannot be reached.
NEVER_RETRY: frozenset[Outcome] = frozenset(
    {
        Outcome.HUMAN,
        Outcome.OPTED_OUT,
        Outcome.TRANSFERRED,
        Outcome.MACHINE,
        Outcome.INVALID_NUMBER,
    }
)

REASON_FAILED, REASON_HANGUP, REASON_NO_ANSWER, REASON_ANSWERED = 0, 1, 3, 4
REASON_BUSY, REASON_CONGESTION = 5, 8

_CAUSE_OUTCOME: dict[int, Outcome] = {
    1: Outcome.INVALID_NUMBER,  # unallocated (unassigned) number
    2: Outcome.INVALID_NUMBER,  # no route to specified transit network
    3: Outcome.INVALID_NUMBER,  # no route to destination
    22: Outcome.INVALID_NUMBER,  # number changed
    28: Outcome.INVALID_NUMBER,  # invalid number format
    17: Outcome.BUSY,  # user busy
    18: Outcome.NO_ANSWER,  # no user responding
    19: Outcome.NO_ANSWER,  # no answer from user (user alerted)
    20: Outcome.NO_ANSWER,  # subscriber absent
    21: Outcome.REJECTED,  # call rejected
    27: Outcome.CONGESTION,  # destination out of order
    34: Outcome.CONGESTION,  # no circuit/channel available
    38: Outcome.CONGESTION,  # network out of order
    41: Outcome.CONGESTION,  # temporary failure
    42: Outcome.CONGESTION,  # switching equipment congestion
    44: Outcome.CONGESTION,  # requested circuit/channel not available
}

_REASON_OUTCOME: dict[int, Outcome] = {
    REASON_NO_ANSWER: Outcome.NO_ANSWER,
    REASON_BUSY: Outcome.BUSY,
    REASON_CONGESTION: Outcome.CONGESTION,
}


def outcome_of_unanswered(reason: int | None, causes: Sequence[int]) -> Outcome:
    """The outcome of a call that was never answered.

    Args:
        reason: the OriginateResponse ``Reason`` (None if none arrived).
        causes: the Q.850 causes seen on the attempt's channels, in order (0 = unknown).

    The first cause with a specific meaning wins over the reason code (a carrier's cause is
    more precise); otherwise the reason code decides; otherwise ``failed``.
    """
    for cause in causes:
        if cause in _CAUSE_OUTCOME:
            return _CAUSE_OUTCOME[cause]
    if reason is not None and reason in _REASON_OUTCOME:
        return _REASON_OUTCOME[reason]
    return Outcome.FAILED


_REASON_TEXT: dict[int, str] = {
    REASON_FAILED: "the call could not be placed (no route, or the trunk or endpoint is "
    "unreachable or refused it)",
    REASON_HANGUP: "the call was hung up before it was answered",
    REASON_NO_ANSWER: "it rang without an answer",
    REASON_BUSY: "busy",
    REASON_CONGESTION: "congestion",
}


def originate_failure_text(reason: int | None, causes: Sequence[int], cause_text: str = "") -> str:
    """Why an unanswered attempt ended ``failed``, in Asterisk's own terms, for the
    attempt's ``error``: the OriginateResponse ``Reason`` code and its meaning, plus the
    first non-zero Q.850 cause and its text when a channel carried one.

    Example: ``"Asterisk could not place the call: OriginateResponse Reason 0 (the call
    could not be placed ...)"``; ``"... no OriginateResponse"`` when none arrived.
    """
    if reason is None:
        text = "Asterisk could not place the call: no OriginateResponse"
    else:
        meaning = _REASON_TEXT.get(reason, "unknown reason code")
        text = f"Asterisk could not place the call: OriginateResponse Reason {reason} ({meaning})"
    cause = next((c for c in causes if c), None)
    if cause is not None:
        text += f"; Q.850 cause {cause}" + (f" ({cause_text})" if cause_text else "")
    return text


def should_retry(
    outcome: Outcome, attempts_made: int, max_retries: int, retry_outcomes: Iterable[str]
) -> bool:
    """Whether a contact gets another attempt.

    Args:
        outcome: the outcome of the attempt that just ended.
        attempts_made: attempts so far, including that one (1 after the first dial).
        max_retries: extra attempts allowed after the first.
        retry_outcomes: outcomes the campaign retries; :data:`NEVER_RETRY` always wins.
    """
    if outcome in NEVER_RETRY:
        return False
    return outcome.value in set(retry_outcomes) and attempts_made <= max_retries


def next_attempt_time(ended_at: datetime, retry_delay: float) -> datetime:
    """When the retry is due: ``ended_at`` (UTC) + ``retry_delay`` seconds."""
    return ended_at + timedelta(seconds=retry_delay)
