"""XID errors: the bookkeeping behind DCGM_FI_DEV_XID_ERRORS, the XID window and health.

dcgm-exporter's DCGM_FI_DEV_XID_ERRORS is the last XID seen, so a repeat is
invisible. Every XID is counted here per GPU and XID code
(nodeagent_gpu_xid_errors_total), kept in a time window
(DCGM_EXP_XID_ERRORS_COUNT) and classified (xid_catalogue.py); only the
node-action XIDs turn the per-GPU health series to 0.

XIDs arrive from two sources: NVML's event set and the kernel log
(/dev/kmsg, which DCGM reads too since 3.3.7). The same XID usually comes
from both, in either order, and either may miss some. Each source counts
what it saw per (GPU, GPU instance, XID); an arrival is a new XID only when
its source has now seen more of that key than any other source, so every
XID is counted once: the total is the larger of the sources' counts.

An XID that carries a MIG GPU-instance id is recorded against that instance.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import structlog

from nodeagent.collectors.gpu.xid_catalogue import NODE_ACTION_XIDS, classify

log = structlog.get_logger(__name__)

__all__ = ["NODE_ACTION_XIDS", "XidLogLimiter", "XidTracker", "XidView", "classify"]

Key = tuple[int, int | None, int]  # (gpu, gpu instance or None, xid)


@dataclass
class XidView:
    last: int = 0
    counts: dict[int, int] = field(default_factory=dict)
    node_action_xid: int = 0
    window: dict[int, int] = field(default_factory=dict)


@dataclass
class _Series:
    last: int = 0
    recent: deque[tuple[float, int]] = field(default_factory=deque)


class XidTracker:
    """Thread-safe: the event and kernel-log readers record, the sampler reads."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._lock = threading.Lock()
        self._seen: dict[str, Counter[Key]] = {}  # source -> what it reported
        self._counts: dict[int, Counter[int]] = {}  # gpu -> xid -> count (every instance)
        self._node_action: dict[int, int] = {}
        self._series: dict[tuple[int, int | None], _Series] = {}

    def record(self, gpu: int, xid: int, now: float, *, gi: int | None = None, source: str = "nvml") -> bool:
        """Record an XID that happened at `now`; False when another source
        already reported it."""
        key = (gpu, gi, xid)
        with self._lock:
            seen = self._seen.setdefault(source, Counter())
            seen[key] += 1
            if any(other[key] >= seen[key] for name, other in self._seen.items() if name != source):
                return False
            self._counts.setdefault(gpu, Counter())[xid] += 1
            if xid in NODE_ACTION_XIDS:
                self._node_action[gpu] = xid
            series = self._series.setdefault((gpu, gi), _Series())
            series.last = xid
            series.recent.append((now, xid))
            return True

    def view(self, gpu: int, now: float, gi: int | None = None) -> XidView:
        """A GPU's XIDs; with gi, one MIG instance's (its own XIDs and the
        GPU-wide ones, which concern every instance)."""
        with self._lock:
            counts = self._counts.get(gpu)
            if counts is None:
                return XidView()
            horizon = now - self.window
            keys = [(gpu, None)] if gi is None else [(gpu, None), (gpu, gi)]
            if gi is None:  # the whole GPU: every instance's XIDs too
                keys += [k for k in self._series if k[0] == gpu and k[1] is not None]
            last_at, last = -1.0, 0
            window: Counter[int] = Counter()
            for k in keys:
                series = self._series.get(k)
                if series is None:
                    continue
                while series.recent and series.recent[0][0] < horizon:
                    series.recent.popleft()
                window.update(x for _, x in series.recent)
                at = series.recent[-1][0] if series.recent else -0.5
                if series.last and at >= last_at:
                    last_at, last = at, series.last
            return XidView(last, dict(counts), self._node_action.get(gpu, 0), dict(window))


@dataclass
class _Logged:
    at: float  # when this (gpu, xid) was last logged
    repeats: int = 0  # seen since then


class XidLogLimiter:
    """Logs an XID the first time a GPU reports it; repeats are summarised by
    flush() (each sampling cycle) in at most one line per `period` seconds. The
    metrics count every one. Thread-safe: the readers record, the sampler flushes."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, int], _Logged] = {}

    def record(self, gpu: int, xid: int, now: float) -> None:
        with self._lock:
            logged = self._seen.get((gpu, xid))
            if logged is not None:
                logged.repeats += 1
                return
            self._seen[(gpu, xid)] = _Logged(now)
        log.warning("gpu_xid", gpu=gpu, xid=xid, action=classify(xid))

    def flush(self, now: float) -> None:
        """Log the summaries that are due."""
        due: list[tuple[int, int, int, float]] = []
        with self._lock:
            for (gpu, xid), logged in self._seen.items():
                if logged.repeats and now - logged.at >= self.period:
                    due.append((gpu, xid, logged.repeats, now - logged.at))
                    logged.at, logged.repeats = now, 0
        for gpu, xid, count, seconds in due:
            log.warning("gpu_xid_repeated", gpu=gpu, xid=xid, count=count, seconds=round(seconds))
