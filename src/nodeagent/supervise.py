"""Runs collectors under a timeout and records how each run went.

The supervisor is the only place with health logic: a collector raises, the
supervisor turns that into `..._collector_success 0`, records the duration,
and logs on a change of state (not on every scrape). Nothing a collector does
escapes: not an exception, and not a hang, because each run happens in a
worker thread the scrape waits on for at most the timeout. A collector still
stuck from an earlier run is not started again until it returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from nodeagent.catalogue import agent as agent_cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector
from nodeagent.workers import DaemonWorkers

log = structlog.get_logger("nodeagent.supervise")


@dataclass(frozen=True)
class RunResult:
    name: str
    families: list[MetricFamily]
    duration: float
    success: bool
    error: str | None = None

    @property
    def series(self) -> int:
        return sum(len(f.samples) for f in self.families)


class _Batch:
    """Collectors run one after another in one worker thread: one thread
    hand-off per scrape instead of one per collector. The supervisor watches
    the collector in progress; one that overruns the timeout is abandoned with
    its thread, and the rest of the batch continues in a fresh one."""

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors
        self.results: dict[str, RunResult] = {}
        self.current: Collector | None = None
        self.current_started = 0.0
        self.done = False
        self.abandoned = False
        self.cond = threading.Condition()

    def run(self) -> None:
        for c in self.collectors:
            with self.cond:
                if self.abandoned:
                    break
                self.current, self.current_started = c, time.monotonic()
            started = time.monotonic()
            try:
                result = RunResult(c.name, list(c.collect()), time.monotonic() - started, True)
            except Exception as e:
                result = RunResult(c.name, [], time.monotonic() - started, False, f"{type(e).__name__}: {e}")
            with self.cond:
                self.results[c.name] = result
                self.current = None
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def still_running(self, collector: Collector) -> bool:
        with self.cond:
            return self.current is collector


class Supervisor:
    def __init__(self, group: str, collectors: Sequence[Collector], timeout: float) -> None:
        self.group = group
        self.collectors = list(collectors)
        self.timeout = timeout
        self._workers = DaemonWorkers(f"collect-{group}")
        # collectors whose earlier run is still stuck, and the batch it is stuck in
        self._stuck: dict[str, _Batch] = {}
        self._last_ok: dict[str, bool] = {}
        self._lock = threading.Lock()

    def run_all(self) -> list[RunResult]:
        """Run every collector once; each one is bounded by the timeout."""
        results: dict[str, RunResult] = {}
        runnable: list[Collector] = []
        for c in self.collectors:
            stuck = self._stuck.get(c.name)
            if stuck is not None and stuck.still_running(c):
                results[c.name] = RunResult(c.name, [], 0.0, False, "still running from an earlier scrape")
            else:
                self._stuck.pop(c.name, None)
                runnable.append(c)
        while runnable:
            batch = _Batch(runnable)
            self._workers.submit(batch.run)
            hung = self._wait(batch)
            results.update(batch.results)
            if hung is not None:
                results[hung.name] = RunResult(
                    hung.name, [], time.monotonic() - batch.current_started, False,
                    f"timed out after {self.timeout:g}s",
                )
                self._stuck[hung.name] = batch
            runnable = [c for c in runnable if c.name not in results]
        ordered = [results[c.name] for c in self.collectors]
        self._log_changes(ordered)
        return ordered

    def _wait(self, batch: _Batch) -> Collector | None:
        """Wait for the batch; the collector that overran the timeout, if any
        (the batch is then abandoned: it stops after that collector returns)."""
        with batch.cond:
            while not batch.done:
                current = batch.current
                if current is None:  # between two collectors, or not started yet
                    batch.cond.wait(self.timeout)
                    continue
                remaining = batch.current_started + self.timeout - time.monotonic()
                if remaining <= 0:
                    batch.abandoned = True
                    return current
                batch.cond.wait(remaining)
        return None

    def _log_changes(self, results: list[RunResult]) -> None:
        with self._lock:
            for r in results:
                before = self._last_ok.get(r.name)
                self._last_ok[r.name] = r.success
                if r.success and before is False:
                    log.info("collector_recovered", collector=r.name, group=self.group)
                elif not r.success and before is not False:
                    log.warning("collector_failed", collector=r.name, group=self.group, error=r.error)

    def meta_families(self, results: list[RunResult]) -> list[MetricFamily]:
        if self.group == "host":
            duration, success = agent_cat.NODE_SCRAPE_DURATION.family(), agent_cat.NODE_SCRAPE_SUCCESS.family()
        else:
            duration, success = agent_cat.AGENT_SCRAPE_DURATION.family(), agent_cat.AGENT_SCRAPE_SUCCESS.family()
        for r in results:
            duration.add((r.name,), r.duration)
            success.add((r.name,), 1.0 if r.success else 0.0)
        return [duration, success]

    def close(self) -> None:
        for c in self.collectors:
            try:
                c.close()
            except Exception as e:  # a broken close must not block shutdown
                log.warning("collector_close_failed", collector=c.name, error=str(e))
        self._workers.close()
