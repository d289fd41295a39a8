"""Fault injection against the sandbox Asterisk: the scenarios, the audit, the figures.

Shared by the end-to-end tests (``tests/e2e/test_faults.py``) and the figures script
(``bench/faults.py``), so the numbers quoted in the README come from the code CI runs.

Each scenario runs one campaign in a fresh workspace, injects its faults, lets the
controller finish the campaign, then audits the database against Asterisk's own count of
the calls it received: the simulated network appends one line per call to
``calls.log`` (:attr:`voicecast.sandbox.SandboxView.calls_log`) before the callee does
anything, so a call placed and never recorded, or placed twice, shows there even when
Asterisk itself was killed.

Audit (:func:`audit`), per campaign:

- ``duplicates``: calls Asterisk received beyond the first for one attempt id (an
  Originate re-sent; a number called again without a new attempt row is ``unknown``);
- ``unknown``: calls whose attempt id is in no attempt row (a call placed, not recorded);
- ``lost``: attempt rows that contradict Asterisk: no call received yet not recorded as
  ``failed`` with a reason, or a call received for an attempt recorded as not sent;
- ``non_final``: attempt rows not ``ended`` with an outcome;
- ``stuck``: contacts left ``dialing`` (neither done nor waiting for a retry).

A scenario passes when all five are zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from voicecast.config import load_settings
from voicecast.dialer.controller import CLAIM_SPAN
from voicecast.sandbox import Sandbox, SandboxView
from voicecast.storage.db import make_engine, session_factory
from voicecast.storage.models import CallAttempt, Campaign, CampaignContact

from .conftest import INFORMATIONAL, SANDBOX_DIR, Workspace, free_port

CALLER_ID = "+33162000000"
RUN_TIMEOUT = 150.0  # seconds one controller run may take before the scenario fails


# --- Asterisk's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One line of the simulated network's ``calls.log``."""

    epoch: int
    number: str
    attempt_id: str  # "none" when the call carried no VC_ATTEMPT
    unique_id: str


class CallLog:
    """The calls the simulated network receives from now on (lines appended after the
    offset the log had at creation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def calls(self) -> list[Call]:
        """Every call received since creation, in order.

        Raises:
            ValueError: a line does not have the four fields the dialplan writes.
        """
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read().decode()
        out = []
        for line in data.splitlines():
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4:
                raise ValueError(f"{self.path}: malformed line {line!r}")
            out.append(Call(int(parts[0]), parts[1], parts[2], parts[3]))
        return out


# --- the audit ------------------------------------------------------------------------------


@dataclass
class Figures:
    """One scenario's result (one row of the figures table)."""

    scenario: str
    seed: int | None = None
    faults: int = 0
    calls: int = 0
    attempts: int = 0
    duplicates: int = 0
    unknown: int = 0
    lost: int = 0
    non_final: int = 0
    stuck: int = 0
    wall: float = 0.0
    problems: list[str] = field(default_factory=list)
    #: how many attempts ended with each (outcome, error)
    endings: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the controller's output (every run, in order)
    output: str = ""

    @property
    def clean(self) -> bool:
        """True when nothing was duplicated, unknown, lost, non-final or stuck."""
        return not (self.duplicates or self.unknown or self.lost or self.non_final or self.stuck)


