"""voicecast.scenarios.runner: running scenarios on a scripted fake call (no PBX)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from voicecast.pbx.base import AmdParams, CallFlowSession, PlayResult, RecordResult, TransferResult
from voicecast.scenarios import (
    MESSAGE_AUDIO,
    Prompt,
    Scenario,
    ScenarioContext,
    ScenarioReport,
    default_scenario,
    load_scenario,
    run_scenario,
)

ATTEMPT = "5f2c9a0e7b1d4c3a8e6f0a1b2c3d4e5f"
CAMPAIGN_CLI = "+33199000001"
CALLEE = "+33199000017"


class FakeCall:
    """A ScenarioCall playing a script.

    ``press`` maps a sound to the keys pressed while it plays, one per play of that sound
    (None: no key); a key is heard only if it is an escape digit, as with STREAM FILE.
    ``digits`` are returned by wait_for_digit in order (then None). ``hang_up_on`` names
    an operation (``play:<sound>``, ``wait``, ``record``, ``transfer``) during which the
    callee hangs up (the first time it happens).
    """

    def __init__(
        self,
        *,
        press: dict[str, list[str | None]] | None = None,
        digits: list[str | None] | None = None,
        records: list[RecordResult] | None = None,
        transfers: list[str] | None = None,
        missing: frozenset[str] = frozenset(),
        hang_up_on: str | None = None,
    ) -> None:
        self.attempt_id = ATTEMPT
        self.press = {k: list(v) for k, v in (press or {}).items()}
        self.digits = list(digits or [])
        self.records = list(records or [])
        self.transfers = list(transfers or [])
        self.missing = missing
        self.hang_up_on = hang_up_on
        self.log: list[tuple[Any, ...]] = []
        self._hung_up = False

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    def _hangs_up(self, op: str) -> bool:
        if self.hang_up_on == op and not self._hung_up:
            self._hung_up = True
            return True
        return False

    async def detect_machine(self, params: AmdParams) -> tuple[str, str]:
        raise AssertionError("the runner does not run AMD")

    async def wait_for_beep(
        self, silence_ms: int, resume_s: float, timeout: float, beep_hz: int = 1000
    ) -> str:
        raise AssertionError("the runner does not wait for the beep")

    async def sound_exists(self, sound: str) -> bool:
        return sound not in self.missing

    async def play(self, sound: str, escape_digits: str = "") -> PlayResult:
        assert not self._hung_up, "played to a hung-up call"
        self.log.append(("play", sound, escape_digits))
        if self._hangs_up(f"play:{sound}"):
            return PlayResult(400, False)
        queue = self.press.get(sound)
        key = queue.pop(0) if queue else None
        if key is not None and key in escape_digits:
            return PlayResult(700, False, key)
        return PlayResult(1000, True)

    async def wait_for_digit(self, timeout: float) -> str | None:
        assert not self._hung_up
        self.log.append(("wait", timeout))
        if self._hangs_up("wait"):
            return None
        return self.digits.pop(0) if self.digits else None

    async def record(
        self, path: str, max_seconds: float, silence_seconds: float, beep: bool
    ) -> RecordResult:
        assert not self._hung_up
        self.log.append(("record", path, max_seconds, silence_seconds, beep))
        result = self.records.pop(0) if self.records else RecordResult(4200)
        if self._hangs_up("record"):
            return RecordResult(result.duration_ms, None, False)
        return result

    async def transfer(
        self, kind: str, target: str, timeout: float, caller_id: str
    ) -> TransferResult:
        assert not self._hung_up
        self.log.append(("transfer", kind, target, timeout, caller_id))
        status = self.transfers.pop(0) if self.transfers else "ANSWER"
        if self._hangs_up("transfer"):
            return TransferResult("CANCEL" if status != "ANSWER" else status, 0.0)
        return TransferResult(status, 42.5 if status == "ANSWER" else 0.0)

    async def hangup(self) -> None:
        self.log.append(("hangup",))
        self._hung_up = True

    def played(self) -> list[str]:
        return [entry[1] for entry in self.log if entry[0] == "play"]


class FakeContext:
    """Sound ``snd/<node>`` per node (``snd/message`` for $message), records in
    ``rec/<node>``; counts opt-outs."""

    def __init__(self) -> None:
        self.opt_outs = 0

    def sound_for(self, node_id: str, prompt: Prompt) -> str:
        return "snd/message" if prompt.audio == MESSAGE_AUDIO else f"snd/{node_id}"

    def record_path(self, node_id: str) -> str:
        return f"rec/{node_id}"

    def caller_id_for(self, rule: str) -> str:
        return CAMPAIGN_CLI if rule == "campaign" else CALLEE

    def opt_out(self) -> None:
        self.opt_outs += 1


def _typecheck(call: FakeCall, ctx: FakeContext) -> tuple[CallFlowSession, ScenarioContext]:
    return call, ctx  # mypy: the fakes satisfy the protocols


MENU = """\
version: 1
start: intro
on_machine: vm
confirm: {text: "You will not be called again."}
nodes:
  intro: {type: play, audio: "$message", next: menu}
  menu:
    type: menu
    text: "Press 1 for an advisor, 2 to leave a message, 3 to stop."
    keys: {"1": agent, "2": rec, "3": stop}
    timeout: 5
    retries: 1
    on_timeout: bye
    max_visits: 3
  agent:
    type: transfer
    text: "Please hold."
    to: {extension: "agent@sim-agent"}
    timeout: 20
    on_failure: sorry
  sorry: {type: play, text: "Nobody is free.", next: rec}
  rec: {type: record, text: "After the beep.", max_seconds: 30, silence_seconds: 2,
        retention_days: 7, next: result}
  result: {type: set_result, result: left_message, next: bye}
  stop: {type: opt_out, text: "Done, goodbye."}
  vm: {type: play, text: "Sorry we missed you."}
  bye: {type: hangup}
