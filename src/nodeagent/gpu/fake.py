"""A fake NVML: GPUs described by a YAML file, for demos, dashboard work and tests.

`FakeNvml` implements the pynvml functions nodeagent uses (backend.NvmlApi)
with pynvml's names, signatures and return types. Device handles are real
`pynvml.c_nvmlDevice_t` pointers, errors are pynvml's real exception classes
with NVML's error codes (NVMLError_NotSupported, NVMLError_GpuIsLost,
NVMLError_Timeout, ...), so the sampler cannot tell it from the driver.

A description names GPU models (static values, value ranges, unsupported
fields), the GPUs of the node, their processes and MIG instances, and
scripted events on a timeline measured from the moment the fake is created:

    events:
      - {at: 30, gpu: 2, xid: 94}                             # an XID event
      - {at: 60, gpu: 5, lost: true}                          # GPU_IS_LOST from now on
      - {at: 90, gpu: 6, hang: nvmlDeviceGetPowerUsage, seconds: 15}   # one call blocks

Values are keyed by DCGM field name: a number, a range `{min, max, period}`
(a smooth wave; deterministic per GPU and field) or a counter
`{start, rate}` (per second). Time is injectable (`clock=`), so tests step a
`FakeClock` instead of sleeping.
"""

from __future__ import annotations

import ctypes
import math
import threading
import uuid as uuidlib
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pynvml
import yaml

from nodeagent.catalogue.gpu import DCGM_FIELDS, PROF_FIELDS
from nodeagent.gpu.backend import GpuRef, NvmlApi, ProfilingSource
from nodeagent.gpu.dcgm import PROF_FIELD_IDS
from nodeagent.gpu.settings import SHIPPED_DESCRIPTIONS
from nodeagent.settings import ConfigError

CLOCK_REASONS_FIELD = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"
_VALUE_FIELDS = frozenset(DCGM_FIELDS) | {CLOCK_REASONS_FIELD}
_MIB = 1024 * 1024
_UUID_NS = uuidlib.UUID("6f1c8e1a-3a4b-4d2f-9c55-2b7e0d9a4c11")