def audit(sessions: sessionmaker[Session], calls: list[Call], figures: Figures) -> Figures:
    """Compare every attempt row of the workspace's database with ``calls`` (Asterisk's
    side) and fill ``figures``; ``problems`` names each offending attempt or call."""
    with sessions() as s:
        attempts = list(s.scalars(select(CallAttempt)))
        stuck = list(s.scalars(select(CampaignContact).where(CampaignContact.state == "dialing")))
    by_id = {a.id: a for a in attempts}
    per_attempt = Counter(c.attempt_id for c in calls)
    problems = figures.problems
    dup = 0
    for attempt_id, n in per_attempt.items():
        if n > 1 and attempt_id in by_id:
            dup += n - 1
            problems.append(f"attempt {attempt_id} reached Asterisk {n} times")
    unknown = [c for c in calls if c.attempt_id not in by_id]
    problems += [f"call {c.unique_id} to {c.number}: no attempt row" for c in unknown]
    lost = 0
    for a in attempts:
        reached = per_attempt.get(a.id, 0) > 0
        if not reached and not (a.outcome == "failed" and a.error):
            lost += 1
            problems.append(f"attempt {a.id} ({a.outcome}, {a.error}): Asterisk never saw it")
        elif reached and a.originate_sent_at is None:
            lost += 1
            problems.append(f"attempt {a.id}: recorded as not sent, yet Asterisk received it")
    non_final = [a for a in attempts if a.state != "ended" or not a.outcome]
    problems += [f"attempt {a.id} left {a.state}" for a in non_final]
    problems += [f"contact {c.phone_e164} left dialing" for c in stuck]
    figures.endings = Counter((str(a.outcome), a.error or "") for a in attempts)
    figures.calls = len(calls)
    figures.attempts = len(attempts)
    figures.duplicates = dup
    figures.unknown = len(unknown)
    figures.lost = lost
    figures.non_final = len(non_final)
    figures.stuck = len(stuck)
    return figures


def outcomes(sessions: sessionmaker[Session]) -> Counter[str]:
    """How many attempts ended with each outcome."""
    with sessions() as s:
        return Counter(str(o) for o in s.scalars(select(CallAttempt.outcome)))


def errors(sessions: sessionmaker[Session]) -> list[str]:
    """The error (reason) of every attempt that has one."""
    with sessions() as s:
        return [e for e in s.scalars(select(CallAttempt.error)) if e]


def campaign_status(sessions: sessionmaker[Session], name: str) -> str | None:
    """The campaign's status (``running``, ``completed``...)."""
    with sessions() as s:
        return s.scalar(select(Campaign.status).where(Campaign.name == name))


def count_attempts(sessions: sessionmaker[Session], state: str | None = None) -> int:
    """Attempt rows (in ``state`` when given)."""
    with sessions() as s:
        q = select(func.count()).select_from(CallAttempt)
        if state is not None:
            q = q.where(CallAttempt.state == state)
        return int(s.scalar(q) or 0)


# --- workspaces and processes ---------------------------------------------------------------


def open_workspace(
    tmp: Path, view: SandboxView, *, ami_port: int | None = None, web: bool = True
) -> Workspace:
    """A fresh, initialised voicecast workspace in ``tmp`` on the sandbox.

    ``ami_port``: where the controller reaches AMI instead of the sandbox's own port (the
    TCP-cut proxy); the sandbox Asterisk itself is not touched. ``web``: whether
    ``voicecast serve`` starts the console.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "voicecast.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp}/voicecast.db"\n'
        f'[sandbox]\nenabled = true\ndir = "{SANDBOX_DIR}"\n'
        + (f"ami_port = {ami_port}\n" if ami_port is not None else "")
        + f'[audio]\nstore_dir = "{tmp}/audio"\n'
        f"[web]\nenabled = {'true' if web else 'false'}\nport = {free_port()}\n"
    )
    settings = load_settings(cfg, environ={})
    ws = Workspace(tmp, cfg, settings, session_factory(make_engine(settings.database_url())), view)
    ws.vc("init")
    return ws


def prepare_campaign(
    ws: Workspace,
    name: str,
    numbers: list[str],
    message: Path,
    *,
    max_channels: int,
    cps: float = 10,
    ring_timeout: float = 10,
    retries: int = 0,
) -> None:
    """Import ``numbers`` and create campaign ``name`` playing ``message`` (not started)."""
    ws.vc("audio", "add", str(message), "--name", "msg")
    csv = ws.write_contacts(f"{name}.csv", numbers)
    ws.vc("contacts", "import", str(csv), "--list", name)
    ws.vc(
        "campaign",
        "create",
        name,
        "--list",
        name,
        "--message",
        "msg",
        *INFORMATIONAL,
        "--caller-id",
        CALLER_ID,
        "--max-channels",
        str(max_channels),
        "--cps",
        str(cps),
        "--ring-timeout",
        str(ring_timeout),
        "--retries",
        str(retries),
        "--retry-delay",
        "1",
    )


def numbers_ending(digits: list[str], start: int = 0) -> list[str]:
    """Fictional French numbers (+33 1 99 00 xx xx) whose last digits are ``digits``: the
    simulated callee each one reaches (see docs/sim-pstn.md)."""
    return [f"+3319900{start + i:03d}{d}" for i, d in enumerate(digits)]


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, proc: subprocess.Popen[str] | None = None
) -> None:
    """Poll ``check`` every 0.1 s until true.

    Raises:
        AssertionError: ``timeout`` seconds passed, or ``proc`` exited first (its output in
            the message).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the controller exited {proc.returncode} before {what}:\n{out}")
        time.sleep(0.1)
    raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}")


