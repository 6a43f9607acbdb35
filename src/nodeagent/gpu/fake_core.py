"""The fake NVML's state and the controls tests and demos use: the timeline
of scripted events, lost GPUs, hangs, injected failures, MIG mode, and the
bookkeeping every faked call does (`_enter`). The pynvml functions are in
fake_device.py and fake_events.py; fake.py puts them together."""

from __future__ import annotations

import ctypes
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pynvml

from nodeagent.gpu.fake_description import Description, FakeEvent, FakeGpu, FakeProcess, ValueSpec, value_at
from nodeagent.gpu.fake_fields import MIG_HIDDEN, field_id

# after a fall off the bus the driver first answers NVML_ERROR_UNKNOWN, then
# GPU_IS_LOST once it has marked the GPU lost (seconds, unless the event says)
UNKNOWN_SECONDS = 10.0
XID_FELL_OFF_BUS = 79
XID_RECOVERY_ACTION_CHANGED = 154
_XID_TEXT = {XID_FELL_OFF_BUS: "GPU has fallen off the bus."}


class FakeClock:
    """A clock tests step by hand: `clock.advance(60)` instead of sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Hang:
    gpu: int
    call: str
    seconds: float | None
    remaining: int


@dataclass
class _Failure:
    gpu: int
    call: str
    error: type[Exception] | Exception
    remaining: int


@dataclass(frozen=True)
class PendingXid:
    due: float
    gpu: int
    xid: int
    gi: int | None = None
    ci: int | None = None


class FakeCore:
    """State and controls; see the module docstring of fake.py."""

    def __init__(self, description: Description, clock: Callable[[], float] | None = None,
                 events: bool = True) -> None:  # fmt: skip
        self.description = description
        self.clock: Callable[[], float] = clock or time.monotonic
        self.t0 = self.clock()
        # every call, by (pynvml function, GPU index or None): NVML calls per GPU per cycle
        self.calls: Counter[tuple[str, int | None]] = Counter()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._initialized = 0
        self._lost: set[int] = set()
        self._unknown_until: dict[int, float] = {}
        self._processes = {g.index: list(g.processes) for g in description.gpus}
        self._clock_reasons: dict[int, int] = {}
        self._recovery: dict[int, int] = {}
        self._mig_enabled = {g.index: g.mig_enabled for g in description.gpus}
        # (gpu, field id) -> (NVML error code, until t or None)
        self._field_errors: dict[tuple[int, int], tuple[int, float | None]] = {}
        self._xids: list[PendingXid] = []  # not yet delivered through nvmlEventSetWait_v2
        self._kmsg: list[str] = []
        self._hangs: list[_Hang] = []
        self._failures: list[_Failure] = []
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
        # GPM samples: address -> (gpu, gi, t) once taken
        self._gpm_samples: dict[int, tuple[int, int | None, float] | None] = {}
        self._gpm_structs: dict[int, Any] = {}

    # ---- test and demo controls ------------------------------------------------
    def t(self) -> float:
        return self.clock() - self.t0

    def inject_xid(self, gpu: int, xid: int, gi: int | None = None, ci: int | None = None,
                   kmsg_only: bool = False) -> None:  # fmt: skip
        """An XID on gpu (in GPU instance gi), due now; `kmsg_only`: the
        kernel logs it but the NVML event path misses it."""
        if gi is not None and ci is None:
            ci = 0
        with self._cond:
            self._record_xid(PendingXid(self.t(), gpu, xid, gi, ci), kmsg_only)

    def set_lost(self, gpu: int, lost: bool = True) -> None:
        with self._lock:
            (self._lost.add if lost else self._lost.discard)(gpu)
            self._unknown_until.pop(gpu, None)

    def fall_off_bus(self, gpu: int, unknown_seconds: float = UNKNOWN_SECONDS) -> None:
        """XID 79; calls on gpu answer NVML_ERROR_UNKNOWN for `unknown_seconds`
        of the fake's clock, then GPU_IS_LOST until set_lost(gpu, False)."""
        with self._cond:
            self._fall_off_bus(gpu, self.t(), unknown_seconds)

    def set_mig_mode(self, gpu: int, enabled: bool) -> None:
        """MIG on or off (current and pending: the fake does the GPU reset
        that applies it). On: the described instances appear and whole-GPU
        utilisation answers NOT_SUPPORTED; off: MIG handles go stale."""
        with self._lock:
            if not self.description.gpus[gpu].model.mig_capable:
                raise ValueError(f"GPU {gpu} is not MIG capable")
            self._mig_enabled[gpu] = enabled

    def set_recovery_action(self, gpu: int, action: int) -> None:
        """NVML_FI_DEV_GET_GPU_RECOVERY_ACTION becomes `action`; the driver reports XID 154."""
        with self._cond:
            self._set_recovery(gpu, action, self.t())

    def fail_field(self, gpu: int, field: int | str, error: int | None = pynvml.NVML_ERROR_UNKNOWN,
                   seconds: float | None = None) -> None:  # fmt: skip
        """Field values answer `error` for `field` (an NVML field id or a name)
        inside a successful nvmlDeviceGetFieldValues; None clears it."""
        fid = field if isinstance(field, int) else field_id(field)
        if fid is None:
            raise ValueError(f"{field!r} is not a field the fake answers")
        with self._lock:
            if error is None:
                self._field_errors.pop((gpu, fid), None)
            else:
                self._field_errors[(gpu, fid)] = (error, self.t() + seconds if seconds is not None else None)

    def set_processes(self, gpu: int, processes: Sequence[FakeProcess]) -> None:
        with self._lock:
            self._processes[gpu] = list(processes)

    def hang_next(self, gpu: int, call: str, seconds: float | None = None, count: int = 1) -> None:
        """The next `count` calls of `call` on `gpu` block for `seconds` (None: until release_hangs())."""
        with self._lock:
            self._hangs.append(_Hang(gpu, call, seconds, count))

    def release_hangs(self) -> None:
        """Ends every hang and slow call, now and later."""
        self._release.set()

    def fail_next(self, gpu: int, call: str, error: type[Exception] | Exception, count: int = 1) -> None:
        """The next `count` calls of `call` on `gpu` raise `error`: a pynvml
        error class, or any exception (pynvml.NVMLLibraryMismatchError)."""
        with self._lock:
            self._failures.append(_Failure(gpu, call, error, count))

    def kernel_log(self) -> list[str]:
        """The XIDs so far as the driver writes them to /dev/kmsg."""
        with self._lock:
            self._apply_events()
            return list(self._kmsg)

    # ---- the timeline ------------------------------------------------------------
    def _apply_events(self) -> None:
        """Apply scripted events that are due (called under the lock)."""
        t = self.t()
        while self._applied < len(self._events) and self._events[self._applied].at <= t:
            self._apply(self._events[self._applied])
            self._applied += 1

    def _apply(self, ev: FakeEvent) -> None:
        if ev.kind == "xid":
            self._record_xid(PendingXid(ev.at, ev.gpu, int(ev.value), ev.gi, ev.ci), ev.kmsg_only)
        elif ev.kind == "lost" and ev.value:
            self._lost.add(ev.gpu)
        elif ev.kind == "recovered" and ev.value:
            self._lost.discard(ev.gpu)
            self._unknown_until.pop(ev.gpu, None)
        elif ev.kind == "fall_off_bus" and ev.value:
            self._fall_off_bus(ev.gpu, ev.at, ev.seconds if ev.seconds is not None else UNKNOWN_SECONDS)
        elif ev.kind == "hang":
            self._hangs.append(_Hang(ev.gpu, str(ev.value), ev.seconds, ev.count))
        elif ev.kind == "processes":
            self._processes[ev.gpu] = list(ev.value)
        elif ev.kind == "clock_events":
            self._clock_reasons[ev.gpu] = int(ev.value)
        elif ev.kind == "mig":
            self._mig_enabled[ev.gpu] = bool(ev.value)
        elif ev.kind == "recovery_action":
            self._set_recovery(ev.gpu, int(ev.value), ev.at)
        elif ev.kind == "field_error" and ev.error is not None:
            until = ev.at + ev.seconds if ev.seconds is not None else None
            self._field_errors[(ev.gpu, int(ev.value))] = (ev.error, until)

    def _record_xid(self, xid: PendingXid, kmsg_only: bool = False) -> None:
        gpu = self.description.gpus[xid.gpu]
        domain, bus, rest = gpu.pci_bus_id.split(":")
        where = f"PCI:{int(domain, 16):04x}:{int(bus, 16):02x}:{int(rest.split('.')[0], 16):02x}"
        if xid.gi is not None:
            where += f" GPU-I:{xid.gi:02d}" + (f" GPU-CI:{xid.ci:02d}" if xid.ci is not None else "")
        text = _XID_TEXT.get(xid.xid, "fake Xid from the nodeagent fake NVML")
        stamp = int((self.t0 + xid.due) * 1_000_000)
        # kernel-log record format: level,sequence,microseconds,flags;message (Documentation/ABI/testing/dev-kmsg)
        self._kmsg.append(f"4,{len(self._kmsg) + 1},{stamp},-;NVRM: Xid ({where}): {xid.xid}, "
                          f"pid='<unknown>', name=<unknown>, {text}")  # fmt: skip
        if not kmsg_only:
            self._xids.append(xid)
            self._cond.notify_all()

    def _fall_off_bus(self, gpu: int, at: float, unknown_seconds: float) -> None:
        self._record_xid(PendingXid(at, gpu, XID_FELL_OFF_BUS))
        self._lost.add(gpu)
        self._unknown_until[gpu] = at + unknown_seconds

    def _set_recovery(self, gpu: int, action: int, at: float) -> None:
        self._recovery[gpu] = action
        self._record_xid(PendingXid(at, gpu, XID_RECOVERY_ACTION_CHANGED))

    # ---- what every call does ------------------------------------------------------
    def _new_handle(self, gpu: int, gi: int | None) -> Any:
        struct = pynvml.struct_c_nvmlDevice_t()
        self._structs.append(struct)
        handle = ctypes.pointer(struct)
        self._by_addr[ctypes.addressof(struct)] = (gpu, gi)
        return ctypes.cast(handle, pynvml.c_nvmlDevice_t)

    def _check_init(self) -> None:
        if not self._initialized:
            raise pynvml.NVMLError_Uninitialized()

    def _resolve(self, handle: Any) -> tuple[FakeGpu, int | None]:
        addr = ctypes.cast(handle, ctypes.c_void_p).value
        ref = self._by_addr.get(int(addr or 0))
        if ref is None:
            raise pynvml.NVMLError_InvalidArgument()
        return self.description.gpus[ref[0]], ref[1]

    def _check_lost(self, gpu: int) -> None:
        if gpu in self._lost:
            if self.t() < self._unknown_until.get(gpu, float("-inf")):
                raise pynvml.NVMLError_Unknown()
            raise pynvml.NVMLError_GpuIsLost()

    def _enter(self, call: str, handle: Any = None, fields: Sequence[str] = ()) -> tuple[FakeGpu | None, int | None]:
        """Bookkeeping every faked call does: counting, init check, scripted
        events, lost GPUs, stale MIG handles, hangs, injected failures and
        unsupported calls."""
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
            self._check_lost(gpu.index)
            if gi is not None and not self._mig_enabled[gpu.index]:
                raise pynvml.NVMLError_InvalidArgument()  # a MIG handle from before MIG was disabled
            hang = next((h for h in self._hangs if h.gpu == gpu.index and h.call == call and h.remaining > 0), None)
            if hang is not None:
                hang.remaining -= 1
            for failure in self._failures:
                if failure.gpu == gpu.index and failure.call == call and failure.remaining > 0:
                    failure.remaining -= 1
                    raise failure.error() if isinstance(failure.error, type) else failure.error
        if hang is not None:
            self.hang_entered.set()
            self._release.wait(hang.seconds)
        unsupported = self._unsupported(gpu)
        if call in unsupported or (fields and all(f in unsupported for f in fields)):
            raise pynvml.NVMLError_NotSupported()
        return gpu, gi

    def _stall(self, seconds: float) -> None:
        """A legitimately slow driver call: returns after `seconds` on the
        fake's clock or in real time, whichever comes first, or at
        release_hangs()."""
        if seconds <= 0:
            return
        self.hang_entered.set()
        real_end = time.monotonic() + seconds
        fake_end = self.clock() + seconds
        while not self._release.is_set():
            left = real_end - time.monotonic()
            if left <= 0 or self.clock() >= fake_end:
                return
            self._release.wait(min(left, 0.02))

    # ---- values -------------------------------------------------------------------
    def _unsupported(self, gpu: FakeGpu) -> frozenset[str]:
        out = gpu.model.unsupported | gpu.unsupported
        return out | MIG_HIDDEN if self._mig_enabled[gpu.index] else out

    def _spec(self, gpu: FakeGpu, name: str, gi: int | None = None) -> ValueSpec | None:
        if gi is not None:
            for m in gpu.mig:
                if m.gi_id == gi and name in m.fields:
                    return m.fields[name]
        return gpu.fields.get(name, gpu.model.fields.get(name))

    def _value(self, gpu: FakeGpu, name: str, gi: int | None = None) -> float:
        spec = self._spec(gpu, name, gi)
        return 0.0 if spec is None else value_at(spec, self.t(), name, gpu.index, gi)

    def _int(self, gpu: FakeGpu, name: str, gi: int | None = None) -> int:
        return round(self._value(gpu, name, gi))

    def _device_only(self, gi: int | None) -> None:
        # most device queries are not supported on MIG device handles
        if gi is not None:
            raise pynvml.NVMLError_NotSupported()

    def _memory(self, gpu: FakeGpu, gi: int | None) -> tuple[int, int, int]:
        """(total, reserved, used) in MiB, of the GPU or of GPU instance gi."""
        procs = self._processes.get(gpu.index, [])
        if gi is not None:
            inst = next(m for m in gpu.mig if m.gi_id == gi)
            total, reserved, spec = inst.memory_mib, 0, inst.fields.get("DCGM_FI_DEV_FB_USED")
            phase: tuple[object, ...] = ("fb", gpu.index, gi)
            procs = [p for p in procs if p.gi_id == gi]
        else:
            total, reserved = gpu.model.memory_mib, gpu.model.reserved_mib
            spec, phase = self._spec(gpu, "DCGM_FI_DEV_FB_USED"), ("fb", gpu.index)
        used = int(value_at(spec, self.t(), *phase)) if spec is not None else sum(p.used_mib for p in procs)
        return total, reserved, max(0, min(used, total - reserved))
