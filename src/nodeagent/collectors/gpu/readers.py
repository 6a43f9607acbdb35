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

from nodeagent.collectors.gpu.enrich import CLOCK_REASONS, NVLINK_BANDWIDTH
from nodeagent.gpu.backend import Handle, NvmlApi

Value = float | int
ReadResult = dict[str, "Value | pynvml.NVMLError"]

_MIB = 1024 * 1024
_ALL_LINKS = 0xFFFFFFFF


@dataclass(frozen=True)
class Reader:
    key: str
    fields: tuple[str, ...]
    read: Callable[[NvmlApi, Handle, tuple[str, ...]], ReadResult]
    # also read on MIG device handles (values per GPU instance)
    mig: bool = False
    # seconds between reads (0: every cycle); the last values are served in between
    every: float = 0.0


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


# DCGM field -> NVML field id, read together in one nvmlDeviceGetFieldValues
# per GPU per cycle, each with its own return code, as DCGM's cache manager
# does for these fields (NVIDIA/DCGM dcgmlib/src/DcgmCacheManager.cpp,
# BufferOrCacheLatestGpuValue). Values pass through in NVML's units: the
# violation times stay nanoseconds, as DCGM serves them (dcgm-exporter's
# counters files say "(in ns)").
FIELD_VALUE_IDS: dict[str, int] = {
    "DCGM_FI_DEV_MEMORY_TEMP": pynvml.NVML_FI_DEV_MEMORY_TEMP,
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER,
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL,
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL,
    "DCGM_FI_DEV_RETIRED_SBE": pynvml.NVML_FI_DEV_RETIRED_SBE,
    "DCGM_FI_DEV_RETIRED_DBE": pynvml.NVML_FI_DEV_RETIRED_DBE,
    "DCGM_FI_DEV_RETIRED_PENDING": pynvml.NVML_FI_DEV_RETIRED_PENDING,
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": pynvml.NVML_FI_DEV_REMAPPED_COR,
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": pynvml.NVML_FI_DEV_REMAPPED_UNC,
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": pynvml.NVML_FI_DEV_REMAPPED_FAILURE,
    "DCGM_FI_DEV_POWER_VIOLATION": pynvml.NVML_FI_DEV_PERF_POLICY_POWER,
    "DCGM_FI_DEV_THERMAL_VIOLATION": pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL,
    "DCGM_FI_DEV_SYNC_BOOST_VIOLATION": pynvml.NVML_FI_DEV_PERF_POLICY_SYNC_BOOST,
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION": pynvml.NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT,
    "DCGM_FI_DEV_LOW_UTIL_VIOLATION": pynvml.NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION,
    "DCGM_FI_DEV_RELIABILITY_VIOLATION": pynvml.NVML_FI_DEV_PERF_POLICY_RELIABILITY,
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    "DCGM_FI_DEV_GPU_RECOVERY_ACTION": pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION,
}

# DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL is a rate DCGM derives from the NVLink
# data throughput counters (KiB, RX + TX, all links): the reader returns the
# raw total under this internal name, the sampler turns two readings into
# the rate (enrich.nvlink_rate).
NVLINK_THROUGHPUT = (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX)


# DCGM_FI_DEV_POWER_USAGE is what nvmlDeviceGetPowerUsage returns: the 1-second
# average on Ampere (except GA100) and newer, the instantaneous power on GA100
# and older (NVML API reference, nvmlDeviceGetPowerUsage). Those are the field
# values POWER_AVERAGE (supported on Ampere except GA100, and newer) and
# POWER_INSTANT (all GPUs), both in mW: asked for in the same batch, they save
# one call per GPU per cycle. Where neither answers, the call itself is made.
POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"
POWER_FIELDS = (pynvml.NVML_FI_DEV_POWER_AVERAGE, pynvml.NVML_FI_DEV_POWER_INSTANT)


def _read_field_values(api: NvmlApi, handle: Handle, wanted: tuple[str, ...]) -> ReadResult:
    """One nvmlDeviceGetFieldValues for every wanted field, NVLink throughput
    and power included."""
    names = [n for n in wanted if n in FIELD_VALUE_IDS]
    requests: list[Any] = [FIELD_VALUE_IDS[n] for n in names]
    nvlink = NVLINK_BANDWIDTH in wanted
    if nvlink:
        requests.extend((fid, _ALL_LINKS) for fid in NVLINK_THROUGHPUT)
    power = POWER_USAGE in wanted
    if power:
        requests.extend(POWER_FIELDS)
    values = api.nvmlDeviceGetFieldValues(handle, requests)
    out: ReadResult = {}
    for i, name in enumerate(names):
        out[name] = _field_result(values[i])
    extra = [_field_result(values[i]) for i in range(len(names), len(requests))]
    if nvlink:
        tx, rx = extra[0], extra[1]
        extra = extra[2:]
        if isinstance(tx, pynvml.NVMLError):
            out[NVLINK_BANDWIDTH] = tx
        elif isinstance(rx, pynvml.NVMLError):
            out[NVLINK_BANDWIDTH] = rx
        else:
            out[NVLINK_BANDWIDTH] = int(tx) + int(rx)
    if power:
        milliwatts = next((v for v in extra if not isinstance(v, pynvml.NVMLError)), None)
        if milliwatts is None:
            milliwatts = api.nvmlDeviceGetPowerUsage(handle)
        out[POWER_USAGE] = milliwatts / 1000.0
    return out


