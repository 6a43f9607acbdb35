"""How each DCGM field is read from NVML.

A Reader is one NVML call (or one batched nvmlDeviceGetFieldValues) and the
DCGM fields it yields, converted to DCGM's units. `read(api, handle, wanted)`
returns a value, or an NVMLError for a field the call answered with an error
(field values and the memory fallback report per field). A whole-call
failure raises. The sampler remembers NOT_SUPPORTED per GPU and per field,
so an unsupported call is made once, not every cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pynvml

from nodeagent.gpu.backend import Handle, NvmlApi

Value = float | int
ReadResult = dict[str, "Value | pynvml.NVMLError"]

CLOCK_REASONS = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"  # internal: feeds DCGM_EXP_CLOCK_EVENTS_COUNT
_MIB = 1024 * 1024
_ALL_LINKS = 0xFFFFFFFF


@dataclass(frozen=True)
class Reader:
    key: str
    fields: tuple[str, ...]
    read: Callable[[NvmlApi, Handle, tuple[str, ...]], ReadResult]
    # also read on MIG device handles (values per GPU instance)
    mig: bool = False


def _one(key: str, field_name: str, call: Callable[[NvmlApi, Handle], Value]) -> Reader:
    return Reader(key, (field_name,), lambda api, h, wanted: {field_name: call(api, h)})


def _field_value(fv: Any) -> Value:
    vt = fv.valueType
    v = fv.value
    if vt == pynvml.NVML_VALUE_TYPE_DOUBLE:
        return float(v.dVal)
    if vt == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT:
        return int(v.uiVal)
    if vt == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG:
        return int(v.ulVal)
    if vt == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG:
        return int(v.ullVal)
    if vt == pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG:
        return int(v.sllVal)
    if vt == pynvml.NVML_VALUE_TYPE_SIGNED_INT:
        return int(v.siVal)
    if vt == pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT:
        return int(v.usVal)
    raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)


# DCGM field -> NVML field-value id, for the batched nvmlDeviceGetFieldValues reader
FIELD_VALUE_IDS: dict[str, int] = {
    "DCGM_FI_DEV_MEMORY_TEMP": pynvml.NVML_FI_DEV_MEMORY_TEMP,
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": pynvml.NVML_FI_DEV_NVLINK_BANDWIDTH_C0_TOTAL,
}


def _read_field_values(api: NvmlApi, handle: Handle, wanted: tuple[str, ...]) -> ReadResult:
    """One nvmlDeviceGetFieldValues for all wanted field-value fields. The NVLink
    bandwidth total falls back to the raw throughput counters (all links, KiB)
    on drivers where the deprecated counter set 0 is not supported."""
    requests: list[Any] = [FIELD_VALUE_IDS[name] for name in wanted]
    bandwidth = "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL" in wanted
    if bandwidth:
        requests.append((pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX, _ALL_LINKS))
        requests.append((pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX, _ALL_LINKS))
    values = api.nvmlDeviceGetFieldValues(handle, requests)
    out: ReadResult = {}
    for i, name in enumerate(wanted):
        fv = values[i]
        if fv.nvmlReturn == pynvml.NVML_SUCCESS:
            out[name] = _field_value(fv)
        else:
            out[name] = pynvml.NVMLError(fv.nvmlReturn)
    if bandwidth and isinstance(out["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"], pynvml.NVMLError):
        tx, rx = values[len(wanted)], values[len(wanted) + 1]
        if tx.nvmlReturn == pynvml.NVML_SUCCESS and rx.nvmlReturn == pynvml.NVML_SUCCESS:
            out["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"] = int(_field_value(tx)) + int(_field_value(rx))
    return out


def _read_memory(api: NvmlApi, handle: Handle, wanted: tuple[str, ...]) -> ReadResult:
    """Framebuffer in MiB. nvmlMemory_v2 separates reserved memory; without it
    (older drivers) FB_RESERVED is reported unsupported and v1 is used."""
    if "DCGM_FI_DEV_FB_RESERVED" in wanted:
        try:
            mem = api.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
            return {
                "DCGM_FI_DEV_FB_FREE": int(mem.free) // _MIB,
                "DCGM_FI_DEV_FB_USED": int(mem.used) // _MIB,
                "DCGM_FI_DEV_FB_RESERVED": int(mem.reserved) // _MIB,
                "DCGM_FI_DEV_FB_TOTAL": int(mem.total) // _MIB,
            }
        except (pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError_NotSupported):
            pass
    mem = api.nvmlDeviceGetMemoryInfo(handle)
    return {
        "DCGM_FI_DEV_FB_FREE": int(mem.free) // _MIB,
        "DCGM_FI_DEV_FB_USED": int(mem.used) // _MIB,
        "DCGM_FI_DEV_FB_TOTAL": int(mem.total) // _MIB,
        "DCGM_FI_DEV_FB_RESERVED": pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED),
    }


def _read_utilization(api: NvmlApi, handle: Handle, wanted: tuple[str, ...]) -> ReadResult:
    util = api.nvmlDeviceGetUtilizationRates(handle)
    return {"DCGM_FI_DEV_GPU_UTIL": int(util.gpu), "DCGM_FI_DEV_MEM_COPY_UTIL": int(util.memory)}


def _read_remapped(api: NvmlApi, handle: Handle, wanted: tuple[str, ...]) -> ReadResult:
    corr, unc, _pending, failure = api.nvmlDeviceGetRemappedRows(handle)
    return {
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": int(corr),
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": int(unc),
        "DCGM_FI_DEV_ROW_REMAP_FAILURE": int(failure),
    }


def _vgpu_license(api: NvmlApi, handle: Handle) -> int:
    features = api.nvmlDeviceGetGridLicensableFeatures(handle)
    if not features.isGridLicenseSupported or not features.licensableFeaturesCount:
        return 0
    return int(features.gridLicensableFeatures[0].featureState)


def _ecc(error_type: int, counter_type: int) -> Callable[[NvmlApi, Handle], Value]:
    return lambda api, h: int(api.nvmlDeviceGetTotalEccErrors(h, error_type, counter_type))


def _violation(policy: int) -> Callable[[NvmlApi, Handle], Value]:
    # NVML reports nanoseconds; DCGM's violation fields are microseconds
    return lambda api, h: int(api.nvmlDeviceGetViolationStatus(h, policy).violationTime) // 1000


def _retired(cause: int) -> Callable[[NvmlApi, Handle], Value]:
    return lambda api, h: len(api.nvmlDeviceGetRetiredPages(h, cause))


READERS: tuple[Reader, ...] = (
    _one("sm_clock", "DCGM_FI_DEV_SM_CLOCK", lambda a, h: int(a.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM))),
    _one("mem_clock", "DCGM_FI_DEV_MEM_CLOCK", lambda a, h: int(a.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM))),
    _one(
        "gpu_temp",
        "DCGM_FI_DEV_GPU_TEMP",
        lambda a, h: int(a.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
    ),
    _one("power", "DCGM_FI_DEV_POWER_USAGE", lambda a, h: a.nvmlDeviceGetPowerUsage(h) / 1000.0),
    _one("power_limit", "DCGM_FI_DEV_POWER_MGMT_LIMIT", lambda a, h: a.nvmlDeviceGetPowerManagementLimit(h) / 1000.0),
    _one("energy", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", lambda a, h: int(a.nvmlDeviceGetTotalEnergyConsumption(h))),
    _one("pcie_replay", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", lambda a, h: int(a.nvmlDeviceGetPcieReplayCounter(h))),
    Reader("utilization", ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL"), _read_utilization),
    _one("enc_util", "DCGM_FI_DEV_ENC_UTIL", lambda a, h: int(a.nvmlDeviceGetEncoderUtilization(h)[0])),
    _one("dec_util", "DCGM_FI_DEV_DEC_UTIL", lambda a, h: int(a.nvmlDeviceGetDecoderUtilization(h)[0])),
    Reader(
        "memory",
        ("DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_FB_TOTAL"),
        _read_memory,
        mig=True,
    ),
    _one("vgpu_license", "DCGM_FI_DEV_VGPU_LICENSE_STATUS", _vgpu_license),
    Reader(
        "remapped_rows",
        (
            "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        ),
        _read_remapped,
    ),
    _one(
        "ecc_sbe_vol",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        _ecc(pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC),
    ),
    _one(
        "ecc_dbe_vol",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        _ecc(pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC),
    ),
    _one(
        "ecc_sbe_agg",
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        _ecc(pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_AGGREGATE_ECC),
    ),
    _one(
        "ecc_dbe_agg",
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        _ecc(pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC),
    ),
    _one(
        "retired_sbe",
        "DCGM_FI_DEV_RETIRED_SBE",
        _retired(pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
    ),
    _one("retired_dbe", "DCGM_FI_DEV_RETIRED_DBE", _retired(pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)),
    _one(
        "retired_pending",
        "DCGM_FI_DEV_RETIRED_PENDING",
        lambda a, h: int(a.nvmlDeviceGetRetiredPagesPendingStatus(h)),
    ),
    _one("power_violation", "DCGM_FI_DEV_POWER_VIOLATION", _violation(pynvml.NVML_PERF_POLICY_POWER)),
    _one("thermal_violation", "DCGM_FI_DEV_THERMAL_VIOLATION", _violation(pynvml.NVML_PERF_POLICY_THERMAL)),
    _one(
        "sync_boost_violation",
        "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
        _violation(pynvml.NVML_PERF_POLICY_SYNC_BOOST),
    ),
    _one(
        "board_limit_violation",
        "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
        _violation(pynvml.NVML_PERF_POLICY_BOARD_LIMIT),
    ),
    _one(
        "low_util_violation",
        "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
        _violation(pynvml.NVML_PERF_POLICY_LOW_UTILIZATION),
    ),
    _one(
        "reliability_violation",
        "DCGM_FI_DEV_RELIABILITY_VIOLATION",
        _violation(pynvml.NVML_PERF_POLICY_RELIABILITY),
    ),
    Reader("field_values", tuple(FIELD_VALUE_IDS), _read_field_values),
    _one("clock_events", CLOCK_REASONS, lambda a, h: int(a.nvmlDeviceGetCurrentClocksEventReasons(h))),
)

FIELD_TO_READER: dict[str, Reader] = {name: r for r in READERS for name in r.fields}


def readers_for(fields: Sequence[str]) -> list[Reader]:
    """The readers needed for these fields, in READERS order."""
    wanted = set(fields)
    return [r for r in READERS if wanted.intersection(r.fields)]


# ---- label-type fields: read once per GPU at start --------------------------------
def decode(value: Any) -> str:
    """A string NVML returns (bytes with older pynvml releases)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


