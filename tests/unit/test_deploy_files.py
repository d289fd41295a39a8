"""The deployment files: the Dockerfile (checked statically: no Docker engine runs here),
the systemd unit (``systemd-analyze verify`` and ``security``), the example configurations
under ``deploy/`` and the configuration snippets of ``docs/deployment.md``, against the
settings voicecast really reads."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from voicecast.app import DRAIN_GRACE
from voicecast.config import FastAgiSettings, PbxSettings, WebSettings, load_settings
from voicecast.storage.db import sqlite_file

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
UNIT = REPO / "deploy" / "systemd" / "voicecast.service"
DOC = REPO / "docs" / "deployment.md"
EXAMPLES = [REPO / "deploy" / "voicecast.toml", REPO / "deploy" / "voicecast-scaleout.toml"]
MAX_EXPOSURE = 2.5
"""``systemd-analyze security`` exposure (0 safest, 10 unsafe) the unit must stay under."""


# --- Dockerfile --------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return out


def of(kind: str) -> list[str]:
    return [args for word, args in instructions(DOCKERFILE) if word == kind]


def dockerignored(name: str) -> bool:
    patterns = [
        p.strip()
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def test_the_image_installs_ffmpeg_espeak_and_python() -> None:
    (base,) = of("FROM")
    assert base.startswith("debian:12")
    installs = [r for r in of("RUN") if "apt-get install" in r]
    assert installs, "no apt-get install"
    packages = set(shlex.split(installs[0]))
    for needed in ("python3", "python3-venv", "ffmpeg", "espeak-ng", "fonts-dejavu-core"):
        assert needed in packages, needed
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]


def test_the_image_copies_only_what_exists_and_is_not_ignored() -> None:
    copies = of("COPY")
    sources = []
    for args in copies:
        *srcs, _dest = shlex.split(args)
        assert not any(s.startswith("--") for s in srcs), args
        sources += srcs
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not dockerignored(src), f"COPY {src}: excluded by .dockerignore"
    # what the editable install and the migrations at start need
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    for needed in ("pyproject.toml", readme, "voicecast", "migrations", "asterisk-conf"):
        assert needed in sources, needed
    (install,) = [r for r in of("RUN") if "pip install" in r]
    # voicecast.storage.db.migrations_dir looks beside the source: an editable install
    assert "-e ." in install


def test_dockerignore_keeps_the_sandbox_the_venv_and_local_secrets_out() -> None:
    for name in (".git", ".venv", "var", "voicecast.toml"):
        assert dockerignored(name), name


def test_the_image_runs_voicecast_serve_as_a_non_root_user() -> None:
    words = [w for w, _ in instructions(DOCKERFILE)]
    users = of("USER")
    assert users and users[-1] not in ("root", "0")
    assert "useradd" in " ".join(of("RUN")) and users[-1] in " ".join(of("RUN"))
    # nothing runs as root after the switch
    assert "RUN" not in words[words.index("USER") :]
    assert json.loads(of("CMD")[-1]) == ["voicecast", "serve"]
    assert of("WORKDIR")[-1] == "/var/lib/voicecast"
    assert "/var/lib/voicecast" in json.loads(of("VOLUME")[-1])
    env = " ".join(of("ENV"))
    assert "VOICECAST_CONFIG=/etc/voicecast/voicecast.toml" in env
    assert "VOICECAST_SANDBOX__ENABLED=false" in env


def test_the_image_exposes_fastagi_and_the_console_and_checks_healthz() -> None:
    exposed = {int(p.split("/")[0]) for args in of("EXPOSE") for p in args.split()}
    assert {FastAgiSettings().port, WebSettings().port} <= exposed
    (check,) = of("HEALTHCHECK")
    assert "--start-period" in check and "CMD" in check
    env = " ".join(of("ENV"))
    assert f"HEALTHCHECK_URL=http://127.0.0.1:{WebSettings().port}/healthz" in env
    assert "HEALTHCHECK_URL" in check


# --- systemd unit ------------------------------------------------------------------------------


def unit() -> dict[str, list[tuple[str, str]]]:
    """The unit's sections, each a list of ``(key, value)`` (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(section: str, key: str) -> list[str]:
    return [v for k, v in unit()[section] if k == key]


