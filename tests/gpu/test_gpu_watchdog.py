"""A hung NVML call never stalls a scrape: the watchdog bounds it.

The fake's hung call blocks for real (on an Event the test releases); the
sampler's clock is a FakeClock, so "5 seconds later" is one `advance(6)`.
"""

from __future__ import annotations

import time

import pytest
from gpu_helpers import rig_fixture, samples, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.collectors.gpu.collector import GpuSnapshotStale
from nodeagent.exposition import render
from nodeagent.supervise import Supervisor


def _up(text: str) -> dict[str, str]:
    return {labels["gpu"]: v for labels, v in samples(text, "nodeagent_gpu_up")}


def _timed(fn):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def test_one_hung_gpu_is_parked_and_the_others_keep_being_sampled(rig) -> None:
    r = rig("p5-8xh100", threads=True, start=False, interval=3600, call_timeout=5, job_attribution=False)
    r.fake.hang_next(6, "nvmlDeviceGetPowerUsage")
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
    sup._pool.shutdown(wait=False)


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