SYSTEM_LABELS: Mapping[str, Callable[[NvmlApi], str]] = {
    "DCGM_FI_DRIVER_VERSION": lambda a: decode(a.nvmlSystemGetDriverVersion()),
    "DCGM_FI_NVML_VERSION": lambda a: decode(a.nvmlSystemGetNVMLVersion()),
    "DCGM_FI_CUDA_DRIVER_VERSION": lambda a: str(int(a.nvmlSystemGetCudaDriverVersion())),
}
DEVICE_LABELS: Mapping[str, Callable[[NvmlApi, Handle], str]] = {
    "DCGM_FI_DEV_NAME": lambda a, h: decode(a.nvmlDeviceGetName(h)),
    "DCGM_FI_DEV_SERIAL": lambda a, h: decode(a.nvmlDeviceGetSerial(h)),
    "DCGM_FI_DEV_UUID": lambda a, h: decode(a.nvmlDeviceGetUUID(h)),
    "DCGM_FI_DEV_PCI_BUSID": lambda a, h: decode(a.nvmlDeviceGetPciInfo(h).busId),
    "DCGM_FI_DEV_VBIOS_VERSION": lambda a, h: decode(a.nvmlDeviceGetVbiosVersion(h)),
    "DCGM_FI_DEV_INFOROM_IMAGE_VER": lambda a, h: decode(a.nvmlDeviceGetInforomImageVersion(h)),
}
