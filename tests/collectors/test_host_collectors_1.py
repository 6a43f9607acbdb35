"""The node_exporter-compatible host collectors (part 1) against the p5 fixture
tree (tests/fixtures/p5: an AWS p5.48xlarge shaped node, 8 CPUs instead of 192)
and small trees built in tmp_path. Expected samples are written out by hand
from the fixture files."""

from __future__ import annotations

import os
import resource
import shutil
import threading
import time
from pathlib import Path

import pytest
from testlib import FIXTURES

from nodeagent.catalogue import CATALOGUE
from nodeagent.host import Host, Roots, StatTimeout
from nodeagent.model import MetricFamily
from nodeagent.registry import get as get_collector

P5 = FIXTURES / "p5"


def p5_roots() -> Roots:
    return Roots(procfs=str(P5 / "proc"), sysfs=str(P5 / "sys"), rootfs=str(P5 / "root"))


def make(name: str, host: Host, **options):
    cls = get_collector(name)
    return cls(host, cls.Options(**options))


def collect(name: str, host: Host | None = None, **options) -> dict[str, MetricFamily]:
    families = make(name, host or Host(p5_roots()), **options).collect()
    return by_name(families)


def by_name(families: list[MetricFamily]) -> dict[str, MetricFamily]:
    out: dict[str, MetricFamily] = {}
    for fam in families:
        assert fam.name not in out, f"{fam.name} emitted twice"
        spec = CATALOGUE.lookup(fam.name)
        assert spec is not None, f"{fam.name} is not in the catalogue"
        assert (spec.type, spec.labels) == (fam.type, fam.labelnames), fam.name
        keys = [labels for labels, _ in fam.samples]
        assert len(keys) == len(set(keys)), f"{fam.name} has duplicate series"
        if fam.samples:
            out[fam.name] = fam
    return out


def series(fam: MetricFamily) -> dict[tuple[str, ...], float]:
    return dict(fam.samples)


def value(fams: dict[str, MetricFamily], name: str, *labels: str) -> float:
    return series(fams[name])[labels]


# ---- cpu -----------------------------------------------------------------


def test_cpu_on_p5():
    fams = collect("cpu")
    assert set(fams) == {"node_cpu_seconds_total", "node_cpu_guest_seconds_total"}
    seconds = series(fams["node_cpu_seconds_total"])
    assert len(seconds) == 8 * 8
    # cpu0 14653159 1046 1587975 10633820 54736 0 61900 430 0 0
    assert {mode: seconds[("0", mode)] for mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq",
                                                    "steal")} == {
        "user": 146531.59, "nice": 10.46, "system": 15879.75, "idle": 106338.2, "iowait": 547.36, "irq": 0.0,
        "softirq": 619.0, "steal": 4.3,
    }
    guest = series(fams["node_cpu_guest_seconds_total"])
    assert len(guest) == 8 * 2
    assert guest[("3", "user")] == 12.34 and guest[("3", "nice")] == 0.05 and guest[("7", "user")] == 0.0


def test_cpu_guest_off():
    assert "node_cpu_guest_seconds_total" not in collect("cpu", guest=False)


def stat_with(cpu0: str) -> str:
    return f"cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 {cpu0}\nintr 1 0\nctxt 1\nbtime 1\n"


def test_cpu_counters_never_go_backwards(tmp_path):
    (tmp_path / "proc").mkdir()
    stat = tmp_path / "proc" / "stat"
    collector = make("cpu", Host(Roots(procfs=str(tmp_path / "proc"), sysfs=str(tmp_path / "sys"))))
    stat.write_text(stat_with("1000 0 500 90000 300 0 10 0 0 0"))
    collector.collect()
    # idle and iowait jitter backwards a little: the earlier values are kept
    stat.write_text(stat_with("1100 0 500 89950 290 0 10 0 0 0"))
    seconds = series(by_name(collector.collect())["node_cpu_seconds_total"])
    assert (seconds[("0", "user")], seconds[("0", "idle")], seconds[("0", "iowait")]) == (11.0, 900.0, 3.0)
    # idle falls by more than 3 s: the CPU was hotplugged, counting starts over
    stat.write_text(stat_with("10 0 5 100 1 0 0 0 0 0"))
    seconds = series(by_name(collector.collect())["node_cpu_seconds_total"])
    assert (seconds[("0", "user")], seconds[("0", "idle")]) == (0.1, 1.0)


