"""Enrichers: plain functions that turn one cycle's raw readings into what is served.

Nothing here calls NVML or reads files: each takes values (and the little
state it carries from the last cycle) and returns values, so each is tested
on its own, without the fake driver.

- `attribute_jobs`: which Slurm jobs own a GPU and each of its MIG instances,
  from the GPU's compute processes and dcgm-exporter's mapping files;
- `idle_seconds`: how long a GPU that belongs to a job has stayed idle;
- `clock_event_counts`: DCGM_EXP_CLOCK_EVENTS_COUNT from the clock-event
  reasons seen within the window;
- `nvlink_rate`: DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL as DCGM computes it, a
  rate between two readings of the NVLink throughput counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from nodeagent.catalogue import gpu as cat
from nodeagent.collectors.gpu.jobs import bounded
from nodeagent.collectors.gpu.state import GpuState
from nodeagent.collectors.gpu.xid import XidTracker

NO_INSTANCE = 0xFFFFFFFF  # NVML's "not in a MIG instance" for gpuInstanceId


@dataclass(frozen=True)
class GpuProcess:
    """One compute process as NVML lists it."""

    pid: int
    used_bytes: int
    gi_id: int | None = None  # the MIG GPU instance it runs in


@dataclass
class Attribution:
    gpu_jobs: tuple[str, ...] = ()
    instance_jobs: dict[int, tuple[str, ...]] = field(default_factory=dict)
    processes: int | None = None  # None: not read
    memory: dict[str, int] = field(default_factory=dict)  # job ("" = none or beyond the bound) -> bytes


def attribute_jobs(
    gpu: int,
    instances: Sequence[int],
    processes: Sequence[GpuProcess] | None,
    job_of: Callable[[int], str | None] | None,
    mapping: Mapping[str, Sequence[str]],
    limit: int,
    warned: set[str],
) -> Attribution:
    """Jobs of a GPU and of each of its MIG instances.

    Following dcgm-exporter's hpc_job mapping (internal/pkg/transformation/
    hpc.go): the file named after the gpu label ("0") names the jobs of a
    whole GPU, "0.<GPU_I_ID>" those of one instance. A process NVML reports
    inside an instance belongs to that instance only, so an instance's series
    name only the jobs running on that instance.
    """
    gpu_jobs: list[str] = list(mapping.get(str(gpu), ()))
    inst_jobs: dict[int, list[str]] = {gi: list(mapping.get(f"{gpu}.{gi}", ())) for gi in instances}
    memory: dict[str, int] = {}
    for p in processes or ():
        job = job_of(p.pid) if job_of is not None else None
        memory[job or ""] = memory.get(job or "", 0) + p.used_bytes
        if job is None:
            continue
        if p.gi_id is not None and p.gi_id in inst_jobs:
            inst_jobs[p.gi_id].append(job)
        elif not instances:
            gpu_jobs.append(job)
    where = str(gpu)
    kept_memory = set(bounded((j for j in memory if j), limit, where, warned))
    folded: dict[str, int] = {}
    for job, used in memory.items():
        key = job if job in kept_memory else ""
        folded[key] = folded.get(key, 0) + used
    return Attribution(
        gpu_jobs=bounded(gpu_jobs, limit, where, warned),
        instance_jobs={gi: bounded(jobs, limit, f"{gpu}.{gi}", warned) for gi, jobs in inst_jobs.items()},
        processes=None if processes is None else len(processes),
        memory=folded if processes is not None else {},
    )


IdleState = tuple[tuple[str, ...], float]  # (the jobs, idle since)


def idle_seconds(previous: IdleState | None, jobs: tuple[str, ...], util: float | None,
                 threshold: float, now: float) -> tuple[IdleState | None, float | None]:
    """(state for the next cycle, seconds a GPU that belongs to a job has been
    below `threshold` percent). None seconds: no job, or utilisation unknown."""
    if not jobs or util is None:
        return None, None
    if util >= threshold:
        return None, 0.0
    if previous is None or previous[0] != jobs:
        return (jobs, now), 0.0  # idle from now, or another job now: its idle time starts here
    return previous, now - previous[1]


def clock_event_counts(history: deque[tuple[float, int]], mask: int, now: float, window: float) -> dict[str, int]:
    """Record this cycle's clock-event reasons and count, per event, the
    samples within the window that had it set.

    dcgm-exporter (internal/pkg/collector/clock_events_collector.go) asks
    DCGM for every value of DCGM_FI_DEV_CLOCKS_EVENT_REASONS recorded within
    the window and counts, per reason bit, the values that have it set; DCGM
    records one value per watch interval, which dcgm-exporter sets to its
    collect interval. One sample per sampling cycle here is the same count
    when gpu.interval equals dcgm-exporter's --collect-interval.
    """
    history.append((now, mask))
    horizon = now - window
    while history and history[0][0] < horizon:
        history.popleft()
    counts: dict[str, int] = {}
    for bit, name in cat.CLOCK_EVENT_NAMES:
        n = sum(1 for _, m in history if m & bit)
        if n:
            counts[name] = n
    return counts


NvlinkReading = tuple[float, int]  # (monotonic seconds, KiB transferred, RX + TX over all links)


def nvlink_rate(previous: NvlinkReading | None, current: NvlinkReading) -> int:
    """DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL from two readings of the throughput
    counters, as DCGM computes it (NVIDIA/DCGM dcgmlib/src/DcgmCacheManager.cpp,
    ReadAndCacheNvLinkBandwidth): KiB per second divided by 1000 (its "MB/s"),
    a whole number; 0 for the first reading, a zero counter or no time passed.
    A counter that went backwards (a reset) gives 0 here, where DCGM would
    publish a negative rate."""
    if previous is None or current[1] == 0:
        return 0
    seconds = current[0] - previous[0]
    delta = current[1] - previous[1]
    if seconds <= 0 or delta < 0:
        return 0
    return int(delta / seconds / 1000)


# the readers' names for the raw values the enrichers turn into served ones
CLOCK_REASONS = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"
NVLINK_BANDWIDTH = "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"


class CycleEnricher:
    """Runs the enrichers over one cycle's GPU states and keeps what they carry
    from cycle to cycle (clock-event history, the last NVLink reading, idle since)."""

    def __init__(self, xids: XidTracker, idle_threshold: float, clock_window: float) -> None:
        self.xids = xids
        self.idle_threshold = idle_threshold
        self.clock_window = clock_window
        self._clock_history: dict[int, deque[tuple[float, int]]] = {}
        self._nvlink: dict[int, NvlinkReading] = {}
        self._idle: dict[int, IdleState] = {}

    def run(self, states: list[GpuState], now: float) -> None:
        """Per GPU: XIDs, clock events, the NVLink rate and idle time."""
        for state in states:
            state.xid = self.xids.view(state.index, now)
            for inst in state.mig:
                inst.xid = self.xids.view(state.index, now, inst.gi_id)
            if not state.up:
                continue
            mask = state.values.pop(CLOCK_REASONS, None)
            if mask is not None:
                history = self._clock_history.setdefault(state.index, deque())
                state.clock_events = clock_event_counts(history, int(mask), now, self.clock_window)
            raw = state.values.get(NVLINK_BANDWIDTH)
            if raw is not None:
                reading = (now, int(raw))
                state.values[NVLINK_BANDWIDTH] = nvlink_rate(self._nvlink.get(state.index), reading)
                self._nvlink[state.index] = reading
            util = state.values.get("DCGM_FI_DEV_GPU_UTIL")
            if util is None and "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in state.values:
                util = state.values["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] * 100
            idle, state.idle_seconds = idle_seconds(
                self._idle.get(state.index), state.jobs, None if state.mig else util, self.idle_threshold, now)
            if idle is None:
                self._idle.pop(state.index, None)
            else:
                self._idle[state.index] = idle
