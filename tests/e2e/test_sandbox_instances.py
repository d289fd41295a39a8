"""End-to-end: two sandbox Asterisk processes from one provisioned folder, as the scale-out
tests run them (two PBX nodes).

The session's sandbox (instance ``""``, the ``sandbox`` fixture) and instance ``b``, brought
up here on an AMI port of its own, run together: a call originated on each reaches only that
node's simulated network (each ``calls.log`` holds its own call and not the other's), both
see the same published audio folder, neither listens on any port but its AMI port, and
stopping one leaves the other running (both ways: the session's instance is stopped and
restarted once, with the same port and secret, so the session's other tests keep it).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicecast.ami.client import AmiClient
from voicecast.ami.protocol import AmiMessage
from voicecast.config import load_settings
from voicecast.sandbox import Sandbox, SandboxView

from .conftest import _config_text, free_port
from .faults_harness import CallLog

pytestmark = pytest.mark.e2e

BUSY_A = "+33199000013"  # the simulated network's digit 3: busy at once
BUSY_B = "+33261910023"


@pytest.fixture(scope="module")
def pair(
    sandbox: SandboxView, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Sandbox, Sandbox]]:
    """The session's running sandbox and instance ``b`` of the same folder, up."""
    tmp = tmp_path_factory.mktemp("sandbox-instances")
    cfg = tmp / "voicecast.toml"
    cfg.write_text(_config_text(tmp))
    cfg.chmod(0o600)
    settings = load_settings(cfg, environ={})
    a = Sandbox(settings)
    assert a.running_pid() is not None and a.view() == sandbox
    b = Sandbox(settings, log=print, instance="b", ami_port=free_port())
    b.up()
    try:
        yield a, b
    finally:
        b.down()
        if a.running_pid() is None:  # a failure left the session's sandbox down
            a.up()


def originate_busy(view: SandboxView, number: str) -> str:
    """Originate one call to ``number`` (busy) on the node of ``view`` as the controller
    does; return its attempt id once the call has ended."""
    attempt = uuid.uuid4().hex

    async def main() -> None:
        ended = asyncio.Event()

        def on_hangup(msg: AmiMessage) -> None:
            if msg.get("Uniqueid") == attempt:
                ended.set()

        client = AmiClient("127.0.0.1", view.ami_port, "voicecast", view.secret)
        client.on("Hangup", on_hangup)
        await client.connect()
        try:
            resp = await client.send_action(
                "Originate",
                {
                    "Channel": f"Local/{number}@sim-pstn",
                    "Context": "voicecast-outbound",
                    "Exten": "s",
                    "Priority": "1",
                    "CallerID": '"Test" <+33162000000>',
                    "Timeout": "15000",
                    "Async": "true",
                    "ChannelId": attempt,
                    "OtherChannelId": attempt + "-b",
                    "Variable": [f"VC_ATTEMPT={attempt}"],
                },
                action_id=attempt,
            )
            assert resp.success, resp.message
            await asyncio.wait_for(ended.wait(), 20)
        finally:
            await client.close()

    asyncio.run(main())
    return attempt


def logged(view: SandboxView, attempt: str, timeout: float = 10.0) -> bool:
    """Whether the node's ``calls.log`` holds ``attempt`` (waiting up to ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        if attempt in view.calls_log.read_text():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def bound_ports(pid: int) -> tuple[set[int], set[int]]:
    """The TCP ports ``pid`` listens on and the UDP ports it holds, from /proc (the chroot
    shares the host's network)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    tcp: set[int] = set()
    udp: set[int] = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            state, inode = fields[3], fields[9]
            if inode not in inodes:
                continue
            if proto.startswith("udp"):
                udp.add(port)
            elif state == "0A":  # TCP_LISTEN
                tcp.add(port)
    return tcp, udp


def only_ami_port(pid: int, ami_port: int) -> None:
    """``pid`` listens on TCP ``ami_port`` only; the UDP sockets it holds (pjproject's, two
    per process) have ports the kernel chose, which cannot clash between instances."""
    tcp, udp = bound_ports(pid)
    assert tcp == {ami_port}
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(low <= port <= high for port in udp), udp


def test_two_instances_run_together_each_with_its_own_calls(
    pair: tuple[Sandbox, Sandbox],
) -> None:
    a, b = pair
    va, vb = a.view(), b.view()
    pid_a, pid_b = a.running_pid(), b.running_pid()
    assert pid_a is not None and pid_b is not None and pid_a != pid_b
    assert va.ami_port != vb.ami_port and va.secret != vb.secret
    assert (va.sounds_dir, va.sounds_dir_on_pbx) == (vb.sounds_dir, vb.sounds_dir_on_pbx)
    assert va.calls_log != vb.calls_log
    # each control socket reaches its own process
    assert "/etc/asterisk-b/asterisk.conf" in b.cli("core show settings")
    assert "/etc/asterisk/asterisk.conf" in a.cli("core show settings")
    only_ami_port(pid_b, vb.ami_port)
    only_ami_port(pid_a, va.ami_port)

    # only what each log receives from now on (other tests called these numbers before)
    since_a, since_b = CallLog(va.calls_log), CallLog(vb.calls_log)
    call_a = originate_busy(va, BUSY_A)
    call_b = originate_busy(vb, BUSY_B)
    assert logged(va, call_a) and logged(vb, call_b)
    log_a = "\n".join(f"{c.number} {c.attempt_id}" for c in since_a.calls())
    log_b = "\n".join(f"{c.epoch} {c.number} {c.attempt_id}" for c in since_b.calls())
    assert call_b not in log_a and BUSY_B not in log_a
    assert call_a not in log_b and BUSY_A not in log_b
    (line_b,) = [ln for ln in log_b.splitlines() if call_b in ln]
    assert line_b.split()[1:3] == [BUSY_B, call_b]


def test_stopping_one_instance_leaves_the_other_running(pair: tuple[Sandbox, Sandbox]) -> None:
    a, b = pair
    pid_a, pid_b = a.running_pid(), b.running_pid()
    view_a = a.view()
    assert a.down() is True
    assert a.running_pid() is None and b.running_pid() == pid_b
    assert logged(b.view(), originate_busy(b.view(), BUSY_B))
    a.up()  # the session's sandbox again, same port and secret
    assert a.view() == view_a and a.running_pid() not in (None, pid_a)
    assert b.down() is True and b.down() is False
    assert b.running_pid() is None and a.running_pid() is not None
    assert b.status()["running"] is False and a.status()["running"] is True
    assert logged(view_a, originate_busy(view_a, BUSY_A))
