"""Shared helpers of the benchmarks in ``bench/``: the machine's description, CPU time of
a process from ``/proc``, percentiles, the sandbox Asterisk (started and stopped under the
shared lock), an AMI recorder, and the ``--json`` results every bench can write for
``bench/run``.

Every figure a bench prints is measured in that one run on that one machine; ratios compare
two things measured in the same run, so that they survive a slower or busier machine better
than absolute numbers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench scripts run as files: make ``voicecast``/``tests`` importable
    sys.path.insert(0, str(REPO))

from voicecast.ami.protocol import AmiMessage, parse_messages  # noqa: E402

SANDBOX_LOCK = Path("/tmp/voicecast-sandbox.lock")
"""The lock every user of the shared sandbox Asterisk holds (``flock(1)`` compatible)."""

SANDBOX_HELD_ENV = "VOICECAST_BENCH_SANDBOX_UP"
"""Set to ``1`` by ``bench/run`` for its children: the lock is held and the sandbox is up
(a bench neither locks nor starts nor stops it)."""

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the machine ----------------------------------------------------------------------------


def machine_info(asterisk_version: str | None = None) -> dict[str, str]:
    """What the figures were measured on: date, CPU model, logical CPUs, RAM, kernel,
    Python (and Asterisk when given). Sources: ``/proc/cpuinfo``, ``/proc/meminfo``,
    :func:`platform.release`, :func:`platform.python_version`."""
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cores = sum(1 for line in cpuinfo if line.startswith("processor"))
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    info = {
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z"),
        "cpu": models[0] if models else platform.machine(),
        "cores": str(cores or os.cpu_count() or 0),
        "ram": f"{mem_kib / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    if asterisk_version:
        info["asterisk"] = asterisk_version
    return info


# --- numbers ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values``, linear between closest ranks (the
    "inclusive" method of :func:`statistics.quantiles`); NaN when empty."""
    data = sorted(values)
    if not data:
        return float("nan")
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * pct / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def rate(count: int, first: float, last: float) -> float:
    """Events per second from the first to the last of ``count`` instants (seconds): the
    ``count - 1`` gaps over the span; NaN with fewer than two."""
    if count < 2 or last <= first:
        return float("nan")
    return (count - 1) / (last - first)


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (NaN when empty)."""
    return statistics.median(values) if values else float("nan")


# --- CPU time from /proc ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (all its threads), from fields 14
    and 15 (``utime``, ``stime``, in clock ticks) of ``/proc/<pid>/stat`` (proc(5)).

    Raises:
        OSError: no such process.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


@dataclass
class CpuSampler:
    """Samples a process's CPU seconds every ``interval`` seconds in a thread, so that the
    CPU used up to an instant (e.g. the first call) can be read after the process is gone."""

    pid: int
    interval: float = 0.05
    samples: list[tuple[float, float]] = field(default_factory=list)  # (time.time(), cpu s)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), cpu_seconds(self.pid)))
            except (OSError, ValueError, IndexError):
                return
            self._stop.wait(self.interval)

    def at(self, instant: float) -> float:
        """CPU seconds at the last sample taken at or before ``instant`` (0.0 before any)."""
        best = 0.0
        for when, cpu in self.samples:
            if when > instant:
                break
            best = cpu
        return best

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(2)


# --- the sandbox -----------------------------------------------------------------------------


@dataclass
class SandboxHandle:
    """The running sandbox Asterisk as a bench sees it."""

    sandbox: Any  # voicecast.sandbox.Sandbox
    view: Any  # voicecast.sandbox.SandboxView
    version: str

    @property
    def pid(self) -> int:
        """The Asterisk process id (for :func:`cpu_seconds`).

        Raises:
            RuntimeError: the sandbox Asterisk is not running.
        """
        pid = self.sandbox.running_pid()
        if pid is None:
            raise RuntimeError("the sandbox Asterisk is not running")
        return int(pid)

    @property
    def spool_dir(self) -> Path:
        """Host path of the sandbox Asterisk's ``astspooldir`` (parent of the simulated
        network's recordings folder; ``outgoing`` and ``outgoing_done`` live here)."""
        return Path(self.view.recordings_dir).parent


def _inherited_lock_fd() -> int | None:
    """A descriptor of :data:`SANDBOX_LOCK` this process inherited (``flock FILE command``
    or ``bench/run`` hold the lock through it), or None."""
    wanted = os.path.realpath(SANDBOX_LOCK)
    for entry in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(entry) == wanted:
                return int(entry.name)
    return None


