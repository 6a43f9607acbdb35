"""Where XIDs come from: NVML's event set and the kernel log.

NVML: a thread blocks in nvmlEventSetWait, started when the first GPU
registers for XID events (a GPU lost at start registers once it is back).
Its waits block by design and are not timed by the watchdog. Without
threads (tests, the benchmark) each cycle drains pending events instead.

Kernel log: in sandboxes and on some drivers the event path is missing or
misses XIDs; DCGM (since 3.3.7, NVIDIA/DCGM dcgmlib/src/DcgmKmsgReader.cpp)
also reads `NVRM: Xid` records from /dev/kmsg. So does nodeagent, each
cycle, without blocking: the records since boot at start (a node-action XID
from before a restart still counts), new records after. XidTracker counts
an XID reported by both sources once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import pynvml
import structlog

from nodeagent.checks.kernel_log import parse_xids
from nodeagent.collectors.gpu.enrich import NO_INSTANCE
from nodeagent.collectors.gpu.xid import XidLogLimiter, XidTracker
from nodeagent.gpu.backend import NvmlApi, handle_key
from nodeagent.host import Host, RecordStream

log = structlog.get_logger("nodeagent.collectors.gpu.sampler")

_KMSG_READ_BYTES = 4 << 20  # per cycle; the ring buffer itself is a few MiB at most


def pci_key(bus_id: str) -> tuple[int, int, int] | None:
    """(domain, bus, device) of "00000000:53:00.0" (NVML) or "0000:53:00" (the kernel log)."""
    parts = bus_id.strip().split(":")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0], 16), int(parts[1], 16), int(parts[2].split(".")[0], 16)
    except ValueError:
        return None


class XidSources:
    def __init__(self, host: Host, tracker: XidTracker, log_limiter: XidLogLimiter,
                 clock: Callable[[], float], threads: bool, kernel_log: bool) -> None:
        self.host = host
        self.tracker = tracker
        self.log_limiter = log_limiter
        self.clock = clock
        self.threads = threads
        self.kernel_log = kernel_log
        self.event_set: Any = None
        self._by_handle: dict[int, int] = {}
        self._by_pci: dict[tuple[int, int, int], int] = {}
        self._kmsg: RecordStream | None = None
        self._kmsg_error = ""
        self.wants_thread = False  # set when the first GPU registered; the sampler starts the thread

    # ---- which GPU an XID belongs to ----------------------------------------------------
    def know(self, index: int, handle: Any, pci_bus_id: str) -> None:
        self._by_handle[handle_key(handle)] = index
        key = pci_key(pci_bus_id)
        if key is not None:
            self._by_pci[key] = index

    def _record(self, gpu: int, xid: int, at: float, gi: int | None, source: str) -> None:
        if self.tracker.record(gpu, xid, at, gi=gi, source=source):
            self.log_limiter.record(gpu, xid, at)

    # ---- NVML events ----------------------------------------------------------------------
    def setup_events(self, api: NvmlApi) -> None:
        if self.event_set is not None:
            return
        try:
            self.event_set = api.nvmlEventSetCreate()
        except pynvml.NVMLError as e:
            log.warning("gpu_xid_events_unavailable", error=str(e))

    def register(self, api: NvmlApi, index: int, handle: Any) -> None:
        """XID events of one GPU (at start, or when a GPU lost at start is back)."""
        if self.event_set is None:
            return
        try:
            api.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError, self.event_set)
        except pynvml.NVMLError as e:
            log.warning("gpu_xid_events_unsupported", gpu=index, error=str(e))
            return
        self.wants_thread = self.threads

    def wait_loop(self, api: NvmlApi, stopped: Callable[[float], bool]) -> None:
        """The event thread: `stopped(seconds)` waits and says whether to end."""
        last_error = ""
        while not stopped(0):
            try:
                data = api.nvmlEventSetWait_v2(self.event_set, 500)
            except pynvml.NVMLError_Timeout:
                continue
            except pynvml.NVMLError as e:
                if str(e) != last_error:
                    log.warning("gpu_xid_wait_failed", error=str(e))
                    last_error = str(e)
                if stopped(5.0):
                    return
                continue
            last_error = ""
            self.on_event(data)

    def drain(self, api: NvmlApi) -> None:
        """Without threads, each cycle collects pending events."""
        if self.event_set is None:
            return
        while True:
            try:
                data = api.nvmlEventSetWait_v2(self.event_set, 0)
            except pynvml.NVMLError:
                return
            self.on_event(data)

    def on_event(self, data: Any) -> None:
        if not data.eventType & pynvml.nvmlEventTypeXidCriticalError:
            return
        index = self._by_handle.get(handle_key(data.device))
        xid = int(data.eventData)
        if index is None:
            log.warning("gpu_xid_unknown_device", xid=xid)
            return
        gi = getattr(data, "gpuInstanceId", NO_INSTANCE)
        self._record(index, xid, self.clock(), None if gi in (None, NO_INSTANCE) else int(gi), "nvml")

    # ---- the kernel log ------------------------------------------------------------------
    def poll_kernel_log(self) -> None:
        """Read the XID records the kernel logged since the last poll."""
        if not self.kernel_log:
            return
        if self._kmsg is None:
            path = self.host.dev("kmsg")
            try:
                self._kmsg = self.host.open_records(path)
            except OSError as e:
                error = f"{path}: {e.strerror or e}"
                if error != self._kmsg_error:
                    log.info("gpu_xid_kernel_log_unavailable", error=error)
                    self._kmsg_error = error
                return
        data = self._kmsg.read_new(_KMSG_READ_BYTES)
        if data:
            self._record_kernel_xids(parse_xids(data.decode("utf-8", errors="replace")))

    def _record_kernel_xids(self, events: Iterable[Any]) -> None:
        now = self.clock()
        boot_now = time.monotonic()  # kmsg stamps are CLOCK_MONOTONIC microseconds
        for e in events:
            key = pci_key(e.pci)
            index = self._by_pci.get(key) if key is not None else None
            if index is None:
                continue  # another device's XID, or one not enumerated
            at = now if e.usec is None else now - max(0.0, boot_now - e.usec / 1e6)
            self._record(index, e.xid, at, e.gi, "kmsg")

    def close(self, api: NvmlApi) -> None:
        if self._kmsg is not None:
            self._kmsg.close()
            self._kmsg = None
        if self.event_set is not None:
            with contextlib.suppress(pynvml.NVMLError):
                api.nvmlEventSetFree(self.event_set)
            self.event_set = None
