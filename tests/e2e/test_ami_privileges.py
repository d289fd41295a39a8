"""End-to-end: the controller's AMI account has the least privileges it needs.

Against the sandbox Asterisk 22, which runs the production ``asterisk-conf/manager.conf``
(its ``[voicecast]`` user: ``read = call``, ``write = originate,call,reporting``):

- logged in as ``voicecast`` with the controller's own client, the three actions the
  controller sends (Originate, CoreShowChannels, Hangup) succeed on a real call;
- the actions that would let a stolen AMI secret run shell or CLI commands, read or
  rewrite Asterisk's configuration, load modules or reload are refused, each with the
  answer Asterisk really gives ("Permission denied", or for Originate of a shell-capable
  application "Originate Access Forbidden", since Originate with an Application needs the
  ``system`` class when the application or its data can reach a shell), and no shell
  command ran;
- each write class is needed: the sandbox-only users of
  ``asterisk-conf/sandbox/manager_sandbox.conf`` (the production user minus one class) are
  refused the action that class allows.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from voicecast.ami.client import AmiClient, AmiResponse
from voicecast.ami.protocol import AmiMessage
from voicecast.config import load_settings
from voicecast.sandbox import Sandbox, SandboxView

from .conftest import _config_text

T = TypeVar("T")
NO_ANSWER = "+33199000014"  # the simulated network's digit 4: rings, never answers
DENIED = "Permission denied"


@pytest.fixture(scope="module")
def sandbox_pbx(sandbox: SandboxView, tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    """The running sandbox as a :class:`Sandbox` (for its CLI), same folder as ``sandbox``."""
    tmp = tmp_path_factory.mktemp("ami-privileges")
    cfg = tmp / "voicecast.toml"
    cfg.write_text(_config_text(tmp))
    cfg.chmod(0o600)
    sb = Sandbox(load_settings(cfg, environ={}))
    assert sb.running_pid() is not None
    return sb


def run(sandbox: SandboxView, user: str, work: Callable[[AmiClient], Awaitable[T]]) -> T:
    """Log in as ``user`` with the controller's AMI client, run ``work``, log off."""

    async def main() -> T:
        client = AmiClient("127.0.0.1", sandbox.ami_port, user, sandbox.secret)
        await client.connect()
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(main())


def refusal(resp: AmiResponse) -> str:
    assert not resp.success, resp.message
    return resp.message.get("Message") or ""


# --- what the controller needs works ---------------------------------------------------------


def test_originate_coreshowchannels_and_hangup_work_as_voicecast(sandbox: SandboxView) -> None:
    attempt = uuid.uuid4().hex  # the controller's attempt ids: 32 hex digits

    async def work(client: AmiClient) -> tuple[list[str], list[AmiMessage]]:
        hangups: list[AmiMessage] = []
        ended = asyncio.Event()

        def on_hangup(msg: AmiMessage) -> None:
            if msg.get("Uniqueid") == attempt:
                hangups.append(msg)
                ended.set()

        client.on("Hangup", on_hangup)
        pong = await client.send_action("Ping")  # the keepalive needs no class
        assert pong.success and pong.message.get("Ping") == "Pong", pong.message
        # the controller's Originate (voicecast/pbx/asterisk.py), to a number that rings
        resp = await client.send_action(
            "Originate",
            {
                "Channel": f"Local/{NO_ANSWER}@sim-pstn",
                "Context": "voicecast-outbound",
                "Exten": "s",
                "Priority": "1",
                "CallerID": '"Test" <+33162000000>',
                "Timeout": "30000",
                "Async": "true",
                "ChannelId": attempt,
                "OtherChannelId": attempt + "-b",
                "Variable": [f"VC_ATTEMPT={attempt}"],
            },
            action_id=attempt,
        )
        assert resp.success, resp.message
        channels: list[str] = []
        deadline = time.monotonic() + 15
        while not channels and time.monotonic() < deadline:
            listing = await client.send_action("CoreShowChannels", collect_list=True)
            assert listing.success, listing.message
            channels = [
                ev.get("Channel") or ""
                for ev in listing.events
                if ev.event == "CoreShowChannel" and ev.get("Uniqueid") == attempt
            ]
            await asyncio.sleep(0.2)
        assert channels, "the originated call never showed in CoreShowChannels"
        hung = await client.send_action("Hangup", {"Channel": channels[0], "Cause": "16"})
        assert hung.success, hung.message
        await asyncio.wait_for(ended.wait(), 15)  # a `call` event: read = call suffices
        return channels, hangups

    channels, hangups = run(sandbox, "voicecast", work)
    assert channels[0].startswith(f"Local/{NO_ANSWER}@sim-pstn-")
    assert hangups[0].get("Cause") == "16"


