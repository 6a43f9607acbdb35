"""The public Grafana dashboards the README names work unchanged.

"Node Exporter Full" (grafana.com 1860) and NVIDIA's "DCGM Exporter Dashboard"
(grafana.com 12239) query the metric names listed in
tests/fixtures/dashboards/ (taken from every panel target and template variable
of the dashboards' JSON; the files name the source commit).

Node Exporter Full: Debian's real node_exporter and nodeagent run side by side
on this machine; every dashboard name node_exporter serves here must be served
by nodeagent under the same sample name. Names neither serves here must be
explained below (collectors node_exporter leaves off by default, hardware or
kernel features this machine lacks); an unexplained one fails, so the list
stays honest and a mistyped name in the fixture is caught.

DCGM 12239: nodeagent's dcgm-exporter endpoint with the fake GPU backend
(8 x H100) must serve every name the dashboard queries, on every GPU, with the
labels the queries and their legends use, in the units the panels assume.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from testlib import FIXTURES, free_port, wait_http

DASHBOARDS = FIXTURES / "dashboards"
NODE_EXPORTER_FULL = DASHBOARDS / "node-exporter-full-1860.txt"
DCGM_DASHBOARD = DASHBOARDS / "dcgm-exporter-12239.txt"

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
# Same flags as test_node_exporter.py: upstream's default mount-point filter
# (Debian's build ships a different default) and no systemd (not PID 1 here).
UPSTREAM_MOUNT_EXCLUDE = "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

# Dashboard names that may be served by neither exporter, and why. Only consulted
# for names neither serves; wherever node_exporter serves one, nodeagent must too.
NEITHER_SERVES = {
    # node_exporter collectors that are off by default (the dashboard's panels say
    # "Enable with --collector.X"); nodeagent has no equivalent either.
    r"node_interrupts_total": "interrupts collector: off by default in node_exporter",
    r"node_processes_.+": "processes collector: off by default in node_exporter",
    r"node_tcp_connection_states": "tcpstat collector: off by default in node_exporter",
    r"node_systemd_.+": "systemd collector: off by default in node_exporter (and no systemd as PID 1 here)",
    r"node_netstat_Tcp_MaxConn": "netstat collector: excluded by node_exporter's default --collector.netstat.fields",
    # A name no exporter serves: the "Processes Memory" panel's legend for it reads
    # "Maximum amount of virtual memory available in bytes", i.e. the panel meant
    # process_virtual_memory_max_bytes (which it also queries).
    r"process_resident_memory_max_bytes": "not a metric of any exporter (dashboard typo)",
    # Hardware or kernel features that exist on some hosts only. Where they exist,
    # node_exporter serves these and the main test requires nodeagent to serve them.
    r"node_hwmon_.+": "hwmon: no hwmon sensors on this host",
    r"node_cpu_scaling_frequency_.+": "cpufreq: no cpufreq driver on this host (usual in VMs)",
    r"node_schedstat_.+": "schedstat: kernel without /proc/schedstat",
    r"node_memory_HardwareCorrupted_bytes": "meminfo: kernel without CONFIG_MEMORY_FAILURE has no HardwareCorrupted",
    # node_exporter collectors nodeagent does not implement (see the README). Listed
    # here only for hosts without the hardware: where node_exporter serves them, the
    # main test fails, as it should.
    r"node_cooling_device_.+": "thermal_zone: no cooling devices on this host",
    r"node_power_supply_.+": "powersupplyclass: no power supplies on this host",
}

# dcgm-exporter's labels on every per-GPU series (Hostname: the name before 4.6,
# which nodeagent serves by default). The dashboard's own queries use `gpu` (in
# selectors, legends and label_values) and `instance` (added by Prometheus at
# scrape time, so not checked here).
DASHBOARD_GPU_LABELS = {"gpu"}
DCGM_EXPORTER_GPU_LABELS = {"gpu", "UUID", "device", "modelName", "Hostname"}
# The units the 12239 panels assume: (lowest, highest) plausible value.
PANEL_UNITS = {
    "DCGM_FI_DEV_GPU_TEMP": (0.0, 130.0),  # celsius
    "DCGM_FI_DEV_POWER_USAGE": (0.0, 2000.0),  # watt
    "DCGM_FI_DEV_SM_CLOCK": (100.0, 5000.0),  # MHz (the panel multiplies by 1e6 to plot Hz)
    "DCGM_FI_DEV_GPU_UTIL": (0.0, 100.0),  # percent
    "DCGM_FI_DEV_FB_USED": (0.0, 200_000.0),  # MiB (decmbytes)
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": (0.0, 1.0),  # ratio (percentunit)
}
FAKE_GPUS = 8  # p5-8xh100


def dashboard_names(path: Path) -> list[str]:
    names = [s for s in (line.strip() for line in path.read_text().splitlines()) if s and not s.startswith("#")]
    bad = [n for n in names if not METRIC_NAME.fullmatch(n)]
    assert not bad, f"{path.name}: not metric names: {bad}"
    assert len(names) == len(set(names)), f"{path.name}: duplicate names"
    return names


def sample_names(text: str) -> dict[str, list]:
    """Samples by exposed name (the parser strips `_total` from counter family
    names; dashboards query sample names)."""
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def scrape(url: str) -> dict[str, list]:
    return sample_names(urllib.request.urlopen(url, timeout=30).read().decode())


def neither_reason(name: str) -> str | None:
    return next((why for pat, why in NEITHER_SERVES.items() if re.fullmatch(pat, name)), None)


def test_fixtures_are_metric_name_lists():
    assert len(dashboard_names(NODE_EXPORTER_FULL)) > 150
    assert len(dashboard_names(DCGM_DASHBOARD)) >= 6


@pytest.fixture(scope="module")
def host_scrapes(tmp_path_factory):
    if NODE_EXPORTER is None:
        pytest.skip("prometheus-node-exporter not installed")
    ne_port, na_port = free_port(), free_port()
    cfg = tmp_path_factory.mktemp("dash-cfg") / "config.yaml"
    cfg.write_text(f"exporters:\n  host: {{listen: '127.0.0.1:{na_port}', min_interval: 0}}\n"
                   "  gpu: {enabled: false}\n")
    ne = subprocess.Popen([
        NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{ne_port}", "--no-collector.systemd",
        f"--collector.filesystem.mount-points-exclude={UPSTREAM_MOUNT_EXCLUDE}",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    na = subprocess.Popen([sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(cfg)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{ne_port}/metrics")
        wait_http(f"http://127.0.0.1:{na_port}/metrics")
        yield scrape(f"http://127.0.0.1:{na_port}/metrics"), scrape(f"http://127.0.0.1:{ne_port}/metrics")
    finally:
        for p in (ne, na):
            p.terminate()
        for p in (ne, na):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_node_exporter_full_names_served_by_node_exporter_are_served_by_nodeagent(host_scrapes):
    ours, theirs = host_scrapes
    names = dashboard_names(NODE_EXPORTER_FULL)
    by_ne = [n for n in names if n in theirs]
    by_us = [n for n in names if n in ours]
    missing = [n for n in by_ne if n not in ours]
    only_us = [n for n in by_us if n not in theirs]
    neither = [n for n in names if n not in theirs and n not in ours]
    print(f"\nNode Exporter Full 1860: {len(names)} names; node_exporter serves {len(by_ne)} here, "
          f"nodeagent {len(by_us)} ({len(only_us)} that node_exporter does not), neither {len(neither)}, "
          f"missing from nodeagent {len(missing)}")
    for n in neither:
        print(f"  neither: {n}: {neither_reason(n) or 'UNEXPLAINED'}")
    assert not missing, f"dashboard names node_exporter serves here and nodeagent does not: {missing}"


def test_node_exporter_full_names_neither_serves_are_explained(host_scrapes):
    ours, theirs = host_scrapes
    unexplained = [n for n in dashboard_names(NODE_EXPORTER_FULL)
                   if n not in theirs and n not in ours and neither_reason(n) is None]
    assert not unexplained, f"dashboard names neither exporter serves here, with no reason in NEITHER_SERVES: " \
                            f"{unexplained}"


def test_neither_serves_list_names_only_dashboard_names():
    names = dashboard_names(NODE_EXPORTER_FULL)
    stale = [p for p in NEITHER_SERVES if not any(re.fullmatch(p, n) for n in names)]
    assert not stale, f"NEITHER_SERVES patterns matching no dashboard name: {stale}"


@pytest.fixture(scope="module")
def gpu_samples(tmp_path_factory):
    """A scrape of nodeagent's dcgm-exporter endpoint (fake backend), taken once
    the DCGM_FI_PROF_* fields are in: on Hopper they come from NVML GPM, which
    computes them between two samples, so the first sampling cycle has none
    (and `nodeagent --once`, which serves the first cycle, shows none)."""
    port = free_port()
    cfg = tmp_path_factory.mktemp("dash-gpu") / "config.yaml"
    cfg.write_text(f"exporters:\n  host: {{enabled: false}}\n  slurm: {{enabled: false}}\n"
                   f"  gpu: {{listen: '127.0.0.1:{port}', min_interval: 0}}\n"
                   "gpu: {backend: fake, fake_description: p5-8xh100, fake_events: false, interval: 0.2}\n")
    agent = subprocess.Popen([sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(cfg)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_http(url)
        deadline = time.monotonic() + 10
        while True:
            samples = {n: s for n, s in scrape(url).items() if n.startswith("DCGM_")}
            if any(n.startswith("DCGM_FI_PROF_") for n in samples) or time.monotonic() > deadline:
                return samples
            time.sleep(0.1)
    finally:
        agent.terminate()
        try:
            agent.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.communicate()


def test_dcgm_dashboard_names_are_served(gpu_samples):
    names = dashboard_names(DCGM_DASHBOARD)
    missing = [n for n in names if n not in gpu_samples]
    print(f"\nDCGM Exporter Dashboard 12239: {len(names)} names; nodeagent serves {len(names) - len(missing)}, "
          f"missing {len(missing)}")
    assert not missing, f"DCGM dashboard names nodeagent does not serve with the fake backend: {missing}"


@pytest.mark.parametrize("name", dashboard_names(DCGM_DASHBOARD))
def test_dcgm_dashboard_series_carry_the_labels_and_every_gpu(gpu_samples, name):
    samples = gpu_samples.get(name)
    if not samples:
        pytest.fail(f"{name} not served")
    for s in samples:
        labels = set(s.labels)
        assert labels >= DASHBOARD_GPU_LABELS, f"{name}{s.labels}: lacks {DASHBOARD_GPU_LABELS - labels}"
        assert labels >= DCGM_EXPORTER_GPU_LABELS, \
            f"{name}{s.labels}: lacks dcgm-exporter labels {DCGM_EXPORTER_GPU_LABELS - labels}"
        assert s.labels["Hostname"] and s.labels["UUID"].startswith("GPU-") and s.labels["modelName"]
    # The $gpu variable is label_values(DCGM_FI_DEV_GPU_TEMP, gpu); every panel
    # filters on it, so each panel's series must cover the same GPUs.
    gpus = {s.labels["gpu"] for s in samples}
    assert gpus == {s.labels["gpu"] for s in gpu_samples["DCGM_FI_DEV_GPU_TEMP"]}
    assert len(gpus) == FAKE_GPUS == len(samples), f"{name}: series per GPU {sorted(gpus)} ({len(samples)} series)"


@pytest.mark.parametrize("name", sorted(PANEL_UNITS))
def test_dcgm_dashboard_values_are_in_the_panel_units(gpu_samples, name):
    assert name in dashboard_names(DCGM_DASHBOARD)
    low, high = PANEL_UNITS[name]
    values = [s.value for s in gpu_samples.get(name, [])]
    assert values, f"{name} not served"
    bad = [v for v in values if not (math.isfinite(v) and low <= v <= high)]
    assert not bad, f"{name}: values outside [{low}, {high}] (the panel's unit): {bad}"
