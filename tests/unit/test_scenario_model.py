"""voicecast.scenarios.model: parsing and validating scenario documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicecast.scenarios import (
    MESSAGE_AUDIO,
    MenuNode,
    PlayNode,
    Problem,
    Prompt,
    Scenario,
    ScenarioError,
    TransferNode,
    default_scenario,
    load_scenario,
    load_scenario_file,
    read_scenario_file,
    text_fields,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"

MENU_DOC = """\
version: 1
start: intro
on_machine: vm
nodes:
  intro: {type: play, audio: msg, next: menu}
  menu:
    type: menu
    text: "Press 1 to speak to an advisor, 2 to leave a message."
    keys: {"1": agent, "2": rec, "9": stop}
    timeout: 5
    retries: 2
    on_timeout: bye
    on_invalid: menu
    max_visits: 3
  agent:
    type: transfer
    to: {extension: "agent@sim-agent"}
    timeout: 20
    caller_id: callee
    on_failure: rec
  rec: {type: record, text: "Leave your message after the beep", max_seconds: 60,
        silence_seconds: 3, beep: true, retention_days: 30, next: result}
  result: {type: set_result, result: interested, next: bye}
  stop: {type: opt_out, text: "Your request is recorded."}
  vm: {type: play, audio: "$voicemail_message"}
  bye: {type: hangup}
