"""The fake NVML's field tables: which description key answers which NVML
field value or per-call query, with the value type the driver uses.

Description values are keyed by DCGM field name (DCGM_FI_DEV_POWER_VIOLATION)
except where the driver's quantity is not DCGM's: the NVLink throughput
counters are raw cumulative KiB per direction, summed over all links, keyed
by their NVML names (NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/_RX). DCGM's
DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL is a rate it computes from two readings
of those counters (NVIDIA/DCGM dcgmlib/src/DcgmCacheManager.cpp,
ReadAndCacheNvLinkBandwidth), so a description cannot set it.
"""

from __future__ import annotations

import pynvml

from nodeagent.catalogue.gpu import DCGM_FIELDS

MIB = 1024 * 1024
ALL_LINKS = 0xFFFFFFFF  # scopeId "all NVLinks" (DCGM passes UINT_MAX verbatim to NVML)
NOT_IN_INSTANCE = 0xFFFFFFFF  # gpuInstanceId/computeInstanceId outside MIG

CLOCK_REASONS = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"
RECOVERY_ACTION = "DCGM_FI_DEV_GPU_RECOVERY_ACTION"
NVLINK_TX = "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX"
NVLINK_RX = "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX"
NVLINK_BANDWIDTH = "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"

# keys a description may give a value for
VALUE_KEYS = (frozenset(DCGM_FIELDS) | {CLOCK_REASONS, RECOVERY_ACTION, NVLINK_TX, NVLINK_RX}) - {NVLINK_BANDWIDTH}

_UINT = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
_ULL = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG

# NVML field id -> (description key, value type). The value type is the one
# of the per-call query's out-parameter in nvml.h (temperatures, page and row
# counts, pending flags and the recovery action are unsigned int; energy,
# ECC, violation times and NVLink counters unsigned long long).
FIELD_VALUES: dict[int, tuple[str, int]] = {
    pynvml.NVML_FI_DEV_MEMORY_TEMP: ("DCGM_FI_DEV_MEMORY_TEMP", _UINT),
    pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", _ULL),
    pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER: ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", _UINT),
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", _ULL),
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", _ULL),
    pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL: ("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", _ULL),
    pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL: ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", _ULL),
    pynvml.NVML_FI_DEV_RETIRED_SBE: ("DCGM_FI_DEV_RETIRED_SBE", _UINT),
    pynvml.NVML_FI_DEV_RETIRED_DBE: ("DCGM_FI_DEV_RETIRED_DBE", _UINT),
    pynvml.NVML_FI_DEV_RETIRED_PENDING: ("DCGM_FI_DEV_RETIRED_PENDING", _UINT),
    pynvml.NVML_FI_DEV_REMAPPED_COR: ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", _UINT),
    pynvml.NVML_FI_DEV_REMAPPED_UNC: ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", _UINT),
    pynvml.NVML_FI_DEV_REMAPPED_FAILURE: ("DCGM_FI_DEV_ROW_REMAP_FAILURE", _UINT),
    # cumulative nanoseconds, passed through unscaled by DCGM (dcgm_fields.cpp
    # maps DCGM_FI_DEV_*_VIOLATION to these; nvml.h: "in nanoseconds")
    pynvml.NVML_FI_DEV_PERF_POLICY_POWER: ("DCGM_FI_DEV_POWER_VIOLATION", _ULL),
    pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL: ("DCGM_FI_DEV_THERMAL_VIOLATION", _ULL),
    pynvml.NVML_FI_DEV_PERF_POLICY_SYNC_BOOST: ("DCGM_FI_DEV_SYNC_BOOST_VIOLATION", _ULL),
    pynvml.NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT: ("DCGM_FI_DEV_BOARD_LIMIT_VIOLATION", _ULL),
    pynvml.NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION: ("DCGM_FI_DEV_LOW_UTIL_VIOLATION", _ULL),
    pynvml.NVML_FI_DEV_PERF_POLICY_RELIABILITY: ("DCGM_FI_DEV_RELIABILITY_VIOLATION", _ULL),
    pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL: ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", _ULL),
    pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL: ("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", _ULL),
    pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL: ("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", _ULL),
    pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL: ("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", _ULL),
    # KiB, cumulative, per link or summed over all links (scopeId ALL_LINKS)
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: (NVLINK_TX, _ULL),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: (NVLINK_RX, _ULL),
    pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: (RECOVERY_ACTION, _UINT),
}
NVLINK_FIELDS = frozenset(
    {
        pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
        pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
        pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
        pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
        pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
        pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
        pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT,
    }
)
PER_LINK_FIELDS = frozenset(
    {pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX}
)

