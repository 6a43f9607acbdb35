"""A Debian 12 root booted with systemd as PID 1 under systemd-nspawn, for
the tests that need the real service manager (readiness, reload, journald
priorities, restart policy) on a machine whose own PID 1 is not systemd.

The root is made once with debootstrap and cached as a tar file next to the
package chroots (out/chroot-cache/, or NODEAGENT_CHROOT_CACHE; the mirror is
NODEAGENT_CHROOT_MIRROR, as for packaging/chroot-lib.sh). Each user gets a
fresh copy, boots it with no network but loopback, and runs commands inside
through nsenter: with --register=no (needed here: there is no system bus to
register with) `systemd-run -M` and `machinectl` cannot reach it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from pkgtools import CLEAN_ENV, REPO

SUITE = "bookworm"
PACKAGES = "systemd,systemd-sysv,dbus,python3,curl,procps"
TOOLS = ("debootstrap", "systemd-nspawn", "nsenter", "tar")


def cache_dir() -> Path:
    return Path(os.environ.get("NODEAGENT_CHROOT_CACHE") or REPO / "out" / "chroot-cache")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t, path=CLEAN_ENV["PATH"]) is None]


def cached_root() -> Path:
    """The tar file of the booting root, made on first use (about 100 s and
    120 MB from the mirror); a lock keeps two sessions from making it twice."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{SUITE}-systemd.tar"
    with open(cache / f"{SUITE}-systemd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.is_file():
            return tarball
        mirror = os.environ.get("NODEAGENT_CHROOT_MIRROR") or "http://deb.debian.org/debian"
        build = Path(tempfile.mkdtemp(prefix="debootstrap.", dir=cache))
        log = cache / f"debootstrap-{SUITE}-systemd.log"
        try:
            with open(log, "w") as out:
                r = subprocess.run(["debootstrap", f"--include={PACKAGES}", SUITE, str(build / "root"), mirror],
                                   stdout=out, stderr=subprocess.STDOUT, env=CLEAN_ENV, timeout=1200)
            assert r.returncode == 0, f"debootstrap {SUITE} failed, see {log}"
            subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-C", str(build / "root"), "-cf",
                            f"{tarball}.tmp", "."], check=True, env=CLEAN_ENV)
            os.replace(f"{tarball}.tmp", tarball)
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", str(build)], env=CLEAN_ENV)
        return tarball


class Container:
    """A copy of the cached root in `directory`, booted by start() and shut
    down by stop(). `allow_adjtimex` adds adjtimex and clock_adjtime to
    nspawn's system call filter, which refuses them to the whole container
    by default."""

    def __init__(self, directory: Path, allow_adjtimex: bool = True) -> None:
        self.directory = directory
        self.root = directory / "root"
        self.console = directory / "console.log"
        self.allow_adjtimex = allow_adjtimex
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    def start(self, timeout: float = 90.0) -> None:
        self.root.mkdir(parents=True)
        subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-C", str(self.root), "-xf", str(cached_root())],
                       check=True, env=CLEAN_ENV)
        argv = ["systemd-nspawn", "-D", str(self.root), "-b", "--register=no", "--keep-unit",
                "--private-network", "--console=read-only", f"--machine=nodeagent-test-{os.getpid()}"]
        if self.allow_adjtimex:
            argv.append("--system-call-filter=adjtimex clock_adjtime")
        with open(self.console, "wb") as console:
            self.nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                           env={**CLEAN_ENV, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"})
        self.pid1 = self._find_pid1(timeout)
        self._wait_booted(timeout)

    def _wait_booted(self, timeout: float) -> None:
        """Until every start-up job is done, whether or not all units came up
        (systemctl cannot connect until PID 1 has set up its socket)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                failed = self.run("systemctl", "--failed", "--no-legend", check=False).stdout
                raise AssertionError(f"container boot: {state!r} {r.stderr.strip()}; failed units: {failed}"
                                     + self.console_tail())
            time.sleep(0.2)

    def _find_pid1(self, timeout: float) -> int:
        """The container's init: the process under nspawn whose PID in its
        own namespace is 1 (nspawn's intermediate child exits early)."""
        assert self.nspawn is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.nspawn.poll() is None, f"systemd-nspawn exited with {self.nspawn.returncode}" + \
                self.console_tail()
            for pid in _children(self.nspawn.pid):
                nspid = _status_field(pid, "NSpid").split()
                if len(nspid) == 2 and nspid[1] == "1" and _comm(pid) == "systemd":
                    return pid
            time.sleep(0.1)
        raise AssertionError(f"no systemd under systemd-nspawn after {timeout} s" + self.console_tail())

    def run(self, *argv: str, check: bool = True, timeout: float = 60.0, stdin: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """A command inside the container: its namespaces and root, as root."""
        assert self.pid1, "not started"
        r = subprocess.run(["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
                            *argv], input=stdin if stdin is not None else "", capture_output=True, text=True,
                           timeout=timeout, env=CLEAN_ENV)
        if check:
            assert r.returncode == 0, f"{argv} exited with {r.returncode}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
        return r

    def spawn(self, *argv: str) -> subprocess.Popen[str]:
        """A command inside the container, running on while the test goes on."""
        return subprocess.Popen(["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
                                 *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=CLEAN_ENV)

    def write(self, path: str, text: str) -> None:
        """A file inside the container, written there: /run and /tmp are the
        container's own mounts, which the root directory here does not show."""
        self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path, stdin=text)

    def console_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\nconsole:\n" + self.console.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """Power the container off; the nspawn process started here is
        signalled only if it outlives that; then the copy is removed."""
        if self.nspawn is not None:
            if self.nspawn.poll() is None and self.pid1:
                # the connection may drop as systemd goes down: the exit status says nothing
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.run("systemctl", "poweroff", check=False, timeout=30)
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    self.nspawn.send_signal(sig)
                try:
                    self.nspawn.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # nspawn's mounts lived in its own namespace: nothing is mounted here
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], env=CLEAN_ENV)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (field 4 of /proc/PID/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # the command name (field 2) is in parentheses and may hold spaces
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _status_field(pid: int, name: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == name:
                return value
    return ""


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""