"""


def run(
    call: FakeCall,
    scenario: Scenario | str = MENU,
    *,
    optout_key: str | None = "9",
    ctx: FakeContext | None = None,
    **kwargs: Any,
) -> ScenarioReport:
    sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
    context = ctx or FakeContext()
    report = asyncio.run(run_scenario(call, sc, context, optout_key=optout_key, **kwargs))
    json.loads(report.to_json())  # always JSON-able
    return report


def path(report: ScenarioReport) -> list[tuple[str, str]]:
    return [(s["node"], s["result"]) for s in report.steps]


# --- menus ----------------------------------------------------------------------------------


def test_key_pressed_after_the_prompt_branches() -> None:
    call = FakeCall(digits=["2"])
    report = run(call)
    assert path(report) == [
        ("intro", "played"),
        ("menu", "key"),
        ("rec", "recorded"),
        ("result", "left_message"),
        ("bye", "hangup"),
    ]
    assert report.steps[1] == {
        "node": "menu",
        "type": "menu",
        "result": "key",
        "attempts": 1,
        "ms": 1000,
        "completed": True,
        "digit": "2",
    }
    assert ("wait", 5.0) in call.log
    assert report.result == "left_message"
    assert report.ended_by == "hangup" and call.log[-1] == ("hangup",)


def test_key_pressed_during_the_prompt_skips_the_wait() -> None:
    call = FakeCall(press={"snd/menu": ["1"]})
    report = run(call)
    assert path(report)[1:3] == [("menu", "key"), ("agent", "answered")]
    assert not any(entry[0] == "wait" for entry in call.log)
    assert ("play", "snd/menu", "1239") in call.log  # escape digits: keys and opt-out key


def test_timeout_retries_then_on_timeout() -> None:
    call = FakeCall()
    report = run(call)
    assert path(report) == [("intro", "played"), ("menu", "timeout"), ("bye", "hangup")]
    assert report.steps[1]["attempts"] == 2  # retries: 1
    assert report.steps[1]["ms"] == 2000
    assert call.played() == ["snd/message", "snd/menu", "snd/menu"]


def test_timeout_then_key_on_the_retry() -> None:
    report = run(FakeCall(digits=[None, "2"]))
    assert report.steps[1]["attempts"] == 2 and report.steps[1]["result"] == "key"


def test_timeout_without_on_timeout_hangs_up() -> None:
    text = MENU.replace("    on_timeout: bye\n", "")
    call = FakeCall()
    report = run(call, text)
    assert path(report)[-1] == ("menu", "timeout")
    assert report.ended_by == "hangup" and call.log[-1] == ("hangup",)


def test_invalid_key_replays_counting_a_retry() -> None:
    call = FakeCall(digits=["7", "7"])
    report = run(call)
    assert path(report)[1:] == [("menu", "invalid"), ("bye", "hangup")]
    assert report.steps[1]["attempts"] == 2 and report.steps[1]["digit"] == "7"


def test_invalid_key_goes_to_on_invalid() -> None:
    text = MENU.replace("    on_timeout: bye\n", "    on_timeout: bye\n    on_invalid: oops\n")
    text += '  oops: {type: play, text: "Not a choice.", next: menu}\n'
    call = FakeCall(digits=["7", "7", "7"])
    report = run(call, text)
    assert path(report) == [
        ("intro", "played"),
        ("menu", "invalid"),
        ("oops", "played"),
        ("menu", "invalid"),
        ("oops", "played"),
        ("menu", "invalid"),
        ("oops", "played"),
        ("menu", "max_visits"),
    ]
    assert report.ended_by == "max_visits" and call.log[-1] == ("hangup",)


def test_menu_without_prompt_only_waits() -> None:
    text = "version: 1\nstart: m\nnodes:\n  m: {type: menu, keys: {'#': b}}\n  b: {type: hangup}\n"
    call = FakeCall(digits=["#"])
    assert path(run(call, text)) == [("m", "key"), ("b", "hangup")]
    assert call.played() == []


# --- opt-out --------------------------------------------------------------------------------


def test_optout_key_during_a_play() -> None:
    ctx = FakeContext()
    call = FakeCall(press={"snd/message": ["9"]})
    report = run(call, ctx=ctx)
    assert path(report) == [("intro", "opt_out_key"), ("_confirm", "opted_out")]
    assert report.steps[0]["digit"] == "9" and report.steps[0]["ms"] == 700
    assert report.opted_out and ctx.opt_outs == 1
    assert call.played() == ["snd/message", "snd/_confirm"]
    assert call.log[0] == ("play", "snd/message", "9")
    assert ("play", "snd/_confirm", "") in call.log  # the confirmation cannot be interrupted
    assert report.ended_by == "hangup" and call.log[-1] == ("hangup",)


def test_optout_key_during_a_menu_prompt_and_wait() -> None:
    for call in (FakeCall(press={"snd/menu": ["9"]}), FakeCall(digits=["9"])):
        ctx = FakeContext()
        report = run(call, ctx=ctx)
        assert path(report)[1:] == [("menu", "opt_out_key"), ("_confirm", "opted_out")]
        assert ctx.opt_outs == 1 and report.opted_out


def test_optout_key_during_record_and_transfer_prompts() -> None:
    report = run(FakeCall(digits=["2"], press={"snd/rec": ["9"]}))
    assert path(report)[2:] == [("rec", "opt_out_key"), ("_confirm", "opted_out")]
    assert report.recordings == []
    report = run(FakeCall(digits=["1"], press={"snd/agent": ["9"]}))
    assert path(report)[2:] == [("agent", "opt_out_key"), ("_confirm", "opted_out")]
    assert not report.transferred


def test_optout_key_then_hangup_still_opts_out() -> None:
    ctx = FakeContext()
    call = FakeCall(press={"snd/message": ["9"]}, hang_up_on="play:snd/_confirm")
    report = run(call, ctx=ctx)
    assert ctx.opt_outs == 1 and report.opted_out
    assert report.ended_by == "callee"
    assert ("hangup",) not in call.log


def test_optout_key_without_confirm_just_hangs_up() -> None:
    text = MENU.replace('confirm: {text: "You will not be called again."}\n', "")
    call = FakeCall(press={"snd/message": ["9"]})
    report = run(call, text)
    assert path(report) == [("intro", "opt_out_key"), ("_confirm", "opted_out")]
    assert call.played() == ["snd/message"]


def test_no_optout_key_means_no_escape_digit() -> None:
    call = FakeCall(press={"snd/message": ["9"]}, digits=["9", "9"])
    report = run(call, optout_key=None)
    assert not report.opted_out
    assert call.log[0] == ("play", "snd/message", "")
    assert path(report)[1] == ("menu", "invalid")


def test_opt_out_node_uses_its_own_prompt() -> None:
    ctx = FakeContext()
    call = FakeCall(digits=["3"])
    report = run(call, ctx=ctx)
    assert path(report)[1:] == [("menu", "key"), ("stop", "opted_out")]
    assert call.played()[-1] == "snd/stop"
    assert ctx.opt_outs == 1 and report.ended_by == "hangup"


def test_menu_key_equal_to_optout_key_leading_to_opt_out_node() -> None:
    text = MENU.replace('"3": stop', '"9": stop')
    report = run(FakeCall(digits=["9"]), text)
    assert path(report)[1:] == [("menu", "key"), ("stop", "opted_out")]


def test_opt_out_node_with_next_and_opt_out_only_once() -> None:
    text = """\
