"""The pure parsers of the node_exporter-compatible host collectors (part 1):
cpu, cpufreq, meminfo, stat, filesystem, diskstats, netdev, netclass, netstat,
sockstat, vmstat. Every parser is fed strings, including truncated and garbled
ones: those raise a ValueError naming the file and line (or are skipped where
node_exporter skips them)."""

from __future__ import annotations

import re

import pytest

from nodeagent.collectors.host._common import DeviceFilter, parse_int
from nodeagent.collectors.host.cpu import clamp_monotonic, parse_cpu_list, parse_cpu_stat
from nodeagent.collectors.host.cpufreq import cpu_dirs, parse_khz
from nodeagent.collectors.host.diskstats import DEFAULT_DEVICE_EXCLUDE, parse_diskstats, parse_udev_properties
from nodeagent.collectors.host.filesystem import (
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
    Mount,
    parse_mounts,
    select_mounts,
    strip_rootfs,
)
from nodeagent.collectors.host.meminfo import parse_meminfo
from nodeagent.collectors.host.netclass import interface_values
from nodeagent.collectors.host.netdev import parse_netdev
from nodeagent.collectors.host.netstat import DEFAULT_FIELDS as NETSTAT_FIELDS
from nodeagent.collectors.host.netstat import parse_netstat, parse_snmp6
from nodeagent.collectors.host.sockstat import parse_sockstat, sockstat_samples
from nodeagent.collectors.host.stat import parse_stat
from nodeagent.collectors.host.vmstat import DEFAULT_FIELDS as VMSTAT_FIELDS
from nodeagent.collectors.host.vmstat import parse_vmstat

# ---- cpu -----------------------------------------------------------------

STAT = """\
cpu  300 10 200 9000 40 0 6 2 0 0
cpu0 100 0 100 4500 20 0 3 1 0 0
cpu1 200 10 100 4500 20 0 3 1 150 7
intr 123456 0 0 38 1200
ctxt 98217348112
btime 1717430400
processes 4811093
procs_running 9
procs_blocked 1
softirq 4210933391 0 1302884220 2771
"""


def test_parse_cpu_stat_in_seconds_per_cpu():
    cpus = parse_cpu_stat(STAT)
    assert [c for c, _ in cpus] == ["0", "1"]
    assert cpus[0][1] == [1.0, 0.0, 1.0, 45.0, 0.2, 0.0, 0.03, 0.01, 0.0, 0.0]
    assert cpus[1][1][8:] == [1.5, 0.07]


def test_parse_cpu_stat_pads_old_kernels_missing_columns():
    # 2.6.24-era kernels print 8 columns (no guest, guest_nice)
    cpus = parse_cpu_stat("cpu  1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n")
    assert cpus == [("0", [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.0, 0.0])]


def test_parse_cpu_stat_keeps_cpu_numbers_with_offline_gaps():
    cpus = parse_cpu_stat("cpu 1 1 1 1\ncpu0 1 1 1 1\ncpu2 2 2 2 2\nintr 5\n")
    assert [c for c, _ in cpus] == ["0", "2"]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("cpu  1 2 3\ncpu0 100 0 1x0 4500\n", 2, "non-numeric"),
        ("cpu  1 2 3\ncpuX 100 0 100 4500\n", 2, "malformed"),
        ("cpu  1 2 3\ncpu0\n", 2, "malformed"),
    ],
)
def test_parse_cpu_stat_garbled_names_file_and_line(text, line, problem):
    with pytest.raises(ValueError, match=rf"^/proc-root/stat:{line}: {problem}"):
        parse_cpu_stat(text, "/proc-root/stat")


def test_parse_cpu_stat_truncated_before_cpu_lines():
    with pytest.raises(ValueError, match="no per-CPU lines"):
        parse_cpu_stat("cpu  1 2 3 4\n")
    with pytest.raises(ValueError, match="no per-CPU lines"):
        parse_cpu_stat("")


def test_parse_cpu_list():
    assert parse_cpu_list("0-3,8,10-11\n") == ["0", "1", "2", "3", "8", "10", "11"]
    assert parse_cpu_list("5") == ["5"]
    assert parse_cpu_list("\n") == []
    with pytest.raises(ValueError, match="invalid CPU list"):
        parse_cpu_list("1-a")
    with pytest.raises(ValueError, match="invalid CPU range"):
        parse_cpu_list("5-3")


