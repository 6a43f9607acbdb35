"""A hung NVML call never stalls a scrape: the watchdog bounds it.

The fake's hung call blocks for real (on an Event the test releases); the
sampler's clock is a FakeClock, so "5 seconds later" is one `advance(6)`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest
import structlog
from gpu_helpers import rig_fixture, samples, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.collectors.gpu.collector import GpuSnapshotStale
from nodeagent.collectors.gpu.sampler import Abandoned
from nodeagent.exposition import render
from nodeagent.gpu.fake import FakeClock
from nodeagent.supervise import Supervisor


def _up(text: str) -> dict[str, str]:
    return {labels["gpu"]: v for labels, v in samples(text, "nodeagent_gpu_up")}


def _timed(fn):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def test_one_hung_gpu_is_parked_and_the_others_keep_being_sampled(rig) -> None:
    r = rig("p5-8xh100", threads=True, start=False, interval=3600, call_timeout=5, job_attribution=False)
    r.fake.hang_next(6, "nvmlDeviceGetClockInfo")
    r.sampler.start()
    assert r.fake.hang_entered.wait(5)
    r.clock.advance(6)  # the call has now been in flight longer than call_timeout
    assert r.sampler.wait_cycles(1, 5)  # the replacement thread completed a cycle without GPU 6
    text, took = _timed(r.text)
    assert took < 0.5
    assert _up(text) == {str(i): "0" if i == 6 else "1" for i in range(8)}
    assert "6" not in {labels["gpu"] for labels, _ in samples(text, "DCGM_FI_DEV_GPU_TEMP")}
    status = r.status_text()
    assert value(status, "nodeagent_gpu_nvml_hung_calls") == "1"
    assert value(status, "nodeagent_gpu_snapshot_stale") == "0"
    assert value(status, "nodeagent_gpus", state="up") == "7"

    r.fake.release_hangs()  # the driver answers after all
    deadline = time.monotonic() + 5
    while r.sampler.status().hung and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not r.sampler.status().hung
    r.sampler.trigger()
    assert r.sampler.wait_cycles(2, 5)
    assert _up(r.text()) == {str(i): "1" for i in range(8)}
    assert value(r.status_text(), "nodeagent_gpu_nvml_hung_calls") == "0"


def test_wedged_driver_marks_the_snapshot_stale_and_the_collector_failed(rig) -> None:
    # max_hung_calls 0: the first hung call means the driver is wedged
    r = rig("p5-8xh100", threads=True, interval=3600, call_timeout=5, max_hung_calls=0, job_attribution=False)
    assert r.sampler.wait_cycles(1, 5)
    assert len(r.gpu.collect()) > 0
    r.fake.hang_next(3, "nvmlDeviceGetClockInfo")
    r.sampler.trigger()
    assert r.fake.hang_entered.wait(5)
    r.clock.advance(6)

    # the scrape is not stalled: it fails at once, the status collector still serves
    with pytest.raises(GpuSnapshotStale, match="nvmlDeviceGetClockInfo on GPU 3 hung"):
        _, took = _timed(r.gpu.collect)
    sup = Supervisor("gpu", [r.gpu, r.status], timeout=1.0)
    results, took = _timed(sup.run_all)
    assert took < 0.5
    by_name = {res.name: res for res in results}
    assert not by_name["gpu"].success and "hung" in (by_name["gpu"].error or "")
    assert by_name["gpu_status"].success
    meta = render(sup.meta_families(results)).decode()
    assert 'nodeagent_collector_success{collector="gpu"} 0' in meta
    status = render(by_name["gpu_status"].families).decode()
    assert value(status, "nodeagent_gpu_snapshot_stale") == "1"
    assert value(status, "nodeagent_gpu_nvml_hung_calls") == "1"
    assert value(status, "nodeagent_gpus", state="up") == "0"
    assert value(status, "nodeagent_gpus", state="present") == "8"

    # shutting down does not wait for the stuck call
    _, took = _timed(lambda: r.sampler.close(timeout=0.2))
    assert took < 1.0
    r.fake.release_hangs()
    sup.close()


def test_wedged_driver_recovers_when_the_call_returns(rig) -> None:
    r = rig("g5-1xa10g", threads=True, interval=3600, call_timeout=5, max_hung_calls=0)
    assert r.sampler.wait_cycles(1, 5)
    r.fake.hang_next(0, "nvmlDeviceGetMemoryInfo")
    r.sampler.trigger()
    assert r.fake.hang_entered.wait(5)
    r.clock.advance(6)
    with pytest.raises(GpuSnapshotStale):
        r.gpu.collect()
    r.fake.release_hangs()
    assert r.sampler.wait_cycles(2, 5)  # the same thread finishes its cycle
    assert value(r.text(), "nodeagent_gpu_up") == "1"
    assert value(r.status_text(), "nodeagent_gpu_snapshot_stale") == "0"


def test_hangs_beyond_max_hung_calls_stop_replacements(rig) -> None:
    r = rig("p5-8xh100", threads=True, start=False, interval=3600, call_timeout=5, max_hung_calls=1,
            job_attribution=False)
    r.fake.hang_next(0, "nvmlDeviceGetTemperature")
    r.fake.hang_next(6, "nvmlDeviceGetTemperature")  # the replacement hangs too: a wedged driver
    r.sampler.start()
    assert r.fake.hang_entered.wait(5)  # the first thread, on GPU 0
    r.fake.hang_entered.clear()
    r.clock.advance(6)
    assert r.fake.hang_entered.wait(5)  # its replacement, on GPU 6
    assert not r.sampler.status().stale  # one hung call is tolerated (max_hung_calls 1)
    r.clock.advance(6)
    st = r.sampler.status()
    assert {(h.gpu, h.call) for h in st.hung} == {(0, "nvmlDeviceGetTemperature"), (6, "nvmlDeviceGetTemperature")}
    assert st.stale and "hung" in st.reason
    threads = [t for t in r.sampler._threads if t.name.startswith("gpu-sampler")]
    assert len(threads) == 2  # no third thread piled on the wedged driver


def test_snapshot_older_than_stale_after_fails_the_collector(rig) -> None:
    r = rig("g5-1xa10g", interval=5, call_timeout=5)  # stale after 3 x 5 + 5 = 20 s
    r.cycle()
    r.clock.advance(19)
    assert r.gpu.collect()
    r.clock.advance(2)
    with pytest.raises(GpuSnapshotStale, match=r"21\.0s old"):
        r.gpu.collect()
    status = r.status_text()
    assert value(status, "nodeagent_gpu_snapshot_stale") == "1"
    assert value(status, "nodeagent_gpu_snapshot_age_seconds") == "21"
    r.cycle()
    assert r.gpu.collect()


# ---- races between a sampler thread's call and the watchdog ------------------------------------
class _HookClock(FakeClock):
    """A FakeClock that runs `hook` when it is read: a read is where the thread
    reading it could be switched out for the watchdog."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None
        self._in_hook = False

    def __call__(self) -> float:
        hook = self.hook
        if hook is not None and not self._in_hook:  # the hook reads the clock too
            self._in_hook = True
            try:
                hook()
            finally:
                self._in_hook = False
        return self.now


