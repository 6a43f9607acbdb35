"""Compatibility with the real node_exporter (Debian's prometheus-node-exporter).

Both run on 127.0.0.1 against this machine's /proc and /sys with the same
filters and the same textfile directory, scraped milliseconds apart. For every
family both serve: same name, type and label names; the same label sets for
families that describe fixed things (devices, mount points, CPUs); values
equal for static facts and within a stated tolerance for counters.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from testlib import free_port, wait_http

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
pytestmark = pytest.mark.skipif(NODE_EXPORTER is None, reason="prometheus-node-exporter not installed")

UPSTREAM_MOUNT_EXCLUDE = "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"

# Families node_exporter serves that nodeagent deliberately does not, and why.
NOT_SERVED = {
    r"go_.*": "Go runtime metrics of node_exporter's own process",
    r"promhttp_.*": "node_exporter's own HTTP handler counters",
    r"node_exporter_build_info": "node_exporter's build; nodeagent has nodeagent_build_info",
    r"process_.*": "both serve their own process metrics; values describe different processes",
    r"node_scrape_collector_.*": "compared separately: collector sets differ (systemd and others below)",
    # collectors nodeagent does not implement (node_exporter defaults with no use on GPU cluster nodes or
    # nothing to read on them): they would appear only where the kernel feature exists
    r"node_(bcache|bonding|btrfs|dmi|edac|fibrechannel|ipvs|md|nfs|nfsd|nvme|power_supply|rapl|selinux|"
    r"tape|thermal_zone|udp_queues|xfs|zfs|cooling_device)(_.*)?": "collector not implemented (see README)",
}

# Values that must be equal: static facts.
EXACT = [
    "node_memory_MemTotal_bytes", "node_memory_SwapTotal_bytes", "node_boot_time_seconds",
    "node_filesystem_size_bytes", "node_filesystem_files", "node_filesystem_readonly",
    "node_filefd_maximum", "node_network_mtu_bytes", "node_network_up", "node_cpu_scaling_frequency_max_hertz",
    "node_cpu_scaling_frequency_min_hertz", "node_uname_info", "node_os_info", "node_entropy_pool_size_bits",
    "node_textfile_scrape_error", "node_network_carrier", "node_nf_conntrack_entries_limit",
]
# Counters read milliseconds apart: (absolute slack, relative slack)
TOLERANCE = {
    "node_cpu_seconds_total": (3.0, 0.01),
    "node_context_switches_total": (20000, 0.01),
    "node_intr_total": (20000, 0.01),
    "node_forks_total": (200, 0.01),
    "node_disk_reads_completed_total": (50, 0.01),
    "node_disk_writes_completed_total": (200, 0.01),
    "node_disk_read_bytes_total": (10 * 2**20, 0.01),
    "node_disk_written_bytes_total": (50 * 2**20, 0.01),
    "node_network_receive_bytes_total": (2 * 2**20, 0.01),
    "node_network_transmit_bytes_total": (2 * 2**20, 0.01),
    "node_network_receive_packets_total": (5000, 0.01),
    "node_vmstat_pgfault": (10**6, 0.05),
}
# Families whose label sets describe fixed things and must match exactly.
SAME_SERIES = [
    "node_cpu_seconds_total", "node_disk_reads_completed_total", "node_filesystem_size_bytes",
    "node_network_receive_bytes_total", "node_network_up", "node_hwmon_temp_celsius",
    "node_netstat_Tcp_CurrEstab", "node_sockstat_TCP_inuse", "node_uname_info", "node_os_info",
]


class Family:
    """Samples by their exposed name (the parser strips `_total` from counter
    family names; users query the sample names)."""

    def __init__(self, type_: str) -> None:
        self.type = type_
        self.samples: list = []


def scrape(url: str) -> dict[str, Family]:
    text = urllib.request.urlopen(url, timeout=30).read().decode()
    families: dict[str, Family] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            families.setdefault(sample.name, Family(fam.type)).samples.append(sample)
    return families


def labelsets(fam) -> set[tuple]:
    return {tuple(sorted(s.labels.items())) for s in fam.samples}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    textfile = tmp_path_factory.mktemp("textfile")
    (textfile / "site.prom").write_text(
        "# HELP site_info Site facts.\n# TYPE site_info gauge\nsite_info{rack=\"r1\"} 1\n"
    )
    ne_port, na_port = free_port(), free_port()
    ne = subprocess.Popen([
        NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{ne_port}", "--no-collector.systemd",
        f"--collector.textfile.directory={textfile}",
        f"--collector.filesystem.mount-points-exclude={UPSTREAM_MOUNT_EXCLUDE}",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = tmp_path_factory.mktemp("cfg") / "config.yaml"
    cfg.write_text(f"exporters:\n  host: {{listen: '127.0.0.1:{na_port}', min_interval: 0}}\n"
                   f"  gpu: {{enabled: false}}\npaths: {{textfile_dir: '{textfile}'}}\n")
    import sys

    na = subprocess.Popen([sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(cfg)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{ne_port}/metrics")
        wait_http(f"http://127.0.0.1:{na_port}/metrics")
        ours = scrape(f"http://127.0.0.1:{na_port}/metrics")
        theirs = scrape(f"http://127.0.0.1:{ne_port}/metrics")
        yield ours, theirs
    finally:
        for p in (ne, na):
            p.terminate()
            p.wait(10)


def deliberately_not_served(name: str) -> bool:
    return any(re.fullmatch(p, name) for p in NOT_SERVED)


def test_every_family_node_exporter_serves_is_served_alike(both):
    ours, theirs = both
    missing, mismatched = [], []
    for name, fam in sorted(theirs.items()):
        if deliberately_not_served(name):
            continue
        mine = ours.get(name)
        if mine is None:
            missing.append(name)
            continue
        if mine.type != fam.type:
            mismatched.append(f"{name}: type {mine.type} != {fam.type}")
        their_labels = {tuple(sorted(s.labels)) for s in fam.samples}
        my_labels = {tuple(sorted(s.labels)) for s in mine.samples}
        if their_labels != my_labels:
            mismatched.append(f"{name}: label names {sorted(my_labels)} != {sorted(their_labels)}")
    assert not missing, f"families node_exporter serves and nodeagent does not: {missing}"
    assert not mismatched, "\n".join(mismatched)


def test_collector_meta_metrics_cover_the_same_collectors(both):
    ours, theirs = both
    mine = {s.labels["collector"] for s in ours["node_scrape_collector_success"].samples}
    # nodeagent's efa collector serves node_exporter's infiniband families too
    mine |= {"infiniband"} if "efa" in mine else set()
    their = {s.labels["collector"] for s in theirs["node_scrape_collector_success"].samples}
    implemented = their - {"systemd"} - set(NOT_IMPLEMENTED_COLLECTORS)
    assert implemented <= mine, f"node_exporter collectors without a nodeagent twin: {sorted(implemented - mine)}"


NOT_IMPLEMENTED_COLLECTORS = [
    "bcache", "bonding", "btrfs", "dmi", "edac", "fibrechannel", "ipvs", "mdadm", "nfs", "nfsd", "nvme",
    "powersupplyclass", "rapl", "selinux", "tapestats", "thermal_zone", "udp_queues", "xfs", "zfs",
]


@pytest.mark.parametrize("name", SAME_SERIES)
def test_same_series(both, name):
    ours, theirs = both
    if name not in theirs:
        pytest.skip(f"{name} not served by node_exporter on this machine")
    assert labelsets(ours[name]) == labelsets(theirs[name])


@pytest.mark.parametrize("name", EXACT)
def test_static_values_are_equal(both, name):
    ours, theirs = both
    if name not in theirs:
        pytest.skip(f"{name} not served by node_exporter on this machine")
    mine = {tuple(sorted(s.labels.items())): s.value for s in ours[name].samples}
    their = {tuple(sorted(s.labels.items())): s.value for s in theirs[name].samples}
    assert mine == their


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_counters_agree_within_tolerance(both, name):
    ours, theirs = both
    if name not in theirs:
        pytest.skip(f"{name} not served by node_exporter on this machine")
    absolute, relative = TOLERANCE[name]
    mine = {tuple(sorted(s.labels.items())): s.value for s in ours[name].samples}
    for s in theirs[name].samples:
        key = tuple(sorted(s.labels.items()))
        assert key in mine, f"{name}{dict(key)} missing"
        slack = max(absolute, relative * max(abs(s.value), abs(mine[key])))
        assert math.isclose(mine[key], s.value, abs_tol=slack), f"{name}{dict(key)}: {mine[key]} vs {s.value}"


def test_textfile_families_pass_through(both):
    ours, theirs = both
    assert labelsets(ours["site_info"]) == labelsets(theirs["site_info"])
    assert "node_textfile_mtime_seconds" in ours