def test_cpu_isolated_and_thermal_throttles(tmp_path):
    """An Intel box: 4 CPUs = 2 cores x 2 threads in one package, CPUs 2-3 isolated."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "stat").write_text("cpu 4 0 0 0\n" + "".join(f"cpu{i} 1 0 0 0\n" for i in range(4)))
    cpu = tmp_path / "sys" / "devices" / "system" / "cpu"
    cpu.mkdir(parents=True)
    (cpu / "isolated").write_text("2-3\n")
    for i in range(4):
        (cpu / f"cpu{i}" / "topology").mkdir(parents=True)
        (cpu / f"cpu{i}" / "topology" / "physical_package_id").write_text("0\n")
        (cpu / f"cpu{i}" / "topology" / "core_id").write_text(f"{i % 2}\n")
        (cpu / f"cpu{i}" / "thermal_throttle").mkdir()
        (cpu / f"cpu{i}" / "thermal_throttle" / "core_throttle_count").write_text(f"{[7, 9, 7, 9][i]}\n")
        (cpu / f"cpu{i}" / "thermal_throttle" / "package_throttle_count").write_text("42\n")
    fams = collect("cpu", Host(Roots(procfs=str(tmp_path / "proc"), sysfs=str(tmp_path / "sys"))))
    assert series(fams["node_cpu_isolated"]) == {("2",): 1.0, ("3",): 1.0}
    assert series(fams["node_cpu_core_throttles_total"]) == {("0", "0"): 7.0, ("1", "0"): 9.0}
    assert series(fams["node_cpu_package_throttles_total"]) == {("0",): 42.0}


def test_cpu_garbled_stat_names_the_file(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "stat").write_text("cpu 1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 x")
    with pytest.raises(ValueError, match=r"proc/stat:3: non-numeric cpu time"):
        collect("cpu", Host(Roots(procfs=str(tmp_path / "proc"), sysfs=str(tmp_path / "sys"))))


# ---- cpufreq -------------------------------------------------------------


def test_cpufreq_on_p5():
    fams = collect("cpufreq")
    assert {name: len(f.samples) for name, f in fams.items()} == {
        "node_cpu_frequency_hertz": 8,
        "node_cpu_frequency_min_hertz": 8,
        "node_cpu_frequency_max_hertz": 8,
        "node_cpu_scaling_frequency_hertz": 8,
        "node_cpu_scaling_frequency_min_hertz": 8,
        "node_cpu_scaling_frequency_max_hertz": 8,
    }
    assert value(fams, "node_cpu_frequency_hertz", "2") == 2_650_000_000
    assert value(fams, "node_cpu_scaling_frequency_hertz", "0") == 3_499_001_000
    assert value(fams, "node_cpu_frequency_max_hertz", "5") == 3_700_000_000
    assert value(fams, "node_cpu_scaling_frequency_min_hertz", "7") == 2_650_000_000
    assert value(fams, "node_cpu_scaling_frequency_min_hertz", "6") == 1_500_000_000


def test_cpufreq_unreadable_files_are_left_out(tmp_path):
    sys_root = tmp_path / "sys"
    shutil.copytree(P5 / "sys" / "devices" / "system" / "cpu", sys_root / "devices" / "system" / "cpu", symlinks=True)
    os.remove(sys_root / "devices" / "system" / "cpu" / "cpufreq" / "policy1" / "cpuinfo_cur_freq")
    (sys_root / "devices" / "system" / "cpu" / "cpufreq" / "policy2" / "scaling_cur_freq").write_text("<unknown>\n")
    fams = collect("cpufreq", Host(Roots(sysfs=str(sys_root))))
    assert ("1",) not in series(fams["node_cpu_frequency_hertz"])
    assert ("2",) not in series(fams["node_cpu_scaling_frequency_hertz"])
    assert len(fams["node_cpu_frequency_hertz"].samples) == 7


def test_cpufreq_absent_costs_nothing(tmp_path):
    (tmp_path / "devices" / "system" / "cpu" / "cpu0").mkdir(parents=True)
    assert make("cpufreq", Host(Roots(sysfs=str(tmp_path)))).collect() == []


# ---- meminfo -------------------------------------------------------------


def test_meminfo_on_p5():
    fams = collect("meminfo")
    assert len(fams) == 55
    assert value(fams, "node_memory_MemTotal_bytes") == 2113477748 * 1024
    assert value(fams, "node_memory_Active_anon_bytes") == 93003312 * 1024
    assert value(fams, "node_memory_Inactive_file_bytes") == 224366920 * 1024
    assert value(fams, "node_memory_VmallocTotal_bytes") == 34359738367 * 1024
    assert value(fams, "node_memory_HugePages_Total") == 4096
    assert value(fams, "node_memory_HugePages_Rsvd") == 12
    assert "node_memory_HugePages_Total_bytes" not in fams
    assert fams["node_memory_HugePages_Free"].help == "Memory information field HugePages_Free."
    assert fams["node_memory_MemFree_bytes"].help == "Memory information field MemFree_bytes."
    assert fams["node_memory_MemFree_bytes"].type == "gauge"


def test_meminfo_truncated_names_file_and_line(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:       2113477748 kB\nMemFre")
    with pytest.raises(ValueError, match=r"meminfo:2: invalid line in meminfo"):
        collect("meminfo", Host(Roots(procfs=str(tmp_path))))


# ---- stat ----------------------------------------------------------------


def test_stat_on_p5():
    fams = collect("stat")
    assert {name: series(f)[()] for name, f in fams.items()} == {
        "node_intr_total": 4917014257,
        "node_context_switches_total": 98217348112,
        "node_forks_total": 4811093,
        "node_boot_time_seconds": 1717430400,
        "node_procs_running": 9,
        "node_procs_blocked": 1,
    }
    assert fams["node_intr_total"].type == "counter" and fams["node_boot_time_seconds"].type == "gauge"


# ---- filesystem ----------------------------------------------------------

EXPECTED_MOUNTS = [
    ("tmpfs", "tmpfs", "/run"),
    ("/dev/nvme0n1p1", "ext4", "/"),
    ("tmpfs", "tmpfs", "/run/lock"),
    ("/dev/nvme0n1p15", "vfat", "/boot/efi"),
    ("/dev/mapper/vg.01-lv_ephemeral", "ext4", "/scratch"),
    ("/dev/nvme9n1", "xfs", "/datasets"),
    ("10.0.0.10:/home", "nfs4", "/home"),
    ("10.0.0.10:/opt/slurm", "nfs4", "/opt/slurm"),
    ("10.0.0.5@tcp:/abcdefgh", "lustre", "/fsx"),
    ("/dev/mapper/vg.01-lv_ephemeral", "ext4", "/scratch/job data"),
    ("tmpfs", "tmpfs", "/run/user/1000"),
]


def statvfs(bsize: int, blocks: int, bfree: int, bavail: int, files: int, ffree: int, frsize: int | None = None):
    return os.statvfs_result((bsize, frsize or bsize, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


class StatTableHost(Host):
    """statvfs answered from a table; a mount point listed in `hang` behaves
    like a stale NFS/Lustre mount seen through Host.statvfs: it takes the whole
    timeout it was given, then fails. Unknown mount points do not exist."""

    def __init__(self, roots: Roots, table: dict, hang: tuple[str, ...] = ()) -> None:
        super().__init__(roots)
        self.table = table
        self.hang = hang
        self.calls: list[tuple[str, float]] = []

    def statvfs(self, mountpoint: str, timeout: float) -> os.statvfs_result:
        self.calls.append((mountpoint, timeout))
        if mountpoint in self.hang:
            time.sleep(timeout)
            raise StatTimeout(f"statfs of {mountpoint} timed out after {timeout:g}s")
        if mountpoint not in self.table:
            raise FileNotFoundError(2, "No such file or directory", mountpoint)
        return self.table[mountpoint]


TABLE = {
    "/": statvfs(4096, 50_000_000, 30_000_000, 28_000_000, 6_553_600, 6_000_000),
    "/run": statvfs(4096, 52_836_944, 52_800_000, 52_800_000, 52_836_943, 52_835_000),
    "/run/lock": statvfs(4096, 1280, 1280, 1280, 52_836_943, 52_836_940),
    "/boot/efi": statvfs(512, 218_444, 206_000, 206_000, 0, 0),
    "/scratch": statvfs(4096, 7_500_000_000, 7_000_000_000, 6_600_000_000, 468_000_000, 467_000_000),
    "/datasets": statvfs(4096, 2_621_440_000, 100_000, 100_000, 1_310_720_000, 1_310_000_000),
    "/home": statvfs(1_048_576, 512_000, 400_000, 400_000, 33_554_432, 33_000_000),
    "/opt/slurm": statvfs(1_048_576, 512_000, 400_000, 400_000, 33_554_432, 33_000_000),
    # node_exporter multiplies by f_bsize, not f_frsize: so do we
    "/fsx": statvfs(4096, 1_174_405_120, 1_000_000_000, 1_000_000_000, 150_000_000, 149_000_000, frsize=1_048_576),
    "/scratch/job data": statvfs(4096, 7_500_000_000, 7_000_000_000, 6_600_000_000, 468_000_000, 467_000_000),
    "/run/user/1000": statvfs(4096, 52_836_943, 52_836_930, 52_836_930, 52_836_943, 52_836_900),
}


def test_filesystem_on_p5():
    fams = collect("filesystem", StatTableHost(p5_roots(), TABLE))
    assert list(series(fams["node_filesystem_device_error"])) == EXPECTED_MOUNTS
    assert set(series(fams["node_filesystem_device_error"]).values()) == {0.0}
    size = series(fams["node_filesystem_size_bytes"])
    assert size[("/dev/nvme0n1p1", "ext4", "/")] == 50_000_000 * 4096
    assert size[("10.0.0.5@tcp:/abcdefgh", "lustre", "/fsx")] == 1_174_405_120 * 4096
    assert value(fams, "node_filesystem_free_bytes", "10.0.0.10:/home", "nfs4", "/home") == 400_000 * 1_048_576
    assert value(fams, "node_filesystem_avail_bytes", "/dev/mapper/vg.01-lv_ephemeral", "ext4", "/scratch") == (
        6_600_000_000 * 4096
    )
    assert value(fams, "node_filesystem_files", "/dev/nvme9n1", "xfs", "/datasets") == 1_310_720_000
    assert value(fams, "node_filesystem_files_free", "/dev/nvme9n1", "xfs", "/datasets") == 1_310_000_000
    readonly = series(fams["node_filesystem_readonly"])
    assert [k for k, v in readonly.items() if v == 1.0] == [("/dev/nvme9n1", "xfs", "/datasets")]
    assert len(readonly) == len(EXPECTED_MOUNTS)


def test_filesystem_unreadable_mount_is_a_device_error():
    table = {k: v for k, v in TABLE.items() if k != "/opt/slurm"}
    fams = collect("filesystem", StatTableHost(p5_roots(), table))
    errors = series(fams["node_filesystem_device_error"])
    assert errors[("10.0.0.10:/opt/slurm", "nfs4", "/opt/slurm")] == 1.0
    assert sum(errors.values()) == 1.0
    assert ("10.0.0.10:/opt/slurm", "nfs4", "/opt/slurm") not in series(fams["node_filesystem_size_bytes"])
    assert len(fams["node_filesystem_size_bytes"].samples) == len(EXPECTED_MOUNTS) - 1


def test_filesystem_hung_mounts_are_bounded_by_the_timeouts():
    host = StatTableHost(p5_roots(), TABLE, hang=("/home", "/fsx"))
    started = time.monotonic()
    fams = collect("filesystem", host, mount_timeout=0.3, total_timeout=0.4)
    elapsed = time.monotonic() - started
    errors = series(fams["node_filesystem_device_error"])
    assert {k[2] for k, v in errors.items() if v == 1.0} == {"/home", "/fsx"}
    assert len(fams["node_filesystem_size_bytes"].samples) == len(EXPECTED_MOUNTS) - 2
    timeouts = dict(host.calls)
    # the first hung mount gets the per-mount timeout, the second only what is
    # left of the scrape's budget, the mounts after it a short grace
    assert timeouts["/home"] == 0.3
    assert 0.02 <= timeouts["/fsx"] <= 0.1 + 1e-6
    assert timeouts["/run/user/1000"] <= 0.3
    assert elapsed < 0.4 + 0.3  # budget plus one grace period and scheduling slack


def test_filesystem_excludes_are_configurable():
    fams = collect(
        "filesystem", StatTableHost(p5_roots(), TABLE), mount_points_exclude="^/(run|boot)($|/)",
        fs_types_exclude="^(tmpfs|lustre|nfs4|sysfs|proc|devtmpfs|devpts|securityfs|cgroup2|pstore|efivarfs|bpf|"
        "autofs|hugetlbfs|mqueue|debugfs|tracefs|fusectl|configfs|ramfs|squashfs|binfmt_misc|overlay|nsfs)$",
    )
    assert [k[2] for k in series(fams["node_filesystem_device_error"])] == [
        "/", "/scratch", "/datasets", "/scratch/job data"
    ]


def test_filesystem_real_statvfs_of_a_tmp_dir_and_a_hung_mount(tmp_path, monkeypatch):
    """Through the real Host.statvfs: a real directory is statfs'ed for real;
    a mount whose statfs blocks in the kernel (simulated by blocking
    os.statvfs for that one path) is a device error within the timeout, is
    skipped at once while still hung, and comes back once it answers."""
    root = tmp_path / "root"
    for d in ("data", "stale"):
        (root / d).mkdir(parents=True)
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "mounts").write_text(
        "/dev/sdz1 /data ext4 rw,relatime 0 0\n10.0.0.10:/export /stale nfs4 ro,hard 0 0\n"
    )
    release = threading.Event()
    real_statvfs = os.statvfs

    def blocking_statvfs(path):
        if str(path).endswith("/stale"):
            release.wait(10)
        return real_statvfs(path)

    monkeypatch.setattr(os, "statvfs", blocking_statvfs)
    collector = make("filesystem", Host(Roots(procfs=str(tmp_path / "proc"), rootfs=str(root))),
                     mount_timeout=0.5)
    try:
        started = time.monotonic()
        fams = by_name(collector.collect())
        assert 0.5 <= time.monotonic() - started < 1.5
        assert series(fams["node_filesystem_device_error"]) == {
            ("/dev/sdz1", "ext4", "/data"): 0.0,
            ("10.0.0.10:/export", "nfs4", "/stale"): 1.0,
        }
        expected = real_statvfs(root / "data")
        assert series(fams["node_filesystem_size_bytes"]) == {
            ("/dev/sdz1", "ext4", "/data"): expected.f_blocks * expected.f_bsize
        }
        assert series(fams["node_filesystem_files"]) == {("/dev/sdz1", "ext4", "/data"): expected.f_files}

        # still hung: skipped at once, no second thread piles up on it
        started = time.monotonic()
        fams = by_name(collector.collect())
        assert time.monotonic() - started < 0.25
        assert value(fams, "node_filesystem_device_error", "10.0.0.10:/export", "nfs4", "/stale") == 1.0
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while True:
        fams = by_name(collector.collect())
        if value(fams, "node_filesystem_device_error", "10.0.0.10:/export", "nfs4", "/stale") == 0.0:
            break
        assert time.monotonic() < deadline, "the mount never recovered"
        time.sleep(0.05)
    assert value(fams, "node_filesystem_readonly", "10.0.0.10:/export", "nfs4", "/stale") == 1.0


def test_filesystem_falls_back_to_proc_mounts(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "mounts").write_text("/dev/sdz1 / ext4 rw 0 0\n")
    fams = collect("filesystem", StatTableHost(Roots(procfs=str(tmp_path / "proc")), TABLE))
    assert list(series(fams["node_filesystem_size_bytes"])) == [("/dev/sdz1", "ext4", "/")]


def test_filesystem_garbled_mounts(tmp_path):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "mounts").write_text("/dev/sdz1 / ext4 rw 0 0\n/dev/sdz2 /data\n")
    with pytest.raises(ValueError, match=r"proc/1/mounts:2: malformed mount point information"):
        collect("filesystem", StatTableHost(Roots(procfs=str(tmp_path / "proc")), TABLE))


# ---- diskstats -----------------------------------------------------------

DISKS = ["nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1", "nvme4n1", "nvme5n1", "nvme6n1", "nvme7n1", "nvme8n1",
         "nvme9n1", "dm-0"]


def test_diskstats_on_p5():
    fams = collect("diskstats")
    assert [k[0] for k in series(fams["node_disk_reads_completed_total"])] == DISKS
    # nvme0n1 1204331 3301 60331212 1103221 9887120 2501118 402118888 18332901 0 4412003 19436122
    #         20331 0 33802240 8331 1220334 392118
    got = {name: value(fams, name, "nvme0n1") for name in fams if name not in (
        "node_disk_info", "node_disk_filesystem_info", "node_disk_device_mapper_info")}
    assert got == {
        "node_disk_reads_completed_total": 1204331,
        "node_disk_reads_merged_total": 3301,
        "node_disk_read_bytes_total": 60331212 * 512,
        "node_disk_read_time_seconds_total": 1103.221,
        "node_disk_writes_completed_total": 9887120,
        "node_disk_writes_merged_total": 2501118,
        "node_disk_written_bytes_total": 402118888 * 512,
        "node_disk_write_time_seconds_total": 18332.901,
        "node_disk_io_now": 0,
        "node_disk_io_time_seconds_total": 4412.003,
        "node_disk_io_time_weighted_seconds_total": 19436.122,
        "node_disk_discards_completed_total": 20331,
        "node_disk_discards_merged_total": 0,
        "node_disk_discarded_sectors_total": 33802240,
        "node_disk_discard_time_seconds_total": 8.331,
        "node_disk_flush_requests_total": 1220334,
        "node_disk_flush_requests_time_seconds_total": 392.118,
    }
    assert value(fams, "node_disk_io_now", "nvme2n1") == 2
    info = series(fams["node_disk_info"])
    assert len(info) == len(DISKS)
    assert info[("nvme0n1", "259", "0", "Amazon Elastic Block Store", "pci-0000:00:04.0-nvme-1", "1.0",
                 "vol0a1b2c3d4e5f67890",
                 "nvme.1d0f-766f6c3061316232633364346535663637383930-416d617a6f6e20456c617374696320426c6f636b"
                 "2053746f7265-00000001")] == 1.0
    # no udev record: the info series is still there, with empty labels
    assert ("dm-0", "253", "0", "", "", "", "", "") in info
    fs_info = series(fams["node_disk_filesystem_info"])
    assert fs_info[("dm-0", "ext4", "filesystem", "7c6b5a49-3827-4160-9f8e-7d6c5b4a3928", "1.0")] == 1.0
    assert fs_info[("nvme1n1", "LVM2_member", "raid", "Xk3pQ1-aB2c-1D4e-F5g6-H7i8-J9k0-L1m2N1", "LVM2 001")] == 1.0
    assert len(fs_info) == 10  # the 8 instance store disks, /datasets, the LVM volume
    assert series(fams["node_disk_device_mapper_info"]) == {
        ("dm-0", "", "lv_ephemeral", "vg.01-lv_ephemeral",
         "LVM-Abc1Def2Ghi3Jkl4Mno5Pqr6Stu7Vwx8Yz9aBcDeFgHiJkLmNoPqRsTuVwXyZ0", "vg.01"): 1.0
    }


def test_diskstats_device_filters():
    fams = collect("diskstats", device_exclude="", device_include="^nvme0n1")
    assert [k[0] for k in series(fams["node_disk_reads_completed_total"])] == [
        "nvme0n1", "nvme0n1p1", "nvme0n1p14", "nvme0n1p15"
    ]
    fams = collect("diskstats", device_exclude="^(loop|ram)")
    assert "nvme0n1p15" in {k[0] for k in series(fams["node_disk_reads_completed_total"])}


def test_diskstats_old_kernel_and_ata_disk(tmp_path):
    """A 4.x kernel (14 fields: no discard/flush families) with a SATA disk."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "diskstats").write_text(
        "   8       0 sda 100 2 300 400 500 6 700 800 9 1000 1100\n   8       1 sda1 1 2 3 4 5 6 7 8 9 10 11\n"
    )
    udev = tmp_path / "root" / "run" / "udev" / "data"
    udev.mkdir(parents=True)
    (udev / "b8:0").write_text(
        "E:ID_ATA=1\nE:ID_ATA_WRITE_CACHE=1\nE:ID_ATA_WRITE_CACHE_ENABLED=0\nE:ID_ATA_ROTATION_RATE_RPM=7200\n"
        "E:SCSI_IDENT_SERIAL=ZL2ABC12\nE:ID_SERIAL_SHORT=WD-1234\nE:ID_MODEL=WDC_WD40EFRX\n"
    )
    fams = collect("diskstats", Host(Roots(procfs=str(tmp_path / "proc"), rootfs=str(tmp_path / "root"))))
    assert "node_disk_discards_completed_total" not in fams and "node_disk_flush_requests_total" not in fams
    assert value(fams, "node_disk_io_time_weighted_seconds_total", "sda") == 1.1
    assert value(fams, "node_disk_ata_write_cache", "sda") == 1
    assert value(fams, "node_disk_ata_write_cache_enabled", "sda") == 0
    assert value(fams, "node_disk_ata_rotation_rate_rpm", "sda") == 7200
    # the serial on the disk label wins over udev's short serial
    assert list(series(fams["node_disk_info"])) == [("sda", "8", "0", "WDC_WD40EFRX", "", "", "ZL2ABC12", "")]