version: 1
start: a
nodes:
  a: {type: opt_out, next: b}
  b: {type: play, text: "Bye.", next: c}
  c: {type: opt_out}
"""
    ctx = FakeContext()
    call = FakeCall(press={"snd/b": ["9"]})
    report = run(call, text, ctx=ctx)
    assert path(report) == [
        ("a", "opted_out"),
        ("b", "opt_out_key"),
        ("_confirm", "opted_out"),
    ]
    assert ctx.opt_outs == 1
    assert call.played() == ["snd/b"]  # no confirm text: nothing to play


# --- record, transfer, set_result, goto -----------------------------------------------------


def test_record_stores_the_reply_with_retention() -> None:
    call = FakeCall(digits=["2"], records=[RecordResult(5300, "#", True)])
    report = run(call)
    step = report.steps[2]
    assert step["result"] == "recorded" and step["recording"] == "rec/rec"
    assert step["duration_ms"] == 5300 and step["digit"] == "#"
    assert ("record", "rec/rec", 30.0, 2.0, True) in call.log
    assert report.recordings == [
        {"node": "rec", "path": "rec/rec", "duration_ms": 5300, "retention_days": 7}
    ]


def test_empty_recording_is_not_listed() -> None:
    report = run(FakeCall(digits=["2"], records=[RecordResult(0, None, True)]))
    assert report.steps[2]["result"] == "empty" and report.recordings == []


def test_callee_hangs_up_while_recording_keeps_the_recording() -> None:
    call = FakeCall(digits=["2"], hang_up_on="record")
    report = run(call)
    assert path(report)[-1] == ("rec", "recorded")
    assert report.recordings[0]["duration_ms"] == 4200
    assert report.ended_by == "callee" and report.result is None
    assert ("hangup",) not in call.log


def test_transfer_answered() -> None:
    call = FakeCall(digits=["1"], transfers=["ANSWER"])
    report = run(call)
    step = report.steps[2]
    assert step["result"] == "answered" and step["status"] == "ANSWER"
    assert step["target"] == "extension:agent@sim-agent" and step["talk_seconds"] == 42.5
    assert ("transfer", "extension", "agent@sim-agent", 20.0, CAMPAIGN_CLI) in call.log
    assert report.transferred and report.ended_by == "transferred"


def test_transfer_busy_goes_to_on_failure() -> None:
    call = FakeCall(digits=["1"], transfers=["BUSY"])
    report = run(call)
    assert path(report)[2:] == [
        ("agent", "failed"),
        ("sorry", "played"),
        ("rec", "recorded"),
        ("result", "left_message"),
        ("bye", "hangup"),
    ]
    assert report.steps[2]["status"] == "BUSY" and not report.transferred


def test_transfer_callee_caller_id_and_next_after_answer() -> None:
    text = """\
