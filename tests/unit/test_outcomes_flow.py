"""voicecast.dialer.outcomes (outcomes, retry policy) and voicecast.dialer.flow (call flow)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from voicecast.dialer.flow import (
    Answerer,
    FlowPlan,
    FlowReport,
    classify_amd,
    run_outbound_flow,
)
from voicecast.dialer.outcomes import (
    DEFAULT_RETRY_OUTCOMES,
    NEVER_RETRY,
    Outcome,
    next_attempt_time,
    outcome_of_unanswered,
    should_retry,
)
from voicecast.pbx.base import AmdParams, CallFlowSession, PlayResult

ATTEMPT = "5f2c9a0e7b1d4c3a8e6f0a1b2c3d4e5f"
MESSAGE = "/var/lib/asterisk/sounds/voicecast/msg-human"
VOICEMAIL = "/var/lib/asterisk/sounds/voicecast/msg-machine"

# --- outcome_of_unanswered --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (0, Outcome.FAILED),  # failed
        (1, Outcome.FAILED),  # hangup
        (3, Outcome.NO_ANSWER),  # ringing: no answer before the timeout
        (5, Outcome.BUSY),
        (8, Outcome.CONGESTION),
        (4, Outcome.FAILED),  # "answered" is not an unanswered outcome
        (None, Outcome.FAILED),
        (99, Outcome.FAILED),
    ],
)
def test_outcome_from_reason_code(reason: int | None, expected: Outcome) -> None:
    assert outcome_of_unanswered(reason, []) is expected
    assert outcome_of_unanswered(reason, [0, 16]) is expected  # unspecific causes


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (1, Outcome.INVALID_NUMBER),  # unallocated number
        (3, Outcome.INVALID_NUMBER),  # no route to destination
        (17, Outcome.BUSY),  # user busy
        (18, Outcome.NO_ANSWER),  # no user responding
        (19, Outcome.NO_ANSWER),  # no answer from user
        (21, Outcome.REJECTED),  # call rejected
        (22, Outcome.INVALID_NUMBER),  # number changed
        (27, Outcome.CONGESTION),  # destination out of order
        (28, Outcome.INVALID_NUMBER),  # invalid number format
        (34, Outcome.CONGESTION),  # no circuit available
        (38, Outcome.CONGESTION),  # network out of order
        (41, Outcome.CONGESTION),  # temporary failure
        (42, Outcome.CONGESTION),  # switching equipment congestion
    ],
)
def test_outcome_from_q850_cause(cause: int, expected: Outcome) -> None:
    assert outcome_of_unanswered(None, [cause]) is expected
    assert outcome_of_unanswered(0, [cause]) is expected


@pytest.mark.parametrize(
    ("reason", "causes", "expected"),
    [
        (3, [17], Outcome.BUSY),  # the cause beats the reason
        (5, [1], Outcome.INVALID_NUMBER),
        (8, [19], Outcome.NO_ANSWER),
        (5, [16], Outcome.BUSY),  # normal clearing says nothing: the reason decides
        (None, [0, 16, 17, 34], Outcome.BUSY),  # the first specific cause wins
        (None, [34, 17], Outcome.CONGESTION),
        (None, [17, 17], Outcome.BUSY),
        (3, [0, 16, 99], Outcome.NO_ANSWER),
        (None, [16, 0, 99, 127], Outcome.FAILED),  # unknown everything
        (1, [16], Outcome.FAILED),
    ],
)
def test_outcome_precedence(reason: int | None, causes: list[int], expected: Outcome) -> None:
    assert outcome_of_unanswered(reason, causes) is expected


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", DEFAULT_RETRY_OUTCOMES)
def test_should_retry_boundaries(outcome: Outcome) -> None:
    retry = [o.value for o in DEFAULT_RETRY_OUTCOMES]
    assert should_retry(outcome, 1, 2, retry)
    assert should_retry(outcome, 2, 2, retry)
    assert not should_retry(outcome, 3, 2, retry)
    assert not should_retry(outcome, 4, 2, retry)
    assert not should_retry(outcome, 1, 0, retry)
    assert should_retry(outcome, 1, 1, retry)
    assert not should_retry(outcome, 2, 1, retry)


def test_should_retry_only_listed_outcomes() -> None:
    assert not should_retry(Outcome.BUSY, 1, 2, ["no_answer"])
    assert should_retry(Outcome.NO_ANSWER, 1, 2, ["no_answer"])
    assert not should_retry(Outcome.FAILED, 1, 2, ["busy", "no_answer", "congestion"])
    assert should_retry(Outcome.FAILED, 1, 2, ["failed"])
    assert should_retry(Outcome.REJECTED, 1, 2, ["rejected"])
    assert not should_retry(Outcome.BUSY, 1, 2, [])
    # Enum members and a one-shot iterator work too.
    assert should_retry(Outcome.BUSY, 1, 2, [Outcome.BUSY])
    assert should_retry(Outcome.CONGESTION, 2, 2, iter(["congestion"]))


@pytest.mark.parametrize("outcome", [Outcome.HUMAN, Outcome.MACHINE, Outcome.INVALID_NUMBER])
def test_never_retry_whatever_the_campaign_says(outcome: Outcome) -> None:
    assert outcome in NEVER_RETRY
    assert not should_retry(outcome, 1, 20, [o.value for o in Outcome])
    assert not should_retry(outcome, 1, 20, [outcome.value])


def test_next_attempt_time_is_exact() -> None:
    ended = datetime(2026, 3, 2, 9, 59, 30, 250_000, tzinfo=UTC)
    assert next_attempt_time(ended, 600) == datetime(2026, 3, 2, 10, 9, 30, 250_000, tzinfo=UTC)
    assert next_attempt_time(ended, 0) == ended
    assert next_attempt_time(ended, 0.75) == ended + timedelta(microseconds=750_000)
    assert next_attempt_time(ended, 86_400) == ended + timedelta(days=1)
    assert next_attempt_time(ended, 600).tzinfo is UTC


# --- classify_amd -----------------------------------------------------------------------------


def plan(**kwargs: Any) -> FlowPlan:
    return FlowPlan(message=MESSAGE, voicemail_message=VOICEMAIL, **kwargs)


@pytest.mark.parametrize(
    ("status", "cause", "kwargs", "expected"),
    [
        ("HUMAN", "HUMAN-1000-500", {}, Answerer.HUMAN),
        ("human", "", {}, Answerer.HUMAN),
        ("MACHINE", "LONGGREETING-1500-1500", {}, Answerer.MACHINE),
        ("MACHINE", "MAXWORDS-3-3", {}, Answerer.MACHINE),
        ("MACHINE", "MAXWORDLENGTH-5000-5000", {}, Answerer.MACHINE),
        ("MACHINE", "INITIALSILENCE-2500-2500", {}, Answerer.MACHINE),
        ("MACHINE", "INITIALSILENCE-2500-2500", {"on_silence": "machine"}, Answerer.MACHINE),
        ("MACHINE", "INITIALSILENCE-2500-2500", {"on_silence": "no_answer"}, Answerer.NO_ANSWER),
        ("MACHINE", "initialsilence-2500-2500", {"on_silence": "no_answer"}, Answerer.NO_ANSWER),
        ("MACHINE", "LONGGREETING-1500-1500", {"on_silence": "no_answer"}, Answerer.MACHINE),
        ("NOTSURE", "TOOLONG-5000", {}, Answerer.HUMAN),
        ("NOTSURE", "TOOLONG-5000", {"on_notsure": "human"}, Answerer.HUMAN),
        ("NOTSURE", "TOOLONG-5000", {"on_notsure": "machine"}, Answerer.MACHINE),
        ("NOTSURE", "TOOLONG-5000", {"on_notsure": "hangup"}, Answerer.NO_ANSWER),
        ("", "", {"on_notsure": "machine"}, Answerer.MACHINE),
        ("HANGUP", "", {}, Answerer.HANGUP),
        ("HANGUP", "", {"on_notsure": "machine"}, Answerer.HANGUP),
    ],
)
def test_classify_amd(status: str, cause: str, kwargs: dict[str, str], expected: Answerer) -> None:
    assert classify_amd(status, cause, plan(**kwargs)) is expected


# --- run_outbound_flow ------------------------------------------------------------------------


class FakeCall:
    """A CallFlowSession that records every call; scripted AMD / silence / sounds."""

    def __init__(
        self,
        amd: tuple[str, str] = ("HUMAN", "HUMAN-1000-500"),
        *,
        silence: bool = True,
        missing: frozenset[str] = frozenset(),
        play_result: PlayResult | None = None,
        hang_up_on: str | None = None,
    ) -> None:
        self.attempt_id = ATTEMPT
        self.amd = amd
        self.silence = silence
        self.missing = missing
        self.play_result = play_result
        self.hang_up_on = hang_up_on  # the callee hangs up during this step
        self.log: list[tuple[Any, ...]] = []
        self._hung_up = False

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    def _step(self, name: str) -> None:
        if self.hang_up_on == name:
            self._hung_up = True

    async def detect_machine(self, params: AmdParams) -> tuple[str, str]:
        self.log.append(("detect_machine", params))
        if self.amd[0] == "HANGUP":
            self._hung_up = True
        self._step("detect_machine")
        return self.amd

    async def wait_for_beep(
        self, silence_ms: int, resume_s: float, timeout: float, beep_hz: int = 1000
    ) -> str:
        self.log.append(("wait_for_beep", silence_ms, timeout, beep_hz))
        self._step("wait_for_beep")
        if self._hung_up:
            return "hangup"
        return "beep" if self.silence else "timeout"

    async def sound_exists(self, sound: str) -> bool:
        self.log.append(("sound_exists", sound))
        return sound not in self.missing

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        self.log.append(("play", sound))
        self._step("play")
        if self.play_result is not None:
            return self.play_result
        return PlayResult(9000, not self._hung_up)

    async def hangup(self) -> None:
        self.log.append(("hangup",))
        self._hung_up = True

    def names(self) -> list[str]:
        return [entry[0] for entry in self.log]


def run(call: FakeCall, flow_plan: FlowPlan | None = None, **kwargs: Any) -> FlowReport:
    session: CallFlowSession = call  # type-checks the fake against the protocol
    return asyncio.run(run_outbound_flow(session, flow_plan or plan(), **kwargs))


def test_human_hears_the_message_at_once() -> None:
    call = FakeCall(("HUMAN", "HUMAN-1000-500"))
    report = run(call)
    assert call.names() == ["detect_machine", "sound_exists", "play", "hangup"]
    assert call.log[0] == ("detect_machine", AmdParams())
    assert call.log[2] == ("play", MESSAGE)
    assert report.answerer is Answerer.HUMAN
    assert (report.amd_status, report.amd_cause) == ("HUMAN", "HUMAN-1000-500")
    assert report.played == [{"sound": MESSAGE, "ms": 9000, "completed": True, "digit": None}]
    assert report.note == ""


def test_machine_waits_for_the_beep_before_the_voicemail_message() -> None:
    amd = AmdParams(total_analysis_time=6000)
    call = FakeCall(("MACHINE", "LONGGREETING-1500-1500"))
    report = run(call, plan(amd=amd, beep_silence_ms=1200, beep_timeout=20.0))
    assert call.names() == ["detect_machine", "wait_for_beep", "sound_exists", "play", "hangup"]
    assert call.log[0] == ("detect_machine", amd)
    assert call.log[1] == ("wait_for_beep", 1200, 20.0, 1000)
    assert call.log[3] == ("play", VOICEMAIL)
    assert call.names().index("wait_for_beep") < call.names().index("play")
    assert report.answerer is Answerer.MACHINE
    assert report.played == [{"sound": VOICEMAIL, "ms": 9000, "completed": True, "digit": None}]
    assert report.note == ""


def test_machine_without_silence_plays_anyway_with_a_note() -> None:
    call = FakeCall(("MACHINE", "MAXWORDS-3-3"), silence=False)
    report = run(call)
    assert call.names() == ["detect_machine", "wait_for_beep", "sound_exists", "play", "hangup"]
    assert "no end of greeting" in report.note
    assert report.played[0]["sound"] == VOICEMAIL


def test_machine_that_hangs_up_during_the_greeting() -> None:
    call = FakeCall(("MACHINE", "LONGGREETING-1500-1500"), hang_up_on="wait_for_beep")
    report = run(call)
    assert call.names() == ["detect_machine", "wait_for_beep"]
    assert report.answerer is Answerer.MACHINE
    assert report.played == [{"sound": VOICEMAIL, "ms": 0, "completed": False}]
    assert report.note == ""


def test_initial_silence_as_machine_leaves_the_message() -> None:
    call = FakeCall(("MACHINE", "INITIALSILENCE-2500-2500"))
    report = run(call, plan(on_silence="machine"))
    assert "play" in call.names()
    assert call.names().index("wait_for_beep") < call.names().index("play")
    assert report.answerer is Answerer.MACHINE


def test_initial_silence_as_no_answer_hangs_up_without_playing() -> None:
    call = FakeCall(("MACHINE", "INITIALSILENCE-2500-2500"))
    report = run(call, plan(on_silence="no_answer"))
    assert call.names() == ["detect_machine", "hangup"]
    assert report.answerer is Answerer.NO_ANSWER
    assert report.played == []


@pytest.mark.parametrize(
    ("amd", "deliver_to", "delivered"),
    [
        (("HUMAN", "HUMAN-800-800"), "humans", True),
        (("HUMAN", "HUMAN-800-800"), "machines", False),  # voicemail drop only
        (("MACHINE", "MAXWORDS-4-3"), "machines", True),
        (("MACHINE", "MAXWORDS-4-3"), "humans", False),  # no message left on machines
        (("HUMAN", "HUMAN-800-800"), "both", True),
        (("MACHINE", "MAXWORDS-4-3"), "both", True),
    ],
)
def test_deliver_to(amd: tuple[str, str], deliver_to: str, delivered: bool) -> None:
    call = FakeCall(amd)
    report = run(call, plan(deliver_to=deliver_to))
    assert ("play" in call.names()) is delivered
    assert call.names()[-1] == "hangup"
    assert ("not delivered" in report.note) is not delivered


def test_notsure_as_hangup_hangs_up_without_playing() -> None:
    call = FakeCall(("NOTSURE", "TOOLONG-5000"))
    report = run(call, plan(on_notsure="hangup"))
    assert call.names() == ["detect_machine", "hangup"]
    assert report.answerer is Answerer.NO_ANSWER


def test_notsure_as_machine_waits_for_silence() -> None:
    call = FakeCall(("NOTSURE", "TOOLONG-5000"))
    run(call, plan(on_notsure="machine"))
    assert call.names() == ["detect_machine", "wait_for_beep", "sound_exists", "play", "hangup"]
    assert call.log[3] == ("play", VOICEMAIL)


def test_missing_sound_is_reported_and_not_played() -> None:
    call = FakeCall(("HUMAN", ""), missing=frozenset({MESSAGE}))
    report = run(call)
    assert call.names() == ["detect_machine", "sound_exists", "hangup"]
    assert report.played == [{"sound": MESSAGE, "ms": 0, "completed": False, "missing": True}]


def test_hangup_during_amd_plays_nothing() -> None:
    call = FakeCall(("HANGUP", ""))
    report = run(call)
    assert call.names() == ["detect_machine"]
    assert report.answerer is Answerer.HANGUP
    assert report.played == []


def test_human_who_hangs_up_before_the_message() -> None:
    call = FakeCall(("HUMAN", "HUMAN-1000-500"), hang_up_on="detect_machine")
    report = run(call)
    assert call.names() == ["detect_machine"]
    assert report.played == [{"sound": MESSAGE, "ms": 0, "completed": False}]


def test_digit_and_hangup_during_the_message() -> None:
    call = FakeCall(("HUMAN", ""), play_result=PlayResult(2000, False, "9"))
    report = run(call)
    assert report.played == [{"sound": MESSAGE, "ms": 2000, "completed": False, "digit": "9"}]
    assert call.names()[-1] == "hangup"

    call = FakeCall(("HUMAN", ""), hang_up_on="play", play_result=PlayResult(3000, False))
    report = run(call)
    assert call.names() == ["detect_machine", "sound_exists", "play"]  # no hangup: gone
    assert report.played[0]["ms"] == 3000


def test_on_decision_is_called_once_after_amd_and_report_is_filled_in_place() -> None:
    call = FakeCall(("MACHINE", "LONGGREETING-1500-1500"))
    decisions: list[tuple[Answerer, str, list[Any]]] = []

    def on_decision(report: FlowReport) -> None:
        call.log.append(("decision",))
        decisions.append((report.answerer, report.amd_status, list(report.played)))

    mine = FlowReport()
    report = run(call, report=mine, on_decision=on_decision)
    assert report is mine
    assert decisions == [(Answerer.MACHINE, "MACHINE", [])]
    assert call.names() == [
        "detect_machine",
        "decision",
        "wait_for_beep",
        "sound_exists",
        "play",
        "hangup",
    ]


def test_on_decision_is_called_on_hangup_too() -> None:
    decisions: list[Answerer] = []
    run(FakeCall(("HANGUP", "")), on_decision=lambda r: decisions.append(r.answerer))
    assert decisions == [Answerer.HANGUP]
