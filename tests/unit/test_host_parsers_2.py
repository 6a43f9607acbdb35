"""Parsers of the node_exporter-compatible host collectors, part 2, and of the EFA and Lustre
collectors, called with strings: well-formed, truncated and garbled input."""

from __future__ import annotations

import time

import pytest

from nodeagent.catalogue import host_extra as cat
from nodeagent.collectors.host._values import go_float, go_uint
from nodeagent.collectors.host.arp import parse_arp
from nodeagent.collectors.host.conntrack import parse_conntrack_stat
from nodeagent.collectors.host.efa import is_efa, parse_counter, parse_ib_rate, parse_ib_state
from nodeagent.collectors.host.entropy import parse_entropy
from nodeagent.collectors.host.filefd import parse_file_nr
from nodeagent.collectors.host.hwmon import (
    Chip,
    add_sensor_file,
    chip_name,
    clean_name,
    hwmon_families,
    split_sensor_filename,
)
from nodeagent.collectors.host.lustre import OpStats, fs_name, lustre_families, merge_stats, parse_llite_stats
from nodeagent.collectors.host.os_release import os_families, os_version, parse_os_release
from nodeagent.collectors.host.pressure import parse_pressure
from nodeagent.collectors.host.schedstat import parse_schedstat
from nodeagent.collectors.host.softnet import parse_softnet
from nodeagent.collectors.host.systime import parse_clocksources, zone_offset
from nodeagent.collectors.host.textfile import parse_textfile
from nodeagent.collectors.host.timex import timex_values
from nodeagent.collectors.host.uname import uname_labels


def samples(fams):
    """{family name: {label values: value}} of families that have samples."""
    return {f.name: dict(f.samples) for f in fams if f.samples}


# ---- numbers -----------------------------------------------------------------------------------


def test_go_number_parsing_is_as_strict_as_strconv():
    assert go_float("36850") == 36850.0
    assert go_float("-273150") == -273150.0
    assert go_float("+Inf") == float("inf")
    for bad in ("", " 1", "1 ", "1_000", "abc"):
        with pytest.raises(ValueError):
            go_float(bad)
    assert go_uint("18446744073709551615") == 2**64 - 1
    for bad in ("18446744073709551616", "-1", "1.0", "", "١٢"):
        with pytest.raises(ValueError):
            go_uint(bad)


# ---- pressure ----------------------------------------------------------------------------------

PSI_CPU = "some avg10=1.53 avg60=0.87 avg300=0.42 total=81246713\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"


def test_pressure_totals_are_seconds():
    assert parse_pressure(PSI_CPU) == {"some": 81.246713, "full": 0.0}


def test_pressure_of_an_old_kernel_without_cpu_full_and_unknown_lines():
    text = "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\nweird line here\n"
    assert parse_pressure(text) == {"some": 1.5}


@pytest.mark.parametrize("text", ["some avg10=0.00 avg60=0.00 avg300=0.00 tot", "some avg10=1 total=12x\n"])
def test_pressure_truncated_or_garbled_names_the_file(text):
    with pytest.raises(ValueError, match="/proc/pressure/io"):
        parse_pressure(text, "/proc/pressure/io")


# ---- filefd, entropy ----------------------------------------------------------------------------


def test_file_nr():
    assert parse_file_nr("30144\t0\t9223372036854775807\n") == (30144, 9223372036854775807)


@pytest.mark.parametrize("text", ["30144\t0", "", "x\t0\t10\n"])
def test_file_nr_truncated_or_garbled(text):
    with pytest.raises(ValueError, match="file-nr"):
        parse_file_nr(text, "/proc/sys/fs/file-nr")


def test_entropy():
    assert parse_entropy("256\n", "4096\n") == (256, 4096)
    with pytest.raises(ValueError, match="entropy_avail"):
        parse_entropy("", "256\n")
    with pytest.raises(ValueError, match="poolsize"):
        parse_entropy("256\n", "lots\n")


# ---- arp -------------------------------------------------------------------------------------------

ARP = (
    "IP address       HW type     Flags       HW address            Mask     Device\n"
    "10.1.0.1         0x1         0x2         0a:8f:4c:11:22:01     *        ens32\n"
    "10.1.0.2         0x1         0x2         0a:8f:4c:11:22:02     *        ens32\n"
    "172.17.0.2       0x1         0x2         02:42:ac:11:00:02     *        docker0\n"
)


