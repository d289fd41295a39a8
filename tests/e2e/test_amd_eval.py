"""End-to-end: `voicecast amd evaluate` runs the shipped labelled greetings through the
sandbox Asterisk's AMD() ([sim-amd-eval] context) and reports the confusion matrices."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import pytest

from voicecast.amd_eval import DEFAULT_SET

from .conftest import Workspace

pytestmark = pytest.mark.e2e


def _labels(set_dir: Path) -> dict[str, str]:
    with open(set_dir / "labels.csv", encoding="utf-8") as fh:
        return {row["file"]: row["label"] for row in csv.DictReader(fh)}


def test_the_shipped_set_gets_a_verdict_per_recording_and_sane_accuracy(
    workspace: Workspace,
) -> None:
    report = json.loads(workspace.vc("amd", "evaluate", "--json").stdout)
    labels = _labels(DEFAULT_SET)
    results = report["results"]
    assert {r["file"]: r["label"] for r in results} == labels
    assert [r for r in results if r["status"] == "FAILED"] == []
    assert all(r["verdict_ms"] > 0 and r["cause"] for r in results)
    # every recording is in the matrix exactly once
    assert sum(sum(row.values()) for row in report["verdicts"].values()) == len(labels)
    assert sum(sum(row.values()) for row in report["decisions"].values()) == len(labels)
    scores = report["verdict_scores"]
    assert scores["human"]["rate"] >= 0.8, results
    assert scores["machine"]["rate"] >= 0.8, results
    # a silent line is never taken for a person, whatever AMD says
    assert report["verdicts"]["silence"]["HUMAN"] == 0
    assert report["decisions"]["silence"]["human"] == 0
    assert report["amd"]["greeting"] == 1500  # the defaults, untouched
    assert report["policy"] == {"on_notsure": "human", "on_silence": "machine"}


def test_overrides_reach_asterisk_and_the_policy_shapes_the_decisions(
    workspace: Workspace, tmp_path: Path
) -> None:
    subset = tmp_path / "subset"
    subset.mkdir()
    picked = ["human_fr_allo.wav", "machine_en_06s.wav", "silence_pink_50db.wav"]
    rows = _labels(DEFAULT_SET)
    for name in picked:
        shutil.copyfile(DEFAULT_SET / name, subset / name)
    (subset / "labels.csv").write_text(
        "file,label\n" + "".join(f"{n},{rows[n]}\n" for n in picked), encoding="utf-8"
    )
    out = workspace.vc(
        "amd",
        "evaluate",
        "--set",
        str(subset),
        "--amd",
        "maximum_number_of_words=2",
        "--amd-on-silence",
        "no_answer",
    ).stdout
    assert "maximum_number_of_words=2" in out
    assert "policy: NOTSURE -> human, silence -> no_answer" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    # AMDCAUSE MAXWORDS-<words>-<maximum>: the override is what AMD() ran with
    assert "MAXWORDS-3-2" in lines["machine_en_06s.wav"], out
    assert "INITIALSILENCE" in lines["silence_pink_50db.wav"], out
    assert lines["silence_pink_50db.wav"].split()[3] == "no_answer", out
    assert lines["human_fr_allo.wav"].split()[2] == "HUMAN", out


def test_a_running_dialer_on_the_fastagi_port_is_a_clear_error(workspace: Workspace) -> None:
    fa = workspace.settings.fastagi
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((fa.host, fa.port))
        busy.listen()
        proc = workspace.vc("amd", "evaluate", check=False)
    assert proc.returncode == 1
    assert "FastAGI" in proc.stderr and "dialer" in proc.stderr, proc.stderr
