"""End-to-end fixtures: the sandbox Asterisk (real, with the simulated network), a fresh
voicecast workspace per test, and an AMI observer.

These tests never skip: if the sandbox cannot be provisioned or started, they fail with
the reason (CI must prove the dialer against a real Asterisk).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from voicecast.config import Settings, load_settings
from voicecast.sandbox import Sandbox, SandboxView
from voicecast.storage.db import make_engine, session_factory

from .amimon import AmiMonitor

REPO = Path(__file__).resolve().parents[2]
SANDBOX_DIR = Path(os.environ.get("VOICECAST_TEST_SANDBOX_DIR", REPO / "var" / "sandbox"))
VOICECAST = [sys.executable, "-m", "voicecast"]
# an informational campaign (a service notice, legal basis: contract) may run at any hour
INFORMATIONAL = (
    "--purpose",
    "informational",
    "--audience",
    "b2c",
    "--sender",
    "Test Sender",
    "--on-behalf-of",
    "Test Sender",
    "--legal-basis",
    "contract",
)
OPTOUT_KEY_9 = ("--optout-key", "9")  # the sandbox's digit-1 callee presses 9


def free_port() -> int:
    """A TCP port free on loopback now (for the web console of a ``serve`` under test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config_text(tmp: Path) -> str:
    return (
        f'[database]\nurl = "sqlite:///{tmp}/voicecast.db"\n'
        f'[sandbox]\nenabled = true\ndir = "{SANDBOX_DIR}"\n'
        f'[audio]\nstore_dir = "{tmp}/audio"\n'
        f"[web]\nport = {free_port()}\n"
    )


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxView]:
    tmp = tmp_path_factory.mktemp("sandbox-config")
    cfg = tmp / "voicecast.toml"
    cfg.write_text(_config_text(tmp))
    cfg.chmod(0o600)  # as `voicecast init` makes it
    sb = Sandbox(load_settings(cfg, environ={}), log=print)
    sb.up()
    try:
        yield sb.view()
    finally:
        sb.down()


@dataclass
class Workspace:
    dir: Path
    config: Path
    settings: Settings
    sessions: sessionmaker[Session]
    view: SandboxView

    def vc(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "VOICECAST_CONFIG": str(self.config),
            "COLUMNS": "200",
            **(env or {}),
        }
        proc = subprocess.run(
            [*VOICECAST, *args],
            cwd=self.dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"voicecast {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        env = {**os.environ, "VOICECAST_CONFIG": str(self.config), **(env or {})}
        return subprocess.Popen(
            [*VOICECAST, *args],
            cwd=self.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def create_campaign(
        self,
        name: str,
        list_name: str,
        message: str,
        *options: str,
        declare: tuple[str, ...] = INFORMATIONAL,
    ) -> None:
        """``voicecast campaign create NAME --list L --message M`` with ``options`` and a
        declaration (default: informational, which may run at any hour)."""
        self.vc(
            "campaign",
            "create",
            name,
            "--list",
            list_name,
            "--message",
            message,
            *declare,
            *options,
        )

    def report(self, campaign: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(
            self.vc("report", campaign, "--format", "json").stdout
        )
        return rows

    def write_contacts(self, name: str, numbers: list[str], extra: str = "") -> Path:
        path = self.dir / name
        lines = ["first_name,last_name,phone"]
        lines += [f"Test{i},Fictif,{n}" for i, n in enumerate(numbers)]
        path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
        return path

    def recording(self, number: str, attempt_id: str) -> Path:
        return self.view.recordings_dir / f"{number}-{attempt_id}-{attempt_id}-b.wav"


@pytest.fixture
def workspace(tmp_path: Path, sandbox: SandboxView) -> Iterator[Workspace]:
    cfg = tmp_path / "voicecast.toml"
    cfg.write_text(_config_text(tmp_path))
    cfg.chmod(0o600)  # as `voicecast init` makes it
    settings = load_settings(cfg, environ={})
    engine = make_engine(settings.database_url())
    ws = Workspace(tmp_path, cfg, settings, session_factory(engine), sandbox)
    ws.vc("init")
    try:
        yield ws
    finally:
        engine.dispose()


@pytest.fixture
def ami_monitor(sandbox: SandboxView) -> Iterator[AmiMonitor]:
    mon = AmiMonitor(sandbox.ami_port, sandbox.secret)
    try:
        yield mon
    finally:
        mon.close()


@pytest.fixture(scope="session")
def short_message(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.5 s tone: keeps calls short where the test is about pacing, not content."""
    path = tmp_path_factory.mktemp("audio") / "short.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            str(path),
            "synth",
            "1.5",
            "sine",
            "600",
            "vol",
            "0.5",
        ],
        check=True,
    )
    return path
