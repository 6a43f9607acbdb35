"""Profiling fields (DCGM_FI_PROF_*) from DCGM's Python bindings.

ParallelCluster's GPU AMIs install DCGM; its bindings (pydcgm, DcgmReader,
dcgm_fields, dcgm_agent, dcgm_structs) live outside site-packages, so the
directories in gpu.dcgm_bindings_paths are added to the import path when
the bindings are not importable already. nodeagent connects to
nv-hostengine at gpu.dcgm_host and, on Hopper and newer only, falls back to
an embedded host engine (what dcgm-exporter does by default). On Ampere and
older, DCGM's profiling module holds the GPUs' performance counters for the
whole node while it watches profiling fields, so users' Nsight
Systems/Compute and CUPTI sessions fail; operators release them with
`dcgmi profile --pause` on their nv-hostengine, which an embedded engine
inside nodeagent would not offer. There nodeagent uses a running
nv-hostengine or serves no profiling fields (Hopper's GPM has no such lock:
NVIDIA/DCGM dcgmlib/dcgm_agent.h, dcgmProfPause). Device fields still come
from NVML; DCGM only adds profiling.

MIG (on Ampere DCGM is the only source of per-instance profiling):
nodeagent reads DCGM's MIG hierarchy (dcgmGetGpuInstanceHierarchy) and
watches what dcgm-exporter watches (NVIDIA/dcgm-exporter
internal/pkg/deviceinfo/device_info.go, devicemonitoring/device_monitoring.go):
the GPU-instance entities (DCGM_FE_GPU_I) of MIG GPUs, the other GPUs whole.
DCGM numbers GPU instances its own way (gpuId * max instances + enumeration
index: dcgmlib/src/DcgmCacheManager.cpp), so values are keyed by the
hierarchy's info.gpuUuid (or nvmlGpuIndex) and info.nvmlInstanceId, the NVML
id dcgm-exporter serves as GPU_I_ID. An instance gives only the fields DCGM
defines at GPU_I or GPU_CI level (dcgmlib/src/dcgm_fields.cpp): for
GPU-level ones (PCIe, NVLink bytes) DCGM answers the parent GPU's value
(DcgmCacheManager::SetPracticalEntityInfo). The hierarchy is read again when
NVML's MIG layout changes; when it cannot be read, profiling stays per whole
GPU and one warning says why.

Not exercised against a real DCGM here: the tests use the fake's stand-ins
for the bindings (gpu/fake_dcgm.py), with the real names and return shapes.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from nodeagent.gpu.backend import GpuRef, ProfilingValues
from nodeagent.gpu.settings import GpuSettings

log = structlog.get_logger(__name__)

# DCGM field ids of the profiling fields (dcgm_fields.h); dcgm_fields' own
# values are preferred when the bindings are importable.
PROF_FIELD_IDS: dict[str, int] = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": 1001,
    "DCGM_FI_PROF_SM_ACTIVE": 1002,
    "DCGM_FI_PROF_SM_OCCUPANCY": 1003,
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": 1004,
    "DCGM_FI_PROF_DRAM_ACTIVE": 1005,
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": 1006,
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": 1007,
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": 1008,
    "DCGM_FI_PROF_PCIE_TX_BYTES": 1009,
    "DCGM_FI_PROF_PCIE_RX_BYTES": 1010,
    "DCGM_FI_PROF_NVLINK_TX_BYTES": 1011,
    "DCGM_FI_PROF_NVLINK_RX_BYTES": 1012,
}
# the profiling fields that are integers (bytes per second); the rest are ratios
INT_FIELDS = frozenset(
    {
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        "DCGM_FI_PROF_NVLINK_TX_BYTES",
        "DCGM_FI_PROF_NVLINK_RX_BYTES",
    }
)
# Profiling fields whose DCGM entity level is GPU_I or GPU_CI (dcgm_fields.cpp):
# the ones a GPU-instance entity reports for itself.
INSTANCE_FIELDS = frozenset(PROF_FIELD_IDS) - INT_FIELDS

# dcgm_fields' entity groups (dcgm_fields.h, dcgm_field_entity_group_t)
DCGM_FE_GPU = 1
DCGM_FE_GPU_I = 4
# DCGM's blank values: at or above these a value is "blank", "not found",
# "not supported" or "not permissioned" (testing/python3/dcgmvalue.py)
DCGM_INT64_BLANK = 0x7FFFFFFFFFFFFFF0
DCGM_FP64_BLANK = 140737488355328.0
# how often a MIG layout DCGM does not show yet is looked up again
HIERARCHY_RETRY = 60.0


@dataclass(frozen=True)
class DcgmBindings:
    """The DCGM Python modules nodeagent uses (or stand-ins with the same names)."""

    reader: Any  # DcgmReader (the module: its class DcgmReader)
    fields: Any  # dcgm_fields
    agent: Any  # dcgm_agent
    structs: Any  # dcgm_structs

    def const(self, name: str, default: int) -> int:
        return int(getattr(self.fields, name, default))


@dataclass(frozen=True)
class GpuInstance:
    """A DCGM_FE_GPU_I entity of DCGM's MIG hierarchy."""

    entity_id: int  # DCGM's own id of the GPU instance
    gpu_id: int  # DCGM's id of the parent GPU
    gpu_uuid: str
    nvml_index: int
    gi_id: int  # NVML's GPU-instance id: GPU_I_ID


