"""The host summary published to CloudWatch: what the CloudWatch Agent sent
from the head and login nodes, derived from the host group's node_exporter
families so that no file is read twice.

CPU percentages need two publishes: they are the share of each mode in the
increase of node_cpu_seconds_total since the previous publish, so the first
publish after start carries memory and disk only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nodeagent.catalogue.sinks import (
    HOST_CPU_IDLE,
    HOST_CPU_IOWAIT,
    HOST_CPU_USED,
    HOST_DISK_USED,
    HOST_MEM_AVAILABLE,
    HOST_MEM_USED,
)
from nodeagent.model import MetricFamily

CPU_SECONDS = "node_cpu_seconds_total"
MEM_TOTAL = "node_memory_MemTotal_bytes"
MEM_AVAILABLE = "node_memory_MemAvailable_bytes"
MEM_FREE = "node_memory_MemFree_bytes"
MEM_BUFFERS = "node_memory_Buffers_bytes"
MEM_CACHED = "node_memory_Cached_bytes"
FS_SIZE = "node_filesystem_size_bytes"
FS_AVAIL = "node_filesystem_avail_bytes"
FS_FREE = "node_filesystem_free_bytes"

_WANTED = {CPU_SECONDS, MEM_TOTAL, MEM_AVAILABLE, MEM_FREE, MEM_BUFFERS, MEM_CACHED, FS_SIZE, FS_AVAIL, FS_FREE}


def _first_value(fam: MetricFamily | None) -> float | None:
    if fam is None or not fam.samples:
        return None
    return fam.samples[0][1]


def _by_mountpoint(fam: MetricFamily | None) -> dict[str, float]:
    if fam is None or "mountpoint" not in fam.labelnames:
        return {}
    i = fam.labelnames.index("mountpoint")
    out: dict[str, float] = {}
    for labels, value in fam.samples:
        out.setdefault(labels[i], value)
    return out


def cpu_mode_totals(fam: MetricFamily) -> tuple[dict[str, float], int]:
    """Seconds per mode summed over CPUs, and the number of CPUs."""
    if "mode" not in fam.labelnames:
        return {}, 0
    mi = fam.labelnames.index("mode")
    ci = fam.labelnames.index("cpu") if "cpu" in fam.labelnames else None
    totals: dict[str, float] = {}
    cpus: set[str] = set()
    for labels, value in fam.samples:
        totals[labels[mi]] = totals.get(labels[mi], 0.0) + value
        if ci is not None:
            cpus.add(labels[ci])
    return totals, len(cpus)


def cpu_percentages(previous: dict[str, float], current: dict[str, float]) -> tuple[float, float, float] | None:
    """(idle %, iowait %, used %) from two readings of seconds per mode."""
    deltas = {mode: current[mode] - previous.get(mode, 0.0) for mode in current}
    if any(d < 0 for d in deltas.values()):
        return None  # a counter went back: CPUs changed or a wrap; wait for the next pair
    total = sum(deltas.values())
    if total <= 0:
        return None
    idle = 100.0 * deltas.get("idle", 0.0) / total
    iowait = 100.0 * deltas.get("iowait", 0.0) / total
    used = max(0.0, 100.0 - idle - iowait)
    return idle, iowait, used


def memory_used(families: dict[str, MetricFamily]) -> tuple[float, float] | None:
    """(used %, available bytes); MemAvailable, else MemFree + Buffers + Cached (kernels < 3.14)."""
    total = _first_value(families.get(MEM_TOTAL))
    if not total:
        return None
    available = _first_value(families.get(MEM_AVAILABLE))
    if available is None:
        parts = [_first_value(families.get(n)) for n in (MEM_FREE, MEM_BUFFERS, MEM_CACHED)]
        if any(p is None for p in parts):
            return None
        available = sum(p for p in parts if p is not None)
    return 100.0 * (1.0 - available / total), available


def disk_used(families: dict[str, MetricFamily], mountpoints: Sequence[str]) -> dict[str, float]:
    """df's Use%: used / (used + avail), used = size - free, per wanted mount point."""
    size = _by_mountpoint(families.get(FS_SIZE))
    avail = _by_mountpoint(families.get(FS_AVAIL))
    free = _by_mountpoint(families.get(FS_FREE))
    out: dict[str, float] = {}
    for mp in mountpoints:
        if mp not in size or mp not in avail:
            continue
        used = size[mp] - free.get(mp, avail[mp])
        denominator = used + avail[mp]
        if denominator > 0:
            out[mp] = 100.0 * used / denominator
    return out


class HostSummary:
    """Derives the summary families from one publish's families; keeps the
    previous CPU reading for the next."""

    def __init__(self, role: str, instance_id: str, mountpoints: Sequence[str] = ("/",)) -> None:
        self.role = role
        self.instance_id = instance_id
        self.mountpoints = tuple(mountpoints)
        self._cpu: tuple[dict[str, float], int] | None = None

    def derive(self, families: Iterable[MetricFamily]) -> list[MetricFamily]:
        found: dict[str, MetricFamily] = {}
        for fam in families:
            if fam.name in _WANTED and fam.name not in found:
                found[fam.name] = fam
        ident = (self.role, self.instance_id)
        out: list[MetricFamily] = []

        cpu = found.get(CPU_SECONDS)
        if cpu is not None:
            totals, ncpu = cpu_mode_totals(cpu)
            previous = self._cpu
            self._cpu = (totals, ncpu) if totals else None
            if previous is not None and totals and previous[1] == ncpu:
                pct = cpu_percentages(previous[0], totals)
                if pct is not None:
                    for spec, value in zip((HOST_CPU_IDLE, HOST_CPU_IOWAIT, HOST_CPU_USED), pct, strict=True):
                        fam = spec.family()
                        fam.add(ident, round(value, 4))
                        out.append(fam)

        mem = memory_used(found)
        if mem is not None:
            used_fam = HOST_MEM_USED.family()
            used_fam.add(ident, round(mem[0], 4))
            avail_fam = HOST_MEM_AVAILABLE.family()
            avail_fam.add(ident, mem[1])
            out.extend((used_fam, avail_fam))

        disks = disk_used(found, self.mountpoints)
        if disks:
            disk_fam = HOST_DISK_USED.family()
            for mp, pct_used in disks.items():
                disk_fam.add((*ident, mp), round(pct_used, 4))
            out.append(disk_fam)
        return out
