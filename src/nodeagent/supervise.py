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
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass

import structlog

from nodeagent.catalogue import agent as agent_cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector

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


class Supervisor:
    def __init__(self, group: str, collectors: Sequence[Collector], timeout: float) -> None:
        self.group = group
        self.collectors = list(collectors)
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(
            max_workers=max(2, len(self.collectors) + 2), thread_name_prefix=f"collect-{group}"
        )
        self._stuck: dict[str, Future[tuple[list[MetricFamily], float]]] = {}
        self._last_ok: dict[str, bool] = {}
        self._lock = threading.Lock()

    def run_all(self) -> list[RunResult]:
        """Run every collector once, concurrently, all bounded by one deadline."""
        started = time.monotonic()
        futures: dict[str, tuple[Future[tuple[list[MetricFamily], float]], float]] = {}
        results: list[RunResult] = []
        for c in self.collectors:
            previous = self._stuck.get(c.name)
            if previous is not None and not previous.done():
                results.append(RunResult(c.name, [], 0.0, False, "still running from an earlier scrape"))
                continue
            self._stuck.pop(c.name, None)
            futures[c.name] = (self._pool.submit(_timed_collect, c), time.monotonic())
        if futures:
            wait_futures([f for f, _ in futures.values()], timeout=self.timeout)
        for name, (future, submitted) in futures.items():
            if not future.done():
                self._stuck[name] = future
                results.append(
                    RunResult(name, [], time.monotonic() - submitted, False, f"timed out after {self.timeout:g}s")
                )
                continue
            exc = future.exception()
            if exc is not None:
                duration = getattr(exc, "_nodeagent_duration", time.monotonic() - started)
                results.append(RunResult(name, [], duration, False, f"{type(exc).__name__}: {exc}"))
            else:
                families, duration = future.result()
                results.append(RunResult(name, families, duration, True))
        order = {c.name: i for i, c in enumerate(self.collectors)}
        results.sort(key=lambda r: order[r.name])
        self._log_changes(results)
        return results

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
        self._pool.shutdown(wait=False, cancel_futures=True)


def _timed_collect(collector: Collector) -> tuple[list[MetricFamily], float]:
    started = time.monotonic()
    try:
        families = list(collector.collect())
    except Exception as e:
        # the duration of a failed run still belongs in the meta metrics
        e._nodeagent_duration = time.monotonic() - started  # type: ignore[attr-defined]
        raise
    return families, time.monotonic() - started
