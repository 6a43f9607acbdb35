"""The fake NVML's description: GPUs, their values and a timeline of events,
read from YAML. The format is described in the module docstring of fake.py;
mistakes raise ConfigError naming the file and the key."""

from __future__ import annotations

import math
import uuid as uuidlib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nodeagent.gpu.fake_fields import NVLINK_BANDWIDTH, NVLINK_RX, NVLINK_TX, VALUE_KEYS, error_code, field_id
from nodeagent.gpu.settings import SHIPPED_DESCRIPTIONS
from nodeagent.inputs import InputError, load_yaml, read_text
from nodeagent.settings import ConfigError

_UUID_NS = uuidlib.UUID("6f1c8e1a-3a4b-4d2f-9c55-2b7e0d9a4c11")
ValueSpec = float | Mapping[str, float]
EVENT_KINDS = (
    "xid", "lost", "recovered", "hang", "processes", "clock_events",
    "fall_off_bus", "mig", "recovery_action", "field_error",
)  # fmt: skip


@dataclass
class FakeModel:
    key: str
    name: str
    memory_mib: int
    reserved_mib: int = 0
    gpm: bool = False
    mig_capable: bool = False
    nvlinks: int = 0
    vbios: str = "96.00.00.00.01"
    inforom: str = "G520.0200.00.05"
    fields: dict[str, ValueSpec] = field(default_factory=dict)
    unsupported: frozenset[str] = frozenset()
    field_errors: dict[int, int] = field(default_factory=dict)  # NVML field id -> NVML error code


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
    mig_enabled: bool = False
    field_errors: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeEvent:
    at: float
    gpu: int
    kind: str  # one of EVENT_KINDS
    value: Any = None
    seconds: float | None = None
    count: int = 1
    gi: int | None = None  # xid: the GPU instance it happened in
    ci: int | None = None
    kmsg_only: bool = False  # xid: in the kernel log only, the NVML event path misses it
    error: int | None = None  # field_error: the NVML error code


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
    # persistence mode off: nvmlInit initialises every GPU (seconds)
    init_seconds: float = 0.0
    process_query_seconds: float = 0.0
    process_query_error: str | None = None  # library_mismatch
    memory_info_v2: bool = True  # nvmlDeviceGetMemoryInfo_v2 exists (drivers >= 510)

    @property
    def driver_major(self) -> int:
        head = self.driver_version.split(".", 1)[0]
        return int(head) if head.isdigit() else 0


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
        if name == NVLINK_BANDWIDTH:
            raise _err(source, f"{key}.{name}", f"DCGM computes this rate; describe the counters {NVLINK_TX} and "
                       f"{NVLINK_RX} (cumulative KiB, all links) instead")  # fmt: skip
        if name not in VALUE_KEYS:
            raise _err(source, f"{key}.{name}", "unknown DCGM field")
        out[name] = _value_spec(spec, source, f"{key}.{name}")
    return out


def _unsupported(raw: Any, source: str, key: str, is_call: Callable[[str], bool]) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise _err(source, key, "expected a list of DCGM field names or nvml function names")
    for i, name in enumerate(raw):
        known = isinstance(name, str) and (name in VALUE_KEYS or is_call(name))
        if not known:
            raise _err(source, f"{key}[{i}]", f"{name!r} is neither a DCGM field nor a faked nvml function")
    return frozenset(raw)


def _error(raw: Any, source: str, key: str) -> int:
    code = error_code(str(raw)) if isinstance(raw, str) else None
    if code is None:
        raise _err(source, key, f"{raw!r} is not an NVML error name (unknown, not_supported, no_data, ...)")
    return code


def _field_id(raw: Any, source: str, key: str) -> int:
    fid = field_id(raw) if isinstance(raw, str) else None
    if fid is None:
        raise _err(source, key, f"{raw!r} is neither a field-value DCGM field nor an NVML_FI_DEV_* name")
    return fid


def _field_errors(raw: Any, source: str, key: str) -> dict[int, int]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _err(source, key, "expected a mapping of field names to NVML error names")
    return {_field_id(name, source, f"{key}.{name}"): _error(err, source, f"{key}.{name}") for name, err in raw.items()}


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


