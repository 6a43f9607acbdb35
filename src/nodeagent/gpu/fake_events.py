"""The fake NVML's XID events and GPM profiling (the fake DCGM is in fake_dcgm.py)."""

from __future__ import annotations

import ctypes
import time
from typing import Any

import pynvml

from nodeagent.gpu.fake_core import FakeCore
from nodeagent.gpu.fake_description import FakeGpu
from nodeagent.gpu.fake_fields import GPM, NOT_IN_INSTANCE


class _EventSet:
    def __init__(self) -> None:
        self.gpus: set[int] = set()


class EventCalls(FakeCore):
    # ---- events ------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> Any:
        self._enter("nvmlEventSetCreate")
        return _EventSet()

    def nvmlDeviceRegisterEvents(self, handle: Any, event_types: int, event_set: Any) -> None:
        gpu, _gi = self._enter("nvmlDeviceRegisterEvents", handle)
        assert gpu is not None
        if event_types & pynvml.nvmlEventTypeXidCriticalError:
            event_set.gpus.add(gpu.index)

    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any:
        """The next due XID of a registered GPU. gpuInstanceId and
        computeInstanceId name the MIG instance it happened in, 0xFFFFFFFF
        outside one (nvml.h, nvmlEventData_t)."""
        self._enter("nvmlEventSetWait_v2")
        deadline = time.monotonic() + timeout_ms / 1000.0
        with self._cond:
            while True:
                self._apply_events()
                t = self.t()
                for i, xid in enumerate(self._xids):
                    if xid.due <= t and xid.gpu in event_set.gpus:
                        del self._xids[i]
                        data = pynvml.c_nvmlEventData_t()
                        data.device = self._handles[xid.gpu]
                        data.eventType = pynvml.nvmlEventTypeXidCriticalError
                        data.eventData = xid.xid
                        data.gpuInstanceId = xid.gi if xid.gi is not None else NOT_IN_INSTANCE
                        data.computeInstanceId = xid.ci if xid.ci is not None else NOT_IN_INSTANCE
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise pynvml.NVMLError_Timeout()
                # poll: with an injected clock, due times move without a notify
                self._cond.wait(min(remaining, 0.05))

    def nvmlEventSetFree(self, event_set: Any) -> None:
        self._enter("nvmlEventSetFree")

    # ---- GPM -------------------------------------------------------------------------
    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> Any:
        gpu, _gi = self._enter("nvmlGpmQueryDeviceSupport", handle)
        assert gpu is not None
        support = pynvml.c_nvmlGpmSupport_t()
        support.version = pynvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = 1 if gpu.model.gpm else 0  # Hopper and newer
        return support

    def nvmlGpmSampleAlloc(self) -> Any:
        self._enter("nvmlGpmSampleAlloc")
        struct = pynvml.struct_c_nvmlGpmSample_t()
        addr = ctypes.addressof(struct)
        with self._lock:
            self._gpm_structs[addr] = struct
            self._gpm_samples[addr] = None
        return ctypes.cast(ctypes.pointer(struct), pynvml.c_nvmlGpmSample_t)

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self._enter("nvmlGpmSampleFree")
        addr = ctypes.cast(sample, ctypes.c_void_p).value or 0
        with self._lock:
            self._gpm_samples.pop(addr, None)
            self._gpm_structs.pop(addr, None)

    def _gpm_take(self, gpu: FakeGpu, gi: int | None, sample: Any) -> Any:
        if not gpu.model.gpm:
            raise pynvml.NVMLError_NotSupported()
        addr = ctypes.cast(sample, ctypes.c_void_p).value or 0
        with self._lock:
            if addr not in self._gpm_samples:
                raise pynvml.NVMLError_InvalidArgument()
            self._gpm_samples[addr] = (gpu.index, gi, self.t())
        return sample

    def nvmlGpmSampleGet(self, handle: Any, sample: Any) -> Any:
        gpu, gi = self._enter("nvmlGpmSampleGet", handle)
        assert gpu is not None
        if gi is not None:
            raise pynvml.NVMLError_InvalidArgument()
        return self._gpm_take(gpu, None, sample)

    def nvmlGpmMigSampleGet(self, handle: Any, gpu_instance_id: int, sample: Any) -> Any:
        """A GPU instance's metrics, the aggregate of its compute instances
        (DCGM dcgmlib/src/DcgmGpmManager.cpp reads GPU-I entities this way)."""
        gpu, _gi = self._enter("nvmlGpmMigSampleGet", handle)
        assert gpu is not None
        instances = gpu.mig if self._mig_enabled[gpu.index] else []
        if not any(m.gi_id == gpu_instance_id for m in instances):
            raise pynvml.NVMLError_NotFound()
        return self._gpm_take(gpu, gpu_instance_id, sample)

    def nvmlGpmMetricsGet(self, metrics_get: Any) -> Any:
        self._enter("nvmlGpmMetricsGet")
        s1 = ctypes.cast(metrics_get.sample1, ctypes.c_void_p).value or 0
        s2 = ctypes.cast(metrics_get.sample2, ctypes.c_void_p).value or 0
        with self._lock:
            first, second = self._gpm_samples.get(s1), self._gpm_samples.get(s2)
        if first is None or second is None or first[:2] != second[:2]:
            raise pynvml.NVMLError_InvalidArgument()
        gpu = self.description.gpus[second[0]]
        unsupported = gpu.model.unsupported | gpu.unsupported
        for i in range(metrics_get.numMetrics):
            metric = metrics_get.metrics[i]
            spec = GPM.get(metric.metricId)
            if spec is None or spec[0] in unsupported:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            metric.nvmlReturn = pynvml.NVML_SUCCESS
            metric.value = self._value(gpu, spec[0], second[1]) * spec[1]
        return metrics_get