def finish(proc: subprocess.Popen[str], timeout: float = RUN_TIMEOUT) -> str:
    """Wait for the controller process to exit; its output.

    Raises:
        AssertionError: it did not exit within ``timeout`` seconds (it is killed).
    """
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        raise AssertionError(
            f"the controller did not finish within {timeout:.0f} s:\n{out}"
        ) from exc
    return out


def kill_asterisk(sb: Sandbox) -> None:
    """SIGKILL the sandbox Asterisk (a crash: no Hangup event, every socket cut).

    Raises:
        AssertionError: it is not running.
    """
    pid = sb.running_pid()
    if pid is None:
        raise AssertionError("the sandbox Asterisk is not running")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


# --- the TCP cut ----------------------------------------------------------------------------


class CutProxy:
    """A TCP proxy on loopback in front of the sandbox's AMI, in its own thread.

    :meth:`cut` aborts every proxied connection at once (both sides see a reset) and
    refuses new ones (accepted, then closed before any byte) for a while. Asterisk keeps
    its calls: only the controller's view is cut.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.cuts = 0
        self.connections = 0
        self._refuse_until = 0.0
        self._transports: set[asyncio.Transport] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cut-proxy")
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers -= {writer, up_w}

    def cut(self, refuse_for: float = 0.0) -> None:
        """Abort every proxied connection now; refuse new ones for ``refuse_for`` seconds."""

        def do() -> None:
            self._refuse_until = time.monotonic() + refuse_for
            for w in list(self._writers):
                w.transport.abort()
            self.cuts += 1

        done = threading.Event()
        self._loop.call_soon_threadsafe(lambda: (do(), done.set()))
        done.wait(5)

    def close(self) -> None:
        """Stop the proxy (cuts what is left)."""
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# --- the scenarios --------------------------------------------------------------------------


def tone(path: Path, seconds: float) -> Path:
    """An 8 kHz mono tone of ``seconds`` (sox): a message of a known length."""
    cmd = ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "synth", str(seconds)]
    subprocess.run([*cmd, "sine", "600", "vol", "0.5"], check=True)
    return path


def asterisk_restart(tmp: Path, view: SandboxView, *, calls_up: int = 20) -> Figures:
    """Asterisk killed (SIGKILL) and started again while ``calls_up`` people listen.

    ``calls_up`` people (a 20 s message) then 20 busy numbers, ``calls_up`` + 5 channels,
    5 calls per second: when the people have answered, Asterisk is killed with busy numbers
    still to dial and free channels, then started again (same AMI port). The controller
    must pause dialling (no Originate while AMI is down: the calls already claimed, at
    most one claim's batch of :data:`~voicecast.dialer.controller.CLAIM_SPAN` seconds at
    5 CPS, are recorded as not sent and their contacts dialled later), reconnect, close
    every interrupted attempt from Asterisk's channel list without re-sending it, then dial
    the numbers left and complete.
    """
    started = time.monotonic()
    ws = open_workspace(tmp, view)
    log = CallLog(view.calls_log)
    prepare_campaign(
        ws,
        "restart",
        numbers_ending(["0"] * calls_up + ["3"] * 20),
        tone(tmp / "long.wav", 20),
        max_channels=calls_up + 5,
        cps=5,
    )
    figures = Figures("asterisk restart")
    proc = ws.popen("campaign", "start", "restart", "--wait")
    try:
        wait_until(
            f"{calls_up} calls up",
            lambda: count_attempts(ws.sessions, "answered") >= calls_up,
            60,
            proc,
        )
        sb = Sandbox(ws.settings)
        kill_asterisk(sb)
        figures.faults += 1
        time.sleep(1.0)  # the controller sees the loss and pauses
        sb.up()
        out = figures.output = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    figures.problems += _expect_output(
        out, "PBX connection lost: dialing paused", "AMI reconnected", "PBX reconnected"
    )
    not_sent = [e for e in errors(ws.sessions) if e.startswith("not sent")]
    batch = math.ceil(5 * CLAIM_SPAN) + 1  # one claim's calls (plus one racing the loss)
    if len(not_sent) > batch:
        figures.problems.append(
            f"{len(not_sent)} claimed calls not sent while AMI was down (one claim: {batch})"
        )
    got = outcomes(ws.sessions)
    if got["busy"] < 20 - len(not_sent) or got["human"] != calls_up:
        figures.problems.append(f"outcomes {dict(got)}")
    if campaign_status(ws.sessions, "restart") != "completed":
        figures.problems.append("the campaign did not complete")
    figures.wall = time.monotonic() - started
    return audit(ws.sessions, log.calls(), figures)


def tcp_cut(tmp: Path, view: SandboxView, *, refuse_for: float = 3.0) -> Figures:
    """The controller's AMI connection cut (through a proxy) while calls are up.

    8 people (listening while a 15 s message plays) and 4 numbers that ring without
    answer (5 s ring timeout); when the 8 are answered, every proxied connection is
    aborted and new ones refused for ``refuse_for`` seconds. Asterisk keeps its calls: after
    the reconnect the controller finds the people's calls still up and follows them to
    their end (``human``); the unanswered calls, which usually end during the cut, get a
    final outcome (``failed`` with a note when they ended unseen, else ``no_answer``).
    """
    started = time.monotonic()
    proxy = CutProxy(view.ami_port)
    try:
        ws = open_workspace(tmp, view, ami_port=proxy.port)
        log = CallLog(view.calls_log)
        prepare_campaign(
            ws,
            "cut",
            numbers_ending(["0"] * 8 + ["4"] * 4),
            tone(tmp / "msg.wav", 15),
            max_channels=12,
            cps=20,
            ring_timeout=5,
        )
        figures = Figures("AMI TCP cut")
        proc = ws.popen("campaign", "start", "cut", "--wait")
        try:
            wait_until("8 calls up", lambda: count_attempts(ws.sessions, "answered") >= 8, 60, proc)
            proxy.cut(refuse_for=refuse_for)
            figures.faults += 1
            out = figures.output = finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    finally:
        proxy.close()
    figures.problems += _expect_output(
        out, "PBX connection lost: dialing paused", "AMI reconnected"
    )
    figures.problems += _expect_output(out, "PBX reconnected: 12 call(s) were in flight")
    got = outcomes(ws.sessions)
    if got["human"] != 8 or got["no_answer"] + got["failed"] != 4:
        figures.problems.append(f"outcomes {dict(got)}: 8 human and 4 no_answer or failed")
    if campaign_status(ws.sessions, "cut") != "completed":
        figures.problems.append("the campaign did not complete")
    figures.wall = time.monotonic() - started
    return audit(ws.sessions, log.calls(), figures)


#: the callees of the kill scenario: mostly fast outcomes (last digits, see SIM-PSTN)
KILL_MIX = ["0"] * 3 + ["2"] + ["3"] * 2 + ["5"] * 2 + ["6"] * 2


def controller_kills(
    tmp: Path,
    view: SandboxView,
    message: Path,
    seed: int,
    *,
    contacts: int = 100,
    kills: int = 3,
) -> Figures:
    """The controller SIGKILLed ``kills`` times at seeded random instants of a campaign
    of ``contacts`` contacts, each time started again until the campaign completes.

    The kill instants are 1 to 6 s after each start (``random.Random(seed)``), so they
    fall before, during and after Originates, answers and outcome writes.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    digits = [rng.choice(KILL_MIX) for _ in range(contacts)]
    ws = open_workspace(tmp, view)
    log = CallLog(view.calls_log)
    prepare_campaign(
        ws, "kills", numbers_ending(digits), message, max_channels=15, cps=20, ring_timeout=8
    )
    figures = Figures("controller SIGKILL", seed)
    runs = 0
    while campaign_status(ws.sessions, "kills") != "completed":
        runs += 1
        if runs > kills + 3:
            figures.problems.append(f"the campaign did not complete after {runs - 1} runs")
            break
        proc = ws.popen("campaign", "start", "kills", "--wait")
        try:
            if figures.faults < kills:
                delay = rng.uniform(1.0, 6.0)
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    figures.faults += 1
            figures.output += finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    figures.wall = time.monotonic() - started
    return audit(ws.sessions, log.calls(), figures)


