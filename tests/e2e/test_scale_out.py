"""Scale-out end to end: two controllers (two ``voicecast serve`` processes) and two sandbox
Asterisk processes (two PBX nodes) on one PostgreSQL database.

A 200-contact campaign must complete with every contact called exactly once, counted from
Asterisk's side (each node's simulated network writes one ``calls.log`` line per call it
receives), both nodes and both controllers used, every attempt accounted for, and the proof
journal's chain intact although both controllers appended to it at once.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from voicecast.config import load_settings
from voicecast.sandbox import Sandbox, SandboxView
from voicecast.storage.db import make_engine, session_factory
from voicecast.storage.models import CallAttempt, Campaign, CampaignContact

from . import faults_harness as h
from .conftest import SANDBOX_DIR, Workspace, free_port

pytestmark = pytest.mark.e2e

# last digit -> what the simulated network does (SIM-PSTN): a person, busy, congestion,
# a number that does not exist
MIX = {"0": "human", "3": "busy", "5": "congestion", "6": "invalid_number"}
CONTACTS = 200
SIM_TRUNK = "Local/{number}@sim-pstn"


def _node(name: str, port: int, secret_file: Path) -> str:
    return (
        "[[pbx.nodes]]\n"
        f'name = "{name}"\nami_port = {port}\nami_secret_file = "{secret_file}"\n'
        "max_channels = 15\n"
        f'trunks = [{{ name = "sim", dial_string = "{SIM_TRUNK}", cps = 8.0 }}]\n'
    )


def _config(tmp: Path, pg_url: str, agi_port: int, nodes: str, view: SandboxView) -> Path:
    """One controller's config: the shared database, keys and audio store, its own FastAGI
    port, both nodes; the sandbox itself is off (the nodes are listed instead)."""
    path = tmp / f"controller-{agi_port}.toml"
    path.write_text(
        f'[database]\nurl = "{pg_url}"\n'
        f'[sandbox]\nenabled = false\ndir = "{SANDBOX_DIR}"\n'
        f"[fastagi]\nport = {agi_port}\n"
        f'[audio]\nstore_dir = "{tmp}/audio"\n'
        f'[compliance]\nhash_key_file = "{tmp}/keys/hash.key"\n'
        f'[journal]\nsigning_key_file = "{tmp}/keys/journal.key"\n'
        "[web]\nenabled = false\n"
        f'[pbx]\nsounds_dir = "{view.sounds_dir}"\n'
        f'sounds_dir_on_pbx = "{view.sounds_dir_on_pbx}"\n'
        f'replies_dir = "{view.replies_dir}"\n'
        f'replies_dir_on_pbx = "{view.replies_dir_on_pbx}"\n' + nodes
    )
    path.chmod(0o600)
    return path


def _secret_file(tmp: Path, name: str, secret: str) -> Path:
    path = tmp / "keys" / f"ami-{name}.secret"
    path.parent.mkdir(exist_ok=True)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


@dataclass
class Nodes:
    """The two PBX nodes: the session's sandbox Asterisk (a) and a second one (b)."""

    toml: str  # their [[pbx.nodes]] tables
    b: Sandbox
    view_b: SandboxView


@pytest.fixture
def nodes(tmp_path: Path, sandbox: SandboxView) -> Iterator[Nodes]:
    """Node b up beside the session's sandbox (node a), on an AMI port of its own."""
    base = tmp_path / "sandbox.toml"
    base.write_text(f'[sandbox]\nenabled = true\ndir = "{SANDBOX_DIR}"\n')
    base.chmod(0o600)
    node_b = Sandbox(load_settings(base, environ={}), instance="b", ami_port=free_port())
    node_b.up()
    try:
        view_b = node_b.view()
        toml = _node("a", sandbox.ami_port, _secret_file(tmp_path, "a", sandbox.secret))
        toml += _node("b", view_b.ami_port, _secret_file(tmp_path, "b", view_b.secret))
        yield Nodes(toml, node_b, view_b)
    finally:
        node_b.down()


