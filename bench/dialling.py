"""Benchmark: a 500-contact campaign dialled through the sandbox Asterisk at rising CPS targets.

Run: ``.venv/bin/python bench/dialling.py [--contacts 500] [--cps 5 10 20 40] [--quick]
[--json FILE]``. It takes ``/tmp/voicecast-sandbox.lock``, starts the sandbox Asterisk
(``var/sandbox`` or ``VOICECAST_TEST_SANDBOX_DIR``) and stops it at the end (``bench/run``
does that once for all benches). No pass/fail: the figures of this one run are printed.

Each target gets a fresh workspace, used as a user would: ``voicecast init``, ``audio add``
(a 1.5 s tone, ``--message-s`` to change it), ``contacts import``, ``campaign create``
(informational, so it may run at any hour; ``--cps`` = the target, ``--max-channels`` =
(13.5 s + the message) x the target + 20 so that the CPS limit, not the channels, paces
the calls; ``--ring-timeout 5 --retries 0``) and then
``voicecast campaign start NAME --wait`` as a separate process, the *controller*, whose
CPU is measured apart from this harness. The contacts are fictional French numbers
(+33 1 99 00 xx xx) whose last digits choose the simulated callee (README, "The sandbox and
its simulated network"), cycling through ``0023345566``: per 10 contacts 2 people
(``human``), 1 answering machine (``machine``), 2 busy, 1 no answer (5 s), 2 congestion and
2 numbers that do not exist: the calls end within about 12 s.

Definitions (Asterisk's clock: the ``Timestamp`` of AMI events, received by a recorder
logged in as the controller's AMI user, which sends no action):

- *sent*: when Asterisk saw the call: the ``Newchannel`` event of the call's outbound leg
  (``Local/<number>@sim-pstn-...;1``), which Asterisk creates when it runs the Originate;
- *scheduled*: the ideal pacing instant of the i-th call (i = 0, 1, ... in Asterisk's
  order), ``start + i / cps``, where ``start`` is the latest instant from which no call
  went out before its scheduled time, ``min(sent_i - i / cps)``: the first call's instant
  unless a later call came early (the controller's start-up, AMI login and audio
  publishing are not pacing: they are shown as *start-up s*); or the contact's due time
  if later (never here: every contact is due when the campaign starts, no retries);
- *lag*: sent - scheduled; p50 and p99 over the calls;
- *achieved CPS*: (calls - 1) / (last sent - first sent), the Originates per second over
  the dialling window; *ratio*: achieved / target;
- *CPU*: user + system seconds. The controller's is its whole run (start-up included) from
  ``wait4()``'s resource usage; Asterisk's is the difference of ``utime + stime`` in
  ``/proc/<pid>/stat`` of the sandbox Asterisk between the controller's start and its exit.
  Per completed call: divided by the attempts that ended with a final outcome. The issue's
  target: the controller's CPU below 1/10 of Asterisk's (ratio < 0.10).
- *peak calls up*: the most outbound legs alive at once (Newchannel/Hangup order).
- *correct*: contacts whose outcome is the one their simulated callee should give.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import (
    AmiRecorder,
    CpuSampler,
    SandboxHandle,
    cpu_seconds,
    fmt,
    machine_info,
    percentile,
    rate,
    sandbox_session,
    write_json,
)
from tests.e2e import faults_harness as h

MIX = "0023345566"
"""Last digits of the contacts, in order (cycled): the simulated callees (README, "The
sandbox and its simulated network")."""
EXPECTED = {
    "0": "human",
    "2": "machine",
    "3": "busy",
    "4": "no_answer",
    "5": "congestion",
    "6": "invalid_number",
}
"""The outcome voicecast must record for each last digit of :data:`MIX`."""
RING_TIMEOUT = 5
MESSAGE_S = 1.5
FULL_TARGETS = [5.0, 10.0, 20.0, 40.0]
QUICK_TARGETS = [20.0]


def bench_numbers(count: int) -> list[str]:
    """``count`` fictional numbers (+33 1 99 00 xx xx, at most 1000) whose last digits cycle
    through :data:`MIX`."""
    if not 0 < count <= 1000:
        raise ValueError("1 to 1000 contacts")
    return h.numbers_ending([MIX[i % len(MIX)] for i in range(count)])


def channels_for(cps: float, message_s: float = MESSAGE_S) -> int:
    """``--max-channels`` for a target: calls last at most ~12 s with the default message
    (about 10 s plus the message), so that many seconds of calls plus a margin never lets
    the channel limit pace the dialling."""
    return min(10000, math.ceil(cps * (13.5 + message_s)) + 20)


def wav_seconds(path: Path) -> float:
    """Length of a WAV file in seconds."""
    with wave.open(str(path)) as w:
        frames: int = w.getnframes()
        framerate: int = w.getframerate()
    return frames / framerate


def peak_up(recorder: AmiRecorder) -> int:
    """The most outbound legs (``Local/...;1``) alive at once, in Asterisk's event order."""
    up: set[str] = set()
    peak = 0
    for e in recorder.events:
        channel = e.get("Channel") or ""
        if not (channel.startswith("Local/") and channel.endswith(";1")):
            continue
        if e.event == "Newchannel":
            up.add(e.get("Uniqueid") or "")
            peak = max(peak, len(up))
        elif e.event == "Hangup":
            up.discard(e.get("Uniqueid") or "")
    return peak


def pacing(sent: list[float], cps: float) -> dict[str, float]:
    """Achieved CPS and lag (ms) of ``sent`` instants (sorted) against ideal pacing at
    ``cps`` (see the module docstring): ``start`` is the latest instant from which no call
    went out before its scheduled time, ``min(sent[i] - i / cps)``."""
    if not sent:
        nan = float("nan")
        return {"achieved_cps": nan, "lag_p50_ms": nan, "lag_p99_ms": nan, "abs_p50_ms": nan,
                "abs_p99_ms": nan}  # fmt: skip
    start = min(t - i / cps for i, t in enumerate(sent))
    lags = [(t - (start + i / cps)) * 1000 for i, t in enumerate(sent)]
    return {
        "achieved_cps": rate(len(sent), sent[0], sent[-1]),
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "abs_p50_ms": percentile([abs(x) for x in lags], 50),
        "abs_p99_ms": percentile([abs(x) for x in lags], 99),
    }


def run_target(
    tmp: Path,
    sandbox: SandboxHandle,
    cps: float,
    contacts: int,
    message: Path,
    profile: Path | None = None,
    recorders: list[AmiRecorder] | None = None,
) -> dict[str, Any]:
    """One campaign at ``cps``; its figures (see the module docstring). ``profile``: run
    the controller under cProfile and write its statistics there (the CPU figures then
    include the profiler's overhead). ``recorders``: the run's AMI recorder is appended
    (its events and bytes, e.g. to keep a transcript)."""
    ws = h.open_workspace(tmp, sandbox.view, web=False)
    name = f"cps{cps:g}".replace(".", "_")
    numbers = bench_numbers(contacts)
    h.prepare_campaign(
        ws,
        name,
        numbers,
        message,
        max_channels=channels_for(cps, wav_seconds(message)),
        cps=cps,
        ring_timeout=RING_TIMEOUT,
        retries=0,
    )
    recorder = AmiRecorder(sandbox.view.ami_port, sandbox.view.secret)
    if recorders is not None:
        recorders.append(recorder)
    ast_pid = sandbox.pid
    log_path = tmp / "controller.log"
    timeout = contacts / cps + 120
    try:
        ast_before = cpu_seconds(ast_pid)
        spawned = time.time()
        with open(log_path, "w") as log_fh:
            prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
            proc = subprocess.Popen(
                [sys.executable, *prof, "-m", "voicecast", "campaign", "start", name, "--wait"],
                cwd=tmp,
                env={**os.environ, "VOICECAST_CONFIG": str(ws.config)},
                stdout=log_fh,
                stderr=subprocess.STDOUT,
            )
        sampler = CpuSampler(proc.pid)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        ended = time.time()
        ast_after = cpu_seconds(ast_pid)
        sampler.stop()
        time.sleep(0.3)  # the last events of the run reach the recorder
    finally:
        recorder.close()
    ctrl_cpu = usage.ru_utime + usage.ru_stime
    legs = recorder.first_legs()
    ours = set(numbers)
    sent = sorted(t for n, t in legs.items() if n in ours)
    rows = ws.report(name)
    outcomes = Counter(str(r["outcome"] or "none") for r in rows)
    by_number = {r["number"]: r["outcome"] for r in rows}
    correct = sum(1 for n in numbers if by_number.get(n) == EXPECTED[n[-1]])
    completed = sum(int(r["attempts"] or 0) for r in rows if r["outcome"])
    first = sent[0] if sent else ended
    startup_cpu = sampler.at(first)
    ast_cpu = ast_after - ast_before
    result: dict[str, Any] = {
        "target_cps": cps,
        "contacts": contacts,
        "max_channels": channels_for(cps, wav_seconds(message)),
        "message_s": wav_seconds(message),
        "calls_seen": len(sent),
        "exit_status": proc.returncode,
        "wall_s": ended - spawned,
        "startup_s": first - spawned,
        "dialling_s": (sent[-1] - sent[0]) if len(sent) > 1 else float("nan"),
        **pacing(sent, cps),
        "peak_calls_up": peak_up(recorder),
        "completed_calls": completed,
        "outcomes": dict(sorted(outcomes.items())),
        "correct": correct,
        "controller_cpu_s": ctrl_cpu,
        "controller_startup_cpu_s": startup_cpu,
        "asterisk_cpu_s": ast_cpu,
        "controller_cpu_per_call_ms": 1000 * ctrl_cpu / max(completed, 1),
        "asterisk_cpu_per_call_ms": 1000 * ast_cpu / max(completed, 1),
        "cpu_ratio": ctrl_cpu / ast_cpu if ast_cpu > 0 else float("nan"),
        "cpu_ratio_after_startup": (ctrl_cpu - startup_cpu) / ast_cpu
        if ast_cpu > 0
        else float("nan"),
    }
    result["cps_ratio"] = result["achieved_cps"] / cps
    if proc.returncode != 0:
        result["controller_output_tail"] = log_path.read_text(errors="replace")[-2000:]
    return result


def print_target(r: dict[str, Any]) -> None:
    """The figures of one target, one block of lines."""
    print(
        f"target {r['target_cps']:g} CPS: achieved {fmt(r['achieved_cps'])} CPS "
        f"(ratio {fmt(r['cps_ratio'])}); scheduled->sent p50 {fmt(r['lag_p50_ms'], 0)} ms, "
        f"p99 {fmt(r['lag_p99_ms'], 0)} ms; {r['calls_seen']} calls seen by Asterisk, "
        f"peak {r['peak_calls_up']} up (max {r['max_channels']})"
    )
    print(
        f"  CPU per completed call: controller {fmt(r['controller_cpu_per_call_ms'], 1)} ms, "
        f"Asterisk {fmt(r['asterisk_cpu_per_call_ms'], 1)} ms: ratio {fmt(r['cpu_ratio'])} "
        f"(target < 0.10; {fmt(r['cpu_ratio_after_startup'])} without the controller's "
        f"start-up, {fmt(r['controller_startup_cpu_s'])} s CPU)"
    )
    outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())
    print(
        f"  {r['completed_calls']} completed calls in {fmt(r['wall_s'], 1)} s (start-up "
        f"{fmt(r['startup_s'], 1)} s); outcomes: {outcomes}; correct {r['correct']}/"
        f"{r['contacts']}; controller exit {r['exit_status']}"
    )
    if "controller_output_tail" in r:
        print("  controller output (tail):\n" + r["controller_output_tail"])


