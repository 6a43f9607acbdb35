"""The GPU sampler: a background thread that samples every GPU each gpu.interval.

Each cycle reads every GPU through the NVIDIA source (source.py), runs the
enrichers (enrich.py: jobs, idle time, clock events, NVLink rate), renders
the families once (render.py) and publishes a complete Snapshot; scrapes
only read the last one and never call NVML. Every driver call goes through
the watchdog (watchdog.py); XIDs come from events.py.

A GPU that is lost or whose call hangs is reported down and the others are
sampled; an error in one read costs that read only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import cast

import pynvml
import structlog

from nodeagent.catalogue import gpu as cat
from nodeagent.collectors.gpu import enrich
from nodeagent.collectors.gpu.events import XidSources
from nodeagent.collectors.gpu.jobs import JobResolver, MappingDir
from nodeagent.collectors.gpu.profiling import Profiling
from nodeagent.collectors.gpu.render import RenderOptions, render_families, select_counters
from nodeagent.collectors.gpu.source import DiscoveredGpu, GpuLost, NvidiaSource
from nodeagent.collectors.gpu.state import GpuState, MigState, Snapshot
from nodeagent.collectors.gpu.watchdog import Abandoned, HungCall, TimedApi, Watchdog
from nodeagent.collectors.gpu.xid import XidLogLimiter, XidTracker
from nodeagent.gpu.backend import Backend, GpuRef, NvmlApi, open_backend
from nodeagent.gpu.counters import CounterRow, default_counters, load_counters_file
from nodeagent.gpu.settings import GpuSettings
from nodeagent.host import Host
from nodeagent.instances import expected_gpus

log = structlog.get_logger(__name__)

__all__ = ["Abandoned", "HungCall", "Sampler", "SamplerStatus", "TimedApi"]

_MIG_REFRESH = 60.0
_XID_LOG_PERIOD = 600.0  # a repeated XID is logged once, then summarised at most this often
# dcgm-exporter's windows read DCGM's value history, which keeps 600 s
# (internal/pkg/devicewatcher/const.go, maxKeepAge): longer windows count 600 s.
_DCGM_MAX_KEEP_AGE = 600.0


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


class Sampler:
    def __init__(self, settings: GpuSettings, host: Host, hostname: str, *, backend: Backend | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 counters: list[CounterRow] | None = None, threads: bool = True,
                 watch_period: float = 0.5) -> None:
        self.settings = settings
        self.host = host
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
            log.warning("gpu_counter_unknown", field=row.name, line=row.line, file=settings.counters_file or "default")
        for row in self.selection.mismatched:
            log.warning("gpu_counter_type_unsupported", field=row.name, type=row.type, line=row.line,
                        file=settings.counters_file or "default")
        self.render_options = RenderOptions(
            selection=self.selection, hostname=hostname, hostname_label=settings.hostname_label,
            xid_window_ms=settings.xid_count_window_ms, clock_window_ms=settings.clock_events_count_window_ms,
            process_metrics=settings.process_metrics, idle_after=settings.idle_after,
        )
        # what the cycle reads: the selected fields, utilisation for the idle
        # signal, the recovery action for health, numeric label fields, clock reasons
        needed = set(self.selection.field_names) | {"DCGM_FI_DEV_GPU_UTIL", cat.GPU_RECOVERY_ACTION.name}
        needed |= {n for n in self.selection.label_fields if n in cat.DCGM_FIELDS}
        if self.selection.exporter_enabled(cat.EXP_CLOCK_EVENTS_COUNT.name):
            needed.add(enrich.CLOCK_REASONS)
        self.needed = frozenset(needed)
        self.source = NvidiaSource(self.needed, self.selection.label_fields, clock, settings.reprobe_interval,
                                   settings.process_interval)
        self.needs_processes = settings.job_attribution or settings.process_metrics
        self.xids = XidTracker(min(settings.xid_count_window_ms / 1000.0, _DCGM_MAX_KEEP_AGE))
        self.events = XidSources(host, self.xids, XidLogLimiter(_XID_LOG_PERIOD), clock, threads,
                                 settings.kernel_log)
        self.jobs = JobResolver(host)
        self.mapping = MappingDir(host, settings.hpc_job_mapping_dir) if settings.hpc_job_mapping_dir else None
        self._jobs_warned: set[str] = set()
        self.expected = expected_gpus(host, settings.expected_gpus, self.backend.instance_type)

        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cycle_cond = threading.Condition()
        self.watchdog = Watchdog(self.backend.api, clock, call_timeout=settings.call_timeout,
                                 max_hung_calls=settings.max_hung_calls,
                                 on_profiling_hang=lambda call, held: self.profiling.hung(call, held),
                                 spawn=self._spawn_locked)
        self._lock = self.watchdog.lock
        self._local = threading.local()
        self.profiling = Profiling(self.backend, self.watchdog, self._local, clock, settings.start_timeout,
                                   self.needed)
        self.profiling.errors = lambda e: self.source.transient(-1, "profiling", e)
        self._snapshot: Snapshot | None = None
        self._started_at = clock()
        self._threads: list[threading.Thread] = []
        self._xid_thread_started = False

        self._initialized = False
        self._init_error = ""
        self._next_init = 0.0
        self._gpus: list[DiscoveredGpu] = []
        self._mig_checked = 0.0
        self._down_logged: dict[int, str] = {}
        self.enricher = enrich.CycleEnricher(
            self.xids, settings.idle_threshold,
            min(settings.clock_events_count_window_ms / 1000.0, _DCGM_MAX_KEEP_AGE))
        self.cycles = 0
        self.total_calls = 0

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        if not self.threads:
            return
        with self._lock:
            self._spawn_locked(self.watchdog.generation)
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
        if any(t.is_alive() for t in threads) or self.watchdog.hung:
            log.warning("gpu_sampler_close_stuck", hung=len(self.watchdog.hung))
            return
        self.profiling.close()
        if self._initialized:
            self.events.close(self.backend.api)
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

    def check_watchdog(self) -> None:
        self.watchdog.check()

    def _spawn_locked(self, generation: int) -> None:
        """Start a sampler thread for a generation (under the watchdog's lock)."""
        if not self.threads or self._stop.is_set():
            return
        self._threads = [t for t in self._threads if t.is_alive()]  # parked threads that returned
        self._start_thread(lambda: self._loop(generation), f"gpu-sampler-{generation}")

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
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
            if self.watchdog.generation != generation:
                return
            self._wake.wait(self.settings.interval)
            self._wake.clear()

    def _watch_loop(self) -> None:
        while not self._stop.wait(self.watch_period):
            self.watchdog.check()

    def _xid_loop(self) -> None:
        self.events.wait_loop(self.backend.api, self._stop.wait)

    # ---- status for the collectors ------------------------------------------------------
    def status(self) -> SamplerStatus:
        self.watchdog.check()
        now = self.clock()
        with self._lock:
            snap = self._snapshot
            hung = list(self.watchdog.hung.values())
        age = None if snap is None else max(0.0, now - snap.monotonic)
        limit = self.settings.stale_limit()
        reason = self.watchdog.reason()
        if reason:
            pass  # wedged: that is the reason
        elif snap is None and now - self._started_at > max(limit, self.settings.start_timeout):
            reason = f"no complete GPU sampling cycle in {now - self._started_at:.1f}s"
        elif age is not None and age > limit:
            reason = f"last complete GPU sampling cycle is {age:.1f}s old (gpu.stale_after {limit:g}s)"
        return SamplerStatus(
            snapshot=snap, stale=bool(reason), reason=reason, age=age, expected=self.expected, hung=hung,
            backend=snap.backend if snap else ("none" if self._init_error else self.backend.kind),
            configured=self.settings.backend, profiling=snap.profiling if snap else "none",
            cycles=self.cycles, total_calls=self.total_calls,
        )

    # ---- one cycle -------------------------------------------------------------------------
    def run_cycle(self, generation: int | None = None) -> Snapshot | None:
        """Sample every GPU once and publish the result. Runs in the sampler
        thread; tests and the benchmark call it directly."""
        gen = self.watchdog.generation if generation is None else generation
        timer = self.watchdog.timer_for(gen)
        timer.reset()
        self._local.timer = timer
        api = cast(NvmlApi, timer)
        started = time.perf_counter()
        now = self.clock()
        if not self._initialized and (now < self._next_init or not self._init(timer, gen)):
            # no driver (a CPU-only node) is reported every cycle: never stale
            return self._publish(gen, timer, started, [], error=self._init_error)
        if now - self._mig_checked > _MIG_REFRESH:
            self._refresh_mig(timer)
        self._read_xids(api)
        self.source.begin_cycle()
        if self.needs_processes:
            self.jobs.begin_cycle()
        mapping = self.mapping.read() if self.mapping else {}
        states = [self._sample_gpu(timer, gen, gpu, mapping, now) for gpu in self._gpus]
        self.watchdog.ensure_current(gen)
        self.profiling.add(timer, states, self._refs(), now)
        self.enricher.run(states, now)
        self._start_event_thread()
        return self._publish(gen, timer, started, states)

    def _start_event_thread(self) -> None:
        """Once a GPU registered for XID events, a thread waits for them."""
        if self.events.wants_thread and not self._xid_thread_started:
            with self._lock:
                self._xid_thread_started = True
                self._start_thread(self._xid_loop, "gpu-xid-events")

    def _read_xids(self, api: NvmlApi) -> None:
        if not self.threads:
            self.events.drain(api)
        self.events.poll_kernel_log()
        self.events.log_limiter.flush(self.clock())

    def _sample_gpu(self, timer: TimedApi, gen: int, gpu: DiscoveredGpu, mapping: dict[str, list[str]],
                    now: float) -> GpuState:
        # let a waiting scrape thread have the GIL between GPUs (a fake or a
        # fast driver keeps this thread busy in Python for milliseconds)
        time.sleep(0)
        self.watchdog.ensure_current(gen)
        quarantined = self.watchdog.quarantined(gpu.index)
        if quarantined is not None:
            return self._down(gpu, f"hung in {quarantined}")
        timer.gpu = gpu.index
        try:
            return self._read_gpu(cast(NvmlApi, timer), gpu, mapping, now)
        except GpuLost as e:
            return self._down(gpu, e.reason)
        finally:
            timer.gpu = None

    def _read_gpu(self, api: NvmlApi, gpu: DiscoveredGpu, mapping: dict[str, list[str]], now: float) -> GpuState:
        if gpu.handle is None:  # lost when NVML enumerated it: it may be back
            try:
                gpu = self._gpus[gpu.index] = self.source.discover(api, gpu.index, gpu.labels)
            except pynvml.NVMLError:
                raise GpuLost() from None
            self.events.know(gpu.index, gpu.handle, gpu.pci_bus_id)
            self.events.register(api, gpu.index, gpu.handle)
        state = GpuState(gpu.index, gpu.uuid, gpu.pci_bus_id, gpu.model, labels=gpu.labels,
                         values=self.source.read(api, gpu.index, None, gpu.handle))
        for inst in gpu.mig:
            state.mig.append(MigState(inst.gi_id, inst.profile, self.source.read(api, gpu.index, inst.gi_id,
                                                                                 inst.handle)))
        processes = self.source.processes(api, gpu) if self.needs_processes else None
        attribution = enrich.attribute_jobs(
            gpu.index, [m.gi_id for m in gpu.mig], processes,
            self.jobs.job_of if self.settings.job_attribution else None,
            mapping, self.settings.max_jobs_per_gpu, self._jobs_warned,
        )
        state.jobs = attribution.gpu_jobs
        for inst_state in state.mig:
            inst_state.jobs = attribution.instance_jobs.get(inst_state.gi_id, ())
        state.processes, state.process_memory = attribution.processes, attribution.memory
        if self._down_logged.pop(gpu.index, None):
            log.info("gpu_up", gpu=gpu.index)
        return state

    def _down(self, gpu: DiscoveredGpu, reason: str) -> GpuState:
        if self._down_logged.get(gpu.index) != reason:
            log.error("gpu_down", gpu=gpu.index, uuid=gpu.uuid, reason=reason)
            self._down_logged[gpu.index] = reason
        return GpuState(gpu.index, gpu.uuid, gpu.pci_bus_id, gpu.model, up=False, reason=reason, labels=gpu.labels)

    def _publish(self, gen: int, timer: TimedApi, started: float, states: list[GpuState],
                 error: str = "") -> Snapshot | None:
        self.source.end_cycle()
        time.sleep(0)
        families = render_families(states, self.render_options)
        with self._lock:
            if gen != self.watchdog.generation:
                raise Abandoned()
            self.cycles += 1
            self.total_calls += timer.calls
            snap = self._snapshot = Snapshot(
                cycle=self.cycles, monotonic=self.clock(), wall=self.wall(),
                duration=time.perf_counter() - started, nvml_seconds=timer.seconds, nvml_calls=timer.calls,
                present=len(self._gpus), backend=self.backend.kind if self._initialized else "none",
                profiling=self.profiling.name,
                gpus=states, families=families, error=error,
            )
        with self._cycle_cond:
            self._cycle_cond.notify_all()
        return snap

    # ---- start-up and MIG ------------------------------------------------------------------
    def _init(self, timer: TimedApi, gen: int) -> bool:
        api = cast(NvmlApi, timer)
        with timer.start_up(self.settings.start_timeout):
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
            system_labels = self.source.system_labels(api)
            self._gpus = [self._discover(timer, gen, index, system_labels)
                          for index in range(api.nvmlDeviceGetCount())]
        self.watchdog.ensure_current(gen)
        self._mig_checked = self.clock()
        self._initialized = True
        log.info("gpu_nvml_initialised", gpus=len(self._gpus), backend=self.backend.kind,
                 driver=system_labels.get("DCGM_FI_DRIVER_VERSION", ""))
        self.events.setup_events(api)
        for gpu in self._gpus:
            if gpu.handle is not None:
                self.events.know(gpu.index, gpu.handle, gpu.pci_bus_id)
                self.events.register(api, gpu.index, gpu.handle)
        self.profiling.setup(timer, gen, self._refs())
        return True

    def _refs(self) -> list[GpuRef]:
        return [g.ref() for g in self._gpus if g.handle is not None]

    def _discover(self, timer: TimedApi, gen: int, index: int, system_labels: dict[str, str]) -> DiscoveredGpu:
        self.watchdog.ensure_current(gen)
        if self.watchdog.quarantined(index) is not None:  # its discovery hung: retried once it returns
            return DiscoveredGpu(index, None, labels=dict(system_labels))
        return self.source.discover_or_placeholder(timer, index, system_labels)

    def _refresh_mig(self, timer: TimedApi) -> None:
        self._mig_checked = self.clock()
        self.source.refresh_mig(timer, [g for g in self._gpus if self.watchdog.quarantined(g.index) is None])
