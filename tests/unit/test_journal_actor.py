"""Who acted, in the journal: ``cli:<login>`` for every CLI command, ``system`` for the
dialer and ``voicecast serve`` (never the CLI actor leaking into their tasks), and the
``user.changed`` entries of account changes (same transaction as the change)."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from voicecast import app as app_module
from voicecast.app import Runtime, as_system, open_runtime, run_dialer
from voicecast.cli import main
from voicecast.config import load_settings
from voicecast.journal import kinds
from voicecast.journal.chain import ChainEntry
from voicecast.journal.store import acting_as, current_actor, iter_entries, verify
from voicecast.storage.models import User
from voicecast.web import accounts
from voicecast.web.accounts import AccountError, Principal

CONFIG = """\
[database]
url = "sqlite:///var/test.db"

[sandbox]
enabled = false

[compliance]
hash_key_file = "var/keys/hash.key"

[web]
enabled = false
"""
PASSWORD = "correct horse battery staple"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    monkeypatch.setattr(getpass, "getuser", lambda: "operator")
    path = tmp_path / "voicecast.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def runtime_of(config: Path) -> Runtime:
    return open_runtime(load_settings(config, environ={}))


def run(config: Path, *args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(
        main, ["--config", str(config), *args], input=stdin, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result


def journal(runtime: Runtime, *kind: str) -> list[ChainEntry]:
    with runtime.sessions() as s:
        return list(iter_entries(s, kinds=kind or None))


def changes(runtime: Runtime) -> list[tuple[str, dict[str, Any]]]:
    return [(e.actor, json.loads(e.data)) for e in journal(runtime, kinds.USER_CHANGED)]


# --- CLI ----------------------------------------------------------------------------------


def test_cli_user_commands_journal_user_changed_as_cli_actor(config: Path) -> None:
    run(config, "user", "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    run(config, "user", "add", "nora", "--role", "viewer", "--password-stdin", stdin=PASSWORD)
    run(config, "user", "disable", "nora")
    run(config, "user", "enable", "nora")
    run(config, "user", "unlock", "nora")
    run(config, "user", "reset-2fa", "nora")
    token = run(config, "user", "token", "nora", "--name", "crm-sync").stdout.strip()
    runtime = runtime_of(config)
    found = changes(runtime)
    assert {actor for actor, _ in found} == {"cli:operator"}
    assert [(d["user"], d["action"]) for _, d in found] == [
        ("alice", "created"),
        ("nora", "created"),
        ("nora", "disabled"),
        ("nora", "enabled"),
        ("nora", "unlocked"),
        ("nora", "two_factor_reset"),
        ("nora", "token_created"),
    ]
    assert found[0][1] == {"user": "alice", "action": "created", "role": "admin"}
    assert found[-1][1]["token"]["name"] == "crm-sync"
    assert found[-1][1]["token"]["prefix"] == token[:10]
    everything = json.dumps([e.data for e in journal(runtime)])
    assert PASSWORD not in everything and token not in everything
    with runtime.sessions() as s:
        assert verify(s).ok


def test_cli_refusal_journals_nothing(config: Path) -> None:
    run(config, "user", "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    result = CliRunner().invoke(main, ["--config", str(config), "user", "disable", "alice"])
    assert result.exit_code == 1 and "last enabled admin" in result.output
    assert [d["action"] for _, d in changes(runtime_of(config))] == ["created"]


def test_cli_actor_does_not_outlive_the_command(config: Path) -> None:
    run(config, "user", "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert current_actor() == "system"


class FakeDialer:
    """Stands for the dialer: records the actor its tasks see."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def start(self, *, wait_for_pbx: bool = False) -> bool:
        self.seen.append(current_actor())
        return True

    async def run(self, campaign_names: Iterable[str] | None = None) -> None:
        async def call() -> None:
            self.seen.append(current_actor())

        await asyncio.create_task(call())

    async def stop(self, *, grace: float = 0.0) -> None:
        self.seen.append(current_actor())


