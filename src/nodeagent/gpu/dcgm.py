"""Profiling fields (DCGM_FI_PROF_*) from DCGM's Python bindings.

ParallelCluster's GPU AMIs install DCGM; its bindings (pydcgm, DcgmReader,
dcgm_fields) live outside site-packages, so the directories in
gpu.dcgm_bindings_paths are added to the import path when the bindings are
not importable already. nodeagent connects to nv-hostengine at gpu.dcgm_host
and, on Hopper and newer only, falls back to an embedded host engine (what
dcgm-exporter does by default). On Ampere and older, DCGM's profiling module
holds the GPUs' performance counters for the whole node while it watches
profiling fields, so users' Nsight Systems/Compute and CUPTI sessions fail;
operators release them with `dcgmi profile --pause` on their nv-hostengine,
which an embedded engine inside nodeagent would not offer. There nodeagent
uses a running nv-hostengine or serves no profiling fields (Hopper's GPM
has no such lock: NVIDIA/DCGM dcgmlib/dcgm_agent.h, dcgmProfPause). Device
fields still come from NVML; DCGM only adds profiling.

Not exercised against a real DCGM here: the tests drive DcgmProfiling with
the fake backend's reader, which has DcgmReader's interface.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol

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


class DcgmReaderLike(Protocol):
    """The part of DCGM's DcgmReader class nodeagent uses."""

    m_gpuIdToUUId: dict[int, str]

    def GetLatestGpuValuesAsFieldIdDict(self) -> dict[int, dict[int, Any]]: ...

    def Shutdown(self) -> None: ...


class DcgmProfiling:
    """Latest profiling values per GPU from a DcgmReader (whole GPUs only:
    MIG instances get profiling from GPM, see nvml.py)."""

    name = "dcgm"

    def __init__(self, reader: DcgmReaderLike, field_ids: dict[str, int] | None = None) -> None:
        self.reader = reader
        self.field_ids = dict(field_ids or PROF_FIELD_IDS)
        self._by_id = {fid: name for name, fid in self.field_ids.items()}

    def sample(self, gpus: Sequence[GpuRef]) -> ProfilingValues:
        data = self.reader.GetLatestGpuValuesAsFieldIdDict()
        index_by_uuid = {g.uuid: g.index for g in gpus}
        known = {g.index for g in gpus}
        out: ProfilingValues = {}
        for dcgm_id, fields in data.items():
            uuid = self.reader.m_gpuIdToUUId.get(dcgm_id)
            index = index_by_uuid.get(uuid) if uuid else (dcgm_id if dcgm_id in known else None)
            if index is None:
                continue
            values: dict[str, float] = {}
            for fid, raw in fields.items():
                name = self._by_id.get(fid)
                if name is None or isinstance(raw, (str, bytes)) or raw is None:
                    continue
                values[name] = int(raw) if name in INT_FIELDS else float(raw)
            if values:
                out[(index, None)] = values
        return out

    def close(self) -> None:
        try:
            self.reader.Shutdown()
        except Exception as e:  # a DCGM failure on shutdown must not stop the agent
            log.info("gpu_dcgm_shutdown_failed", error=str(e))


def _import_bindings(paths: Sequence[str]) -> tuple[Any, Any] | None:
    for attempt in range(2):
        try:
            reader_mod = importlib.import_module("DcgmReader")
            fields_mod = importlib.import_module("dcgm_fields")
            return reader_mod, fields_mod
        except ImportError:
            if attempt:
                return None
            for path in paths:
                if os.path.isdir(path) and path not in sys.path:
                    sys.path.append(path)
    return None


def open_dcgm_profiling(settings: GpuSettings, required: bool = False,
                        allow_embedded: bool = False) -> DcgmProfiling | None:
    """A DCGM profiling source, or None (logged) when DCGM is not usable here.
    An embedded host engine is started only when `allow_embedded` (Hopper or newer)."""
    modules = _import_bindings(settings.dcgm_bindings_paths)
    report = log.error if required else log.info
    if modules is None:
        report("gpu_dcgm_unavailable", reason="DCGM Python bindings not found", paths=settings.dcgm_bindings_paths)
        return None
    reader_mod, fields_mod = modules
    field_ids = {name: int(getattr(fields_mod, name, fid)) for name, fid in PROF_FIELD_IDS.items()}
    hosts: list[str | None] = [] if settings.dcgm_host is None else [settings.dcgm_host]
    if allow_embedded:
        hosts.append(None)  # embedded host engine
    elif settings.dcgm_host is None:
        report("gpu_dcgm_unavailable", reason="no embedded DCGM host engine on GPUs older than Hopper: it would "
               "block users' profilers; set gpu.dcgm_host to a running nv-hostengine")
    for host in hosts:
        try:
            reader = reader_mod.DcgmReader(
                hostname=host,
                fieldIds=list(field_ids.values()),
                updateFrequency=int(settings.interval * 1_000_000),
                ignoreBlank=True,
                fieldGroupName="nodeagent_prof",
            )
            reader.Init()
            if getattr(reader, "m_dcgmHandle", None) is None:
                raise RuntimeError("cannot connect to nv-hostengine")
        except Exception as e:  # DCGM raises its own error classes; any failure means "not usable"
            report("gpu_dcgm_unavailable", host=host or "embedded", reason=str(e))
            continue
        log.info("gpu_dcgm_profiling", host=host or "embedded")
        return DcgmProfiling(reader, field_ids)
    return None
