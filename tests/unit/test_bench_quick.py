"""The benchmarks that need no Asterisk (AMI events, contacts import, the gate) run in their
quick mode through ``bench/runall.py``, as ``bench/run --quick`` runs them, so that the
scripts cannot rot; plus the pure helpers the dialling benches compute their figures with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ami_events import event_blocks, production_rate
from bench.benchlib import percentile, rate
from bench.dialling import EXPECTED, MIX, bench_numbers, pacing

REPO = Path(__file__).resolve().parents[2]


def test_local_benches_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    table = tmp_path / "table.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "runall.py"), "--quick", "--only", "ami",
         "gate", "import", "--json", str(out), "--markdown", str(table)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(out.read_text())
    ami = got["ami"]
    assert ami["per_event"]["events_per_s"] > 1000 and ami["bulk"]["events_per_s"] > 1000
    assert ami["per_event"]["listener_calls"] > 0 and ami["headroom_peak"] > 1
    assert got["import"]["rows"] == 20_000 and got["import"]["distinct"] == 20_000
    assert got["import"]["rows_per_s_parse"] > 0 and got["import"]["peak_rss_mib"] > 0
    assert got["gate"]["contacts"] == 20_000 and got["gate"]["decisions_per_s"] > 0
    assert sum(got["gate"]["verdicts"].values()) == 20_000
    text = table.read_text()
    for needle in ("AMI events", "contacts import", "compliance gate", "logical CPUs"):
        assert needle in text
    assert text in proc.stdout


def test_pacing_figures() -> None:
    # 4 calls meant 0.1 s apart; the third one 50 ms late, the first one 30 ms late
    sent = [100.03, 100.1, 100.25, 100.3]
    got = pacing(sent, 10)
    # start = min(sent_i - i/10) = 100.0 (no call before its scheduled instant): lags of
    # 30, 0, 50 and 0 ms
    assert got["lag_p50_ms"] == pytest.approx(15, abs=0.01)
    assert got["abs_p99_ms"] == pytest.approx(49.4, abs=0.1)
    assert got["achieved_cps"] == pytest.approx(3 / 0.27)
    assert percentile([1, 2, 3, 4], 50) == 2.5 and rate(1, 0, 1) != rate(1, 0, 1)  # NaN


def test_bench_numbers_cycle_the_mix() -> None:
    numbers = bench_numbers(25)
    assert len(set(numbers)) == 25
    assert [n[-1] for n in numbers[:10]] == list(MIX)
    assert all(n.startswith("+3319900") and n[-1] in EXPECTED for n in numbers)


def test_transcript_events_and_rate() -> None:
    raw = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Response: Success\r\nActionID: x\r\n\r\n"
        b"Event: Newchannel\r\nTimestamp: 10.0\r\nUniqueid: a\r\n\r\n"
        b"Event: Hangup\r\nTimestamp: 10.5\r\nUniqueid: a\r\n\r\n"
        b"Event: Hangup\r\nTimestamp: 11.0\r\nUniq"
    )
    blocks = event_blocks(raw)
    assert [b.split(b"\r\n")[0] for b in blocks] == [b"Event: Newchannel", b"Event: Hangup"]
    got = production_rate(blocks)
    assert got["events"] == 2 and got["events_per_s"] == pytest.approx(2.0)
    assert got["peak_1s_events"] == 2
