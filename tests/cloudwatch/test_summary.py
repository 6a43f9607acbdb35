"""The host summary (CPU_IDLE, MEM_USED_PERCENT, DISK_USED_PERCENT, ...) derived
from node_exporter families."""

from __future__ import annotations

import pytest

from nodeagent.model import MetricFamily
from nodeagent.sinks.summary import HostSummary, cpu_percentages


def cpu_family(per_cpu: dict[str, dict[str, float]]) -> MetricFamily:
    f = MetricFamily("node_cpu_seconds_total", "h", "counter", ("cpu", "mode"))
    for cpu, modes in per_cpu.items():
        for mode, v in modes.items():
            f.add((cpu, mode), v)
    return f


def gauge(name: str, value: float) -> MetricFamily:
    f = MetricFamily(name, "h", "gauge")
    f.add((), value)
    return f


def fs(name: str, values: dict[str, float]) -> MetricFamily:
    f = MetricFamily(name, "h", "gauge", ("device", "fstype", "mountpoint"))
    for mp, v in values.items():
        f.add(("/dev/x", "ext4", mp), v)
    return f


def by_name(families: list[MetricFamily]) -> dict[str, dict[tuple[str, ...], float]]:
    return {f.name: dict(f.samples) for f in families}


def test_cpu_needs_two_publishes_then_uses_the_delta() -> None:
    s = HostSummary("head", "i-1")
    first = cpu_family(
        {
            "0": {"idle": 1000, "iowait": 10, "user": 100, "system": 50},
            "1": {"idle": 1000, "iowait": 10, "user": 100, "system": 50},
        }
    )
    assert by_name(s.derive([first])) == {}
    # +60 s on 2 CPUs = 120 CPU-seconds: 30 idle, 12 iowait, 60 user, 18 system
    second = cpu_family(
        {
            "0": {"idle": 1015, "iowait": 16, "user": 130, "system": 59},
            "1": {"idle": 1015, "iowait": 16, "user": 130, "system": 59},
        }
    )
    got = by_name(s.derive([second]))
    ident = ("head", "i-1")
    assert got["nodeagent_host_cpu_idle_percent"][ident] == pytest.approx(25.0)
    assert got["nodeagent_host_cpu_iowait_percent"][ident] == pytest.approx(10.0)
    assert got["nodeagent_host_cpu_used_percent"][ident] == pytest.approx(65.0)


def test_cpu_counter_going_back_or_cpus_changing_skips_one_publish() -> None:
    s = HostSummary("login", "host-a")
    s.derive([cpu_family({"0": {"idle": 100, "user": 10}})])
    assert by_name(s.derive([cpu_family({"0": {"idle": 50, "user": 10}})])) == {}
    assert by_name(s.derive([cpu_family({"0": {"idle": 60, "user": 10}, "1": {"idle": 1, "user": 1}})])) == {}
    got = by_name(s.derive([cpu_family({"0": {"idle": 70, "user": 20}, "1": {"idle": 1, "user": 1}})]))
    assert got["nodeagent_host_cpu_idle_percent"][("login", "host-a")] == pytest.approx(50.0)
    assert cpu_percentages({"idle": 1.0}, {"idle": 1.0}) is None  # no time passed


def test_memory_used_and_available() -> None:
    s = HostSummary("head", "i-1")
    got = by_name(s.derive([gauge("node_memory_MemTotal_bytes", 16e9), gauge("node_memory_MemAvailable_bytes", 4e9)]))
    assert got["nodeagent_host_memory_used_percent"][("head", "i-1")] == pytest.approx(75.0)
    assert got["nodeagent_host_memory_available_bytes"][("head", "i-1")] == 4e9


def test_memory_without_memavailable_falls_back_to_free_buffers_cached() -> None:
    s = HostSummary("head", "i-1")
    got = by_name(
        s.derive(
            [
                gauge("node_memory_MemTotal_bytes", 100.0),
                gauge("node_memory_MemFree_bytes", 10.0),
                gauge("node_memory_Buffers_bytes", 5.0),
                gauge("node_memory_Cached_bytes", 25.0),
            ]
        )
    )
    assert got["nodeagent_host_memory_used_percent"][("head", "i-1")] == pytest.approx(60.0)


def test_disk_used_like_df() -> None:
    s = HostSummary("head", "i-1", mountpoints=("/", "/fsx", "/missing"))
    got = by_name(
        s.derive(
            [
                # root: 100 GB, 40 free, 35 available to users (5 reserved) -> 60 / 95
                fs("node_filesystem_size_bytes", {"/": 100e9, "/fsx": 1e12, "/boot": 1e9}),
                fs("node_filesystem_free_bytes", {"/": 40e9, "/fsx": 250e9, "/boot": 1e8}),
                fs("node_filesystem_avail_bytes", {"/": 35e9, "/fsx": 250e9, "/boot": 1e8}),
            ]
        )
    )
    disk = got["nodeagent_host_disk_used_percent"]
    assert disk[("head", "i-1", "/")] == pytest.approx(100 * 60 / 95)
    assert disk[("head", "i-1", "/fsx")] == pytest.approx(75.0)
    assert set(disk) == {("head", "i-1", "/"), ("head", "i-1", "/fsx")}


def test_nothing_to_derive_from_other_families() -> None:
    assert HostSummary("head", "i-1").derive([gauge("node_load1", 1.0)]) == []
