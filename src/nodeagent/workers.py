"""Daemon worker threads for calls that may never return."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("nodeagent.workers")


class DaemonWorkers:
    """A pool of daemon threads that grows when every worker is busy.

    For calls that may block in the kernel for ever (statfs of a dead NFS or
    Lustre server, a collector stuck in a read): a worker stuck there is simply
    not idle any more, and being a daemon thread it never holds up the agent's
    exit, as the threads of concurrent.futures would. Reusing workers saves a
    thread start per call."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = 0
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        if start:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()
        self._jobs.put(job)

    def close(self) -> None:
        """Let the idle workers end; a worker still stuck in a job ends when
        the job returns."""
        with self._lock:
            idle, self._idle = self._idle, 0
            self._closed = True
        for _ in range(idle):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as e:  # jobs handle their own errors; this keeps the worker alive
                log.error("worker_job_failed", workers=self._name, error=f"{type(e).__name__}: {e}")
            with self._lock:
                if self._closed:
                    return
                self._idle += 1
