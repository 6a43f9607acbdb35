"""node_exporter's filesystem collector (Linux).

Mounts come from /proc/1/mounts (falling back to /proc/mounts when PID 1's
is hidden), filtered by mount point and filesystem type with node_exporter's
default exclude patterns, de-duplicated by (device, mount point, type). Each
remaining mount is statfs'ed through Host.statvfs with a per-mount timeout: a
mount that errors or hangs (a dead NFS server, an unreachable Lustre MDS)
gets node_filesystem_device_error 1 and no other series, and never holds up
the scrape beyond the timeouts; while it stays hung, later scrapes skip it
at once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import structlog

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import line_error
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register
from nodeagent.settings import check_timeout

log = structlog.get_logger(__name__)

# node_exporter 1.5's defaults (upstream; Debian's build also excludes /run, /mnt and /media)
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = (
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue"
    "|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)


@dataclass(frozen=True)
class FilesystemOptions:
    # regular expression (searched, as Go's MatchString) of mount points to leave out
    mount_points_exclude: str = field(default=DEFAULT_MOUNT_POINTS_EXCLUDE, metadata={"regex": True})
    # regular expression of filesystem types to leave out
    fs_types_exclude: str = field(default=DEFAULT_FS_TYPES_EXCLUDE, metadata={"regex": True})
    # seconds one mount's statfs may take before it counts as a device error
    mount_timeout: float = field(default=1.0, metadata={"check": check_timeout})
    # seconds all statfs calls of one scrape may take together; once spent, each
    # remaining mount gets only a short grace (enough for local filesystems)
    total_timeout: float = field(default=2.5, metadata={"check": check_timeout})


@dataclass(frozen=True, slots=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: str

    @property
    def readonly(self) -> bool:
        return "ro" in self.options.split(",")


def _unescape(path: str) -> str:
    # fstab(5) escapes in /proc/mounts, decoded the way node_exporter does
    if "\\" in path:
        path = path.replace("\\040", " ").replace("\\011", "\t")
    return path


def parse_mounts(text: str, source: str = "mounts") -> list[Mount]:
    """/proc/<pid>/mounts lines as Mounts, in file order. A line with fewer
    than four fields is an error, as in node_exporter."""
    mounts = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise line_error(source, lineno, line, "malformed mount point information")
        mounts.append(Mount(parts[0], _unescape(parts[1]), parts[2], parts[3]))
    return mounts


def select_mounts(
    mounts: list[Mount], mount_points_exclude: re.Pattern[str], fs_types_exclude: re.Pattern[str]
) -> list[Mount]:
    """Mounts left after the exclude patterns, first of each (device, mount
    point, type): a mount stacked twice would otherwise be reported twice."""
    seen: set[tuple[str, str, str]] = set()
    selected = []
    for m in mounts:
        if mount_points_exclude.search(m.mountpoint) or fs_types_exclude.search(m.fstype):
            continue
        key = (m.device, m.mountpoint, m.fstype)
        if key in seen:
            continue
        seen.add(key)
        selected.append(m)
    return selected


def strip_rootfs(mountpoint: str, rootfs: str) -> str:
    """node_exporter's rootfsStripPrefix: with --path.rootfs=/host, a mount
    seen as /host/data is labelled /data."""
    if rootfs in ("", "/") or not mountpoint.startswith(rootfs):
        return mountpoint
    rest = mountpoint[len(rootfs) :]
    if rest and not rest.startswith("/"):
        return mountpoint
    return rest or "/"


@register
class FilesystemCollector(Collector):
    name = "filesystem"
    group = "host"
    description = "Size, free space and inodes per mounted filesystem (statfs, bounded by a timeout)."
    Options = FilesystemOptions

    # a statfs that has to run after the scrape's budget is spent still gets this long
    GRACE = 0.02

    def __init__(self, host: Host, options: FilesystemOptions, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._mount_points_exclude = re.compile(options.mount_points_exclude)
        self._fs_types_exclude = re.compile(options.fs_types_exclude)
        self._failing: set[str] = set()

    def _read_mounts(self) -> tuple[str, str]:
        path = self.host.proc("1", "mounts")
        try:
            return self.host.read_text(path), str(path)
        except FileNotFoundError:
            # PID 1's mounts are hidden (hidepid); the agent's own are the next best
            path = self.host.proc("mounts")
            return self.host.read_text(path), str(path)

    def collect(self) -> list[MetricFamily]:
        text, source = self._read_mounts()
        mounts = select_mounts(parse_mounts(text, source), self._mount_points_exclude, self._fs_types_exclude)
        rootfs = self.host.roots.rootfs.rstrip("/")
        size = cat.FILESYSTEM_SIZE.family()
        free = cat.FILESYSTEM_FREE.family()
        avail = cat.FILESYSTEM_AVAIL.family()
        files = cat.FILESYSTEM_FILES.family()
        files_free = cat.FILESYSTEM_FILES_FREE.family()
        readonly = cat.FILESYSTEM_READONLY.family()
        device_error = cat.FILESYSTEM_DEVICE_ERROR.family()
        deadline = time.monotonic() + self.options.total_timeout
        failing: set[str] = set()
        for m in mounts:
            mountpoint = strip_rootfs(m.mountpoint, rootfs)
            labels = (m.device, m.fstype, mountpoint)
            timeout = min(self.options.mount_timeout, max(deadline - time.monotonic(), self.GRACE))
            try:
                st = self.host.statvfs(mountpoint, timeout)
            except OSError as e:
                device_error.add(labels, 1.0)
                failing.add(mountpoint)
                if mountpoint not in self._failing:
                    log.warning("filesystem_stat_failed", mountpoint=mountpoint, fstype=m.fstype, error=str(e))
                continue
            device_error.add(labels, 0.0)
            # node_exporter multiplies by f_bsize (statfs's block size)
            bsize = float(st.f_bsize)
            size.add(labels, st.f_blocks * bsize)
            free.add(labels, st.f_bfree * bsize)
            avail.add(labels, st.f_bavail * bsize)
            files.add(labels, float(st.f_files))
            files_free.add(labels, float(st.f_ffree))
            readonly.add(labels, 1.0 if m.readonly else 0.0)
        for mountpoint in self._failing - failing:
            log.info("filesystem_stat_recovered", mountpoint=mountpoint)
        self._failing = failing
        return [size, free, avail, files, files_free, readonly, device_error]