def test_clamp_monotonic_holds_small_backward_jumps():
    first = clamp_monotonic({}, [("0", [10.0, 0, 5, 100.0, 2.0, 0, 0, 0, 0, 0])])
    # iowait and idle jitter backwards by a little: keep the previous values
    second = clamp_monotonic(first, [("0", [11.0, 0, 5, 99.5, 1.9, 0, 0, 0, 0, 0])])
    assert second["0"] == [11.0, 0, 5, 100.0, 2.0, 0, 0, 0, 0, 0]


def test_clamp_monotonic_restarts_a_cpu_whose_idle_fell_3s_or_more():
    first = clamp_monotonic({}, [("0", [10.0, 0, 5, 100.0, 2.0, 0, 0, 0, 0, 0])])
    second = clamp_monotonic(first, [("0", [1.0, 0, 0, 97.0, 0.0, 0, 0, 0, 0, 0])])
    assert second["0"] == [1.0, 0, 0, 97.0, 0.0, 0, 0, 0, 0, 0]


def test_clamp_monotonic_drops_cpus_that_went_away():
    first = clamp_monotonic({}, [("0", [1.0] * 10), ("1", [1.0] * 10)])
    assert list(clamp_monotonic(first, [("0", [2.0] * 10)])) == ["0"]


# ---- cpufreq -------------------------------------------------------------


def test_parse_khz():
    assert parse_khz("3700000") == 3.7e9
    assert parse_khz(None) is None
    assert parse_khz("<unknown>") is None
    assert parse_khz("") is None


def test_cpu_dirs_in_numeric_order_without_other_entries():
    entries = ["cpu10", "cpu2", "cpufreq", "cpuidle", "cpu0", "isolated", "cpu1", "online"]
    assert cpu_dirs(entries) == ["cpu0", "cpu1", "cpu2", "cpu10"]


# ---- meminfo -------------------------------------------------------------

MEMINFO = """\
MemTotal:       2113477748 kB
Active(anon):    93003312 kB
Inactive(file): 224366920 kB
HugePages_Total:    4096
Hugepagesize:       2048 kB

DirectMap1G:    1765801984 kB
"""


def test_parse_meminfo():
    assert parse_meminfo(MEMINFO) == [
        ("MemTotal", 2113477748 * 1024.0, True),
        ("Active_anon", 93003312 * 1024.0, True),
        ("Inactive_file", 224366920 * 1024.0, True),
        ("HugePages_Total", 4096.0, False),
        ("Hugepagesize", 2048 * 1024.0, True),
        ("DirectMap1G", 1765801984 * 1024.0, True),
    ]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("MemTotal:       2113477748 kB\nMemFree:\n", 2, "invalid line"),  # truncated mid-line
        ("MemTotal:       2113477748 kB\nMemFree: 12x4 kB\n", 2, "invalid value"),
        ("MemTotal: 1 kB extra\n", 1, "invalid line"),
        ("MemTotal 1 kB\n", 1, "invalid line"),
    ],
)
def test_parse_meminfo_garbled(text, line, problem):
    with pytest.raises(ValueError, match=rf"^meminfo:{line}: {problem}"):
        parse_meminfo(text)


def test_parse_meminfo_empty_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        parse_meminfo("\n")


# ---- stat ----------------------------------------------------------------


def test_parse_stat():
    assert parse_stat(STAT) == {
        "intr": 123456.0,
        "ctxt": 98217348112.0,
        "btime": 1717430400.0,
        "processes": 4811093.0,
        "procs_running": 9.0,
        "procs_blocked": 1.0,
    }


def test_parse_stat_truncated_keeps_what_is_there():
    assert parse_stat("cpu 1 2 3\ncpu0 1 2 3\nintr 77 1 2\nctxt 5\nbtime 17") == {
        "intr": 77.0,
        "ctxt": 5.0,
        "btime": 17.0,
    }


@pytest.mark.parametrize("text", ["", "cpu 1 2 3\ncpu0 1 2 3\n", "garbage\n"])
def test_parse_stat_without_any_counter_is_an_error(text):
    with pytest.raises(ValueError, match="none of intr, ctxt"):
        parse_stat(text)


@pytest.mark.parametrize("line", ["btime abc", "ctxt", "intr x 1 2"])
def test_parse_stat_garbled_value(line):
    with pytest.raises(ValueError, match=r"^stat:2: cannot parse"):
        parse_stat(f"cpu0 1 2 3\n{line}\nprocesses 4\n")


# ---- filesystem ----------------------------------------------------------

