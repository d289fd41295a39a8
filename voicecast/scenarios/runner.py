"""Run a validated scenario on an answered call.

The runner is pure control flow: it plays what :class:`ScenarioContext` says to play, asks
the call (a :class:`~voicecast.pbx.base.CallFlowSession`) for keys, recordings and
transfers, and writes what happened into a :class:`ScenarioReport` as it goes, so a caller
can save partial progress.

Opt-out by key: every prompt listens for the campaign's opt-out key (``STREAM FILE`` escape
digit). Pressing it anywhere, or reaching an ``opt_out`` node, calls ``ctx.opt_out()`` once,
plays the confirmation (the ``opt_out`` node's prompt, else the scenario's ``confirm``),
then hangs up (or follows the ``opt_out`` node's ``next``). Sources: CPCE L34-5, Code de la
consommation L221-16, 47 CFR 64.1200(b)(3) (see :mod:`voicecast.dialer.flow`).

The runner never raises because the callee hung up: it stops and the report says how far it
got (``ended_by: callee``). Errors of the call or the context (e.g.
:class:`~voicecast.pbx.base.PbxError`) propagate, with the report filled up to that point.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from voicecast.pbx.base import CallFlowSession, PlayResult
from voicecast.scenarios.model import (
    CONFIRM_NODE,
    MAX_STEPS,
    GotoNode,
    HangupNode,
    MenuNode,
    Node,
    OptOutNode,
    PlayNode,
    Prompt,
    RecordNode,
    Scenario,
    SetResultNode,
    TransferNode,
)


class ScenarioContext(Protocol):
    """What the runner needs from the dialer for one call (the dialer implements it)."""

    def sound_for(self, node_id: str, prompt: Prompt) -> str:
        """The PBX sound path (no extension) to play for ``prompt`` (renders text to speech
        with the contact's merge fields and ``{optout_key}``; maps ``$message`` and
        ``$voicemail_message`` to the campaign's messages). ``node_id`` is
        ``_confirm`` for the scenario's own confirmation."""
        ...

    def record_path(self, node_id: str) -> str:
        """The PBX path (no extension) where the record node ``node_id`` stores the reply."""
        ...

    def caller_id_for(self, rule: str) -> str:
        """The E.164 number a transfer presents: ``campaign`` or ``callee``."""
        ...

    def opt_out(self) -> None:
        """Suppress the callee's number now (synchronous and quick)."""
        ...


EndedBy = Literal["", "hangup", "callee", "transferred", "max_steps", "max_visits", "missing"]


@dataclass
class ScenarioReport:
    """What a scenario did on one call; filled in place while it runs.

    Attributes:
        steps: one dict per node executed, in order: ``node``, ``type``, ``result`` and,
            depending on the node, ``ms`` (prompt played, ms), ``completed``, ``digit``,
            ``attempts`` (menu), ``recording`` (path) and ``duration_ms`` (record),
            ``target``, ``status`` (DIALSTATUS) and ``talk_seconds`` (transfer), ``sound``
            (when missing). ``result`` per type: play ``played``; menu ``key``, ``invalid``,
            ``timeout``; record ``recorded`` or ``empty``; transfer ``answered`` or
            ``failed``; opt_out ``opted_out``; set_result the result set; goto ``goto``;
            hangup ``hangup``; and for any node ``opt_out_key`` (the opt-out key was
            pressed), ``callee`` (hung up), ``missing`` (a sound is missing on the PBX),
            ``max_visits``, ``max_steps``. A key-press opt-out adds a step for node
            ``_confirm`` (type ``opt_out``).
        result: the last ``set_result`` value, or None.
        opted_out: the callee opted out (``ctx.opt_out()`` was called).
        transferred: a transfer was answered (``ANSWER``).
        recordings: ``{"node", "path", "duration_ms", "retention_days"}`` for each
            recording longer than 0 ms.
        ended_by: ``""`` while running, then ``hangup`` (the scenario ended), ``callee``
            (the callee hung up), ``transferred`` (ended after an answered transfer),
            ``max_steps``, ``max_visits`` or ``missing`` (a failure: a sound was missing).
    """

    steps: list[dict[str, Any]] = field(default_factory=list)
    result: str | None = None
    opted_out: bool = False
    transferred: bool = False
    recordings: list[dict[str, Any]] = field(default_factory=list)
    ended_by: EndedBy = ""

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types (a deep copy)."""
        return asdict(self)

    def to_json(self) -> str:
        """The report as a compact JSON string."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


async def run_scenario(
    call: CallFlowSession,
    scenario: Scenario,
    ctx: ScenarioContext,
    *,
    optout_key: str | None,
    entry: Literal["person", "machine"] = "person",
    report: ScenarioReport | None = None,
    max_steps: int = MAX_STEPS,
) -> ScenarioReport:
    """Run ``scenario`` on an answered call, then hang up if the callee has not.

    Args:
        call: the answered call.
        scenario: a validated scenario.
        ctx: sounds, recording paths, caller IDs and the opt-out action for this call.
        optout_key: the campaign's opt-out key (``0``-``9``, ``*``, ``#``) or None.
        entry: ``person`` starts at ``start``; ``machine`` at ``on_machine`` (after the
            beep: the caller has waited for it).
        report: filled in place (a fresh one if None).
        max_steps: node executions allowed before hanging up (``ended_by: max_steps``).

    Returns:
        The report.

    Raises:
        ValueError: ``entry`` is ``machine`` and the scenario has no ``on_machine``.
    """
    report = report if report is not None else ScenarioReport()
    start = scenario.start if entry == "person" else scenario.on_machine
    if start is None:
        raise ValueError("the scenario has no on_machine node")
    await _Run(call, scenario, ctx, optout_key, report).run(start, max_steps)
    if not call.hung_up:
        await call.hangup()
    return report


class _Run:
    """One run: the handlers return the next node id, or None to stop."""

    def __init__(
        self,
        call: CallFlowSession,
        scenario: Scenario,
        ctx: ScenarioContext,
        optout_key: str | None,
        report: ScenarioReport,
    ) -> None:
        self.call = call
        self.scenario = scenario
        self.ctx = ctx
        self.key = optout_key or None
        self.report = report

    async def run(self, start: str, max_steps: int) -> None:
        visits: Counter[str] = Counter()
        steps = 0
        node_id: str | None = start
        while node_id is not None and not self.report.ended_by:
            node = self.scenario.nodes[node_id]
            if self.call.hung_up:
                self.report.ended_by = "callee"
                return
            if steps >= max_steps:
                self._step(node_id, node)["result"] = "max_steps"
                self.report.ended_by = "max_steps"
                return
            steps += 1
            visits[node_id] += 1
            if node.max_visits is not None and visits[node_id] > node.max_visits:
                self._step(node_id, node)["result"] = "max_visits"
                self.report.ended_by = "max_visits"
                return
            node_id = await self._execute(node_id, node)
        if not self.report.ended_by:
            self.report.ended_by = "hangup"

    async def _execute(self, node_id: str, node: Node) -> str | None:
        step = self._step(node_id, node)
        if isinstance(node, PlayNode):
            return await self._play(node_id, node, step)
        if isinstance(node, MenuNode):
            return await self._menu(node_id, node, step)
        if isinstance(node, RecordNode):
            return await self._record(node_id, node, step)
        if isinstance(node, TransferNode):
            return await self._transfer(node_id, node, step)
        if isinstance(node, OptOutNode):
            if await self._opt_out(node_id, node.prompt, step):
                return node.next
            return None
        if isinstance(node, SetResultNode):
            self.report.result = step["result"] = node.result
            return node.next
        if isinstance(node, GotoNode):
            step["result"] = "goto"
            return node.target
        assert isinstance(node, HangupNode)
        step["result"] = "hangup"
        return None

    # --- node types ---------------------------------------------------------------------------

    async def _play(self, node_id: str, node: PlayNode, step: dict[str, Any]) -> str | None:
        assert node.prompt is not None  # validated: play requires a prompt
        if not await self._prompt_done(node_id, node.prompt, step):
            return None
        step["result"] = "played"
        return node.next

    async def _menu(self, node_id: str, node: MenuNode, step: dict[str, Any]) -> str | None:
        escape = "".join(dict.fromkeys([*node.keys, *([self.key] if self.key else [])]))
        prompt = node.prompt
        attempt = 0
        while True:
            attempt += 1
            step["attempts"] = attempt
            digit: str | None = None
            if prompt is not None:
                played = await self._say(node_id, prompt, step, escape)
                if played is None:
                    return None
                digit = played.digit
            if digit is None:
                if self._callee_gone(step):
                    return None
                digit = await self.call.wait_for_digit(node.timeout)
            if digit is None:
                if self._callee_gone(step):
                    return None
                outcome = "timeout"
            else:
                step["digit"] = digit
                target = node.keys.get(digit)
                leads_to_opt_out = isinstance(self.scenario.nodes.get(target or ""), OptOutNode)
                if digit == self.key and not leads_to_opt_out:
                    await self._key_opt_out(step)
                    return None
                if target is not None:
                    step["result"] = "key"
                    return target
                if node.on_invalid is not None:
                    step["result"] = "invalid"
                    return node.on_invalid
                outcome = "invalid"
            if attempt > node.retries:
                step["result"] = outcome
                return node.on_timeout

    async def _record(self, node_id: str, node: RecordNode, step: dict[str, Any]) -> str | None:
        if node.prompt is not None and not await self._prompt_done(node_id, node.prompt, step):
            return None
        path = self.ctx.record_path(node_id)
        rec = await self.call.record(path, node.max_seconds, node.silence_seconds, node.beep)
        step.update(recording=path, duration_ms=rec.duration_ms, completed=rec.completed)
        step["result"] = "recorded" if rec.duration_ms > 0 else "empty"
        if rec.duration_ms > 0:
            self.report.recordings.append(
                {
                    "node": node_id,
                    "path": path,
                    "duration_ms": rec.duration_ms,
                    "retention_days": node.retention_days,
                }
            )
        if rec.digit is not None:
            step["digit"] = rec.digit
            if rec.digit == self.key:
                await self._key_opt_out(step)
                return None
        if self.call.hung_up:
            self.report.ended_by = "callee"
            return None
        return node.next

    async def _transfer(self, node_id: str, node: TransferNode, step: dict[str, Any]) -> str | None:
        if node.prompt is not None and not await self._prompt_done(node_id, node.prompt, step):
            return None
        step["target"] = f"{node.to.kind}:{node.to.value}"
        caller_id = self.ctx.caller_id_for(node.caller_id)
        res = await self.call.transfer(node.to.kind, node.to.value, node.timeout, caller_id)
        status = res.status.upper()
        step.update(status=status, talk_seconds=res.talk_seconds)
        if status == "ANSWER":
            step["result"] = "answered"
            self.report.transferred = True
            if node.next is None or self.call.hung_up:
                self.report.ended_by = "transferred"
                return None
            return node.next
        step["result"] = "failed"
        if self.call.hung_up:
            self.report.ended_by = "callee"
            return None
        return node.on_failure

    # --- opt-out ------------------------------------------------------------------------------

    async def _key_opt_out(self, step: dict[str, Any]) -> None:
        """The opt-out key was pressed during ``step``: opt out, confirm, hang up."""
        step["result"] = "opt_out_key"
        confirm = self._step(CONFIRM_NODE, None)
        await self._opt_out(CONFIRM_NODE, None, confirm)

    async def _opt_out(self, node_id: str, prompt: Prompt | None, step: dict[str, Any]) -> bool:
        """Opt out (once per call) and play ``prompt`` or the scenario's ``confirm``;
        False when the call must stop (callee gone or sound missing)."""
        if not self.report.opted_out:
            self.ctx.opt_out()
            self.report.opted_out = True
        step["result"] = "opted_out"
        if prompt is None:
            prompt = self.scenario.confirm
            node_id = CONFIRM_NODE
        if self.call.hung_up:
            self.report.ended_by = "callee"
            return False
        if prompt is not None:
            played = await self._say(node_id, prompt, step, "")
            if played is None:
                return False
            if self.call.hung_up:
                self.report.ended_by = "callee"
                return False
        return True

    # --- helpers ------------------------------------------------------------------------------

    def _step(self, node_id: str, node: Node | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "node": node_id,
            "type": node.type if node is not None else "opt_out",
            "result": "started",
        }
        self.report.steps.append(step)
        return step

    async def _say(
        self, node_id: str, prompt: Prompt, step: dict[str, Any], escape: str
    ) -> PlayResult | None:
        """Play ``prompt``, adding ``ms``/``completed``/``digit`` to ``step``; None (and the
        call stops) when the sound is missing on the PBX."""
        sound = self.ctx.sound_for(node_id, prompt)
        if not await self.call.sound_exists(sound):
            step.update(result="missing", sound=sound)
            self.report.ended_by = "missing"
            return None
        played = await self.call.play(sound, escape)
        step["ms"] = step.get("ms", 0) + played.played_ms
        step["completed"] = played.completed
        if played.digit is not None:
            step["digit"] = played.digit
        return played

    async def _prompt_done(self, node_id: str, prompt: Prompt, step: dict[str, Any]) -> bool:
        """Play a prompt that listens for the opt-out key only; False when the call must
        stop (sound missing, opt-out key pressed, or the callee hung up)."""
        played = await self._say(node_id, prompt, step, self.key or "")
        if played is None:
            return False
        if self.key is not None and played.digit == self.key:
            await self._key_opt_out(step)
            return False
        return not self._callee_gone(step)

    def _callee_gone(self, step: dict[str, Any]) -> bool:
        if not self.call.hung_up:
            return False
        step["result"] = "callee"
        self.report.ended_by = "callee"
        return True
