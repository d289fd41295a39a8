"""End-to-end fault injection: Asterisk killed and restarted, the AMI connection cut, the
controller SIGKILLed at random points and stopped with SIGTERM, each while calls are up.

Every scenario is audited against Asterisk's own count of the calls it received (the
simulated network's ``calls.log``, see :mod:`tests.e2e.faults_harness`): every attempt
ends with one final outcome, no attempt reaches Asterisk twice (no Originate re-sent), no
call is placed without its attempt row, no attempt row contradicts Asterisk. The same
code prints the README's figures (``bench/faults.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecast.sandbox import SandboxView

from . import faults_harness as h

pytestmark = pytest.mark.e2e


def _report(f: h.Figures) -> str:
    endings = "\n".join(f"{n:4d} {o}: {e}" for (o, e), n in sorted(f.endings.items()))
    return "\n".join(
        [h.table([f]), *f.problems, "outcomes:", endings, "controller output:", f.output]
    )


def test_asterisk_killed_and_restarted_with_20_calls_up(
    tmp_path: Path, sandbox: SandboxView
) -> None:
    f = h.asterisk_restart(tmp_path, sandbox, calls_up=20)
    assert f.clean and not f.problems, _report(f)
    assert f.faults == 1
    # the 20 interrupted calls were closed from Asterisk's channel list, with the reason
    note = "the PBX connection was lost during the call; it had ended when it came back"
    assert f.endings[("human", note)] == 20, _report(f)
    assert f.calls == f.attempts - sum(n for (o, e), n in f.endings.items() if "not sent" in e)


def test_ami_connection_cut_while_calls_are_up(tmp_path: Path, sandbox: SandboxView) -> None:
    f = h.tcp_cut(tmp_path, sandbox)
    assert f.clean and not f.problems, _report(f)
    assert (f.faults, f.calls, f.attempts) == (1, 12, 12), _report(f)
    # the people's calls stayed up in Asterisk and were followed to their end
    assert f.endings[("human", "")] == 8, _report(f)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_controller_sigkilled_at_random_points_of_a_100_contact_campaign(
    tmp_path: Path, sandbox: SandboxView, short_message: Path, seed: int
) -> None:
    f = h.controller_kills(tmp_path, sandbox, short_message, seed, contacts=100, kills=3)
    assert f.clean and not f.problems, _report(f)
    assert f.faults >= 2, _report(f)
    # retries 0: one attempt per contact (a kill never causes a second call; an attempt
    # killed between its commit and its Originate never reached Asterisk, and says so)
    assert f.attempts == 100 and f.calls <= 100, _report(f)
    interrupted = sum(n for (o, e), n in f.endings.items() if e.startswith("interrupted"))
    assert interrupted > 0, _report(f)


def test_sigterm_drains_calls_up_and_places_no_new_call(
    tmp_path: Path, sandbox: SandboxView, short_message: Path
) -> None:
    f = h.controller_sigterm(tmp_path, sandbox, short_message)
    assert f.clean and not f.problems, _report(f)
    assert f.calls == f.attempts > 0, _report(f)