# ---- netdev --------------------------------------------------------------


def test_netdev_on_p5():
    fams = collect("netdev")
    assert len(fams) == 17
    rx = series(fams["node_network_receive_bytes_total"])
    assert rx == {
        ("ens32",): 1843992105532110, ("ens33",): 1702331118220110, ("ens34",): 1699118220331004,
        ("ens35",): 0, ("docker0",): 0,
    }
    assert value(fams, "node_network_transmit_packets_total", "ens33") == 1970331220118
    assert value(fams, "node_network_receive_drop_total", "ens32") == 122
    assert value(fams, "node_network_receive_multicast_total", "ens34") == 118099
    assert value(fams, "node_network_transmit_drop_total", "docker0") == 18
    assert series(fams["node_network_receive_nohandler_total"]) == {
        ("ens32",): 0, ("ens33",): 3, ("ens34",): 0, ("ens35",): 0, ("docker0",): 0,
    }
    assert fams["node_network_transmit_colls_total"].help == "Network device statistic transmit_colls."


def test_netdev_options():
    fams = collect("netdev", device_exclude="", receive_nohandler=False)
    assert value(fams, "node_network_receive_bytes_total", "lo") == 891223118002
    assert "node_network_receive_nohandler_total" not in fams
    fams = collect("netdev", device_include="^ens3[23]$")
    assert list(series(fams["node_network_transmit_bytes_total"])) == [("ens32",), ("ens33",)]


