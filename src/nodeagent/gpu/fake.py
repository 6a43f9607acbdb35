"""A fake NVML: GPUs described by a YAML file, for demos, dashboard work and tests.

`FakeNvml` implements the pynvml functions nodeagent uses (backend.NvmlApi)
with pynvml's names, signatures and return types. Device handles are real
`pynvml.c_nvmlDevice_t` pointers, errors are pynvml's real exception classes
with NVML's error codes (NVMLError_NotSupported, NVMLError_GpuIsLost,
NVMLError_Timeout, ...), so the sampler cannot tell it from the driver.
Where the fake decides what a real driver does, the module that does it
cites the source it followed.

A description names GPU models, the GPUs of the node, their processes and
MIG instances, and scripted events on a timeline measured from the moment
the fake is created (the shipped ones are in nodeagent/data/gpu/).

Values are keyed by DCGM field name, in the unit the driver reports and
DCGM serves: a number, a range `{min, max, period}` (a smooth wave,
deterministic per GPU and field) or a counter `{start, rate}` (per second).
The violation counters (DCGM_FI_DEV_*_VIOLATION) are cumulative
nanoseconds, as NVML_FI_DEV_PERF_POLICY_* and nvmlDeviceGetViolationStatus
report them. NVLink traffic is described by the driver's own counters,
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX and _RX: cumulative KiB summed over
all links, `{start, rate}` with the rate in KiB/s; DCGM's
DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL is a rate computed from two readings of
them, so a description cannot give it. DCGM_FI_DEV_GPU_RECOVERY_ACTION is
an NVML_GPU_RECOVERY_ACTION_* value (0: none), reported by drivers >= R565.

Model keys: name, memory_mib, reserved_mib, gpm (Hopper and newer),
mig_capable, nvlinks (0: no NVLink, every NVLink field NOT_SUPPORTED),
vbios, inforom, fields, unsupported (DCGM fields or nvml function names that
answer NOT_SUPPORTED), field_errors ({field: NVML error name}: that entry of
nvmlDeviceGetFieldValues answers the error inside a successful call). A GPU
may override fields, unsupported and field_errors, and has processes and
MIG instances (mig_enabled: false describes instances with MIG off).

Driver-wide keys: driver_version (R510+ has nvmlDeviceGetMemoryInfo_v2
unless memory_info_v2: false), init_seconds (persistence mode off: the first
nvmlInit takes that long), process_query_seconds (each process query takes
that long), process_query_error: library_mismatch (process queries raise
pynvml's NVMLLibraryMismatchError, not an NVMLError), init_error.

    events:
      - {at: 30, gpu: 2, xid: 94}                      # an XID event
      - {at: 30, gpu: 0, gi: 1, xid: 94}               # ... in GPU instance 1
      - {at: 35, gpu: 2, xid: 119, kmsg_only: true}    # only in the kernel log
      - {at: 60, gpu: 5, fall_off_bus: true, seconds: 10}  # XID 79, UNKNOWN for 10 s, then GPU_IS_LOST
      - {at: 60, gpu: 5, lost: true}                   # GPU_IS_LOST from now on
      - {at: 65, gpu: 5, recovered: true}
      - {at: 70, gpu: 1, recovery_action: 1}           # GPU_RESET; the driver reports XID 154
      - {at: 80, gpu: 0, mig: false}                   # MIG mode off (true: on)
      - {at: 85, gpu: 3, field_error: DCGM_FI_DEV_POWER_VIOLATION, error: unknown, seconds: 30}
      - {at: 90, gpu: 6, hang: nvmlDeviceGetPowerUsage, seconds: 15}   # one call blocks
      - {at: 95, gpu: 3, clock_events: 4}
      - {at: 99, gpu: 1, processes: [{pid: 7, used_mib: 100}]}

Time is injectable (`clock=`), so tests step a `FakeClock` instead of
sleeping; `fake.calls[(function, gpu)]` counts every call. Tests drive the
same behaviour directly: inject_xid, set_lost, fall_off_bus, set_mig_mode,
set_recovery_action, fail_field, fail_next, hang_next, release_hangs (also
ends a slow nvmlInit or process query), set_processes, kernel_log.
`fake.dcgm` is the DCGM host engine a `profiling: dcgm` description's
source connects to (fake_dcgm.py: its bindings, MIG hierarchy and blanks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nodeagent.gpu.backend import GpuRef, NvmlApi, ProfilingSource
from nodeagent.gpu.fake_core import FakeClock
from nodeagent.gpu.fake_dcgm import FakeDcgm, FakeDcgmReader
from nodeagent.gpu.fake_description import (
    Description,
    FakeEvent,
    FakeGpu,
    FakeMig,
    FakeModel,
    FakeProcess,
    ValueSpec,
    load_description,
    parse_description,
    value_at,
)
from nodeagent.gpu.fake_device import DeviceCalls
from nodeagent.gpu.fake_events import EventCalls
from nodeagent.gpu.fake_fields import CLOCK_REASONS as CLOCK_REASONS_FIELD
from nodeagent.gpu.fake_values import FieldValueCalls

__all__ = [
    "CLOCK_REASONS_FIELD",
    "Description",
    "FakeClock",
    "FakeDcgm",
    "FakeDcgmReader",
    "FakeEvent",
    "FakeGpu",
    "FakeMig",
    "FakeModel",
    "FakeNvml",
    "FakeProcess",
    "ValueSpec",
    "is_faked_call",
    "load_description",
    "parse_description",
    "value_at",
]


class FakeNvml(DeviceCalls, FieldValueCalls, EventCalls):
    """pynvml's module interface over described GPUs (see the module docstring)."""

    def __init__(self, description: Description, clock: Callable[[], float] | None = None,
                 events: bool = True) -> None:  # fmt: skip
        super().__init__(description, clock=clock, events=events)
        # the host engine a `profiling: dcgm` description's source connects to
        self.dcgm = FakeDcgm(self)

    @classmethod
    def from_name(cls, name_or_path: str, clock: Callable[[], float] | None = None, events: bool = True) -> FakeNvml:
        return cls(load_description(name_or_path), clock=clock, events=events)

    def profiling_source(self, api: NvmlApi, gpus: Sequence[GpuRef]) -> ProfilingSource | None:
        """The profiling the description declares: GPM through `api`, or a fake DCGM."""
        if self.description.profiling == "gpm":
            from nodeagent.gpu.nvml import gpm_source

            return gpm_source(api, gpus)
        if self.description.profiling == "dcgm":
            from nodeagent.gpu.dcgm import connect_dcgm

            return connect_dcgm(self.dcgm.bindings(), None, 1_000_000, gpus, clock=self.clock)
        return None


def is_faked_call(name: str) -> bool:
    """Whether `name` is a pynvml function the fake implements."""
    return name.startswith("nvml") and callable(getattr(FakeNvml, name, None))
