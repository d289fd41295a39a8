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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from voicecast.dialer.prompts import PromptSet
from voicecast.pbx.base import AmdParams, CallFlowSession, PlayResult
from voicecast.scenarios.model import VOICEMAIL_AUDIO, Prompt, Scenario
from voicecast.scenarios.runner import ScenarioContext, ScenarioReport, run_scenario


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
        beep_silence_ms: silence after the greeting or beep that may mean "recording now" (ms).
        beep_resume_s: seconds of further silence (no beep heard) that confirm it; sound
            within them means the greeting only paused.
        beep_hz: the mailbox beep's frequency (Hz), a hint that ends the wait early.
        beep_timeout: seconds to wait for the greeting and beep to end before playing anyway.
        deliver_to: ``both``, ``humans`` (a machine is hung up on, no message left) or
            ``machines`` (a person is hung up on after AMD: voicemail drop only).
        scenario: what a person hears and can do (and a machine, after the beep, when it
            has ``on_machine``); None plays ``message`` with the opt-out key only.
        prompts: the scenario's sounds (library audio and texts spoken per contact).
        replies_dir_on_pbx, replies_dir: where record nodes store replies, as Asterisk sees
            it and on this host.
        optout_key: the DTMF key (``0``-``9``, ``*``, ``#``) that opts a person out during
            the message, or None.
    """

    message: str
    voicemail_message: str
    amd: AmdParams = field(default_factory=AmdParams)
    on_notsure: str = "human"
    on_silence: str = "machine"
    beep_silence_ms: int = 1500
    beep_resume_s: float = 1.0
    beep_hz: int = 1000
    beep_timeout: float = 30.0
    optout_key: str | None = None
    deliver_to: str = "both"
    scenario: Scenario | None = None
    prompts: PromptSet | None = None
    replies_dir_on_pbx: str = ""
    replies_dir: str = ""


@dataclass
class FlowReport:
    """What the flow did: AMD's verdict, the decision, and every play step."""

    amd_status: str = ""
    amd_cause: str = ""
    answerer: Answerer = Answerer.HANGUP
    played: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    opted_out: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    scenario: ScenarioReport = field(default_factory=ScenarioReport)


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
    ctx: ScenarioContext | None = None,
) -> FlowReport:
    """Run the flow on an answered call and return what happened.

    ``report`` is filled in place as the flow goes (so a caller can save partial progress
    if the flow is interrupted); ``on_decision(report)`` is called once AMD has decided.
    With a scenario (``plan.scenario`` and its per-call ``ctx``), a person goes through it
    (``report.scenario`` holds each node's result; ``ctx.opt_out`` is the opt-out action);
    without one, a person hears ``plan.message`` and ``on_opt_out`` is called on the key.
    Never raises on a hangup: the report says how far it got.
    """
    report = report if report is not None else FlowReport()
    report.amd_status, report.amd_cause = await call.detect_machine(plan.amd)
    report.answerer = classify_amd(report.amd_status, report.amd_cause, plan)
    if on_decision is not None:
        on_decision(report)
    scenario = plan.scenario if ctx is not None else None
    played = _PlayLog(call, report)
    if not delivers_to(plan, report.answerer):
        report.note = f"not delivered: the campaign delivers to {plan.deliver_to} only"
    elif report.answerer is Answerer.HUMAN and scenario is not None and ctx is not None:
        await run_scenario(
            played, scenario, ctx, optout_key=plan.optout_key, report=report.scenario
        )
        report.opted_out = report.scenario.opted_out
    elif report.answerer is Answerer.HUMAN:
        key = plan.optout_key or ""
        digit = await _play(call, plan.message, report, key)
        if key and digit == key:
            report.opted_out = True
            if on_opt_out is not None:
                on_opt_out()
    elif report.answerer is Answerer.MACHINE:
        if scenario is not None and ctx is not None and scenario.on_machine is not None:
            if await wait_for_mailbox(call, plan, report):
                await run_scenario(
                    played,
                    scenario,
                    ctx,
                    optout_key=plan.optout_key,
                    entry="machine",
                    report=report.scenario,
                )
        else:
            sound = plan.voicemail_message
            if ctx is not None and plan.prompts is not None:
                sound = ctx.sound_for("_voicemail", Prompt(audio=VOICEMAIL_AUDIO))
            await leave_voicemail(call, plan, report, sound)
    if not call.hung_up:
        await call.hangup()
    return report


class _PlayLog:
    """The call, with every play step also logged in ``report.played`` (what the attempt
    stores as its plays, whatever runs them)."""

    def __init__(self, call: CallFlowSession, report: FlowReport) -> None:
        self._call = call
        self._report = report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    @property
    def hung_up(self) -> bool:
        return self._call.hung_up

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        result = await self._call.play(sound, escape_digits)
        self._report.played.append(play_entry(sound, result))
        return result


def delivers_to(plan: FlowPlan, who: Answerer) -> bool:
    """Whether the campaign's ``deliver_to`` setting gives ``who`` the message."""
    if who is Answerer.HUMAN:
        return plan.deliver_to != "machines"
    if who is Answerer.MACHINE:
        return plan.deliver_to != "humans"
    return False


async def leave_voicemail(
    call: CallFlowSession, plan: FlowPlan, report: FlowReport, sound: str | None = None
) -> None:
    """The voicemail drop: wait for the greeting's end and the beep, then play the voicemail
    message so the mailbox records it from its first word.

    The wait (:meth:`CallFlowSession.wait_for_beep`) is repeated silence detection with the
    beep tone as a hint, capped at ``plan.beep_timeout`` seconds; at the cap the message is
    played anyway (noted in the report). The way the wait ended is stored as a play step.
    """
    if await wait_for_mailbox(call, plan, report) or call.hung_up:
        await _play(call, sound or plan.voicemail_message, report)


async def wait_for_mailbox(call: CallFlowSession, plan: FlowPlan, report: FlowReport) -> bool:
    """Wait for the greeting's end and the beep; False when the line is gone."""
    if call.hung_up:
        return False
    how = await call.wait_for_beep(
        plan.beep_silence_ms, plan.beep_resume_s, plan.beep_timeout, plan.beep_hz
    )
    report.steps.append({"step": "wait_for_beep", "ended_by": how})
    if how == "timeout":
        report.note = "no end of greeting within the time limit: message played anyway"
    return how != "hangup"


def play_entry(sound: str, result: PlayResult) -> dict[str, Any]:
    """How a play step is stored: ``sound``, ``ms`` played, ``completed``, ``digit``."""
    return {
        "sound": sound,
        "ms": result.played_ms,
        "completed": result.completed,
        "digit": result.digit,
    }


def amd_settings(amd: Mapping[str, Any] | None) -> dict[str, Any]:
    """The :class:`FlowPlan` fields stored in a campaign's ``amd`` JSON (``params`` in ms,
    ``on_notsure``, ``on_silence``, ``beep_hz``, ``beep_silence_ms``, ``beep_timeout``),
    as keyword arguments; absent keys keep the plan's defaults."""
    amd = dict(amd or {})
    params = {k: int(v) for k, v in dict(amd.get("params") or {}).items()}
    out: dict[str, Any] = {
        "amd": AmdParams(**params),
        "on_notsure": str(amd.get("on_notsure", "human")),
        "on_silence": str(amd.get("on_silence", "machine")),
    }
    out.update({k: amd[k] for k in ("beep_hz", "beep_silence_ms", "beep_timeout") if k in amd})
    return out


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
    report.played.append(play_entry(sound, result))
    return result.digit