@contextlib.contextmanager
def sandbox_lock() -> Iterator[None]:
    """Hold :data:`SANDBOX_LOCK` (waits while another user holds it).

    Run as ``flock /tmp/voicecast-sandbox.lock .venv/bin/python bench/...`` or under
    ``bench/run``, the lock is already held through an inherited descriptor: locking that
    same open file again succeeds at once (flock(2) locks belong to the open file), and it
    is left for the parent to release.
    """
    inherited = _inherited_lock_fd()
    if inherited is not None:
        fcntl.flock(inherited, fcntl.LOCK_EX)
        yield
        return
    with open(SANDBOX_LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {SANDBOX_LOCK} (the sandbox is in use) ...", file=sys.stderr)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sandbox_object(tmp: Path) -> Any:
    """A :class:`voicecast.sandbox.Sandbox` for this checkout's sandbox folder (the
    end-to-end tests' ``SANDBOX_DIR``), configured by a file written in ``tmp``."""
    from tests.e2e.conftest import SANDBOX_DIR
    from voicecast.config import load_settings
    from voicecast.sandbox import Sandbox

    cfg = tmp / "sandbox.toml"
    cfg.write_text(f'[sandbox]\nenabled = true\ndir = "{SANDBOX_DIR}"\n')
    cfg.chmod(0o600)
    return Sandbox(load_settings(cfg, environ={}), log=lambda m: print(m, file=sys.stderr))


@contextlib.contextmanager
def sandbox_session(tmp: Path) -> Iterator[SandboxHandle]:
    """The sandbox Asterisk for one bench: under :data:`SANDBOX_LOCK`, started (``up``)
    and stopped (``down``) at the end; when ``bench/run`` already holds the lock and runs it
    (environment :data:`SANDBOX_HELD_ENV`), just the handle. Uses this checkout's sandbox
    (``var/sandbox``) or ``VOICECAST_TEST_SANDBOX_DIR``, like the end-to-end tests."""
    sb = sandbox_object(tmp)
    if os.environ.get(SANDBOX_HELD_ENV) == "1":
        if sb.running_pid() is None:
            raise RuntimeError(f"{SANDBOX_HELD_ENV}=1 but the sandbox Asterisk is not running")
        yield SandboxHandle(sb, sb.view(), sb.version() or "")
        return
    with sandbox_lock():
        sb.up()
        try:
            yield SandboxHandle(sb, sb.view(), sb.version() or "")
        finally:
            sb.down()


# --- AMI recorder ------------------------------------------------------------------------------


class AmiRecorder:
    """Logs in to the sandbox's AMI as the controller's user (so it receives the same,
    filtered, events: see ``asterisk-conf/manager.conf``) and keeps every event with the
    bytes as they came, in a thread. It sends no action after the login (no polling), so it
    costs Asterisk one more event subscriber only.
    """

    def __init__(self, port: int, secret: str) -> None:
        self.events: list[AmiMessage] = []
        self.raw = bytearray()
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        banner = b""
        while not banner.endswith(b"\n"):
            chunk = self._sock.recv(1)
            if not chunk:
                raise ConnectionError("AMI closed the connection before its banner")
            banner += chunk
        self._sock.sendall(
            f"Action: Login\r\nUsername: voicecast\r\nSecret: {secret}\r\nEvents: on\r\n"
            "ActionID: bench-login\r\n\r\n".encode()
        )
        self._sock.settimeout(0.2)
        self._logged_in = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ami-recorder")
        self._thread.start()
        if not self._logged_in.wait(5):
            self.close()
            raise ConnectionError("AMI login of the bench recorder got no success answer")

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            messages, buf = parse_messages(buf + chunk)
            if not self._logged_in.is_set() and any(
                m.get("ActionID") == "bench-login" and m.response for m in messages
            ):
                self._logged_in.set()
            self.raw.extend(chunk)
            self.events.extend(m for m in messages if m.event is not None)

    def close(self) -> None:
        """Stop recording and close the connection."""
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self._sock.close()

    def first_legs(self) -> dict[str, float]:
        """Asterisk's time (``Timestamp``, seconds since the epoch) of the first
        ``Newchannel`` of the outbound leg (``Local/<number>@...;1``) of each number."""
        out: dict[str, float] = {}
        for e in self.events:
            if e.event != "Newchannel":
                continue
            channel = e.get("Channel") or ""
            if not channel.startswith("Local/") or not channel.endswith(";1"):
                continue
            number = channel[len("Local/") :].split("@", 1)[0]
            out.setdefault(number, float(e.get("Timestamp") or 0.0))
        return out


# --- results ----------------------------------------------------------------------------------


def write_json(path: str | None, data: dict[str, Any]) -> None:
    """Write a bench's results for ``bench/run`` (nothing when ``path`` is None)."""
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def fmt(value: float, digits: int = 2) -> str:
    """``value`` with thousands separators and ``digits`` decimals; ``-`` for NaN."""
    if value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def wait_for(check: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``check()`` until true or ``timeout`` seconds; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
