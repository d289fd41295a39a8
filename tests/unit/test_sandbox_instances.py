"""Several sandbox Asterisk processes from one provisioned folder (``Sandbox(instance=...)``):
the paths, files, command lines and rendered configuration of each instance, without
running Asterisk (both layouts: the debootstrapped chroot and an installed ``asterisk``).

Two instances really running side by side are proved in
``tests/e2e/test_sandbox_instances.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from voicecast.config import load_settings
from voicecast.sandbox import PER_INSTANCE_DIRS, Sandbox, SandboxError


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, without the developer's VOICECAST_* variables."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("VOICECAST_"):
            monkeypatch.delenv(key)
    return tmp_path


@pytest.fixture
def chroot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chroot layout (no ``asterisk`` binary on this machine)."""
    monkeypatch.setattr("voicecast.sandbox._find_host_asterisk", lambda: None)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The host layout: an installed ``asterisk`` (a stand-in path; never run here)."""
    binary = tmp_path / "usr" / "sbin" / "asterisk"
    monkeypatch.setattr("voicecast.sandbox._find_host_asterisk", lambda: str(binary))
    monkeypatch.setattr(
        "voicecast.sandbox._first_existing",
        lambda candidates, marker: candidates[0],
    )
    return binary


def settings_in(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "voicecast.toml"
    path.write_text(
        f'[sandbox]\nenabled = true\ndir = "{tmp_path / "sb"}"\nami_port = 5038\n{extra}',
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def pair(tmp_path: Path, extra: str = "") -> tuple[Sandbox, Sandbox]:
    """The default instance and instance ``b`` (AMI 5039) of one sandbox folder."""
    settings = load_settings(settings_in(tmp_path, extra), environ={})
    return Sandbox(settings), Sandbox(settings, instance="b", ami_port=5039)


# --- the default instance is the sandbox as it was -------------------------------------------


def test_the_default_instance_keeps_its_files_folders_and_command(
    tmp_path: Path, chroot: None
) -> None:
    a, _ = pair(tmp_path)
    sb = tmp_path / "sb"
    assert (a.instance, a.ami_port) == ("", 5038)
    assert (a.state_file, a.log_file, a.secret_file) == (
        sb / "state.json",
        sb / "asterisk.log",
        sb / "ami-secret",
    )
    assert a._dirs()["astetcdir"] == "/etc/asterisk"
    assert a._dirs()["astspooldir"] == "/var/spool/asterisk"
    assert a._dirs()["astrundir"] == "/run/asterisk"
    # Debian's asterisk reads /etc/asterisk/asterisk.conf by default: no -C, as before
    assert a._command("-rx", "core show version") == [
        "chroot",
        str(sb / "rootfs"),
        "/usr/sbin/asterisk",
        "-rx",
        "core show version",
    ]
    view = a.view()
    root = sb / "rootfs"
    assert view.ami_port == 5038
    assert view.sounds_dir == root / "var/lib/asterisk/sounds/voicecast"
    assert view.sounds_dir_on_pbx == "/var/lib/asterisk/sounds/voicecast"
    assert view.calls_log == root / "var/spool/asterisk/voicecast-sim/calls.log"
    assert view.replies_dir == root / "var/spool/asterisk/voicecast-replies"
    assert view.replies_dir_on_pbx == "/var/spool/asterisk/voicecast-replies"
    assert "instance" not in a.status()


# --- an extra instance -------------------------------------------------------------------------


def test_an_extra_instance_has_its_own_files_folders_port_and_secret(
    tmp_path: Path, chroot: None
) -> None:
    a, b = pair(tmp_path)
    sb = tmp_path / "sb"
    assert b.rootfs == a.rootfs  # provisioned once, shared
    assert (b.state_file, b.log_file, b.secret_file) == (
        sb / "state-b.json",
        sb / "asterisk-b.log",
        sb / "ami-secret-b",
    )
    da, db = a._dirs(), b._dirs()
    for key in da:
        if key in PER_INSTANCE_DIRS:
            assert db[key] == da[key] + "-b", key
        else:
            assert db[key] == da[key], key  # binaries, modules, sounds, keys: shared
    assert b.conf_file == "/etc/asterisk-b/asterisk.conf"
    assert b._command("-n") == [
        "chroot",
        str(sb / "rootfs"),
        "/usr/sbin/asterisk",
        "-C",
        "/etc/asterisk-b/asterisk.conf",
        "-n",
    ]
    va, vb = a.view(), b.view()
    assert (va.ami_port, vb.ami_port) == (5038, 5039)
    assert va.secret != vb.secret and b.secret_file.is_file()
    # one publish serves both: the same audio and replies folders, host side and PBX side
    assert (vb.sounds_dir, vb.sounds_dir_on_pbx) == (va.sounds_dir, va.sounds_dir_on_pbx)
    assert (vb.replies_dir, vb.replies_dir_on_pbx) == (va.replies_dir, va.replies_dir_on_pbx)
    # each node's simulated network logs the calls it received
    assert vb.calls_log == sb / "rootfs/var/spool/asterisk-b/voicecast-sim/calls.log"
    assert vb.recordings_dir != va.recordings_dir
    status = b.status()
    assert status["instance"] == "b" and status["ami"] == "127.0.0.1:5039"
    assert status["running"] is False and status["log"] == str(sb / "asterisk-b.log")


def test_both_instances_render_side_by_side(tmp_path: Path, chroot: None) -> None:
    a, b = pair(tmp_path, "[fastagi]\nport = 4601\n")
    b = Sandbox(a.settings, instance="b", ami_port=5039, agi_url="agi://127.0.0.1:4602")
    etc_a = a.render_config()
    etc_b = b.render_config()
    root = tmp_path / "sb" / "rootfs"
    assert (etc_a, etc_b) == (root / "etc/asterisk", root / "etc/asterisk-b")
    # rendering b left a's configuration alone, and the other way round
    assert "port = 5038" in (etc_a / "manager.conf").read_text()
    manager_b = (etc_b / "manager.conf").read_text()
    assert "port = 5039" in manager_b and b.ami_secret() in manager_b
    assert a.ami_secret() not in manager_b
    assert "agi://127.0.0.1:4601" in (etc_a / "extensions.conf").read_text()
    ext_b = (etc_b / "extensions.conf").read_text()
    assert "VOICECAST_AGI = agi://127.0.0.1:4602" in ext_b
    assert b.status()["fastagi_url"] == "agi://127.0.0.1:4602"
    conf_b = (etc_b / "asterisk.conf").read_text()
    # a "[directories](!)" template would be ignored: Asterisk would use its own folders
    assert conf_b.startswith("[directories]\n")
    directories = dict(re.findall(r"^(ast\w+) => (.+)$", conf_b, re.M))
    assert directories == b._dirs()
    for key in ("astdbdir", "astspooldir", "astrundir", "astlogdir"):
        assert (root / directories[key].lstrip("/")).is_dir(), key
    assert b.view().calls_log.is_file() and a.view().calls_log.is_file()
    assert b.view().calls_log != a.view().calls_log
    assert b.view().sounds_dir.is_dir() and b.view().replies_dir == a.view().replies_dir
    etc_a2 = a.render_config()  # re-rendering a does not remove b's folder
    assert etc_a2 == etc_a and (etc_b / "asterisk.conf").is_file()


def test_the_rendered_sandbox_listens_on_no_fixed_port(tmp_path: Path, chroot: None) -> None:
    """Two instances can run together only if nothing but AMI (its own port) listens: no
    SIP transport, no HTTP server; the CLI socket is in the instance's own run folder."""
    _, b = pair(tmp_path)
    etc = b.render_config()
    pjsip = (etc / "pjsip.conf").read_text()
    assert not re.search(r"^\s*(bind|type\s*=\s*transport)", pjsip, re.M)
    assert not (etc / "http.conf").exists()
    loads = re.findall(r"^load\s*=\s*(\S+)", (etc / "modules.conf").read_text(), re.M)
    assert "noload" not in loads and not [m for m in loads if "http" in m], loads
    assert re.search(r"^autoload\s*=\s*no", (etc / "modules.conf").read_text(), re.M)
    ports = re.findall(r"^\s*port\s*=\s*(\d+)", (etc / "manager.conf").read_text(), re.M)
    assert ports == ["5039"]
    assert b._dirs()["astrundir"] == "/run/asterisk-b"  # asterisk.ctl and asterisk.pid