def test_arp_counts_entries_per_device():
    assert parse_arp(ARP) == {"ens32": 2, "docker0": 1}
    assert parse_arp(ARP.splitlines(keepends=True)[0]) == {}
    assert parse_arp("") == {}


def test_arp_truncated_line_is_an_error():
    with pytest.raises(ValueError, match="/proc/net/arp"):
        parse_arp(ARP + "10.1.0.9         0x1   0x2\n", "/proc/net/arp")


# ---- softnet ---------------------------------------------------------------------------------------

SOFTNET = (
    "0a3f41c2 00000000 000001b3 00000000 00000000 00000000 00000000 00000000 00000000 00000012 00000007 "
    "00000000 00000000\n"
    "03c9b177 00000002 00000051 00000000 00000000 00000000 00000000 00000000 00000000 00000003 00000000 "
    "00000000 00000001\n"
)


def test_softnet_hex_columns():
    assert parse_softnet(SOFTNET) == [(0x0A3F41C2, 0, 0x1B3), (0x03C9B177, 2, 0x51)]


def test_softnet_old_kernel_with_nine_columns():
    assert parse_softnet("00000010 00000001 00000002 0 0 0 0 0 0\n") == [(16, 1, 2)]


@pytest.mark.parametrize("text", ["0a3f41c2 00000000 000001b3\n", "zz 00 00 00 00 00 00 00 00 00\n"])
def test_softnet_truncated_or_garbled(text):
    with pytest.raises(ValueError, match="softnet_stat line 1"):
        parse_softnet(text, "softnet_stat")


# ---- schedstat --------------------------------------------------------------------------------------

SCHEDSTAT = """version 15
timestamp 4363842119
cpu0 0 0 0 0 0 0 91234567890123 2345678901234 812345678
domain0 00000000,00000001 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
cpu1 0 0 0 0 0 0 91235802458014 2345777666666 812469135
"""


def test_schedstat_cpu_lines():
    assert parse_schedstat(SCHEDSTAT) == [
        ("0", 91234567890123, 2345678901234, 812345678),
        ("1", 91235802458014, 2345777666666, 812469135),
    ]


def test_schedstat_skips_truncated_and_garbled_cpu_lines():
    text = "version 15\ncpu0 0 0 0 0 0 0 1 2\ncpu1 0 0 0 0 0 0 1 2 x\ncpu2 0 0 0 0 0 0 5 6 7\n"
    assert parse_schedstat(text) == [("2", 5, 6, 7)]
    assert parse_schedstat("") == []


# ---- conntrack ----------------------------------------------------------------------------------------

CT_HEADER = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop " \
            "icmp_error  expect_new expect_create expect_delete search_restart\n"  # fmt: skip


def test_conntrack_stat_sums_cpus():
    text = CT_HEADER + (
        "00000753  00000000 0000001c 00000000 0000002a 00003f21 00000000 00000000 00000011 00000000 "
        "00000000 00000000 00000000  00000000 00000000 00000000 00000003\n"
        "00000753  00000001 00000005 00000000 00000007 00001b02 00000000 00000000 00000004 00000001 "
        "00000002 00000001 00000000  00000000 00000000 00000000 00000001\n"
    )
    assert parse_conntrack_stat(text) == {
        "found": 33, "invalid": 49, "ignore": 23075, "insert": 21, "insert_failed": 1, "drop": 2,
        "early_drop": 1, "search_restart": 4,
    }  # fmt: skip


def test_conntrack_stat_of_an_old_kernel_without_search_restart():
    row = " ".join(["00000001"] * 16)
    assert parse_conntrack_stat(CT_HEADER + row + "\n")["search_restart"] == 0
    assert parse_conntrack_stat(CT_HEADER + row + "\n")["found"] == 1


@pytest.mark.parametrize("row", [" ".join(["00000001"] * 9), " ".join(["0000000g"] * 17)])
def test_conntrack_stat_truncated_or_garbled(row):
    with pytest.raises(ValueError, match="nf_conntrack line 2"):
        parse_conntrack_stat(CT_HEADER + row + "\n", "nf_conntrack")


# ---- time, timex, uname -----------------------------------------------------------------------------


def test_clocksources():
    assert parse_clocksources("tsc kvm-clock acpi_pm \n", "tsc\n") == (["tsc", "kvm-clock", "acpi_pm"], "tsc")
    assert parse_clocksources("", "") == ([], "")


