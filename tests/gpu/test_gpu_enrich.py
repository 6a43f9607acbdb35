"""The enrichers, as plain functions: no fake driver, no sampler."""

from __future__ import annotations

from collections import deque

from nodeagent.collectors.gpu.enrich import (
    GpuProcess,
    attribute_jobs,
    clock_event_counts,
    idle_seconds,
    nvlink_rate,
)

JOBS = {10: "100", 11: "101", 12: "102"}


def test_processes_attribute_jobs_to_the_gpu() -> None:
    procs = [GpuProcess(10, 1 << 30), GpuProcess(11, 2 << 30), GpuProcess(99, 1 << 20)]
    a = attribute_jobs(0, [], procs, JOBS.get, {}, 8, set())
    assert a.gpu_jobs == ("100", "101")
    assert a.processes == 3
    assert a.memory == {"100": 1 << 30, "101": 2 << 30, "": 1 << 20}


def test_instance_series_name_only_the_jobs_on_that_instance() -> None:
    procs = [GpuProcess(10, 1, gi_id=1), GpuProcess(11, 1, gi_id=2)]
    mapping = {"0.2": ["200"], "0": ["whole"]}
    a = attribute_jobs(0, [1, 2], procs, JOBS.get, mapping, 8, set())
    # dcgm-exporter 4.5.3: file "0.2" is instance 2's, file "0" a whole GPU's
    assert a.instance_jobs == {1: ("100",), 2: ("101", "200")}


def test_unread_processes_give_no_count_and_no_memory() -> None:
    a = attribute_jobs(3, [], None, JOBS.get, {"3": ["7"]}, 8, set())
    assert (a.gpu_jobs, a.processes, a.memory) == (("7",), None, {})


def test_jobs_beyond_the_bound_fold_into_no_job() -> None:
    procs = [GpuProcess(p, 10) for p in (10, 11, 12)]
    a = attribute_jobs(0, [], procs, JOBS.get, {}, 2, set())
    assert len(a.gpu_jobs) == 2
    assert sum(a.memory.values()) == 30 and "" in a.memory


def test_idle_time_runs_from_the_first_idle_cycle_and_restarts_for_another_job() -> None:
    state, seconds = idle_seconds(None, ("1",), 0.0, 5.0, 100.0)
    assert seconds == 0.0
    state, seconds = idle_seconds(state, ("1",), 1.0, 5.0, 160.0)
    assert seconds == 60.0
    state, seconds = idle_seconds(state, ("2",), 1.0, 5.0, 170.0)
    assert seconds == 0.0  # another job: its own idle time
    assert idle_seconds(state, ("2",), 50.0, 5.0, 180.0) == (None, 0.0)  # busy
    assert idle_seconds(None, (), 0.0, 5.0, 180.0) == (None, None)  # no job
    assert idle_seconds(None, ("2",), None, 5.0, 180.0) == (None, None)  # utilisation unknown


def test_clock_events_count_samples_with_the_bit_set_within_the_window() -> None:
    history: deque[tuple[float, int]] = deque()
    assert clock_event_counts(history, 0x4, 0.0, 60.0) == {"power_cap": 1}
    assert clock_event_counts(history, 0x5, 30.0, 60.0) == {"power_cap": 2, "gpu_idle": 1}
    assert clock_event_counts(history, 0x0, 70.0, 60.0) == {"power_cap": 1, "gpu_idle": 1}  # t=0 expired
    assert clock_event_counts(history, 0x0, 100.0, 60.0) == {}


def test_nvlink_bandwidth_is_dcgms_rate_between_two_readings() -> None:
    # DCGM: (delta KiB) / seconds / 1000, whole numbers; 0 first
    assert nvlink_rate(None, (0.0, 1_000_000)) == 0
    assert nvlink_rate((0.0, 1_000_000), (5.0, 26_000_000)) == 5000
    assert nvlink_rate((5.0, 26_000_000), (5.0, 27_000_000)) == 0  # no time passed
    assert nvlink_rate((5.0, 26_000_000), (10.0, 100)) == 0  # counter reset