# NVML field-value ids the fake answers, and the DCGM field behind each
_FIELD_VALUE_IDS: dict[int, str] = {
    pynvml.NVML_FI_DEV_MEMORY_TEMP: "DCGM_FI_DEV_MEMORY_TEMP",
    pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL: "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL: "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL: "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL: "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    pynvml.NVML_FI_DEV_NVLINK_BANDWIDTH_C0_TOTAL: "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
}
_VIOLATIONS = {
    pynvml.NVML_PERF_POLICY_POWER: "DCGM_FI_DEV_POWER_VIOLATION",
    pynvml.NVML_PERF_POLICY_THERMAL: "DCGM_FI_DEV_THERMAL_VIOLATION",
    pynvml.NVML_PERF_POLICY_SYNC_BOOST: "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
    pynvml.NVML_PERF_POLICY_BOARD_LIMIT: "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
    pynvml.NVML_PERF_POLICY_LOW_UTILIZATION: "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
    pynvml.NVML_PERF_POLICY_RELIABILITY: "DCGM_FI_DEV_RELIABILITY_VIOLATION",
}
_ECC = {
    (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC): "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC): "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_AGGREGATE_ECC): "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC): "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
}
_RETIRED = {
    pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS: "DCGM_FI_DEV_RETIRED_SBE",
    pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR: "DCGM_FI_DEV_RETIRED_DBE",
}
# GPM metric id -> (DCGM field, factor from DCGM's unit to GPM's)
_GPM = {
    pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_SM_UTIL: ("DCGM_FI_PROF_SM_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: ("DCGM_FI_PROF_SM_OCCUPANCY", 100.0),
    pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: ("DCGM_FI_PROF_DRAM_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_FP64_UTIL: ("DCGM_FI_PROF_PIPE_FP64_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_FP32_UTIL: ("DCGM_FI_PROF_PIPE_FP32_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_FP16_UTIL: ("DCGM_FI_PROF_PIPE_FP16_ACTIVE", 100.0),
    pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC: ("DCGM_FI_PROF_PCIE_TX_BYTES", 1.0 / _MIB),
    pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC: ("DCGM_FI_PROF_PCIE_RX_BYTES", 1.0 / _MIB),
    pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC: ("DCGM_FI_PROF_NVLINK_TX_BYTES", 1.0 / _MIB),
    pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC: ("DCGM_FI_PROF_NVLINK_RX_BYTES", 1.0 / _MIB),
}


class FakeClock:
    """A clock tests step by hand: `clock.advance(60)` instead of sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---- the description ----------------------------------------------------------
ValueSpec = float | Mapping[str, float]


@dataclass
class FakeModel:
    key: str
    name: str
    memory_mib: int
    reserved_mib: int = 0
    gpm: bool = False
    mig_capable: bool = False
    vbios: str = "96.00.00.00.01"
    inforom: str = "G520.0200.00.05"
    fields: dict[str, ValueSpec] = field(default_factory=dict)
    unsupported: frozenset[str] = frozenset()


@dataclass
class FakeProcess:
    pid: int
    used_mib: int
    gi_id: int | None = None


@dataclass
class FakeMig:
    gi_id: int
    profile: str
    memory_mib: int
    fields: dict[str, ValueSpec] = field(default_factory=dict)


@dataclass
class FakeGpu:
    index: int
    model: FakeModel
    uuid: str
    pci_bus_id: str
    serial: str
    fields: dict[str, ValueSpec]
    unsupported: frozenset[str]
    processes: list[FakeProcess]
    mig: list[FakeMig]


@dataclass(frozen=True)
class FakeEvent:
    at: float
    gpu: int
    kind: str  # xid | lost | recovered | hang | processes | clock_events
    value: Any = None
    seconds: float | None = None
    count: int = 1


@dataclass
class Description:
    name: str
    source: str
    instance_type: str | None
    driver_version: str
    nvml_version: str
    cuda_driver_version: int
    profiling: str  # gpm | dcgm | none
    gpus: list[FakeGpu]
    events: list[FakeEvent]
    init_error: str | None = None


def _err(source: str, key: str, message: str) -> ConfigError:
    return ConfigError(source, key, message)


def _value_spec(raw: Any, source: str, key: str) -> ValueSpec:
    if isinstance(raw, bool):
        raise _err(source, key, "expected a number or a mapping")
    if isinstance(raw, (int, float)):
        return raw
    if isinstance(raw, Mapping):
        keys = set(raw)
        if keys <= {"min", "max", "period"} and {"min", "max"} <= keys:
            return {k: float(v) for k, v in raw.items()}
        if keys <= {"start", "rate"} and "rate" in keys:
            return {k: float(v) for k, v in raw.items()}
        raise _err(source, key, "a value is a number, {min, max[, period]} or {start, rate}")
    raise _err(source, key, f"expected a number or a mapping, got {raw!r}")


def _fields(raw: Any, source: str, key: str) -> dict[str, ValueSpec]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _err(source, key, "expected a mapping of DCGM field names to values")
    out: dict[str, ValueSpec] = {}
    for name, spec in raw.items():
        if name not in _VALUE_FIELDS:
            raise _err(source, f"{key}.{name}", "unknown DCGM field")
        out[name] = _value_spec(spec, source, f"{key}.{name}")
    return out


def _unsupported(raw: Any, source: str, key: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise _err(source, key, "expected a list of DCGM field names or nvml function names")
    for i, name in enumerate(raw):
        if not isinstance(name, str) or not (
            name in _VALUE_FIELDS or (name.startswith("nvml") and hasattr(FakeNvml, name))
        ):
            raise _err(source, f"{key}[{i}]", f"{name!r} is neither a DCGM field nor a faked nvml function")
    return frozenset(raw)


def _processes(raw: Any, source: str, key: str) -> list[FakeProcess]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _err(source, key, "expected a list of {pid, used_mib[, gi_id]}")
    out = []
    for i, p in enumerate(raw):
        if not isinstance(p, Mapping) or not isinstance(p.get("pid"), int):
            raise _err(source, f"{key}[{i}]", "a process is {pid, used_mib[, gi_id]}")
        out.append(FakeProcess(int(p["pid"]), int(p.get("used_mib", 0)), p.get("gi_id")))
    return out


def parse_description(text: str, source: str) -> Description:
    """A description from YAML text; mistakes raise ConfigError naming source and key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _err(source, "", f"not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise _err(source, "", "a description is a mapping")
    models: dict[str, FakeModel] = {}
    for key, m in (data.get("models") or {}).items():
        where = f"models.{key}"
        if not isinstance(m, Mapping) or "name" not in m or "memory_mib" not in m:
            raise _err(source, where, "a model needs at least name and memory_mib")
        models[key] = FakeModel(
            key=key,
            name=str(m["name"]),
            memory_mib=int(m["memory_mib"]),
            reserved_mib=int(m.get("reserved_mib", 0)),
            gpm=bool(m.get("gpm", False)),
            mig_capable=bool(m.get("mig_capable", False)),
            vbios=str(m.get("vbios", "96.00.00.00.01")),
            inforom=str(m.get("inforom", "G520.0200.00.05")),
            fields=_fields(m.get("fields"), source, f"{where}.fields"),
            unsupported=_unsupported(m.get("unsupported"), source, f"{where}.unsupported"),
        )
    raw_gpus = data.get("gpus")
    if not isinstance(raw_gpus, list) or not raw_gpus:
        raise _err(source, "gpus", "expected a non-empty list of GPUs")
    name = str(data.get("name", Path(source).stem))
    gpus: list[FakeGpu] = []
    for i, g in enumerate(raw_gpus):
        where = f"gpus[{i}]"
        if not isinstance(g, Mapping) or g.get("model") not in models:
            raise _err(source, f"{where}.model", f"must name one of the models ({', '.join(models)})")
        model = models[g["model"]]
        uuid = str(g.get("uuid") or f"GPU-{uuidlib.uuid5(_UUID_NS, f'{name}:{i}')}")
        mig = []
        for j, inst in enumerate(g.get("mig") or []):
            mwhere = f"{where}.mig[{j}]"
            if not isinstance(inst, Mapping) or not {"gi_id", "profile", "memory_mib"} <= set(inst):
                raise _err(source, mwhere, "a MIG instance is {gi_id, profile, memory_mib[, fields]}")
            mig.append(
                FakeMig(
                    int(inst["gi_id"]),
                    str(inst["profile"]),
                    int(inst["memory_mib"]),
                    _fields(inst.get("fields"), source, f"{mwhere}.fields"),
                )
            )
        if mig and not model.mig_capable:
            raise _err(source, f"{where}.mig", f"model {model.key} is not MIG capable")
        gpus.append(
            FakeGpu(
                index=i,
                model=model,
                uuid=uuid,
                pci_bus_id=str(g.get("pci_bus_id") or f"00000000:{0x10 + i:02X}:00.0"),
                serial=str(g.get("serial") or f"{1650000000000 + zlib.crc32(uuid.encode()) % 10**9:013d}"),
                fields=_fields(g.get("fields"), source, f"{where}.fields"),
                unsupported=_unsupported(g.get("unsupported"), source, f"{where}.unsupported"),
                processes=_processes(g.get("processes"), source, f"{where}.processes"),
                mig=mig,
            )
        )
    events = []
    for i, ev in enumerate(data.get("events") or []):
        where = f"events[{i}]"
        if not isinstance(ev, Mapping) or "at" not in ev or not isinstance(ev.get("gpu"), int):
            raise _err(source, where, "an event needs at (seconds) and gpu (index)")
        if not 0 <= ev["gpu"] < len(gpus):
            raise _err(source, f"{where}.gpu", f"no GPU {ev['gpu']} in this description")
        kinds = [k for k in ("xid", "lost", "recovered", "hang", "processes", "clock_events") if k in ev]
        if len(kinds) != 1:
            raise _err(source, where, "an event has exactly one of xid, lost, recovered, hang, processes, clock_events")
        kind = kinds[0]
        value = ev[kind]
        if kind == "hang" and not (isinstance(value, str) and hasattr(FakeNvml, value)):
            raise _err(source, f"{where}.hang", f"{value!r} is not a faked nvml function")
        if kind == "processes":
            value = _processes(value, source, f"{where}.processes")
        seconds = ev.get("seconds")
        events.append(
            FakeEvent(
                float(ev["at"]),
                int(ev["gpu"]),
                kind,
                value,
                float(seconds) if seconds is not None else None,
                int(ev.get("count", 1)),
            )
        )
    profiling = str(data.get("profiling", "none"))
    if profiling not in ("gpm", "dcgm", "none"):
        raise _err(source, "profiling", "must be gpm, dcgm or none")
    return Description(
        name=name,
        source=source,
        instance_type=data.get("instance_type"),
        driver_version=str(data.get("driver_version", "550.144.03")),
        nvml_version=str(data.get("nvml_version", "12.550.144.03")),
        cuda_driver_version=int(data.get("cuda_driver_version", 12040)),
        profiling=profiling,
        gpus=gpus,
        events=sorted(events, key=lambda ev: ev.at),
        init_error=data.get("init_error"),
    )


def load_description(name_or_path: str) -> Description:
    """A shipped description by name, or a YAML file by path."""
    if name_or_path in SHIPPED_DESCRIPTIONS:
        ref = resources.files("nodeagent").joinpath("data").joinpath("gpu").joinpath(f"{name_or_path}.yaml")
        return parse_description(ref.read_text(encoding="utf-8"), f"{name_or_path}.yaml")
    try:
        text = Path(name_or_path).read_text(encoding="utf-8")
    except OSError as e:
        raise _err(name_or_path, "", f"cannot read fake description: {e.strerror or e}") from None
    return parse_description(text, name_or_path)


def _phase(*parts: object) -> float:
    return zlib.crc32(":".join(map(str, parts)).encode()) / 2**32 * 2 * math.pi


def value_at(spec: ValueSpec, t: float, *phase_parts: object) -> float:
    """The value of a spec at time t (seconds since the fake started)."""
    if isinstance(spec, (int, float)):
        return float(spec)
    if "rate" in spec:
        return spec.get("start", 0.0) + spec["rate"] * max(t, 0.0)
    lo, hi = spec["min"], spec["max"]
    period = spec.get("period", 600.0) or 600.0
    return lo + (hi - lo) * (0.5 + 0.5 * math.sin(2 * math.pi * t / period + _phase(*phase_parts)))


class _EventSet:
    def __init__(self) -> None:
        self.gpus: set[int] = set()


@dataclass
class _Hang:
    gpu: int
    call: str
    seconds: float | None
    remaining: int


class FakeNvml:
    """pynvml's module interface over described GPUs (see the module docstring)."""

    def __init__(
        self,
        description: Description,
        clock: Callable[[], float] | None = None,
        events: bool = True,
    ) -> None:
        import time

        self.description = description
        self.clock: Callable[[], float] = clock or time.monotonic
        self.t0 = self.clock()
        self.calls: Counter[tuple[str, int | None]] = Counter()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._initialized = 0
        self._lost: set[int] = set()
        self._processes = {g.index: list(g.processes) for g in description.gpus}
        self._clock_reasons: dict[int, int] = {}
        self._xids: list[tuple[float, int, int]] = []  # (due t, gpu, xid), not yet delivered
        self._hangs: list[_Hang] = []
        self._failures: list[list[Any]] = []
        self._release = threading.Event()
        self.hang_entered = threading.Event()
        self._applied = 0
        self._events = list(description.events) if events else []
        # handles: real c_nvmlDevice_t pointers; address -> (gpu index, gi id or None)
        self._structs: list[Any] = []
        self._handles: list[Any] = []
        self._mig_handles: dict[int, list[Any]] = {}
        self._by_addr: dict[int, tuple[int, int | None]] = {}
        for gpu in description.gpus:
            self._handles.append(self._new_handle(gpu.index, None))
            self._mig_handles[gpu.index] = [self._new_handle(gpu.index, m.gi_id) for m in gpu.mig]
        self._gpm_samples: dict[int, tuple[int, int | None, float] | None] = {}
        self._gpm_structs: dict[int, Any] = {}

    @classmethod
    def from_name(cls, name_or_path: str, clock: Callable[[], float] | None = None, events: bool = True) -> FakeNvml:
        return cls(load_description(name_or_path), clock=clock, events=events)

    # ---- test and demo controls ------------------------------------------------
    def t(self) -> float:
        return self.clock() - self.t0

    def inject_xid(self, gpu: int, xid: int) -> None:
        """An XID on gpu, due now."""
        with self._cond:
            self._xids.append((self.t(), gpu, xid))
            self._cond.notify_all()

    def set_lost(self, gpu: int, lost: bool = True) -> None:
        with self._lock:
            (self._lost.add if lost else self._lost.discard)(gpu)

    def set_processes(self, gpu: int, processes: Sequence[FakeProcess]) -> None:
        with self._lock:
            self._processes[gpu] = list(processes)

    def hang_next(self, gpu: int, call: str, seconds: float | None = None, count: int = 1) -> None:
        """The next `count` calls of `call` on `gpu` block for `seconds` (None: until release_hangs())."""
        with self._lock:
            self._hangs.append(_Hang(gpu, call, seconds, count))

    def release_hangs(self) -> None:
        self._release.set()

    def fail_next(self, gpu: int, call: str, error: type[Exception], count: int = 1) -> None:
        """The next `count` calls of `call` on `gpu` raise `error` (a pynvml error class)."""
        with self._lock:
            self._failures.append([gpu, call, error, count])

    def profiling_source(self, api: NvmlApi, gpus: Sequence[GpuRef]) -> ProfilingSource | None:
        """The profiling the description declares: GPM through `api`, or a fake DCGM."""
        if self.description.profiling == "gpm":
            from nodeagent.gpu.nvml import gpm_source

            return gpm_source(api, gpus)
        if self.description.profiling == "dcgm":
            from nodeagent.gpu.dcgm import DcgmProfiling

            return DcgmProfiling(FakeDcgmReader(self))
        return None

    # ---- internals -----------------------------------------------------------
    def _new_handle(self, gpu: int, gi: int | None) -> Any:
        struct = pynvml.struct_c_nvmlDevice_t()
        self._structs.append(struct)
        handle = ctypes.pointer(struct)
        self._by_addr[ctypes.addressof(struct)] = (gpu, gi)
        return ctypes.cast(handle, pynvml.c_nvmlDevice_t)

    def _apply_events(self) -> None:
        """Apply scripted events that are due (called under the lock)."""
        t = self.t()
        while self._applied < len(self._events) and self._events[self._applied].at <= t:
            ev = self._events[self._applied]
            self._applied += 1
            if ev.kind == "xid":
                self._xids.append((ev.at, ev.gpu, int(ev.value)))
                self._cond.notify_all()
            elif ev.kind == "lost" and ev.value:
                self._lost.add(ev.gpu)
            elif ev.kind == "recovered" and ev.value:
                self._lost.discard(ev.gpu)
            elif ev.kind == "hang":
                self._hangs.append(_Hang(ev.gpu, str(ev.value), ev.seconds, ev.count))
            elif ev.kind == "processes":
                self._processes[ev.gpu] = list(ev.value)
            elif ev.kind == "clock_events":
                self._clock_reasons[ev.gpu] = int(ev.value)

    def _check_init(self) -> None:
        if not self._initialized:
            raise pynvml.NVMLError_Uninitialized()

    def _resolve(self, handle: Any) -> tuple[FakeGpu, int | None]:
        addr = ctypes.cast(handle, ctypes.c_void_p).value
        ref = self._by_addr.get(int(addr or 0))
        if ref is None:
            raise pynvml.NVMLError_InvalidArgument()
        return self.description.gpus[ref[0]], ref[1]

    def _enter(self, call: str, handle: Any = None, fields: Sequence[str] = ()) -> tuple[FakeGpu | None, int | None]:
        """Bookkeeping every faked call does: init check, counting, scripted
        events, lost GPUs, hangs and unsupported calls."""
        hang: _Hang | None = None
        with self._lock:
            self._apply_events()
            gpu: FakeGpu | None = None
            gi: int | None = None
            if handle is not None:
                gpu, gi = self._resolve(handle)
            self.calls[(call, gpu.index if gpu else None)] += 1
            self._check_init()
            if gpu is None:
                return None, None
            if gpu.index in self._lost:
                raise pynvml.NVMLError_GpuIsLost()
            for h in self._hangs:
                if h.gpu == gpu.index and h.call == call and h.remaining > 0:
                    h.remaining -= 1
                    hang = h
                    break
            for failure in self._failures:
                if failure[0] == gpu.index and failure[1] == call and failure[3] > 0:
                    failure[3] -= 1
                    raise failure[2]()
        if hang is not None:
            self.hang_entered.set()
            self._release.wait(hang.seconds)
        unsupported = gpu.model.unsupported | gpu.unsupported
        if call in unsupported or (fields and all(f in unsupported for f in fields)):
            raise pynvml.NVMLError_NotSupported()
        return gpu, gi

    def _value(self, gpu: FakeGpu, name: str, gi: int | None = None) -> float:
        spec: ValueSpec | None = None
        if gi is not None:
            for m in gpu.mig:
                if m.gi_id == gi and name in m.fields:
                    spec = m.fields[name]
        if spec is None:
            spec = gpu.fields.get(name, gpu.model.fields.get(name))
        if spec is None:
            return 0.0
        return value_at(spec, self.t(), name, gpu.index, gi)

    def _int(self, gpu: FakeGpu, name: str, gi: int | None = None) -> int:
        return round(self._value(gpu, name, gi))

    def _device_only(self, gi: int | None) -> None:
        # most device queries are not supported on MIG device handles
        if gi is not None:
            raise pynvml.NVMLError_NotSupported()

    def _memory(self, gpu: FakeGpu, gi: int | None) -> tuple[int, int, int]:
        """(total, reserved, used) in MiB."""
        procs = self._processes.get(gpu.index, [])
        if gi is not None:
            inst = next(m for m in gpu.mig if m.gi_id == gi)
            total, reserved = inst.memory_mib, 0
            used_spec = inst.fields.get("DCGM_FI_DEV_FB_USED")
            used = (
                int(value_at(used_spec, self.t(), "fb", gpu.index, gi))
                if used_spec is not None
                else sum(p.used_mib for p in procs if p.gi_id == gi)
            )
        else:
            total, reserved = gpu.model.memory_mib, gpu.model.reserved_mib
            spec = gpu.fields.get("DCGM_FI_DEV_FB_USED", gpu.model.fields.get("DCGM_FI_DEV_FB_USED"))
            used = (
                int(value_at(spec, self.t(), "fb", gpu.index))
                if spec is not None
                else sum(p.used_mib for p in procs)
            )
        used = max(0, min(used, total - reserved))
        return total, reserved, used

    # ---- system ----------------------------------------------------------------
    def nvmlInit(self) -> None:
        with self._lock:
            self.calls[("nvmlInit", None)] += 1
            error = self.description.init_error
            if error == "library_not_found":
                raise pynvml.NVMLError_LibraryNotFound()
            if error == "driver_not_loaded":
                raise pynvml.NVMLError_DriverNotLoaded()
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
            if index in self._lost:
                raise pynvml.NVMLError_GpuIsLost()
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
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.mig else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        gpu, _gi = self._enter("nvmlDeviceGetMaxMigDeviceCount", handle)
        assert gpu is not None
        if not gpu.model.mig_capable:
            raise pynvml.NVMLError_NotSupported()
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any:
        gpu, gi = self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        assert gpu is not None
        handles = self._mig_handles[gpu.index]
        if gi is not None or not 0 <= index < 7:
            raise pynvml.NVMLError_InvalidArgument()
        if index >= len(handles):
            raise pynvml.NVMLError_NotFound()
        return handles[index]

    def nvmlDeviceGetGpuInstanceId(self, handle: Any) -> int:
        _gpu, gi = self._enter("nvmlDeviceGetGpuInstanceId", handle)
        if gi is None:
            raise pynvml.NVMLError_InvalidArgument()
        return gi

    # ---- device fields -------------------------------------------------------------
    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int:
        name = {pynvml.NVML_CLOCK_SM: "DCGM_FI_DEV_SM_CLOCK", pynvml.NVML_CLOCK_MEM: "DCGM_FI_DEV_MEM_CLOCK"}.get(
            clock_type
        )
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
        return round(self._value(gpu, "DCGM_FI_DEV_POWER_USAGE") * 1000)

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        gpu, gi = self._enter("nvmlDeviceGetPowerManagementLimit", handle, ("DCGM_FI_DEV_POWER_MGMT_LIMIT",))
        assert gpu is not None
        self._device_only(gi)
        return round(self._value(gpu, "DCGM_FI_DEV_POWER_MGMT_LIMIT") * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        field_name = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
        gpu, gi = self._enter("nvmlDeviceGetTotalEnergyConsumption", handle, (field_name,))
        assert gpu is not None
        self._device_only(gi)
        return self._int(gpu, field_name)

    def nvmlDeviceGetPcieReplayCounter(self, handle: Any) -> int:
        gpu, gi = self._enter("nvmlDeviceGetPcieReplayCounter", handle, ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER",))
        assert gpu is not None
        self._device_only(gi)
        return self._int(gpu, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER")

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
        return [self._int(gpu, "DCGM_FI_DEV_ENC_UTIL"), 167000]

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        gpu, gi = self._enter("nvmlDeviceGetDecoderUtilization", handle, ("DCGM_FI_DEV_DEC_UTIL",))
        assert gpu is not None
        self._device_only(gi)
        return [self._int(gpu, "DCGM_FI_DEV_DEC_UTIL"), 167000]

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        gpu, gi = self._enter("nvmlDeviceGetMemoryInfo", handle, ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"))
        assert gpu is not None
        unsupported = gpu.model.unsupported | gpu.unsupported
        total, reserved, used = self._memory(gpu, gi)
        if version:
            if "DCGM_FI_DEV_FB_RESERVED" in unsupported:
                raise pynvml.NVMLError_FunctionNotFound()
            mem: Any = pynvml.c_nvmlMemory_v2_t()
            mem.version = version
            mem.reserved = reserved * _MIB
            mem.used = used * _MIB
        else:
            mem = pynvml.c_nvmlMemory_t()
            mem.used = (used + reserved) * _MIB
        mem.total = total * _MIB
        mem.free = (total - reserved - used) * _MIB
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
        return (self._int(gpu, names[0]), self._int(gpu, names[1]), 0, self._int(gpu, names[2]))

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: int, counter_type: int) -> int:
        name = _ECC.get((error_type, counter_type))
        gpu, gi = self._enter("nvmlDeviceGetTotalEccErrors", handle, (name,) if name else ())
        assert gpu is not None
        self._device_only(gi)
        if name is None:
            raise pynvml.NVMLError_InvalidArgument()
        return self._int(gpu, name)

    def nvmlDeviceGetRetiredPages(self, handle: Any, cause: int) -> list[int]:
        name = _RETIRED.get(cause)
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
        name = _VIOLATIONS.get(policy)
        gpu, gi = self._enter("nvmlDeviceGetViolationStatus", handle, (name,) if name else ())
        assert gpu is not None
        self._device_only(gi)
        if name is None:
            raise pynvml.NVMLError_InvalidArgument()
        viol = pynvml.c_nvmlViolationTime_t()
        viol.referenceTime = int(self.t() * 1_000_000)
        viol.violationTime = self._int(gpu, name) * 1000  # DCGM's us -> NVML's ns
        return viol

    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: Sequence[Any]) -> Any:
        gpu, gi = self._enter("nvmlDeviceGetFieldValues", handle)
        assert gpu is not None
        unsupported = gpu.model.unsupported | gpu.unsupported
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for i, fid in enumerate(field_ids):
            fid, scope = (fid if isinstance(fid, tuple) else (fid, 0))
            values[i].fieldId = fid
            values[i].scopeId = scope
            values[i].timestamp = int(self.t() * 1_000_000)
            name = _FIELD_VALUE_IDS.get(fid)
            if name is None or name in unsupported or gi is not None:
                values[i].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            values[i].nvmlReturn = pynvml.NVML_SUCCESS
            if fid == pynvml.NVML_FI_DEV_MEMORY_TEMP:
                values[i].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                values[i].value.uiVal = self._int(gpu, name)
            else:
                values[i].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                values[i].value.ullVal = self._int(gpu, name)
        return values

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        gpu, gi = self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle, (CLOCK_REASONS_FIELD,))
        assert gpu is not None
        self._device_only(gi)
        with self._lock:
            if gpu.index in self._clock_reasons:
                return self._clock_reasons[gpu.index]
        return self._int(gpu, CLOCK_REASONS_FIELD)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        gpu, gi = self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        assert gpu is not None
        with self._lock:
            procs = list(self._processes.get(gpu.index, []))
        return [
            pynvml.nvmlFriendlyObject(
                {
                    "pid": p.pid,
                    "usedGpuMemory": p.used_mib * _MIB,
                    "gpuInstanceId": p.gi_id if p.gi_id is not None else 0xFFFFFFFF,
                    "computeInstanceId": 0 if p.gi_id is not None else 0xFFFFFFFF,
                }
            )
            for p in procs
            if gi is None or p.gi_id == gi
        ]

    # ---- events ------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> Any:
        self._enter("nvmlEventSetCreate")
        return _EventSet()

    def nvmlDeviceRegisterEvents(self, handle: Any, event_types: int, event_set: Any) -> None:
        gpu, _gi = self._enter("nvmlDeviceRegisterEvents", handle)
        assert gpu is not None
        if event_types & pynvml.nvmlEventTypeXidCriticalError:
            event_set.gpus.add(gpu.index)

    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any:
        import time

        self._enter("nvmlEventSetWait_v2")
        deadline = time.monotonic() + timeout_ms / 1000.0
        with self._cond:
            while True:
                self._apply_events()
                t = self.t()
                for i, (due, gpu, xid) in enumerate(self._xids):
                    if due <= t and gpu in event_set.gpus:
                        del self._xids[i]
                        data = pynvml.c_nvmlEventData_t()
                        data.device = self._handles[gpu]
                        data.eventType = pynvml.nvmlEventTypeXidCriticalError
                        data.eventData = xid
                        data.gpuInstanceId = 0xFFFFFFFF
                        data.computeInstanceId = 0xFFFFFFFF
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise pynvml.NVMLError_Timeout()
                # poll: with an injected clock, due times move without a notify
                self._cond.wait(min(remaining, 0.05))

    def nvmlEventSetFree(self, event_set: Any) -> None:
        self._enter("nvmlEventSetFree")

    # ---- GPM -------------------------------------------------------------------------
    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> Any:
        gpu, _gi = self._enter("nvmlGpmQueryDeviceSupport", handle)
        assert gpu is not None
        support = pynvml.c_nvmlGpmSupport_t()
        support.version = pynvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = 1 if gpu.model.gpm else 0
        return support

    def nvmlGpmSampleAlloc(self) -> Any:
        self._enter("nvmlGpmSampleAlloc")
        struct = pynvml.struct_c_nvmlGpmSample_t()
        addr = ctypes.addressof(struct)
        with self._lock:
            self._gpm_structs[addr] = struct
            self._gpm_samples[addr] = None
        return ctypes.cast(ctypes.pointer(struct), pynvml.c_nvmlGpmSample_t)

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self._enter("nvmlGpmSampleFree")
        addr = ctypes.cast(sample, ctypes.c_void_p).value or 0
        with self._lock:
            self._gpm_samples.pop(addr, None)
            self._gpm_structs.pop(addr, None)

    def _gpm_take(self, gpu: FakeGpu, gi: int | None, sample: Any) -> Any:
        if not gpu.model.gpm:
            raise pynvml.NVMLError_NotSupported()
        addr = ctypes.cast(sample, ctypes.c_void_p).value or 0
        with self._lock:
            if addr not in self._gpm_samples:
                raise pynvml.NVMLError_InvalidArgument()
            self._gpm_samples[addr] = (gpu.index, gi, self.t())
        return sample

    def nvmlGpmSampleGet(self, handle: Any, sample: Any) -> Any:
        gpu, gi = self._enter("nvmlGpmSampleGet", handle)
        assert gpu is not None
        if gi is not None:
            raise pynvml.NVMLError_InvalidArgument()
        return self._gpm_take(gpu, None, sample)

    def nvmlGpmMigSampleGet(self, handle: Any, gpu_instance_id: int, sample: Any) -> Any:
        gpu, _gi = self._enter("nvmlGpmMigSampleGet", handle)
        assert gpu is not None
        if not any(m.gi_id == gpu_instance_id for m in gpu.mig):
            raise pynvml.NVMLError_NotFound()
        return self._gpm_take(gpu, gpu_instance_id, sample)

    def nvmlGpmMetricsGet(self, metrics_get: Any) -> Any:
        self._enter("nvmlGpmMetricsGet")
        s1 = ctypes.cast(metrics_get.sample1, ctypes.c_void_p).value or 0
        s2 = ctypes.cast(metrics_get.sample2, ctypes.c_void_p).value or 0
        with self._lock:
            first, second = self._gpm_samples.get(s1), self._gpm_samples.get(s2)
        if first is None or second is None or first[:2] != second[:2]:
            raise pynvml.NVMLError_InvalidArgument()
        gpu = self.description.gpus[second[0]]
        unsupported = gpu.model.unsupported | gpu.unsupported
        for i in range(metrics_get.numMetrics):
            metric = metrics_get.metrics[i]
            spec = _GPM.get(metric.metricId)
            if spec is None or spec[0] in unsupported:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            metric.nvmlReturn = pynvml.NVML_SUCCESS
            metric.value = self._value(gpu, spec[0], second[1]) * spec[1]
        return metrics_get


class FakeDcgmReader:
    """DCGM's DcgmReader interface over a FakeNvml's described profiling values."""

    def __init__(self, fake: FakeNvml) -> None:
        self.fake = fake
        self.m_gpuIdToUUId = {g.index: g.uuid for g in fake.description.gpus}

    def GetLatestGpuValuesAsFieldIdDict(self) -> dict[int, dict[int, Any]]:
        fake = self.fake
        with fake._lock:
            fake.calls[("DcgmReader.GetLatestGpuValuesAsFieldIdDict", None)] += 1
            fake._apply_events()
            lost = set(fake._lost)
        out: dict[int, dict[int, Any]] = {}
        for gpu in fake.description.gpus:
            if gpu.index in lost:
                continue
            unsupported = gpu.model.unsupported | gpu.unsupported
            values: dict[int, Any] = {}
            for name in PROF_FIELDS:
                if name in unsupported or name not in PROF_FIELD_IDS:
                    continue
                if name not in gpu.fields and name not in gpu.model.fields:
                    continue
                value = fake._value(gpu, name)
                values[PROF_FIELD_IDS[name]] = value
            out[gpu.index] = values
        return out

    def Shutdown(self) -> None:
        pass
