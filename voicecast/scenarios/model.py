"""The scenario document ("scénario vocal"): what a campaign's callee hears and can do.

A scenario is a YAML or JSON document (same schema) naming its nodes::

    version: 1
    start: intro              # first node for a person
    on_machine: vm            # optional: first node for an answering machine, after the beep
    confirm: {text: "Your request is recorded. Goodbye."}   # optional, see below
    nodes:
      intro: {type: play, audio: spring, next: menu}
      menu:  {type: menu, text: "Press 1 for an advisor.", keys: {"1": agent},
              timeout: 5, retries: 2, on_timeout: bye}
      agent: {type: transfer, to: {queue: sales}, on_failure: bye}
      bye:   {type: hangup}

Node types: ``play``, ``menu``, ``transfer``, ``record``, ``opt_out``, ``set_result``,
``goto``, ``hangup`` (one model class each below). A node whose ``next`` is absent hangs up
when it is done. Any node may carry ``max_visits``: every cycle in the node graph must go
through at least one node that has it, so that no call loops forever; the runner also stops
any call after :data:`MAX_STEPS` node executions.

Prompts: ``play``, ``menu``, ``record``, ``opt_out`` and ``transfer`` nodes may have one
prompt, given as exactly one of ``audio: <name in the audio library>`` or ``text: <text to
speak>`` (with an optional ``voice``, e.g. ``fr`` or ``en-gb``); ``play`` requires one. Texts
may hold merge fields (``{first_name}``, ``{{`` for a literal brace) and pauses
(``[pause 500ms]``, ``[pause 2s]``). Two special audio names refer to the campaign's own
messages (:data:`MESSAGE_AUDIO` ``$message`` and :data:`VOICEMAIL_AUDIO`
``$voicemail_message``); they are not looked up in the audio library.

The opt-out key is a campaign setting, not part of the document: the runner listens for it
during every prompt. ``confirm`` is the prompt played when it is pressed outside an
``opt_out`` node (and by ``opt_out`` nodes without a prompt of their own); a campaign can
supply it at load time (``confirm_text``) when the document does not set it.

Optional top-level ``description`` documents the scenario (JSON has no comments).
``Scenario.model_json_schema()`` gives the document's JSON Schema.

Errors: :func:`load_scenario` raises :class:`ScenarioError` listing every problem found,
each naming the node (or ``document``), the field and the reason.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails

from voicecast.audio.library import NAME_RE as AUDIO_NAME_RE
from voicecast.audio.tts import TtsError, parse_markup
from voicecast.errors import VoicecastError
from voicecast.nesting import nesting_depth
from voicecast.pbx.validation import E164_RE, EXTENSION_RE, QUEUE_RE

MAX_STEPS = 200
"""Node executions allowed in one call before the runner hangs up (``ended_by: max_steps``).

A guard on top of the load-time loop check: a valid document with ``max_visits`` on its
cycles never reaches it in practice (e.g. 30 nodes visited 5 times each is 150 steps)."""

MESSAGE_AUDIO = "$message"
"""Special audio name: the campaign's message (what the default scenario plays first)."""
VOICEMAIL_AUDIO = "$voicemail_message"
"""Special audio name: the campaign's voicemail message (for ``on_machine`` nodes)."""
SPECIAL_AUDIO = frozenset({MESSAGE_AUDIO, VOICEMAIL_AUDIO})

CONFIRM_NODE = "_confirm"
"""Pseudo node id used for the default opt-out confirmation (never a valid node id)."""

RUNTIME_FIELDS = frozenset({"optout_key"})
"""Merge fields always accepted in texts: the runner's context fills them per call
(``{optout_key}`` is the campaign's opt-out key)."""

MAX_PAUSE_MS = 10_000
MAX_DOCUMENT_BYTES = 1_000_000
"""Largest document accepted (UTF-8 bytes), text or file."""
MAX_NODES = 500
"""Most nodes one scenario may hold (a call runs at most :data:`MAX_STEPS` steps; a real
scenario has a few dozen): a document with thousands of nodes is refused before validation."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists accepted in a document (a real scenario needs about
five: ``nodes`` > node > ``keys`` or ``to``); the same limit as the REST API's JSON bodies
(:data:`voicecast.web.openapi.MAX_JSON_DEPTH`). Deeper documents are refused before they
can exhaust Python's recursion limit in the parser or the validator."""
MAX_TEXT_CHARS = 2_000

