"""The sandbox benchmarks (``bench/dialling.py``, ``bench/callfiles.py``) in their quick mode
against the sandbox Asterisk, so that the scripts cannot rot; and the README table made
from their figures. The sandbox is the session's (already up): the scripts are told so
(``VOICECAST_BENCH_SANDBOX_UP=1``) and neither lock, start nor stop it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.benchlib import SANDBOX_HELD_ENV
from bench.runall import markdown
from voicecast.sandbox import SandboxView

from .conftest import REPO

pytestmark = pytest.mark.e2e


def _bench(script: str, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick", "--json", str(out)],
        env={**os.environ, SANDBOX_HELD_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_sandbox_benches_quick(sandbox: SandboxView, tmp_path: Path) -> None:
    dialling = _bench("dialling.py", tmp_path / "dialling.json")
    (d,) = dialling["targets"]
    assert d["exit_status"] == 0 and d["calls_seen"] == 30 and d["correct"] == 30
    assert d["completed_calls"] == 30 and d["achieved_cps"] > 0 and d["cpu_ratio"] > 0
    assert d["peak_calls_up"] <= d["max_channels"]
    callfiles = _bench("callfiles.py", tmp_path / "callfiles.json")
    (c,) = callfiles["targets"]
    assert c["all_archived"] and c["calls_seen"] == 30 and c["recorded"] == 30
    assert c["calls_received_by_network"] == 30
    # call files tell answered (Completed) from not answered (Expired), nothing finer
    assert set(c["statuses"]) == {"Completed", "Expired"} and c["identified"] == 0
    table = markdown({"dialling": dialling, "callfiles": callfiles})
    assert "| 20 | " in table and "Completed = human + machine" in table