def read_gpu_instances(bindings: DcgmBindings, handle: Any) -> list[GpuInstance]:
    """The GPU instances in DCGM's MIG hierarchy (dcgmGetGpuInstanceHierarchy,
    a c_dcgmMigHierarchy_v2: count entries of entity, parent and info). Compute
    instances (DCGM_FE_GPU_CI) are left out: profiling is served per GPU instance."""
    hierarchy = bindings.agent.dcgmGetGpuInstanceHierarchy(handle)
    fe_gpu, fe_gpu_i = bindings.const("DCGM_FE_GPU", DCGM_FE_GPU), bindings.const("DCGM_FE_GPU_I", DCGM_FE_GPU_I)
    out: list[GpuInstance] = []
    for i in range(int(hierarchy.count)):
        item = hierarchy.entityList[i]
        if item.entity.entityGroupId != fe_gpu_i or item.parent.entityGroupId != fe_gpu:
            continue
        out.append(GpuInstance(
            entity_id=int(item.entity.entityId),
            gpu_id=int(item.parent.entityId),
            gpu_uuid=str(item.info.gpuUuid),  # dcgm_structs._DcgmStructure decodes char arrays
            nvml_index=int(item.info.nvmlGpuIndex),
            gi_id=int(item.info.nvmlInstanceId),
        ))
    return out


def _number(name: str, raw: Any) -> float | None:
    """A field value as served, or None for a blank (None when the reader
    keeps blanks with a bad status, DCGM's blank sentinels otherwise)."""
    if raw is None or isinstance(raw, (str, bytes)):
        return None
    if isinstance(raw, float) and raw >= DCGM_FP64_BLANK:
        return None
    if isinstance(raw, int) and raw >= DCGM_INT64_BLANK:
        return None
    return int(raw) if name in INT_FIELDS else float(raw)