# the description key behind each field id, and each key's field id
_KEY_TO_FIELD = {key: fid for fid, (key, _type) in FIELD_VALUES.items()}


def field_id(name: str) -> int | None:
    """The NVML field id a description names: a DCGM field read through
    field values, or an NVML_FI_* name."""
    if name in _KEY_TO_FIELD:
        return _KEY_TO_FIELD[name]
    if name.startswith("NVML_FI_DEV_"):
        value = getattr(pynvml, name, None)
        return value if isinstance(value, int) else None
    return None


def error_code(name: str) -> int | None:
    """pynvml's NVML_ERROR_* code for a lower-case name: unknown, not_supported, ..."""
    value = getattr(pynvml, f"NVML_ERROR_{name.upper()}", None)
    return value if isinstance(value, int) and value != pynvml.NVML_SUCCESS else None


# the per-call queries and the description keys behind their arguments
VIOLATIONS = {
    pynvml.NVML_PERF_POLICY_POWER: "DCGM_FI_DEV_POWER_VIOLATION",
    pynvml.NVML_PERF_POLICY_THERMAL: "DCGM_FI_DEV_THERMAL_VIOLATION",
    pynvml.NVML_PERF_POLICY_SYNC_BOOST: "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
    pynvml.NVML_PERF_POLICY_BOARD_LIMIT: "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
    pynvml.NVML_PERF_POLICY_LOW_UTILIZATION: "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
    pynvml.NVML_PERF_POLICY_RELIABILITY: "DCGM_FI_DEV_RELIABILITY_VIOLATION",
}
ECC = {
    (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC): "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC): "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_AGGREGATE_ECC): "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC): "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
}
RETIRED = {
    pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS: "DCGM_FI_DEV_RETIRED_SBE",
    pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR: "DCGM_FI_DEV_RETIRED_DBE",
}
# whole-GPU utilisation the driver does not report while MIG is enabled:
# "On MIG-enabled GPUs, querying the utilization of encoder, decoder, jpeg,
# ofa, gpu, and memory is not currently supported" (nvidia-smi
# --help-query-gpu); nvmlDeviceGetUtilizationRates raises NotSupported on a
# MIG-enabled A100 (XuehaiPan/nvitop issue #5).
MIG_HIDDEN = frozenset(
    {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL"}
)

# GPM metric id -> (DCGM field, factor from DCGM's unit to GPM's)
GPM = {
    pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_SM_UTIL: ("DCGM_FI_PROF_SM_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: ("DCGM_FI_PROF_SM_OCCUPANCY", 100.0),
    pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: ("DCGM_FI_PROF_DRAM_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_FP64_UTIL: ("DCGM_FI_PROF_PIPE_FP64_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_FP32_UTIL: ("DCGM_FI_PROF_PIPE_FP32_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_FP16_UTIL: ("DCGM_FI_PROF_PIPE_FP16_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC: ("DCGM_FI_PROF_PCIE_TX_BYTES", 1.0 / MIB),
    pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC: ("DCGM_FI_PROF_PCIE_RX_BYTES", 1.0 / MIB),
    pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC: ("DCGM_FI_PROF_NVLINK_TX_BYTES", 1.0 / MIB),
    pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC: ("DCGM_FI_PROF_NVLINK_RX_BYTES", 1.0 / MIB),
}
