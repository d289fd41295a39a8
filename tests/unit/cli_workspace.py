"""A workspace for CLI tests: a voicecast.toml in a temporary folder, and click's runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from voicecast.cli import main

BASE_CONFIG = """\
[database]
url = "sqlite:///var/test.db"

[sandbox]
enabled = false

[report]
timezone = "Europe/Paris"

[compliance]
hash_key_file = "var/keys/hash.key"
"""
"""SQLite under ``var/``, no sandbox, report times in Paris, the hash key under ``var/``."""


def make_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> Path:
    """Write :data:`BASE_CONFIG` plus ``extra`` (more TOML sections) to
    ``tmp_path/voicecast.toml``, move into ``tmp_path``; return the config's path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    path = tmp_path / "voicecast.toml"
    path.write_text(BASE_CONFIG + ("\n" + extra if extra else ""), encoding="utf-8")
    path.chmod(0o600)  # as `voicecast init` makes it (the CLI refuses a config others may change)
    return path


def run_cli(config: Path, *args: str, catch_exceptions: bool = False) -> Result:
    """``voicecast --config CONFIG ARGS...`` through click's runner."""
    return CliRunner().invoke(
        main, ["--config", str(config), *args], catch_exceptions=catch_exceptions
    )


def said(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())