class DcgmProfiling:
    """Latest profiling values per GPU, and per MIG GPU instance when DCGM's
    hierarchy names them, from a DcgmReader (see the module docstring)."""

    name = "dcgm"

    def __init__(self, bindings: DcgmBindings, host: str | None, update_us: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bindings = bindings
        self.host = host
        self.update_us = update_us
        self.clock = clock
        self.field_ids = {name: bindings.const(name, fid) for name, fid in PROF_FIELD_IDS.items()}
        self._by_id = {fid: name for name, fid in self.field_ids.items()}
        self.fe_gpu = bindings.const("DCGM_FE_GPU", DCGM_FE_GPU)
        self.fe_gpu_i = bindings.const("DCGM_FE_GPU_I", DCGM_FE_GPU_I)
        self.reader: Any = None
        # what the reader watches: None is DCGM's group of all GPUs (whole GPUs only)
        self.entities: tuple[tuple[int, int], ...] | None = None
        self.instances: dict[int, GpuInstance] = {}  # by DCGM GPU_I entity id
        self._gpu_ids: dict[int, str] = {}  # DCGM GPU id -> UUID, of all GPUs
        self._layout: frozenset[tuple[int, int]] | None = None  # NVML's (index, gi) last configured for
        self._retry_at: float | None = None  # NVML shows instances DCGM did not: look again then
        self._missing: list[tuple[int, int]] = []
        self._warned: str | None = None

    # ---- connection and MIG hierarchy -----------------------------------------------
    def open(self, gpus: Sequence[GpuRef]) -> None:
        """Connect (raises when DCGM is not usable) and watch what the MIG layout needs."""
        self._reopen(None)
        self.configure(gpus)

    def _open_reader(self, entities: tuple[tuple[int, int], ...] | None) -> Any:
        pairs = None if entities is None else [self._pair(g, e) for g, e in entities]
        reader = self.bindings.reader.DcgmReader(
            hostname=self.host,
            fieldIds=list(self.field_ids.values()),
            updateFrequency=self.update_us,
            ignoreBlank=True,
            fieldGroupName="nodeagent_prof",
            entities=pairs,
        )
        reader.Init()
        if getattr(reader, "m_dcgmHandle", None) is None:  # Init logs and swallows a refused connection
            raise RuntimeError("cannot connect to nv-hostengine")
        return reader

    def _pair(self, group: int, entity: int) -> Any:
        pair = self.bindings.structs.c_dcgmGroupEntityPair_t()
        pair.entityGroupId = group
        pair.entityId = entity
        return pair

    def configure(self, gpus: Sequence[GpuRef]) -> None:
        """Map DCGM's GPU instances to NVML's and watch them; whole GPUs when
        NVML shows no MIG instance or the hierarchy cannot be read."""
        layout = frozenset((g.index, m.gi_id) for g in gpus for m in g.mig)
        self._layout = layout
        self._retry_at = None
        instances = self._lookup() if layout else []
        entities = self._entities_for(instances) if instances else None
        if entities != self.entities:
            try:
                self._reopen(entities)
            except Exception as e:  # e.g. an instance gone meanwhile: whole GPUs until the next look
                if entities is None:
                    raise
                self._warn(e)
                self._reopen(None)
                instances = None
        self.instances = {i.entity_id: i for i in instances or ()}
        if instances is None:  # the lookup failed (warned): try again later
            self._retry_at = self.clock() + HIERARCHY_RETRY
            return
        self._warned = None
        missing = sorted(layout - {self._key(i, gpus) for i in instances})
        if missing:  # DCGM has not seen them (yet), or runs without root (no MIG view)
            self._retry_at = self.clock() + HIERARCHY_RETRY
        if missing != self._missing:
            self._missing = missing
            if missing:
                log.info("gpu_dcgm_mig_instances_missing", gpu_instances=missing,
                         reason="not in DCGM's MIG hierarchy: no profiling for them")

    def _lookup(self) -> list[GpuInstance] | None:
        try:
            handle = self.reader.m_dcgmHandle
            if handle is None:  # the reader lost its connection; it reconnects when next read
                raise RuntimeError("not connected to nv-hostengine")
            instances = read_gpu_instances(self.bindings, handle.handle)
        except Exception as e:  # DCGMError_*, or bindings without the call: per whole GPU then
            self._warn(e)
            return None
        return instances

    def _warn(self, e: Exception) -> None:
        if self._warned != str(e):  # once, not every retry
            self._warned = str(e)
            log.warning("gpu_dcgm_mig_hierarchy_failed", error=str(e),
                        fallback="profiling per whole GPU, not per GPU instance")

    def _entities_for(self, instances: Iterable[GpuInstance]) -> tuple[tuple[int, int], ...]:
        """dcgm-exporter's choice: a MIG GPU's instances, the other GPUs whole."""
        instances = list(instances)
        parents = {i.gpu_id for i in instances}
        whole = [(self.fe_gpu, gid) for gid in sorted(self._gpu_ids) if gid not in parents]
        return (*whole, *((self.fe_gpu_i, i.entity_id) for i in instances))

    def _reopen(self, entities: tuple[tuple[int, int], ...] | None) -> None:
        # a DcgmReader's group is made when it connects (InitializeFromHandle):
        # a new reader, on a new connection, watches the new entities
        old, self.reader = self.reader, None
        if old is not None:
            self._shutdown(old)
        self.reader = self._open_reader(entities)
        self.entities = entities
        if entities is None:  # DCGM's group of all GPUs: learn their ids
            self._gpu_ids = dict(self.reader.m_gpuIdToUUId)

    @staticmethod
    def _key(inst: GpuInstance, gpus: Sequence[GpuRef]) -> tuple[int, int]:
        index = next((g.index for g in gpus if g.uuid == inst.gpu_uuid), inst.nvml_index)
        return index, inst.gi_id

    # ---- sampling ---------------------------------------------------------------------
    def sample(self, gpus: Sequence[GpuRef]) -> ProfilingValues:
        if self.reader is None:  # connecting failed last time: start from whole GPUs again
            self._reopen(None)
            self._layout = None
        layout = frozenset((g.index, m.gi_id) for g in gpus for m in g.mig)
        if layout != self._layout or (self._retry_at is not None and self.clock() >= self._retry_at):
            self.configure(gpus)
        if self.entities is None:
            return self._whole_gpus(gpus, self.reader.GetLatestGpuValuesAsFieldIdDict())
        data = self._latest_entity_values()
        out = self._whole_gpus(gpus, data.get(self.fe_gpu, {}))
        index_by_uuid = {g.uuid: g.index for g in gpus}
        known = {g.index for g in gpus}
        for entity_id, fields in data.get(self.fe_gpu_i, {}).items():
            inst = self.instances.get(entity_id)
            if inst is None:
                continue
            index = index_by_uuid.get(inst.gpu_uuid, inst.nvml_index)
            if index not in known:
                continue
            values = self._values(fields, INSTANCE_FIELDS)
            if values:
                out[(index, inst.gi_id)] = values
        return out

    def _whole_gpus(self, gpus: Sequence[GpuRef], data: dict[int, dict[int, Any]]) -> ProfilingValues:
        index_by_uuid = {g.uuid: g.index for g in gpus}
        known = {g.index for g in gpus}
        out: ProfilingValues = {}
        for dcgm_id, fields in data.items():
            uuid = self.reader.m_gpuIdToUUId.get(dcgm_id) or self._gpu_ids.get(dcgm_id)
            index = index_by_uuid.get(uuid) if uuid else (dcgm_id if dcgm_id in known else None)
            if index is None:
                continue
            values = self._values(fields, PROF_FIELD_IDS)
            if values:
                out[(index, None)] = values
        return out

    def _values(self, fields: dict[int, Any], wanted: Iterable[str]) -> dict[str, float]:
        wanted = set(wanted)
        out: dict[str, float] = {}
        for fid, raw in fields.items():
            name = self._by_id.get(fid)
            if name is None or name not in wanted:
                continue
            value = _number(name, raw)
            if value is not None:
                out[name] = value
        return out

    def _latest_entity_values(self) -> dict[int, dict[int, dict[int, Any]]]:
        """entity group -> entity id -> field id -> latest value, blanks left out."""
        reader = self.reader
        latest = getattr(reader, "GetLatestEntityValuesAsFieldIdDict", None)
        if latest is not None:  # DCGM 3.3.1 and newer
            return dict(latest())
        # older bindings: the v2 samples API that method wraps (DcgmGroup.py,
        # samples.GetLatest_v2: entityGroupId -> entityId -> fieldId -> time series)
        with reader.m_lock:
            reader.Reconnect()
            try:
                raw = reader.m_dcgmGroup.samples.GetLatest_v2(reader.m_fieldGroup).values
            except Exception:
                reader.SetDisconnected()  # connect again next cycle, as DcgmReader does
                raise
        out: dict[int, dict[int, dict[int, Any]]] = {}
        for group, entities in raw.items():
            for entity, fields in entities.items():
                kept = {fid: series[-1].value for fid, series in fields.items()
                        if len(series) and not series[-1].isBlank}
                out.setdefault(group, {})[entity] = kept
        return out

    def close(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            self._shutdown(reader)

    @staticmethod
    def _shutdown(reader: Any) -> None:
        # DcgmReader.Shutdown only drops its references to the pydcgm.DcgmHandle,
        # which its field groups (DcgmFieldGroup.py) and group still hold: the
        # connection would live on until garbage collection. DcgmHandle.Shutdown disconnects now, and the host
        # engine drops the connection's groups and watches with it
        # (dcgmlib/src/DcgmHostEngineHandler.cpp, OnConnectionRemove).
        handle = getattr(reader, "m_dcgmHandle", None)
        try:
            reader.Shutdown()
            if handle is not None:
                handle.Shutdown()
        except Exception as e:  # a DCGM failure on shutdown must not stop the agent
            log.info("gpu_dcgm_shutdown_failed", error=str(e))


def _import_bindings(paths: Sequence[str]) -> DcgmBindings | None:
    for attempt in range(2):
        try:
            return DcgmBindings(
                reader=importlib.import_module("DcgmReader"),
                fields=importlib.import_module("dcgm_fields"),
                agent=importlib.import_module("dcgm_agent"),
                structs=importlib.import_module("dcgm_structs"),
            )
        except ImportError:
            if attempt:
                return None
            for path in paths:
                if os.path.isdir(path) and path not in sys.path:
                    sys.path.append(path)
    return None


def connect_dcgm(bindings: DcgmBindings, host: str | None, update_us: int, gpus: Sequence[GpuRef],
                 clock: Callable[[], float] = time.monotonic) -> DcgmProfiling:
    """A DCGM profiling source watching what `gpus`' MIG layout needs; raises
    when DCGM cannot be reached."""
    source = DcgmProfiling(bindings, host, update_us, clock)
    try:
        source.open(gpus)
    except Exception:
        source.close()
        raise
    return source


def open_dcgm_profiling(settings: GpuSettings, required: bool = False,
                        allow_embedded: bool = False, gpus: Sequence[GpuRef] = ()) -> DcgmProfiling | None:
    """A DCGM profiling source, or None (logged) when DCGM is not usable here.
    An embedded host engine is started only when `allow_embedded` (Hopper or newer)."""
    bindings = _import_bindings(settings.dcgm_bindings_paths)
    report = log.error if required else log.info
    if bindings is None:
        report("gpu_dcgm_unavailable", reason="DCGM Python bindings not found", paths=settings.dcgm_bindings_paths)
        return None
    hosts: list[str | None] = [] if settings.dcgm_host is None else [settings.dcgm_host]
    if allow_embedded:
        hosts.append(None)  # embedded host engine
    elif settings.dcgm_host is None:
        report("gpu_dcgm_unavailable", reason="no embedded DCGM host engine on GPUs older than Hopper: it would "
               "block users' profilers; set gpu.dcgm_host to a running nv-hostengine")
    for host in hosts:
        try:
            source = connect_dcgm(bindings, host, int(settings.interval * 1_000_000), gpus)
        except Exception as e:  # DCGM raises its own error classes; any failure means "not usable"
            report("gpu_dcgm_unavailable", host=host or "embedded", reason=str(e))
            continue
        log.info("gpu_dcgm_profiling", host=host or "embedded")
        return source
    return None