def test_serve_writes_as_system_not_as_the_cli_user(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialer = FakeDialer()
    monkeypatch.setattr(app_module, "make_dialer", lambda _runtime: dialer)
    seen_by_worker: list[str] = []

    class FakeWorker:
        def __init__(self, *_args: object, **_kwargs: object) -> None:
            pass

        async def run(self) -> None:
            seen_by_worker.append(current_actor())
            await asyncio.sleep(3600)

    monkeypatch.setattr("voicecast.webhooks.DeliveryWorker", FakeWorker)
    run(config, "serve")
    assert dialer.seen == ["system", "system", "system"]
    assert seen_by_worker in ([], ["system"])  # cancelled at exit, maybe before it ran
    # whatever serve journaled by itself (the retention job's run at start) is the system's
    assert {e.actor for e in journal(runtime_of(config))} <= {"system"}


def test_run_dialer_resets_the_actor_to_system(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialer = FakeDialer()
    monkeypatch.setattr(app_module, "make_dialer", lambda _runtime: dialer)
    runtime = runtime_of(config)
    with acting_as("cli:operator"):
        assert asyncio.run(run_dialer(runtime, ["spring"])) is False
        assert current_actor() == "cli:operator"
    assert dialer.seen == ["system", "system", "system"]


def test_as_system_covers_the_tasks_it_creates() -> None:
    async def probe() -> list[str]:
        inner = asyncio.create_task(asyncio.sleep(0, result=current_actor()))
        return [current_actor(), await inner]

    with acting_as("cli:operator"):
        assert asyncio.run(probe()) == ["cli:operator", "cli:operator"]  # the leak it stops
        assert asyncio.run(as_system(probe)()) == ["system", "system"]


# --- accounts -----------------------------------------------------------------------------


def test_account_changes_journal_only_real_changes(config: Path) -> None:
    runtime = runtime_of(config)
    now = datetime.now(UTC)
    with acting_as("user:alice"), runtime.sessions() as s, s.begin():
        admin = accounts.create_user(s, "alice", "admin", PASSWORD)
        nora = accounts.create_user(s, "nora", "viewer", PASSWORD)
        accounts.set_role(s, "nora", "viewer")  # no change: no entry
        accounts.set_role(s, "nora", "supervisor")
        accounts.set_disabled(s, "nora", False)  # already enabled: no entry
        token = accounts.create_api_token(s, nora.id, "crm", now)
        row = s.scalars(select(User).where(User.name == "nora")).one()
        token_id = accounts.list_api_tokens(s, row.id)[0][0].id
        by = Principal(admin.id, "alice", "admin", "session")
        accounts.revoke_api_token(s, token_id, by, now)
        accounts.revoke_api_token(s, token_id, by, now)  # already revoked: no entry
    found = changes(runtime)
    assert {actor for actor, _ in found} == {"user:alice"}
    assert [d["action"] for _, d in found] == [
        "created",
        "created",
        "role_changed",
        "token_created",
        "token_revoked",
    ]
    assert found[2][1] == {
        "user": "nora",
        "action": "role_changed",
        "role": "supervisor",
        "previous_role": "viewer",
    }
    assert token not in json.dumps([e.data for e in journal(runtime)])


def test_a_refused_account_change_leaves_no_entry(config: Path) -> None:
    runtime = runtime_of(config)
    with runtime.sessions() as s, s.begin():
        accounts.create_user(s, "alice", "admin", PASSWORD)
    with pytest.raises(AccountError), runtime.sessions() as s, s.begin():
        accounts.create_user(s, "nora", "viewer", PASSWORD)
        accounts.set_role(s, "alice", "viewer")  # the last admin: the whole change rolls back
    assert [(d["user"], d["action"]) for _, d in changes(runtime)] == [("alice", "created")]
    assert [actor for actor, _ in changes(runtime)] == ["system"]
