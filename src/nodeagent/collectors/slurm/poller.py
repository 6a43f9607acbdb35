"""The Slurm collectors' common shape: each polls its command in its own
background thread every slurm.interval seconds, never once per scrape, and
collect() serves the last complete snapshot at once.

When a poll fails (slurmctld down, a command that timed out or exited
non-zero), collect() keeps serving the last good snapshot for
slurm.serve_stale seconds after the first failed poll (default: two
slurm.interval), then raises, so the data is withdrawn and the supervisor
reports the collector's success as 0; the other Slurm collectors keep
serving. Slurm's health stays visible all along in the slurm_health
collector's families (nodeagent_slurm_up, nodeagent_slurm_poll_failures_total,
nodeagent_slurm_data_age_seconds), read from health(). A failure is logged
when the state changes (ok -> failing, failing -> ok), not once per interval.

The pollers of one agent start together, on the first collect() of any of
them, and wait for their first collections against one common deadline:
the supervisor calls the collectors one after another, and separate waits
would add up (four collectors and a hung slurmctld made the first scrape of
:9341 take four times slurm.first_collection_wait). The deadline is also
capped below collectors.timeout, so the first scrape after start is served
within collectors.timeout whatever slurmctld does.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.runner import SlurmRunner
from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.host import CommandError, Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext

log = structlog.get_logger(__name__)


class SlurmUnavailable(RuntimeError):
    """The last collection failed; no data is served until one succeeds."""


def slurm_settings(context: CollectorContext) -> SlurmSettings:
    settings = getattr(context.config, "slurm", None)
    return settings if isinstance(settings, SlurmSettings) else SlurmSettings()


# the first-collection wait leaves this share of collectors.timeout to the
# rest of the scrape (rendering, the agent's own metrics)
FIRST_WAIT_SHARE_OF_TIMEOUT = 0.8


def first_wait(context: CollectorContext, settings: SlurmSettings) -> float:
    """slurm.first_collection_wait, capped below collectors.timeout."""
    wait = settings.first_collection_wait
    timeout = getattr(getattr(context.config, "collectors", None), "timeout", None)
    if isinstance(timeout, (int, float)) and timeout > 0:
        wait = min(wait, timeout * FIRST_WAIT_SHARE_OF_TIMEOUT)
    return wait


class CommonStart:
    """The Slurm pollers of one agent: started together, one deadline for
    their first collections (see the module's docstring)."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self._pollers: list[PolledSlurmCollector] = []
        self._deadline: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, context: CollectorContext, settings: SlurmSettings) -> CommonStart:
        """The one shared by every collector built with this context."""
        group = context.shared.get("slurm_start")
        if not isinstance(group, CommonStart):
            group = context.shared["slurm_start"] = cls(first_wait(context, settings))
        return group

    def add(self, poller: PolledSlurmCollector) -> None:
        with self._lock:
            self._pollers.append(poller)

    def pollers(self) -> list[PolledSlurmCollector]:
        with self._lock:
            return list(self._pollers)

    def start(self) -> float:
        """Start every poller (the first call only); the common deadline
        (time.monotonic()) for their first collections."""
        with self._lock:
            first = self._deadline is None
            if self._deadline is None:
                self._deadline = time.monotonic() + self.wait
            deadline, pollers = self._deadline, list(self._pollers)
        if first:
            for p in pollers:
                p.start()
        return deadline


@dataclass(frozen=True)
class Snapshot:
    families: tuple[MetricFamily, ...]
    timestamp: float
    duration: float


@dataclass(frozen=True)
class Health:
    """A poller's state for the slurm_health collector."""

    command: str
    collector: str
    up: bool | None  # None: no poll finished yet
    failures: int
    age: float | None  # seconds since the data served was collected; None: none yet
    duration: float | None  # of the last poll, successful or not


