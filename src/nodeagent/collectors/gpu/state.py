"""What one sampling cycle knows about the GPUs (plain data, no NVML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.collectors.gpu.xid import XidView
from nodeagent.model import MetricFamily

Value = float | int


@dataclass
class MigState:
    gi_id: int
    profile: str
    values: dict[str, Value] = field(default_factory=dict)
    jobs: tuple[str, ...] = ()
    xid: XidView = field(default_factory=XidView)  # this instance's XIDs and the GPU-wide ones


@dataclass
class GpuState:
    index: int
    uuid: str
    pci_bus_id: str
    model: str
    up: bool = True
    reason: str = ""  # why the GPU is down: lost, hung, error text
    values: dict[str, Value] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # label-type fields
    mig: list[MigState] = field(default_factory=list)
    jobs: tuple[str, ...] = ()
    processes: int | None = None  # None: not read
    # job ("" = none, or beyond gpu.max_jobs_per_gpu) -> bytes
    process_memory: dict[str, int] = field(default_factory=dict)
    xid: XidView = field(default_factory=XidView)
    clock_events: dict[str, int] = field(default_factory=dict)  # clock event name -> samples in window
    idle_seconds: float | None = None  # allocated and idle this long; None: not allocated or unknown

    @property
    def known(self) -> bool:
        """Whether NVML ever told us who this GPU is."""
        return bool(self.uuid)


@dataclass
class Snapshot:
    cycle: int
    monotonic: float  # when the cycle completed (sampler clock)
    wall: float
    duration: float
    nvml_seconds: float
    nvml_calls: int
    present: int
    backend: str
    profiling: str
    gpus: list[GpuState]
    families: list[MetricFamily]
    error: str = ""  # why there are no GPUs (NVML init failure)