version: 1
start: t
nodes:
  t: {type: transfer, to: {number: "+33199000100"}, caller_id: callee, timeout: 30, next: bye}
  bye: {type: play, text: "Thanks."}
"""
    call = FakeCall()
    report = run(call, text)
    assert ("transfer", "number", "+33199000100", 30.0, CALLEE) in call.log
    assert path(report) == [("t", "answered"), ("bye", "played")]
    assert report.transferred and report.ended_by == "hangup"


def test_transfer_failure_without_on_failure_hangs_up() -> None:
    text = "version: 1\nstart: t\nnodes:\n  t: {type: transfer, to: {queue: sales}}\n"
    report = run(FakeCall(transfers=["NOANSWER"]), text)
    assert path(report) == [("t", "failed")] and report.ended_by == "hangup"


def test_callee_hangs_up_while_the_transfer_rings() -> None:
    call = FakeCall(digits=["1"], transfers=["NOANSWER"], hang_up_on="transfer")
    report = run(call)
    assert report.steps[2]["status"] == "CANCEL" and report.ended_by == "callee"
    assert path(report)[-1] == ("agent", "failed")


def test_goto_with_max_visits() -> None:
    text = """\
version: 1
start: a
nodes:
  a: {type: play, text: "Hello.", next: again}
  again: {type: goto, target: a, max_visits: 2}
