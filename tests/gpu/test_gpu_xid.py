"""XID events: every one counted, classified into per-GPU health, windowed."""

from __future__ import annotations

import time

import pytest
import structlog
from gpu_helpers import rig_fixture, samples, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.collectors.gpu.xid import NODE_ACTION_XIDS, XidTracker, classify


@pytest.mark.parametrize("xid", [48, 64, 74, 79, 95])
def test_node_action_xids(xid: int) -> None:
    assert classify(xid) == "node"


@pytest.mark.parametrize("xid", [63, 92, 94, 13, 31, 43, 45])
def test_application_xids_do_not_need_node_action(xid: int) -> None:
    assert classify(xid) == "app"
    assert xid not in NODE_ACTION_XIDS


def test_unknown_xid() -> None:
    assert classify(119) == "unknown"


def test_repeats_are_counted_and_health_follows_the_classification(rig) -> None:
    r = rig("p5-8xh100", job_attribution=False)
    r.cycle()
    for gpu, xid in [(1, 94), (1, 94), (1, 92), (2, 63), (3, 48), (4, 74), (4, 31), (6, 95), (7, 64)]:
        r.fake.inject_xid(gpu, xid)
    r.clock.advance(5)
    r.cycle()
    text = r.text()
    assert value(text, "nodeagent_gpu_xid_errors_total", gpu="1", xid="94", action="app") == "2"
    assert value(text, "nodeagent_gpu_xid_errors_total", gpu="1", xid="92", action="app") == "1"
    assert value(text, "nodeagent_gpu_xid_errors_total", gpu="3", xid="48", action="node") == "1"
    # dcgm-exporter's field keeps only the last one
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", gpu="1") == "92"
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", gpu="1", err_code="92") == "92"
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", gpu="0", err_code="0") == "0"
    healthy = {labels["gpu"]: v for labels, v in samples(text, "nodeagent_gpu_healthy")}
    assert healthy == {"0": "1", "1": "1", "2": "1", "3": "0", "4": "0", "5": "1", "6": "0", "7": "0"}
    action = {labels["gpu"]: v for labels, v in samples(text, "nodeagent_gpu_node_action_xid")}
    assert action == {"0": "0", "1": "0", "2": "0", "3": "48", "4": "74", "5": "0", "6": "95", "7": "64"}
    # an app-level XID after a node-action one does not clear the health signal
    r.fake.inject_xid(3, 94)
    r.cycle()
    assert value(r.text(), "nodeagent_gpu_healthy", gpu="3") == "0"
    assert value(r.text(), "DCGM_FI_DEV_XID_ERRORS", gpu="3") == "94"


def test_window_counts_expire(rig) -> None:
    r = rig("g5-1xa10g", xid_count_window_ms=60_000)
    r.fake.inject_xid(0, 13)
    r.fake.inject_xid(0, 13)
    r.cycle()  # without the watcher thread, each cycle collects the pending events
    r.clock.advance(30)
    r.fake.inject_xid(0, 43)
    r.cycle()
    text = r.text()
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", xid="13", window_size_in_ms="60000") == "2"
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", xid="43") == "1"
    r.clock.advance(45)  # the XID 13s are 75 s old, the 43 is 45 s old
    r.cycle()
    text = r.text()
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", xid="13") is None
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", xid="43") == "1"
    r.clock.advance(30)
    r.cycle()
    text = r.text()
    assert samples(text, "DCGM_EXP_XID_ERRORS_COUNT")[0][1] == "0"
    assert samples(text, "DCGM_EXP_XID_ERRORS_COUNT")[0][0]["xid"] == ""
    # the cumulative counter keeps everything
    assert value(text, "nodeagent_gpu_xid_errors_total", xid="13") == "2"


def test_scripted_xid_arrives_at_its_time(rig) -> None:
    r = rig("p5-8xh100", events=True, job_attribution=False)
    r.cycle()
    r.clock.advance(29)
    r.cycle()
    assert value(r.text(), "nodeagent_gpu_xid_errors_total", gpu="2") is None
    r.clock.advance(2)
    r.cycle()
    assert value(r.text(), "nodeagent_gpu_xid_errors_total", gpu="2", xid="94") == "1"


