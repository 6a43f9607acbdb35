"""GPU state -> metric families, in dcgm-exporter's names, label order and formats.

Runs once per sampling cycle (in the sampler thread); scrapes only copy the
result. Families follow the counters file's order; each DCGM_* family's label
names come from catalogue.gpu.gpu_labelnames(): identity, MIG labels when a
MIG instance is present, the hostname label, label-type fields, exporter
labels, then attributes (err_code, hpc_job). A GPU that runs several jobs
gets one copy of each series per job, as dcgm-exporter does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import structlog

from nodeagent.catalogue import gpu as cat
from nodeagent.catalogue.spec import MetricSpec
from nodeagent.collectors.gpu.state import GpuState, Value
from nodeagent.collectors.gpu.xid import XidView
from nodeagent.collectors.gpu.xid_catalogue import classify, recovery_needs_node_action, xid_message
from nodeagent.gpu.counters import CounterRow
from nodeagent.model import MetricFamily

log = structlog.get_logger(__name__)

# Under MIG these come from each GPU instance, not from the parent GPU.
_PER_INSTANCE = ("DCGM_FI_DEV_FB_", "DCGM_FI_PROF_")
# Fields DCGM does not report for a GPU instance (NVML answers NOT_SUPPORTED
# for utilisation in MIG mode; remapped rows, PCIe and NVLink traffic are the
# whole board's): left off instance series rather than repeating the parent's value
# (NVIDIA/DCGM dcgmlib/dcgm_fields.cpp, entity levels).
MIG_NOT_PER_INSTANCE = frozenset({
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES",
    "DCGM_FI_PROF_NVLINK_TX_BYTES", "DCGM_FI_PROF_NVLINK_RX_BYTES",
})


@dataclass(frozen=True)
class Selected:
    """A family the counters file asks for, with the file's type and help."""

    spec: MetricSpec
    type: str
    help: str


@dataclass(frozen=True)
class CounterSelection:
    fields: tuple[Selected, ...]  # DCGM_FI_* families, file order
    label_fields: tuple[str, ...]  # label-type fields, sorted
    exporter: tuple[Selected, ...]  # DCGM_EXP_* families, file order
    unknown: tuple[CounterRow, ...]  # names nodeagent does not know: skipped
    mismatched: tuple[CounterRow, ...]  # known names with an impossible type: skipped

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(s.spec.name for s in self.fields)

    def exporter_enabled(self, name: str) -> bool:
        return any(s.spec.name == name for s in self.exporter)


def select_counters(rows: Sequence[CounterRow]) -> CounterSelection:
    fields: list[Selected] = []
    labels: set[str] = set()
    exporter: list[Selected] = []
    unknown: list[CounterRow] = []
    mismatched: list[CounterRow] = []
    for row in rows:
        if row.type == "label":
            if row.name in cat.LABEL_FIELDS or row.name in cat.DCGM_FIELDS:
                labels.add(row.name)
            elif row.name in cat.EXPORTER_FIELDS:
                mismatched.append(row)
            else:
                unknown.append(row)
            continue
        if row.name in cat.DCGM_FIELDS:
            fields.append(Selected(cat.DCGM_FIELDS[row.name].spec, row.type, row.help))
        elif row.name in cat.EXPORTER_FIELDS:
            exporter.append(Selected(cat.EXPORTER_FIELDS[row.name], row.type, row.help))
        elif row.name in cat.LABEL_FIELDS:
            mismatched.append(row)
        else:
            unknown.append(row)
    return CounterSelection(tuple(fields), tuple(sorted(labels)), tuple(exporter), tuple(unknown), tuple(mismatched))


@dataclass(frozen=True)
class RenderOptions:
    selection: CounterSelection
    hostname: str
    hostname_label: str = "Hostname"
    xid_window_ms: int = 300000
    clock_window_ms: int = 300000
    process_metrics: bool = False
    idle_after: float = 900.0