class PolledSlurmCollector(Collector):
    """Base class: subclasses set `command` and implement poll()."""

    command: ClassVar[str]

    def __init__(self, host: Host, options: Any, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self.settings = slurm_settings(self.context)
        self.runner = SlurmRunner(host, self.settings, self.command)
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._error: BaseException | None = None
        self._failure_kind: str | None = None
        self._failures = 0
        self._failing_since: float | None = None  # monotonic time of the first failed poll in a row
        self._last_duration: float | None = None
        self._first = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_run: float | None = None
        self._common = CommonStart.of(self.context, self.settings)
        self._common.add(self)

    # ---- what subclasses implement ------------------------------------------
    @property
    def active(self) -> bool:
        """False when the settings leave this collector nothing to do."""
        return True

    def poll(self) -> list[MetricFamily]:
        """Run the command(s) and return the families; raise on failure."""
        raise NotImplementedError

    # ---- one collection ------------------------------------------------------
    def run_once(self) -> None:
        """Collect once, now, in the calling thread (the background loop and
        tests use it); the outcome becomes what collect() serves."""
        started = self.host.monotonic()
        try:
            families = self.poll()
        except Exception as e:
            if not self._stop.is_set():  # a command killed by close() is no failure to report
                self._last_duration = self.host.monotonic() - started
                self._record_failure(e)
        else:
            duration = self._last_duration = self.host.monotonic() - started
            timestamp = self.host.time()
            dur = cat.COMMAND_DURATION.family()
            dur.add((self.command,), duration)
            ts = cat.COLLECTION_TIMESTAMP.family()
            ts.add((self.command,), timestamp)
            snap = Snapshot(tuple([*families, dur, ts]), timestamp, duration)
            with self._lock:
                self._snapshot = snap
                self._error = None
                self._failing_since = None
                previous, self._failure_kind = self._failure_kind, None
            if previous is not None:
                log.info("slurm_collection_recovered", collector=self.name, command=self.command)
        finally:
            self._last_run = self.host.monotonic()
            self._first.set()

    def _record_failure(self, error: BaseException) -> None:
        kind = type(error).__name__
        if isinstance(error, CommandError) and error.returncode is not None:
            kind += f":{error.returncode}"
        with self._lock:
            self._error = error
            self._failures += 1
            if self._failing_since is None:
                self._failing_since = self.host.monotonic()
            previous, self._failure_kind = self._failure_kind, kind
        # once when it starts failing; a dead slurmctld may alternate between
        # "exited with 1" and a timeout, which is no news
        if previous is None:
            log.warning(
                "slurm_collection_failed",
                collector=self.name,
                command=self.command,
                error=str(error)[:500],
                kind=kind,
            )

    # ---- background loop ------------------------------------------------------
    def start(self) -> None:
        if not self.active:
            self._first.set()
            return
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name=f"slurm-{self.name}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        interval = self.settings.interval
        last = self._last_run
        if last is not None:  # collected just before the loop started (run_once)
            self._stop.wait(max(interval - (self.host.monotonic() - last), 0.0))
        while not self._stop.is_set():
            started = self.host.monotonic()
            try:
                self.run_once()
            except Exception as e:  # run_once records failures itself; belt and braces
                log.error("slurm_poller_error", collector=self.name, error=str(e)[:500])
            elapsed = self.host.monotonic() - started
            self._stop.wait(max(interval - elapsed, 0.0))

    def collect(self) -> list[MetricFamily]:
        if not self.active:
            return []
        deadline = self._common.start()
        self.start()
        if not self._first.wait(max(deadline - time.monotonic(), 0.0)):
            raise SlurmUnavailable(f"{self.command}: no collection finished yet")
        with self._lock:
            snap, error = self._snapshot, self._error
        # the last good values while Slurm has been failing for at most serve_stale
        if error is not None and (snap is None or self._withdrawn()):
            raise SlurmUnavailable(f"{self.command}: {error}") from error
        if snap is None:  # pragma: no cover - _first is set only after a success or a failure
            raise SlurmUnavailable(f"{self.command}: no data")
        # shared with every scrape: merge_families copies before it adds to a family
        return list(snap.families)

    def wait_first(self) -> None:
        """Start the pollers and wait (against the common deadline) for this
        one's first collection."""
        deadline = self._common.start()
        self._first.wait(max(deadline - time.monotonic(), 0.0))

    def health(self) -> Health:
        with self._lock:
            snap, error, failures, duration = self._snapshot, self._error, self._failures, self._last_duration
        ran = self._first.is_set()
        # the age of the last good poll, served or already withdrawn: it keeps growing while Slurm is down
        age = None if snap is None else max(self.host.time() - snap.timestamp, 0.0)
        return Health(self.command, self.name, (error is None) if ran else None, failures, age, duration)

    def _withdrawn(self) -> bool:
        """Failing for longer than slurm.serve_stale: the last good values are no longer served."""
        since = self._failing_since
        return since is not None and self.host.monotonic() - since > self.settings.stale_after

    def close(self) -> None:
        self._stop.set()
        self.runner.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