def _cycle_of_a_parked_thread(r: Any) -> None:
    with suppress(Abandoned):
        r.sampler.run_cycle()


def test_watchdog_right_as_a_call_starts_does_not_see_the_previous_calls_start(rig) -> None:
    clock = _HookClock()
    r = rig("g5-1xa10g", clock=clock, call_timeout=5)
    r.cycle()
    clock.advance(6)  # the previous cycle's calls started 6 s ago: not one call of 6 s

    def watchdog() -> None:
        if not r.sampler._lock.locked():  # the sampler also reads the clock under its lock
            r.sampler.check_watchdog()

    clock.hook = watchdog  # the watchdog runs at every clock read of the next cycle
    r.cycle()
    clock.hook = None
    assert r.sampler.status().hung == []
    assert value(r.text(), "nodeagent_gpu_up", gpu="0") == "1"


def test_call_returning_while_the_watchdog_declares_it_hung_is_released(rig) -> None:
    clock = _HookClock()
    r = rig("p5-8xh100", clock=clock, call_timeout=5, process_interval=0)
    r.cycle()
    # GPU 0's last call of the cycle: after it the thread's next step is GPU 1
    r.fake.hang_next(0, "nvmlDeviceGetComputeRunningProcesses")
    worker = threading.Thread(target=_cycle_of_a_parked_thread, args=(r,))
    worker.start()
    assert r.fake.hang_entered.wait(5)
    clock.advance(6)

    def the_call_returns() -> None:
        # the watchdog has seen the call in flight; before its verdict the call returns
        clock.hook = None
        r.fake.release_hangs()
        time.sleep(0.2)  # the thread runs on as far as it can

    clock.hook = the_call_returns
    r.sampler.check_watchdog()
    worker.join(5)
    assert not worker.is_alive()
    assert r.sampler.status().hung == []
    r.cycle()  # GPU 0 is not quarantined
    assert value(r.text(), "nodeagent_gpu_up", gpu="0") == "1"


