"""Settings of the GPU group (`gpu:` in the config file).

Every field has a default and a comment: the comments are the documentation
of the example config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from nodeagent.settings import MAX_INTERVAL, check_interval, check_range, check_timeout, shown

SHIPPED_DESCRIPTIONS = ("p5-8xh100", "p4d-8xa100-40gb", "g5-1xa10g", "h100-mig")


def _check_description(value: Any) -> str | None:
    """A shipped name, or a description file that loads: read and checked with
    the config, so that its mistakes are reported under this key."""
    if not isinstance(value, str) or not value:
        return "must name a shipped description or a YAML file"
    if value in SHIPPED_DESCRIPTIONS:
        return None
    if not os.path.exists(value):
        return (
            f"{shown(value)} is neither a shipped fake description ({', '.join(SHIPPED_DESCRIPTIONS)}) "
            "nor an existing file"
        )
    from nodeagent.gpu.fake import load_description
    from nodeagent.settings import ConfigError

    try:
        load_description(value)
    except ConfigError as e:
        return str(e)
    return None


def _check_counters_file(value: Any) -> str | None:
    if value is None:
        return None
    from nodeagent.gpu.counters import CountersFileError, load_counters_file

    try:
        load_counters_file(value)
    except CountersFileError as e:
        return str(e)
    return None


_MAX_WINDOW_MS = 7 * 86_400_000  # a week


def _check_window(value: Any) -> str | None:
    if isinstance(value, int) and 1000 <= value <= _MAX_WINDOW_MS:
        return None
    return f"must be from 1000 to {_MAX_WINDOW_MS} (milliseconds), got {shown(value)}"


@dataclass(frozen=True)
class GpuSettings:
    # Where GPU data comes from. auto: NVML, with DCGM_FI_PROF_* from DCGM when its
    # Python bindings are installed (else NVML GPM on Hopper and newer); nvml: NVML
    # only (profiling from GPM); dcgm: NVML plus DCGM profiling; fake: GPUs described
    # by fake_description (demos, dashboard work, tests).
    backend: Literal["auto", "nvml", "dcgm", "fake"] = "auto"
    # Seconds between sampling cycles. Scrapes of :9400 serve the last complete
    # cycle and never call NVML.
    interval: float = field(default=5.0, metadata={"check": check_range(0.1, 3600, unit="seconds")})
    # Seconds one NVML call may block (a wedged driver blocks in the kernel) before
    # the watchdog declares it hung, parks its thread and samples the other GPUs.
    call_timeout: float = field(default=5.0, metadata={"check": check_timeout})
    # Seconds start-up may take: nvmlInit and discovery (slow without persistence
    # mode: the driver initialises every GPU) and starting the profiling source
    # (DCGM's embedded host engine). call_timeout applies once sampling runs.
    start_timeout: float = field(default=120.0, metadata={"check": check_timeout})
    # Seconds after which fields a GPU answered NOT_SUPPORTED for are asked again
    # (they are asked again at once when the GPU's MIG mode changes).
    reprobe_interval: float = field(default=600.0, metadata={"check": check_interval})
    # Read XIDs from the kernel log (/dev/kmsg) too, as DCGM does since 3.3.7: the
    # NVML event path is missing in some sandboxes and misses XIDs on some drivers.
    # Each XID is counted once whichever source reports it.
    kernel_log: bool = True
    # The snapshot is stale (GPU series withheld, collector success 0) when its last
    # complete cycle is older than this many seconds; null = 3 x interval + call_timeout.
    stale_after: float | None = field(default=None, metadata={"check": check_interval})
    # Hung NVML calls tolerated (each parks one thread) before the sampler stops
    # starting replacement threads and reports the snapshot stale until one returns.
    max_hung_calls: int = field(default=2, metadata={"check": check_range(0, 64)})
    # dcgm-exporter counters file (CSV: NAME, type, help; `#` comments; type gauge,
    # counter or label). null = nodeagent's default set (dcgm-exporter's defaults plus
    # ECC, retired pages, violations, NVLink errors, profiling and DCGM_EXP_* series).
    counters_file: str | None = field(default=None, metadata={"check": _check_counters_file})
    # Label carrying the node name: "Hostname" (every tagged dcgm-exporter release up
    # to 4.5.3-4.8.2, and what NVIDIA's dashboard 12239 queries) or "hostname"
    # (dcgm-exporter's main branch since commit d5e5f51, "Rename Hostname label to
    # hostname (#655)", 2026-05-12, in no tagged release yet).
    hostname_label: Literal["Hostname", "hostname"] = "Hostname"
    # GPUs this node should have, for nodeagent_gpus{state="expected"}; null = from
    # the EC2 instance type (DMI product name) when it is a known GPU type, else 0.
    expected_gpus: int | None = field(default=None, metadata={"check": check_range(0, 1024)})
    # dcgm-exporter's --hpc-job-mapping-dir: files named after the gpu label (`0`,
    # or `0.<GPU_I_ID>` for MIG), one job id per line. null = not used.
    hpc_job_mapping_dir: str | None = None
    # Find the Slurm job of each GPU from its compute processes: the job id in
    # /proc/<pid>/cgroup (cgroup v1 and v2), else SLURM_JOB_ID in /proc/<pid>/environ.
    job_attribution: bool = True
    # Most hpc_job values on one GPU; further jobs are dropped with a warning.
    max_jobs_per_gpu: int = field(default=8, metadata={"check": check_range(1, 1000)})
    # Seconds between reads of each GPU's compute processes (job attribution and the
    # process series): the query walks every context on the GPU and is slow on a
    # loaded one. A job's hpc_job appears and goes within this long. 0 = every cycle.
    process_interval: float = field(default=15.0, metadata={"check": check_range(0, 3600, unit="seconds")})
    # Serve nodeagent_gpu_processes and nodeagent_gpu_process_memory_used_bytes.
    process_metrics: bool = False
    # Utilisation in percent below which a GPU that belongs to a job counts as idle.
    idle_threshold: float = field(default=5.0, metadata={"check": check_range(0, 100, unit="percent")})
    # Seconds a job's GPU must stay idle before nodeagent_gpu_allocated_idle is 1.
    idle_after: float = field(default=900.0, metadata={"check": check_range(0, 30 * MAX_INTERVAL, unit="seconds")})
    # Window of DCGM_EXP_XID_ERRORS_COUNT in milliseconds (dcgm-exporter's default).
    xid_count_window_ms: int = field(default=300000, metadata={"check": _check_window})
    # Window of DCGM_EXP_CLOCK_EVENTS_COUNT in milliseconds (dcgm-exporter's default).
    clock_events_count_window_ms: int = field(default=300000, metadata={"check": _check_window})
    # Fake backend: a shipped description (p5-8xh100, p4d-8xa100-40gb, g5-1xa10g,
    # h100-mig) or the path of a YAML description.
    fake_description: str = field(default="p5-8xh100", metadata={"check": _check_description})
    # Fake backend: play the description's scripted events (XIDs, a lost GPU, a hung
    # call); false = steady state, for dashboard work.
    fake_events: bool = True
    # DCGM backend: address of nv-hostengine. When it does not answer, an embedded
    # host engine is started on Hopper and newer only: on Ampere and older it would
    # hold the profiling counters and block users' Nsight/CUPTI profiling (a running
    # nv-hostengine can be paused with `dcgmi profile --pause`). null = no
    # nv-hostengine, embedded engine (Hopper and newer).
    dcgm_host: str | None = "localhost"
    # DCGM backend: directories holding DCGM's Python bindings (pydcgm, DcgmReader),
    # added to the import path in this order when they are not importable already.
    dcgm_bindings_paths: tuple[str, ...] = (
        "/usr/share/datacenter-gpu-manager-4/bindings/python3",
        "/usr/local/dcgm/bindings/python3",
    )
    # Seconds between attempts to initialise NVML while the driver is missing.
    init_retry: float = field(default=60.0, metadata={"check": check_interval})

    def stale_limit(self) -> float:
        """Seconds after which the last complete snapshot counts as stale."""
        if self.stale_after is not None:
            return self.stale_after
        return 3 * self.interval + self.call_timeout