def test_zone_offset(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert zone_offset(1718000000.0) == ("IST", 19800)
    finally:
        monkeypatch.undo()
        time.tzset()


TIMEX = {"offset": -1500, "freq": -1107494, "maxerror": 16000000, "esterror": 16000000, "status": 0x2001,
         "constant": 7, "precision": 1, "tolerance": 32768000, "tick": 10000, "ppsfreq": 655360, "jitter": 2500,
         "shift": 4, "stabil": 65536, "jitcnt": 1, "calcnt": 2, "errcnt": 3, "stbcnt": 4, "tai": 37,
         "state": 0}  # fmt: skip


def test_timex_values_nanosecond_resolution_and_sync():
    values = {spec.name: v for spec, v in timex_values(TIMEX)}
    assert values["node_timex_sync_status"] == 1
    assert values["node_timex_offset_seconds"] == -1500 / 1e9  # STA_NANO set
    assert values["node_timex_pps_jitter_seconds"] == 2500 / 1e9
    assert values["node_timex_frequency_adjustment_ratio"] == 1 + -1107494 / 65536e6
    assert values["node_timex_maxerror_seconds"] == 16.0
    assert values["node_timex_tick_seconds"] == 0.01
    assert values["node_timex_pps_frequency_hertz"] == 1e-05  # 10 ppm as 16.16 fixed point
    assert values["node_timex_pps_stability_hertz"] == 65536 / 65536e6
    assert values["node_timex_pps_shift_seconds"] == 4
    assert values["node_timex_status"] == 0x2001
    assert values["node_timex_tai_offset_seconds"] == 37
    assert values["node_timex_pps_stability_exceeded_total"] == 4
    assert len(values) == 17


def test_timex_microsecond_resolution_and_unsynchronised_clock():
    values = {spec.name: v for spec, v in timex_values({**TIMEX, "status": 0x40, "state": 5})}
    assert values["node_timex_offset_seconds"] == -1500 / 1e6
    assert values["node_timex_sync_status"] == 0


def test_uname_labels_from_procfs_with_fallback():
    files = {"sysname": "Linux\n", "release": "5.15.0-1063-aws\n", "version": "#69 SMP\n",
             "nodename": "compute-st-p5-1\n", "domainname": None}  # fmt: skip
    fallback = {"machine": "x86_64", "domainname": "(none)", "sysname": "ignored"}
    # order: domainname, machine, nodename, release, sysname, version
    assert uname_labels(files, fallback) == ("(none)", "x86_64", "compute-st-p5-1", "5.15.0-1063-aws", "Linux",
                                             "#69 SMP")  # fmt: skip


# ---- os-release --------------------------------------------------------------------------------------

OS_RELEASE = """# Ubuntu's, trimmed
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian

export VARIANT='Cloud \\ Edition'
BUILD_ID="2024-05-10 \\"x\\""
"""


def test_os_release_quoting():
    env = parse_os_release(OS_RELEASE)
    assert env["PRETTY_NAME"] == "Ubuntu 22.04.4 LTS"
    assert env["VERSION_CODENAME"] == "jammy"
    assert env["VARIANT"] == "Cloud \\ Edition"
    assert env["BUILD_ID"] == '2024-05-10 "x"'


@pytest.mark.parametrize("line", ['NAME="Ubuntu', "just words", "A B=1", 'NAME=Ubuntu Linux'])
def test_os_release_garbled_line_names_file_and_line(line):
    with pytest.raises(ValueError, match=r"os-release line 2"):
        parse_os_release("ID=ubuntu\n" + line + "\n", "/etc/os-release")


def test_os_version_and_families():
    assert os_version("22.04") == 22.04
    assert os_version("8") == 8.0
    assert os_version("2023.4.20240513") == 2023.4
    assert os_version("rolling") == 0.0
    got = samples(os_families({"ID": "arch", "NAME": "Arch Linux", "VERSION_ID": "rolling"}))
    assert list(got) == ["node_os_info"]
    info = next(iter(got["node_os_info"]))
    assert dict(zip(cat.NODE_OS_INFO.labels, info, strict=True))["name"] == "Arch Linux"


# ---- hwmon --------------------------------------------------------------------------------------------


def test_hwmon_file_names_and_cleaning():
    assert split_sensor_filename("temp1_crit_alarm") == ("temp", 1, "crit_alarm")
    assert split_sensor_filename("pwm1") == ("pwm", 1, "")
    assert split_sensor_filename("beep_enable") == ("beep_enable", 0, "")
    assert split_sensor_filename("in0_input") == ("in", 0, "input")
    assert split_sensor_filename("12") is None
    assert clean_name("  Core-0 \n") == "core_0"
    assert clean_name("LNXSYBUS:00") == "lnxsybus:00"


def test_hwmon_chip_name_preferences():
    assert chip_name("/sys/devices/pci0000:00/0000:00:1d.0/nvme/nvme1", "nvme\n", "hwmon0") == "nvme_nvme1"
    assert chip_name("/sys/devices/platform/coretemp.0", "coretemp\n", "hwmon1") == "platform_coretemp_0"
    assert chip_name(None, "coretemp\n", "hwmon2") == "coretemp"
    assert chip_name(None, "\n", "hwmon3") == "hwmon3"


def test_hwmon_families_names_units_and_help():
    sensors: dict[str, dict[str, str]] = {}
    for name, text in [("temp1_input", "36850\n"), ("temp1_label", "Composite\n"), ("temp1_min", "-273150\n"),
                       ("temp1_fault", "garbage\n"), ("fan1_input", "4821"), ("fan1_pulses", "2"),
                       ("pwm1", "153"), ("in0_beep", "0"), ("power1_average", "412000000"),
                       ("energy1_input", "8123456789"), ("beep_enable", "1"), ("vrm", "9.0"),
                       ("update_interval", "500"), ("name", "nct"), ("uevent", "x"), ("power", None)]:  # fmt: skip
        add_sensor_file(sensors, name, text)
    fams = hwmon_families([Chip("platform_nct6779_656", "nct6779", sensors)])
    got = samples(fams)
    key = ("platform_nct6779_656", "temp1")
    assert got["node_hwmon_temp_celsius"] == {key: 36.85}
    assert got["node_hwmon_temp_min_celsius"] == {key: -273.15000000000003}
    assert "node_hwmon_temp_fault" not in got  # unparsable value skipped
    assert got["node_hwmon_sensor_label"] == {("platform_nct6779_656", "Composite", "temp1"): 1}
    assert got["node_hwmon_chip_names"] == {("platform_nct6779_656", "nct6779"): 1}
    assert got["node_hwmon_fan_rpm"] == {("platform_nct6779_656", "fan1"): 4821}
    assert got["node_hwmon_fan_pulses"] == {("platform_nct6779_656", "fan1"): 2}
    assert got["node_hwmon_pwm"] == {("platform_nct6779_656", "pwm1"): 153}
    assert got["node_hwmon_in_beep_enabled"] == {("platform_nct6779_656", "in0"): 0}
    assert got["node_hwmon_power_average_watt"] == {("platform_nct6779_656", "power1"): 412.0}
    assert got["node_hwmon_energy_joule_total"] == {("platform_nct6779_656", "energy1"): 8123.456789}
    assert got["node_hwmon_beep_enabled"] == {("platform_nct6779_656", "beep_enable0"): 1}
    assert got["node_hwmon_voltage_regulator_version"] == {("platform_nct6779_656", "vrm0"): 9.0}
    assert got["node_hwmon_update_interval_seconds"] == {("platform_nct6779_656", "update_interval0"): 0.5}
    by_name = {f.name: f for f in fams}
    assert by_name["node_hwmon_temp_celsius"].help == "Hardware monitor for temperature (input)"
    assert by_name["node_hwmon_pwm"].help == "Hardware monitor pwm element "
    assert by_name["node_hwmon_energy_joule_total"].type == "counter"
    assert by_name["node_hwmon_fan_pulses"].help == "Hardware monitor fan element pulses"


def test_hwmon_bare_and_input_files_of_one_sensor():
    sensors: dict[str, dict[str, str]] = {}
    add_sensor_file(sensors, "temp4", "43000")
    add_sensor_file(sensors, "temp4_input", "44000")
    got = samples(hwmon_families([Chip("coretemp", None, sensors)]))
    assert got["node_hwmon_temp_celsius"] == {("coretemp", "temp4"): 43.0}
    assert got["node_hwmon_temp_input_celsius"] == {("coretemp", "temp4"): 44.0}
    assert "node_hwmon_chip_names" not in got


# ---- textfile ----------------------------------------------------------------------------------------

GOOD = r"""# HELP node_healthcheck_status Result of the last check\nsecond line \\ end.
# TYPE node_healthcheck_status gauge
node_healthcheck_status{check="dcgm_diag_r1"} 1
node_healthcheck_status{check="nvlink",severity="warn",} 0
  # just a comment
# TYPE runs counter
runs 42
untyped_one{path="C:\\dir",q="say \"hi\"\nbye"} -Inf
# TYPE lat histogram
lat_bucket{le="0.1"} 3
lat_bucket{le="+Inf"} 5
lat_sum 0.7
lat_count 5
# TYPE rpc summary
rpc{quantile="0.9"} 0.2
rpc_count 9
"""


def test_textfile_good_file():
    fams = parse_textfile(GOOD, "/x/good.prom")
    status = fams["node_healthcheck_status"]
    assert status.type == "gauge"
    assert status.help == "Result of the last check\nsecond line \\ end."
    assert status.labelnames == ("check", "severity")
    assert status.samples == ((("dcgm_diag_r1", ""), 1.0), (("nvlink", "warn"), 0.0))
    assert fams["runs"].type == "counter"
    assert fams["runs"].help is None  # "Metric read from" the files that have it, once merged
    assert fams["untyped_one"].labelnames == ("path", "q")
    assert fams["untyped_one"].samples == ((("C:\\dir", 'say "hi"\nbye'), float("-inf")),)
    assert [name for name in fams if name.startswith("lat")] == ["lat_bucket", "lat_sum", "lat_count"]
    assert fams["lat_bucket"].type == "untyped" and fams["lat_count"].samples == (((), 5.0),)
    assert (fams["rpc"].labelnames, fams["rpc"].samples) == (("quantile",), ((("0.9",), 0.2),))


def test_textfile_label_names_that_vary_between_samples():
    fams = parse_textfile('m{b="1"} 1\nm{c="2",b="3"} 2\nm{a="4"} 3\nm 4\n')
    assert fams["m"].labelnames == ("a", "b", "c")
    assert fams["m"].samples == ((("", "1", ""), 1), (("", "3", "2"), 2), (("4", "", ""), 3), (("", "", ""), 4))


def test_textfile_duplicate_series_in_one_file():
    text = 'up{job="a"} 1\nup{job="a",zone=""} 2\n'  # an empty label is no label: the same series
    with pytest.raises(ValueError, match=r"f.prom line 2: duplicate series"):
        parse_textfile(text, "f.prom")
    text = 'up{zone="",job="a"} 1\nup{job="a"} 2\n'
    with pytest.raises(ValueError, match=r"f.prom line 2: duplicate series"):
        parse_textfile(text, "f.prom")
    assert len(parse_textfile('up{job="a"} 1\nup{job="a",zone="z"} 2\nup 3\n')["up"].samples) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('bad{ 1\n', "invalid label name"),
        ('foo{a="1 2\n', "unterminated value"),
        ('foo{a="1"} 1\xff\n', "invalid value"),
        ('foo{a="1"', "unterminated|expected"),
        ('foo{a="1" b="2"} 1\n', "expected ','"),
        ('foo{a="\\x"} 1\n', "invalid escape"),
        ('foo{a="1",a="2"} 1\n', "duplicate label name"),
        ('foo{__name__="x"} 1\n', "reserved"),
        ("foo\n", "missing value"),
        ("foo 1 2 3\n", "unexpected text"),
        ("foo one\n", "invalid value"),
        ("foo 1_0\n", "invalid value"),
        ("foo 1 1718000000000\n", "timestamps are not supported"),
        ("foo- 1\n", "invalid character"),
        ("# HELP foo a\n# HELP foo b\nfoo 1\n", "second HELP"),
        ("foo 1\n# TYPE foo gauge\n", "second TYPE"),
        ("# TYPE foo gauge\n# TYPE foo counter\nfoo 1\n", "second TYPE"),
        ("# TYPE foo gaug\nfoo 1\n", "unknown metric type"),
        ("# HELP 0foo x\n", "invalid metric name"),
        ("# TYPE h histogram\nh_bucket 1\n", "'le'"),
        ("# TYPE h histogram\nh 1\n", "histogram sample"),
        ("# TYPE s summary\ns 1\n", "'quantile'"),
    ],
)
def test_textfile_errors_name_file_and_line(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_textfile("ok_metric 1\n" + text, "/var/lib/nodeagent/textfile/bad.prom")
    assert str(info.value).startswith("/var/lib/nodeagent/textfile/bad.prom line ")


def test_textfile_truncated_file():
    text = GOOD[: GOOD.index('"nvlink"') + 4]
    with pytest.raises(ValueError, match="line 4"):
        parse_textfile(text, "t.prom")


def test_textfile_help_without_samples_is_no_family():
    assert parse_textfile("# HELP lonely nothing here\n# TYPE lonely gauge\n") == {}


# ---- efa / infiniband ------------------------------------------------------------------------------------


def test_ib_state_and_rate():
    assert parse_ib_state("4: ACTIVE\n") == 4
    assert parse_ib_state("5: LinkUp\n") == 5
    assert parse_ib_rate("100 Gb/sec (4X EDR)\n") == 12500000000
    assert parse_ib_rate("2.5 Gb/sec (1X SDR)\n") == 312500000
    for bad in ("ACTIVE\n", "x: y\n", ""):
        with pytest.raises(ValueError, match="ports/1/state"):
            parse_ib_state(bad, "ports/1/state")
    for bad in ("fast\n", "Gb/sec\n", ""):
        with pytest.raises(ValueError, match="ports/1/rate"):
            parse_ib_rate(bad, "ports/1/rate")


def test_counter_values_and_efa_detection():
    assert parse_counter("1047241117296\n") == 1047241117296
    assert parse_counter("N/A (no PMA)\n") is None
    assert parse_counter("") is None
    assert is_efa("rdmap16s27", "../../../../bus/pci/drivers/efa")
    assert not is_efa("mlx5_0", "../../../../bus/pci/drivers/mlx5_core")
    assert is_efa("rdmap16s27", None) and is_efa("efa_0", None) and not is_efa("mlx5_0", None)


# ---- lustre -------------------------------------------------------------------------------------------------

LLITE = """snapshot_time             1700000000.123456789 secs.nsecs
read_bytes                12345 samples [bytes] 1 4194304 98765432
write_bytes               234 samples [bytes] 4096 4194304 9876543
open                      10 samples [usecs]
close                     10 samples [usecs]
getattr                   55 samples [usecs] 2 40 500 9000
ioctl                     3 samples [reqs]
"""


def test_llite_stats():
    ops = parse_llite_stats(LLITE)
    assert ops["read_bytes"] == OpStats(12345, "bytes", 98765432)
    assert ops["write_bytes"] == OpStats(234, "bytes", 9876543)
    assert ops["open"] == OpStats(10, "usecs", None)
    assert ops["getattr"] == OpStats(55, "usecs", 500)
    assert ops["ioctl"] == OpStats(3, "reqs", None)
    assert "snapshot_time" not in ops


@pytest.mark.parametrize("line", ["open 1x samples [usecs]", "getattr 5 samples usecs 1 2 3",
                                  "read_bytes 5 samples [bytes] 1 2 3.5"])  # fmt: skip
def test_llite_stats_garbled_line(line):
    with pytest.raises(ValueError, match="llite/fsx-ffff9a1c2d3e4000/stats line 2"):
        parse_llite_stats("snapshot_time 1.2 secs.nsecs\n" + line + "\n", "llite/fsx-ffff9a1c2d3e4000/stats")


def test_llite_truncated_file_keeps_complete_lines():
    ops = parse_llite_stats(LLITE[: LLITE.index("close") + 8])
    assert set(ops) == {"read_bytes", "write_bytes", "open"}


def test_lustre_fs_names_and_two_mounts_summed():
    assert fs_name("fsx-ffff9a1c2d3e4000") == "fsx"
    assert fs_name("scratch-fs-ffff88a1b2c3d400") == "scratch-fs"
    assert fs_name("plain") == "plain"
    total: dict[str, OpStats] = {}
    merge_stats(total, parse_llite_stats(LLITE))
    merge_stats(total, parse_llite_stats(LLITE))
    got = samples(lustre_families({"fsx": total}))
    assert got["nodeagent_lustre_read_bytes_total"] == {("fsx",): 2 * 98765432}
    assert got["nodeagent_lustre_write_samples_total"] == {("fsx",): 468}
    assert got["nodeagent_lustre_operations_total"] == {
        ("fsx", "close"): 20, ("fsx", "getattr"): 110, ("fsx", "ioctl"): 6, ("fsx", "open"): 20,
    }  # fmt: skip
    assert got["nodeagent_lustre_operation_time_seconds_total"] == {("fsx", "getattr"): 0.001}


def test_lustre_client_that_has_not_read_or_written():
    got = samples(lustre_families({"fsx": parse_llite_stats("open 1 samples [usecs] 5 5 5 25\n")}))
    assert got["nodeagent_lustre_read_bytes_total"] == {("fsx",): 0}
    assert got["nodeagent_lustre_write_samples_total"] == {("fsx",): 0}