MOUNTS = r"""sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
udev /dev devtmpfs rw,nosuid,relatime,size=10k 0 0
tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/nvme0n1p1 / ext4 rw,relatime,discard,errors=remount-ro 0 0
ramfs /run/credentials/systemd-sysusers.service ramfs ro,nosuid,nodev,noexec,relatime 0 0
/dev/loop0 /snap/core20/2318 squashfs ro,nodev,relatime 0 0
/dev/nvme9n1 /datasets xfs ro,relatime,attr2 0 0
10.0.0.10:/home /home nfs4 rw,relatime,vers=4.2 0 0
10.0.0.10:/home /home nfs4 rw,relatime,vers=4.2,hard 0 0
10.0.0.5@tcp:/abcdefgh /fsx lustre rw,relatime,flock,lazystatfs 0 0
/dev/mapper/vg.01-lv_ephemeral /scratch/job\040data\011x ext4 rw,relatime 0 0
overlay /var/lib/docker/overlay2/4f3c/merged overlay rw,relatime,lowerdir=/a 0 0
/dev/nvme0n1p1 /var/lib/containers/storage/overlay ext4 rw,relatime 0 0
nsfs /run/docker/netns/8a9b nsfs rw 0 0
"""


def test_parse_mounts_decodes_escaped_mount_points():
    mounts = parse_mounts(MOUNTS)
    assert len(mounts) == 15
    assert mounts[4] == Mount("/dev/nvme0n1p1", "/", "ext4", "rw,relatime,discard,errors=remount-ro")
    assert mounts[11].mountpoint == "/scratch/job data\tx"
    assert mounts[7].readonly and not mounts[4].readonly
    # "ro" must be a whole option, not a part of one ("errors=remount-ro")
    assert not Mount("d", "/", "ext4", "rw,errors=remount-ro").readonly


def test_select_mounts_applies_node_exporter_defaults_and_dedupes():
    selected = select_mounts(
        parse_mounts(MOUNTS), re.compile(DEFAULT_MOUNT_POINTS_EXCLUDE), re.compile(DEFAULT_FS_TYPES_EXCLUDE)
    )
    assert [m.mountpoint for m in selected] == ["/run", "/", "/datasets", "/home", "/fsx", "/scratch/job data\tx"]
    # the first of the two stacked /home mounts
    assert selected[3].options == "rw,relatime,vers=4.2"


def test_select_mounts_with_own_patterns():
    selected = select_mounts(parse_mounts(MOUNTS), re.compile("^/(run|home)($|/)"), re.compile("^lustre$"))
    mountpoints = [m.mountpoint for m in selected]
    assert "/run" not in mountpoints and "/home" not in mountpoints and "/fsx" not in mountpoints
    assert "/sys" in mountpoints and "/snap/core20/2318" in mountpoints


@pytest.mark.parametrize("text", ["/dev/sda1 / ext4\n", "/dev/sda1\n", "tmpfs /run tmpfs rw 0 0\n/dev/x /y"])
def test_parse_mounts_truncated(text):
    with pytest.raises(ValueError, match=r"mounts:\d: malformed mount point information"):
        parse_mounts(text)


def test_strip_rootfs():
    assert strip_rootfs("/host/data", "/host") == "/data"
    assert strip_rootfs("/host", "/host") == "/"
    assert strip_rootfs("/hostile", "/host") == "/hostile"
    assert strip_rootfs("/data", "") == "/data"


# ---- diskstats -----------------------------------------------------------

DISKSTATS = "".join(
    line + "\n"
    for line in (
        " 259 0 nvme0n1 1204331 3301 60331212 1103221 9887120 2501118 402118888 18332901 0 4412003 19436122"
        " 20331 0 33802240 8331 1220334 392118",
        " 259 1 nvme0n1p1 1190102 3301 60120110 1100002 9887001 2501118 402118000 18332800 0 4410000 19432802"
        " 20331 0 33802240 8331",
        "   8       0 sda 100 2 300 400 500 6 700 800 9 1000 1100",
        "   8       1 sda1 1 2",
    )
)


def test_parse_diskstats_scales_to_bytes_and_seconds():
    disks = parse_diskstats(DISKSTATS)
    assert [(maj, mi, dev, len(c)) for maj, mi, dev, c in disks] == [
        ("259", "0", "nvme0n1", 17),  # 5.5+: discard and flush columns
        ("259", "1", "nvme0n1p1", 15),  # 4.18+: discard columns
        ("8", "0", "sda", 11),  # older kernels
    ]
    counters = disks[0][3]
    assert counters[:4] == [1204331, 3301, 60331212 * 512.0, 1103.221]
    assert counters[8:11] == [0, 4412.003, 19436.122]
    assert counters[13:] == [33802240, 8.331, 1220334, 392.118]


