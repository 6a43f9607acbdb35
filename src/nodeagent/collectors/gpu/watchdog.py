"""The NVML hang watchdog: every driver call is timed, a stuck one is parked.

A wedged driver blocks an NVML call in the kernel, and nothing in Python can
interrupt it. Every call the sampler makes goes through a `TimedApi`, which
records the call in flight. `Watchdog.check()` (run by a watchdog thread and
by every status read) declares a call hung once it has been in flight longer
than its limit: the sampler thread that made it is abandoned (its generation
ends), the GPU it was asking about is quarantined, and the sampler starts a
replacement thread that samples the other GPUs. Past `max_hung_calls` hung
calls the driver counts as wedged: no replacement is started, and the
snapshot goes stale until a call returns.

Start-up is slow on real nodes (nvmlInit without persistence mode loads the
driver state of every GPU; DCGM's embedded host engine takes seconds), so a
call made during start-up is held to `start_timeout`, not `call_timeout`.

A hang in the optional profiling source is not counted towards
`max_hung_calls`: the sampler suspends profiling and retries it later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog

log = structlog.get_logger("nodeagent.collectors.gpu.sampler")

PROFILING_PREFIX = "profiling_"  # sections that watch the profiling source


class Abandoned(Exception):
    """The watchdog replaced this sampler thread while it was stuck."""


class InFlight(NamedTuple):
    """The call a sampler thread is in, published as one value."""

    name: str
    since: float
    seq: int  # per call: the watchdog's verdict is matched on it, never on `since`
    gpu: int | None
    profiling: bool  # in the optional profiling source (a profiling_* section)
    limit: float  # seconds it may take before it counts as hung


@dataclass(frozen=True)
class HungCall:
    generation: int
    gpu: int | None
    call: str
    since: float
    profiling: bool = False  # in the profiling source: not counted towards max_hung_calls


class TimedApi:
    """Wraps an NvmlApi: times and counts calls, records the call in flight.

    `current` and `hung` are read and written under the watchdog's lock, so it
    never sees half of a call's bookkeeping.
    """

    def __init__(self, api: Any, clock: Callable[[], float], generation: int, lock: threading.Lock,
                 on_release: Callable[[TimedApi], None], limit: float) -> None:
        self._api = api
        self._clock = clock
        self._lock = lock
        self._on_release = on_release
        self.generation = generation
        self.limit = limit  # the limit of calls made from now on (start-up raises it)
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

    @contextmanager
    def start_up(self, limit: float) -> Iterator[None]:
        """Calls made inside may take up to `limit` seconds (driver start-up)."""
        before, self.limit = self.limit, limit
        try:
            yield
        finally:
            self.limit = before

    def _enter(self, name: str) -> InFlight | None:
        since = self._clock()
        with self._lock:
            outer = self.current
            self._seq += 1
            profiling = name.startswith(PROFILING_PREFIX) or (outer is not None and outer.profiling)
            self.current = InFlight(name, since, self._seq, self.gpu, profiling, self.limit)
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


class Watchdog:
    """Owns the sampler generations: which TimedApi is current, which calls
    hang, which GPUs are quarantined."""

    def __init__(self, api: Any, clock: Callable[[], float], *, call_timeout: float, max_hung_calls: int,
                 on_profiling_hang: Callable[[InFlight, float], None],
                 spawn: Callable[[int], None]) -> None:
        self.lock = threading.Lock()
        self._api = api
        self._clock = clock
        self._call_timeout = call_timeout
        self._max_hung_calls = max_hung_calls
        self._on_profiling_hang = on_profiling_hang
        self._spawn = spawn  # start a sampler thread for a generation (called under the lock)
        self.generation = 0
        self.timer = self._new_timer(0)
        self.hung: dict[int, HungCall] = {}
        self.quarantine: dict[int, str] = {}
        self._wedged_logged = False

    def _new_timer(self, generation: int) -> TimedApi:
        return TimedApi(self._api, self._clock, generation, self.lock, self._released, self._call_timeout)

    def timer_for(self, generation: int) -> TimedApi:
        """The TimedApi of a generation that is still current, else Abandoned."""
        with self.lock:
            if generation != self.generation:
                raise Abandoned()
            return self.timer

    def ensure_current(self, generation: int) -> None:
        if generation != self.generation:
            raise Abandoned()

    def quarantined(self, gpu: int) -> str | None:
        with self.lock:
            return self.quarantine.get(gpu)

    def check(self) -> None:
        """Declare the current thread's call hung after its limit; replace the
        thread unless too many calls hang already."""
        with self.lock:
            timer = self.timer
            call = timer.current
            if call is None or timer.hung is not None:
                return
            held = self._clock() - call.since
            if held <= call.limit:
                return
            timer.hung = call
            self.hung[timer.generation] = HungCall(timer.generation, call.gpu, call.name, call.since, call.profiling)
            if call.profiling:
                self._on_profiling_hang(call, held)
            else:
                if call.gpu is not None:
                    self.quarantine[call.gpu] = call.name
                log.error("gpu_nvml_call_hung", gpu=call.gpu, call=call.name, seconds=round(held, 1))
                hung_calls = sum(1 for h in self.hung.values() if not h.profiling)
                if hung_calls > self._max_hung_calls:
                    if not self._wedged_logged:
                        log.error("gpu_sampler_wedged", hung_calls=hung_calls)
                        self._wedged_logged = True
                    return
            self.generation += 1
            self.timer = self._new_timer(self.generation)
            self._spawn(self.generation)

    def _released(self, timer: TimedApi) -> None:
        with self.lock:
            hung = self.hung.pop(timer.generation, None)
            timer.hung = None
            if hung is None:
                return
            if hung.gpu is not None and self.quarantine.get(hung.gpu) == hung.call:
                del self.quarantine[hung.gpu]
            self._wedged_logged = False
        log.warning("gpu_nvml_call_returned", gpu=hung.gpu, call=hung.call,
                    seconds=round(self._clock() - hung.since, 1))

    def reason(self) -> str:
        """Why the sampler is wedged ("" when it is not)."""
        with self.lock:
            if self.timer.hung is None:
                return ""
            hung = list(self.hung.values())
        if not hung:
            return "NVML calls hang"
        last = hung[-1]
        return f"NVML call {last.call} on GPU {last.gpu} hung for {self._clock() - last.since:.1f}s"
