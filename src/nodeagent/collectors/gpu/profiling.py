"""The optional profiling source (DCGM_FI_PROF_*): set up, sampled, suspended.

The source is DCGM (gpu/dcgm.py), NVML GPM (gpu/nvml.py) or the fake's.
Its calls are watched like NVML calls (sections named profiling_*), but a
hang there is not the driver being wedged: profiling is suspended, the GPUs
are sampled without it, and it is set up again after a back-off that
doubles with every hang (1 minute to 1 hour), once the stuck call returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, cast

import structlog

from nodeagent.collectors.gpu.state import GpuState
from nodeagent.collectors.gpu.watchdog import PROFILING_PREFIX, Abandoned, InFlight, TimedApi, Watchdog
from nodeagent.gpu.backend import Backend, GpuRef, NvmlApi, ProfilingSource

log = structlog.get_logger("nodeagent.collectors.gpu.sampler")

RETRY_FIRST = 60.0
RETRY_MAX = 3600.0


class _CurrentTimer:
    """The NvmlApi handed to profiling sources: calls go through the calling
    sampler thread's TimedApi, so a replacement thread is timed on its own."""

    def __init__(self, local: threading.local, fallback: Callable[[], TimedApi]) -> None:
        self._local = local
        self._fallback = fallback

    def __getattr__(self, name: str) -> Any:
        timer = getattr(self._local, "timer", None) or self._fallback()
        return getattr(timer, name)


class Profiling:
    def __init__(self, backend: Backend, watchdog: Watchdog, local: threading.local,
                 clock: Callable[[], float], start_timeout: float, needed: frozenset[str]) -> None:
        self.backend = backend
        self.watchdog = watchdog
        self.local = local
        self.clock = clock
        self.start_timeout = start_timeout
        self.needed = needed
        self.source: ProfilingSource | None = None
        self._retry_at: float | None = None
        self._backoff = RETRY_FIRST
        self.errors: Callable[[BaseException], None] = lambda e: None

    @property
    def name(self) -> str:
        return self.source.name if self.source is not None else "none"

    def setup(self, timer: TimedApi, gen: int, gpus: Sequence[GpuRef]) -> None:
        try:
            with timer.start_up(self.start_timeout), timer.section(f"{PROFILING_PREFIX}setup"):
                current = cast(NvmlApi, _CurrentTimer(self.local, lambda: self.watchdog.timer))
                source = self.backend.profiling(current, gpus)
        except Exception as e:  # profiling is optional: never fail sampling over it
            log.warning("gpu_profiling_unavailable", error=str(e))
            return
        if gen != self.watchdog.generation:  # the setup hung meanwhile: profiling is suspended
            if source is not None:
                with suppress(Exception):
                    source.close()
            raise Abandoned()
        self.source = source
        if source is not None:
            log.info("gpu_profiling", source=source.name)

    def hung(self, call: InFlight, held: float) -> None:
        """The watchdog found the source stuck (called under its lock)."""
        self.source = None
        self._retry_at = self.clock() + self._backoff
        log.error("gpu_profiling_disabled", call=call.name, seconds=round(held, 1),
                  retry_seconds=round(self._backoff))
        self._backoff = min(self._backoff * 2, RETRY_MAX)

    def add(self, timer: TimedApi, states: list[GpuState], gpus: Sequence[GpuRef], now: float) -> None:
        """This cycle's profiling values into the GPUs' (and MIG instances') values."""
        if self._retry_at is not None and now >= self._retry_at \
                and not any(h.profiling for h in self.watchdog.hung.values()):
            self._retry_at = None
            log.info("gpu_profiling_retry")
            self.setup(timer, timer.generation, gpus)
        source = self.source
        if source is None:
            return
        up = {s.index for s in states if s.up}
        try:
            with timer.section(f"{PROFILING_PREFIX}{source.name}"):
                values = source.sample([g for g in gpus if g.index in up])
        except Exception as e:  # DCGM raises its own error classes
            self.errors(e)
            return
        by_index = {s.index: s for s in states}
        for (index, gi), fields in values.items():
            state = by_index.get(index)
            if state is None:
                continue
            picked = {k: v for k, v in fields.items() if k in self.needed}
            if gi is None:
                state.values.update(picked)
            else:
                for inst in state.mig:
                    if inst.gi_id == gi:
                        inst.values.update(picked)

    def close(self) -> None:
        if self.source is not None:
            try:
                self.source.close()
            except Exception as e:  # closing must not fail shutdown
                log.info("gpu_profiling_close_failed", error=str(e))
            self.source = None