NODE_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}\Z")
RESULT_RE = NODE_ID_RE
KEY_RE = re.compile(r"^[0-9*#]\Z")
VOICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")
PAUSE_RE = re.compile(r"\[pause (\d{1,5})(ms|s)\]")
"""A pause in a text: ``[pause 500ms]`` or ``[pause 2s]`` (at most :data:`MAX_PAUSE_MS`)."""
FIELD_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,39}\Z")

NODE_TYPES = (
    "play",
    "menu",
    "transfer",
    "record",
    "opt_out",
    "set_result",
    "goto",
    "hangup",
)


# --- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario document.

    Attributes:
        node: the node id, or ``document`` for the document's own fields and syntax.
        field: the field at fault (``keys.3``, ``to.number``, ``start``...), or ``""``.
        reason: a sentence naming the field and what is wrong with it.
    """

    node: str
    field: str
    reason: str

    def __str__(self) -> str:
        where = "document" if self.node == "document" else f"node {self.node!r}"
        return f"{where}: {self.reason}"


class ScenarioError(VoicecastError):
    """A scenario document is invalid; ``problems`` lists every problem found.

    ``str()`` gives one problem per line, e.g. ``node 'menu': key '3' goes to unknown node
    'foo'``.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --- text and field checks --------------------------------------------------------------------


def text_fields(text: str) -> list[str]:
    """The merge fields of a prompt text, in order of appearance (``{first_name}`` ->
    ``first_name``); ``{{`` and ``}}`` are literal braces.

    Raises:
        ValueError: an unmatched brace, a field with a conversion or format spec
            (``{x!r}``, ``{x:>9}``), a name that is not lowercase letters, digits and ``_``,
            or a malformed / too long ``[pause ...]``.
    """
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"text has a stray brace ({exc}); write {{{{ for a literal brace") from exc
    names: list[str] = []
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion or not FIELD_NAME_RE.match(name):
            raise ValueError(
                f"merge field {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not allowed: use {{name}} with lowercase "
                "letters, digits and _"
            )
        names.append(name)
    stripped = PAUSE_RE.sub("", text)
    if "[pause" in stripped:
        raise ValueError("malformed pause: write [pause 500ms] or [pause 2s]")
    for match in PAUSE_RE.finditer(text):
        ms = int(match.group(1)) * (1000 if match.group(2) == "s" else 1)
        if ms > MAX_PAUSE_MS:
            raise ValueError(f"pause {match.group(0)} is longer than {MAX_PAUSE_MS} ms")
    return names


def _node_id(value: str) -> str:
    if not NODE_ID_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid node id: 1 to 40 characters, a lowercase letter "
            "then lowercase letters, digits or _"
        )
    return value


def _key(value: object) -> object:
    # YAML reads `1: agent` as the integer 1: accept single digits written unquoted.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return str(value)
    return value


def _check_key(value: str) -> str:
    if not KEY_RE.match(value):
        raise ValueError(f"{value!r} is not a key: use 0-9, * or #")
    return value


def _audio_name(value: str) -> str:
    if value not in SPECIAL_AUDIO and not AUDIO_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not an audio library name (letters, digits, _ and -, at most 64) "
            f"nor one of {', '.join(sorted(SPECIAL_AUDIO))}"
        )
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("text is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"text is longer than {MAX_TEXT_CHARS} characters")
    text_fields(value)
    try:  # what the speech engine refuses must be refused here, not at call time
        parse_markup(value)
    except TtsError as exc:
        raise ValueError(str(exc)) from None
    return value


def _voice(value: str) -> str:
    if not VOICE_RE.match(value):
        raise ValueError(f"{value!r} is not a voice name (e.g. fr, en-gb)")
    return value


def _result(value: str) -> str:
    if not RESULT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid result: a lowercase letter then lowercase letters, "
            "digits or _ (at most 40)"
        )
    return value


NodeId = Annotated[str, AfterValidator(_node_id)]
"""A node id: ``^[a-z][a-z0-9_]{0,39}$``."""
Key = Annotated[str, BeforeValidator(_key), AfterValidator(_check_key)]
"""A DTMF key: ``0``-``9``, ``*`` or ``#``."""
AudioName = Annotated[str, AfterValidator(_audio_name)]
Text = Annotated[str, AfterValidator(_text)]
Voice = Annotated[str, AfterValidator(_voice)]