def test_the_unit_runs_voicecast_serve_with_its_config() -> None:
    assert values("Service", "User") == ["voicecast"]
    assert values("Service", "ExecStart")[0].endswith("/bin/voicecast serve")
    assert "VOICECAST_CONFIG=/etc/voicecast/voicecast.toml" in values("Service", "Environment")
    assert values("Service", "WorkingDirectory") == ["/var/lib/voicecast"]
    assert values("Service", "StateDirectory") == ["voicecast"]
    assert values("Service", "Restart") == ["on-failure"]
    assert values("Install", "WantedBy") == ["multi-user.target"]


def test_the_unit_lets_calls_drain_before_it_kills() -> None:
    (timeout,) = values("Service", "TimeoutStopSec")
    assert float(timeout.removesuffix("s")) > DRAIN_GRACE
    assert values("Service", "KillSignal") == ["SIGTERM"]


def test_the_unit_wants_but_does_not_require_asterisk_and_postgresql() -> None:
    wants = " ".join(values("Unit", "Wants")).split()
    after = " ".join(values("Unit", "After")).split()
    for dep in ("network-online.target", "postgresql.service", "asterisk.service"):
        assert dep in wants and dep in after, dep
    assert not values("Unit", "Requires") and not values("Unit", "BindsTo")


def test_the_unit_is_hardened_and_writes_only_its_folders() -> None:
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert values("Service", key) == [value], key
    writable = [p.removeprefix("-") for p in values("Service", "ReadWritePaths")]
    pbx = PbxSettings()
    assert sorted(writable) == sorted([pbx.sounds_dir, pbx.replies_dir])


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    return found


def verifiable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's voicecast (verify checks that
    the program exists), under its own name."""
    here = Path(sys.executable).parent / "voicecast"
    assert here.is_file(), here
    text = UNIT.read_text().replace("/opt/voicecast/.venv/bin/voicecast", str(here))
    copy = tmp_path / "voicecast.service"
    copy.write_text(text)
    return copy


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    res = subprocess.run(
        [systemd_analyze(), "verify", str(verifiable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


def test_systemd_analyze_security_rates_the_unit_safe(tmp_path: Path) -> None:
    res = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(verifiable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", res.stdout)
    assert found, res.stdout + res.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, res.stdout


# --- example configurations and the guide --------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_example_configs_load_with_absolute_paths(path: Path) -> None:
    settings = load_settings(path, environ={})
    assert settings.sandbox.enabled is False
    db = sqlite_file(settings.database.url)
    assert db is None or db.is_absolute()
    for value in (
        settings.pbx.sounds_dir,
        settings.pbx.replies_dir,
        settings.audio.store_dir,
        settings.audio.tts_cache_dir,
        settings.compliance.hash_key_file,
        settings.journal.signing_key_file,
    ):
        assert Path(value).is_absolute(), value
    for node in settings.pbx.nodes:
        assert node.agi_url.startswith("agi://") and node.trunks
        assert not node.ami_secret and Path(node.ami_secret_file).is_absolute()


def test_the_scale_out_example_is_postgresql_with_several_nodes() -> None:
    settings = load_settings(EXAMPLES[1], environ={})
    assert settings.database.url.startswith("postgresql+psycopg://")
    assert len({n.name for n in settings.pbx.nodes}) >= 2
    assert settings.fastagi.host != "127.0.0.1"


def toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, re.S)


def test_every_toml_snippet_of_the_guide_is_a_valid_config(tmp_path: Path) -> None:
    blocks = toml_blocks(DOC.read_text())
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"snippet-{i}.toml"
        path.write_text(block)
        path.chmod(0o600)
        load_settings(path, environ={})  # raises on an unknown key or a bad value


def test_the_files_the_guide_names_exist() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"`((?:deploy|asterisk-conf|docs)/[\w./-]+)`", text))
    # the bullets of "What each Asterisk node needs"
    named |= {f"asterisk-conf/{n}" for n in re.findall(r"^- `(\w+\.conf)`:", text, re.M)}
    assert "asterisk-conf/manager.conf" in named
    assert "deploy/systemd/voicecast.service" in named
    for name in sorted(named):
        if name.endswith("_local.conf"):
            continue  # the site's own files, which the shipped ones include
        assert (REPO / name).exists(), name
