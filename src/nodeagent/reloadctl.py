"""`nodeagent reload --pid PID`: reload a running daemon and wait for the
verdict, so that `systemctl reload` (its unit's ExecReload) returns when the
reload is done and fails when it was rejected. systemd 252 (Debian 12) has
no Type=notify-reload, and an ExecReload that only sends SIGHUP returns at
once with success whatever follows.

The daemon keeps a small status file in its runtime directory
($RUNTIME_DIRECTORY, /run/nodeagent/ROLE under systemd's RuntimeDirectory=):
its PID, how many reloads it started and finished, and how the last one
ended. The command reads it, sends SIGHUP, and waits for a reload that
started after its signal to finish: exit 0 when it was applied, 1 when it was
rejected (the daemon goes on with its old config; the reason is printed and
logged) or when no verdict came (no status file, no such process, timeout).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

STATUS_FILE = "reload.json"
EX_OK = 0
EX_FAILED = 1
POLL = 0.05  # seconds between two reads of the status file


@dataclass
class ReloadStatus:
    pid: int
    started: int = 0  # reloads started since the daemon started
    finished: int = 0  # reloads finished (applied or rejected)
    result: str = "none"  # of the last finished one: "applied", "rejected" or "none"
    error: str = ""  # why it was rejected


def status_path() -> str | None:
    """The status file, in the runtime directory systemd gives the unit; None without one."""
    directory = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return os.path.join(directory, STATUS_FILE) if directory else None


def write_status(path: str, status: ReloadStatus) -> None:
    """Replace the file at once: a reader sees the old status or the new one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".reload.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(status), f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_status(path: str) -> ReloadStatus | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return ReloadStatus(int(data["pid"]), int(data["started"]), int(data["finished"]), str(data["result"]),
                            str(data.get("error", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] not in ("Z", "X")


def reload(pid: int, timeout: float) -> int:
    """Send SIGHUP to pid and wait for its verdict; the exit status."""
    path = status_path()
    if path is None:
        return _fail("RUNTIME_DIRECTORY is not set: run this as the unit's ExecReload "
                     f"(or set it as the daemon had it), or send SIGHUP to {pid} without waiting")
    before = read_status(path)
    if before is None or before.pid != pid:
        return _fail(f"no reload status from PID {pid} in {path}: is it a nodeagent daemon started with this "
                     "RUNTIME_DIRECTORY, and done starting?")
    # a reload in progress (started > finished) read the config before this
    # command ran: wait for the one after it, which our signal asks for
    wanted = before.started + 1
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as e:
        return _fail(f"cannot signal PID {pid}: {e.strerror or e}")
    deadline = time.monotonic() + timeout
    while True:
        now = read_status(path)
        if now is not None and now.pid == pid and now.finished >= wanted:
            if now.result == "applied":
                return EX_OK
            return _fail(f"reload rejected, still serving the previous config: {now.error}")
        if not _alive(pid):
            return _fail(f"PID {pid} exited during the reload")
        if time.monotonic() > deadline:
            return _fail(f"no verdict from PID {pid} after {timeout:g}s; it may still be reloading")
        time.sleep(POLL)


def _fail(message: str) -> int:
    print(f"nodeagent reload: {message}", file=sys.stderr)
    return EX_FAILED
