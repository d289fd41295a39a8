"""Fault injection figures: faults injected, calls Asterisk received, duplicates, lost.

Run (as the sandbox's user, nothing else using it):
``flock /tmp/voicecast-sandbox.lock .venv/bin/python bench/faults.py [--seeds 1 2 3]``.

Starts the sandbox Asterisk (``var/sandbox``, or ``VOICECAST_TEST_SANDBOX_DIR``), runs the
scenarios of ``tests/e2e/faults_harness.py`` (the same code as the end-to-end tests in
``tests/e2e/test_faults.py``) each in a fresh workspace, prints one row per scenario run
and stops the sandbox. Calls are counted from Asterisk's side: the simulated network's
``calls.log`` (one line per call received). Exit status 1 when any row has a duplicate,
an unknown call, a lost or non-final attempt or a stuck contact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e import faults_harness as h
from tests.e2e.conftest import SANDBOX_DIR
from voicecast.config import load_settings
from voicecast.sandbox import Sandbox

SCENARIOS = ("restart", "cut", "kill", "term")


def main() -> int:
    """Run the scenarios and print the table; 1 when a row is not clean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per seed")
    parser.add_argument("--only", choices=SCENARIOS, nargs="+", default=list(SCENARIOS))
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also the outcomes and controller output"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vc-faults-") as name:
        tmp = Path(name)
        cfg = tmp / "sandbox.toml"
        cfg.write_text(f'[sandbox]\nenabled = true\ndir = "{SANDBOX_DIR}"\n')
        sb = Sandbox(load_settings(cfg, environ={}), log=print)
        sb.up()
        rows: list[h.Figures] = []
        try:
            view = sb.view()
            short = h.tone(tmp / "short.wav", 1.5)
            if "restart" in args.only:
                rows.append(h.asterisk_restart(tmp / "restart", view))
            if "cut" in args.only:
                rows.append(h.tcp_cut(tmp / "cut", view))
            if "kill" in args.only:
                for seed in args.seeds:
                    rows.append(
                        h.controller_kills(
                            tmp / f"kill-{seed}", view, short, seed, kills=args.kills
                        )
                    )
            if "term" in args.only:
                rows.append(h.controller_sigterm(tmp / "term", view, short))
        finally:
            sb.down()
    print(h.table(rows))
    for row in rows:
        if args.verbose:
            print(f"\n## {row.scenario} (seed {row.seed})")
            for (outcome, error), n in sorted(row.endings.items()):
                print(f"{n:4d} {outcome}: {error}")
            print(row.output)
        for problem in row.problems:
            print(f"{row.scenario} (seed {row.seed}): {problem}")
    return 0 if all(r.clean and not r.problems for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