"""
    call = FakeCall()
    report = run(call, text)
    assert path(report) == [
        ("a", "played"),
        ("again", "goto"),
        ("a", "played"),
        ("again", "goto"),
        ("a", "played"),
        ("again", "max_visits"),
    ]
    assert report.ended_by == "max_visits" and call.log[-1] == ("hangup",)


def test_max_steps_guard() -> None:
    text = """\
version: 1
start: a
nodes:
  a: {type: set_result, result: looping, next: b}
  b: {type: goto, target: a, max_visits: 100}
"""
    report = run(FakeCall(), text, max_steps=7)
    assert len(report.steps) == 8
    assert report.steps[-1] == {"node": "b", "type": "goto", "result": "max_steps"}
    assert report.ended_by == "max_steps" and report.result == "looping"


# --- hangups, missing sounds, entries -------------------------------------------------------


def test_callee_hangs_up_mid_scenario() -> None:
    call = FakeCall(hang_up_on="play:snd/menu")
    report = run(call)
    assert path(report) == [("intro", "played"), ("menu", "callee")]
    assert report.steps[1]["ms"] == 400 and report.steps[1]["completed"] is False
    assert report.ended_by == "callee" and ("hangup",) not in call.log


def test_callee_hangs_up_while_waiting_for_a_key() -> None:
    report = run(FakeCall(hang_up_on="wait"))
    assert path(report)[-1] == ("menu", "callee") and report.ended_by == "callee"


def test_already_hung_up_call_runs_nothing() -> None:
    call = FakeCall()
    call._hung_up = True
    report = run(call)
    assert report.steps == [] and report.ended_by == "callee" and call.log == []


def test_missing_sound_stops_the_scenario() -> None:
    call = FakeCall(missing=frozenset({"snd/menu"}))
    report = run(call)
    assert path(report) == [("intro", "played"), ("menu", "missing")]
    assert report.steps[1]["sound"] == "snd/menu"
    assert report.ended_by == "missing" and call.log[-1] == ("hangup",)


def test_machine_entry_starts_at_on_machine() -> None:
    call = FakeCall()
    report = run(call, entry="machine")
    assert path(report) == [("vm", "played")]
    sc = load_scenario("version: 1\nstart: a\nnodes:\n  a: {type: hangup}\n")
    with pytest.raises(ValueError, match="no on_machine"):
        run(FakeCall(), sc, entry="machine")


def test_report_is_filled_in_place() -> None:
    report = ScenarioReport()
    returned = run(FakeCall(digits=["2"]), report=report)
    assert returned is report and report.steps
    data = json.loads(report.to_json())
    assert data == report.to_dict()
    assert set(data) == {"steps", "result", "opted_out", "transferred", "recordings", "ended_by"}


# --- the default scenario -------------------------------------------------------------------


def _default(key: str | None) -> Scenario:
    return default_scenario(
        key, announce_text="To stop these calls, press {optout_key}.", confirm_text="Done."
    )


def test_default_scenario_plays_message_then_announcement() -> None:
    call = FakeCall()
    report = run(call, _default("9"))
    assert path(report) == [("message", "played"), ("announce", "played"), ("end", "hangup")]
    assert call.log[:2] == [("play", "snd/message", "9"), ("play", "snd/announce", "9")]
    assert not report.opted_out


def test_default_scenario_optout_during_the_message_or_announcement() -> None:
    for sound in ("snd/message", "snd/announce"):
        ctx = FakeContext()
        call = FakeCall(press={sound: ["9"]})
        report = run(call, _default("9"), ctx=ctx)
        assert report.opted_out and ctx.opt_outs == 1
        assert call.played()[-1] == "snd/_confirm"


def test_default_scenario_without_optout_key() -> None:
    call = FakeCall(press={"snd/message": ["9"]})
    report = run(call, _default(None), optout_key=None)
    assert path(report) == [("message", "played"), ("end", "hangup")]
    assert call.log[0] == ("play", "snd/message", "")