def controller_sigterm(tmp: Path, view: SandboxView, message: Path) -> Figures:
    """``voicecast serve`` stopped with SIGTERM while calls are up: no Originate after the
    signal, the calls up finish (within the drain grace), everything recorded, exit 0."""
    started = time.monotonic()
    ws = open_workspace(tmp, view, web=False)
    log = CallLog(view.calls_log)
    prepare_campaign(ws, "drain", numbers_ending(["0"] * 12), message, max_channels=4, cps=10)
    figures = Figures("controller SIGTERM")
    server = ws.popen("serve")
    try:
        ws.vc("campaign", "start", "drain")
        wait_until("4 calls up", lambda: count_attempts(ws.sessions, "answered") >= 4, 60, server)
        before = count_attempts(ws.sessions)
        server.send_signal(signal.SIGTERM)
        figures.faults += 1
        out = figures.output = finish(server, 60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=10)
    if server.returncode != 0:
        figures.problems.append(f"serve exited {server.returncode} on SIGTERM:\n{out}")
    after = count_attempts(ws.sessions)
    if after != before:
        figures.problems.append(f"{after - before} attempt(s) placed after SIGTERM")
    got = outcomes(ws.sessions)
    if got["human"] != before:
        figures.problems.append(f"the calls up at SIGTERM ended {dict(got)}, not all human")
    figures.wall = time.monotonic() - started
    return audit(ws.sessions, log.calls(), figures)


def _expect_output(out: str, *needles: str) -> list[str]:
    return [f"the controller never said {n!r}" for n in needles if n not in out]


# --- the table ------------------------------------------------------------------------------

COLUMNS = (
    ("scenario", 20),
    ("seed", 4),
    ("faults", 6),
    ("calls", 5),
    ("attempts", 8),
    ("duplicates", 10),
    ("unknown", 7),
    ("lost", 4),
    ("non-final", 9),
    ("stuck", 5),
    ("wall s", 6),
)


def table(rows: list[Figures]) -> str:
    """The figures as a Markdown table (one row per scenario run)."""
    head = "| " + " | ".join(name.ljust(w) for name, w in COLUMNS) + " |"
    rule = "|" + "|".join("-" * (w + 2) for _, w in COLUMNS) + "|"
    lines = [head, rule]
    for f in rows:
        cells = (
            f.scenario,
            "-" if f.seed is None else str(f.seed),
            str(f.faults),
            str(f.calls),
            str(f.attempts),
            str(f.duplicates),
            str(f.unknown),
            str(f.lost),
            str(f.non_final),
            str(f.stuck),
            f"{f.wall:.0f}",
        )
        lines.append(
            "| " + " | ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)) + " |"
        )
    return "\n".join(lines)
