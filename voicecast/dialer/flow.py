"""The outbound call flow: what happens once the callee answers.

AMD decides human or machine (Asterisk ``AMD()``); a human hears the message at once; on a
machine we wait for the end of the greeting and the beep (``WaitForSilence`` after AMD's
decision: the greeting and the beep are sound, the mailbox's recording is silence), then
play the voicemail message so the mailbox records it from its first word.

Opt-out by key: while a person hears the message, the campaign's opt-out key stops it
(``STREAM FILE`` escape digit); the flow reports it at once through ``on_opt_out`` (the
controller suppresses the number for the whole organisation) and hangs up. Sources: CPCE
L34-5, Code de la consommation L221-16 (a free, working opt-out), 47 CFR 64.1200(b)(3)
(an automated key-press opt-out that records the request and disconnects).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from voicecast.pbx.base import AmdParams, CallFlowSession


class Answerer(StrEnum):
    """Who answered, as the flow decided."""

    HUMAN = "human"
    MACHINE = "machine"
    NO_ANSWER = "no_answer"
    HANGUP = "hangup"


@dataclass(frozen=True)
class FlowPlan:
    """How to handle one answered call.

    Attributes:
        message: PBX sound path of the message for humans (no extension).
        voicemail_message: sound path for answering machines.
        amd: AMD parameters (ms).
        on_notsure: what AMD's NOTSURE means: ``human``, ``machine`` or ``hangup``.
        on_silence: what a silent answer (AMD MACHINE/INITIALSILENCE) means: ``machine``
            (leave the message) or ``no_answer`` (hang up).
        beep_silence_ms: silence after the beep that means "recording now" (ms).
        beep_timeout: seconds to wait for the greeting and beep to end before playing anyway.
        optout_key: the DTMF key (``0``-``9``, ``*``, ``#``) that opts a person out during
            the message, or None.
    """

    message: str
    voicemail_message: str
    amd: AmdParams = field(default_factory=AmdParams)
    on_notsure: str = "human"
    on_silence: str = "machine"
    beep_silence_ms: int = 1500
    beep_timeout: float = 30.0
    optout_key: str | None = None


@dataclass
class FlowReport:
    """What the flow did: AMD's verdict, the decision, and every play step."""

    amd_status: str = ""
    amd_cause: str = ""
    answerer: Answerer = Answerer.HANGUP
    played: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    opted_out: bool = False


def classify_amd(status: str, cause: str, plan: FlowPlan) -> Answerer:
    """Map AMD's (status, cause) to who answered, applying the campaign's settings.

    ``cause`` carries numbers after the reason (``LONGGREETING-1500-1500``): only the prefix
    is compared (Asterisk documentation, application AMD).
    """
    status = status.upper()
    if status == "HUMAN":
        return Answerer.HUMAN
    if status == "MACHINE":
        if cause.upper().startswith("INITIALSILENCE"):
            return Answerer(plan.on_silence)
        return Answerer.MACHINE
    if status == "HANGUP":
        return Answerer.HANGUP
    choice = plan.on_notsure
    return Answerer.NO_ANSWER if choice == "hangup" else Answerer(choice)


async def run_outbound_flow(
    call: CallFlowSession,
    plan: FlowPlan,
    report: FlowReport | None = None,
    on_decision: Callable[[FlowReport], None] | None = None,
    on_opt_out: Callable[[], None] | None = None,
) -> FlowReport:
    """Run the flow on an answered call and return what happened.

    ``report`` is filled in place as the flow goes (so a caller can save partial progress
    if the flow is interrupted); ``on_decision(report)`` is called once AMD has decided.
    Never raises on a hangup: the report says how far it got.
    """
    report = report if report is not None else FlowReport()
    report.amd_status, report.amd_cause = await call.detect_machine(plan.amd)
    report.answerer = classify_amd(report.amd_status, report.amd_cause, plan)
    if on_decision is not None:
        on_decision(report)
    if report.answerer is Answerer.HUMAN:
        key = plan.optout_key or ""
        digit = await _play(call, plan.message, report, key)
        if key and digit == key:
            report.opted_out = True
            if on_opt_out is not None:
                on_opt_out()
    elif report.answerer is Answerer.MACHINE:
        if not call.hung_up:
            heard = await call.wait_for_silence(plan.beep_silence_ms, plan.beep_timeout)
            if not heard and not call.hung_up:
                report.note = "no silence after the greeting within the time limit"
        await _play(call, plan.voicemail_message, report)
    if not call.hung_up:
        await call.hangup()
    return report


async def _play(
    call: CallFlowSession, sound: str, report: FlowReport, escape_digits: str = ""
) -> str | None:
    """Play ``sound``, record the step in ``report``; returns the key that stopped it."""
    if call.hung_up:
        report.played.append({"sound": sound, "ms": 0, "completed": False})
        return None
    if not await call.sound_exists(sound):
        report.played.append({"sound": sound, "ms": 0, "completed": False, "missing": True})
        return None
    result = await call.play(sound, escape_digits)
    report.played.append(
        {
            "sound": sound,
            "ms": result.played_ms,
            "completed": result.completed,
            "digit": result.digit,
        }
    )
    return result.digit