@dataclass
class _Entity:
    """One series source: a whole GPU, or one MIG instance of it."""

    gpu: GpuState
    labels: tuple[str, ...]  # identity [+ MIG] + hostname + label fields
    values: dict[str, Value]
    jobs: tuple[str, ...]
    xid: XidView


def _label_value(gpu: GpuState, name: str) -> str:
    if name in gpu.labels:
        return gpu.labels[name]
    value = gpu.values.get(name)
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _identity(gpu: GpuState) -> tuple[str, str, str, str, str]:
    return (str(gpu.index), gpu.uuid, gpu.pci_bus_id, f"nvidia{gpu.index}", gpu.model)


def _entities(gpus: Sequence[GpuState], opts: RenderOptions, has_mig: bool) -> Iterator[_Entity]:
    """Series sources of the GPUs that are up; MIG GPUs yield one per GPU instance
    (device-wide fields repeated, framebuffer and profiling per instance)."""
    label_fields = opts.selection.label_fields
    for gpu in gpus:
        if not gpu.up:
            continue
        ident = _identity(gpu)
        tail = (opts.hostname, *(_label_value(gpu, n) for n in label_fields))
        if gpu.mig:
            parent = {k: v for k, v in gpu.values.items()
                      if not k.startswith(_PER_INSTANCE) and k not in MIG_NOT_PER_INSTANCE}
            for inst in gpu.mig:
                own = {k: v for k, v in inst.values.items() if k not in MIG_NOT_PER_INSTANCE}
                yield _Entity(gpu, (*ident, inst.profile, str(inst.gi_id), *tail), {**parent, **own}, inst.jobs,
                              inst.xid)
        else:
            yield _Entity(gpu, (*ident, *(("", "") if has_mig else ()), *tail), gpu.values, gpu.jobs, gpu.xid)


def _down_entities(gpus: Sequence[GpuState], opts: RenderOptions, has_mig: bool) -> Iterator[_Entity]:
    """GPUs that are down but known: their XIDs come from the event stream."""
    for gpu in gpus:
        if gpu.up or not gpu.known:
            continue
        tail = (opts.hostname, *(_label_value(gpu, n) for n in opts.selection.label_fields))
        yield _Entity(gpu, (*_identity(gpu), *(("", "") if has_mig else ()), *tail), {}, (), gpu.xid)


def _family(selected: Selected, labelnames: tuple[str, ...]) -> MetricFamily:
    fam = selected.spec.family(labels=labelnames)
    fam.omit_empty_labels = True  # GPU_I_* of whole GPUs, hpc_job of idle ones
    if selected.type != fam.type:
        fam.type = selected.type  # type: ignore[assignment]  # the user's counters file decides
    if selected.help and selected.help != fam.help:
        fam.help = selected.help
    return fam


def _job_values(jobs: tuple[str, ...], has_jobs: bool) -> tuple[tuple[str, ...], ...]:
    """The hpc_job label values of an entity: one copy of each series per job."""
    if not has_jobs:
        return ((),)
    return tuple((j,) for j in jobs) if jobs else (("",),)