def test_netdev_truncated(tmp_path):
    (tmp_path / "net").mkdir()
    text = (P5 / "proc" / "net" / "dev").read_text()
    (tmp_path / "net" / "dev").write_text(text[: text.index("ens33:") + 20])
    with pytest.raises(ValueError, match=r"net/dev:5: expected 16 counters, got 1"):
        collect("netdev", Host(Roots(procfs=str(tmp_path), sysfs=str(P5 / "sys"))))


# ---- netclass ------------------------------------------------------------

DEVICES = ["docker0", "ens32", "ens33", "ens34", "ens35", "lo"]


def test_netclass_on_p5():
    fams = collect("netclass")
    assert series(fams["node_network_up"]) == {
        ("docker0",): 0, ("ens32",): 1, ("ens33",): 1, ("ens34",): 1, ("ens35",): 0, ("lo",): 0,
    }
    info = series(fams["node_network_info"])
    assert info == {
        ("02:42:5c:1d:9e:0a", "ff:ff:ff:ff:ff:ff", "docker0", "unknown", "", "down"): 1,
        ("0e:a1:7c:3d:52:11", "ff:ff:ff:ff:ff:ff", "ens32", "", "", "up"): 1,
        ("0e:a1:7c:3d:52:12", "ff:ff:ff:ff:ff:ff", "ens33", "", "", "up"): 1,
        ("0e:a1:7c:3d:52:13", "ff:ff:ff:ff:ff:ff", "ens34", "", "", "up"): 1,
        ("0e:a1:7c:3d:52:14", "ff:ff:ff:ff:ff:ff", "ens35", "", "", "down"): 1,
        ("00:00:00:00:00:00", "00:00:00:00:00:00", "lo", "", "", "unknown"): 1,
    }
    assert series(fams["node_network_mtu_bytes"]) == {
        ("docker0",): 1500, ("ens32",): 9001, ("ens33",): 9001, ("ens34",): 9001, ("ens35",): 1500, ("lo",): 65536,
    }
    # only docker0 reports a speed, and it is "unknown" (-1 Mb/s), exported as node_exporter does
    assert series(fams["node_network_speed_bytes"]) == {("docker0",): -125000}
    # carrier of a link that is administratively down cannot be read
    assert series(fams["node_network_carrier"]) == {
        ("docker0",): 0, ("ens32",): 1, ("ens33",): 1, ("ens34",): 1, ("lo",): 1,
    }
    assert value(fams, "node_network_flags", "ens32") == 4099
    assert value(fams, "node_network_flags", "lo") == 9
    assert value(fams, "node_network_iface_id", "ens34") == 4
    assert value(fams, "node_network_protocol_type", "lo") == 772
    assert value(fams, "node_network_carrier_changes_total", "ens32") == 2
    assert value(fams, "node_network_address_assign_type", "docker0") == 3
    assert ("lo",) not in series(fams["node_network_name_assign_type"])
    assert fams["node_network_carrier_changes_total"].type == "counter"
    assert fams["node_network_mtu_bytes"].help == "Network device property: mtu_bytes"


