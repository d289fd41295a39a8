"""The ``voicecast user`` commands, through click's CliRunner, on a temporary SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_workspace import make_workspace
from click.testing import CliRunner, Result
from sqlalchemy import select

from voicecast.app import open_runtime
from voicecast.cli import main
from voicecast.config import load_settings
from voicecast.storage.models import User, WebSession
from voicecast.web import accounts

PASSWORD = "correct horse battery staple"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_workspace(tmp_path, monkeypatch, "[web]\nport = 8090\n")


def run(config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        main, ["--config", str(config), *args], input=stdin, catch_exceptions=False
    )


def text(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def user(config: Path, name: str) -> User:
    runtime = open_runtime(load_settings(config, environ={}))
    with runtime.sessions() as s:
        return s.scalars(select(User).where(User.name == name)).one()


def add(config: Path, name: str, role: str) -> None:
    result = run(config, "user", "add", name, "--role", role, "--password-stdin", stdin=PASSWORD)
    assert result.exit_code == 0, result.output


def test_add_with_stdin_and_prompt(config: Path) -> None:
    result = run(
        config, "user", "add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    out = text(result)
    assert "user alice (admin) created" in out
    assert "first login at http://127.0.0.1:8090/login will ask to enrol TOTP" in out
    alice = user(config, "alice")
    assert alice.role == "admin" and alice.totp_enrolled_at is None
    assert accounts.password_matches(alice.password_hash, PASSWORD)
    assert PASSWORD not in result.output

    # typed twice, hidden; a mismatch asks again
    typed = f"{PASSWORD}\nsomething else entirely\n{PASSWORD}!\n{PASSWORD}!\n"
    result = run(config, "user", "add", "sam", "--role", "supervisor", stdin=typed)
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert PASSWORD not in result.output
    assert accounts.password_matches(user(config, "sam").password_hash, PASSWORD + "!")


def test_add_refusals(config: Path) -> None:
    add(config, "alice", "admin")
    cases = [
        (("alice", "--role", "viewer"), PASSWORD, "user 'alice' already exists"),
        (("bob", "--role", "viewer"), "short", "password: at least 12 characters"),
        (("bob", "--role", "viewer"), "", "no password on standard input"),
        (("b b", "--role", "viewer"), PASSWORD, "user name 'b b'"),
    ]
    for args, password, message in cases:
        result = run(config, "user", "add", *args, "--password-stdin", stdin=password)
        assert result.exit_code == 1
        assert message in text(result)
    result = run(config, "user", "add", "bob", "--role", "root", "--password-stdin", stdin=PASSWORD)
    assert result.exit_code == 2 and "'root' is not one of" in result.output


def test_list_unlock_disable_enable_reset(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    add(config, "alice", "admin")
    add(config, "victor", "viewer")
    runtime = open_runtime(load_settings(config, environ={}))
    until = datetime.now(UTC) + timedelta(minutes=10)
    with runtime.sessions() as s, s.begin():
        victor = s.scalars(select(User).where(User.name == "victor")).one()
        victor.locked_until = until
        victor.failed_logins = 3
        victor.totp_secret = "JBSWY3DPEHPK3PXP"
        victor.totp_enrolled_at = datetime.now(UTC)
        victor.recovery_codes = ["$argon2id$x"]
        accounts.create_session(s, victor.id, "full", datetime.now(UTC), lifetime=timedelta(1))

    listed = run(config, "user", "list")
    assert listed.exit_code == 0, listed.output
    out = text(listed)
    assert "│ alice │ admin │ pending │" in " ".join(listed.output.split())
    assert until.astimezone(runtime.report_zone()).isoformat(timespec="seconds") in out

    result = run(config, "user", "unlock", "victor")
    assert result.exit_code == 0 and "user victor: unlocked" in text(result)
    assert user(config, "victor").locked_until is None
    assert user(config, "victor").failed_logins == 0

    result = run(config, "user", "reset-2fa", "victor")
    assert result.exit_code == 0, result.output
    victor = user(config, "victor")
    assert victor.totp_secret is None and victor.totp_enrolled_at is None
    assert victor.recovery_codes == []
    with runtime.sessions() as s:
        assert list(s.scalars(select(WebSession))) == []

    assert run(config, "user", "disable", "victor").exit_code == 0
    assert user(config, "victor").disabled
    assert "yes" in text(run(config, "user", "list"))
    assert run(config, "user", "enable", "victor").exit_code == 0
    assert not user(config, "victor").disabled

    result = run(config, "user", "disable", "alice")
    assert result.exit_code == 1
    assert "last enabled admin" in text(result)
    result = run(config, "user", "unlock", "nobody")
    assert result.exit_code == 1 and "no user 'nobody'" in text(result)


def test_token_is_printed_once_and_works(config: Path) -> None:
    add(config, "sam", "supervisor")
    result = run(config, "user", "token", "sam", "--name", "crm-sync")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("vc_") and "\n" not in token
    assert "shown only now" in result.stderr
    runtime = open_runtime(load_settings(config, environ={}))
    with runtime.sessions() as s, s.begin():
        owner = accounts.user_for_api_token(s, token, datetime.now(UTC))
        assert owner is not None and owner.name == "sam"
        assert [t.name for t, _ in accounts.list_api_tokens(s)] == ["crm-sync"]
    result = run(config, "user", "token", "nobody", "--name", "x")
    assert result.exit_code == 1 and "no user 'nobody'" in text(result)
    result = run(config, "user", "token", "sam", "--name", " ")
    assert result.exit_code == 1 and "token name" in text(result)


def test_help_texts(config: Path) -> None:
    result = run(config, "user", "--help")
    assert result.exit_code == 0
    for command in ("add", "list", "unlock", "reset-2fa", "disable", "enable", "token"):
        assert command in result.output
