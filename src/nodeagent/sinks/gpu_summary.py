"""Per-node GPU summary for CloudWatch, derived from the gpu group's families.

One datum per node and summary metric (catalogue/summaries.py), whatever the
number of GPUs, instead of one per GPU and field: a 100-node, 8-GPU cluster
publishes 10 GPU metrics per node rather than hundreds.

Every GPU counts once: dcgm-exporter's job mapping repeats a GPU's sample
for each job on it (`hpc_job`), so samples are keyed by the GPU's identity
(UUID, or gpu index). On a MIG GPU the framebuffer and profiling fields are
per GPU instance and keyed by the instance too (GPU_I_ID); the device-wide
fields (power, temperature, utilisation) repeat the GPU's one value on every
instance's series and count once per GPU.

XID errors are an increase between two publishes, so the summary keeps the
previous reading of each nodeagent_gpu_xid_errors_total series (like the host
summary keeps the previous CPU reading): the first publish after start carries
no XID datum, a series seen for the first time counts from zero, and a series
that went back (the agent restarted its counting) counts from zero again.

Use: `summary = GpuSummary(role, instance_id)` once, then
`summary.derive(families)` on each publish's families; the result goes through
the CloudWatch mapper like any other family.
"""

from __future__ import annotations

from collections.abc import Iterable

from nodeagent.catalogue import gpu as g
from nodeagent.catalogue.spec import MetricSpec
from nodeagent.catalogue.summaries import (
    GPU_ALLOCATED_IDLE,
    GPU_LOST,
    GPU_MEMORY_USED,
    GPU_MEMORY_USED_PERCENT,
    GPU_NODE_ACTION,
    GPU_POWER,
    GPU_TEMP_MAX,
    GPU_UTIL_MAX,
    GPU_UTIL_MEAN,
    GPU_XID_ERRORS,
)
from nodeagent.model import MetricFamily, is_finite
from nodeagent.sinks.counters import total_increase

MIB = 1024 * 1024

# the families the summary reads
INPUTS = (
    g.GPU_UTIL.name,
    g.FB_USED.name,
    g.FB_FREE.name,
    g.FB_RESERVED.name,
    g.GPU_TEMP.name,
    g.POWER_USAGE.name,
    g.XID_ERRORS_TOTAL.name,
    g.NODE_ACTION_XID.name,
    g.GPU_UP.name,
    g.GPUS.name,
    g.ALLOCATED_IDLE.name,
)
_INPUTS = frozenset(INPUTS)
# fields that MIG splits per GPU instance (the collector's render.py repeats
# all others, device-wide, on each instance's series)
PER_INSTANCE_PREFIXES = ("DCGM_FI_DEV_FB_", "DCGM_FI_PROF_")


def _key_indexes(fam: MetricFamily) -> list[int]:
    """Label positions that identify a GPU in this family, or a MIG instance
    for the fields MIG splits per instance."""
    identity = ("UUID", "gpu", "GPU_I_ID") if fam.name.startswith(PER_INSTANCE_PREFIXES) else ("UUID", "gpu")
    idx = [fam.labelnames.index(n) for n in identity if n in fam.labelnames]
    if "UUID" in fam.labelnames and "gpu" in fam.labelnames:
        idx.remove(fam.labelnames.index("gpu"))
    return idx


def per_gpu(fam: MetricFamily | None) -> dict[tuple[str, ...], float]:
    """One finite value per GPU (per MIG instance for per-instance fields);
    with several samples per key (one per job, or a device-wide field repeated
    per MIG instance), the largest. A family without identity labels gives one
    entry."""
    if fam is None:
        return {}
    idx = _key_indexes(fam)
    out: dict[tuple[str, ...], float] = {}
    for labels, value in fam.samples:
        if not is_finite(value):
            continue
        key = tuple(labels[i] for i in idx)
        previous = out.get(key)
        out[key] = value if previous is None else max(previous, value)
    return out