def test_netclass_options():
    fams = collect("netclass", ignored_devices="^(lo|docker.*)$", ignore_invalid_speed=True)
    assert [k[0] for k in series(fams["node_network_up"])] == ["ens32", "ens33", "ens34", "ens35"]
    assert "node_network_speed_bytes" not in fams


def test_netclass_skips_files_in_class_net(tmp_path):
    net = tmp_path / "class" / "net"
    shutil.copytree(P5 / "sys" / "devices" / "virtual" / "net" / "lo", net / "lo")
    (net / "bonding_masters").write_text("\n")
    fams = collect("netclass", Host(Roots(sysfs=str(tmp_path))))
    assert list(series(fams["node_network_up"])) == [("lo",)]


# ---- netstat -------------------------------------------------------------


def test_netstat_on_p5():
    fams = collect("netstat")
    values = {name: series(f)[()] for name, f in fams.items()}
    assert len(values) == 40
    assert {k: values[k] for k in (
        "node_netstat_Tcp_CurrEstab", "node_netstat_Ip_Forwarding", "node_netstat_TcpExt_ListenOverflows",
        "node_netstat_TcpExt_TCPSynRetrans", "node_netstat_Udp_RcvbufErrors", "node_netstat_IpExt_InOctets",
        "node_netstat_Udp6_InDatagrams", "node_netstat_Icmp6_InMsgs", "node_netstat_Ip6_OutOctets",
        "node_netstat_UdpLite6_InErrors",
    )} == {
        "node_netstat_Tcp_CurrEstab": 58,
        "node_netstat_Ip_Forwarding": 1,
        "node_netstat_TcpExt_ListenOverflows": 1204,
        "node_netstat_TcpExt_TCPSynRetrans": 3311,
        "node_netstat_Udp_RcvbufErrors": 17,
        "node_netstat_IpExt_InOctets": 3440596530435,
        "node_netstat_Udp6_InDatagrams": 88120331,
        "node_netstat_Icmp6_InMsgs": 7955,
        "node_netstat_Ip6_OutOctets": 6968791,
        "node_netstat_UdpLite6_InErrors": 0,
    }
    assert "node_netstat_Tcp_MaxConn" not in values and "node_netstat_TcpExt_TCPOFOQueue" not in values
    assert fams["node_netstat_Icmp6_InMsgs"].help == "Statistic Icmp6InMsgs."
    assert fams["node_netstat_Tcp_CurrEstab"].type == "untyped"