"""


def doc(nodes: dict[str, Any], **top: Any) -> str:
    """A YAML document with ``nodes`` (start defaults to the first node)."""
    data = {"version": 1, "start": next(iter(nodes)), **top, "nodes": nodes}
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def problems(text: str, **kwargs: Any) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(text, **kwargs)
    lines = str(info.value).splitlines()
    assert lines == [str(p) for p in info.value.problems]
    return lines


PLAY = {"type": "play", "text": "Hello."}

# --- valid documents ------------------------------------------------------------------------


def test_full_document_loads_with_every_node_type() -> None:
    sc = load_scenario(MENU_DOC, audio_exists=lambda name: name == "msg", optout_key="9")
    assert sc.start == "intro" and sc.on_machine == "vm"
    menu = sc.nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert menu.keys == {"1": "agent", "2": "rec", "9": "stop"}
    assert menu.prompt == Prompt(text="Press 1 to speak to an advisor, 2 to leave a message.")
    agent = sc.nodes["agent"]
    assert isinstance(agent, TransferNode)
    assert (agent.to.kind, agent.to.value, agent.caller_id) == (
        "extension",
        "agent@sim-agent",
        "callee",
    )
    assert [t for _, t in menu.edges()] == ["agent", "rec", "stop", "bye", "menu"]


def test_json_and_yaml_give_the_same_scenario() -> None:
    as_json = json.dumps(yaml.safe_load(MENU_DOC), indent=2)
    from_yaml = load_scenario(MENU_DOC)
    assert load_scenario(as_json) == from_yaml  # guessed from the leading brace
    assert load_scenario(as_json, fmt="json") == from_yaml
    assert load_scenario(as_json, fmt="yaml") == from_yaml  # JSON is YAML too


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_examples_load(path: Path) -> None:
    sc = load_scenario_file(
        path, audio_exists=lambda name: False, fields={"first_name", "company"}, optout_key="9"
    )
    assert sc.nodes


def test_examples_cover_menu_record_and_transfer() -> None:
    assert len(list(EXAMPLES.glob("*.yaml"))) >= 2
    sc = load_scenario_file(EXAMPLES / "menu-record-transfer.yaml")
    types = {node.type for node in sc.nodes.values()}
    assert {"menu", "record", "transfer", "opt_out"} <= types


def test_file_format_from_extension_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(yaml.safe_load(MENU_DOC)), encoding="utf-8-sig")
    assert load_scenario_file(path) == load_scenario(MENU_DOC)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario_file(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("text: \xe9t\xe9".encode("latin-1"))
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario_file(bad)


def test_unquoted_digit_keys_in_yaml_are_keys() -> None:
    text = (
        "version: 1\nstart: m\nnodes:\n  m: {type: menu, keys: {1: a, 0: a}}\n  a: {type: hangup}\n"
    )
    menu = load_scenario(text).nodes["m"]
    assert isinstance(menu, MenuNode) and menu.keys == {"1": "a", "0": "a"}


def test_defaults() -> None:
    sc = load_scenario(doc({"m": {"type": "menu", "keys": {"#": "r"}}, "r": {"type": "record"}}))
    menu, rec = sc.nodes["m"], sc.nodes["r"]
    assert isinstance(menu, MenuNode)
    assert (menu.timeout, menu.retries, menu.on_timeout, menu.max_visits) == (5, 2, None, None)
    assert rec.model_dump(exclude={"type"}) == {
        "audio": None,
        "text": None,
        "voice": None,
        "max_visits": None,
        "max_seconds": 60.0,
        "silence_seconds": 3.0,
        "beep": True,
        "retention_days": 30,
        "next": None,
    }


def test_special_audio_names_are_not_looked_up() -> None:
    looked_up: list[str] = []

    def exists(name: str) -> bool:
        looked_up.append(name)
        return True

    load_scenario(MENU_DOC, audio_exists=exists)
    assert looked_up == ["msg"]


def test_runtime_merge_field_is_always_allowed() -> None:
    text = doc({"a": {"type": "play", "text": "Press {optout_key}, {first_name}."}})
    load_scenario(text, fields={"first_name"})


def test_confirm_text_is_a_default_the_document_can_override() -> None:
    sc = load_scenario(doc({"a": PLAY}), confirm_text="Done.")
    assert sc.confirm == Prompt(text="Done.")
    sc = load_scenario(doc({"a": PLAY}, confirm={"audio": "bye"}), confirm_text="Done.")
    assert sc.confirm == Prompt(audio="bye")
    assert load_scenario(doc({"a": PLAY})).confirm is None


def test_scenario_is_immutable() -> None:
    sc = load_scenario(MENU_DOC)
    with pytest.raises(ValueError, match="frozen"):
        sc.start = "bye"  # type: ignore[misc]


# --- graph checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "top", "expected"),
    [
        ({"a": PLAY}, {"start": "x"}, "document: start goes to unknown node 'x'"),
        ({"a": PLAY}, {"on_machine": "x"}, "document: on_machine goes to unknown node 'x'"),
        ({"a": {**PLAY, "next": "x"}}, {}, "node 'a': next goes to unknown node 'x'"),
        (
            {"a": {"type": "menu", "keys": {"3": "foo"}}},
            {},
            "node 'a': key '3' goes to unknown node 'foo'",
        ),
        (
            {"a": {"type": "menu", "keys": {"1": "a"}, "on_timeout": "x", "max_visits": 2}},
            {},
            "node 'a': on_timeout goes to unknown node 'x'",
        ),
        (
            {"a": {"type": "menu", "keys": {"1": "a"}, "on_invalid": "x", "max_visits": 2}},
            {},
            "node 'a': on_invalid goes to unknown node 'x'",
        ),
        (
            {"a": {"type": "transfer", "to": {"queue": "sales"}, "on_failure": "x"}},
            {},
            "node 'a': on_failure goes to unknown node 'x'",
        ),
        ({"a": {"type": "goto", "target": "x"}}, {}, "node 'a': target goes to unknown node 'x'"),
        ({"a": {"type": "set_result", "result": "ok", "next": "x"}}, {}, "next goes to unknown"),
        ({"a": {"type": "record", "next": "x"}}, {}, "node 'a': next goes to unknown node 'x'"),
        ({"a": {"type": "opt_out", "next": "x"}}, {}, "node 'a': next goes to unknown node 'x'"),
    ],
)
def test_unknown_node_references(nodes: dict[str, Any], top: dict[str, Any], expected: str) -> None:
    assert any(expected in line for line in problems(doc(nodes, **top)))


def test_unreachable_nodes() -> None:
    text = doc({"a": PLAY, "b": PLAY, "c": {"type": "hangup"}})
    assert problems(text) == [
        "node 'b': is not reachable from start",
        "node 'c': is not reachable from start",
    ]
    text = doc({"a": PLAY, "b": PLAY, "c": {"type": "hangup"}}, on_machine="b")
    assert problems(text) == ["node 'c': is not reachable from start or on_machine"]


def test_cycle_without_max_visits_is_named() -> None:
    menu: dict[str, Any] = {"type": "menu", "keys": {"1": "intro", "2": "bye"}}
    nodes = {"intro": {**PLAY, "next": "menu"}, "menu": menu, "bye": {"type": "hangup"}}
    assert problems(doc(nodes)) == ["node 'intro': cycle intro → menu → intro has no max_visits"]
    menu["max_visits"] = 3
    load_scenario(doc(nodes))


def test_self_loop_and_goto_loop() -> None:
    assert problems(doc({"a": {"type": "goto", "target": "a"}})) == [
        "node 'a': cycle a → a has no max_visits"
    ]
    load_scenario(doc({"a": {"type": "goto", "target": "a", "max_visits": 2}}))


def test_each_unbounded_loop_is_reported_once_and_bounded_ones_pass() -> None:
    nodes = {
        "a": {"type": "menu", "keys": {"1": "b", "2": "d", "3": "f"}, "max_visits": 2},
        "b": {**PLAY, "next": "c"},
        "c": {**PLAY, "next": "b"},  # b <-> c: unbounded
        "d": {**PLAY, "next": "e"},
        "e": {**PLAY, "next": "a"},  # a -> d -> e -> a: bounded by a
        "f": {**PLAY, "next": "f"},  # unbounded self loop
    }
    assert problems(doc(nodes)) == [
        "node 'b': cycle b → c → b has no max_visits",
        "node 'f': cycle f → f has no max_visits",
    ]


def test_falling_off_the_end_is_fine() -> None:
    load_scenario(doc({"a": PLAY}))


def test_graph_checks_also_run_on_direct_construction() -> None:
    with pytest.raises(ScenarioError, match="start goes to unknown node 'x'"):
        Scenario.model_validate({"version": 1, "start": "x", "nodes": {"a": PLAY}})


# --- audio, merge fields, opt-out key -------------------------------------------------------


def test_missing_audio() -> None:
    text = doc({"intro": {"type": "play", "audio": "msg"}}, confirm={"audio": "bye"})
    assert problems(text, audio_exists=lambda name: False) == [
        "document: confirm.audio 'bye' is not in the audio library",
        "node 'intro': audio 'msg' is not in the audio library",
    ]
    load_scenario(text, audio_exists=lambda name: True)


def test_unknown_merge_fields() -> None:
    text = doc({"a": {"type": "play", "text": "Hello {first_name} from {compagny}"}})
    lines = problems(text, fields={"first_name", "company"})
    assert len(lines) == 1
    assert lines[0].startswith("node 'a': text uses merge field {compagny}")
    load_scenario(text)  # fields unknown: not checked


def test_confirm_text_merge_fields_are_checked() -> None:
    lines = problems(doc({"a": PLAY}), fields=set(), confirm_text="Bye {name}")
    assert lines[0].startswith("document: confirm.text uses merge field {name}")


def test_menu_key_equal_to_optout_key_must_lead_to_opt_out() -> None:
    nodes = {
        "m": {"type": "menu", "keys": {"9": "bye", "1": "stop"}},
        "stop": {"type": "opt_out"},
        "bye": {"type": "hangup"},
    }
    assert problems(doc(nodes), optout_key="9") == [
        "node 'm': key '9' is the campaign's opt-out key: it must lead to an opt_out node, "
        "not 'bye'"
    ]
    load_scenario(doc(nodes), optout_key="1")
    load_scenario(doc(nodes))


# --- node shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"type": "play"}, "node 'a': needs a prompt: give audio (a library name) or text"),
        ({"type": "play", "audio": "x", "text": "y"}, "node 'a': give audio or text, not both"),
        (
            {"type": "menu", "keys": {"1": "a"}, "audio": "x", "text": "y"},
            "give audio or text, not both",
        ),
        ({"type": "play", "audio": "x", "voice": "fr"}, "voice applies to text only"),
        ({"type": "play", "text": "  "}, "node 'a': text: text is empty"),
        ({"type": "play", "text": "Hi {first name}"}, "merge field {first name} is not allowed"),
        ({"type": "play", "text": "Hi {x!r}"}, "merge field {x!r} is not allowed"),
        ({"type": "play", "text": "Hi {user.__class__}"}, "is not allowed"),
        ({"type": "play", "text": "Hi {x"}, "stray brace"),
        ({"type": "play", "text": "Hi [pause 11s]"}, "longer than 10000 ms"),
        ({"type": "play", "text": "Hi [pause soon]"}, "malformed pause"),
        ({"type": "play", "text": "Press [1] now"}, "unknown markup [1]"),  # TTS refuses it
        ({"type": "play", "text": "Press 1] now"}, "stray ']'"),
        ({"type": "play", "audio": "../etc/passwd"}, "is not an audio library name"),
        ({"type": "play", "text": "x", "voice": "fr;rm"}, "is not a voice name"),
        ({"type": "transfer", "to": {}}, "to: give exactly one of extension, queue or number"),
        (
            {"type": "transfer", "to": {"queue": "q", "number": "+33199000100"}},
            "give exactly one of extension, queue or number (got queue, number)",
        ),
        ({"type": "transfer", "to": {"number": "0199000100"}}, "'0199000100' is not E.164"),
        ({"type": "transfer", "to": {"extension": "agent"}}, "must be exten@context"),
        ({"type": "transfer", "to": {"extension": "a,b@ctx"}}, "must be exten@context"),
        ({"type": "transfer", "to": {"extension": "a@c&d"}}, "must be exten@context"),
        ({"type": "transfer", "to": {"queue": "sales q"}}, "queue 'sales q' may hold only"),
        # the PBX's own pattern (pbx.validation): a longer name would fail at call time
        ({"type": "transfer", "to": {"extension": "a" * 41 + "@c"}}, "must be exten@context"),
        ({"type": "transfer", "to": {"queue": "q" * 41}}, "may hold only"),
        ({"type": "transfer", "to": {"queue": "q"}, "caller_id": "boss"}, "caller_id"),
        ({"type": "menu", "keys": {"A": "a"}}, "node 'a': keys.A: 'A' is not a key"),
        ({"type": "menu", "keys": {}}, "node 'a': keys: Dictionary should have at least 1"),
        ({"type": "menu", "keys": {"1": "Bad"}}, "'Bad' is not a valid node id"),
        ({"type": "set_result", "result": "Very Interested"}, "is not a valid result"),
        ({"type": "goto"}, "node 'a': target is required"),
        ({"type": "hangup", "next": "a"}, "node 'a': unknown field 'next'"),
        ({"type": "dance"}, "node 'a': type 'dance' is unknown: use one of play, menu"),
        ({"next": "a"}, "node 'a': type is missing"),
        ("hello", "node 'a': a node must be a mapping with a type: one of play, menu"),
        ({"type": "play", "text": "x", "next": False}, "(YAML reads unquoted yes/no/on/off"),
        ({"type": "transfer", "to": "sales"}, "node 'a': to: Input should be a valid dict"),
    ],
)
def test_node_shape_errors(node: dict[str, Any] | str, expected: str) -> None:
    lines = problems(doc({"a": node}))
    assert any(expected in line for line in lines), lines


@pytest.mark.parametrize(
    ("node", "field", "bad", "good"),
    [
        ({"type": "menu", "keys": {"1": "a"}, "max_visits": 2}, "timeout", [0.5, 61], [1, 60]),
        ({"type": "menu", "keys": {"1": "a"}, "max_visits": 2}, "retries", [-1, 6], [0, 5]),
        ({"type": "record"}, "max_seconds", [0, 301], [1, 300]),
        ({"type": "record"}, "silence_seconds", [-1, 61], [0, 60]),
        ({"type": "record"}, "retention_days", [0, 3651], [1, 3650]),
        ({"type": "transfer", "to": {"queue": "q"}}, "timeout", [4, 121], [5, 120]),
        ({"type": "hangup"}, "max_visits", [0, 101], [1, 100]),
    ],
)
def test_bounds(node: dict[str, Any], field: str, bad: list[float], good: list[float]) -> None:
    for value in bad:
        lines = problems(doc({"a": {**node, field: value}}))
        assert len(lines) == 1 and lines[0].startswith(f"node 'a': {field}: "), lines
        assert f"(got {value!r})" in lines[0]
    for value in good:
        load_scenario(doc({"a": {**node, field: value}}))


def test_valid_targets() -> None:
    for to in (
        {"extension": "agent@sim-agent"},
        {"extension": "*100#@from_internal"},
        {"queue": "sales-2"},
        {"number": "+442079460123"},
    ):
        load_scenario(doc({"a": {"type": "transfer", "to": to}}))


def test_bad_node_id_and_document_fields() -> None:
    text = doc({"a": PLAY}, extra=1).replace("  a:", "  Bad-Id:", 1).replace("start: a", "start: A")
    lines = problems(text)
    assert "document: start: 'A' is not a valid node id" in lines[0]
    assert lines[1].startswith("node 'Bad-Id': 'Bad-Id' is not a valid node id")
    assert lines[2] == "document: unknown field 'extra'"


def test_version_is_required_and_must_be_1() -> None:
    assert problems("start: a\nnodes: {a: {type: hangup}}\n") == ["document: version is required"]
    assert problems(doc({"a": PLAY}).replace("version: 1", "version: 2"))[0].startswith(
        "document: version: "
    )


def test_all_problems_are_listed_one_per_line() -> None:
    nodes = {
        "a": {**PLAY, "next": "x"},
        "m": {"type": "menu", "keys": {"3": "foo"}},
    }
    err_lines = problems(doc(nodes))
    assert err_lines == [
        "node 'a': next goes to unknown node 'x'",
        "node 'm': key '3' goes to unknown node 'foo'",
        "node 'm': is not reachable from start",
    ]
    with pytest.raises(ScenarioError) as info:
        load_scenario(doc(nodes))
    assert info.value.problems[1] == Problem("m", "keys.3", "key '3' goes to unknown node 'foo'")


# --- syntax ---------------------------------------------------------------------------------


def test_yaml_syntax_error_gives_line_and_column() -> None:
    text = 'version: 1\nstart: a\nnodes:\n  a: {type: play, text: "hi}\n'
    (line,) = problems(text)
    assert line.startswith("document: YAML error at line 5, column 1:")
    (line,) = problems("version: 1\nstart: a\n nodes: x\n")
    assert line.startswith("document: YAML error at line 3, column 7:")


def test_yaml_duplicate_node_ids_are_refused() -> None:
    text = "version: 1\nstart: a\nnodes:\n  a: {type: hangup}\n  a: {type: hangup}\n"
    assert problems(text) == ["document: YAML error at line 5, column 3: duplicate key 'a'"]


def test_yaml_aliases_are_refused() -> None:
    text = "version: 1\nstart: a\nnodes:\n  a: &n {type: hangup}\n  b: *n\n"
    assert problems(text) == [
        "document: YAML error at line 5, column 6: aliases (*name) are not allowed"
    ]


def test_yaml_tags_are_refused() -> None:
    (line,) = problems("!!python/object/apply:os.system ['true']\n")
    assert "YAML error" in line


def test_json_errors() -> None:
    assert problems('{"version": 1,\n "start": }') == [
        "document: JSON error at line 2, column 11: Expecting value"
    ]
    assert problems('{"a": 1, "a": 2}') == ["document: JSON error: duplicate key 'a'"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "document: the document is empty"),
        ("# nothing\n", "document: the document is empty"),
        ("- a\n- b\n", "document: the document must be a mapping with version, start and nodes"),
        ("just text", "document: the document must be a mapping with version, start and nodes"),
    ],
)
def test_not_a_document(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_too_large() -> None:
    (line,) = problems("#" * 1_000_001)
    assert "larger than" in line


TOO_DEEP = "the document is nested too deeply (more than 32 levels)"


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000,  # flow sequences (RecursionError in PyYAML before)
        "a: " + "{b: " * 3000 + "}" * 3000,  # flow mappings
        "- " * 5000 + "x",  # block sequences
        "".join(" " * i + f"k{i}:\n" for i in range(40)),  # block mappings, by indentation
        "a: " + "[" * 33 + "]" * 33,  # just over the limit
        '{"a": ' + "[" * 5000 + "]" * 5000 + "}",  # JSON: RecursionError in json.loads before
        '{"a": ' + "[" * 40 + "]" * 40 + "}",  # JSON: over the limit, under the recursion one
        "[" * 300_000 + "]" * 300_000,  # near the size limit: refused at once
    ],
)
def test_too_deeply_nested(text: str) -> None:
    (line,) = problems(text)
    assert line.startswith("document: ") and line.endswith(TOO_DEEP)


def test_nesting_up_to_the_limit_is_only_a_schema_matter() -> None:
    lines = problems("a: " + "[" * 31 + "]" * 31)  # 32 levels with the top mapping
    assert not any(TOO_DEEP in line for line in lines)
    assert "document: unknown field 'a'" in lines


def test_too_deeply_nested_file(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000, encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"nested too deeply \(more than 32 levels\)"):
        load_scenario_file(deep)


def test_read_scenario_file_bounds_and_decodes(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * 1_000_001)
    with pytest.raises(ScenarioError, match="larger than 1000000 bytes"):
        read_scenario_file(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("text: é".encode("latin-1"))
    with pytest.raises(ScenarioError, match="is not UTF-8 text"):
        read_scenario_file(latin)
    with pytest.raises(ScenarioError, match="cannot read"):
        read_scenario_file(tmp_path / "missing.yaml")
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfversion: 1\n")
    assert read_scenario_file(bom) == "version: 1\n"


# --- text fields and the default scenario ---------------------------------------------------


def test_text_fields() -> None:
    assert text_fields("Hi {first_name}, {{not a field}} [pause 2s] {company} {first_name}") == [
        "first_name",
        "company",
        "first_name",
    ]
    with pytest.raises(ValueError, match="stray brace"):
        text_fields("}")


def test_default_scenario_with_optout_key() -> None:
    sc = default_scenario(
        "9", announce_text="To stop these calls, press {optout_key}.", confirm_text="Done."
    )
    assert sc.start == "message" and sc.on_machine is None
    message, announce = sc.nodes["message"], sc.nodes["announce"]
    assert isinstance(message, PlayNode) and message.audio == MESSAGE_AUDIO
    assert isinstance(announce, PlayNode) and announce.text == "To stop these calls, press 9."
    assert [n.type for n in sc.nodes.values()] == ["play", "play", "hangup"]
    assert sc.confirm == Prompt(text="Done.")


def test_default_scenario_without_optout_key_is_just_the_message() -> None:
    sc = default_scenario(None, announce_text="unused", confirm_text="Done.")
    assert list(sc.nodes) == ["message", "end"]


def test_default_scenario_refuses_bad_input() -> None:
    with pytest.raises(ScenarioError, match="'x' is not a key"):
        default_scenario("x", announce_text="Press {optout_key}.", confirm_text="Done.")
    with pytest.raises(ScenarioError, match="node 'announce': text: text is empty"):
        default_scenario("9", announce_text="", confirm_text="Done.")