def test_host_layout_instances(tmp_path: Path, host: Path) -> None:
    a, b = pair(tmp_path)
    private = tmp_path / "sb" / "host"
    da, db = a._dirs(), b._dirs()
    assert da["astetcdir"] == str(private / "etc")  # unchanged
    assert db["astetcdir"] == str(private / "etc-b")
    assert db["astspooldir"] == str(private / "spool-b")
    assert db["astdbdir"] == str(private / "lib-b")
    assert db["astvarlibdir"] == da["astvarlibdir"] == str(private / "lib")
    assert a._command("-n") == [str(host), "-C", str(private / "etc/asterisk.conf"), "-n"]
    assert b._command("-n") == [str(host), "-C", str(private / "etc-b/asterisk.conf"), "-n"]
    va, vb = a.view(), b.view()
    assert vb.sounds_dir == va.sounds_dir == private / "lib/sounds/voicecast"
    assert vb.sounds_dir_on_pbx == str(vb.sounds_dir)  # no chroot: the same path
    assert vb.replies_dir == va.replies_dir == private / "spool/voicecast-replies"
    assert vb.calls_log == private / "spool-b/voicecast-sim/calls.log"
    etc = b.render_config()
    assert etc == private / "etc-b" and (private / "lib-b").is_dir()
    assert not (private / "etc").exists()  # a's configuration is a's business


@pytest.mark.parametrize("name", ["B", "b/c", "-b", "b c", "x" * 17, "é"])
def test_instance_names_are_checked(tmp_path: Path, name: str) -> None:
    settings = load_settings(settings_in(tmp_path), environ={})
    with pytest.raises(SandboxError, match="use 1 to 16 of a-z and 0-9"):
        Sandbox(settings, instance=name, ami_port=5039)


@pytest.mark.parametrize("port", [None, 5038])
def test_an_extra_instance_needs_an_ami_port_of_its_own(tmp_path: Path, port: int | None) -> None:
    settings = load_settings(settings_in(tmp_path), environ={})
    with pytest.raises(SandboxError, match=r"needs an AMI port other than \[sandbox\] ami_port"):
        Sandbox(settings, instance="b", ami_port=port)
