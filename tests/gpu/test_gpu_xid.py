"""XID events: every one counted, classified into per-GPU health, windowed."""

from __future__ import annotations

import time

import pytest
import structlog
from gpu_helpers import rig_fixture, samples, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.collectors.gpu.xid import NODE_ACTION_XIDS, XidTracker, classify


# NVIDIA's XID catalogue, immediate action: RESET_GPU / RESTART_BM / the XID 48
# and NVLink workflows (119 and 120 are the GSP errors common on H100)
@pytest.mark.parametrize("xid", [48, 64, 74, 79, 95, 119, 120, 140, 143, 149])
def test_node_action_xids(xid: int) -> None:
    assert classify(xid) == "node"


@pytest.mark.parametrize("xid", [63, 92, 94, 13, 31, 43, 45, 137])
def test_application_xids_do_not_need_node_action(xid: int) -> None:
    assert classify(xid) == "app"
    assert xid not in NODE_ACTION_XIDS


def test_unknown_xid() -> None:
    assert classify(7) == "unknown"
    assert classify(999) == "unknown"


def test_a_source_counts_once_what_another_reported_first() -> None:
    t = XidTracker(300)
    assert t.record(0, 79, 1.0, source="nvml")
    assert not t.record(0, 79, 1.1, source="kmsg")  # the same XID from the kernel log
    assert t.record(0, 79, 2.0, source="kmsg")  # a second one the event path missed
    assert not t.record(0, 79, 2.1, source="nvml")  # ... which arrives late after all
    assert t.view(0, 3.0).counts == {79: 2}
    assert t.view(0, 3.0).window == {79: 2}


def test_instance_xids_are_recorded_against_their_instance() -> None:
    t = XidTracker(300)
    t.record(0, 94, 1.0, gi=1)
    t.record(0, 79, 2.0)  # the whole GPU: every instance
    assert t.view(0, 3.0, gi=1).window == {94: 1, 79: 1}
    assert t.view(0, 3.0, gi=2).window == {79: 1}
    assert t.view(0, 3.0, gi=2).last == 79
    assert t.view(0, 3.0).counts == {94: 1, 79: 1}


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
    # no XID in the window: one series with window_size_in_ms and no xid label (dcgm-exporter >= 3.3.6)
    assert "xid" not in samples(text, "DCGM_EXP_XID_ERRORS_COUNT")[0][0]
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


def test_last_xid_carries_err_code_and_err_msg_like_dcgm_exporter(rig) -> None:
    r = rig("p5-8xh100", job_attribution=False)
    r.fake.inject_xid(2, 119)
    r.cycle()
    text = r.text()
    (labels, v), = [s for s in samples(text, "DCGM_FI_DEV_XID_ERRORS") if s[0]["gpu"] == "2"]
    assert (labels["err_code"], labels["err_msg"], v) == ("119", "GSP RPC Timeout", "119")
    # attributes come after the label fields, sorted: err_code, err_msg
    assert list(labels)[-3:] == ["DCGM_FI_DRIVER_VERSION", "err_code", "err_msg"]
    assert value(text, "nodeagent_gpu_healthy", gpu="2") == "0"  # a GSP timeout needs a GPU reset


def _kmsg_host(tmp_path):  # type: ignore[no-untyped-def]
    from gpu_helpers import PROC

    from nodeagent.host import Host, Roots

    (tmp_path / "no-sys").mkdir()
    return Host(Roots(procfs=str(PROC), sysfs=str(tmp_path / "no-sys"), rootfs=str(tmp_path), dev=str(tmp_path)))


def test_xids_from_the_kernel_log_count_once_with_the_event_path(rig, tmp_path) -> None:
    kmsg = tmp_path / "kmsg"
    # GPU 2 of p5-8xh100 is 00000000:75:00.0; a line for a device that is not a GPU here is ignored
    kmsg.write_text(
        "6,100,1000,-;NVRM: loading NVIDIA UNIX x86_64 Kernel Module\n"
        "4,101,2000,-;NVRM: Xid (PCI:0000:75:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
        "4,102,3000,-;NVRM: Xid (PCI:0000:99:00): 13, pid=1, name=x, Graphics Exception\n"
    )
    r = rig("p5-8xh100", job_attribution=False, host=_kmsg_host(tmp_path))
    r.cycle()  # the kernel log since boot: one XID 79 on GPU 2
    assert r.sampler.xids.view(2, r.clock()).counts == {79: 1}
    r.fake.inject_xid(2, 79)  # the event path reports the same XID
    r.clock.advance(5)
    r.cycle()
    assert r.sampler.xids.view(2, r.clock()).counts == {79: 1}
    with kmsg.open("a") as f:  # a new one that only the kernel log saw, in a MIG instance
        f.write("4,103,9000,-;NVRM: Xid (PCI:0000:75:00 GPU-I:03): 94, pid=7194, Contained: CE User Channel\n")
    r.clock.advance(5)
    r.cycle()
    text = r.text()
    assert value(text, "nodeagent_gpu_xid_errors_total", gpu="2", xid="79", action="node") == "1"
    assert value(text, "nodeagent_gpu_xid_errors_total", gpu="2", xid="94", action="app") == "1"
    assert value(text, "nodeagent_gpu_healthy", gpu="2") == "0"


def test_kernel_log_that_cannot_be_read_is_logged_once(rig, tmp_path) -> None:
    with structlog.testing.capture_logs() as logs:
        r = rig("g5-1xa10g", host=_kmsg_host(tmp_path))  # no kmsg there
        for _ in range(3):
            r.cycle()
            r.clock.advance(5)
    assert [e["event"] for e in logs].count("gpu_xid_kernel_log_unavailable") == 1
    assert r.sampler.status().cycles == 3


def test_recovery_action_is_served_and_drives_health(rig) -> None:
    r = rig("p5-8xh100", job_attribution=False)
    r.cycle()
    assert value(r.text(), "DCGM_FI_DEV_GPU_RECOVERY_ACTION", gpu="1") == "0"
    r.fake.set_recovery_action(1, 3)  # DRAIN_P2P: DCGM's health watch only warns
    r.clock.advance(5)
    r.cycle()
    text = r.text()
    assert value(text, "DCGM_FI_DEV_GPU_RECOVERY_ACTION", gpu="1") == "3"
    assert value(text, "nodeagent_gpu_healthy", gpu="1") == "1"
    r.fake.set_recovery_action(1, 1)  # GPU_RESET
    r.clock.advance(5)
    r.cycle()
    text = r.text()
    assert value(text, "DCGM_FI_DEV_GPU_RECOVERY_ACTION", gpu="1") == "1"
    assert value(text, "nodeagent_gpu_healthy", gpu="1") == "0"
    assert value(text, "nodeagent_gpu_healthy", gpu="0") == "1"


def test_an_xid_in_a_mig_instance_is_that_instances(rig) -> None:
    r = rig("h100-mig", job_attribution=False)
    r.fake.inject_xid(0, 94, gi=2)
    r.cycle()
    text = r.text()
    last = {(lb["gpu"], lb["GPU_I_ID"]): v for lb, v in samples(text, "DCGM_FI_DEV_XID_ERRORS")}
    assert last == {("0", "2"): "94", ("0", "3"): "0", ("0", "9"): "0", ("1", "0"): "0"}
    assert value(text, "DCGM_EXP_XID_ERRORS_COUNT", GPU_I_ID="2", xid="94") == "1"
    assert value(text, "nodeagent_gpu_xid_errors_total", gpu="0", xid="94") == "1"