def _by_state(fam: MetricFamily | None) -> dict[str, float]:
    if fam is None or "state" not in fam.labelnames:
        return {}
    i = fam.labelnames.index("state")
    return {labels[i]: value for labels, value in fam.samples if is_finite(value)}


def lost_gpus(states: dict[str, float], up: dict[tuple[str, ...], float]) -> float | None:
    """GPUs expected or present but not up; without the inventory, GPUs with up == 0."""
    if "up" in states and ("expected" in states or "present" in states):
        return max(0.0, max(states.get("expected", 0.0), states.get("present", 0.0)) - states["up"])
    if up:
        return float(sum(1 for v in up.values() if v == 0))
    return None


class GpuSummary:
    """Derives the GPU summary families from one publish's families."""

    def __init__(self, role: str, instance_id: str) -> None:
        self.role = role
        self.instance_id = instance_id
        self._xid: dict[tuple[str, ...], float] | None = None

    def _xid_increase(self, fam: MetricFamily | None, gpus_seen: bool) -> float | None:
        if fam is None and not gpus_seen:
            return None  # no GPU group in these families
        samples = fam.samples if fam is not None else []
        current = {labels: value for labels, value in samples if is_finite(value)}
        previous = self._xid
        self._xid = current
        if previous is None:
            return None
        # an XID series appears with its first error: a new one counts from zero
        return total_increase(previous, current, new_from_zero=True)

    def derive(self, families: Iterable[MetricFamily]) -> list[MetricFamily]:
        found: dict[str, MetricFamily] = {}
        for fam in families:
            if fam.name in _INPUTS and fam.name not in found:
                found[fam.name] = fam
        ident = (self.role, self.instance_id)
        out: list[MetricFamily] = []

        def emit(spec: MetricSpec, value: float | None) -> None:
            if value is None or not is_finite(value):
                return
            fam = spec.family()
            fam.add(ident, round(value, 4))
            out.append(fam)

        util = per_gpu(found.get(g.GPU_UTIL.name))
        if util:
            emit(GPU_UTIL_MEAN, sum(util.values()) / len(util))
            emit(GPU_UTIL_MAX, max(util.values()))

        used = per_gpu(found.get(g.FB_USED.name))
        if used:
            used_mib = sum(used.values())
            emit(GPU_MEMORY_USED, used_mib * MIB)
            free = per_gpu(found.get(g.FB_FREE.name))
            reserved = per_gpu(found.get(g.FB_RESERVED.name))
            if free and set(free) == set(used):
                total = used_mib + sum(free.values()) + sum(v for k, v in reserved.items() if k in used)
                if total > 0:
                    emit(GPU_MEMORY_USED_PERCENT, 100.0 * used_mib / total)

        temp = per_gpu(found.get(g.GPU_TEMP.name))
        if temp:
            emit(GPU_TEMP_MAX, max(temp.values()))

        power = per_gpu(found.get(g.POWER_USAGE.name))
        if power:
            emit(GPU_POWER, sum(power.values()))

        up = per_gpu(found.get(g.GPU_UP.name))
        emit(GPU_XID_ERRORS, self._xid_increase(found.get(g.XID_ERRORS_TOTAL.name), bool(up)))

        node_action = per_gpu(found.get(g.NODE_ACTION_XID.name))
        if node_action:
            emit(GPU_NODE_ACTION, float(sum(1 for v in node_action.values() if v > 0)))

        emit(GPU_LOST, lost_gpus(_by_state(found.get(g.GPUS.name)), up))

        idle_fam = found.get(g.ALLOCATED_IDLE.name)
        if idle_fam is not None:
            idle = per_gpu(idle_fam)
            emit(GPU_ALLOCATED_IDLE, float(sum(1 for v in idle.values() if v > 0)))
        elif up:
            # the collector serves no series when no GPU is allocated and idle
            emit(GPU_ALLOCATED_IDLE, 0.0)
        return out
