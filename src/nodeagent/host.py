"""The one boundary between nodeagent and the machine it watches.

Every read of procfs/sysfs, every filesystem stat and every external command
goes through a Host. Its roots are configurable (like node_exporter's
--path.procfs/--path.sysfs/--path.rootfs), so collectors run unchanged against
fixture trees in tests. No other module names "/proc" or "/sys".
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from nodeagent.workers import DaemonWorkers


class CommandError(RuntimeError):
    """An external command failed: not found, non-zero exit, or timed out."""

    def __init__(self, argv: Sequence[str], message: str, returncode: int | None = None) -> None:
        super().__init__(f"{argv[0]}: {message}")
        self.argv = list(argv)
        self.returncode = returncode


class CommandTimeout(CommandError):
    pass


class StatTimeout(OSError):
    """statvfs did not return in time (a hung NFS/Lustre mount)."""


@dataclass(frozen=True)
class Roots:
    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"
    # debugfs holds Lustre >= 2.12 llite stats (root only)
    debugfs: str = "/sys/kernel/debug"
    # where the ParallelCluster node facts live (cfnconfig, dna.json)
    etc: str = "/etc"
    dev: str = "/dev"


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float


_STAT_WORKERS = DaemonWorkers("statfs")
# mount points whose statvfs is still stuck in a worker: shared by every Host,
# so a reload does not pile another thread onto a mount that already hangs
_STUCK_STATS: set[str] = set()
_STUCK_LOCK = threading.Lock()


class Host:
    def __init__(
        self,
        roots: Roots | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.roots = roots or Roots()
        self.clock = clock
        self.monotonic = monotonic
        self._procfs = Path(self.roots.procfs)
        self._sysfs = Path(self.roots.sysfs)
        self._rootfs = Path(self.roots.rootfs)
        self._proc_paths: dict[tuple[str, ...], Path] = {}

    # ---- paths ---------------------------------------------------------
    def proc(self, *parts: str) -> Path:
        # collectors ask for the same few dozen paths every scrape: build each once
        path = self._proc_paths.get(parts)
        if path is None:
            path = self._proc_paths[parts] = self._procfs.joinpath(*parts)
        return path

    def sys(self, *parts: str) -> Path:
        return self._sysfs.joinpath(*parts)

    def debugfs(self, *parts: str) -> Path:
        return Path(self.roots.debugfs).joinpath(*parts)

    def etc(self, *parts: str) -> Path:
        return Path(self.roots.etc).joinpath(*parts)

    def dev(self, *parts: str) -> Path:
        return Path(self.roots.dev).joinpath(*parts)

    def rooted(self, path: str) -> Path:
        """A path of the watched system (e.g. a mount point) under rootfs."""
        return self._rootfs.joinpath(path.lstrip("/"))

    # ---- reads ---------------------------------------------------------
    @staticmethod
    def read_text(path: Path) -> str:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()

    @staticmethod
    def read_bytes(path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def read_proc(self, *parts: str) -> str:
        return self.read_text(self.proc(*parts))

    @staticmethod
    def stat(path: Path) -> os.stat_result:
        """The file's status, following symlinks."""
        return os.stat(path)

    @staticmethod
    @contextlib.contextmanager
    def open_regular(path: Path) -> Iterator[tuple[BinaryIO, os.stat_result]]:
        """A regular file (a symlink to one is fine) opened for binary reading, with
        its status, for files other programs drop into our directories. Anything
        else is refused before a read: a FIFO would block the reader for ever."""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(path))
            f = os.fdopen(fd, "rb", buffering=65536)  # owns fd from here on
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f, st

    @staticmethod
    def read_optional(path: Path) -> str | None:
        """The file's text, or None when it does not exist or cannot be read
        (sysfs attributes that a driver does not implement raise EINVAL)."""
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    @staticmethod
    def read_attrs(directory: Path, names: Sequence[str]) -> dict[str, str | None]:
        """Small files of one directory (sysfs attributes; names may contain
        "/", e.g. "statistics/rx_nohandler"), stripped; None for each one
        missing or unreadable, and for all when the directory is gone. One
        directory open plus a bare open/read/close per file: about 3x cheaper
        than open() per file, which counts with hundreds of attributes a scrape."""
        out: dict[str, str | None] = dict.fromkeys(names)
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return out
        try:
            for name in out:
                try:
                    fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
                except OSError:
                    continue
                try:
                    data = os.read(fd, 4096)
                    while len(data) % 4096 == 0 and data:
                        more = os.read(fd, 4096)
                        if not more:
                            break
                        data += more
                    out[name] = data.decode("utf-8", "replace").strip()
                except OSError:
                    pass
                finally:
                    os.close(fd)
        finally:
            os.close(dfd)
        return out

    @staticmethod
    def read_records(path: Path, max_bytes: int, record_size: int = 16384) -> bytes:
        """Everything readable now, without blocking, from a record device
        (/dev/kmsg: one record per read, EAGAIN once caught up) or a plain
        file, at most about max_bytes. Records the kernel overwrote while
        being read (EPIPE) are skipped. Raises OSError when it cannot be opened."""
        stream = RecordStream(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        try:
            return stream.read_new(max_bytes, record_size)
        finally:
            stream.close()

    @staticmethod
    def open_records(path: Path) -> RecordStream:
        """A record device (/dev/kmsg) or file kept open: each `read_new()`
        returns what was added since the last one, without blocking. Raises
        OSError when it cannot be opened."""
        return RecordStream(os.open(path, os.O_RDONLY | os.O_NONBLOCK))

    @staticmethod
    def listdir(path: Path) -> list[str]:
        """Sorted entries of a directory, [] when it does not exist."""
        try:
            return sorted(os.listdir(path))
        except (FileNotFoundError, NotADirectoryError):
            return []

    @staticmethod
    def exists(path: Path) -> bool:
        return path.exists()

    @staticmethod
    def is_dir(path: Path) -> bool:
        return path.is_dir()

    @staticmethod
    def readlink(path: Path) -> str | None:
        try:
            return os.readlink(path)
        except OSError:
            return None

    @staticmethod
    def mtime(path: Path) -> float:
        return path.stat().st_mtime

    # ---- filesystem stats, bounded in time -------------------------------
    def statvfs(self, mountpoint: str, timeout: float) -> os.statvfs_result:
        """statvfs of a mount point of the watched system, bounded by timeout.

        A stale NFS or Lustre mount blocks statfs in the kernel, and no Python
        thread can be interrupted there, so the call runs in a daemon thread;
        while it stays stuck, later calls for the same mount fail at once.
        """
        path = str(self.rooted(mountpoint))
        with _STUCK_LOCK:
            if path in _STUCK_STATS:
                raise StatTimeout(f"statfs of {mountpoint} is still hanging from an earlier scrape")
            _STUCK_STATS.add(path)
        result: list[os.statvfs_result] = []
        error: list[OSError] = []
        done = threading.Event()

        def work() -> None:
            try:
                result.append(os.statvfs(path))
            except OSError as e:
                error.append(e)
            finally:
                with _STUCK_LOCK:
                    _STUCK_STATS.discard(path)
                done.set()

        _STAT_WORKERS.submit(work)
        if not done.wait(timeout):
            raise StatTimeout(f"statfs of {mountpoint} timed out after {timeout:g}s")
        if error:
            raise error[0]
        return result[0]

    # ---- commands ------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run argv (never a shell) with a mandatory timeout; the process is
        killed when the timeout passes. Raises CommandError on failure."""
        argv = [str(a) for a in argv]
        started = self.monotonic()
        try:
            # its own process group, so a timeout kills what it started too
            # (a wrapper script's children would otherwise hold the pipes open)
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        except OSError as e:
            raise CommandError(argv, f"cannot run: {e.strerror or e}") from e
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.kill_group(proc)
            raise CommandTimeout(argv, f"timed out after {timeout:g}s") from e
        except BaseException:
            self.kill_group(proc)
            raise
        duration = self.monotonic() - started
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        if check and proc.returncode != 0:
            first = (stderr.strip().splitlines() or ["(no error output)"])[0][:300]
            raise CommandError(argv, f"exited with {proc.returncode}: {first}", proc.returncode)
        return CommandResult(argv, proc.returncode, stdout, stderr, duration)

    def popen_lines(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start argv with its stdout as a text stream, for parsers that read
        line by line (squeue with 100k jobs) instead of holding all output.
        The caller owns the process and must wait or kill it."""
        return subprocess.Popen(
            [str(a) for a in argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # kill_group() reaches its children too
            text=True,
            encoding="utf-8",
            errors="replace",
        )

    @staticmethod
    def kill_group(proc: subprocess.Popen[Any]) -> None:
        """SIGKILL a command started by run()/popen_lines() and everything in
        its process group, then reap it."""
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)

    # ---- system facts -----------------------------------------------------
    @staticmethod
    def uname() -> os.uname_result:
        return os.uname()

    @staticmethod
    def hostname() -> str:
        return os.uname().nodename

    def time(self) -> float:
        return self.clock()

    def adjtimex(self) -> dict[str, int]:
        """The kernel clock state from adjtimex(2) with modes=0 (read only):
        struct timex fields by name plus "state", the call's return value."""
        from nodeagent.adjtimex import read_adjtimex

        return read_adjtimex()


class RecordStream:
    """An open record device or file read without blocking (Host.open_records)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read_new(self, max_bytes: int, record_size: int = 16384) -> bytes:
        """Everything added since the last read, at most about max_bytes;
        records the kernel overwrote meanwhile (EPIPE) are skipped."""
        chunks: list[bytes] = []
        total = 0
        while total < max_bytes:
            try:
                data = os.read(self._fd, record_size)
            except BlockingIOError:
                break
            except BrokenPipeError:
                continue
            if not data:
                break
            chunks.append(data)
            total += len(data)
        return b"".join(chunks)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
