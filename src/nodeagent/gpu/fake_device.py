"""The fake NVML's system, identity, MIG and per-call device queries, with
pynvml's names, signatures, return types and error classes."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import pynvml

from nodeagent.gpu.fake_core import FakeCore
from nodeagent.gpu.fake_fields import CLOCK_REASONS, ECC, MIB, RETIRED, VIOLATIONS

_UUID_NS = uuidlib.UUID("6f1c8e1a-3a4b-4d2f-9c55-2b7e0d9a4c11")
_MAX_MIG_DEVICES = 7


class DeviceCalls(FakeCore):
    # ---- system ----------------------------------------------------------------
    def nvmlInit(self) -> None:
        with self._lock:
            self.calls[("nvmlInit", None)] += 1
            error = self.description.init_error
            if error == "library_not_found":
                raise pynvml.NVMLError_LibraryNotFound()
            if error == "driver_not_loaded":
                raise pynvml.NVMLError_DriverNotLoaded()
            first = self._initialized == 0
        if first:
            # without persistence mode the driver initialises every GPU for
            # the first client: seconds, not milliseconds
            self._stall(self.description.init_seconds)
        with self._lock:
            self._initialized += 1

    def nvmlShutdown(self) -> None:
        with self._lock:
            self.calls[("nvmlShutdown", None)] += 1
            self._check_init()
            self._initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.description.driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return self.description.nvml_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.description.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.description.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self._handles):
            raise pynvml.NVMLError_InvalidArgument()
        with self._lock:
            self._check_lost(index)
        return self._handles[index]

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        gpu, _gi = self._enter("nvmlDeviceGetIndex", handle)
        assert gpu is not None
        return gpu.index

    # ---- identity --------------------------------------------------------------
    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        gpu, gi = self._enter("nvmlDeviceGetUUID", handle)
        assert gpu is not None
        if gi is not None:
            return f"MIG-{uuidlib.uuid5(_UUID_NS, f'{gpu.uuid}:{gi}')}"
        return gpu.uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        gpu, gi = self._enter("nvmlDeviceGetName", handle)
        assert gpu is not None
        if gi is not None:
            profile = next(m.profile for m in gpu.mig if m.gi_id == gi)
            return f"{gpu.model.name} MIG {profile}"
        return gpu.model.name

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        gpu, gi = self._enter("nvmlDeviceGetPciInfo", handle)
        assert gpu is not None
        self._device_only(gi)
        info = pynvml.nvmlPciInfo_t()
        bus_id = gpu.pci_bus_id.encode()
        info.busId = bus_id
        info.busIdLegacy = bus_id[4:]
        domain, bus, rest = gpu.pci_bus_id.split(":")
        info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
        info.pciDeviceId = 0x233010DE
        return info

    def nvmlDeviceGetSerial(self, handle: Any) -> str:
        gpu, _gi = self._enter("nvmlDeviceGetSerial", handle)
        assert gpu is not None
        return gpu.serial

    def nvmlDeviceGetVbiosVersion(self, handle: Any) -> str:
        gpu, _gi = self._enter("nvmlDeviceGetVbiosVersion", handle)
        assert gpu is not None
        return gpu.model.vbios

    def nvmlDeviceGetInforomImageVersion(self, handle: Any) -> str:
        gpu, _gi = self._enter("nvmlDeviceGetInforomImageVersion", handle)
        assert gpu is not None
        return gpu.model.inforom

    # ---- MIG -----------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        gpu, gi = self._enter("nvmlDeviceGetMigMode", handle)
        assert gpu is not None
        if not gpu.model.mig_capable or gi is not None:
            raise pynvml.NVMLError_NotSupported()
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if self._mig_enabled[gpu.index] else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]  # current, pending

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        gpu, _gi = self._enter("nvmlDeviceGetMaxMigDeviceCount", handle)
        assert gpu is not None
        if not gpu.model.mig_capable:
            raise pynvml.NVMLError_NotSupported()
        return _MAX_MIG_DEVICES

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any:
        gpu, gi = self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        assert gpu is not None
        handles = self._mig_handles[gpu.index] if self._mig_enabled[gpu.index] else []
        if gi is not None or not 0 <= index < _MAX_MIG_DEVICES:
            raise pynvml.NVMLError_InvalidArgument()
        if index >= len(handles):
            raise pynvml.NVMLError_NotFound()
        return handles[index]

    def nvmlDeviceGetGpuInstanceId(self, handle: Any) -> int:
        _gpu, gi = self._enter("nvmlDeviceGetGpuInstanceId", handle)
        if gi is None:
            raise pynvml.NVMLError_InvalidArgument()
        return gi

    # ---- device fields, one call each -------------------------------------------------
    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int:
        names = {pynvml.NVML_CLOCK_SM: "DCGM_FI_DEV_SM_CLOCK", pynvml.NVML_CLOCK_MEM: "DCGM_FI_DEV_MEM_CLOCK"}
        name = names.get(clock_type)
        gpu, gi = self._enter("nvmlDeviceGetClockInfo", handle, (name,) if name else ())
        assert gpu is not None
        self._device_only(gi)
        if name is None:
            raise pynvml.NVMLError_NotSupported()
        return self._int(gpu, name)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        gpu, gi = self._enter("nvmlDeviceGetTemperature", handle, ("DCGM_FI_DEV_GPU_TEMP",))
        assert gpu is not None
        self._device_only(gi)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError_InvalidArgument()
        return self._int(gpu, "DCGM_FI_DEV_GPU_TEMP")

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        gpu, gi = self._enter("nvmlDeviceGetPowerUsage", handle, ("DCGM_FI_DEV_POWER_USAGE",))
        assert gpu is not None
        self._device_only(gi)
        return round(self._value(gpu, "DCGM_FI_DEV_POWER_USAGE") * 1000)  # mW

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        gpu, gi = self._enter("nvmlDeviceGetPowerManagementLimit", handle, ("DCGM_FI_DEV_POWER_MGMT_LIMIT",))
        assert gpu is not None
        self._device_only(gi)
        return round(self._value(gpu, "DCGM_FI_DEV_POWER_MGMT_LIMIT") * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        name = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
        gpu, gi = self._enter("nvmlDeviceGetTotalEnergyConsumption", handle, (name,))
        assert gpu is not None
        self._device_only(gi)
        return self._int(gpu, name)  # mJ

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        names = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL")
        gpu, gi = self._enter("nvmlDeviceGetUtilizationRates", handle, names)
        assert gpu is not None
        self._device_only(gi)
        util = pynvml.c_nvmlUtilization_t()
        util.gpu = self._int(gpu, names[0])
        util.memory = self._int(gpu, names[1])
        return util

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> list[int]:
        gpu, gi = self._enter("nvmlDeviceGetEncoderUtilization", handle, ("DCGM_FI_DEV_ENC_UTIL",))
        assert gpu is not None
        self._device_only(gi)
        return [self._int(gpu, "DCGM_FI_DEV_ENC_UTIL"), 167000]  # [percent, sampling period in µs]

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        gpu, gi = self._enter("nvmlDeviceGetDecoderUtilization", handle, ("DCGM_FI_DEV_DEC_UTIL",))
        assert gpu is not None
        self._device_only(gi)
        return [self._int(gpu, "DCGM_FI_DEV_DEC_UTIL"), 167000]

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        """v2 (version=pynvml.nvmlMemory_v2): `used` excludes the reserved
        memory; v1: `used` is total - free, reserved included. A driver
        before R510 has no _v2 symbol: pynvml raises FunctionNotFound."""
        gpu, gi = self._enter("nvmlDeviceGetMemoryInfo", handle, ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"))
        assert gpu is not None
        total, reserved, used = self._memory(gpu, gi)
        if version:
            if not self.description.memory_info_v2:
                raise pynvml.NVMLError_FunctionNotFound()
            if version != pynvml.nvmlMemory_v2:
                raise pynvml.NVMLError_ArgumentVersionMismatch()
            mem: Any = pynvml.c_nvmlMemory_v2_t()
            mem.version = version
            mem.reserved = reserved * MIB
            mem.used = used * MIB
        else:
            mem = pynvml.c_nvmlMemory_t()
            mem.used = (used + reserved) * MIB
        mem.total = total * MIB
        mem.free = (total - reserved - used) * MIB
        return mem

    def nvmlDeviceGetGridLicensableFeatures(self, handle: Any) -> Any:
        gpu, gi = self._enter("nvmlDeviceGetGridLicensableFeatures", handle, ("DCGM_FI_DEV_VGPU_LICENSE_STATUS",))
        assert gpu is not None
        self._device_only(gi)
        features = pynvml.c_nvmlGridLicensableFeatures_v4_t()
        state = self._int(gpu, "DCGM_FI_DEV_VGPU_LICENSE_STATUS")
        features.isGridLicenseSupported = 1 if state else 0
        features.licensableFeaturesCount = 1 if state else 0
        features.gridLicensableFeatures[0].featureState = state
        return features

    def nvmlDeviceGetRemappedRows(self, handle: Any) -> tuple[int, int, int, int]:
        names = (
            "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        )
        gpu, gi = self._enter("nvmlDeviceGetRemappedRows", handle, names)
        assert gpu is not None
        self._device_only(gi)
        # (correctable, uncorrectable, pending, failure)
        return (self._int(gpu, names[0]), self._int(gpu, names[1]), 0, self._int(gpu, names[2]))

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: int, counter_type: int) -> int:
        name = ECC.get((error_type, counter_type))
        gpu, gi = self._enter("nvmlDeviceGetTotalEccErrors", handle, (name,) if name else ())
        assert gpu is not None
        self._device_only(gi)
        if name is None:
            raise pynvml.NVMLError_InvalidArgument()
        return self._int(gpu, name)

    def nvmlDeviceGetRetiredPages(self, handle: Any, cause: int) -> list[int]:
        name = RETIRED.get(cause)
        gpu, gi = self._enter("nvmlDeviceGetRetiredPages", handle, (name,) if name else ())
        assert gpu is not None
        self._device_only(gi)
        if name is None:
            raise pynvml.NVMLError_InvalidArgument()
        return [0x1000 * (i + 1) for i in range(self._int(gpu, name))]

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: Any) -> int:
        gpu, gi = self._enter("nvmlDeviceGetRetiredPagesPendingStatus", handle, ("DCGM_FI_DEV_RETIRED_PENDING",))
        assert gpu is not None
        self._device_only(gi)
        return 1 if self._int(gpu, "DCGM_FI_DEV_RETIRED_PENDING") else 0

    def nvmlDeviceGetViolationStatus(self, handle: Any, policy: int) -> Any:
        name = VIOLATIONS.get(policy)
        gpu, gi = self._enter("nvmlDeviceGetViolationStatus", handle, (name,) if name else ())
        assert gpu is not None
        self._device_only(gi)
        if name is None:
            raise pynvml.NVMLError_InvalidArgument()
        viol = pynvml.c_nvmlViolationTime_t()
        viol.referenceTime = int(self.clock() * 1_000_000)
        viol.violationTime = self._int(gpu, name)  # ns, the same counter as NVML_FI_DEV_PERF_POLICY_*
        return viol

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        gpu, gi = self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle, (CLOCK_REASONS,))
        assert gpu is not None
        self._device_only(gi)
        with self._lock:
            if gpu.index in self._clock_reasons:
                return self._clock_reasons[gpu.index]
        return self._int(gpu, CLOCK_REASONS)
