"""The GPU sampler: the one place that calls NVML.

A background thread samples every GPU each gpu.interval seconds and
publishes a complete Snapshot (state plus pre-built metric families); scrapes
only read the last snapshot. Per GPU and per field, NOT_SUPPORTED is
remembered and not asked again; GPU_IS_LOST or any other error on one GPU
marks that GPU down and leaves the others intact.

Every NVML call goes through TimedApi, which times it and records the call
in flight. The watchdog (a second thread, and every status() call) declares
a call hung after gpu.call_timeout: it parks the stuck thread, quarantines
that GPU and starts a replacement sampler thread that samples the other
GPUs. When more than gpu.max_hung_calls calls hang (a wedged driver blocks
every call), no replacement is started and the snapshot is stale until a call
returns. A parked thread whose call returns exits, and its GPU is sampled
again from the next cycle. A hang in the optional profiling source (DCGM or
GPM) is not counted: profiling is turned off for the process instead.

XID events come from a third thread blocked in nvmlEventSetWait, started when
the first GPU registers for them (a GPU lost at start registers once it is
back). An XID is logged the first time a GPU reports it; repeats are
summarised at most once per 10 minutes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import pynvml
import structlog

from nodeagent.catalogue import gpu as cat
from nodeagent.collectors.gpu import readers as rd
from nodeagent.collectors.gpu.jobs import JobResolver, MappingDir, bounded
from nodeagent.collectors.gpu.render import RenderOptions, render_families, select_counters
from nodeagent.collectors.gpu.state import GpuState, MigState, Snapshot, Value
from nodeagent.collectors.gpu.xid import XidLogLimiter, XidTracker
from nodeagent.gpu.backend import Backend, GpuRef, MigRef, NvmlApi, ProfilingSource, handle_key, open_backend
from nodeagent.gpu.counters import CounterRow, default_counters, load_counters_file
from nodeagent.gpu.instances import expected_gpus
from nodeagent.gpu.settings import GpuSettings
from nodeagent.host import Host

log = structlog.get_logger(__name__)

_UNSUPPORTED = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError_NoPermission)
_PROCESSES = "_processes"  # pseudo field: nvmlDeviceGetComputeRunningProcesses
_MIG_REFRESH = 60.0
_XID_LOG_PERIOD = 600.0  # a repeated XID is logged once, then summarised at most this often
_PROFILING = "profiling_"  # prefix of the sections that watch the profiling source


class GpuLost(Exception):
    pass


class Abandoned(Exception):
    """The watchdog replaced this sampler thread while it was stuck."""


class InFlight(NamedTuple):
    """The call a sampler thread is in, published as one value."""

    name: str
    since: float
    seq: int  # per call: the watchdog's verdict is matched on it, never on `since`
    gpu: int | None
    profiling: bool  # in the optional profiling source (a profiling_* section)


class TimedApi:
    """Wraps an NvmlApi: times and counts calls, records the call in flight.

    `current` and `hung` are read and written under the sampler's lock, the
    lock the watchdog holds, so it never sees half of a call's bookkeeping.
    """

    def __init__(self, api: NvmlApi, clock: Callable[[], float], generation: int,
                 lock: threading.Lock, on_release: Callable[[TimedApi], None]) -> None:
        self._api = api
        self._clock = clock
        self._lock = lock
        self._on_release = on_release
        self.generation = generation
        self.seconds = 0.0
        self.calls = 0
        self.gpu: int | None = None
        self.current: InFlight | None = None
        self.hung: InFlight | None = None  # the call the watchdog declared hung
        self._seq = 0

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._api, name)
        if not name.startswith("nvml") or not callable(fn):
            return fn
        perf = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            outer = self._enter(name)
            started = perf()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += perf() - started
                self.calls += 1
                self._exit(outer)

        self.__dict__[name] = timed  # later lookups skip __getattr__
        return timed

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Watch a block of non-NVML driver calls (DCGM) like one NVML call."""
        outer = self._enter(name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started
            self._exit(outer)

    def _enter(self, name: str) -> InFlight | None:
        since = self._clock()
        with self._lock:
            outer = self.current
            self._seq += 1
            profiling = name.startswith(_PROFILING) or (outer is not None and outer.profiling)
            self.current = InFlight(name, since, self._seq, self.gpu, profiling)
        return outer

    def _exit(self, outer: InFlight | None) -> None:
        # an NVML call inside a section returned: the section is watched again from now
        resumed = None if outer is None else outer._replace(since=self._clock())
        with self._lock:
            done = self.current
            self.current = resumed
            released = done is not None and self.hung is not None and self.hung.seq == done.seq
        if released:
            self._on_release(self)

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0


@dataclass
class _Gpu:
    """What the sampler keeps about one GPU between cycles."""

    index: int
    handle: Any
    uuid: str = ""
    pci_bus_id: str = ""
    model: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    mig: list[MigRef] = field(default_factory=list)
    lost_at_start: bool = False


@dataclass(frozen=True)
class HungCall:
    generation: int
    gpu: int | None
    call: str
    since: float
    profiling: bool = False  # in the profiling source: not counted towards max_hung_calls


@dataclass
class SamplerStatus:
    snapshot: Snapshot | None
    stale: bool
    reason: str
    age: float | None
    expected: int
    hung: list[HungCall]
    backend: str
    configured: str
    profiling: str
    cycles: int
    total_calls: int


class _CurrentTimer:
    """The NvmlApi handed to profiling sources: calls go through the calling
    sampler thread's TimedApi, so a replacement thread is timed on its own."""

    def __init__(self, local: threading.local, fallback: TimedApi) -> None:
        self._local = local
        self._fallback = fallback

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(self._local, "timer", self._fallback), name)


