"""Running Slurm's commands: absolute binary paths, SLURM_CONF, a clean
environment, mandatory timeouts, and streaming for outputs that grow with the
number of jobs.

Binaries are looked up in slurm.bin_dir first (ParallelCluster installs Slurm
in /opt/slurm/bin, which is not on a systemd unit's PATH), then on PATH; the
resolved absolute path is what runs. The environment passed to the commands
drops every SQUEUE_*/SINFO_*/SLURM_* variable of the agent's own environment
(they change what squeue and sinfo print: SQUEUE_FORMAT, SQUEUE_USERS,
SINFO_PARTITION, ...) except SLURM_CONF, which the settings may set.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence

from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.host import CommandError, CommandResult, CommandTimeout, Host

# Variables that change what Slurm's clients print or which jobs they show.
_DROPPED_PREFIXES = ("SQUEUE_", "SINFO_", "SLURM_", "SSHARE_", "SDIAG_")
_READ_SIZE = 1 << 20
_STDERR_KEEP = 4096


def command_env(settings: SlurmSettings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(_DROPPED_PREFIXES)}
    conf = settings.slurm_conf
    if conf is None:
        inherited = (os.environ if base is None else base).get("SLURM_CONF")
        if inherited:
            env["SLURM_CONF"] = inherited
    else:
        env["SLURM_CONF"] = conf
    # numbers and dates in one fixed form whatever the agent's locale
    env["LC_ALL"] = "C"
    env["SLURM_TIME_FORMAT"] = "standard"
    return env


class SlurmRunner:
    """Runs one Slurm client (sinfo, squeue, ...) for a collector."""

    def __init__(self, host: Host, settings: SlurmSettings, command: str) -> None:
        self.host = host
        self.settings = settings
        self.command = command
        self._lock = threading.Lock()
        self._running: subprocess.Popen[str] | None = None
        self._closed = False

    def binary(self) -> str:
        """Absolute path of the command: bin_dir first, then PATH."""
        candidate = os.path.join(self.settings.bin_dir, self.command)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
        found = shutil.which(self.command)
        if found is None:
            raise CommandError([self.command], f"not found in {self.settings.bin_dir} nor on PATH (set slurm.bin_dir)")
        return os.path.abspath(found)

    def argv(self, args: Sequence[str]) -> list[str]:
        return [self.binary(), *args]

    def run(self, args: Sequence[str]) -> CommandResult:
        """Run to completion (small outputs: sinfo, sdiag, sshare). Through
        stream(), so that close() kills it too: a hung slurmctld must not
        hold up the agent's stop, a reload or `--once` for command_timeout."""
        chunks: list[bytes] = []
        duration = self.stream(args, chunks.append)
        stdout = b"".join(chunks).decode("utf-8", errors="replace")
        return CommandResult(self.argv(args), 0, stdout, "", duration)

    def stream(self, args: Sequence[str], consume: Callable[[bytes], None]) -> float:
        """Run and hand stdout to `consume` in chunks as it arrives (squeue with
        100k jobs), never holding the whole output. The command is killed when
        command_timeout passes, even if it stops writing or never exits.
        Returns the duration; raises CommandError / CommandTimeout."""
        argv = self.argv(args)
        timeout = self.settings.command_timeout
        started = self.host.monotonic()
        deadline = started + timeout
        proc = self.host.popen_lines(argv, env=command_env(self.settings))
        with self._lock:
            if self._closed:
                self.host.kill_group(proc)
            self._running = proc
        assert proc.stdout is not None and proc.stderr is not None
        out_fd = proc.stdout.fileno()
        err_fd = proc.stderr.fileno()
        stderr = bytearray()
        # epoll, not select(): the agent may hold more than 1024 descriptors
        sel = selectors.DefaultSelector()
        try:
            sel.register(out_fd, selectors.EVENT_READ)
            sel.register(err_fd, selectors.EVENT_READ)
            while sel.get_map():
                remaining = deadline - self.host.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(argv, f"timed out after {timeout:g}s")
                for key, _ in sel.select(remaining):
                    fd = key.fd
                    data = os.read(fd, _READ_SIZE)
                    if not data:
                        sel.unregister(fd)
                    elif fd == out_fd:
                        consume(data)
                    elif len(stderr) < _STDERR_KEEP:
                        stderr += data[: _STDERR_KEEP - len(stderr)]
            remaining = deadline - self.host.monotonic()
            try:
                returncode = proc.wait(timeout=max(remaining, 0.001))
            except subprocess.TimeoutExpired:
                raise CommandTimeout(argv, f"timed out after {timeout:g}s") from None
        except BaseException:
            self.host.kill_group(proc)
            raise
        finally:
            sel.close()
            with self._lock:
                self._running = None
            for f in (proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    f.close()
        if returncode != 0:
            text = stderr.decode("utf-8", errors="replace").strip()
            first = (text.splitlines() or ["(no error output)"])[0][:300]
            raise CommandError(argv, f"exited with {returncode}: {first}", returncode)
        return self.host.monotonic() - started

    def close(self) -> None:
        """Kill a command still running (agent stop or reload)."""
        with self._lock:
            self._closed = True
            proc = self._running
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
