"""Benchmark: the same campaign through Asterisk call files, the usual do-it-yourself dialer.

Run: ``.venv/bin/python bench/callfiles.py [--contacts 500] [--cps 5 10 20 40] [--quick]
[--json FILE]``. It takes ``/tmp/voicecast-sandbox.lock``, starts the sandbox Asterisk and
stops it at the end (``bench/run`` does that once for all benches).

The DIY script this stands for: a loop that, for the i-th contact, sleeps until
``t0 + i / cps``, writes a call file to a staging folder on the same file system and
renames it into the spool's ``outgoing`` folder (Asterisk's documentation: a call file must
appear there atomically). Asterisk's ``pbx_spool`` (loaded in the sandbox only, see
``voicecast/sandbox.py``) places each call as soon as the file appears (its mtime is now).
The file, per contact::

    Channel: Local/<number>@sim-pstn        (the sandbox's dial string)
    CallerID: "Bench" <+33162000000>
    WaitTime: 5                             (ring timeout, as the voicecast campaign)
    MaxRetries: 0
    Application: Playback                   (the same 1.5 s message)
    Data: <sounds dir>/vcbench-callfile
    Archive: yes                            (outgoing_done keeps the file with its Status)
    Setvar: VC_ATTEMPT=<hex id>             (names the call in the network's calls.log)

The contacts are those of ``bench/dialling.py`` (same numbers, same mix of simulated
callees). Figures (Asterisk's clock, as in ``bench/dialling.py``):

- *achieved CPS* and *ratio* to the target: from the ``Newchannel`` events of the calls'
  outbound legs, (calls - 1) / (last - first);
- *pacing error*: |sent - scheduled| per call, p50 and p99, with *scheduled* defined as in
  ``bench/dialling.py`` (``start + i / cps``, ``start = min(sent_i - i / cps)``); and the
  *pick-up latency*: from the rename into ``outgoing`` to Asterisk's ``Newchannel``;
- *outcomes recorded*: the ``Status:`` line pbx_spool appends to the archived file:
  ``Completed`` (answered: the application ran), ``Expired`` (not answered and no retry
  left: busy, no answer, congestion and unallocated numbers alike) or ``Failed``; shown
  against the outcome each simulated callee stands for. A call *tells the callee's state*
  when its status is given to one kind of callee only in this run. (The reason of a failed
  call appears only as a NOTICE in Asterisk's log: "Call failed to go through, reason (5)".)
- *CPU*: Asterisk's (``/proc/<pid>/stat`` difference over the run) and the writer loop's
  own (``time.thread_time``), per call.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import (
    AmiRecorder,
    SandboxHandle,
    cpu_seconds,
    fmt,
    machine_info,
    percentile,
    sandbox_session,
    wait_for,
    write_json,
)
from bench.dialling import (
    EXPECTED,
    FULL_TARGETS,
    MESSAGE_S,
    QUICK_TARGETS,
    RING_TIMEOUT,
    bench_numbers,
    pacing,
)
from tests.e2e import faults_harness as h

CALLER = '"Bench" <+33162000000>'
MESSAGE_NAME = "vcbench-callfile"


def call_file(number: str, attempt: str, message_on_pbx: str) -> str:
    """The text of one call file (see the module docstring)."""
    return (
        f"Channel: Local/{number}@sim-pstn\n"
        f"CallerID: {CALLER}\n"
        f"WaitTime: {RING_TIMEOUT}\n"
        "MaxRetries: 0\n"
        "RetryTime: 60\n"
        "Application: Playback\n"
        f"Data: {message_on_pbx}\n"
        "Archive: yes\n"
        f"Setvar: VC_ATTEMPT={attempt}\n"
    )


def status_of(path: Path) -> str:
    """The last ``Status:`` pbx_spool appended to an archived call file (``none``)."""
    status = "none"
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("Status:"):
            status = line.split(":", 1)[1].strip()
    return status


def run_target(
    sandbox: SandboxHandle, cps: float, contacts: int, message_on_pbx: str
) -> dict[str, Any]:
    """Write one call file per contact at ``cps``, wait until Asterisk archived them all;
    the figures (see the module docstring)."""
    spool = sandbox.spool_dir
    outgoing, done = spool / "outgoing", spool / "outgoing_done"
    staging = spool / "vcbench-staging"
    staging.mkdir(exist_ok=True)
    run = uuid.uuid4().hex[:8]
    numbers = bench_numbers(contacts)
    names = [f"vcbench-{run}-{i:04d}.call" for i in range(contacts)]
    attempts = [uuid.uuid4().hex for _ in numbers]
    calls_log = h.CallLog(sandbox.view.calls_log)
    recorder = AmiRecorder(sandbox.view.ami_port, sandbox.view.secret)
    ast_pid = sandbox.pid
    written: list[float] = []
    try:
        ast_before = cpu_seconds(ast_pid)
        started = time.time()
        t0 = started + 0.2
        writer_cpu0 = time.thread_time()
        for i, (name, number, attempt) in enumerate(zip(names, numbers, attempts, strict=True)):
            delay = t0 + i / cps - time.time()
            if delay > 0:
                time.sleep(delay)
            tmp = staging / name
            tmp.write_text(call_file(number, attempt, message_on_pbx))
            os.rename(tmp, outgoing / name)
            written.append(time.time())
        writer_cpu = time.thread_time() - writer_cpu0
        finished = wait_for(
            lambda: all((done / n).exists() for n in names), timeout=RING_TIMEOUT + 90, interval=0.2
        )
        ended = time.time()
        ast_after = cpu_seconds(ast_pid)
        time.sleep(0.3)
    finally:
        recorder.close()
        for name in names:  # leave nothing behind: a call file left in outgoing would call
            with contextlib.suppress(FileNotFoundError):
                (outgoing / name).unlink()
        shutil.rmtree(staging, ignore_errors=True)
    statuses = {}
    for number, name in zip(numbers, names, strict=True):
        path = done / name
        statuses[number] = status_of(path) if path.exists() else "not archived"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    legs = recorder.first_legs()
    sent = sorted(legs[n] for n in numbers if n in legs)
    pickup = [(legs[n] - w) * 1000 for n, w in zip(numbers, written, strict=True) if n in legs]
    by_status: dict[str, Counter[str]] = defaultdict(Counter)
    for number, status in statuses.items():
        by_status[status][EXPECTED[number[-1]]] += 1
    identified = sum(sum(c.values()) for c in by_status.values() if len(c) == 1)
    recorded = sum(1 for s in statuses.values() if s in ("Completed", "Expired", "Failed"))
    received = Counter(c.attempt_id for c in calls_log.calls())
    ast_cpu = ast_after - ast_before
    result: dict[str, Any] = {
        "target_cps": cps,
        "contacts": contacts,
        "all_archived": finished,
        "calls_seen": len(sent),
        "calls_received_by_network": sum(1 for a in attempts if received.get(a)),
        "wall_s": ended - started,
        "writer_cps": (len(written) - 1) / (written[-1] - written[0])
        if len(written) > 1
        else float("nan"),
        **pacing(sent, cps),
        "pickup_p50_ms": percentile(pickup, 50),
        "pickup_p99_ms": percentile(pickup, 99),
        "statuses": dict(sorted(Counter(statuses.values()).items())),
        "status_by_callee": {s: dict(sorted(c.items())) for s, c in sorted(by_status.items())},
        "recorded": recorded,
        "identified": identified,
        "classes": len([s for s in by_status if s != "not archived"]),
        "asterisk_cpu_s": ast_cpu,
        "asterisk_cpu_per_call_ms": 1000 * ast_cpu / max(len(sent), 1),
        "writer_cpu_per_call_ms": 1000 * writer_cpu / max(len(written), 1),
    }
    result["cps_ratio"] = result["achieved_cps"] / cps
    return result


def print_target(r: dict[str, Any]) -> None:
    """The figures of one target."""
    print(
        f"call files, target {r['target_cps']:g} CPS: achieved {fmt(r['achieved_cps'])} CPS "
        f"(ratio {fmt(r['cps_ratio'])}); pacing error p50 {fmt(r['abs_p50_ms'], 0)} ms, "
        f"p99 {fmt(r['abs_p99_ms'], 0)} ms; pick-up after the rename p50 "
        f"{fmt(r['pickup_p50_ms'], 0)} ms, p99 {fmt(r['pickup_p99_ms'], 0)} ms; "
        f"{r['calls_seen']} calls seen by Asterisk"
    )
    split = "; ".join(
        f"{status}: " + ", ".join(f"{k} {v}" for k, v in callees.items())
        for status, callees in r["status_by_callee"].items()
    )
    print(
        f"  outcome recorded for {r['recorded']}/{r['contacts']} calls, {r['classes']} "
        f"classes; telling the callee's state: {r['identified']}/{r['contacts']} ({split})"
    )
    print(
        f"  CPU per call: Asterisk {fmt(r['asterisk_cpu_per_call_ms'], 1)} ms, writer loop "
        f"{fmt(r['writer_cpu_per_call_ms'], 2)} ms; {fmt(r['wall_s'], 1)} s"
        + ("" if r["all_archived"] else "; NOT all archived in time")
    )


def main() -> None:
    """Run every target and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, help="call files per run (default 500)")
    parser.add_argument("--cps", type=float, nargs="+", help="CPS targets (default 5 10 20 40)")
    parser.add_argument("--quick", action="store_true", help="30 call files at 20 CPS")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    contacts = args.contacts or (30 if args.quick else 500)
    targets = args.cps or (QUICK_TARGETS if args.quick else FULL_TARGETS)
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="vc-bench-callfiles-") as name,
        sandbox_session(Path(name)) as sandbox,
    ):
        view = sandbox.view
        message = h.tone(Path(name) / "message.wav", MESSAGE_S)
        published = Path(view.sounds_dir) / f"{MESSAGE_NAME}.wav"
        shutil.copyfile(message, published)
        try:
            for cps in targets:
                result = run_target(
                    sandbox, cps, contacts, f"{view.sounds_dir_on_pbx}/{MESSAGE_NAME}"
                )
                print_target(result)
                results.append(result)
        finally:
            published.unlink(missing_ok=True)
        version = sandbox.version
    write_json(
        args.json, {"bench": "callfiles", "machine": machine_info(version), "targets": results}
    )


if __name__ == "__main__":
    main()
