"""Security of the deployment: config and secret file permissions checked at start-up,
AMI / FastAGI / console exposure warnings, and the production Asterisk files (AMI on
loopback, the least-privileged AMI user, the FastAGI URL on loopback).

The AMI privileges themselves are proved against the real sandbox Asterisk in
``tests/e2e/test_ami_privileges.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from voicecast.app import log_exposure, open_runtime, run_dialer
from voicecast.cli import main
from voicecast.config import (
    Settings,
    check_config_file,
    check_private_file,
    exposure_warnings,
    file_is_private,
    is_loopback,
    load_settings,
)
from voicecast.errors import ConfigError
from voicecast.pbx.base import PbxUnavailable
from voicecast.sandbox import SANDBOX_MANAGER_CONF, Sandbox

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "asterisk-conf"
SECRET_TOML = '[ami]\nsecret = "s3cret-for-tests"\n'
NO_SECRET_TOML = '[database]\nurl = "sqlite:///var/test.db"\n[sandbox]\nenabled = false\n'


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, without the developer's VOICECAST_* variables."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("VOICECAST_"):
            monkeypatch.delenv(key)
    return tmp_path


def config(path: Path, text: str, mode: int) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


# --- the config file's permissions -----------------------------------------------------------


def refused(path: Path, environ: dict[str, str] | None = None) -> str | None:
    """The error of :func:`check_config_file` on ``path``, or None when accepted."""
    try:
        check_config_file(load_settings(path, environ=environ or {}))
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("mode", range(0o400, 0o1000))
def test_every_mode_of_a_config_file(tmp_path: Path, mode: int) -> None:
    """All 256 modes an owner can read: writable by group/others is always refused; any
    permission of group/others is refused when the file holds a secret, except group read
    of a file root owns (0640 root:voicecast)."""
    with_secret = config(tmp_path / "secret.toml", SECRET_TOML, mode)
    without = config(tmp_path / "plain.toml", NO_SECRET_TOML, mode)
    tolerated = 0o040 if with_secret.stat().st_uid == 0 else 0
    writable_by_others = bool(mode & 0o022)
    readable_by_others = bool(mode & 0o077 & ~tolerated)

    error = refused(with_secret)
    if writable_by_others:
        assert error is not None and "writable by other users" in error
    elif readable_by_others:
        assert error is not None and "readable by other users" in error
    else:
        assert error is None
    error = refused(without)
    assert (error is not None) == writable_by_others
    if error is not None:
        assert f"run: chmod 600 {without}" in error


def test_a_config_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """That user could rewrite the dial string or the AMI host: refused, even at 0600."""
    path = config(tmp_path / "voicecast.toml", NO_SECRET_TOML, 0o600)
    if os.geteuid() == 0:
        os.chown(path, 65534, -1)  # nobody
    else:  # we are not root: pretend to be another (non-root) user
        monkeypatch.setattr(os, "geteuid", lambda: path.stat().st_uid + 1)
    error = refused(path)
    assert error is not None and f"{path} is owned by " in error
    assert "who can change it" in error and "run: chown " in error


@pytest.mark.parametrize(
    ("folder_mode", "accepted"), [(0o755, True), (0o700, True), (0o1777, True), (0o777, False)]
)
def test_a_config_in_a_folder_others_can_write_is_refused(
    tmp_path: Path, folder_mode: int, accepted: bool
) -> None:
    """Whoever can write to the folder can replace the file (unless the sticky bit keeps
    them to their own files, as in /tmp)."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = config(folder / "voicecast.toml", NO_SECRET_TOML, 0o600)
    folder.chmod(folder_mode)
    error = refused(path)
    if accepted:
        assert error is None
    else:
        assert error is not None and f"is in {folder}, which other users can change" in error


def test_the_refusal_names_the_file_the_secret_the_mode_and_the_fix(tmp_path: Path) -> None:
    path = config(tmp_path / "voicecast.toml", SECRET_TOML, 0o644)
    assert refused(path) == (
        f"{path} holds [ami] secret and is readable by other users (mode 0644); "
        f"run: chmod 600 {path} (or pass the secret in VOICECAST_AMI__SECRET)"
    )