def test_event_watcher_thread_records_xids_as_they_happen(rig) -> None:
    r = rig("p5-8xh100", threads=True, interval=3600, job_attribution=False)
    assert r.sampler.wait_cycles(1, 5)
    r.fake.inject_xid(5, 79)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and r.sampler.xids.view(5, r.clock()).last != 79:
        time.sleep(0.01)
    assert r.sampler.xids.view(5, r.clock()).counts == {79: 1}
    # the next cycle serves it; the watcher, not the cycle, consumed the event
    calls_before = r.fake.calls[("nvmlEventSetWait_v2", None)]
    r.sampler.trigger()
    assert r.sampler.wait_cycles(2, 5)
    assert value(r.text(), "nodeagent_gpu_xid_errors_total", gpu="5", xid="79", action="node") == "1"
    assert r.fake.calls[("nvmlEventSetWait_v2", None)] >= calls_before


def test_tracker_is_per_gpu() -> None:
    t = XidTracker(window_seconds=10)
    t.record(0, 79, now=0.0)
    t.record(1, 13, now=5.0)
    assert t.view(0, 20.0).window == {} and t.view(0, 20.0).node_action_xid == 79
    assert t.view(1, 6.0).window == {13: 1} and t.view(1, 6.0).node_action_xid == 0
    assert t.view(2, 0.0).last == 0


def test_xids_of_a_gpu_lost_at_start_are_counted_once_it_is_back(rig) -> None:
    r = rig("p5-8xh100", job_attribution=False)
    r.fake.set_lost(3)
    r.cycle()  # GPU 3 is lost when NVML enumerates the GPUs
    r.fake.set_lost(3, False)
    r.clock.advance(5)
    r.cycle()  # rediscovered
    assert value(r.text(), "nodeagent_gpu_up", gpu="3") == "1"
    r.fake.inject_xid(3, 79)
    r.clock.advance(5)
    r.cycle()
    assert value(r.text(), "nodeagent_gpu_xid_errors_total", gpu="3", xid="79", action="node") == "1"


def test_event_thread_starts_when_the_first_gpu_is_registered(rig) -> None:
    r = rig("g5-1xa10g", threads=True, start=False, interval=3600)
    r.fake.set_lost(0)  # the only GPU is lost at start: nothing to register yet
    r.sampler.start()
    assert r.sampler.wait_cycles(1, 5)
    assert not any(t.name == "gpu-xid-events" for t in r.sampler._threads)
    r.fake.set_lost(0, False)
    r.sampler.trigger()
    assert r.sampler.wait_cycles(2, 5)
    r.fake.inject_xid(0, 79)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and r.sampler.xids.view(0, r.clock()).counts != {79: 1}:
        time.sleep(0.01)
    assert r.sampler.xids.view(0, r.clock()).counts == {79: 1}


def test_repeated_xids_are_logged_once_then_summarised_every_ten_minutes(rig) -> None:
    r = rig("g5-1xa10g")
    r.cycle()
    with structlog.testing.capture_logs() as logs:
        for _ in range(50):
            r.fake.inject_xid(0, 13)
        r.fake.inject_xid(0, 43)
        r.cycle()
        for _ in range(30):  # 15 minutes, five more XID 13s every 30 s
            r.clock.advance(30)
            for _ in range(5):
                r.fake.inject_xid(0, 13)
            r.cycle()
    lines = [(e["event"], e["xid"], e.get("count")) for e in logs if e["event"].startswith("gpu_xid")]
    # the first 13, the first 43, then one summary after 10 minutes (49 repeats + 20 x 5)
    assert lines == [("gpu_xid", 13, None), ("gpu_xid", 43, None), ("gpu_xid_repeated", 13, 149)]
    assert value(r.text(), "nodeagent_gpu_xid_errors_total", xid="13") == "200"  # the metric counts them all
