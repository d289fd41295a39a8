"""The sandbox PBX: a local Asterisk 22 with the simulated telephone network.

Two ways to get an Asterisk (see ASTERISK-NOTES):

- ``host``: an ``asterisk`` binary is installed (Ubuntu, Alpine, your own build): it runs
  with a private configuration, spool, run and log folder under the sandbox folder, so an
  existing PBX on the machine is not touched;
- ``chroot``: otherwise (Debian 12 has no Asterisk package) Debian sid is provisioned once
  with ``debootstrap --variant=minbase --include=asterisk,asterisk-core-sounds-en`` into
  ``<sandbox dir>/rootfs`` (about a minute, about 500 MB, cached) and Asterisk runs inside
  it with ``chroot``. The chroot shares the host's network: AMI and FastAGI meet on loopback.

At every ``up`` the project's ``asterisk-conf/`` is copied in, with the sandbox overlay
(``asterisk-conf/sandbox/``: the simulated network) and the sandbox's own AMI secret, so
config edits apply. Needs root (``chroot``) unless an ``asterisk`` binary is installed.

Several Asterisk processes can run from the one provisioned folder (the scale-out tests: two
PBX nodes): ``Sandbox(settings, instance="b", ami_port=5039)`` is a second *instance* with
its own configuration folder (``/etc/asterisk-b``, started with ``-C``), run folder (pid
file, control socket), spool (the simulated network's recordings and ``calls.log``), log
and astdb folders, state/log/secret files under the sandbox folder and AMI port. It shares
the binaries, modules, Asterisk's own sounds, the folder voicecast publishes its audio to
(:attr:`SandboxView.sounds_dir`) and the callees' replies folder, so one controller's
publish serves every instance. The default instance ``""`` is the sandbox as it always was.
The sandbox listens on no port but its AMI port (no SIP transport, no HTTP server).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicecast.config import Settings, check_private_file
from voicecast.errors import VoicecastError

CONF_DIR = Path(__file__).resolve().parent.parent / "asterisk-conf"
SIM_RECORDINGS = "voicecast-sim"
SANDBOX_MANAGER_CONF = "manager_sandbox.conf"  # asterisk-conf/sandbox/: test-only AMI users
SIM_CALLS_LOG = "calls.log"  # in SIM_RECORDINGS, written by [sim-pstn]
START_TIMEOUT = 60.0
PORT_FREE_TIMEOUT = 10.0  # seconds a stopped Asterisk's AMI port may take to be free again
ASTERISK_IN_CHROOT = "/usr/sbin/asterisk"
INSTANCE_NAME = re.compile(r"^[a-z0-9]{1,16}$")
"""An extra instance's name: it becomes a suffix of folder and file names."""
# asterisk.conf [directories] each instance has to itself (the rest is shared)
PER_INSTANCE_DIRS = ("astetcdir", "astdbdir", "astspooldir", "astrundir", "astlogdir")


class SandboxError(VoicecastError):
    """The sandbox cannot be provisioned, started or stopped; the message says why."""


@dataclass(frozen=True)
class SandboxView:
    """The sandbox's connection facts, as the controller needs them.

    Attributes:
        ami_port, secret: AMI on 127.0.0.1 with user ``voicecast``.
        dial_string: ``Local/{number}@sim-pstn``.
        sounds_dir: host path where voicecast publishes audio for this Asterisk.
        sounds_dir_on_pbx: the same folder as Asterisk sees it.
        recordings_dir: host path of the simulated callees' recordings.
        replies_dir, replies_dir_on_pbx: where Asterisk writes callees' replies (scenario
            record nodes), on the host and as Asterisk sees it.
    """

    ami_port: int
    secret: str
    dial_string: str
    sounds_dir: Path
    sounds_dir_on_pbx: str
    recordings_dir: Path
    replies_dir: Path | None = None
    replies_dir_on_pbx: str = ""

    @property
    def calls_log(self) -> Path:
        """Host path of the simulated network's call-entry log: one line
        ``<epoch> <number> <attempt id or none> <uniqueid>`` per call it received, appended
        by the dialplan (``[sim-pstn]``) before the callee does anything: Asterisk's own
        count of the calls placed, which survives an Asterisk crash."""
        return self.recordings_dir / SIM_CALLS_LOG


def _find_host_asterisk() -> str | None:
    return shutil.which("asterisk")