def main() -> None:
    """Run every target and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, help="contacts per campaign (default 500)")
    parser.add_argument("--cps", type=float, nargs="+", help="CPS targets (default 5 10 20 40)")
    parser.add_argument("--quick", action="store_true", help="30 contacts at 20 CPS")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--message-s",
        type=float,
        default=MESSAGE_S,
        help=f"length of the message in seconds (default {MESSAGE_S:g}: short calls)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run each controller under cProfile, writing DIR/cps-<target>.prof "
        "(inflates its CPU figures)",
    )
    args = parser.parse_args()
    contacts = args.contacts or (30 if args.quick else 500)
    targets = args.cps or (QUICK_TARGETS if args.quick else FULL_TARGETS)
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="vc-bench-dial-") as name,
        sandbox_session(Path(name)) as sandbox,
    ):
        tmp = Path(name)
        message = h.tone(tmp / "message.wav", args.message_s)
        for cps in targets:
            profile = args.profile.resolve() / f"cps-{cps:g}.prof" if args.profile else None
            if profile is not None:
                profile.parent.mkdir(parents=True, exist_ok=True)
            result = run_target(tmp / f"cps-{cps:g}", sandbox, cps, contacts, message, profile)
            print_target(result)
            results.append(result)
        version = sandbox.version
    write_json(
        args.json, {"bench": "dialling", "machine": machine_info(version), "targets": results}
    )


if __name__ == "__main__":
    main()
