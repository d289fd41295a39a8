"""Interactive scenarios ("scénario vocal"): the document, its validation and its runner.

:mod:`voicecast.scenarios.model` parses and validates a YAML/JSON scenario document;
:mod:`voicecast.scenarios.runner` runs a validated scenario on an answered call, through
small protocols the PBX adapter and the dialer implement (no Asterisk needed to test it).
"""

from voicecast.scenarios.model import (
    CONFIRM_NODE,
    MAX_STEPS,
    MESSAGE_AUDIO,
    NODE_TYPES,
    RUNTIME_FIELDS,
    SPECIAL_AUDIO,
    VOICEMAIL_AUDIO,
    GotoNode,
    HangupNode,
    MenuNode,
    Node,
    OptOutNode,
    PlayNode,
    Problem,
    Prompt,
    RecordNode,
    Scenario,
    ScenarioError,
    SetResultNode,
    TransferNode,
    TransferTarget,
    default_scenario,
    load_scenario,
    load_scenario_file,
    optout_key_problems,
    text_fields,
)
from voicecast.scenarios.runner import ScenarioContext, ScenarioReport, run_scenario

__all__ = [
    "CONFIRM_NODE",
    "MAX_STEPS",
    "MESSAGE_AUDIO",
    "NODE_TYPES",
    "RUNTIME_FIELDS",
    "SPECIAL_AUDIO",
    "VOICEMAIL_AUDIO",
    "GotoNode",
    "HangupNode",
    "MenuNode",
    "Node",
    "OptOutNode",
    "PlayNode",
    "Problem",
    "Prompt",
    "RecordNode",
    "Scenario",
    "ScenarioContext",
    "ScenarioError",
    "ScenarioReport",
    "SetResultNode",
    "TransferNode",
    "TransferTarget",
    "default_scenario",
    "load_scenario",
    "load_scenario_file",
    "optout_key_problems",
    "run_scenario",
    "text_fields",
]