def test_parse_diskstats_garbled_counter():
    with pytest.raises(ValueError, match=r"^/p/diskstats:2: non-numeric"):
        parse_diskstats(DISKSTATS.replace("1190102", "11901O2"), "/p/diskstats")


def test_parse_udev_properties():
    text = (
        "S:disk/by-id/nvme-x\nI:123\nE:ID_MODEL=Amazon Elastic Block Store\nE:DM_LV_LAYER=\nE:EQ=a=b\n"
        "Ebroken\nG:systemd\n"
    )
    assert parse_udev_properties(text) == {"ID_MODEL": "Amazon Elastic Block Store", "DM_LV_LAYER": "", "EQ": "a=b"}


def test_default_diskstats_exclude():
    f = DeviceFilter(DEFAULT_DEVICE_EXCLUDE, "")
    for ignored in ("nvme0n1p1", "nvme12n1p15", "loop0", "ram0", "sda1", "xvda1", "vdb2", "fd0"):
        assert f.ignored(ignored), ignored
    for kept in ("nvme0n1", "nvme8n1", "dm-0", "md0", "sda", "xvda", "zram0"):
        assert not f.ignored(kept), kept


def test_device_filter_include_and_empty_patterns():
    f = DeviceFilter("", "^nvme")
    assert not f.ignored("nvme1n1") and f.ignored("dm-0")
    assert not DeviceFilter("", "").ignored("anything")
    both = DeviceFilter("p1$", "^nvme")
    assert both.ignored("nvme0n1p1") and not both.ignored("nvme0n1") and both.ignored("sda")


# ---- netdev --------------------------------------------------------------

NETDEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
    lo: 891223118002 401228331 0 0 0 0 0 0 891223118002 401228331 0 0 0 0 0 0
 ens32: 1843992105532110 2110331884210 1 122 2 3 4 118220 1702118220331441 1980112331004 5 6 7 8 9 10