def _first_existing(candidates: list[str], marker: str) -> str | None:
    for c in candidates:
        if (Path(c) / marker).exists():
            return c
    return None


class Sandbox:
    """Provision, start, stop and describe the sandbox PBX.

    Args:
        settings: the configuration (``[sandbox]``, ``[fastagi]``).
        log: where progress lines go (e.g. ``print``).
        instance: ``""`` (the default) for the sandbox Asterisk; another name (``[a-z0-9]``,
            at most 16) for a further Asterisk process run from the same provisioned folder
            (see the module docstring): its folders and files carry ``-<instance>``.
        ami_port: the instance's AMI port (TCP, on 127.0.0.1); default ``[sandbox]
            ami_port``, which only the default instance may use.
        agi_url: the FastAGI URL the instance's dialplan uses when an Originate carries no
            ``VC_AGI`` (calls to the call-back line); default ``[fastagi]``'s
            :attr:`~voicecast.config.FastAgiSettings.agi_url`.

    Raises:
        SandboxError: a malformed instance name, or an extra instance without an AMI port
            of its own.
    """

    def __init__(
        self,
        settings: Settings,
        log: Callable[[str], None] | None = None,
        *,
        instance: str = "",
        ami_port: int | None = None,
        agi_url: str | None = None,
    ) -> None:
        if instance and not INSTANCE_NAME.match(instance):
            raise SandboxError(f"sandbox instance {instance!r}: use 1 to 16 of a-z and 0-9")
        if instance and (ami_port is None or ami_port == settings.sandbox.ami_port):
            raise SandboxError(
                f"sandbox instance {instance!r} needs an AMI port other than "
                f"[sandbox] ami_port ({settings.sandbox.ami_port})"
            )
        self.settings = settings
        self.instance = instance
        self.ami_port = settings.sandbox.ami_port if ami_port is None else ami_port
        self.agi_url = settings.fastagi.agi_url if agi_url is None else agi_url
        self.dir = settings.path(settings.sandbox.dir)
        self.rootfs = self.dir / "rootfs"
        suffix = f"-{instance}" if instance else ""
        self._suffix = suffix
        self.state_file = self.dir / f"state{suffix}.json"
        self.log_file = self.dir / f"asterisk{suffix}.log"
        self.secret_file = self.dir / f"ami-secret{suffix}"
        self._log = log or (lambda _msg: None)

    # --- facts ------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``host`` when an ``asterisk`` binary is installed, else ``chroot``."""
        return "host" if _find_host_asterisk() else "chroot"

    @property
    def _root(self) -> Path:
        """The folder that Asterisk sees as ``/`` (the rootfs in chroot mode)."""
        return self.rootfs if self.mode == "chroot" else Path("/")

    def _private(self) -> Path:
        return self.dir / "host"

    def _dirs(self) -> dict[str, str]:
        """asterisk.conf [directories] of this instance as Asterisk sees them: those of the
        default instance, with :data:`PER_INSTANCE_DIRS` suffixed ``-<instance>``."""
        dirs = self._shared_dirs()
        if self._suffix:
            for key in PER_INSTANCE_DIRS:
                dirs[key] += self._suffix
        return dirs

    def _shared_dirs(self) -> dict[str, str]:
        """asterisk.conf [directories] of the default instance as Asterisk sees them."""
        if self.mode == "chroot":
            return {
                "astetcdir": "/etc/asterisk",
                "astmoddir": "/usr/lib/x86_64-linux-gnu/asterisk/modules",
                "astvarlibdir": "/var/lib/asterisk",
                "astdbdir": "/var/lib/asterisk",
                "astkeydir": "/var/lib/asterisk",
                "astdatadir": "/usr/share/asterisk",
                "astagidir": "/usr/share/asterisk/agi-bin",
                "astspooldir": "/var/spool/asterisk",
                "astrundir": "/run/asterisk",
                "astlogdir": "/var/log/asterisk",
                "astsbindir": "/usr/sbin",
            }
        p = self._private()
        moddir = _first_existing(
            [
                "/usr/lib/x86_64-linux-gnu/asterisk/modules",
                "/usr/lib/aarch64-linux-gnu/asterisk/modules",
                "/usr/lib/asterisk/modules",
                "/usr/lib64/asterisk/modules",
            ],
            "app_amd.so",
        )
        datadir = _first_existing(["/usr/share/asterisk", "/var/lib/asterisk"], "sounds")
        if moddir is None or datadir is None:
            raise SandboxError(
                "an asterisk binary is installed but its modules or sounds were not found"
            )
        return {
            "astetcdir": str(p / "etc"),
            "astmoddir": moddir,
            "astvarlibdir": str(p / "lib"),
            "astdbdir": str(p / "lib"),
            "astkeydir": str(p / "lib"),
            "astdatadir": datadir,
            "astagidir": str(p / "agi-bin"),
            "astspooldir": str(p / "spool"),
            "astrundir": str(p / "run"),
            "astlogdir": str(p / "log"),
            "astsbindir": str(Path(_find_host_asterisk() or "/usr/sbin/asterisk").parent),
        }

    def _host_path(self, pbx_path: str) -> Path:
        return self._root / pbx_path.lstrip("/")

    def view(self) -> SandboxView:
        """Connection facts for the controller (creates the AMI secret if needed).

        The audio and replies folders are the default instance's, whichever the instance
        (the same path on the host and in Asterisk: one publish serves every instance);
        the recordings folder (and so ``calls_log``) is this instance's own."""
        dirs = self._dirs()
        shared = self._shared_dirs()
        sounds_on_pbx = f"{shared['astvarlibdir']}/sounds/voicecast"
        replies_on_pbx = f"{shared['astspooldir']}/voicecast-replies"
        return SandboxView(
            ami_port=self.ami_port,
            secret=self.ami_secret(),
            dial_string=self.settings.sandbox.dial_string,
            sounds_dir=self._host_path(sounds_on_pbx),
            sounds_dir_on_pbx=sounds_on_pbx,
            recordings_dir=self._host_path(f"{dirs['astspooldir']}/{SIM_RECORDINGS}"),
            replies_dir=self._host_path(replies_on_pbx),
            replies_dir_on_pbx=replies_on_pbx,
        )

    @property
    def conf_file(self) -> str:
        """This instance's ``asterisk.conf`` as Asterisk sees it."""
        return f"{self._dirs()['astetcdir']}/asterisk.conf"

    def ami_secret(self) -> str:
        """The sandbox's AMI secret (random, made once, stored with mode 0600).

        Raises:
            ConfigError: the secret file can be read or changed by other users.
        """
        if self.secret_file.is_file():
            check_private_file(self.secret_file, "the sandbox AMI secret")
            return self.secret_file.read_text().strip()
        self.dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(24)
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        return secret

    # --- provisioning -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def provisioned(self) -> bool:
        """True when an Asterisk is available (installed, or the rootfs is complete)."""
        if self.mode == "host":
            return True
        return (self.rootfs / ASTERISK_IN_CHROOT.lstrip("/")).is_file() and (
            self.rootfs / ".voicecast-complete"
        ).is_file()

    def provision(self) -> None:
        """Make an Asterisk available: nothing to do in host mode, else debootstrap sid.

        Raises:
            SandboxError: not root, debootstrap missing, or debootstrap failed (its last
                output lines are in the message).
        """
        if self.provisioned():
            return
        if os.geteuid() != 0:
            raise SandboxError(
                "provisioning the sandbox Asterisk needs root (debootstrap + chroot), "
                "or install an asterisk package"
            )
        if shutil.which("debootstrap") is None:
            raise SandboxError("debootstrap is not installed: apt-get install debootstrap")
        tmp = self.dir / f"rootfs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        sb = self.settings.sandbox
        self._log(f"provisioning Asterisk: debootstrap {sb.suite} into {self.rootfs} (~1 min)")
        cmd = [
            "debootstrap",
            "--variant=minbase",
            "--include=asterisk,asterisk-core-sounds-en",
            sb.suite,
            str(tmp),
            sb.mirror,
        ]
        with open(self.dir / "debootstrap.log", "w") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
        if rc != 0:
            tail = (self.dir / "debootstrap.log").read_text(errors="replace").splitlines()[-8:]
            shutil.rmtree(tmp, ignore_errors=True)
            raise SandboxError(
                f"debootstrap failed (exit {rc}); see {self.dir / 'debootstrap.log'}:\n"
                + "\n".join(tail)
            )
        (tmp / ".voicecast-complete").write_text("ok\n")
        shutil.rmtree(self.rootfs, ignore_errors=True)
        os.replace(tmp, self.rootfs)

    # --- configuration ----------------------------------------------------------------------

    def render_config(self) -> Path:
        """Write the Asterisk configuration the sandbox runs with; returns its folder (host
        path). Production files from ``asterisk-conf/``, then the sandbox overlay."""
        dirs = self._dirs()
        etc = self._host_path(dirs["astetcdir"])
        shutil.rmtree(etc, ignore_errors=True)
        etc.mkdir(parents=True)
        for src in sorted(CONF_DIR.glob("*.conf")):
            shutil.copyfile(src, etc / src.name)
        for src in sorted((CONF_DIR / "sandbox").glob("*.conf")):
            shutil.copyfile(src, etc / src.name)
        view = self.view()
        manager = (etc / "manager.conf").read_text()
        manager = manager.replace("port = 5038", f"port = {view.ami_port}", 1)
        manager = manager.replace("secret = CHANGE-ME", f"secret = {view.secret}", 1)
        # the sandbox's own AMI users (tests only: each lacks one class of the production
        # user's rights), kept out of the production file
        manager += f'\n#include "{SANDBOX_MANAGER_CONF}"\n'
        _write_private(etc / "manager.conf", manager)
        probes = (etc / SANDBOX_MANAGER_CONF).read_text()
        _write_private(etc / SANDBOX_MANAGER_CONF, probes.replace("CHANGE-ME", view.secret))
        ext = (etc / "extensions.conf").read_text()
        ext = ext.replace(
            "VOICECAST_AGI = agi://127.0.0.1:4573",
            f"VOICECAST_AGI = {self.agi_url}",
            1,
        )
        (etc / "extensions.conf").write_text(ext)
        # call files, the do-it-yourself alternative bench/callfiles.py compares with: the
        # sandbox only (production modules.conf does not load the outgoing spool)
        with (etc / "modules.conf").open("a") as fh:
            fh.write("load = pbx_spool.so                ; sandbox only: call files\n")
        # "[directories]", not Debian's "[directories](!)": a template is ignored (see
        # asterisk.conf.sample), and then Asterisk uses its compiled-in folders
        (etc / "asterisk.conf").write_text(
            "[directories]\n"
            + "".join(f"{k} => {v}\n" for k, v in dirs.items())
            + "\n[options]\nverbose = 0\ndebug = 0\nmaxfiles = 4096\n"
            + "defaultlanguage = en\ndocumentation_language = en_US\n"
            + "hideconnect = yes\n"
        )
        for key in (
            "astvarlibdir",
            "astdbdir",
            "astspooldir",
            "astrundir",
            "astlogdir",
            "astagidir",
        ):
            self._host_path(dirs[key]).mkdir(parents=True, exist_ok=True)
        self._host_path(f"{dirs['astspooldir']}/{SIM_RECORDINGS}").mkdir(
            parents=True, exist_ok=True
        )
        view.calls_log.touch()  # FILE() appends lines only to an existing file
        view.sounds_dir.mkdir(parents=True, exist_ok=True)
        if view.replies_dir is not None:
            view.replies_dir.mkdir(parents=True, exist_ok=True)
        return etc

    # --- process ----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
            return data
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The sandbox Asterisk's pid when it runs, else None."""
        state = self._state()
        if not state:
            return None
        pid = int(state.get("pid", 0))
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid
        return pid if b"asterisk" in cmdline else None

    def _command(self, *args: str) -> list[str]:
        """``asterisk`` with this instance's asterisk.conf (the default instance in the
        chroot uses the binary's default, /etc/asterisk/asterisk.conf)."""
        if self.mode == "chroot":
            conf = ["-C", self.conf_file] if self.instance else []
            return ["chroot", str(self.rootfs), ASTERISK_IN_CHROOT, *conf, *args]
        return [_find_host_asterisk() or "asterisk", "-C", self.conf_file, *args]

    def up(self) -> dict[str, Any]:
        """Provision if needed, write the config, (re)start Asterisk, wait for AMI.

        Returns the status dict (see :meth:`status`).

        Raises:
            SandboxError: provisioning failed, the AMI port is taken by something else, or
                Asterisk did not accept AMI logins within a minute (log tail in the message).
        """
        with self._lock():
            self.provision()
            if self.running_pid() is not None:
                self._stop()
            self.state_file.unlink(missing_ok=True)
            if not _port_closes(self.ami_port, PORT_FREE_TIMEOUT):
                raise SandboxError(
                    f"port {self.ami_port} is already in use{_port_holder(self.ami_port)}: "
                    "another Asterisk? Stop it or "
                    + ("choose another ami_port" if self.instance else "set [sandbox] ami_port")
                )
            self.render_config()
            pid_file = self._host_path(f"{self._dirs()['astrundir']}/asterisk.pid")
            pid_file.unlink(missing_ok=True)
            # Asterisk daemonises itself (no -f): nothing of ours stays attached to it.
            with open(self.log_file, "ab") as log_fh:
                rc = subprocess.call(
                    self._command("-n"),
                    stdin=subprocess.DEVNULL,
                    stdout=log_fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    timeout=60,
                )
            if rc != 0:
                tail = self.log_file.read_text(errors="replace").splitlines()[-15:]
                raise SandboxError(f"asterisk exited {rc} at start:\n" + "\n".join(tail))
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if pid_file.is_file() and not self.state_file.is_file():
                    pid = int(pid_file.read_text().strip() or 0)
                    self.state_file.write_text(
                        json.dumps({"pid": pid, "mode": self.mode, "started": time.time()})
                    )
                if _ami_ready(self.ami_port) and self._booted():
                    return self.status()
                time.sleep(0.3)
            tail = self._messages_tail()
            self._stop()
            raise SandboxError("the sandbox Asterisk did not start:\n" + "\n".join(tail))

    def _messages_tail(self) -> list[str]:
        log = self._host_path(f"{self._dirs()['astlogdir']}/messages.log")
        lines: list[str] = []
        for f in (self.log_file, log):
            with contextlib.suppress(OSError):
                lines += f.read_text(errors="replace").splitlines()[-10:]
        return lines

    def _booted(self) -> bool:
        res = subprocess.run(
            self._command("-rx", "core waitfullybooted"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return res.returncode == 0

    def down(self) -> bool:
        """Stop the sandbox Asterisk. Returns False when it was not running."""
        with self._lock():
            return self._stop()

    def _stop(self) -> bool:
        pid = self.running_pid()
        if pid is None:
            self.state_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                self._command("-rx", "core stop now"), capture_output=True, timeout=10, check=False
            )
        for sig, wait in ((None, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                    self.state_file.unlink(missing_ok=True)
                    # its AMI socket may outlive it a moment (a child still holding it)
                    _port_closes(self.ami_port, PORT_FREE_TIMEOUT)
                    return True
                time.sleep(0.1)
        raise SandboxError(f"could not stop the sandbox Asterisk (pid {pid})")

    def cli(self, command: str, timeout: float = 30.0) -> str:
        """Run one Asterisk CLI ``command`` on the running sandbox (``asterisk -rx``, over
        its control socket: no AMI involved); returns its output.

        Raises:
            SandboxError: the command could not be run or exited with an error.
        """
        try:
            res = subprocess.run(
                self._command("-rx", command),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(f"asterisk -rx {command!r}: {exc}") from exc
        if res.returncode != 0:
            raise SandboxError(
                f"asterisk -rx {command!r} exited {res.returncode}: {res.stderr.strip()}"
            )
        return res.stdout

    def version(self) -> str | None:
        """``asterisk -V`` of the sandbox's Asterisk, or None when not provisioned."""
        if not self.provisioned():
            return None
        try:
            res = subprocess.run(
                self._command("-V"), capture_output=True, text=True, timeout=10, check=False
            )
        except OSError:
            return None
        return res.stdout.strip() or None

    def status(self) -> dict[str, Any]:
        """What runs where: mode, pid, AMI and FastAGI addresses, version, folders."""
        view = self.view()
        pid = self.running_pid()
        fa = self.settings.fastagi
        status: dict[str, Any] = {"instance": self.instance} if self.instance else {}
        return status | {
            "running": pid is not None,
            "pid": pid,
            "mode": self.mode,
            "provisioned": self.provisioned(),
            "version": self.version(),
            "ami": f"127.0.0.1:{view.ami_port}",
            "ami_user": "voicecast",
            "fastagi": f"{fa.host}:{fa.port}",
            "fastagi_url": self.agi_url,
            "dial_string": view.dial_string,
            "dir": str(self.dir),
            "conf": str(self._host_path(self.conf_file)),
            "recordings": str(view.recordings_dir),
            "log": str(self.log_file),
        }


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, also when ``path`` already exists (the
    mode of ``os.open`` applies only to a file it creates)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _port_holder(port: int) -> str:
    """`` (by PROCESS)`` listening on loopback ``port``, as ``ss -ltnp`` shows it (iproute2),
    or "" when it cannot tell."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    users = [line.split("users:", 1)[1].strip() for line in out.splitlines() if "users:" in line]
    return f" (by {'; '.join(users)})" if users else ""


def _port_closes(port: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for nothing to accept connections on loopback
    ``port``; True once it is free."""
    deadline = time.monotonic() + timeout
    while _port_open(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _ami_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            return s.recv(64).startswith(b"Asterisk Call Manager")
    except OSError:
        return False


def _is_zombie(pid: int) -> bool:
    """True when ``pid`` is gone or a zombie whose threads have all ended too (a zombie
    thread-group leader may still have live threads holding Asterisk's sockets)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    if stat.rsplit(")", 1)[-1].split()[0] != "Z":
        return False
    threads = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("Threads:")), "1")
    return threads.isdigit() and int(threads) <= 1


@dataclass(frozen=True)
class CallbackResult:
    """A simulated call-back (see :func:`place_callback`).

    Attributes:
        heard: host path of the WAV of what the caller heard.
        seconds: how long the call lasted (answer to hangup, wall clock).
    """

    heard: Path
    seconds: float


async def place_callback(
    view: SandboxView,
    caller: str,
    called: str,
    *,
    press: str = "",
    after: float = 4.0,
    timeout: float = 90.0,
) -> CallbackResult:
    """Call one of our caller IDs from the simulated network, as a person calling back.

    Originates ``Local/<called>@sim-callback`` (which enters ``voicecast-inbound``) with
    caller ID ``caller``; the simulated caller (context ``sim-caller``) records what it
    hears, presses ``press`` (DTMF keys, may be empty) ``after`` seconds after the answer,
    and listens until voicecast hangs up. The controller (``voicecast serve`` or a running
    campaign) must be up to answer over FastAGI.

    Raises:
        voicecast.errors.UnsafeValueError: ``caller``/``called`` are not E.164, or ``press``
            holds other than ``0-9*#``.
        SandboxError: AMI refused the call or it did not end within ``timeout`` seconds.
    """
    import asyncio
    import uuid

    from voicecast.ami.client import AmiClient, AmiError
    from voicecast.errors import UnsafeValueError
    from voicecast.pbx.validation import build_dial_string, caller_id_header, check_e164

    check_e164(caller, "caller")
    check_e164(called, "called number")
    if not all(c in "0123456789*#" for c in press) or len(press) > 10:
        raise UnsafeValueError(f"keys to press {press!r}: use 0-9, * and # only")
    tag = uuid.uuid4().hex[:12]
    channel_id = f"callback-{tag}"
    ended = asyncio.Event()
    answered_at: list[float] = []

    def on_hangup(msg: Any) -> None:
        if (msg.get("Uniqueid") or "") == channel_id:
            ended.set()

    def on_newstate(msg: Any) -> None:
        if (msg.get("Uniqueid") or "") == channel_id and msg.get("ChannelStateDesc") == "Up":
            answered_at.append(time.monotonic())

    client = AmiClient("127.0.0.1", view.ami_port, "voicecast", view.secret)
    client.on("Hangup", on_hangup)
    client.on("Newstate", on_newstate)
    await client.connect()
    try:
        resp = await client.send_action(
            "Originate",
            {
                "Channel": build_dial_string("Local/{number}@sim-callback", called),
                "Context": "sim-caller",
                "Exten": "s",
                "Priority": "1",
                "CallerID": caller_id_header(caller),
                "Timeout": "30000",
                "Async": "true",
                "ChannelId": channel_id,
                "OtherChannelId": channel_id + "-b",
                "Variable": [f"SIM_TAG={tag}", f"SIM_PRESS={press}", f"SIM_AFTER={int(after)}"],
            },
        )
        if not resp.success:
            raise SandboxError(f"the sandbox refused the call-back: {resp.message.get('Message')}")
        try:
            await asyncio.wait_for(ended.wait(), timeout)
        except TimeoutError as exc:
            raise SandboxError(f"the call-back did not end within {timeout:.0f} s") from exc
    except AmiError as exc:
        raise SandboxError(f"AMI: {exc}") from exc
    finally:
        await client.close()
    seconds = time.monotonic() - answered_at[0] if answered_at else 0.0
    return CallbackResult(view.recordings_dir / f"callback-{tag}-heard.wav", round(seconds, 1))