def render_families(gpus: Sequence[GpuState], opts: RenderOptions) -> list[MetricFamily]:
    sel = opts.selection
    has_mig = any(g.up and g.mig for g in gpus)
    entities = list(_entities(gpus, opts, has_mig))
    has_jobs = any(e.jobs for e in entities)
    job_attr: tuple[str, ...] = ("hpc_job",) if has_jobs else ()

    def names(exporter_labels: tuple[str, ...] = (), attributes: tuple[str, ...] = ()) -> tuple[str, ...]:
        return cat.gpu_labelnames(
            mig=has_mig,
            hostname_label=opts.hostname_label,
            label_fields=sel.label_fields,
            exporter_labels=exporter_labels,
            attributes=(*attributes, *job_attr),
        )

    # Label-type fields are all DCGM_* (upper case), so they sort before the
    # lower-case exporter labels: values go (label fields, exporter labels sorted).
    families: list[MetricFamily] = []
    plain = names()
    xid_entities = entities + list(_down_entities(gpus, opts, has_mig))
    for selected in sel.fields:
        name = selected.spec.name
        if name == cat.XID_ERRORS.name:
            # dcgm-exporter (internal/pkg/collector/gpu_collector.go, toMetric) adds
            # err_code and err_msg as attributes: sorted, both before hpc_job
            fam = _family(selected, names(attributes=("err_code", "err_msg")))
            for e in xid_entities:
                last = e.xid.last
                for job in _job_values(e.jobs, has_jobs):
                    fam.add((*e.labels, str(last), xid_message(last), *job), last)
            families.append(fam)
            continue
        fam = _family(selected, plain)
        for e in entities:
            value = e.values.get(name)
            if value is None:
                continue
            for job in _job_values(e.jobs, has_jobs):
                fam.add((*e.labels, *job), value)
        families.append(fam)

    for selected in sel.exporter:
        if selected.spec.name == cat.EXP_XID_ERRORS_COUNT.name:
            fam = _family(selected, names(exporter_labels=cat.XID_WINDOW_LABELS))
            window = str(opts.xid_window_ms)
            for e in xid_entities:
                counts: list[tuple[str, int]] = [(str(x), c) for x, c in sorted(e.xid.window.items())]
                for job in _job_values(e.jobs, has_jobs):
                    for xid, count in counts or [("", 0)]:
                        fam.add((*e.labels, window, xid, *job), count)  # window_size_in_ms < xid
            families.append(fam)
        elif selected.spec.name == cat.EXP_CLOCK_EVENTS_COUNT.name:
            fam = _family(selected, names(exporter_labels=cat.CLOCK_EVENT_LABELS))
            window = str(opts.clock_window_ms)
            for e in entities:
                events = sorted(e.gpu.clock_events.items())
                for job in _job_values(e.jobs, has_jobs):
                    for event, count in events or [("", 0)]:
                        fam.add((*e.labels, event, window, *job), count)  # clock_event < window_size_in_ms
            families.append(fam)

    families.extend(_own_families(gpus, opts))
    return families


def _own_families(gpus: Sequence[GpuState], opts: RenderOptions) -> list[MetricFamily]:
    up = cat.GPU_UP.family()
    healthy = cat.GPU_HEALTHY.family()
    action = cat.NODE_ACTION_XID.family()
    xids = cat.XID_ERRORS_TOTAL.family()
    idle = cat.ALLOCATED_IDLE.family()
    idle_seconds = cat.ALLOCATED_IDLE_SECONDS.family()
    procs = cat.GPU_PROCESSES.family()
    proc_mem = cat.GPU_PROCESS_MEMORY.family()
    for g in gpus:
        ident = (*_identity(g), opts.hostname)
        up.add(ident, 1 if g.up else 0)
        recovery = g.values.get(cat.GPU_RECOVERY_ACTION.name, 0)
        healthy.add(ident, 1 if g.up and not g.xid.node_action_xid and not recovery_needs_node_action(int(recovery))
                    else 0)
        action.add(ident, g.xid.node_action_xid)
        for xid, count in sorted(g.xid.counts.items()):
            xids.add((*ident, classify(xid), str(xid)), count)
        if g.up and g.idle_seconds is not None:
            for job in g.jobs:
                idle.add((*ident, job), 1 if g.idle_seconds >= opts.idle_after else 0)
                idle_seconds.add((*ident, job), round(g.idle_seconds, 3))
        if opts.process_metrics and g.up and g.processes is not None:
            procs.add(ident, g.processes)
            for job, used in sorted(g.process_memory.items()):
                proc_mem.add((*ident, job), used)
    return [up, healthy, action, xids, idle, idle_seconds, procs, proc_mem]