# --- what a stolen secret would want is refused ----------------------------------------------


def marker_paths(sandbox_pbx: Sandbox, name: str) -> list[Path]:
    """Where a shell command run by Asterisk would create /tmp/NAME (host and chroot)."""
    return [Path("/tmp") / name, sandbox_pbx.rootfs / "tmp" / name]


@pytest.fixture
def marker(sandbox_pbx: Sandbox) -> Iterator[str]:
    name = f"voicecast-ami-pwned-{uuid.uuid4().hex[:8]}"
    yield name
    for path in marker_paths(sandbox_pbx, name):
        path.unlink(missing_ok=True)


def refused_actions(marker: str) -> list[tuple[str, dict[str, str], str]]:
    shell = f"touch /tmp/{marker}"
    call = {"Channel": f"Local/{NO_ANSWER}@sim-pstn", "Async": "true", "Timeout": "5000"}
    forbidden = "Originate Access Forbidden"
    return [
        # the CLI, and through it everything (`core stop now`, `!sh`...)
        ("Command", {"Command": "core show version"}, DENIED),
        # shell through Originate: System, Exec(System()), MixMonitor's post-command,
        # a harmless application with SHELL() in its data
        ("Originate", {**call, "Application": "System", "Data": shell}, forbidden),
        ("Originate", {**call, "Application": "Exec", "Data": f"System({shell})"}, forbidden),
        ("Originate", {**call, "Application": "MixMonitor", "Data": f"x.wav,,{shell}"}, forbidden),
        ("Originate", {**call, "Application": "NoOp", "Data": f"${{SHELL({shell})}}"}, forbidden),
        # shell through functions
        ("Getvar", {"Variable": f"SHELL({shell})"}, "GetVar Access Forbidden"),
        ("Status", {"Variables": f"SHELL({shell})"}, "Status Access Forbidden"),
        # configuration: read (the secrets of other users), write, reload, modules
        ("GetConfig", {"Filename": "manager.conf"}, DENIED),
        ("GetConfigJSON", {"Filename": "pjsip.conf"}, DENIED),
        (
            "UpdateConfig",
            {
                "SrcFilename": "manager.conf",
                "DstFilename": "manager.conf",
                "Action-000000": "Append",
                "Cat-000000": "voicecast",
                "Var-000000": "write",
                "Value-000000": "all",
            },
            DENIED,
        ),
        ("CreateConfig", {"Filename": "evil.conf"}, DENIED),
        ("Reload", {}, DENIED),
        ("ModuleLoad", {"Module": "app_system.so", "LoadType": "load"}, DENIED),
        (
            "DialplanExtensionAdd",
            {
                "Context": "voicecast-outbound",
                "Extension": "evil",
                "Priority": "1",
                "Application": "System",
                "ApplicationData": shell,
            },
            DENIED,
        ),
        ("DBPut", {"Family": "voicecast", "Key": "k", "Val": "v"}, DENIED),
        # trunk credentials and endpoints, forged events, event filters of the session
        ("PJSIPShowEndpoints", {}, DENIED),
        ("PJSIPShowAuths", {}, DENIED),
        ("UserEvent", {"UserEvent": "forged"}, DENIED),
        ("Filter", {"Operation": "Add", "Filter": "Event: Newchannel"}, DENIED),
    ]


