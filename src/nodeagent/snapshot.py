"""One group's collection, shared by every scrape and sink that asks for it.

Scrapes arriving while a collection runs wait for it instead of starting
their own, and a burst of scrapes cannot collect more often than
min_interval: they get the last snapshot. The rendered text (and its gzip) is
made once per collection, not once per scrape.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from nodeagent.exposition import render
from nodeagent.model import MetricFamily, merge_families
from nodeagent.supervise import RunResult, Supervisor

log = structlog.get_logger("nodeagent.snapshot")


@dataclass
class Snapshot:
    families: list[MetricFamily]
    results: list[RunResult]
    taken_monotonic: float
    taken_wall: float
    body: bytes
    _gzipped: bytes | None = field(default=None, repr=False)
    _gzip_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def gzipped(self) -> bytes:
        with self._gzip_lock:
            if self._gzipped is None:
                self._gzipped = gzip.compress(self.body, compresslevel=5)
            return self._gzipped

    def gzipped_if_ready(self) -> bytes | None:
        """The gzipped body if it was made already, else None (never compresses)."""
        return self._gzipped


class GroupCollection:
    def __init__(
        self,
        group: str,
        supervisor: Supervisor,
        min_interval: float,
        extra: Callable[[], list[MetricFamily]] | None = None,
    ) -> None:
        self.group = group
        self.supervisor = supervisor
        self.min_interval = min_interval
        self.extra = extra
        self._cond = threading.Condition()
        self._snapshot: Snapshot | None = None
        self._collecting = False
        self._problems: set[str] = set()

    def get(self, max_age: float | None = None) -> Snapshot:
        """The last snapshot if younger than max_age (default min_interval),
        else a new one; concurrent callers share one collection."""
        limit = self.min_interval if max_age is None else max_age
        with self._cond:
            while True:
                snap = self._snapshot
                if snap is not None and time.monotonic() - snap.taken_monotonic < limit:
                    return snap
                if not self._collecting:
                    self._collecting = True
                    break
                self._cond.wait()
                # a collection finished while we waited: it is as fresh as it gets
                if self._snapshot is not None and self._snapshot is not snap:
                    return self._snapshot
        fresh: Snapshot | None = None
        try:
            fresh = self._collect()
        finally:
            with self._cond:
                if fresh is not None:
                    self._snapshot = fresh
                self._collecting = False
                self._cond.notify_all()
        return fresh

    def fresh(self) -> Snapshot | None:
        """The last snapshot if younger than min_interval, else None: what get()
        would return without waiting or collecting."""
        snap = self._snapshot
        if snap is not None and time.monotonic() - snap.taken_monotonic < self.min_interval:
            return snap
        return None

    def _collect(self) -> Snapshot:
        results = self.supervisor.run_all()
        families: list[MetricFamily] = []
        for r in results:
            families.extend(r.families)
        problems: set[str] = set()
        families = merge_families(families, problems)
        families.extend(self.supervisor.meta_families(results))
        if self.extra is not None:
            families.extend(self.extra())
        bad: list[str] = []
        body = render(families, bad)
        if bad:
            problems |= set(bad)
            families = [f for f in families if f.name not in bad]
        if problems != self._problems:  # logged when the set changes, not every scrape
            self._problems = problems
            if problems:
                log.error("metric_conflict", metrics=sorted(problems),
                          error="left out: emitted twice (other labels or type, or the same series), or not a number")
        return Snapshot(
            families=families,
            results=results,
            taken_monotonic=time.monotonic(),
            taken_wall=time.time(),
            body=body,
        )

    def close(self) -> None:
        self.supervisor.close()