def test_two_controllers_and_two_asterisk_nodes_share_a_campaign_on_postgresql(
    tmp_path: Path, sandbox: SandboxView, nodes: Nodes, pg_url: str, short_message: Path
) -> None:
    view_b = nodes.view_b
    configs = [_config(tmp_path, pg_url, free_port(), nodes.toml, sandbox) for _ in range(2)]
    settings = load_settings(configs[0], environ={})
    engine = make_engine(settings.database_url())
    sessions = session_factory(engine)
    ws = Workspace(tmp_path, configs[0], settings, sessions, sandbox)
    digits = [list(MIX)[i % len(MIX)] for i in range(CONTACTS)]
    numbers = h.numbers_ending(digits)
    # the campaign is created, the two controllers start as services would, then it starts
    h.prepare_campaign(
        ws, "spread", numbers, short_message, max_channels=24, cps=16, ring_timeout=15
    )
    logs = {"a": h.CallLog(sandbox.calls_log), "b": h.CallLog(view_b.calls_log)}
    serves = [ws.popen("serve", env={"VOICECAST_CONFIG": str(cfg)}) for cfg in configs]
    try:
        ws.vc("campaign", "start", "spread")
        h.wait_until(
            "the campaign to complete",
            lambda: h.campaign_status(sessions, "spread") != "running",
            240,
            serves[0],
        )
    finally:
        for proc in serves:
            proc.send_signal(signal.SIGTERM)
        outputs = [h.finish(proc, 90) for proc in serves]
    assert [p.returncode for p in serves] == [0, 0], outputs
    assert h.campaign_status(sessions, "spread") == "completed", outputs

    calls = {name: log.calls() for name, log in logs.items()}
    every = calls["a"] + calls["b"]
    figures = h.audit(sessions, every, h.Figures("scale-out"))
    assert figures.clean, figures.problems
    # every contact called exactly once, as Asterisk counts it
    assert sorted(c.number for c in every) == sorted(numbers)
    assert calls["a"] and calls["b"], "both nodes carry calls"
    with sessions() as s:
        attempts = list(s.scalars(select(CallAttempt)))
        left = s.scalars(select(CampaignContact).where(CampaignContact.state != "done")).all()
        status = s.scalar(select(Campaign.status))
    assert status == "completed" and not left
    assert len(attempts) == CONTACTS
    # each attempt's node is the one whose Asterisk received it
    node_of = {c.attempt_id: name for name, cs in calls.items() for c in cs}
    assert {a.id: a.pbx_node for a in attempts} == node_of
    assert len({a.controller for a in attempts}) == 2, "both controllers dialled"
    # outcomes as the simulated network's plan says
    expected = Counter(MIX[n[-1]] for n in numbers)
    assert Counter(a.outcome for a in attempts) == expected
    # both controllers appended to one hash chain at once: it still verifies
    ws.vc("journal", "verify")
    engine.dispose()


def test_a_node_that_goes_down_is_no_longer_used(
    tmp_path: Path, sandbox: SandboxView, nodes: Nodes, pg_url: str, short_message: Path
) -> None:
    """Node b stops in the middle of a campaign: its calls in flight end (never re-sent),
    dialling goes on over node a, and the campaign completes."""
    node_b, view_b = nodes.b, nodes.view_b
    cfg = _config(tmp_path, pg_url, free_port(), nodes.toml, sandbox)
    settings = load_settings(cfg, environ={})
    engine = make_engine(settings.database_url())
    sessions = session_factory(engine)
    ws = Workspace(tmp_path, cfg, settings, sessions, sandbox)
    numbers = h.numbers_ending(["3", "5"] * 30)  # busy and congestion: short calls
    h.prepare_campaign(ws, "halves", numbers, short_message, max_channels=6, cps=4)
    logs = {"a": h.CallLog(sandbox.calls_log), "b": h.CallLog(view_b.calls_log)}
    serve = ws.popen("serve")
    try:
        ws.vc("campaign", "start", "halves")
        h.wait_until("node b to carry calls", lambda: len(logs["b"].calls()) >= 5, 60, serve)
        node_b.down()
        stopped_at = len(logs["b"].calls())
        h.wait_until(
            "the campaign to complete",
            lambda: h.campaign_status(sessions, "halves") != "running",
            120,
            serve,
        )
    finally:
        serve.send_signal(signal.SIGTERM)
        out = h.finish(serve, 60)
    assert serve.returncode == 0, out
    assert h.campaign_status(sessions, "halves") == "completed", out
    calls = logs["a"].calls() + logs["b"].calls()
    figures = h.audit(sessions, calls, h.Figures("node down"))
    assert figures.clean, figures.problems
    assert len(logs["b"].calls()) == stopped_at  # nothing more went to node b
    assert len(logs["a"].calls()) >= len(numbers) - stopped_at
    assert "node b" in out
    engine.dispose()