# --- models -----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PromptFields(_Strict):
    audio: AudioName | None = None
    text: Text | None = None
    voice: Voice | None = None

    def _prompt_check(self, required: bool) -> None:
        if self.audio is not None and self.text is not None:
            raise ValueError("give audio or text, not both")
        if self.voice is not None and self.text is None:
            raise ValueError("voice applies to text only: give text with it")
        if required and self.audio is None and self.text is None:
            raise ValueError("needs a prompt: give audio (a library name) or text")

    @property
    def prompt(self) -> Prompt | None:
        """The prompt to play, or None when the node has none."""
        if self.audio is None and self.text is None:
            return None
        return Prompt(audio=self.audio, text=self.text, voice=self.voice)


class Prompt(_PromptFields):
    """What to play: exactly one of ``audio`` (a library name or a special name such as
    ``$message``) or ``text`` (spoken by text-to-speech, in ``voice`` if given)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Prompt:
        self._prompt_check(required=True)
        return self


class _Node(_Strict):
    max_visits: int | None = Field(default=None, ge=1, le=100)

    def edges(self) -> list[tuple[str, str]]:
        """The nodes this one can lead to, as (field, node id), e.g. ``("keys.1", "agent")``."""
        return []


class _PromptedNode(_Node, _PromptFields):
    @model_validator(mode="after")
    def _check_prompt(self) -> _PromptedNode:
        self._prompt_check(required=False)
        return self


def _edges(**fields: str | None) -> list[tuple[str, str]]:
    return [(name, target) for name, target in fields.items() if target is not None]


class PlayNode(_PromptedNode):
    """Play a prompt (required), then go to ``next`` (or hang up)."""

    type: Literal["play"]
    next: NodeId | None = None

    @model_validator(mode="after")
    def _needs_prompt(self) -> PlayNode:
        self._prompt_check(required=True)
        return self

    def edges(self) -> list[tuple[str, str]]:
        return _edges(next=self.next)


class MenuNode(_PromptedNode):
    """Play the prompt (if any) and gather one key.

    Attributes:
        keys: key -> node id.
        timeout: seconds to wait for a key after the prompt (1 to 60).
        retries: how many times the menu is replayed after a timeout or an invalid key
            without ``on_invalid`` (0 to 5); when they run out, go to ``on_timeout`` or hang up.
        on_invalid: node for a key not in ``keys`` (absent: replay, counting a retry).
    """

    type: Literal["menu"]
    keys: dict[Key, NodeId] = Field(min_length=1)
    timeout: float = Field(default=5.0, ge=1, le=60)
    retries: int = Field(default=2, ge=0, le=5)
    on_timeout: NodeId | None = None
    on_invalid: NodeId | None = None

    def edges(self) -> list[tuple[str, str]]:
        out = [(f"keys.{key}", target) for key, target in self.keys.items()]
        return out + _edges(on_timeout=self.on_timeout, on_invalid=self.on_invalid)


class TransferTarget(_Strict):
    """Where a transfer goes: exactly one of an Asterisk ``extension`` (``exten@context``),
    a ``queue`` name or an E.164 ``number``."""

    extension: str | None = None
    queue: str | None = None
    number: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TransferTarget:
        given = [name for name in ("extension", "queue", "number") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of extension, queue or number"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.extension is not None and not EXTENSION_RE.match(self.extension):
            raise ValueError(
                f"extension {self.extension!r} must be exten@context (exten: letters, digits, "
                "_ + * # -; context: letters, digits, _ -)"
            )
        if self.queue is not None and not QUEUE_RE.match(self.queue):
            raise ValueError(f"queue {self.queue!r} may hold only letters, digits, _ and -")
        if self.number is not None and not E164_RE.match(self.number):
            raise ValueError(f"number {self.number!r} is not E.164 (+ then 7 to 15 digits)")
        return self

    @property
    def kind(self) -> Literal["extension", "queue", "number"]:
        """Which kind of target this is."""
        if self.extension is not None:
            return "extension"
        return "queue" if self.queue is not None else "number"

    @property
    def value(self) -> str:
        """The extension, queue name or number."""
        return self.extension or self.queue or self.number or ""


class TransferNode(_PromptedNode):
    """Play the prompt (if any), then connect the callee to ``to``.

    Attributes:
        timeout: seconds to ring the target (5 to 120).
        caller_id: which number the target sees: ``campaign`` (the campaign's caller ID) or
            ``callee`` (the callee's number).
        on_failure: node when the target does not answer (any status but ``ANSWER``);
            absent: hang up.
        next: node after an answered transfer if the callee is still on the line.
    """

    type: Literal["transfer"]
    to: TransferTarget
    timeout: float = Field(default=20.0, ge=5, le=120)
    caller_id: Literal["campaign", "callee"] = "campaign"
    on_failure: NodeId | None = None
    next: NodeId | None = None

    def edges(self) -> list[tuple[str, str]]:
        return _edges(on_failure=self.on_failure, next=self.next)


class RecordNode(_PromptedNode):
    """Play the prompt (if any), then record the callee's reply.

    Attributes:
        max_seconds: longest recording (1 to 300 s).
        silence_seconds: stop after this much silence (0 to 60 s; 0 = no silence detection).
        beep: play a beep before recording.
        retention_days: how long the recording is kept (1 to 3650 days).
    """

    type: Literal["record"]
    max_seconds: float = Field(default=60.0, ge=1, le=300)
    silence_seconds: float = Field(default=3.0, ge=0, le=60)
    beep: bool = True
    retention_days: int = Field(default=30, ge=1, le=3650)
    next: NodeId | None = None

    def edges(self) -> list[tuple[str, str]]:
        return _edges(next=self.next)


class OptOutNode(_PromptedNode):
    """Suppress the number, play the prompt (or the scenario's ``confirm``), then go to
    ``next`` or hang up."""

    type: Literal["opt_out"]
    next: NodeId | None = None

    def edges(self) -> list[tuple[str, str]]:
        return _edges(next=self.next)


class SetResultNode(_Node):
    """Set the call's result (e.g. ``interested``), then go to ``next`` or hang up."""

    type: Literal["set_result"]
    result: Annotated[str, AfterValidator(_result)]
    next: NodeId | None = None

    def edges(self) -> list[tuple[str, str]]:
        return _edges(next=self.next)


class GotoNode(_Node):
    """Go to ``target`` (usually with ``max_visits`` to bound a loop)."""

    type: Literal["goto"]
    target: NodeId

    def edges(self) -> list[tuple[str, str]]:
        return [("target", self.target)]


class HangupNode(_Node):
    """Hang up."""

    type: Literal["hangup"]


Node = Annotated[
    PlayNode
    | MenuNode
    | TransferNode
    | RecordNode
    | OptOutNode
    | SetResultNode
    | GotoNode
    | HangupNode,
    Field(discriminator="type"),
]


class Scenario(_Strict):
    """A validated scenario document (see the module docstring).

    Constructing one runs every check that needs nothing outside the document (references,
    reachability, loops); :func:`load_scenario` adds the audio library, merge-field and
    opt-out key checks.

    Raises:
        ScenarioError: on construction, for the cross-node checks.
        pydantic.ValidationError: on construction, for a field's shape or bounds
            (:func:`load_scenario` turns it into a :class:`ScenarioError`).
    """

    version: Literal[1]
    description: str | None = Field(default=None, max_length=2000)
    start: NodeId
    on_machine: NodeId | None = None
    confirm: Prompt | None = None
    nodes: dict[NodeId, Node] = Field(min_length=1, max_length=MAX_NODES)

    @model_validator(mode="after")
    def _check_graph(self, info: ValidationInfo) -> Scenario:
        context: dict[str, Any] = info.context or {}
        problems = _graph_problems(self)
        problems += _prompt_problems(self, context.get("audio_exists"), context.get("fields"))
        key = context.get("optout_key")
        if key is not None:
            problems += optout_key_problems(self, key)
        if problems:
            raise ScenarioError(problems)
        return self


# --- cross-node checks ------------------------------------------------------------------------


def _graph_problems(sc: Scenario) -> list[Problem]:
    problems: list[Problem] = []
    for field in ("start", "on_machine"):
        target = getattr(sc, field)
        if target is not None and target not in sc.nodes:
            problems.append(Problem("document", field, f"{field} goes to unknown node {target!r}"))
    for node_id, node in sc.nodes.items():
        for field, target in node.edges():
            if target not in sc.nodes:
                label = f"key {field[5:]!r}" if field.startswith("keys.") else field
                problems.append(Problem(node_id, field, f"{label} goes to unknown node {target!r}"))
    entries = [n for n in (sc.start, sc.on_machine) if n is not None and n in sc.nodes]
    seen = _reachable(sc, entries)
    where = "start or on_machine" if sc.on_machine else "start"
    problems += [
        Problem(node_id, "", f"is not reachable from {where}")
        for node_id in sc.nodes
        if node_id not in seen
    ]
    problems += [
        Problem(cycle[0], "max_visits", f"cycle {' → '.join(cycle)} has no max_visits")
        for cycle in _unbounded_cycles(sc)
    ]
    return problems


def _successors(sc: Scenario, node_id: str) -> list[str]:
    return [t for _, t in sc.nodes[node_id].edges() if t in sc.nodes]


def _reachable(sc: Scenario, entries: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        node_id = todo.pop()
        if node_id not in seen:
            seen.add(node_id)
            todo.extend(_successors(sc, node_id))
    return seen


def _unbounded_cycles(sc: Scenario) -> list[list[str]]:
    """One cycle (closed: first == last) per loop of nodes none of which has max_visits.

    Removing the nodes that carry ``max_visits`` leaves exactly the cycles that would be
    unbounded; each strongly connected part of what is left holds at least one of them.
    """
    free = [n for n, node in sc.nodes.items() if node.max_visits is None]
    graph = {n: [t for t in _successors(sc, n) if t in free] for n in free}
    cycles: list[list[str]] = []
    for part in _strongly_connected(graph):
        first = min(part, key=free.index)
        if len(part) > 1 or first in graph[first]:
            cycles.append(_cycle_through(graph, first, part))
    cycles.sort(key=lambda c: free.index(c[0]))
    return cycles


def _strongly_connected(graph: dict[str, list[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative); parts in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            succ = graph[node]
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                part: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.add(member)
                    if member == node:
                        break
                parts.append(part)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return parts


def _cycle_through(graph: dict[str, list[str]], first: str, part: set[str]) -> list[str]:
    """The shortest cycle from ``first`` back to itself inside ``part`` (breadth first)."""
    came_from: dict[str, str] = {}
    queue = [first]
    while queue:
        node = queue.pop(0)
        for nxt in graph[node]:
            if nxt not in part:
                continue
            if nxt == first:
                path = [node]
                while path[-1] != first:
                    path.append(came_from[path[-1]])
                return [first, *reversed(path[:-1]), first] if node != first else [first, first]
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return [first, first]  # not reached: a strongly connected part has a cycle


def _prompts(sc: Scenario) -> list[tuple[str, Prompt]]:
    out: list[tuple[str, Prompt]] = []
    if sc.confirm is not None:
        out.append(("document", sc.confirm))
    for node_id, node in sc.nodes.items():
        prompt = node.prompt if isinstance(node, _PromptFields) else None
        if prompt is not None:
            out.append((node_id, prompt))
    return out


def _prompt_problems(
    sc: Scenario,
    audio_exists: Callable[[str], bool] | None,
    fields: Iterable[str] | None,
) -> list[Problem]:
    problems: list[Problem] = []
    known = None if fields is None else set(fields) | RUNTIME_FIELDS
    for node_id, prompt in _prompts(sc):
        prefix = "confirm." if node_id == "document" else ""
        if (
            audio_exists is not None
            and prompt.audio is not None
            and prompt.audio not in SPECIAL_AUDIO
            and not audio_exists(prompt.audio)
        ):
            problems.append(
                Problem(
                    node_id,
                    prefix + "audio",
                    f"{prefix}audio {prompt.audio!r} is not in the audio library",
                )
            )
        if known is not None and prompt.text is not None:
            for name in dict.fromkeys(text_fields(prompt.text)):
                if name not in known:
                    problems.append(
                        Problem(
                            node_id,
                            prefix + "text",
                            f"{prefix}text uses merge field {{{name}}}, which the contacts "
                            f"do not have (known: {', '.join(sorted(known))})",
                        )
                    )
    return problems


def optout_key_problems(scenario: Scenario, optout_key: str) -> list[Problem]:
    """Menu keys that clash with the campaign's opt-out key.

    A menu key equal to ``optout_key`` is allowed only when it leads to an ``opt_out``
    node (pressing the opt-out key always opts out).
    """
    problems: list[Problem] = []
    for node_id, node in scenario.nodes.items():
        if not isinstance(node, MenuNode) or optout_key not in node.keys:
            continue
        target = node.keys[optout_key]
        if not isinstance(scenario.nodes.get(target), OptOutNode):
            problems.append(
                Problem(
                    node_id,
                    f"keys.{optout_key}",
                    f"key {optout_key!r} is the campaign's opt-out key: it must lead to an "
                    f"opt_out node, not {target!r}",
                )
            )
    return problems


# --- loading ----------------------------------------------------------------------------------


def _too_deep() -> str:
    return f"the document is nested too deeply (more than {MAX_DEPTH} levels)"


class _StrictSafeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that also refuses duplicate keys (a second node with the same
    id would silently replace the first), aliases (``*name``: expansion bombs) and nesting
    deeper than :data:`MAX_DEPTH` (PyYAML composes nodes recursively: ``a: [[[[...]]]]``
    a few thousand levels deep would raise RecursionError). The depth check runs as the
    events arrive, so such a document is refused after reading its first levels only."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", event.start_mark
            )
        nested = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, _too_deep(), event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse(text: str, fmt: str | None) -> Any:
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "yaml"
    if fmt not in ("yaml", "json"):
        raise ValueError(f"fmt must be 'yaml', 'json' or None, not {fmt!r}")
    try:
        data = _parse_json(text) if fmt == "json" else _parse_yaml(text)
    except RecursionError:  # json.loads on a deep document (the YAML loader stops earlier)
        raise ScenarioError([Problem("document", fmt, _too_deep())]) from None
    if nesting_depth(data) > MAX_DEPTH:
        raise ScenarioError([Problem("document", fmt, _too_deep())])
    return data


def _parse_yaml(text: str) -> Any:
    try:
        # A SafeLoader subclass (see _StrictSafeLoader): constructs plain data only.
        return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise ScenarioError([Problem("document", "yaml", f"YAML error at {where}{what}")]) from exc
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem("document", "yaml", f"YAML error: {exc}")]) from exc


def _parse_json(text: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        reason = f"JSON error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise ScenarioError([Problem("document", "json", reason)]) from exc
    except ValueError as exc:
        raise ScenarioError([Problem("document", "json", f"JSON error: {exc}")]) from exc


def _problem_of(error: ErrorDetails) -> Problem:
    """Turn one pydantic error into a Problem naming the node and the field."""
    loc = list(error["loc"])
    node = "document"
    if len(loc) >= 2 and loc[0] == "nodes":
        node = str(loc[1])
        loc = loc[2:]
        if loc and loc[0] in NODE_TYPES:
            loc = loc[1:]  # the discriminated union's tag
    if loc[-1:] == ["[key]"]:
        loc = loc[:-1]
        if not loc:  # the node id itself
            return Problem(node, "", error["msg"].removeprefix("Value error, "))
    field = ".".join(str(part) for part in loc)
    kind = error["type"]
    msg = error["msg"].removeprefix("Value error, ")
    if kind == "union_tag_not_found":
        reason = f"type is missing: use one of {', '.join(NODE_TYPES)}"
        field = "type"
    elif kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        reason = f"type {tag!r} is unknown: use one of {', '.join(NODE_TYPES)}"
        field = "type"
    elif node != "document" and not field and kind.endswith("_type"):
        reason = f"a node must be a mapping with a type: one of {', '.join(NODE_TYPES)}"
    elif kind == "extra_forbidden":
        reason = f"unknown field {field!r}"
    elif kind == "missing":
        reason = f"{field} is required"
    else:
        value = error.get("input")
        scalar = isinstance(value, str | int | float | bool)
        got = f" (got {value!r})" if scalar and kind != "value_error" else ""
        reason = f"{field}: {msg}{got}" if field else msg
        if isinstance(value, bool) and kind == "string_type":
            reason += " (YAML reads unquoted yes/no/on/off as true/false: quote the value)"
    return Problem(node, field, reason)


def load_scenario(
    text: str,
    *,
    fmt: Literal["yaml", "json"] | None = None,
    audio_exists: Callable[[str], bool] | None = None,
    fields: Iterable[str] | None = None,
    optout_key: str | None = None,
    confirm_text: str | None = None,
) -> Scenario:
    """Parse and validate a scenario document.

    Args:
        text: the document, YAML or JSON.
        fmt: ``yaml``, ``json``, or None to guess (JSON when it starts with ``{``).
        audio_exists: whether a name is in the audio library; None skips that check
            (special names such as ``$message`` are never looked up).
        fields: the merge fields the contacts have (e.g. ``{"first_name", "company"}``);
            None skips the check. :data:`RUNTIME_FIELDS` are always allowed.
        optout_key: the campaign's opt-out key; when given, a menu key equal to it must
            lead to an ``opt_out`` node.
        confirm_text: the opt-out confirmation text to use when the document has no
            ``confirm``.

    Returns:
        The validated, immutable :class:`Scenario`.

    Raises:
        ScenarioError: every problem found (YAML/JSON syntax errors give the line and
            column; other problems name the node and field).
    """
    if len(text.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise ScenarioError(
            [Problem("document", "", f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
        )
    data = _parse(text, fmt)
    if data is None:
        raise ScenarioError([Problem("document", "", "the document is empty")])
    if not isinstance(data, dict):
        raise ScenarioError(
            [
                Problem(
                    "document", "", "the document must be a mapping with version, start and nodes"
                )
            ]
        )
    nodes = data.get("nodes")
    if isinstance(nodes, dict) and len(nodes) > MAX_NODES:
        raise ScenarioError(
            [Problem("document", "nodes", f"{len(nodes)} nodes: more than {MAX_NODES} nodes")]
        )
    if confirm_text is not None and "confirm" not in data:
        data = {**data, "confirm": {"text": confirm_text}}
    context = {
        "audio_exists": audio_exists,
        "fields": None if fields is None else set(fields),
        "optout_key": optout_key,
    }
    try:
        return Scenario.model_validate(data, context=context)
    except ValidationError as exc:
        raise ScenarioError(_problem_of(e) for e in exc.errors()) from None


def read_scenario_file(path: str | Path) -> str:
    """The text of a scenario file: UTF-8 (a BOM is dropped), at most
    :data:`MAX_DOCUMENT_BYTES` bytes (checked before reading it), not yet validated.

    Raises:
        ScenarioError: the file cannot be read, is too large or is not UTF-8 text.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(
            [Problem("document", "", f"cannot read {path}: {exc.strerror or exc}")]
        ) from exc
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ScenarioError(
            [Problem("document", "", f"{path} is larger than {MAX_DOCUMENT_BYTES} bytes")]
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScenarioError([Problem("document", "", f"{path} is not UTF-8 text")]) from exc


def load_scenario_file(
    path: str | Path,
    *,
    fmt: Literal["yaml", "json"] | None = None,
    audio_exists: Callable[[str], bool] | None = None,
    fields: Iterable[str] | None = None,
    optout_key: str | None = None,
    confirm_text: str | None = None,
) -> Scenario:
    """Read a UTF-8 file (BOM allowed) and :func:`load_scenario` it; ``fmt`` defaults from
    the extension (``.json``; ``.yaml``/``.yml``) or is guessed.

    Raises:
        ScenarioError: the file cannot be read or is too large, or the document is invalid.
    """
    path = Path(path)
    text = read_scenario_file(path)
    if fmt is None:
        suffix = path.suffix.lower()
        fmt = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else None
    return load_scenario(
        text,
        fmt=fmt,
        audio_exists=audio_exists,
        fields=fields,
        optout_key=optout_key,
        confirm_text=confirm_text,
    )


def default_scenario(optout_key: str | None, *, announce_text: str, confirm_text: str) -> Scenario:
    """The scenario of a campaign without its own: the campaign's message, then (with an
    opt-out key) the announcement, then hang up.

    Nodes: ``message`` (play :data:`MESSAGE_AUDIO`) -> ``announce`` (play
    ``announce_text``, where ``{optout_key}`` is replaced by the key) -> ``end`` (hangup).
    Without an opt-out key: ``message`` -> ``end``. The opt-out key is listened for during
    both plays; ``confirm_text`` is the confirmation played after it.

    Raises:
        ScenarioError: ``announce_text`` or ``confirm_text`` is not a valid text, or the key
            is not 0-9, * or #.
    """
    nodes: dict[str, Any] = {"message": {"type": "play", "audio": MESSAGE_AUDIO, "next": "end"}}
    if optout_key is not None:
        if not KEY_RE.match(optout_key):
            raise ScenarioError(
                [Problem("document", "optout_key", f"{optout_key!r} is not a key: use 0-9, * or #")]
            )
        nodes["message"]["next"] = "announce"
        text = announce_text.replace("{optout_key}", optout_key)
        nodes["announce"] = {"type": "play", "text": text, "next": "end"}
    nodes["end"] = {"type": "hangup"}
    data = {"version": 1, "start": "message", "confirm": {"text": confirm_text}, "nodes": nodes}
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_problem_of(e) for e in exc.errors()) from None
