"""What real drivers do to a sampler: odd exceptions, support that comes back,
slow starts, a profiling source that hangs once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pynvml
from gpu_helpers import rig_fixture, samples, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.collectors.gpu.sampler import Sampler
from nodeagent.gpu.backend import Backend, open_backend
from nodeagent.gpu.fake import FakeClock
from nodeagent.gpu.settings import GpuSettings


def _gpus(text: str, name: str) -> set[str]:
    return {labels["gpu"] for labels, _ in samples(text, name)}


def test_an_exception_that_is_not_an_nvml_error_costs_one_read_of_one_gpu(rig) -> None:
    r = rig("p5-8xh100", process_metrics=True)
    # nvidia-ml-py raises NVMLLibraryMismatchError (a plain Exception) from process
    # queries when the driver lacks the v3 call; a binding bug may raise anything
    r.fake.fail_next(3, "nvmlDeviceGetComputeRunningProcesses", pynvml.NVMLLibraryMismatchError)
    r.fake.fail_next(2, "nvmlDeviceGetDecoderUtilization", RuntimeError)
    r.cycle()
    text = r.text()
    assert _gpus(text, "DCGM_FI_DEV_GPU_TEMP") == {str(i) for i in range(8)}
    assert _gpus(text, "DCGM_FI_DEV_DEC_UTIL") == {str(i) for i in range(8)} - {"2"}
    assert _gpus(text, "nodeagent_gpu_processes") == {str(i) for i in range(8)} - {"3"}
    assert {labels["gpu"]: v for labels, v in samples(text, "nodeagent_gpu_up")} == {str(i): "1" for i in range(8)}
    r.clock.advance(5)
    r.cycle()  # the next cycle reads them again
    text = r.text()
    assert _gpus(text, "DCGM_FI_DEV_DEC_UTIL") == {str(i) for i in range(8)}
    assert _gpus(text, "nodeagent_gpu_processes") == {str(i) for i in range(8)}


def test_not_supported_is_asked_again_after_the_reprobe_interval(rig) -> None:
    r = rig("p5-8xh100", reprobe_interval=300)
    r.fake.fail_next(1, "nvmlDeviceGetDecoderUtilization", pynvml.NVMLError_NotSupported)
    for _ in range(3):
        r.cycle()
        r.clock.advance(5)
    assert r.fake.calls[("nvmlDeviceGetDecoderUtilization", 1)] == 1  # remembered, not asked again
    assert "1" not in _gpus(r.text(), "DCGM_FI_DEV_DEC_UTIL")
    r.clock.advance(300)
    r.cycle()  # a driver update or a reset may have brought it back
    assert r.fake.calls[("nvmlDeviceGetDecoderUtilization", 1)] == 2
    assert "1" in _gpus(r.text(), "DCGM_FI_DEV_DEC_UTIL")


class _SlowInit:
    """The fake driver whose nvmlInit blocks like one without persistence mode."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.entered = threading.Event()
        self.release = threading.Event()

    def nvmlInit(self) -> None:
        self.entered.set()
        self.release.wait(10)
        self._api.nvmlInit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


def _slow_start(**settings: Any) -> tuple[Sampler, _SlowInit, FakeClock]:
    """A started sampler whose driver's nvmlInit blocks until released."""
    from gpu_helpers import fixture_host

    clock = FakeClock()
    gpu = GpuSettings(backend="fake", fake_description="g5-1xa10g", fake_events=False, call_timeout=5,
                      interval=3600, **settings)
    fake = open_backend(gpu, clock=clock)
    slow = _SlowInit(fake.api)
    backend = Backend("fake", slow, fake.profiling, fake.instance_type)  # type: ignore[arg-type]
    sampler = Sampler(gpu, fixture_host(), "node-1", backend=backend, clock=clock, watch_period=0.01)
    sampler.start()
    return sampler, slow, clock


def test_a_slow_start_is_held_to_start_timeout_not_call_timeout() -> None:
    sampler, slow, clock = _slow_start(start_timeout=120, job_attribution=False)
    try:
        assert slow.entered.wait(5)
        clock.advance(60)  # 12 x call_timeout: still starting
        sampler.check_watchdog()
        st = sampler.status()
        assert not st.hung and not st.stale, st.reason
        slow.release.set()
        assert sampler.wait_cycles(1, 5)
        assert sampler.status().snapshot is not None and not sampler.status().stale
    finally:
        slow.release.set()
        sampler.close(timeout=2)


def test_a_start_beyond_start_timeout_counts_as_hung() -> None:
    sampler, slow, clock = _slow_start(start_timeout=30, max_hung_calls=0)
    try:
        assert slow.entered.wait(5)
        clock.advance(31)
        sampler.check_watchdog()
        st = sampler.status()
        assert [h.call for h in st.hung] == ["nvmlInit"]
        assert st.stale and "nvmlInit" in st.reason
    finally:
        slow.release.set()
        sampler.close(timeout=2)


def test_a_profiling_source_that_hung_is_retried_with_backoff(rig) -> None:
    r = rig("p5-8xh100", threads=True, start=False, interval=3600, call_timeout=5, job_attribution=False)
    r.fake.hang_next(3, "nvmlGpmSampleGet", seconds=0.2)
    r.sampler.start()
    assert r.fake.hang_entered.wait(5)
    r.clock.advance(6)
    assert r.sampler.wait_cycles(1, 5)
    assert r.sampler.status().profiling == "none"
    deadline = time.monotonic() + 5
    while r.sampler.status().hung and time.monotonic() < deadline:  # the stuck call returns
        time.sleep(0.01)
    r.clock.advance(30)  # within the first back-off (60 s): still off
    r.sampler.trigger()
    assert r.sampler.wait_cycles(2, 5)
    assert r.sampler.status().profiling == "none"
    r.clock.advance(31)  # past it: profiling is set up again
    r.sampler.trigger()
    assert r.sampler.wait_cycles(3, 5)
    assert r.sampler.status().profiling == "gpm"
    r.clock.advance(5)
    r.sampler.trigger()
    assert r.sampler.wait_cycles(4, 5)
    assert value(r.text(), "DCGM_FI_PROF_SM_ACTIVE", gpu="3") is not None


def test_a_field_still_unsupported_at_the_reprobe_is_not_logged_again(rig) -> None:
    import structlog

    r = rig("p5-8xh100", reprobe_interval=300)
    with structlog.testing.capture_logs() as first:
        r.cycle()
    # H100s have no retired pages (row remapping instead): logged once, for all GPUs
    assert any(e["event"] == "gpu_field_unsupported" and e["field"] == "DCGM_FI_DEV_RETIRED_SBE" for e in first)
    r.clock.advance(301)
    with structlog.testing.capture_logs() as again:
        r.cycle()  # asked again: still unsupported, nothing new to say
    assert [e for e in again if e["event"] == "gpu_field_unsupported"] == []
    assert r.fake.calls[("nvmlDeviceGetFieldValues", 0)] == 2