def _model(key: str, m: Any, source: str, is_call: Callable[[str], bool]) -> FakeModel:
    where = f"models.{key}"
    if not isinstance(m, Mapping) or "name" not in m or "memory_mib" not in m:
        raise _err(source, where, "a model needs at least name and memory_mib")
    return FakeModel(
        key=key,
        name=str(m["name"]),
        memory_mib=int(m["memory_mib"]),
        reserved_mib=int(m.get("reserved_mib", 0)),
        gpm=bool(m.get("gpm", False)),
        mig_capable=bool(m.get("mig_capable", False)),
        nvlinks=int(m.get("nvlinks", 0)),
        vbios=str(m.get("vbios", "96.00.00.00.01")),
        inforom=str(m.get("inforom", "G520.0200.00.05")),
        fields=_fields(m.get("fields"), source, f"{where}.fields"),
        unsupported=_unsupported(m.get("unsupported"), source, f"{where}.unsupported", is_call),
        field_errors=_field_errors(m.get("field_errors"), source, f"{where}.field_errors"),
    )


def _mig(raw: Any, source: str, where: str) -> list[FakeMig]:
    out = []
    for j, inst in enumerate(raw or []):
        mwhere = f"{where}.mig[{j}]"
        if not isinstance(inst, Mapping) or not {"gi_id", "profile", "memory_mib"} <= set(inst):
            raise _err(source, mwhere, "a MIG instance is {gi_id, profile, memory_mib[, fields]}")
        fields = _fields(inst.get("fields"), source, f"{mwhere}.fields")
        out.append(FakeMig(int(inst["gi_id"]), str(inst["profile"]), int(inst["memory_mib"]), fields))
    return out


def _gpu(i: int, g: Any, name: str, models: Mapping[str, FakeModel], source: str,
         is_call: Callable[[str], bool]) -> FakeGpu:  # fmt: skip
    where = f"gpus[{i}]"
    if not isinstance(g, Mapping) or g.get("model") not in models:
        raise _err(source, f"{where}.model", f"must name one of the models ({', '.join(models)})")
    model = models[g["model"]]
    uuid = str(g.get("uuid") or f"GPU-{uuidlib.uuid5(_UUID_NS, f'{name}:{i}')}")
    mig = _mig(g.get("mig"), source, where)
    if (mig or g.get("mig_enabled")) and not model.mig_capable:
        raise _err(source, f"{where}.mig", f"model {model.key} is not MIG capable")
    return FakeGpu(
        index=i,
        model=model,
        uuid=uuid,
        pci_bus_id=str(g.get("pci_bus_id") or f"00000000:{0x10 + i:02X}:00.0"),
        serial=str(g.get("serial") or f"{1650000000000 + zlib.crc32(uuid.encode()) % 10**9:013d}"),
        fields=_fields(g.get("fields"), source, f"{where}.fields"),
        unsupported=_unsupported(g.get("unsupported"), source, f"{where}.unsupported", is_call),
        processes=_processes(g.get("processes"), source, f"{where}.processes"),
        mig=mig,
        mig_enabled=bool(g.get("mig_enabled", bool(mig))),
        field_errors=_field_errors(g.get("field_errors"), source, f"{where}.field_errors"),
    )


