"""The GPU backend plug points.

`NvmlApi` is the part of pynvml's module interface nodeagent uses, with
pynvml's own names and signatures. The real backend is the `pynvml` module
itself (nvml.py); the fake backend (fake.py) is a class with the same
methods that raises pynvml's real exception classes, so the sampler runs the
same code on both. `ProfilingSource` supplies DCGM_FI_PROF_* values: from
DCGM (dcgm.py), from NVML GPM (nvml.py) or from a fake description.

`open_backend()` turns `gpu.backend` into an NvmlApi, and `open_profiling()`
picks the profiling source once NVML knows the GPUs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from nodeagent.gpu.settings import GpuSettings

log = structlog.get_logger(__name__)

Handle = Any  # pynvml.c_nvmlDevice_t (a ctypes pointer), real or fake


def handle_key(handle: Handle) -> int:
    """A hashable identity of a device handle: the address it points to. Works
    for real NVML handles and for the fake's (which are real ctypes pointers)."""
    value = ctypes.cast(handle, ctypes.c_void_p).value
    return int(value or 0)


class NvmlApi(Protocol):
    """The pynvml functions nodeagent calls (pynvml's names and signatures)."""

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str: ...
    def nvmlSystemGetNVMLVersion(self) -> str: ...
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle: ...
    def nvmlDeviceGetUUID(self, handle: Handle) -> str: ...
    def nvmlDeviceGetName(self, handle: Handle) -> str: ...
    def nvmlDeviceGetPciInfo(self, handle: Handle) -> Any: ...
    def nvmlDeviceGetSerial(self, handle: Handle) -> str: ...
    def nvmlDeviceGetVbiosVersion(self, handle: Handle) -> str: ...
    def nvmlDeviceGetInforomImageVersion(self, handle: Handle) -> str: ...
    def nvmlDeviceGetMigMode(self, handle: Handle) -> list[int]: ...
    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Handle) -> int: ...
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, index: int) -> Handle: ...
    def nvmlDeviceGetGpuInstanceId(self, handle: Handle) -> int: ...
    def nvmlDeviceGetClockInfo(self, handle: Handle, clock_type: int) -> int: ...
    def nvmlDeviceGetTemperature(self, handle: Handle, sensor: int) -> int: ...
    def nvmlDeviceGetPowerUsage(self, handle: Handle) -> int: ...
    def nvmlDeviceGetPowerManagementLimit(self, handle: Handle) -> int: ...
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Handle) -> int: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Handle) -> Any: ...
    def nvmlDeviceGetEncoderUtilization(self, handle: Handle) -> list[int]: ...
    def nvmlDeviceGetDecoderUtilization(self, handle: Handle) -> list[int]: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Handle, version: int | None = None) -> Any: ...
    def nvmlDeviceGetGridLicensableFeatures(self, handle: Handle) -> Any: ...
    def nvmlDeviceGetRemappedRows(self, handle: Handle) -> tuple[int, int, int, int]: ...
    def nvmlDeviceGetTotalEccErrors(self, handle: Handle, error_type: int, counter_type: int) -> int: ...
    def nvmlDeviceGetRetiredPages(self, handle: Handle, cause: int) -> list[int]: ...
    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: Handle) -> int: ...
    def nvmlDeviceGetViolationStatus(self, handle: Handle, policy: int) -> Any: ...
    def nvmlDeviceGetFieldValues(self, handle: Handle, field_ids: Sequence[Any]) -> Any: ...
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Handle) -> int: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Handle) -> list[Any]: ...
    def nvmlEventSetCreate(self) -> Any: ...
    def nvmlDeviceRegisterEvents(self, handle: Handle, event_types: int, event_set: Any) -> None: ...
    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any: ...
    def nvmlEventSetFree(self, event_set: Any) -> None: ...
    def nvmlGpmQueryDeviceSupport(self, handle: Handle) -> Any: ...
    def nvmlGpmSampleAlloc(self) -> Any: ...
    def nvmlGpmSampleFree(self, sample: Any) -> None: ...
    def nvmlGpmSampleGet(self, handle: Handle, sample: Any) -> Any: ...
    def nvmlGpmMigSampleGet(self, handle: Handle, gpu_instance_id: int, sample: Any) -> Any: ...
    def nvmlGpmMetricsGet(self, metrics_get: Any) -> Any: ...


@dataclass
class MigRef:
    """One MIG GPU instance of a GPU."""

    gi_id: int
    profile: str  # "1g.10gb", as dcgm-exporter's GPU_I_PROFILE
    handle: Handle


@dataclass
class GpuRef:
    """A GPU as NVML enumerated it."""

    index: int
    uuid: str
    handle: Handle
    mig: list[MigRef] = field(default_factory=list)


ProfilingValues = dict[tuple[int, int | None], dict[str, float]]


class ProfilingSource(Protocol):
    """Supplies DCGM_FI_PROF_* values keyed by (GPU index, GPU instance id or None)."""

    name: str  # "dcgm", "gpm" or "fake"

    def sample(self, gpus: Sequence[GpuRef]) -> ProfilingValues: ...

    def close(self) -> None: ...


@dataclass
class Backend:
    """An opened backend: the NVML API and how profiling is chosen once the GPUs are known."""

    kind: str  # "nvml" or "fake"
    api: NvmlApi
    # (api the sampler calls through, GPUs) -> a profiling source or None
    profiling: Callable[[NvmlApi, Sequence[GpuRef]], ProfilingSource | None]
    # the EC2 instance type a fake description stands for (expected GPU count)
    instance_type: str | None = None


def open_backend(
    settings: GpuSettings,
    clock: Callable[[], float] | None = None,
) -> Backend:
    """The backend gpu.backend names. Opening never touches the driver: NVML is
    initialised by the sampler thread, where a hang is bounded by the watchdog."""
    if settings.backend == "fake":
        from nodeagent.gpu.fake import FakeNvml

        fake = FakeNvml.from_name(settings.fake_description, clock=clock, events=settings.fake_events)
        return Backend("fake", fake, fake.profiling_source, fake.description.instance_type)

    from nodeagent.gpu.nvml import GpmProfiling, gpm_supported, real_nvml

    def choose(api: NvmlApi, gpus: Sequence[GpuRef]) -> ProfilingSource | None:
        gpm = gpm_supported(api, gpus)
        hopper_or_newer = bool(gpus) and len(gpm) == len(gpus)  # GPM exists from Hopper on
        mig = any(g.mig for g in gpus)
        # Under MIG on Hopper, GPM samples each GPU instance itself (nvmlGpmMigSampleGet)
        # without a host engine; on Ampere DCGM serves them (dcgm.py reads its MIG hierarchy).
        if settings.backend in ("auto", "dcgm") and not (mig and hopper_or_newer):
            from nodeagent.gpu.dcgm import open_dcgm_profiling

            # On Ampere and older an embedded host engine would hold the profiling
            # hardware for the whole node and block users' Nsight/CUPTI sessions:
            # there, only a running nv-hostengine (which operators pause with
            # `dcgmi profile --pause`) is used.
            source = open_dcgm_profiling(settings, required=settings.backend == "dcgm",
                                         allow_embedded=hopper_or_newer, gpus=gpus)
            if source is not None:
                return source
        return GpmProfiling(api, gpm) if gpm else None

    return Backend("nvml", real_nvml(), choose)