def test_a_database_url_with_a_password_is_a_secret(tmp_path: Path) -> None:
    url = "postgresql+psycopg://voicecast:hunter2-db@127.0.0.1/voicecast"
    path = config(tmp_path / "voicecast.toml", f'[database]\nurl = "{url}"\n', 0o644)
    error = refused(path)
    assert error is not None and "holds [database] url" in error
    assert "VOICECAST_DATABASE__URL" in error and "hunter2" not in error
    # without a password the URL is no secret
    config(path, '[database]\nurl = "postgresql+psycopg://voicecast@/voicecast"\n', 0o644)
    assert refused(path) is None


def test_secrets_from_the_environment_leave_the_file_unsensitive(tmp_path: Path) -> None:
    path = config(tmp_path / "voicecast.toml", NO_SECRET_TOML, 0o644)
    assert refused(path, {"VOICECAST_AMI__SECRET": "from-env"}) is None
    settings = load_settings(path, environ={"VOICECAST_AMI__SECRET": "from-env"})
    assert settings.ami.secret == "from-env" and settings.file_secrets == []
    # an empty secret is no secret
    config(path, '[ami]\nsecret = ""\n', 0o644)
    assert refused(path) is None


def test_no_config_file_nothing_to_check(isolated: Path) -> None:
    settings = load_settings(environ={})
    assert settings.source is None
    check_config_file(settings)


def test_the_cli_refuses_to_start_with_one_clear_line(tmp_path: Path) -> None:
    path = config(tmp_path / "voicecast.toml", NO_SECRET_TOML + SECRET_TOML, 0o640 | 0o004)
    result = CliRunner().invoke(main, ["--config", str(path), "campaign", "list"])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert said == (
        f"error: {path} holds [ami] secret and is readable by other users (mode 0644); "
        f"run: chmod 600 {path} (or pass the secret in VOICECAST_AMI__SECRET)"
    )
    assert not (tmp_path / "var" / "test.db").exists()  # refused before anything else
    path.chmod(0o600)
    result = CliRunner().invoke(main, ["--config", str(path), "campaign", "list"])
    assert result.exit_code == 0, result.output


def test_the_cli_refuses_a_config_others_may_change(tmp_path: Path) -> None:
    path = config(tmp_path / "voicecast.toml", NO_SECRET_TOML, 0o666)
    result = CliRunner().invoke(main, ["--config", str(path), "campaign", "list"])
    assert result.exit_code == 1
    assert "writable by other users (mode 0666)" in result.output
    assert f"chmod 600 {path}" in " ".join(result.output.split())