def test_netstat_fields_option_and_no_ipv6(tmp_path):
    net = tmp_path / "net"
    net.mkdir()
    for name in ("netstat", "snmp"):
        shutil.copy(P5 / "proc" / "net" / name, net / name)
    fams = collect("netstat", Host(Roots(procfs=str(tmp_path))), fields="^Tcp_(MaxConn|RtoMin)$")
    assert {name: series(f)[()] for name, f in fams.items()} == {
        "node_netstat_Tcp_MaxConn": -1, "node_netstat_Tcp_RtoMin": 200,
    }


# ---- sockstat ------------------------------------------------------------


def test_sockstat_on_p5():
    page = resource.getpagesize()
    fams = collect("sockstat")
    assert {name: series(f)[()] for name, f in fams.items()} == {
        "node_sockstat_sockets_used": 1873,
        "node_sockstat_TCP_inuse": 312,
        "node_sockstat_TCP_orphan": 0,
        "node_sockstat_TCP_tw": 41,
        "node_sockstat_TCP_alloc": 498,
        "node_sockstat_TCP_mem": 2187,
        "node_sockstat_TCP_mem_bytes": 2187 * page,
        "node_sockstat_UDP_inuse": 21,
        "node_sockstat_UDP_mem": 14,
        "node_sockstat_UDP_mem_bytes": 14 * page,
        "node_sockstat_UDPLITE_inuse": 0,
        "node_sockstat_RAW_inuse": 2,
        "node_sockstat_FRAG_inuse": 0,
        "node_sockstat_FRAG_memory": 0,
        "node_sockstat_TCP6_inuse": 38,
        "node_sockstat_UDP6_inuse": 9,
        "node_sockstat_UDPLITE6_inuse": 0,
        "node_sockstat_RAW6_inuse": 1,
        "node_sockstat_FRAG6_inuse": 0,
        "node_sockstat_FRAG6_memory": 0,
    }
    assert fams["node_sockstat_TCP6_inuse"].help == "Number of TCP6 sockets in state inuse."


