"""XID errors: the event watcher's bookkeeping and the classification.

dcgm-exporter's DCGM_FI_DEV_XID_ERRORS is the last XID seen, so a repeat is
invisible. Every XID the NVML event set reports is counted here per GPU and
XID code (nodeagent_gpu_xid_errors_total), kept in a time window
(DCGM_EXP_XID_ERRORS_COUNT) and classified:

- node action needed: 48 (double-bit ECC), 64 (row remap recording failed),
  74 (NVLink), 79 (fallen off the bus), 95 (uncontained ECC);
- application level (restart the application, not the node): 13, 31, 43,
  45, 63 (row remap recorded), 92 (high single-bit rate), 94 (contained ECC);
- anything else: unknown.

Draining on every XID over-drains healthy nodes; the per-GPU health series
turns 0 only for the node-action set.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

NODE_ACTION_XIDS = frozenset({48, 64, 74, 79, 95})
APP_XIDS = frozenset({13, 31, 43, 45, 63, 92, 94})


def classify(xid: int) -> str:
    """"node", "app" or "unknown"."""
    if xid in NODE_ACTION_XIDS:
        return "node"
    if xid in APP_XIDS:
        return "app"
    return "unknown"


@dataclass
class XidView:
    last: int = 0
    counts: dict[int, int] = field(default_factory=dict)
    node_action_xid: int = 0
    window: dict[int, int] = field(default_factory=dict)


@dataclass
class _GpuXids:
    last: int = 0
    counts: Counter[int] = field(default_factory=Counter)
    node_action_xid: int = 0
    recent: deque[tuple[float, int]] = field(default_factory=deque)


class XidTracker:
    """Thread-safe: the watcher thread records, the sampler reads."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._lock = threading.Lock()
        self._gpus: dict[int, _GpuXids] = {}

    def record(self, gpu: int, xid: int, now: float) -> None:
        with self._lock:
            state = self._gpus.setdefault(gpu, _GpuXids())
            state.last = xid
            state.counts[xid] += 1
            if xid in NODE_ACTION_XIDS:
                state.node_action_xid = xid
            state.recent.append((now, xid))

    def view(self, gpu: int, now: float) -> XidView:
        with self._lock:
            state = self._gpus.get(gpu)
            if state is None:
                return XidView()
            horizon = now - self.window
            while state.recent and state.recent[0][0] < horizon:
                state.recent.popleft()
            window: Counter[int] = Counter(x for _, x in state.recent)
            return XidView(state.last, dict(state.counts), state.node_action_xid, dict(window))


@dataclass
class _Logged:
    at: float  # when this (gpu, xid) was last logged
    repeats: int = 0  # seen since then


class XidLogLimiter:
    """Logs an XID the first time a GPU reports it; repeats are summarised by
    flush() (each sampling cycle) in at most one line per `period` seconds. The
    metrics count every one. Thread-safe: the watcher thread records, the
    sampler flushes."""

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
        log.warning("gpu_xid", gpu=gpu, xid=xid)

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