def test_init_creates_the_config_0600(isolated: Path) -> None:
    result = CliRunner().invoke(main, ["init"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    target = isolated / "voicecast.toml"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # --force over a file someone made readable makes it private again
    target.chmod(0o644)
    result = CliRunner().invoke(main, ["init", "--force"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


# --- other secret files ----------------------------------------------------------------------


def test_check_private_file(tmp_path: Path) -> None:
    key = tmp_path / "tls.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    for mode in (0o600, 0o400):
        key.chmod(mode)
        check_private_file(key, "[web] tls_key")
    for mode in (0o644, 0o604, 0o620, 0o660):
        key.chmod(mode)
        with pytest.raises(ConfigError) as err:
            check_private_file(key, "[web] tls_key")
        assert str(err.value) == (
            f"[web] tls_key {key} can be read or changed by other users "
            f"(mode {mode:04o}); run: chmod 600 {key}"
        )
    check_private_file(tmp_path / "missing.key", "[web] tls_key")  # the caller reports it
    key.chmod(0o640)
    assert file_is_private(key.stat()) == (key.stat().st_uid == 0)


def sandbox_settings(tmp_path: Path) -> Sandbox:
    path = config(
        tmp_path / "voicecast.toml",
        f'[sandbox]\nenabled = true\ndir = "{tmp_path / "sandbox"}"\n',
        0o600,
    )
    return Sandbox(load_settings(path, environ={}))


def test_the_sandbox_ami_secret_is_private_and_checked(tmp_path: Path) -> None:
    sb = sandbox_settings(tmp_path)
    secret = sb.ami_secret()
    assert stat.S_IMODE(sb.secret_file.stat().st_mode) == 0o600
    assert sb.ami_secret() == secret
    sb.secret_file.chmod(0o644)
    with pytest.raises(ConfigError, match=r"the sandbox AMI secret .* chmod 600"):
        sb.ami_secret()


def test_the_rendered_manager_conf_is_private_and_includes_the_probe_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendered twice (the second time over existing files, the case where ``os.open``'s
    mode would not apply): manager.conf and the sandbox's users stay 0600."""
    monkeypatch.setattr("voicecast.sandbox._find_host_asterisk", lambda: None)  # chroot layout
    sb = sandbox_settings(tmp_path)
    for _ in range(2):
        etc = sb.render_config()
        for name in ("manager.conf", SANDBOX_MANAGER_CONF):
            path = etc / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
            text = path.read_text()
            assert "CHANGE-ME" not in text and sb.ami_secret() in text
    assert f'#include "{SANDBOX_MANAGER_CONF}"' in (etc / "manager.conf").read_text()
    # the production file never includes the sandbox's users
    assert "manager_sandbox" not in (CONF / "manager.conf").read_text()


# --- exposure to the network -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.8.0.1", False),
        ("192.0.2.10", False),
        ("pbx.example.org", False),
        ("127.0.0.1.example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def settings_from(tmp_path: Path, text: str) -> Settings:
    return load_settings(config(tmp_path / "voicecast.toml", text, 0o600), environ={})


def test_the_defaults_expose_nothing(tmp_path: Path) -> None:
    assert exposure_warnings(settings_from(tmp_path, "")) == []
    assert exposure_warnings(settings_from(tmp_path, "[sandbox]\nenabled = false\n")) == []


def test_each_exposure_is_named(tmp_path: Path) -> None:
    s = settings_from(
        tmp_path,
        '[sandbox]\nenabled = false\n[ami]\nhost = "192.0.2.10"\n'
        '[fastagi]\nhost = "0.0.0.0"\n[web]\nhost = "0.0.0.0"\nport = 8443\n',
    )
    fastagi, ami, web = exposure_warnings(s)
    assert fastagi.startswith("FastAGI listens on 0.0.0.0:4573, not on loopback")
    assert "no authentication" in fastagi
    assert ami.startswith("AMI is reached at 192.0.2.10:5038, not on loopback")
    assert "clear text" in ami and "SSH tunnel" in ami and "WireGuard" in ami
    assert web.startswith("the console listens on 0.0.0.0:8443 without TLS")
    assert exposure_warnings(s, ("ami",)) == [ami]
    # TLS on the console, or no console: no console warning
    s.web.tls_cert, s.web.tls_key = "cert.pem", "key.pem"
    assert exposure_warnings(s, ("web",)) == []
    s.web.tls_cert = s.web.tls_key = ""
    s.web.enabled = False
    assert exposure_warnings(s, ("web",)) == []
    # the sandbox's AMI is on loopback whatever [ami] host says
    s.sandbox.enabled = True
    assert exposure_warnings(s, ("ami",)) == []


def test_log_exposure_logs_each_line_at_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings_from(tmp_path, '[fastagi]\nhost = "0.0.0.0"\n')
    with caplog.at_level(logging.WARNING, logger="voicecast.app"):
        lines = log_exposure(s, ("ami", "fastagi"))
    assert len(lines) == 1
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, lines[0])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_dialer_warns_at_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``campaign start --wait`` / ``serve`` (run_dialer) warn before connecting: here AMI
    is unreachable, so the start fails, after the warnings."""
    s = settings_from(
        tmp_path,
        f'[database]\nurl = "sqlite:///{tmp_path}/v.db"\n[sandbox]\nenabled = false\n'
        f'[compliance]\nhash_key_file = "{tmp_path}/keys/hash.key"\n'
        '[ami]\nhost = "192.0.2.10"\nconnect_timeout = 0.2\n'
        f'[fastagi]\nhost = "0.0.0.0"\nport = {free_port()}\n',
    )
    runtime = open_runtime(s)
    with caplog.at_level(logging.WARNING, logger="voicecast.app"), pytest.raises(PbxUnavailable):
        asyncio.run(run_dialer(runtime, []))
    warned = [r.getMessage() for r in caplog.records if r.name == "voicecast.app"]
    assert any(w.startswith("FastAGI listens on 0.0.0.0:") for w in warned)
    assert any(w.startswith("AMI is reached at 192.0.2.10:5038") for w in warned)
    runtime.engine.dispose()


# --- the production Asterisk files -----------------------------------------------------------


def asterisk_sections(path: Path) -> dict[str, dict[str, list[str]]]:
    """An Asterisk .conf file as {section: {key: [values]}} (comments dropped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        head = re.fullmatch(r"\[([^\]]+)\](\(.*\))?", line)
        if head:
            current = sections.setdefault(head.group(1), {})
            continue
        assert current is not None, f"{path}: {raw!r} before any section"
        key, _, value = line.partition("=")
        value = value.lstrip(">").strip()
        current.setdefault(key.strip(), []).append(value)
    return sections


def classes(value: list[str]) -> set[str]:
    assert len(value) == 1
    return {c.strip() for c in value[0].split(",") if c.strip()}


LOOPBACK_ONLY = {"deny": ["0.0.0.0/0.0.0.0"], "permit": ["127.0.0.1/255.255.255.255"]}
# every AMI action voicecast sends, and the write class that allows it (None: no class)
ACTIONS = {
    "Login": None,
    "Logoff": None,
    "Ping": None,  # the keepalive ([ami] keepalive)
    "Originate": "originate",
    "Hangup": "call",
    "CoreShowChannels": "reporting",
}


def test_production_ami_is_on_loopback_with_one_least_privileged_user() -> None:
    manager = asterisk_sections(CONF / "manager.conf")
    assert manager["general"]["bindaddr"] == ["127.0.0.1"]
    assert "webenabled" not in manager["general"]  # no AMI over HTTP
    assert set(manager) == {"general", "voicecast"}
    user = manager["voicecast"]
    assert {k: user[k] for k in LOOPBACK_ONLY} == LOOPBACK_ONLY
    assert classes(user["read"]) == {"call"}
    assert classes(user["write"]) == {c for c in ACTIONS.values() if c}
    assert user["secret"] == ["CHANGE-ME"]  # a placeholder: never a real secret in git
    assert "#include" not in (CONF / "manager.conf").read_text()


def test_the_actions_voicecast_sends_are_those_manager_conf_allows() -> None:
    """A new AMI action in the code fails here until manager.conf and the e2e proof are
    reviewed for it (tests/e2e/test_ami_privileges.py)."""
    sent: set[str] = set()
    for source in (REPO / "voicecast").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        sent |= set(re.findall(r"(?:send_action|_send)\(\s*\"(\w+)\"", text))
    assert sent == set(ACTIONS)


def test_the_sandbox_users_have_fewer_rights_than_production() -> None:
    production = asterisk_sections(CONF / "manager.conf")["voicecast"]
    probes = asterisk_sections(CONF / "sandbox" / SANDBOX_MANAGER_CONF)
    assert set(probes) == {"vc-probe-no-originate", "vc-probe-no-call", "vc-probe-no-reporting"}
    for name, user in probes.items():
        missing = name.removeprefix("vc-probe-no-")
        assert classes(user["write"]) == classes(production["write"]) - {missing}, name
        assert classes(user["read"]) <= classes(production["read"]), name
        assert {k: user[k] for k in LOOPBACK_ONLY} == LOOPBACK_ONLY, name
    # no production file defines AMI users but manager.conf
    for path in CONF.glob("*.conf"):
        if path.name != "manager.conf":
            assert "secret =" not in path.read_text(), path


def test_the_fastagi_url_of_the_dialplan_is_on_loopback() -> None:
    globals_ = asterisk_sections(CONF / "extensions.conf")["globals"]
    url = globals_["VOICECAST_AGI"][0]
    host = re.fullmatch(r"agi://([^:/]+):(\d+)", url)
    assert host is not None and is_loopback(host.group(1)), url