def test_dangerous_actions_are_refused_as_voicecast(
    sandbox: SandboxView, sandbox_pbx: Sandbox, marker: str
) -> None:
    cases = refused_actions(marker)

    async def work(client: AmiClient) -> list[str]:
        return [refusal(await client.send_action(a, h)) for a, h, _ in cases]

    answers = run(sandbox, "voicecast", work)
    for (action, _, expected), answer in zip(cases, answers, strict=True):
        assert answer.startswith(expected), (action, answer)
    time.sleep(1.0)  # an Async originate that slipped through would run by now
    for path in marker_paths(sandbox_pbx, marker):
        assert not path.exists(), f"a shell command ran: {path}"


def test_variables_of_an_originate_are_not_evaluated(
    sandbox: SandboxView, sandbox_pbx: Sandbox, marker: str
) -> None:
    """Originate's Variable headers are set as text: SHELL() in one never runs."""
    attempt = uuid.uuid4().hex

    async def work(client: AmiClient) -> None:
        resp = await client.send_action(
            "Originate",
            {
                "Channel": f"Local/{NO_ANSWER}@sim-pstn",
                "Context": "voicecast-outbound",
                "Exten": "s",
                "Priority": "1",
                "Timeout": "3000",
                "Async": "true",
                "ChannelId": attempt,
                "OtherChannelId": attempt + "-b",
                "Variable": [f"VC_NOTE=${{SHELL(touch /tmp/{marker})}}"],
            },
        )
        assert resp.success, resp.message
        await asyncio.sleep(4.0)  # rang out (Timeout 3 s): the channel lived and ended

    run(sandbox, "voicecast", work)
    for path in marker_paths(sandbox_pbx, marker):
        assert not path.exists(), f"a shell command ran: {path}"


def test_what_reporting_also_allows(sandbox: SandboxView) -> None:
    """The price of CoreShowChannels (``reporting``): read-only listings stay open, such as
    the dialplan (ShowDialPlan) and Asterisk's internal database (DBGet: "not found" is an
    answer, not a refusal). Documented in SECURITY.md; fails if Asterisk changes it."""

    async def work(client: AmiClient) -> tuple[AmiResponse, AmiResponse]:
        plan = await client.send_action(
            "ShowDialPlan", {"Context": "voicecast-outbound"}, collect_list=True
        )
        db = await client.send_action("DBGet", {"Family": "voicecast-test", "Key": "none"})
        return plan, db

    plan, db = run(sandbox, "voicecast", work)
    assert plan.success, plan.message
    assert any(ev.get("Context") == "voicecast-outbound" for ev in plan.events)
    assert db.message.get("Message") != DENIED, db.message


# --- every class the user holds is needed ----------------------------------------------------


@pytest.mark.parametrize(
    ("user", "action", "headers"),
    [
        (
            "vc-probe-no-originate",
            "Originate",
            {
                "Channel": f"Local/{NO_ANSWER}@sim-pstn",
                "Context": "voicecast-outbound",
                "Exten": "s",
                "Priority": "1",
                "Async": "true",
                "Timeout": "3000",
            },
        ),
        ("vc-probe-no-call", "Hangup", {"Channel": "Local/nobody@sim-pstn-00000000;1"}),
        ("vc-probe-no-reporting", "CoreShowChannels", {}),
    ],
)
def test_each_write_class_is_needed(
    sandbox: SandboxView, user: str, action: str, headers: dict[str, str]
) -> None:
    async def work(client: AmiClient) -> AmiResponse:
        return await client.send_action(action, headers)

    assert refusal(run(sandbox, user, work)) == DENIED


# --- the running Asterisk has the production account -----------------------------------------


def test_the_running_account_is_the_production_one(
    sandbox: SandboxView, sandbox_pbx: Sandbox
) -> None:
    shown = sandbox_pbx.cli("manager show user voicecast")

    def perms(label: str) -> set[str]:
        found = re.search(rf"{label} perm:\s*(\S*)", shown)
        assert found is not None, shown
        return set(found.group(1).split(","))

    assert perms("read") == {"call"}
    assert perms("write") == {"originate", "call", "reporting"}
    assert re.search(r"deny - 0\.0\.0\.0/0\.0\.0\.0", shown), shown
    assert re.search(r"allow - 127\.0\.0\.1/255\.255\.255\.255", shown), shown
    settings = sandbox_pbx.cli("manager show settings")
    assert re.search(rf"127\.0\.0\.1:{sandbox.ami_port}\b", settings), settings
