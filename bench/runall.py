"""Every benchmark of ``bench/`` in one run, then the Markdown table for the README.

Run: ``bench/run [--quick] [--only NAME ...] [--json FILE] [--markdown FILE]`` (the
wrapper runs this file with the project's ``.venv``). Each bench runs as its own process
(so that peak memory and CPU are its own) and prints its figures as it goes; the sandbox
benches (``dialling``, ``callfiles``) run under ``/tmp/voicecast-sandbox.lock``, with the
sandbox Asterisk started once before them and stopped after them. ``--quick``: a smoke run
of a few seconds per bench (the figures mean little). Every figure is measured in this run
on this machine; the table's header says which machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import SANDBOX_HELD_ENV, fmt, machine_info, sandbox_lock, sandbox_object

BENCH = Path(__file__).resolve().parent
LOCAL = ("ami", "gate", "import")
SANDBOX = ("dialling", "dialling-long", "callfiles")
SCRIPTS = {
    "ami": "ami_events.py",
    "gate": "gate_throughput.py",
    "import": "import_huge.py",
    "dialling": "dialling.py",
    "dialling-long": "dialling.py",
    "callfiles": "callfiles.py",
}
# (arguments always, arguments of the full run only)
ARGS: dict[str, tuple[list[str], list[str]]] = {
    # calls as long as a real broadcast's: a 20 s message (the CPU ratio's other end)
    "dialling-long": (["--cps", "5", "--message-s", "20"], ["--contacts", "200"]),
}


def run_bench(name: str, quick: bool, out: Path, env: dict[str, str] | None = None) -> Any:
    """Run one bench script (its output goes to ours); its ``--json`` results.

    Raises:
        RuntimeError: it exited with an error.
    """
    print(f"\n## {name}", flush=True)
    cmd = [sys.executable, str(BENCH / SCRIPTS[name]), "--json", str(out)]
    always, full = ARGS.get(name, ([], []))
    cmd += always if quick else always + full
    if quick:
        cmd.append("--quick")
    started = time.monotonic()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench {name} exited {proc.returncode}")
    print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
    return json.loads(out.read_text())


def run_all(names: list[str], quick: bool, tmp: Path) -> dict[str, Any]:
    """Run ``names`` (local ones first, then the sandbox ones under the lock)."""
    results: dict[str, Any] = {}
    for name in [n for n in LOCAL if n in names]:
        results[name] = run_bench(name, quick, tmp / f"{name}.json")
    wanted = [n for n in SANDBOX if n in names]
    if wanted:
        with sandbox_lock():
            sb = sandbox_object(tmp)
            sb.up()
            try:
                results["asterisk"] = sb.version() or ""
                for name in wanted:
                    results[name] = run_bench(
                        name, quick, tmp / f"{name}.json", {SANDBOX_HELD_ENV: "1"}
                    )
            finally:
                sb.down()
    return results


def markdown(results: dict[str, Any]) -> str:
    """The README table(s) for ``results``."""
    m = machine_info(results.get("asterisk"))
    lines = [
        f"Measured {m['date']} with `bench/run` on {m['cpu']} ({m['cores']} logical CPUs), "
        f"{m['ram']} RAM, Linux {m['kernel']}, Python {m['python']}"
        + (f", {m['asterisk']}" if "asterisk" in m else "")
        + ".",
        "",
    ]
    dial = {t["target_cps"]: t for t in results.get("dialling", {}).get("targets", [])}
    files = {t["target_cps"]: t for t in results.get("callfiles", {}).get("targets", [])}
    if dial or files:
        contacts = next(iter((dial or files).values()))["contacts"]
        lines += [
            f"Dialling {contacts} contacts (sandbox, simulated callees: people, machines, busy, "
            "no answer, congestion, unallocated):",
            "",
            "| target CPS | voicecast: achieved CPS (ratio) | scheduled→Originate p50 / p99 ms "
            "| CPU per call, controller / Asterisk ms (ratio; without start-up) "
            "| peak calls up "
            "| call files: achieved CPS (ratio) | call files: pacing error p50 / p99 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for cps in sorted(set(dial) | set(files)):
            d, f = dial.get(cps), files.get(cps)
            row = [f"{cps:g}"]
            if d:
                row += [
                    f"{fmt(d['achieved_cps'], 1)} ({fmt(d['cps_ratio'])})",
                    f"{fmt(d['lag_p50_ms'], 0)} / {fmt(d['lag_p99_ms'], 0)}",
                    f"{fmt(d['controller_cpu_per_call_ms'], 1)} / "
                    f"{fmt(d['asterisk_cpu_per_call_ms'], 1)} ({fmt(d['cpu_ratio'])}; "
                    f"{fmt(d['cpu_ratio_after_startup'])})",
                    str(d["peak_calls_up"]),
                ]
            else:
                row += ["-"] * 4
            if f:
                row += [
                    f"{fmt(f['achieved_cps'], 1)} ({fmt(f['cps_ratio'])})",
                    f"{fmt(f['abs_p50_ms'], 0)} / {fmt(f['abs_p99_ms'], 0)}",
                ]
            else:
                row += ["-"] * 2
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if dial:
            d = dial[max(dial)]
            classes = [k for k in d["outcomes"] if k != "none"]
            lines.append(
                f"Outcomes recorded, voicecast: {len(classes)} classes ({', '.join(classes)}); "
                f"{d['correct']}/{d['contacts']} contacts got their callee's outcome "
                f"(at {max(dial):g} CPS)."
            )
        for long in results.get("dialling-long", {}).get("targets", []):
            lines.append(
                f"With a {long['message_s']:g} s message ({long['contacts']} contacts at "
                f"{long['target_cps']:g} CPS, {fmt(long['achieved_cps'], 1)} achieved): CPU per "
                f"call, controller {fmt(long['controller_cpu_per_call_ms'], 1)} ms / Asterisk "
                f"{fmt(long['asterisk_cpu_per_call_ms'], 1)} ms, ratio {fmt(long['cpu_ratio'])} "
                f"({fmt(long['cpu_ratio_after_startup'])} without the controller's start-up)."
            )
        if files:
            f = files[max(files)]
            split = "; ".join(f"{s} = " + " + ".join(c) for s, c in f["status_by_callee"].items())
            lines.append(
                f"Outcomes recorded, call files: {f['recorded']}/{f['contacts']} archived with "
                f"a status, {f['classes']} classes ({split}); {f['identified']}/{f['contacts']} "
                "tell the callee's state."
            )
        lines.append("")
    other = []
    if "ami" in results:
        a = results["ami"]
        t = a["transcript"]
        other.append(
            f"| AMI events parsed and dispatched (transcript of {t['calls']} calls at "
            f"{t['achieved_cps']:g} CPS) | {fmt(a['per_event']['events_per_s'], 0)} events/s "
            f"one per read, {fmt(a['bulk']['events_per_s'], 0)} in 64 KiB reads | "
            f"{fmt(a['headroom_peak'], 0)}× Asterisk's busiest second "
            f"({t['peak_1s_events']:.0f} events/s) |"
        )
    if "import" in results and "rows" in results["import"]:
        i = results["import"]
        other.append(
            f"| contacts import, {i['rows']:,}-row CSV ({i['file_mib']:.0f} MiB, "
            f"{i['distinct']:,} distinct) | {fmt(i['rows_per_s_parse'], 0)} rows/s parsed, "
            f"{fmt(i['rows_per_s_total'], 0)} rows/s parsed and stored; peak RSS "
            f"{i['peak_rss_mib']:.0f} MiB | peak RSS {fmt(i['peak_over_file'])}× the file |"
        )
    if "gate" in results:
        g = results["gate"]
        other.append(
            f"| compliance gate, {g['contacts']:,} contacts | {fmt(g['decisions_per_s'], 0)} "
            f"decisions/s (`decide()`, one core); `campaign check` from SQLite "
            f"{fmt(g['db_contacts_per_s'], 0)} contacts/s | {fmt(g['target_ratio'])}× the "
            "100,000/s target |"
        )
    if other:
        lines += ["| bench | figure | ratio |", "|---|---|---|", *other, ""]
    return "\n".join(lines)


def main() -> int:
    """Run the benches, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per bench")
    parser.add_argument("--only", nargs="+", choices=[*LOCAL, *SANDBOX], help="these benches only")
    parser.add_argument("--json", help="write every bench's figures to this file")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    names = args.only or [*LOCAL, *SANDBOX]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vc-bench-") as name:
        results = run_all(names, args.quick, Path(name))
    table = markdown(results)
    print(f"\n## table for the README ({time.monotonic() - started:.0f} s in all)\n")
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
