"""The real NVML backend (pynvml from nvidia-ml-py) and GPM profiling.

The backend is the pynvml module itself: nodeagent calls pynvml's functions
by their own names (see backend.NvmlApi), so the fake backend can stand in
for it. Importing this module does not load libnvidia-ml; `nvmlInit()` does,
in the sampler thread.

GPM (GPU Performance Monitoring, Hopper and newer) gives the profiling
metrics DCGM computes, from two samples taken a cycle apart; they are mapped
to DCGM_FI_PROF_* names and units (ratios 0..1, bytes per second).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, cast

import pynvml
import structlog

from nodeagent.gpu.backend import GpuRef, NvmlApi, ProfilingSource, ProfilingValues
from nodeagent.gpu.dcgm import INT_FIELDS

log = structlog.get_logger(__name__)

_MIB = 1024 * 1024

# (GPM metric id, DCGM field, scale to DCGM's unit)
GPM_METRICS: tuple[tuple[int, str, float], ...] = (
    (pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.01),
    (pynvml.NVML_GPM_METRIC_SM_UTIL, "DCGM_FI_PROF_SM_ACTIVE", 0.01),
    (pynvml.NVML_GPM_METRIC_SM_OCCUPANCY, "DCGM_FI_PROF_SM_OCCUPANCY", 0.01),
    (pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.01),
    (pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL, "DCGM_FI_PROF_DRAM_ACTIVE", 0.01),
    (pynvml.NVML_GPM_METRIC_FP64_UTIL, "DCGM_FI_PROF_PIPE_FP64_ACTIVE", 0.01),
    (pynvml.NVML_GPM_METRIC_FP32_UTIL, "DCGM_FI_PROF_PIPE_FP32_ACTIVE", 0.01),
    (pynvml.NVML_GPM_METRIC_FP16_UTIL, "DCGM_FI_PROF_PIPE_FP16_ACTIVE", 0.01),
    (pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC, "DCGM_FI_PROF_PCIE_TX_BYTES", _MIB),
    (pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC, "DCGM_FI_PROF_PCIE_RX_BYTES", _MIB),
    (pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC, "DCGM_FI_PROF_NVLINK_TX_BYTES", _MIB),
    (pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC, "DCGM_FI_PROF_NVLINK_RX_BYTES", _MIB),
)


def real_nvml() -> NvmlApi:
    """The pynvml module, as the NvmlApi it implements."""
    return cast(NvmlApi, pynvml)


def nvml_available() -> bool:
    """Whether libnvidia-ml can be initialised here (for tests that need a driver)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


class GpmProfiling:
    """DCGM_FI_PROF_* from NVML GPM: one sample per GPU (or MIG instance) per
    cycle, metrics computed between consecutive samples."""

    name = "gpm"

    def __init__(self, api: NvmlApi, supported: Sequence[int]) -> None:
        self.api = api
        self.supported = set(supported)
        # (gpu index, gi id) -> [sample a, sample b, index of the last filled one or -1]
        self._samples: dict[tuple[int, int | None], list[Any]] = {}
        self._errors: dict[tuple[int, int | None], str] = {}

    def sample(self, gpus: Sequence[GpuRef]) -> ProfilingValues:
        out: ProfilingValues = {}
        for gpu in gpus:
            if gpu.index not in self.supported:
                continue
            keys: list[int | None] = [m.gi_id for m in gpu.mig] if gpu.mig else [None]
            for gi in keys:
                key = (gpu.index, gi)
                try:
                    values = self._sample_one(gpu, gi)
                except pynvml.NVMLError as e:
                    if self._errors.get(key) != str(e):
                        log.warning("gpu_gpm_sample_failed", gpu=gpu.index, gpu_instance=gi, error=str(e))
                        self._errors[key] = str(e)
                    state = self._samples.get(key)
                    if state is not None:
                        state[2] = -1  # keep the two samples; start over next cycle
                    continue
                self._errors.pop(key, None)
                if values:
                    out[key] = values
        return out

    def _sample_one(self, gpu: GpuRef, gi: int | None) -> dict[str, float]:
        key = (gpu.index, gi)
        state = self._samples.get(key)
        if state is None:
            state = [*self._alloc_pair(), -1]
            self._samples[key] = state
        last = state[2]
        cur_i = 0 if last != 0 else 1
        cur = state[cur_i]
        if gi is None:
            self.api.nvmlGpmSampleGet(gpu.handle, cur)
        else:
            self.api.nvmlGpmMigSampleGet(gpu.handle, gi, cur)
        state[2] = cur_i
        if last < 0:
            return {}
        mg = pynvml.c_nvmlGpmMetricsGet_t()
        mg.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        mg.numMetrics = len(GPM_METRICS)
        mg.sample1 = state[last]
        mg.sample2 = cur
        for i, (metric_id, _, _) in enumerate(GPM_METRICS):
            mg.metrics[i].metricId = metric_id
        self.api.nvmlGpmMetricsGet(mg)
        values: dict[str, float] = {}
        for i, (_, field_name, scale) in enumerate(GPM_METRICS):
            metric = mg.metrics[i]
            if metric.nvmlReturn != pynvml.NVML_SUCCESS:
                continue
            value = float(metric.value) * scale
            values[field_name] = round(value) if field_name in INT_FIELDS else value
        return values

    def _alloc_pair(self) -> tuple[Any, Any]:
        first = self.api.nvmlGpmSampleAlloc()
        try:
            return first, self.api.nvmlGpmSampleAlloc()
        except pynvml.NVMLError:
            self._free(first)
            raise

    def _free(self, sample: Any) -> None:
        with contextlib.suppress(pynvml.NVMLError):
            self.api.nvmlGpmSampleFree(sample)

    def close(self) -> None:
        for state in self._samples.values():
            for sample in state[:2]:
                self._free(sample)
        self._samples.clear()


def gpm_supported(api: NvmlApi, gpus: Sequence[GpuRef]) -> list[int]:
    """Indexes of the GPUs with GPM (Hopper and newer)."""
    supported: list[int] = []
    for gpu in gpus:
        try:
            if api.nvmlGpmQueryDeviceSupport(gpu.handle).isSupportedDevice:
                supported.append(gpu.index)
        except pynvml.NVMLError as e:
            log.info("gpu_gpm_unsupported", gpu=gpu.index, error=str(e))
    return supported


def gpm_source(api: NvmlApi, gpus: Sequence[GpuRef]) -> ProfilingSource | None:
    """GPM profiling for the GPUs that support it, or None when none does."""
    supported = gpm_supported(api, gpus)
    return GpmProfiling(api, supported) if supported else None
