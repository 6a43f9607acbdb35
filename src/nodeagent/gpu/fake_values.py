"""The fake NVML's batched field values and process queries.

nvmlDeviceGetFieldValues answers like the driver: the call succeeds and each
entry carries its own nvmlReturn (NVML API reference, "Field Value Queries":
"you must check the nvmlReturn field of each value"), its fieldId and
scopeId as asked, a value type, and a timestamp in µs on the fake's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pynvml

from nodeagent.gpu.fake_core import FakeCore
from nodeagent.gpu.fake_description import FakeGpu
from nodeagent.gpu.fake_fields import (
    ALL_LINKS,
    FIELD_VALUES,
    MIB,
    NOT_IN_INSTANCE,
    NVLINK_FIELDS,
    PER_LINK_FIELDS,
    RECOVERY_ACTION,
)

POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"

# The driver that first reports NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: a public
# `nvidia-smi -q` of 8x H100 on 565.57.01 shows "GPU Recovery Action : None"
# (github thamada/nvidia-smi, nvsim/H100SXMx8_smi.py); nvidia-ml-py has the
# field id from 12.570.86.
RECOVERY_ACTION_DRIVER = 565

_SETTERS = {
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
}


class FieldValueCalls(FakeCore):
    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: Sequence[Any]) -> Any:
        """`field_ids`: ints or (fieldId, scopeId) tuples, as pynvml takes them."""
        gpu, gi = self._enter("nvmlDeviceGetFieldValues", handle)
        assert gpu is not None
        stamp = int(self.clock() * 1_000_000)
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        with self._lock:
            errors = {fid: code for (g, fid), (code, until) in self._field_errors.items()
                      if g == gpu.index and (until is None or self.t() < until)}  # fmt: skip
        for i, requested in enumerate(field_ids):
            fid, scope = requested if isinstance(requested, tuple) else (requested, 0)
            entry = values[i]
            entry.fieldId, entry.scopeId, entry.timestamp = fid, scope, stamp
            entry.nvmlReturn = errors.get(fid) or gpu.model.field_errors.get(fid) or gpu.field_errors.get(fid) or 0
            if entry.nvmlReturn:
                continue
            # A MIG device handle: DCGM reads these device-level fields on
            # the parent GPU (DcgmCacheManager.cpp, SetPracticalEntityInfo),
            # and NVML does not report them per instance: NOT_SUPPORTED.
            if gi is not None:
                entry.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            entry.nvmlReturn = self._fill(entry, gpu, fid, scope)
        return values

    def _fill(self, entry: Any, gpu: FakeGpu, fid: int, scope: int) -> int:
        """Set entry's value; the per-entry return code."""
        links = gpu.model.nvlinks
        if fid in NVLINK_FIELDS and links == 0:
            return int(pynvml.NVML_ERROR_NOT_SUPPORTED)  # no NVLink on this board (A10G)
        if fid == pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT:
            entry.valueType, entry.value.uiVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, links
            return int(pynvml.NVML_SUCCESS)
        if fid in (pynvml.NVML_FI_DEV_POWER_AVERAGE, pynvml.NVML_FI_DEV_POWER_INSTANT):
            return self._power(entry, gpu, fid)
        spec = FIELD_VALUES.get(fid)
        if spec is None or spec[0] in self._unsupported(gpu):
            return int(pynvml.NVML_ERROR_NOT_SUPPORTED)
        key, value_type = spec
        if key == RECOVERY_ACTION:
            if self.description.driver_major < RECOVERY_ACTION_DRIVER:
                return int(pynvml.NVML_ERROR_NOT_SUPPORTED)
            with self._lock:
                value = self._recovery.get(gpu.index, self._int(gpu, key))
        else:
            value = self._int(gpu, key)
        if fid in PER_LINK_FIELDS and scope != ALL_LINKS:
            if not 0 <= scope < links:
                return int(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            value //= links  # the links share the traffic evenly
        entry.valueType = value_type
        setattr(entry.value, _SETTERS[value_type], value)
        return int(pynvml.NVML_SUCCESS)

    def _power(self, entry: Any, gpu: FakeGpu, fid: int) -> int:
        """Power in mW, what nvmlDeviceGetPowerUsage returns: the 1-second
        average is a field on Ampere (except GA100) and newer, the
        instantaneous power on every GPU (nvml.h, NVML_FI_DEV_POWER_AVERAGE
        and NVML_FI_DEV_POWER_INSTANT)."""
        if POWER_USAGE in self._unsupported(gpu):
            return int(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if fid == pynvml.NVML_FI_DEV_POWER_AVERAGE and "A100" in gpu.model.name:
            return int(pynvml.NVML_ERROR_NOT_SUPPORTED)
        entry.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
        entry.value.uiVal = round(self._value(gpu, POWER_USAGE) * 1000)
        return int(pynvml.NVML_SUCCESS)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        gpu, gi = self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        assert gpu is not None
        # process queries walk every context on the GPU; on a loaded node they take seconds
        self._stall(self.description.process_query_seconds)
        if self.description.process_query_error == "library_mismatch":
            raise library_mismatch("nvmlDeviceGetComputeRunningProcesses")
        with self._lock:
            procs = list(self._processes.get(gpu.index, []))
            mig = self._mig_enabled[gpu.index]
        return [
            pynvml.nvmlFriendlyObject(
                {
                    "pid": p.pid,
                    "usedGpuMemory": p.used_mib * MIB,
                    "gpuInstanceId": p.gi_id if mig and p.gi_id is not None else NOT_IN_INSTANCE,
                    "computeInstanceId": 0 if mig and p.gi_id is not None else NOT_IN_INSTANCE,
                }
            )
            for p in procs
            if gi is None or p.gi_id == gi
        ]


def library_mismatch(function: str) -> Exception:
    """What pynvml >= 12.550.52 raises from an unversioned process query when
    the driver lacks the _v3 symbol: NVMLLibraryMismatchError, a plain
    Exception, not an NVMLError (pynvml.py, throwOnVersionMismatch)."""
    cls: type[Exception] = getattr(pynvml, "NVMLLibraryMismatchError", RuntimeError)
    return cls(
        "Unversioned function called and the pyNVML version does not match the NVML lib version. "
        f"Either use matching pyNVML and NVML lib versions or use a versioned function such as {function}_v2"
    )