def _field_result(fv: Any) -> Value | pynvml.NVMLError:
    if fv.nvmlReturn != pynvml.NVML_SUCCESS:
        return pynvml.NVMLError(fv.nvmlReturn)
    return _field_value(fv)


def _read_memory(api: NvmlApi, handle: Handle, wanted: tuple[str, ...]) -> ReadResult:
    """Framebuffer in MiB, as DCGM reads it (DcgmCacheManager.cpp, the FB_*
    fields): the v2 struct whenever the driver has it, whatever fields are
    wanted, so "used" never includes the reserved memory; only a driver
    without v2 gives v1's "used", which does, and no FB_RESERVED."""
    try:
        mem = api.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    except (pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError_NotSupported,
            pynvml.NVMLError_ArgumentVersionMismatch):
        mem = None
    if mem is not None:
        return {
            "DCGM_FI_DEV_FB_FREE": int(mem.free) // _MIB,
            "DCGM_FI_DEV_FB_USED": int(mem.used) // _MIB,
            "DCGM_FI_DEV_FB_RESERVED": int(mem.reserved) // _MIB,
            "DCGM_FI_DEV_FB_TOTAL": int(mem.total) // _MIB,
        }
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


def _vgpu_license(api: NvmlApi, handle: Handle) -> int:
    features = api.nvmlDeviceGetGridLicensableFeatures(handle)
    if not features.isGridLicenseSupported or not features.licensableFeaturesCount:
        return 0
    return int(features.gridLicensableFeatures[0].featureState)


# Settings that only an administrator changes: read at start and then every
# minute, the last value served in between.
SETTING_INTERVAL = 60.0
# Encoder and decoder utilisation: sampled every 30 s, dcgm-exporter's default
# collect interval, which is as fresh as dcgm-exporter serves them. NVENC and
# NVDEC sit idle on training nodes; a call each every cycle was a fifth of
# the per-GPU NVML calls.
CODEC_INTERVAL = 30.0

READERS: tuple[Reader, ...] = (
    _one("sm_clock", "DCGM_FI_DEV_SM_CLOCK", lambda a, h: int(a.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM))),
    _one("mem_clock", "DCGM_FI_DEV_MEM_CLOCK", lambda a, h: int(a.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM))),
    _one(
        "gpu_temp",
        "DCGM_FI_DEV_GPU_TEMP",
        lambda a, h: int(a.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
    ),
    Reader("utilization", ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL"), _read_utilization),
    Reader(
        "enc_util",
        ("DCGM_FI_DEV_ENC_UTIL",),
        lambda a, h, w: {"DCGM_FI_DEV_ENC_UTIL": int(a.nvmlDeviceGetEncoderUtilization(h)[0])},
        every=CODEC_INTERVAL,
    ),
    Reader(
        "dec_util",
        ("DCGM_FI_DEV_DEC_UTIL",),
        lambda a, h, w: {"DCGM_FI_DEV_DEC_UTIL": int(a.nvmlDeviceGetDecoderUtilization(h)[0])},
        every=CODEC_INTERVAL,
    ),
    Reader(
        "memory",
        ("DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_FB_TOTAL"),
        _read_memory,
        mig=True,
    ),
    Reader("field_values", (*FIELD_VALUE_IDS, NVLINK_BANDWIDTH, POWER_USAGE), _read_field_values),
    _one("clock_events", CLOCK_REASONS, lambda a, h: int(a.nvmlDeviceGetCurrentClocksEventReasons(h))),
    Reader(
        "power_limit",
        ("DCGM_FI_DEV_POWER_MGMT_LIMIT",),
        lambda a, h, w: {"DCGM_FI_DEV_POWER_MGMT_LIMIT": a.nvmlDeviceGetPowerManagementLimit(h) / 1000.0},
        every=SETTING_INTERVAL,
    ),
    Reader(
        "vgpu_license",
        ("DCGM_FI_DEV_VGPU_LICENSE_STATUS",),
        lambda a, h, w: {"DCGM_FI_DEV_VGPU_LICENSE_STATUS": _vgpu_license(a, h)},
        every=SETTING_INTERVAL,
    ),
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