class Sampler:
    def __init__(
        self,
        settings: GpuSettings,
        host: Host,
        hostname: str,
        *,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        counters: list[CounterRow] | None = None,
        threads: bool = True,
        watch_period: float = 0.5,
    ) -> None:
        self.settings = settings
        self.host = host
        self.hostname = hostname
        self.clock = clock
        self.wall = wall
        self.threads = threads
        self.watch_period = watch_period
        self.backend = backend or open_backend(settings)
        rows = counters if counters is not None else (
            load_counters_file(settings.counters_file) if settings.counters_file else default_counters()
        )
        self.selection = select_counters(rows)
        for row in self.selection.unknown:
            log.warning("gpu_counter_unknown", field=row.name, line=row.line,
                        file=settings.counters_file or "default")
        for row in self.selection.mismatched:
            log.warning("gpu_counter_type_unsupported", field=row.name, type=row.type, line=row.line,
                        file=settings.counters_file or "default")
        self.render_options = RenderOptions(
            selection=self.selection,
            hostname=hostname,
            hostname_label=settings.hostname_label,
            xid_window_ms=settings.xid_count_window_ms,
            clock_window_ms=settings.clock_events_count_window_ms,
            process_metrics=settings.process_metrics,
            idle_after=settings.idle_after,
        )
        # what the cycle reads: the selected fields, utilisation for the idle
        # signal, label fields that are numeric fields, clock reasons if asked for
        needed = set(self.selection.field_names) | {"DCGM_FI_DEV_GPU_UTIL"}
        needed |= {n for n in self.selection.label_fields if n in cat.DCGM_FIELDS}
        if self.selection.exporter_enabled(cat.EXP_CLOCK_EVENTS_COUNT.name):
            needed.add(rd.CLOCK_REASONS)
        self.needed = frozenset(needed)
        self.readers = rd.readers_for(sorted(needed))
        self.mig_readers = [r for r in self.readers if r.mig]
        self.needs_processes = settings.job_attribution or settings.process_metrics

        self.xids = XidTracker(settings.xid_count_window_ms / 1000.0)
        self.jobs = JobResolver(host)
        self.mapping = MappingDir(host, settings.hpc_job_mapping_dir) if settings.hpc_job_mapping_dir else None
        self._jobs_warned: set[str] = set()
        self.expected = expected_gpus(host, settings.expected_gpus, self.backend.instance_type)

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cycle_cond = threading.Condition()
        self._snapshot: Snapshot | None = None
        self._generation = 0
        self._timer = self._new_timer(0)
        self._local = threading.local()
        self._hung: dict[int, HungCall] = {}
        self._quarantine: dict[int, str] = {}
        self._wedged_logged = False
        self._started_at = clock()

        self._initialized = False
        self._init_error = ""
        self._next_init = 0.0
        self._gpus: list[_Gpu] = []
        self._refs: list[GpuRef] = []
        self._by_key: dict[int, int] = {}
        self._mig_checked = 0.0
        self._profiling: ProfilingSource | None = None
        self._profiling_disabled = False  # a profiling call hung: no profiling for this process
        self._event_set: Any = None
        self._xid_thread_started = False
        self._xid_log = XidLogLimiter(_XID_LOG_PERIOD)
        self._unsupported: dict[tuple[int, int | None], set[str]] = {}
        self._new_unsupported: dict[tuple[str, str], list[str]] = {}
        self._errors: dict[tuple[int, str], str] = {}
        self._down_logged: dict[int, str] = {}
        self._clock_history: dict[int, deque[tuple[float, int]]] = {}
        self._idle_since: dict[int, tuple[tuple[str, ...], float]] = {}
        self.cycles = 0
        self.total_calls = 0
        self._threads: list[threading.Thread] = []

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        if not self.threads:
            return
        with self._lock:
            self._spawn(self._generation)
            self._start_thread(self._watch_loop, "gpu-watchdog")

    def close(self, timeout: float = 1.0) -> None:
        """Stop the threads; never blocks longer than `timeout` on a stuck call."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = any(t.is_alive() for t in threads) or bool(self._hung)
        if stuck:
            log.warning("gpu_sampler_close_stuck", hung=len(self._hung))
            return
        if self._profiling is not None:
            try:
                self._profiling.close()
            except Exception as e:  # closing must not fail shutdown
                log.info("gpu_profiling_close_failed", error=str(e))
        if self._initialized:
            with suppress(pynvml.NVMLError):
                self.backend.api.nvmlShutdown()
            self._initialized = False

    def trigger(self) -> None:
        """Run the next cycle now (tests, and a scrape that finds no snapshot)."""
        self._wake.set()

    def wait_cycles(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` cycles have completed."""
        deadline = time.monotonic() + timeout
        with self._cycle_cond:
            while self.cycles < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cycle_cond.wait(remaining)
        return True

    def _spawn(self, generation: int) -> None:
        """Start a sampler thread (under the lock)."""
        self._threads = [t for t in self._threads if t.is_alive()]  # parked threads that returned
        self._start_thread(lambda: self._loop(generation), f"gpu-sampler-{generation}")

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        """Start a daemon thread and keep it for close() (under the lock)."""
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _loop(self, generation: int) -> None:
        while not self._stop.is_set():
            try:
                self.run_cycle(generation)
            except Abandoned:
                return
            except Exception as e:  # a bug in one cycle must not end sampling
                log.exception("gpu_cycle_failed", error=str(e))
            if self._generation != generation:
                return
            self._wake.wait(self.settings.interval)
            self._wake.clear()

    def _watch_loop(self) -> None:
        while not self._stop.wait(self.watch_period):
            self.check_watchdog()

    # ---- the watchdog -------------------------------------------------------------------
    def _new_timer(self, generation: int) -> TimedApi:
        return TimedApi(self.backend.api, self.clock, generation, self._lock, self._released)

    def check_watchdog(self) -> None:
        """Declare the current thread's call hung after call_timeout; replace the
        thread unless too many calls hang already."""
        with self._lock:
            timer = self._timer
            call = timer.current
            if call is None or timer.hung is not None:
                return
            held = self.clock() - call.since
            if held <= self.settings.call_timeout:
                return
            timer.hung = call
            self._hung[timer.generation] = HungCall(timer.generation, call.gpu, call.name, call.since, call.profiling)
            if call.profiling:
                # the optional profiling source hangs: sample without it from now on
                self._profiling = None
                if not self._profiling_disabled:
                    log.error("gpu_profiling_disabled", call=call.name, seconds=round(held, 1))
                    self._profiling_disabled = True
            else:
                if call.gpu is not None:
                    self._quarantine[call.gpu] = call.name
                log.error("gpu_nvml_call_hung", gpu=call.gpu, call=call.name, seconds=round(held, 1))
                hung_calls = sum(1 for h in self._hung.values() if not h.profiling)
                if hung_calls > self.settings.max_hung_calls:
                    if not self._wedged_logged:
                        log.error("gpu_sampler_wedged", hung_calls=hung_calls)
                        self._wedged_logged = True
                    return
            self._generation += 1
            self._timer = self._new_timer(self._generation)
            if self.threads and not self._stop.is_set():
                self._spawn(self._generation)

    def _released(self, timer: TimedApi) -> None:
        with self._lock:
            hung = self._hung.pop(timer.generation, None)
            timer.hung = None
            if hung is None:
                return
            if hung.gpu is not None and self._quarantine.get(hung.gpu) == hung.call:
                del self._quarantine[hung.gpu]
            self._wedged_logged = False
            log.warning("gpu_nvml_call_returned", gpu=hung.gpu, call=hung.call,
                        seconds=round(self.clock() - hung.since, 1))

    def _check_current(self, generation: int) -> None:
        if generation != self._generation:
            raise Abandoned()

    # ---- status for the collectors ------------------------------------------------------
    def status(self) -> SamplerStatus:
        self.check_watchdog()
        now = self.clock()
        with self._lock:
            snap = self._snapshot
            hung = list(self._hung.values())
            wedged = self._timer.hung is not None
        age = None if snap is None else max(0.0, now - snap.monotonic)
        limit = self.settings.stale_limit()
        reason = ""
        if wedged:
            reason = (f"NVML call {hung[-1].call} on GPU {hung[-1].gpu} hung for {now - hung[-1].since:.1f}s"
                      if hung else "NVML calls hang")
        elif snap is None and now - self._started_at > limit:
            reason = f"no complete GPU sampling cycle in {now - self._started_at:.1f}s"
        elif age is not None and age > limit:
            reason = f"last complete GPU sampling cycle is {age:.1f}s old (gpu.stale_after {limit:g}s)"
        return SamplerStatus(
            snapshot=snap,
            stale=bool(reason),
            reason=reason,
            age=age,
            expected=self.expected,
            hung=hung,
            backend=snap.backend if snap else ("none" if self._init_error else self.backend.kind),
            configured=self.settings.backend,
            profiling=snap.profiling if snap else "none",
            cycles=self.cycles,
            total_calls=self.total_calls,
        )

    # ---- one cycle -------------------------------------------------------------------------
    def run_cycle(self, generation: int | None = None) -> Snapshot | None:
        """Sample every GPU once and publish the snapshot. Runs in the sampler
        thread; tests and the benchmark call it directly."""
        gen = self._generation if generation is None else generation
        with self._lock:
            timer = self._timer if gen == self._generation else None
        if timer is None:
            raise Abandoned()
        timer.reset()
        self._local.timer = timer
        started = time.perf_counter()
        now = self.clock()
        if not self._initialized:
            # no driver (a CPU-only node) is reported every cycle: never stale
            if now < self._next_init or not self._init(timer, gen):
                return self._publish(gen, timer, started, [], error=self._init_error)
        elif now - self._mig_checked > _MIG_REFRESH:
            self._refresh_mig(timer)
        if not self.threads:
            self._drain_xids(timer)
        self._xid_log.flush(now)
        if self.needs_processes:
            self.jobs.begin_cycle()
        mapping = self.mapping.read() if self.mapping else {}
        states: list[GpuState] = []
        for gpu in self._gpus:
            # let a waiting scrape thread have the GIL between GPUs (a fake or a
            # fast driver keeps this thread busy in Python for milliseconds)
            time.sleep(0)
            self._check_current(gen)
            with self._lock:
                quarantined = self._quarantine.get(gpu.index)
            if quarantined is not None:
                states.append(self._down(gpu, f"hung in {quarantined}"))
                continue
            timer.gpu = gpu.index
            try:
                states.append(self._sample_gpu(timer, gpu, mapping, now))
            except GpuLost:
                states.append(self._down(gpu, "lost"))
            finally:
                timer.gpu = None
        self._check_current(gen)
        profiling = self._profiling
        if profiling is not None:
            self._add_profiling(timer, profiling, states)
        for state in states:
            if state.up:
                state.idle_seconds = self._idle(state, now)
        return self._publish(gen, timer, started, states)

    def _publish(self, gen: int, timer: TimedApi, started: float, states: list[GpuState],
                 error: str = "") -> Snapshot | None:
        self._log_unsupported()
        time.sleep(0)
        families = render_families(states, self.render_options)
        with self._lock:
            if gen != self._generation:
                raise Abandoned()
            self.cycles += 1
            self.total_calls += timer.calls
            snap = Snapshot(
                cycle=self.cycles,
                monotonic=self.clock(),
                wall=self.wall(),
                duration=time.perf_counter() - started,
                nvml_seconds=timer.seconds,
                nvml_calls=timer.calls,
                present=len(self._gpus),
                backend=self.backend.kind if self._initialized else "none",
                profiling=self._profiling.name if self._profiling is not None else "none",
                gpus=states,
                families=families,
                error=error,
            )
            self._snapshot = snap
        with self._cycle_cond:
            self._cycle_cond.notify_all()
        return snap

    # ---- initialisation -------------------------------------------------------------------
    def _init(self, timer: TimedApi, gen: int) -> bool:
        api = cast(NvmlApi, timer)
        try:
            api.nvmlInit()
        except pynvml.NVMLError as e:
            error = f"{type(e).__name__}: {e}"
            if error != self._init_error:
                # a CPU-only node says so once; the daemon runs on
                log.info("gpu_nvml_unavailable", error=error, retry_seconds=self.settings.init_retry)
            self._init_error = error
            self._next_init = self.clock() + self.settings.init_retry
            return False
        self._init_error = ""
        system_labels: dict[str, str] = {}
        for name in self.selection.label_fields:
            reader = rd.SYSTEM_LABELS.get(name)
            if reader is not None:
                try:
                    system_labels[name] = reader(api)
                except pynvml.NVMLError as e:
                    log.warning("gpu_label_field_unsupported", field=name, error=str(e))
        count = api.nvmlDeviceGetCount()
        gpus: list[_Gpu] = []
        for index in range(count):
            self._check_current(gen)
            with self._lock:
                quarantined = index in self._quarantine
            if quarantined:  # its discovery hung: rediscovered once the call returns
                gpus.append(_Gpu(index, None, labels=dict(system_labels), lost_at_start=True))
                continue
            timer.gpu = index
            try:
                gpus.append(self._discover(api, index, system_labels))
            except pynvml.NVMLError as e:
                log.error("gpu_discovery_failed", gpu=index, error=str(e))
                gpus.append(_Gpu(index, None, labels=dict(system_labels), lost_at_start=True))
            finally:
                timer.gpu = None
        self._check_current(gen)
        self._gpus = gpus
        self._refs = [GpuRef(g.index, g.uuid, g.handle, g.mig) for g in gpus if g.handle is not None]
        self._by_key = {handle_key(g.handle): g.index for g in gpus if g.handle is not None}
        self._mig_checked = self.clock()
        self._initialized = True
        log.info("gpu_nvml_initialised", gpus=count, backend=self.backend.kind,
                 driver=system_labels.get("DCGM_FI_DRIVER_VERSION", ""))
        self._setup_events(api)
        if not self._profiling_disabled:
            self._setup_profiling(timer, gen)
        return True

    def _setup_profiling(self, timer: TimedApi, gen: int) -> None:
        try:
            with timer.section(f"{_PROFILING}setup"):
                current = cast(NvmlApi, _CurrentTimer(self._local, timer))
                source = self.backend.profiling(current, self._refs)
        except Exception as e:  # profiling is optional: never fail sampling over it
            log.warning("gpu_profiling_unavailable", error=str(e))
            return
        if gen != self._generation:  # the setup hung: the watchdog disabled profiling
            if source is not None:
                with suppress(Exception):
                    source.close()
            raise Abandoned()
        self._profiling = source
        if source is not None:
            log.info("gpu_profiling", source=source.name)

    def _discover(self, api: NvmlApi, index: int, system_labels: dict[str, str]) -> _Gpu:
        handle = api.nvmlDeviceGetHandleByIndex(index)
        gpu = _Gpu(
            index,
            handle,
            uuid=rd.decode(api.nvmlDeviceGetUUID(handle)),
            pci_bus_id=rd.decode(api.nvmlDeviceGetPciInfo(handle).busId),
            model=rd.decode(api.nvmlDeviceGetName(handle)),
            labels=dict(system_labels),
        )
        for name in self.selection.label_fields:
            reader = rd.DEVICE_LABELS.get(name)
            if reader is None:
                continue
            try:
                gpu.labels[name] = reader(api, handle)
            except pynvml.NVMLError as e:
                log.warning("gpu_label_field_unsupported", gpu=index, field=name, error=str(e))
        gpu.mig = self._mig_instances(api, handle, index)
        return gpu

    def _mig_instances(self, api: NvmlApi, handle: Any, index: int) -> list[MigRef]:
        """The GPU instances of a MIG-enabled GPU ([] when MIG is off or not supported)."""
        try:
            current, _pending = api.nvmlDeviceGetMigMode(handle)
        except pynvml.NVMLError_GpuIsLost:
            raise
        except pynvml.NVMLError:
            return []
        if current != pynvml.NVML_DEVICE_MIG_ENABLE:
            return []
        out: list[MigRef] = []
        try:
            slots = api.nvmlDeviceGetMaxMigDeviceCount(handle)
        except pynvml.NVMLError as e:
            log.warning("gpu_mig_discovery_failed", gpu=index, error=str(e))
            return []
        for slot in range(slots):
            try:
                mig = api.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                gi = int(api.nvmlDeviceGetGpuInstanceId(mig))
                name = rd.decode(api.nvmlDeviceGetName(mig))
            except pynvml.NVMLError_NotFound:
                continue  # an empty slot
            except pynvml.NVMLError_GpuIsLost:
                raise
            except pynvml.NVMLError as e:
                log.warning("gpu_mig_discovery_failed", gpu=index, slot=slot, error=str(e))
                continue
            # "NVIDIA H100 80GB HBM3 MIG 1g.10gb" -> "1g.10gb", dcgm-exporter's GPU_I_PROFILE
            profile = name.split("MIG ", 1)[1].strip() if "MIG " in name else ""
            out.append(MigRef(gi, profile, mig))
        return out

    def _refresh_mig(self, timer: TimedApi) -> None:
        self._mig_checked = self.clock()
        api = cast(NvmlApi, timer)
        for gpu in self._gpus:
            if gpu.handle is None or gpu.index in self._quarantine:
                continue
            timer.gpu = gpu.index
            try:
                mig = self._mig_instances(api, gpu.handle, gpu.index)
            except pynvml.NVMLError:
                continue
            finally:
                timer.gpu = None
            if [(m.gi_id, m.profile) for m in mig] != [(m.gi_id, m.profile) for m in gpu.mig]:
                log.info("gpu_mig_layout_changed", gpu=gpu.index, instances=[m.profile for m in mig])
                gpu.mig = mig
        self._refs = [GpuRef(g.index, g.uuid, g.handle, g.mig) for g in self._gpus if g.handle is not None]

    # ---- XID events --------------------------------------------------------------------------
    def _setup_events(self, api: NvmlApi) -> None:
        if self._event_set is not None:
            return
        try:
            self._event_set = api.nvmlEventSetCreate()
        except pynvml.NVMLError as e:
            log.warning("gpu_xid_events_unavailable", error=str(e))
            return
        for gpu in self._gpus:
            if gpu.handle is not None:
                self._register_events(api, gpu)

    def _register_events(self, api: NvmlApi, gpu: _Gpu) -> None:
        """XID events of one GPU (at start, or when a GPU lost at start is back);
        the first registration starts the event thread."""
        if self._event_set is None:
            return
        try:
            api.nvmlDeviceRegisterEvents(gpu.handle, pynvml.nvmlEventTypeXidCriticalError, self._event_set)
        except pynvml.NVMLError as e:
            log.warning("gpu_xid_events_unsupported", gpu=gpu.index, error=str(e))
            return
        with self._lock:
            if self.threads and not self._xid_thread_started:
                self._xid_thread_started = True
                self._start_thread(self._xid_loop, "gpu-xid-events")

    def _xid_loop(self) -> None:
        api = self.backend.api  # waits block by design: not timed by the watchdog
        last_error = ""
        while not self._stop.is_set():
            try:
                data = api.nvmlEventSetWait_v2(self._event_set, 500)
            except pynvml.NVMLError_Timeout:
                continue
            except pynvml.NVMLError as e:
                if str(e) != last_error:
                    log.warning("gpu_xid_wait_failed", error=str(e))
                    last_error = str(e)
                self._stop.wait(5.0)
                continue
            last_error = ""
            self._record_event(data)

    def _drain_xids(self, timer: TimedApi) -> None:
        """Without threads (tests, benchmark), each cycle collects pending events."""
        if self._event_set is None:
            return
        api = cast(NvmlApi, timer)
        while True:
            try:
                data = api.nvmlEventSetWait_v2(self._event_set, 0)
            except pynvml.NVMLError:
                return
            self._record_event(data)

    def _record_event(self, data: Any) -> None:
        if not data.eventType & pynvml.nvmlEventTypeXidCriticalError:
            return
        index = self._by_key.get(handle_key(data.device))
        xid = int(data.eventData)
        if index is None:
            log.warning("gpu_xid_unknown_device", xid=xid)
            return
        now = self.clock()
        self._xid_log.record(index, xid, now)
        self.xids.record(index, xid, now)

    # ---- per GPU -------------------------------------------------------------------------------
    def _down(self, gpu: _Gpu, reason: str) -> GpuState:
        if self._down_logged.get(gpu.index) != reason:
            log.error("gpu_down", gpu=gpu.index, uuid=gpu.uuid, reason=reason)
            self._down_logged[gpu.index] = reason
        return GpuState(gpu.index, gpu.uuid, gpu.pci_bus_id, gpu.model, up=False, reason=reason,
                        labels=gpu.labels, xid=self.xids.view(gpu.index, self.clock()))

    def _unsupported_set(self, gpu: int, gi: int | None) -> set[str]:
        return self._unsupported.setdefault((gpu, gi), set())

    def _mark_unsupported(self, gpu: int, gi: int | None, fields: tuple[str, ...], error: Exception) -> None:
        """Remember NOT_SUPPORTED (never asked again); logged once per field at the end of the cycle."""
        unsupported = self._unsupported_set(gpu, gi)
        where = str(gpu) if gi is None else f"{gpu}.{gi}"
        for name in fields:
            if name not in unsupported:
                unsupported.add(name)
                self._new_unsupported.setdefault((name, str(error)), []).append(where)

    def _log_unsupported(self) -> None:
        for (name, error), gpus in sorted(self._new_unsupported.items()):
            log.warning("gpu_field_unsupported", field=name, gpus=gpus, error=error)
        self._new_unsupported.clear()

    def _transient(self, gpu: int, key: str, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"
        if self._errors.get((gpu, key)) != text:
            log.warning("gpu_read_failed", gpu=gpu, reader=key, error=text)
            self._errors[(gpu, key)] = text

    def _read(self, api: NvmlApi, gpu: int, gi: int | None, handle: Any,
              readers: list[rd.Reader]) -> dict[str, Value]:
        values: dict[str, Value] = {}
        unsupported = self._unsupported_set(gpu, gi)
        needed = self.needed
        for reader in readers:
            wanted = tuple(f for f in reader.fields if f in needed and f not in unsupported)
            if not wanted:
                continue
            try:
                result = reader.read(api, handle, wanted)
            except pynvml.NVMLError_GpuIsLost:
                raise GpuLost() from None
            except _UNSUPPORTED as e:
                self._mark_unsupported(gpu, gi, wanted, e)
                continue
            except pynvml.NVMLError as e:
                self._transient(gpu, reader.key, e)
                continue
            if (gpu, reader.key) in self._errors:
                del self._errors[(gpu, reader.key)]
            for name in wanted:
                value = result.get(name)
                if value is None:
                    continue
                if isinstance(value, pynvml.NVMLError):
                    if isinstance(value, pynvml.NVMLError_GpuIsLost):
                        raise GpuLost()
                    if isinstance(value, _UNSUPPORTED):
                        self._mark_unsupported(gpu, gi, (name,), value)
                    else:
                        self._transient(gpu, f"{reader.key}:{name}", value)
                    continue
                values[name] = value
        return values

    def _sample_gpu(self, timer: TimedApi, gpu: _Gpu, mapping: dict[str, list[str]], now: float) -> GpuState:
        api = cast(NvmlApi, timer)
        if gpu.handle is None:
            # lost when NVML enumerated it: try again, it may be back
            try:
                self._gpus[gpu.index] = fresh = self._discover(api, gpu.index, gpu.labels)
            except pynvml.NVMLError:
                raise GpuLost() from None
            self._by_key[handle_key(fresh.handle)] = fresh.index
            self._refs = [GpuRef(g.index, g.uuid, g.handle, g.mig) for g in self._gpus if g.handle is not None]
            self._register_events(api, fresh)
            gpu = fresh
        values = self._read(api, gpu.index, None, gpu.handle, self.readers)
        state = GpuState(gpu.index, gpu.uuid, gpu.pci_bus_id, gpu.model, values=values, labels=gpu.labels)
        for inst in gpu.mig:
            inst_values = self._read(api, gpu.index, inst.gi_id, inst.handle, self.mig_readers)
            state.mig.append(MigState(inst.gi_id, inst.profile, inst_values))
        if self._down_logged.pop(gpu.index, None):
            log.info("gpu_up", gpu=gpu.index)
        state.xid = self.xids.view(gpu.index, now)
        if rd.CLOCK_REASONS in values:
            state.clock_events = self._clock_events(gpu.index, int(values.pop(rd.CLOCK_REASONS)), now)
        self._attribute_jobs(api, gpu, state, mapping)
        return state

    def _clock_events(self, gpu: int, mask: int, now: float) -> dict[str, int]:
        history = self._clock_history.setdefault(gpu, deque())
        history.append((now, mask))
        horizon = now - self.settings.clock_events_count_window_ms / 1000.0
        while history and history[0][0] < horizon:
            history.popleft()
        counts: dict[str, int] = {}
        for bit, name in cat.CLOCK_EVENT_NAMES:
            n = sum(1 for _, m in history if m & bit)
            if n:
                counts[name] = n
        return counts

    def _attribute_jobs(self, api: NvmlApi, gpu: _Gpu, state: GpuState, mapping: dict[str, list[str]]) -> None:
        gpu_jobs: list[str] = list(mapping.get(str(gpu.index), ()))
        inst_jobs: dict[int, list[str]] = {m.gi_id: list(mapping.get(f"{gpu.index}.{m.gi_id}", ())) for m in gpu.mig}
        unsupported = self._unsupported_set(gpu.index, None)
        if self.needs_processes and _PROCESSES not in unsupported:
            try:
                procs = api.nvmlDeviceGetComputeRunningProcesses(gpu.handle)
            except pynvml.NVMLError_GpuIsLost:
                raise GpuLost() from None
            except _UNSUPPORTED as e:
                self._mark_unsupported(gpu.index, None, (_PROCESSES,), e)
                procs = None
            except pynvml.NVMLError as e:
                self._transient(gpu.index, _PROCESSES, e)
                procs = None
            if procs is not None:
                memory: dict[str, int] = {}
                for p in procs:
                    job = self.jobs.job_of(int(p.pid)) if self.settings.job_attribution else None
                    used = int(p.usedGpuMemory or 0)
                    memory[job or ""] = memory.get(job or "", 0) + used
                    if job is None:
                        continue
                    gi = getattr(p, "gpuInstanceId", None)
                    if gpu.mig and gi in inst_jobs:
                        inst_jobs[gi].append(job)
                    else:
                        gpu_jobs.append(job)
                state.processes = len(procs)
                state.process_memory = self._bounded_memory(memory, str(gpu.index))
        limit = self.settings.max_jobs_per_gpu
        state.jobs = bounded(gpu_jobs, limit, str(gpu.index), self._jobs_warned)
        for inst in state.mig:
            inst.jobs = bounded([*gpu_jobs, *inst_jobs.get(inst.gi_id, ())], limit,
                                f"{gpu.index}.{inst.gi_id}", self._jobs_warned)

    def _bounded_memory(self, memory: dict[str, int], where: str) -> dict[str, int]:
        """Memory per job for at most max_jobs_per_gpu jobs, picked as hpc_job's are;
        the other jobs' memory is folded into "" (no job)."""
        kept = set(bounded((job for job in memory if job), self.settings.max_jobs_per_gpu, where, self._jobs_warned))
        folded: dict[str, int] = {}
        for job, used in memory.items():
            key = job if job in kept else ""
            folded[key] = folded.get(key, 0) + used
        return folded

    def _add_profiling(self, timer: TimedApi, profiling: ProfilingSource, states: list[GpuState]) -> None:
        up = {s.index for s in states if s.up}
        refs = [r for r in self._refs if r.index in up]
        try:
            with timer.section(f"{_PROFILING}{profiling.name}"):
                values = profiling.sample(refs)
        except Exception as e:  # DCGM raises its own error classes
            self._transient(-1, "profiling", e)
            return
        by_index = {s.index: s for s in states}
        wanted = self.needed
        for (index, gi), fields in values.items():
            state = by_index.get(index)
            if state is None:
                continue
            picked = {k: v for k, v in fields.items() if k in wanted}
            if gi is None:
                state.values.update(picked)
            else:
                for inst in state.mig:
                    if inst.gi_id == gi:
                        inst.values.update(picked)

    def _idle(self, state: GpuState, now: float) -> float | None:
        """Seconds a GPU that belongs to a job has stayed below idle_threshold."""
        util = state.values.get("DCGM_FI_DEV_GPU_UTIL")
        if util is None:
            gr = state.values.get("DCGM_FI_PROF_GR_ENGINE_ACTIVE")
            util = None if gr is None else gr * 100
        if not state.jobs or util is None or state.mig:
            self._idle_since.pop(state.index, None)
            return None
        if util >= self.settings.idle_threshold:
            self._idle_since.pop(state.index, None)
            return 0.0
        jobs, since = self._idle_since.get(state.index, (state.jobs, now))
        if jobs != state.jobs:
            since = now  # another job now: its idle time starts here
        self._idle_since[state.index] = (state.jobs, since)
        return now - since
