"""The gpu group's collectors (:9400).

Both read one shared background Sampler (sampler.py) and never call NVML:

- `gpu`: dcgm-exporter's DCGM_* families and nodeagent's per-GPU series from
  the last complete snapshot. It fails (nodeagent_collector_success 0) only
  when the snapshot is stale: no complete cycle within gpu.stale_after, or
  the sampler's NVML calls hang beyond gpu.max_hung_calls. A lost or hung GPU
  is not a failure: its nodeagent_gpu_up is 0 and the other GPUs are served.
- `gpu_status`: the inventory and the sampler's own health (nodeagent_gpus,
  nodeagent_gpu_backend_info, snapshot age and staleness, hung calls). It is
  served even while the snapshot is stale.
"""

from __future__ import annotations

import threading
from typing import Any

from nodeagent.catalogue import gpu as cat
from nodeagent.collectors.gpu.sampler import Sampler, SamplerStatus
from nodeagent.gpu.settings import GpuSettings
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register


class GpuSnapshotStale(RuntimeError):
    """No fresh GPU snapshot to serve."""


# One sampler per (settings, host roots, hostname), shared by the gpu group's collectors.
_HUB_LOCK = threading.Lock()
_HUB: dict[tuple[Any, ...], list[Any]] = {}


def acquire_sampler(host: Host, settings: GpuSettings, hostname: str) -> Sampler:
    key = (settings, host.roots, hostname)
    with _HUB_LOCK:
        entry = _HUB.get(key)
        if entry is not None:
            entry[1] += 1
            sampler: Sampler = entry[0]
            return sampler
        sampler = Sampler(settings, host, hostname)
        sampler.start()
        _HUB[key] = [sampler, 1]
        return sampler


def release_sampler(sampler: Sampler) -> None:
    with _HUB_LOCK:
        for key, entry in list(_HUB.items()):
            if entry[0] is sampler:
                entry[1] -= 1
                if entry[1] > 0:
                    return
                del _HUB[key]
                break
        else:
            return
    sampler.close()


def gpu_settings(context: CollectorContext) -> GpuSettings:
    cfg = context.config
    settings = getattr(cfg, "gpu", None)
    return settings if isinstance(settings, GpuSettings) else GpuSettings()


def node_hostname(host: Host, context: CollectorContext) -> str:
    configured = getattr(context.config, "hostname", None)
    return configured if isinstance(configured, str) and configured else host.hostname()


class _SamplerCollector(Collector):
    def __init__(
        self,
        host: Host,
        options: Any,
        context: CollectorContext | None = None,
        *,
        sampler: Sampler | None = None,
    ) -> None:
        super().__init__(host, options, context)
        self._shared = sampler is None
        self.sampler = sampler or acquire_sampler(host, gpu_settings(self.context), node_hostname(host, self.context))
        self._closed = False

    # how long a scrape waits for the sampler's first cycle (only right after start)
    first_cycle_wait = 2.0

    def _status(self) -> SamplerStatus:
        status = self.sampler.status()
        if status.snapshot is None and not status.stale:
            self.sampler.trigger()
            self.sampler.wait_cycles(1, self.first_cycle_wait)
            status = self.sampler.status()
        return status

    def close(self) -> None:
        if self._shared and not self._closed:
            self._closed = True
            release_sampler(self.sampler)


@register
class GpuCollector(_SamplerCollector):
    name = "gpu"
    group = "gpu"
    description = (
        "dcgm-exporter compatible GPU metrics (DCGM_*) and per-GPU health, XID, job and idle series, "
        "from a background NVML sampler (gpu: section)."
    )

    def collect(self) -> list[MetricFamily]:
        status = self._status()
        if status.stale:
            raise GpuSnapshotStale(status.reason)
        if status.snapshot is None:
            raise GpuSnapshotStale("the first GPU sampling cycle has not completed yet")
        # shared with every scrape: merge_families copies before it adds to a family
        return list(status.snapshot.families)


@register
class GpuStatusCollector(_SamplerCollector):
    name = "gpu_status"
    group = "gpu"
    description = (
        "GPU inventory and sampler health: nodeagent_gpus{state}, backend, snapshot age and staleness, "
        "hung NVML calls."
    )

    def collect(self) -> list[MetricFamily]:
        st = self._status()
        snap = st.snapshot
        gpus = cat.GPUS.family()
        gpus.add(("expected",), st.expected)
        gpus.add(("present",), snap.present if snap else 0)
        gpus.add(("up",), 0 if st.stale or snap is None else sum(1 for g in snap.gpus if g.up))
        backend = cat.BACKEND_INFO.family()
        backend.add((st.backend, st.configured, st.profiling), 1)
        families = [
            gpus,
            backend,
            cat.SNAPSHOT_STALE.single(1 if st.stale else 0),
            cat.HUNG_CALLS.single(len(st.hung)),
            cat.NVML_CALLS.single(st.total_calls),
            cat.SAMPLER_CYCLES.single(st.cycles),
        ]
        if snap is not None and st.age is not None:
            families += [
                cat.SNAPSHOT_AGE.single(round(st.age, 3)),
                cat.SAMPLE_DURATION.single(round(snap.duration, 6)),
                cat.NVML_SECONDS.single(round(snap.nvml_seconds, 6)),
            ]
        return families