def test_sockstat_ipv4_only(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "sockstat").write_text("sockets: used 3\nTCP: inuse 1 orphan 0 tw 0 alloc 1 mem 1\n")
    assert set(collect("sockstat", Host(Roots(procfs=str(tmp_path))))) == {
        "node_sockstat_sockets_used", "node_sockstat_TCP_inuse", "node_sockstat_TCP_orphan", "node_sockstat_TCP_tw",
        "node_sockstat_TCP_alloc", "node_sockstat_TCP_mem", "node_sockstat_TCP_mem_bytes",
    }


# ---- vmstat --------------------------------------------------------------


def test_vmstat_on_p5():
    fams = collect("vmstat")
    assert {name: series(f)[()] for name, f in fams.items()} == {
        "node_vmstat_pgpgin": 8267746951,
        "node_vmstat_pgpgout": 6746864203,
        "node_vmstat_pswpin": 0,
        "node_vmstat_pswpout": 0,
        "node_vmstat_pgfault": 33750676580,
        "node_vmstat_pgmajfault": 9276912,
        "node_vmstat_oom_kill": 3,
    }
    assert fams["node_vmstat_oom_kill"].help == "/proc/vmstat information field oom_kill."
    assert fams["node_vmstat_oom_kill"].type == "untyped"


