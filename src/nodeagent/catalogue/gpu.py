"""GPU metrics (port 9400): dcgm-exporter's classic names plus nodeagent's own.

dcgm-exporter field families keep NVIDIA's names exactly: counters carry no
`_total` suffix, help texts are those of dcgm-exporter's counters CSV, and
values are written the way dcgm-exporter writes them: integer DCGM fields as
integers, double fields with Go's `%f` (value_format "fixed6").

Labels of every per-GPU sample, in dcgm-exporter's order:

    gpu, UUID, pci_bus_id, device, modelName,
    [GPU_I_PROFILE, GPU_I_ID]           (MIG instances)
    Hostname                            (or `hostname`, gpu.hostname_label)
    <label-type fields, sorted>         (DCGM_FI_DRIVER_VERSION, ...)
    <exporter labels, sorted>           (clock_event, window_size_in_ms, xid)
    <attributes, sorted>                (err_code, hpc_job)

The `labels` declared below are the default set (no MIG, classic Hostname,
only DCGM_FI_DRIVER_VERSION as label field, no running job). The label set of
the DCGM_* families is data driven: `gpu_labelnames()` computes it, and the
collector builds families with `spec.family(labels=...)`. A label the data
does not have for one sample (hpc_job of an idle GPU next to a busy one) is
written with an empty value, which Prometheus treats as absent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from nodeagent.catalogue.spec import MetricSpec, counter, gauge

COLLECTOR = "gpu"
STATUS_COLLECTOR = "gpu_status"

# gpu, UUID, pci_bus_id, device, modelName -- then MIG labels, then Hostname.
IDENTITY_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName")
MIG_LABELS = ("GPU_I_PROFILE", "GPU_I_ID")
HOSTNAME_LABEL = "Hostname"
DEFAULT_LABEL_FIELDS = ("DCGM_FI_DRIVER_VERSION",)
# Per-GPU labels of nodeagent's own per-GPU series.
GPU_LABELS = (*IDENTITY_LABELS, HOSTNAME_LABEL)
DCGM_LABELS = (*GPU_LABELS, *DEFAULT_LABEL_FIELDS)

ValueKind = Literal["int", "float"]


def gpu_labelnames(
    *,
    mig: bool = False,
    hostname_label: str = HOSTNAME_LABEL,
    label_fields: Iterable[str] = DEFAULT_LABEL_FIELDS,
    exporter_labels: Iterable[str] = (),
    attributes: Iterable[str] = (),
) -> tuple[str, ...]:
    """The label names of a DCGM_* family, in dcgm-exporter's order.

    dcgm-exporter renders identity labels, then its `Labels` map (label-type
    fields and exporter labels) and then its `Attributes` map (err_code,
    hpc_job); Go templates range over maps in sorted key order."""
    names: list[str] = list(IDENTITY_LABELS)
    if mig:
        names.extend(MIG_LABELS)
    names.append(hostname_label)
    names.extend(sorted({*label_fields, *exporter_labels}))
    names.extend(sorted(set(attributes)))
    return tuple(names)


@dataclass(frozen=True)
class DcgmField:
    """A DCGM field nodeagent can serve: its metric spec and how values are kept."""

    spec: MetricSpec
    kind: ValueKind

    @property
    def name(self) -> str:
        return self.spec.name


# name -> field, in the order of dcgm-exporter's default counters file
DCGM_FIELDS: dict[str, DcgmField] = {}


def _field(
    name: str,
    type_: str,
    help_text: str,
    kind: ValueKind = "int",
    unit: str = "",
    attributes: tuple[str, ...] = (),
) -> MetricSpec:
    make = counter if type_ == "counter" else gauge
    spec = make(
        name,
        help_text,
        collector=COLLECTOR,
        labels=gpu_labelnames(attributes=attributes),
        unit=unit,
        group="gpu",
        value_format="fixed6" if kind == "float" else "int",
    )
    DCGM_FIELDS[name] = DcgmField(spec, kind)
    return spec


# ---- dcgm-exporter default counters (etc/default-counters.csv) --------------
SM_CLOCK = _field("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", unit="MHz")
MEM_CLOCK = _field("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", unit="MHz")
MEMORY_TEMP = _field("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", unit="celsius")
GPU_TEMP = _field("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", unit="celsius")
POWER_USAGE = _field("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "float", unit="watts")
TOTAL_ENERGY = _field(
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "counter",
    "Total energy consumption since boot (in mJ).",
    unit="millijoules",
)
PCIE_REPLAY = _field("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.")
GPU_UTIL = _field("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", unit="percent")
MEM_COPY_UTIL = _field("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", unit="percent")
ENC_UTIL = _field("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", unit="percent")
DEC_UTIL = _field("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", unit="percent")
# err_code and err_msg: the XID and NVIDIA's name for it, as dcgm-exporter
# writes them since 3.3.6-3.4.2 (internal/pkg/collector/gpu_collector.go).
XID_ERRORS = _field(
    "DCGM_FI_DEV_XID_ERRORS",
    "gauge",
    "Value of the last XID error encountered.",
    attributes=("err_code", "err_msg"),
)
FB_FREE = _field("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", unit="MiB")
FB_USED = _field("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", unit="MiB")
FB_RESERVED = _field("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).", unit="MiB")
# DCGM publishes a rate here, whatever the counters file calls it: the change
# of NVML's NVLink data throughput counters (KiB, RX + TX, all links) between
# two samples, per second, divided by 1000 (DCGM's "MB/s"); 0 for the first
# sample (NVIDIA/DCGM dcgmlib/src/DcgmCacheManager.cpp, ReadAndCacheNvLinkBandwidth).
NVLINK_BANDWIDTH_TOTAL = _field(
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    "counter",
    "Total number of NVLink bandwidth counters for all lanes.",
    unit="megabytes_per_second",
)
VGPU_LICENSE_STATUS = _field("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "vGPU License status")
UNCORRECTABLE_REMAPPED_ROWS = _field(
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors"
)
CORRECTABLE_REMAPPED_ROWS = _field(
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors"
)
ROW_REMAP_FAILURE = _field("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed")
PROF_GR_ENGINE_ACTIVE = _field(
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active (in %).", "float"
)
PROF_PIPE_TENSOR_ACTIVE = _field(
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "gauge",
    "Ratio of cycles the tensor (HMMA) pipe is active (in %).",
    "float",
)
PROF_DRAM_ACTIVE = _field(
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "gauge",
    "Ratio of cycles the device memory interface is active sending or receiving data (in %).",
    "float",
)
PROF_PCIE_TX_BYTES = _field(
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "gauge",
    "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads "
    "- in bytes per second.",
    unit="bytes_per_second",
)
PROF_PCIE_RX_BYTES = _field(
    "DCGM_FI_PROF_PCIE_RX_BYTES",
    "gauge",
    "The rate of data received over the PCIe bus - including both protocol headers and data payloads "
    "- in bytes per second.",
    unit="bytes_per_second",
)

# ---- commonly enabled beyond the defaults (aws-parallelcluster-monitoring) ---
FB_TOTAL = _field("DCGM_FI_DEV_FB_TOTAL", "gauge", "Framebuffer memory total (in MiB).", unit="MiB")
POWER_MGMT_LIMIT = _field(
    "DCGM_FI_DEV_POWER_MGMT_LIMIT", "gauge", "Power management limit (in W).", "float", unit="watts"
)
ECC_SBE_VOL_TOTAL = _field(
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "Total number of single-bit volatile ECC errors."
)
ECC_DBE_VOL_TOTAL = _field(
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors."
)
ECC_SBE_AGG_TOTAL = _field(
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "counter", "Total number of single-bit persistent ECC errors."
)
ECC_DBE_AGG_TOTAL = _field(
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "counter", "Total number of double-bit persistent ECC errors."
)
RETIRED_SBE = _field(
    "DCGM_FI_DEV_RETIRED_SBE", "counter", "Total number of retired pages due to single-bit errors."
)
RETIRED_DBE = _field(
    "DCGM_FI_DEV_RETIRED_DBE", "counter", "Total number of retired pages due to double-bit errors."
)
RETIRED_PENDING = _field("DCGM_FI_DEV_RETIRED_PENDING", "counter", "Total number of pages pending retirement.")
POWER_VIOLATION = _field(
    "DCGM_FI_DEV_POWER_VIOLATION", "counter", "Throttling duration due to power constraints (in ns).", unit="ns"
)
THERMAL_VIOLATION = _field(
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "counter",
    "Throttling duration due to thermal constraints (in ns).",
    unit="ns",
)
SYNC_BOOST_VIOLATION = _field(
    "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
    "counter",
    "Throttling duration due to sync-boost constraints (in ns).",
    unit="ns",
)
BOARD_LIMIT_VIOLATION = _field(
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
    "counter",
    "Throttling duration due to board limit constraints (in ns).",
    unit="ns",
)
LOW_UTIL_VIOLATION = _field(
    "DCGM_FI_DEV_LOW_UTIL_VIOLATION", "counter", "Throttling duration due to low utilization (in ns).", unit="ns"
)
RELIABILITY_VIOLATION = _field(
    "DCGM_FI_DEV_RELIABILITY_VIOLATION",
    "counter",
    "Throttling duration due to reliability constraints (in ns).",
    unit="ns",
)
NVLINK_CRC_FLIT_ERRORS = _field(
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink flow-control CRC errors."
)
NVLINK_CRC_DATA_ERRORS = _field(
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink data CRC errors."
)
NVLINK_REPLAY_ERRORS = _field(
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink retries."
)
NVLINK_RECOVERY_ERRORS = _field(
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink recovery errors."
)
GPU_RECOVERY_ACTION = _field(
    "DCGM_FI_DEV_GPU_RECOVERY_ACTION",
    "gauge",
    "Recovery action the driver asks for (0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset).",
)
PROF_SM_ACTIVE = _field(
    "DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned (in %).", "float"
)
PROF_SM_OCCUPANCY = _field(
    "DCGM_FI_PROF_SM_OCCUPANCY", "gauge", "The ratio of number of warps resident on an SM (in %).", "float"
)
PROF_PIPE_FP64_ACTIVE = _field(
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE", "gauge", "Ratio of cycles the fp64 pipes are active (in %).", "float"
)
PROF_PIPE_FP32_ACTIVE = _field(
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE", "gauge", "Ratio of cycles the fp32 pipes are active (in %).", "float"
)
PROF_PIPE_FP16_ACTIVE = _field(
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE", "gauge", "Ratio of cycles the fp16 pipes are active (in %).", "float"
)
PROF_NVLINK_TX_BYTES = _field(
    "DCGM_FI_PROF_NVLINK_TX_BYTES",
    "gauge",
    "The number of bytes of active NvLink tx (transmit) data including both header and payload.",
)
PROF_NVLINK_RX_BYTES = _field(
    "DCGM_FI_PROF_NVLINK_RX_BYTES",
    "gauge",
    "The number of bytes of active NvLink rx (read) data including both header and payload.",
)

# Fields whose values are profiling metrics (DCGM, or NVML GPM on Hopper+).
PROF_FIELDS = tuple(name for name in DCGM_FIELDS if name.startswith("DCGM_FI_PROF_"))

# ---- label-type fields: become labels on every sample, not families ---------
# name -> help, for `nodeagent collectors` and the counters-file check.
LABEL_FIELDS: dict[str, str] = {
    "DCGM_FI_DRIVER_VERSION": "Driver Version",
    "DCGM_FI_NVML_VERSION": "NVML Version",
    "DCGM_FI_DEV_NAME": "Device Name",
    "DCGM_FI_DEV_SERIAL": "Device Serial Number",
    "DCGM_FI_DEV_UUID": "Device UUID",
    "DCGM_FI_DEV_PCI_BUSID": "PCI bus id of the device",
    "DCGM_FI_DEV_VBIOS_VERSION": "VBIOS version of the device",
    "DCGM_FI_DEV_INFOROM_IMAGE_VER": "Inforom image version",
    "DCGM_FI_CUDA_DRIVER_VERSION": "CUDA driver version",
}

# ---- dcgm-exporter's exporter-computed series ---------------------------------
XID_WINDOW_LABELS = ("xid", "window_size_in_ms")
CLOCK_EVENT_LABELS = ("clock_event", "window_size_in_ms")
EXP_XID_ERRORS_COUNT = gauge(
    "DCGM_EXP_XID_ERRORS_COUNT",
    "Count of XID Errors within user-specified time window (see xid-count-window-size param).",
    collector=COLLECTOR,
    labels=gpu_labelnames(exporter_labels=XID_WINDOW_LABELS),
    group="gpu",
    value_format="int",
)
# Counted as dcgm-exporter counts it: samples within the window with the reason
# set, one sample per gpu.interval (dcgm-exporter: one per --collect-interval,
# 30 s by default; set gpu.interval to 30 for equal counts).
EXP_CLOCK_EVENTS_COUNT = gauge(
    "DCGM_EXP_CLOCK_EVENTS_COUNT",
    "Count of clock events within the user-specified time window (see clock-events-count-window-size param).",
    collector=COLLECTOR,
    labels=gpu_labelnames(exporter_labels=CLOCK_EVENT_LABELS),
    group="gpu",
    value_format="int",
)
EXPORTER_FIELDS: dict[str, MetricSpec] = {
    EXP_XID_ERRORS_COUNT.name: EXP_XID_ERRORS_COUNT,
    EXP_CLOCK_EVENTS_COUNT.name: EXP_CLOCK_EVENTS_COUNT,
}

# dcgm-exporter's clock event names, by NVML/DCGM reason bit.
CLOCK_EVENT_NAMES: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "clocks_setting"),
    (0x004, "power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal"),
    (0x040, "hw_thermal"),
    (0x080, "hw_power_brake"),
    (0x100, "display_clocks"),
)

# ---- nodeagent's own per-GPU series (same identity labels, no label fields) --
GPU_UP = gauge(
    "nodeagent_gpu_up",
    "1 when the GPU answered NVML in the last sampling cycle; 0 when it is lost (fallen off the bus), "
    "failing or its NVML calls hang.",
    collector=COLLECTOR,
    labels=GPU_LABELS,
    group="gpu",
)
XID_ERRORS_TOTAL = counter(
    "nodeagent_gpu_xid_errors_total",
    "XID errors seen on the GPU since the agent started, by XID code; action is node (drain and reset or "
    "reboot), app (the application must restart) or unknown.",
    collector=COLLECTOR,
    labels=(*GPU_LABELS, "action", "xid"),
    group="gpu",
)
GPU_HEALTHY = gauge(
    "nodeagent_gpu_healthy",
    "0 when the GPU is lost, an XID that needs node action in NVIDIA's XID catalogue (48, 79, 95, 119, "
    "120, ...) was seen, or the driver's recovery action asks for a reset or reboot; else 1.",
    collector=COLLECTOR,
    labels=GPU_LABELS,
    group="gpu",
)
NODE_ACTION_XID = gauge(
    "nodeagent_gpu_node_action_xid",
    "The last XID seen on the GPU that needs node action (0 when none).",
    collector=COLLECTOR,
    labels=GPU_LABELS,
    group="gpu",
)
ALLOCATED_IDLE = gauge(
    "nodeagent_gpu_allocated_idle",
    "1 when the GPU belongs to a job but its utilisation stayed below gpu.idle_threshold for at least "
    "gpu.idle_after seconds.",
    collector=COLLECTOR,
    labels=(*GPU_LABELS, "hpc_job"),
    group="gpu",
)
ALLOCATED_IDLE_SECONDS = gauge(
    "nodeagent_gpu_allocated_idle_seconds",
    "Seconds the GPU has been allocated to a job with utilisation below gpu.idle_threshold (0 when busy).",
    collector=COLLECTOR,
    labels=(*GPU_LABELS, "hpc_job"),
    unit="seconds",
    group="gpu",
)
GPU_PROCESSES = gauge(
    "nodeagent_gpu_processes",
    "Compute processes running on the GPU (gpu.process_metrics).",
    collector=COLLECTOR,
    labels=GPU_LABELS,
    group="gpu",
)
GPU_PROCESS_MEMORY = gauge(
    "nodeagent_gpu_process_memory_used_bytes",
    "GPU memory used by the compute processes of each job on the GPU (gpu.process_metrics); jobs beyond "
    "gpu.max_jobs_per_gpu, and processes of no job, are summed under hpc_job=\"\".",
    collector=COLLECTOR,
    labels=(*GPU_LABELS, "hpc_job"),
    unit="bytes",
    group="gpu",
)

# ---- the sampler and the inventory (collector gpu_status, never stale) -------
GPUS = gauge(
    "nodeagent_gpus",
    "GPUs by state: expected (gpu.expected_gpus or the instance type), present (seen by the driver), up "
    "(sampled in the last fresh snapshot).",
    collector=STATUS_COLLECTOR,
    labels=("state",),
    group="gpu",
)
BACKEND_INFO = gauge(
    "nodeagent_gpu_backend_info",
    "The GPU backend in use: configured (gpu.backend), backend (source of device fields: nvml, fake or "
    "none) and profiling (source of DCGM_FI_PROF_*: dcgm, gpm, fake or none).",
    collector=STATUS_COLLECTOR,
    labels=("backend", "configured", "profiling"),
    group="gpu",
)
SNAPSHOT_AGE = gauge(
    "nodeagent_gpu_snapshot_age_seconds",
    "Age of the last complete GPU sampling cycle served on :9400.",
    collector=STATUS_COLLECTOR,
    unit="seconds",
    group="gpu",
)
SNAPSHOT_STALE = gauge(
    "nodeagent_gpu_snapshot_stale",
    "1 when the GPU snapshot is older than gpu.stale_after or an NVML call is hung; GPU series are then "
    "withheld and nodeagent_collector_success{collector=\"gpu\"} is 0.",
    collector=STATUS_COLLECTOR,
    group="gpu",
)
SAMPLE_DURATION = gauge(
    "nodeagent_gpu_sample_duration_seconds",
    "Wall time of the last complete GPU sampling cycle.",
    collector=STATUS_COLLECTOR,
    unit="seconds",
    group="gpu",
)
NVML_SECONDS = gauge(
    "nodeagent_gpu_nvml_seconds",
    "Time spent inside NVML calls during the last complete sampling cycle.",
    collector=STATUS_COLLECTOR,
    unit="seconds",
    group="gpu",
)
NVML_CALLS = counter(
    "nodeagent_gpu_nvml_calls_total",
    "NVML calls made by the GPU sampler.",
    collector=STATUS_COLLECTOR,
    group="gpu",
)
HUNG_CALLS = gauge(
    "nodeagent_gpu_nvml_hung_calls",
    "NVML calls that have not returned within gpu.call_timeout and are still blocked.",
    collector=STATUS_COLLECTOR,
    group="gpu",
)
SAMPLER_CYCLES = counter(
    "nodeagent_gpu_sampler_cycles_total",
    "Complete GPU sampling cycles since the agent started.",
    collector=STATUS_COLLECTOR,
    group="gpu",
)