def _event(i: int, ev: Any, gpus: list[FakeGpu], source: str, is_call: Callable[[str], bool]) -> FakeEvent:
    where = f"events[{i}]"
    if not isinstance(ev, Mapping) or "at" not in ev or not isinstance(ev.get("gpu"), int):
        raise _err(source, where, "an event needs at (seconds) and gpu (index)")
    if not 0 <= ev["gpu"] < len(gpus):
        raise _err(source, f"{where}.gpu", f"no GPU {ev['gpu']} in this description")
    gpu = gpus[ev["gpu"]]
    kinds = [k for k in EVENT_KINDS if k in ev]
    if len(kinds) != 1:
        raise _err(source, where, f"an event has exactly one of {', '.join(EVENT_KINDS)}")
    kind = kinds[0]
    value = ev[kind]
    extra: dict[str, Any] = {}
    if kind == "hang" and not (isinstance(value, str) and is_call(value)):
        raise _err(source, f"{where}.hang", f"{value!r} is not a faked nvml function")
    if kind == "processes":
        value = _processes(value, source, f"{where}.processes")
    if kind == "mig" and not gpu.model.mig_capable:
        raise _err(source, f"{where}.mig", f"model {gpu.model.key} is not MIG capable")
    if kind == "recovery_action" and not (isinstance(value, int) and 0 <= value <= 7):
        raise _err(source, f"{where}.recovery_action", "an NVML_GPU_RECOVERY_ACTION_* value, 0 to 7")
    if kind == "field_error":
        value = _field_id(value, source, f"{where}.field_error")
        extra["error"] = _error(ev.get("error", "unknown"), source, f"{where}.error")
    if kind == "xid" and "gi" in ev:
        if not any(m.gi_id == ev["gi"] for m in gpu.mig):
            raise _err(source, f"{where}.gi", f"GPU {gpu.index} has no GPU instance {ev['gi']!r}")
        extra["gi"], extra["ci"] = int(ev["gi"]), int(ev.get("ci", 0))
    seconds = ev.get("seconds")
    return FakeEvent(
        at=float(ev["at"]),
        gpu=gpu.index,
        kind=kind,
        value=value,
        seconds=float(seconds) if seconds is not None else None,
        count=int(ev.get("count", 1)),
        kmsg_only=bool(ev.get("kmsg_only", False)),
        **extra,
    )


def parse_description(text: str, source: str, is_call: Callable[[str], bool] | None = None) -> Description:
    """A description from YAML text; mistakes raise ConfigError naming source
    and key. `is_call` says whether a name is a faked nvml function (for
    `unsupported` and `hang`); by default, any FakeNvml method."""
    if is_call is None:
        from nodeagent.gpu.fake import is_faked_call

        is_call = is_faked_call
    try:
        data = load_yaml(text)
    except InputError as e:
        raise _err(source, e.key, str(e)) from None
    if not isinstance(data, Mapping):
        raise _err(source, "", "a description is a mapping")
    try:
        return _description(data, source, is_call)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as e:
        # a value of the wrong type where the checks do not look (a test and
        # demo file: one message for all of those)
        raise _err(source, "", f"invalid description: {type(e).__name__}: {e}") from None


def _description(data: Mapping[str, Any], source: str, is_call: Callable[[str], bool]) -> Description:
    models = {key: _model(key, m, source, is_call) for key, m in (data.get("models") or {}).items()}
    raw_gpus = data.get("gpus")
    if not isinstance(raw_gpus, list) or not raw_gpus:
        raise _err(source, "gpus", "expected a non-empty list of GPUs")
    name = str(data.get("name", Path(source).stem))
    gpus = [_gpu(i, g, name, models, source, is_call) for i, g in enumerate(raw_gpus)]
    events = [_event(i, ev, gpus, source, is_call) for i, ev in enumerate(data.get("events") or [])]
    profiling = str(data.get("profiling", "none"))
    if profiling not in ("gpm", "dcgm", "none"):
        raise _err(source, "profiling", "must be gpm, dcgm or none")
    if data.get("process_query_error") not in (None, "library_mismatch"):
        raise _err(source, "process_query_error", "must be library_mismatch")
    desc = Description(
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
        init_seconds=float(data.get("init_seconds", 0.0)),
        process_query_seconds=float(data.get("process_query_seconds", 0.0)),
        process_query_error=data.get("process_query_error"),
    )
    # drivers before R510 have no nvmlDeviceGetMemoryInfo_v2 (DCGM checks the
    # same version: DcgmCacheManager.cpp, ReadAndCacheFBMemoryInfo)
    desc.memory_info_v2 = bool(data.get("memory_info_v2", desc.driver_major >= 510))
    return desc


def load_description(name_or_path: str) -> Description:
    """A shipped description by name, or a YAML file by path."""
    if name_or_path in SHIPPED_DESCRIPTIONS:
        ref = resources.files("nodeagent").joinpath("data").joinpath("gpu").joinpath(f"{name_or_path}.yaml")
        return parse_description(ref.read_text(encoding="utf-8"), f"{name_or_path}.yaml")
    try:
        text = read_text(name_or_path)
    except InputError as e:
        raise _err(name_or_path, "", f"fake description {e}") from None
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