def test_vmstat_fields_option():
    fams = collect("vmstat", fields="^nr_(free_pages|dirty)$")
    assert set(fams) == {"node_vmstat_nr_free_pages", "node_vmstat_nr_dirty"}


# ---- all together ----------------------------------------------------------


def test_every_collector_of_part_1_is_registered_and_catalogued():
    from nodeagent.registry import load_all

    registry = load_all()
    names = ["cpu", "cpufreq", "meminfo", "stat", "filesystem", "diskstats", "netdev", "netclass", "netstat",
             "sockstat", "vmstat"]
    host = StatTableHost(p5_roots(), TABLE)
    for name in names:
        assert registry[name].group == "host"
        # by_name checks every family against the catalogue
        assert by_name(make(name, host).collect()), name


def test_missing_files_fail_clearly(tmp_path):
    host = Host(Roots(procfs=str(tmp_path), sysfs=str(tmp_path)))
    for name in ("cpu", "meminfo", "stat", "diskstats", "netdev", "netstat", "vmstat", "filesystem"):
        with pytest.raises(OSError):
            make(name, host).collect()
    # sockstat files may be absent (address family off); netclass/cpufreq may have nothing
    for name in ("sockstat", "netclass", "cpufreq"):
        assert make(name, host).collect() is not None


def test_fixture_is_what_the_tests_think_it_is():
    # guard against someone regenerating the shared fixture underneath these tests
    assert Path(P5 / "proc" / "stat").read_text().splitlines()[1] == (
        "cpu0 14653159 1046 1587975 10633820 54736 0 61900 430 0 0"
    )


def test_host_read_attrs(tmp_path):
    (tmp_path / "statistics").mkdir()
    (tmp_path / "mtu").write_text("9001\n")
    (tmp_path / "statistics" / "rx_nohandler").write_text("3\n")
    (tmp_path / "big").write_text("x" * 10000 + "\n")
    (tmp_path / "adir").mkdir()
    got = Host.read_attrs(tmp_path, ("mtu", "statistics/rx_nohandler", "speed", "big", "adir"))
    assert got == {"mtu": "9001", "statistics/rx_nohandler": "3", "speed": None, "big": "x" * 10000, "adir": None}
    assert Host.read_attrs(tmp_path / "gone", ("mtu",)) == {"mtu": None}