"""


def test_parse_netdev():
    devices = parse_netdev(NETDEV)
    assert [d for d, _ in devices] == ["lo", "ens32"]
    assert devices[1][1] == [
        1843992105532110.0, 2110331884210.0, 1, 122, 2, 3, 4, 118220,
        1702118220331441.0, 1980112331004.0, 5, 6, 7, 8, 9, 10,
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (" ens32: 1 2 3", "expected 16 counters, got 3"),  # truncated
        (" ens32: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 1x", "non-numeric"),
        ("   1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", "missing interface name"),
    ],
)
def test_parse_netdev_garbled(line, problem):
    with pytest.raises(ValueError, match=rf"^net/dev:3: {problem}"):
        parse_netdev(NETDEV.splitlines()[0] + "\n" + NETDEV.splitlines()[1] + "\n" + line + "\n")


# ---- netclass ------------------------------------------------------------


def test_parse_int_reads_like_go_parseint_base_0():
    assert parse_int("0x1003") == 4099
    assert parse_int("9001") == 9001
    assert parse_int("-1") == -1
    assert parse_int("010") == 8
    assert parse_int("up") is None
    assert parse_int("") is None
    assert parse_int(None) is None


def test_interface_values():
    attrs = {
        "addr_assign_type": "0", "carrier": "1", "carrier_changes": "2", "dev_id": "0x0", "flags": "0x1003",
        "ifindex": "2", "iflink": "2", "mtu": "9001", "speed": "100000", "tx_queue_len": "1000", "type": "1",
        "dormant": None, "name_assign_type": "garbled",
    }
    values = interface_values(attrs)
    assert values == {
        "address_assign_type": 0, "carrier": 1, "carrier_changes_total": 2, "device_id": 0, "flags": 4099,
        "iface_id": 2, "iface_link": 2, "mtu_bytes": 9001, "speed_bytes": 12_500_000_000,
        "transmit_queue_length": 1000, "protocol_type": 1,
    }


def test_interface_values_unknown_speed():
    assert interface_values({"speed": "-1"}) == {"speed_bytes": -125000}
    assert interface_values({"speed": "-1"}, ignore_invalid_speed=True) == {}


# ---- netstat -------------------------------------------------------------

SNMP = """\
Ip: Forwarding DefaultTTL InReceives InHdrErrors
Ip: 1 64 2408683809 0
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens CurrEstab InErrs
Tcp: 1 200 120000 -1 108022103 58 3
"""


def test_parse_netstat_pairs_names_and_values():
    stats = parse_netstat(SNMP)
    assert stats[:2] == [("Ip", "Forwarding", "1"), ("Ip", "DefaultTTL", "64")]
    assert ("Tcp", "MaxConn", "-1") in stats and ("Tcp", "CurrEstab", "58") in stats
    assert len(stats) == 11


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (SNMP.rsplit("\n", 2)[0] + "\n", "odd number of lines"),  # truncated: last values line missing
        (SNMP.replace("Tcp: 1 200", "Tcp: 200", 1), r"net/snmp:3: Tcp has 7 names but 6 values"),
        (SNMP.replace("Tcp: 1 200", "Udp: 1 200", 1), "do not pair up"),
    ],
)
def test_parse_netstat_garbled(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_netstat(text, "net/snmp")


def test_parse_snmp6():
    text = "Ip6InReceives      \t3244\nIcmp6InMsgs 12\nUdpLite6InErrors 0\nNoSixHere 5\nbroken\n"
    assert parse_snmp6(text) == [
        ("Ip6", "InReceives", "3244"), ("Icmp6", "InMsgs", "12"), ("UdpLite6", "InErrors", "0")
    ]


def test_netstat_default_fields_are_node_exporter_1_5s():
    fields = re.compile(NETSTAT_FIELDS)
    for wanted in ("Tcp_CurrEstab", "TcpExt_ListenOverflows", "Udp6_RcvbufErrors", "Ip_Forwarding", "IpExt_InOctets",
                   "UdpLite_InErrors", "Icmp6_OutMsgs", "TcpExt_TCPTimeouts"):
        assert fields.search(wanted), wanted
    for unwanted in ("Tcp_MaxConn", "Ip_DefaultTTL", "TcpExt_TCPOFOQueue", "IcmpMsg_InType3"):
        assert not fields.search(unwanted), unwanted


# ---- sockstat ------------------------------------------------------------

SOCKSTAT = """\
sockets: used 1873
TCP: inuse 312 orphan 0 tw 41 alloc 498 mem 2187
UDP: inuse 21 mem 14
FRAG: inuse 0 memory 0
"""


def test_parse_sockstat():
    used, protocols = parse_sockstat(SOCKSTAT)
    assert used == 1873
    assert protocols[0] == ("TCP", {"inuse": 312, "orphan": 0, "tw": 41, "alloc": 498, "mem": 2187})
    samples = sockstat_samples(protocols, page_size=4096)
    assert ("TCP_mem_bytes", "TCP", "mem_bytes", 2187 * 4096) in samples
    assert ("FRAG_memory", "FRAG", "memory", 0) in samples
    # FRAG's memory is bytes already: no FRAG_memory_bytes
    assert [s[0] for s in samples if s[1] == "FRAG"] == ["FRAG_inuse", "FRAG_memory"]


def test_parse_sockstat6_has_no_used_line():
    used, protocols = parse_sockstat("TCP6: inuse 38\nUDP6: inuse 9\n")
    assert used is None and [p for p, _ in protocols] == ["TCP6", "UDP6"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sockets: used 5\nTCP: inuse 3 orphan\n", "odd number of key/value fields"),  # truncated
        ("sockets: used 5\nTCP: inuse x\n", "non-integer value"),
        ("sockets: used 5\nTCP:\n", "malformed sockstat line"),
    ],
)
def test_parse_sockstat_garbled(text, problem):
    with pytest.raises(ValueError, match=rf"^net/sockstat:2: {problem}"):
        parse_sockstat(text)


# ---- vmstat --------------------------------------------------------------


def test_parse_vmstat_and_default_fields():
    pairs = parse_vmstat("nr_free_pages 5\npgpgin 10\npgfault 20\npgmajfault 3\noom_kill 1\nthp_fault_alloc 4\n")
    assert pairs[1] == ("pgpgin", "10")
    fields = re.compile(VMSTAT_FIELDS)
    assert [name for name, _ in pairs if fields.search(name)] == ["pgpgin", "pgfault", "pgmajfault", "oom_kill"]


def test_parse_vmstat_garbled():
    with pytest.raises(ValueError, match=r"^vmstat:2: expected 'name value'"):
        parse_vmstat("pgpgin 10\npgpgout\n")