# ---- a hang in the optional profiling source ---------------------------------------------------
class _BlockingDcgm:
    """A profiling source whose sampling blocks (DCGM's host engine stuck)."""

    name = "dcgm"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def sample(self, gpus: Any) -> dict[Any, Any]:
        self.calls += 1
        self.entered.set()
        self.release.wait(5)
        return {}

    def close(self) -> None:
        pass


@pytest.mark.parametrize("source", ["gpm", "dcgm"])
def test_hung_profiling_source_is_disabled_and_sampling_goes_on(rig, source: str) -> None:
    # max_hung_calls 0: were the profiling hang counted, the sampler would be wedged
    r = rig("p5-8xh100", threads=True, start=False, interval=3600, call_timeout=5, max_hung_calls=0,
            job_attribution=False)
    dcgm = _BlockingDcgm()
    if source == "gpm":  # an NVML call of the GPM source hangs
        r.fake.hang_next(3, "nvmlGpmSampleGet")
        entered = r.fake.hang_entered
    else:  # the DCGM section itself hangs
        r.backend.profiling = lambda api, gpus: dcgm
        entered = dcgm.entered
    with structlog.testing.capture_logs() as logs:
        r.sampler.start()
        assert entered.wait(5)
        r.clock.advance(6)
        assert r.sampler.wait_cycles(1, 5)  # the replacement thread, without profiling
        r.sampler.trigger()
        assert r.sampler.wait_cycles(2, 5)
        st = r.sampler.status()
        assert not st.stale, st.reason
        assert st.profiling == "none"
        assert [(h.gpu, h.profiling) for h in st.hung] == [(None, True)]
        assert _up(r.text()) == {str(i): "1" for i in range(8)}
        assert value(r.status_text(), "nodeagent_gpu_snapshot_stale") == "0"
        # the source is not called again
        if source == "gpm":
            assert r.fake.calls[("nvmlGpmSampleGet", 3)] == 1
        else:
            assert dcgm.calls == 1
        # the stuck call returns: its thread exits, profiling stays off
        r.fake.release_hangs()
        dcgm.release.set()
        deadline = time.monotonic() + 5
        while r.sampler.status().hung and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.sampler.status().hung == []
        r.sampler.trigger()
        assert r.sampler.wait_cycles(3, 5)
        assert r.sampler.status().profiling == "none"
    events = [e["event"] for e in logs]
    assert events.count("gpu_profiling_disabled") == 1
    assert "gpu_nvml_call_hung" not in events and "gpu_sampler_wedged" not in events


def test_parked_threads_that_returned_are_dropped_when_a_thread_is_started(rig) -> None:
    r = rig("p5-8xh100", threads=True, start=False, interval=3600, call_timeout=5, job_attribution=False)
    r.fake.hang_next(1, "nvmlDeviceGetClockInfo", seconds=0.3)  # returns after 0.3 s
    r.sampler.start()
    assert r.fake.hang_entered.wait(5)
    r.fake.hang_entered.clear()
    first = next(t for t in r.sampler._threads if t.name == "gpu-sampler-0")
    r.clock.advance(6)
    r.sampler.check_watchdog()  # gpu-sampler-1 replaces it
    first.join(5)
    assert not first.is_alive()  # its call returned: the parked thread exited
    r.fake.hang_next(2, "nvmlDeviceGetClockInfo")
    r.sampler.trigger()
    assert r.fake.hang_entered.wait(5)
    r.clock.advance(6)
    r.sampler.check_watchdog()  # gpu-sampler-2 replaces gpu-sampler-1
    names = [t.name for t in r.sampler._threads]
    assert "gpu-sampler-2" in names and "gpu-sampler-0" not in names
    assert all(t.is_alive() for t in r.sampler._threads)
