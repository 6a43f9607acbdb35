"""Host collectors part 2, EFA and Lustre, run against the p5 fixture tree (a p5.48xlarge
compute node, trimmed): exact samples. The expected hwmon and infiniband samples are what
node_exporter 1.5.0 reports for the same tree (--path.sysfs pointing at it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import structlog

from nodeagent.catalogue import CATALOGUE
from nodeagent.collectors.host.arp import ArpCollector
from nodeagent.collectors.host.conntrack import ConntrackCollector
from nodeagent.collectors.host.efa import EfaCollector, EfaOptions
from nodeagent.collectors.host.entropy import EntropyCollector
from nodeagent.collectors.host.filefd import FilefdCollector
from nodeagent.collectors.host.hwmon import HwmonCollector
from nodeagent.collectors.host.lustre import LustreCollector
from nodeagent.collectors.host.os_release import OsCollector
from nodeagent.collectors.host.pressure import PressureCollector
from nodeagent.collectors.host.schedstat import SchedstatCollector
from nodeagent.collectors.host.softnet import SoftnetCollector
from nodeagent.collectors.host.systime import TimeCollector
from nodeagent.collectors.host.textfile import TextfileCollector
from nodeagent.collectors.host.timex import TimexCollector, TimexRefused
from nodeagent.collectors.host.uname import UnameCollector
from nodeagent.config import Config, PathsConfig
from nodeagent.exposition import render
from nodeagent.host import Host, Roots
from nodeagent.registry import CollectorContext, NoOptions
from nodeagent.supervise import Supervisor

P5 = Path(__file__).resolve().parent.parent / "fixtures" / "p5"


def p5_host(**kw) -> Host:
    roots = Roots(procfs=str(P5 / "proc"), sysfs=str(P5 / "sys"), rootfs=str(P5 / "root"),
                  debugfs=str(P5 / "debug"))  # fmt: skip
    return Host(roots, **kw)


def empty_host(tmp_path: Path) -> Host:
    return Host(Roots(procfs=str(tmp_path / "proc"), sysfs=str(tmp_path / "sys"), rootfs=str(tmp_path / "root"),
                      debugfs=str(tmp_path / "debug")))  # fmt: skip


def run(cls, host: Host, options=None, config=None):
    collector = cls(host, options if options is not None else cls.Options(), CollectorContext(config=config))
    fams = list(collector.collect())
    assert_catalogued(fams, skip_user=cls is TextfileCollector)
    render(fams)  # renders without error
    return fams


def assert_catalogued(fams, skip_user=False):
    """Every family is the catalogue's: same name (pattern), type and label names."""
    for fam in fams:
        spec = CATALOGUE.lookup(fam.name)
        if spec is None and skip_user:
            continue
        assert spec is not None, f"{fam.name} is not in the catalogue"
        assert (fam.type, fam.labelnames) == (spec.type, spec.labels), fam.name


def samples(fams):
    return {f.name: dict(f.samples) for f in fams if f.samples}


def value(fams, name):
    (only,) = samples(fams)[name].values()
    return only


# ---- /proc ----------------------------------------------------------------------------------------


def test_pressure():
    fams = run(PressureCollector, p5_host())
    assert {name: v[()] for name, v in samples(fams).items()} == {
        "node_pressure_cpu_waiting_seconds_total": 81.246713,
        "node_pressure_cpu_stalled_seconds_total": 0.0,
        "node_pressure_io_waiting_seconds_total": 27.390412,
        "node_pressure_io_stalled_seconds_total": 24.011987,
        "node_pressure_memory_waiting_seconds_total": 1.834521,
        "node_pressure_memory_stalled_seconds_total": 1.520373,
    }
    assert all(f.type == "counter" for f in fams)


def test_filefd_entropy_arp():
    fams = run(FilefdCollector, p5_host())
    assert value(fams, "node_filefd_allocated") == 30144
    assert value(fams, "node_filefd_maximum") == 9223372036854775807
    fams = run(EntropyCollector, p5_host())
    assert value(fams, "node_entropy_available_bits") == 256
    assert value(fams, "node_entropy_pool_size_bits") == 256
    fams = run(ArpCollector, p5_host())
    assert samples(fams) == {"node_arp_entries": {("docker0",): 1, ("ens32",): 3, ("ens65",): 2}}


def test_softnet():
    got = samples(run(SoftnetCollector, p5_host()))
    assert got["node_softnet_processed_total"] == {
        ("0",): 171917762, ("1",): 63549815, ("2",): 32506657, ("3",): 11774480, ("4",): 119527,
        ("5",): 77728, ("6",): 658188, ("7",): 3902,
    }  # fmt: skip
    assert got["node_softnet_dropped_total"] == {(str(c),): {1: 2, 6: 17}.get(c, 0) for c in range(8)}
    assert got["node_softnet_times_squeezed_total"] == {
        (str(c),): {0: 435, 1: 81, 3: 4, 6: 2}.get(c, 0) for c in range(8)
    }


def test_schedstat():
    got = samples(run(SchedstatCollector, p5_host()))
    assert len(got["node_schedstat_running_seconds_total"]) == 8
    assert got["node_schedstat_running_seconds_total"][("0",)] == 91234.567890123
    assert got["node_schedstat_running_seconds_total"][("7",)] == 91243.20986536
    assert got["node_schedstat_waiting_seconds_total"][("7",)] == 2346.370259258
    assert got["node_schedstat_timeslices_total"][("7",)] == 813209877


def test_conntrack():
    fams = run(ConntrackCollector, p5_host())
    assert {name: v[()] for name, v in samples(fams).items()} == {
        "node_nf_conntrack_entries": 1873, "node_nf_conntrack_entries_limit": 262144,
        "node_nf_conntrack_stat_found": 33, "node_nf_conntrack_stat_invalid": 49,
        "node_nf_conntrack_stat_ignore": 23075, "node_nf_conntrack_stat_insert": 21,
        "node_nf_conntrack_stat_insert_failed": 1, "node_nf_conntrack_stat_drop": 2,
        "node_nf_conntrack_stat_early_drop": 1, "node_nf_conntrack_stat_search_restart": 4,
    }  # fmt: skip


def test_absent_kernel_features_report_nothing(tmp_path):
    host = empty_host(tmp_path)
    for cls in (PressureCollector, SchedstatCollector, ConntrackCollector, HwmonCollector, EfaCollector,
                LustreCollector, OsCollector):  # fmt: skip
        assert run(cls, host) == [], cls.name


def test_psi_disabled_at_boot_reports_nothing(tmp_path):
    class PsiOff(Host):
        def read_text(self, path):
            raise OSError(95, "Operation not supported", str(path))  # EOPNOTSUPP, psi=0

    assert run(PressureCollector, PsiOff(Roots(procfs=str(P5 / "proc")))) == []


def test_garbled_proc_file_is_a_clear_error(tmp_path):
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "softnet_stat").write_text("0a3f41c2 00000000\n")
    with pytest.raises(ValueError, match=r"softnet_stat line 1"):
        run(SoftnetCollector, empty_host(tmp_path))


# ---- time, timex, uname, os -------------------------------------------------------------------------


def test_time():
    got = samples(run(TimeCollector, p5_host(clock=lambda: 1718000000.25)))
    assert got["node_time_seconds"] == {(): 1718000000.25}
    assert len(got["node_time_zone_offset_seconds"]) == 1
    assert got["node_time_clocksource_available_info"] == {("acpi_pm", "0"): 1, ("kvm-clock", "0"): 1,
                                                           ("tsc", "0"): 1}  # fmt: skip
    assert got["node_time_clocksource_current_info"] == {("tsc", "0"): 1}


class FixedClockHost(Host):
    """A host whose adjtimex returns a recorded struct timex (chrony-synchronised)."""

    def adjtimex(self):
        return {"offset": 15000, "freq": -1107494, "maxerror": 532000, "esterror": 1000, "status": 0x2001,
                "constant": 7, "precision": 1, "tolerance": 32768000, "tick": 10000, "ppsfreq": 0, "jitter": 0,
                "shift": 0, "stabil": 0, "jitcnt": 0, "calcnt": 0, "errcnt": 0, "stbcnt": 0, "tai": 37,
                "state": 0}  # fmt: skip


def test_timex():
    fams = run(TimexCollector, FixedClockHost())
    got = {name: v[()] for name, v in samples(fams).items()}
    assert got["node_timex_sync_status"] == 1
    assert got["node_timex_offset_seconds"] == 15e-6
    assert got["node_timex_maxerror_seconds"] == 0.532
    assert got["node_timex_tai_offset_seconds"] == 37
    assert len(got) == 17


class DeniedClockHost(Host):
    """A host whose adjtimex is refused, as nspawn's default seccomp filter does."""

    def adjtimex(self):
        raise PermissionError(1, "Operation not permitted")


def test_timex_refused_is_a_failure():
    with pytest.raises(TimexRefused, match=r"adjtimex\(2\) refused .*SystemCallFilter"):
        run(TimexCollector, DeniedClockHost())


def test_timex_refused_reports_success_0_and_no_series():
    """Through the supervisor, as a scrape sees it: node_scrape_collector_success 0."""
    sup = Supervisor("host", [TimexCollector(DeniedClockHost(), NoOptions())], timeout=5.0)
    try:
        (result,) = sup.run_all()
        success = samples(sup.meta_families([result]))["node_scrape_collector_success"]
    finally:
        sup.close()
    assert result.families == [] and not result.success
    assert "EPERM" in (result.error or "")
    assert success == {("timex",): 0.0}


def test_timex_of_this_machine():
    got = samples(run(TimexCollector, Host()))
    assert got["node_timex_tick_seconds"][()] > 0
    assert got["node_timex_sync_status"][()] in (0, 1)


def test_uname():
    fams = run(UnameCollector, p5_host())
    assert samples(fams) == {"node_uname_info": {
        ("(none)", os.uname().machine, "compute-st-p5-1", "5.15.0-1063-aws", "Linux",
         "#69~20.04.1-Ubuntu SMP Fri May 10 19:20:12 UTC 2024"): 1}}  # fmt: skip


def test_os_release_through_the_etc_symlink_and_the_usr_lib_fallback(tmp_path):
    expected_info = ("", "ubuntu", "debian", "", "", "Ubuntu", "Ubuntu 22.04.4 LTS", "", "",
                     "22.04.4 LTS (Jammy Jellyfish)", "jammy", "22.04")  # fmt: skip
    got = samples(run(OsCollector, p5_host()))
    assert got == {"node_os_info": {expected_info: 1}, "node_os_version": {("ubuntu", "debian", "Ubuntu"): 22.04}}
    lib = tmp_path / "root" / "usr" / "lib"
    lib.mkdir(parents=True)
    shutil.copy(P5 / "root" / "usr" / "lib" / "os-release", lib / "os-release")
    assert samples(run(OsCollector, empty_host(tmp_path))) == got


def test_os_release_is_reparsed_when_it_changes(tmp_path):
    etc = tmp_path / "root" / "etc"
    etc.mkdir(parents=True)
    (etc / "os-release").write_text('NAME="Amazon Linux"\nID=amzn\nVERSION_ID="2"\n')
    collector = OsCollector(empty_host(tmp_path), NoOptions())
    assert samples(collector.collect())["node_os_version"] == {("amzn", "", "Amazon Linux"): 2.0}
    (etc / "os-release").write_text('NAME="Amazon Linux"\nID=amzn\nVERSION_ID="2023"\n')
    os.utime(etc / "os-release", (1, 1))
    assert samples(collector.collect())["node_os_version"] == {("amzn", "", "Amazon Linux"): 2023.0}


# ---- hwmon ----------------------------------------------------------------------------------------------

NVME, K10, NCT, ACPI = "nvme_nvme1", "pci0000:00_0000:00:18_3", "platform_nct6779_656", "lnxsybus:00_acpi000d:00"
# node_exporter 1.5.0 on the same tree
HWMON_EXPECTED = {
    "node_hwmon_beep_enabled": {(NCT, "beep_enable0"): 0},
    "node_hwmon_chip_names": {(ACPI, "power_meter"): 1, (NVME, "nvme"): 1, (K10, "k10temp"): 1,
                              (NCT, "nct6779"): 1},
    "node_hwmon_cpu_vid_volts": {(NCT, "cpu0"): 1.1500000000000001},
    "node_hwmon_curr_amps": {(ACPI, "curr1"): 2.35},
    "node_hwmon_energy_joule_total": {(ACPI, "energy1"): 8123.456789},
    "node_hwmon_fan_alarm": {(NCT, "fan1"): 0},
    "node_hwmon_fan_min_rpm": {(NCT, "fan1"): 0},
    "node_hwmon_fan_pulses": {(NCT, "fan1"): 2},
    "node_hwmon_fan_rpm": {(NCT, "fan1"): 4821},
    "node_hwmon_humidity": {(ACPI, "humidity1"): 0.0415},
    "node_hwmon_in_alarm": {(NCT, "in0"): 0},
    "node_hwmon_in_beep_enabled": {(NCT, "in0"): 0},
    "node_hwmon_in_max_volts": {(NCT, "in0"): 1.744},
    "node_hwmon_in_min_volts": {(NCT, "in0"): 0},
    "node_hwmon_in_volts": {(NCT, "in0"): 1.032},
    "node_hwmon_intrusion_alarm": {(NCT, "intrusion0"): 1},
    "node_hwmon_power_accuracy": {(ACPI, "power1"): 0.095},
    "node_hwmon_power_average_interval_seconds": {(ACPI, "power1"): 1},
    "node_hwmon_power_average_watt": {(ACPI, "power1"): 412},
    "node_hwmon_power_is_battery_watt": {(ACPI, "power1"): 0},
    "node_hwmon_pwm": {(NCT, "pwm1"): 153},
    "node_hwmon_pwm_enable": {(NCT, "pwm1"): 5},
    "node_hwmon_pwm_mode": {(NCT, "pwm1"): 1},
    "node_hwmon_sensor_label": {(NVME, "Composite", "temp1"): 1, (K10, "Tccd1", "temp3"): 1,
                                (K10, "Tctl", "temp1"): 1, (NCT, "SYSTIN", "temp7"): 1},
    "node_hwmon_temp_alarm": {(NVME, "temp1"): 0},
    "node_hwmon_temp_celsius": {("hwmon4", "temp1"): 27.8, (NVME, "temp1"): 36.85, (K10, "temp1"): 45.125,
                                (K10, "temp3"): 38.25, (NCT, "temp7"): 31},
    "node_hwmon_temp_crit_celsius": {(NVME, "temp1"): 84.85000000000001},
    "node_hwmon_temp_max_celsius": {(NVME, "temp1"): 84.85000000000001},
    "node_hwmon_temp_min_celsius": {(NVME, "temp1"): -273.15000000000003},
    "node_hwmon_temp_type": {(NCT, "temp7"): 4},
    "node_hwmon_update_interval_seconds": {(ACPI, "update_interval0"): 0.5},
    "node_hwmon_voltage_regulator_version": {(NCT, "vrm0"): 9},
}  # fmt: skip


def test_hwmon_matches_node_exporter():
    fams = run(HwmonCollector, p5_host())
    assert samples(fams) == HWMON_EXPECTED
    helps = {f.name: f.help for f in fams}
    assert helps["node_hwmon_power_average_interval_seconds"] == (
        "Hardware monitor power usage update interval (average_interval)"
    )
    assert helps["node_hwmon_humidity"].startswith("Hardware monitor for humidity, as a ratio")


# ---- textfile -------------------------------------------------------------------------------------------


def textfile_config(directory: Path) -> Config:
    return Config(paths=PathsConfig(textfile_dir=str(directory)))


def test_textfile_fixture():
    directory = P5 / "textfile"
    path = str(directory / "healthcheck.prom")
    fams = run(TextfileCollector, Host(), config=textfile_config(directory))
    got = samples(fams)
    assert got == {
        "node_healthcheck_last_run_timestamp_seconds": {(): 1718000123.0},
        "node_healthcheck_runs_total": {(): 42},
        "node_healthcheck_status": {("dcgm_diag_r1", ""): 1, ("efa_loopback", ""): 1, ("nvlink", "warn"): 0},
        "slurm_node_reboot_required": {('kernel "5.15" update\\now',): 0},
        "node_textfile_mtime_seconds": {(path,): float(int(os.stat(path).st_mtime))},
        "node_textfile_scrape_error": {(): 0},
    }
    by_name = {f.name: f for f in fams}
    assert by_name["node_healthcheck_status"].labelnames == ("check", "severity")
    assert by_name["node_healthcheck_status"].help == "Result of the last node health check (1 = passed)."
    assert by_name["node_healthcheck_runs_total"].type == "counter"
    assert by_name["slurm_node_reboot_required"].type == "untyped"
    text = render(fams).decode()
    assert 'slurm_node_reboot_required{reason="kernel \\"5.15\\" update\\\\now"} 0\n' in text


def test_textfile_bad_file_is_skipped_logged_once_and_flagged(tmp_path):
    shutil.copy(P5 / "textfile" / "healthcheck.prom", tmp_path / "healthcheck.prom")
    (tmp_path / "broken.prom").write_text('# TYPE gpu_ok gauge\ngpu_ok{gpu="0"} 1\ngpu_ok{gpu="1" 1\n')
    collector = TextfileCollector(Host(), NoOptions(), CollectorContext(config=textfile_config(tmp_path)))
    with structlog.testing.capture_logs() as logs:
        first = samples(collector.collect())
        second = samples(collector.collect())
    assert first == second
    assert "gpu_ok" not in first
    assert first["node_healthcheck_runs_total"] == {(): 42}
    assert first["node_textfile_scrape_error"] == {(): 1}
    assert list(first["node_textfile_mtime_seconds"]) == [(str(tmp_path / "healthcheck.prom"),)]
    failures = [e for e in logs if e["event"] == "textfile_failed"]
    assert len(failures) == 1
    assert failures[0]["file"] == str(tmp_path / "broken.prom")
    assert failures[0]["line"] == 3 and "expected ','" in failures[0]["error"]
    # fixed: served again, error cleared, recovery logged
    (tmp_path / "broken.prom").write_text('# TYPE gpu_ok gauge\ngpu_ok{gpu="0"} 1\ngpu_ok{gpu="1"} 1\n')
    with structlog.testing.capture_logs() as logs:
        third = samples(collector.collect())
    assert third["gpu_ok"] == {("0",): 1, ("1",): 1}
    assert third["node_textfile_scrape_error"] == {(): 0}
    assert [e["event"] for e in logs] == ["textfile_recovered"]


def test_textfile_conflicts_between_files(tmp_path):
    # node_exporter 1.5: the first file (by name) sets a family's help and type; a later
    # file that disagrees, or repeats a series, loses that family, not its other ones
    (tmp_path / "a.prom").write_text('# HELP foo one\n# TYPE foo gauge\nfoo{a="1"} 1\n')
    (tmp_path / "b.prom").write_text('# HELP foo two\n# TYPE foo gauge\nfoo{a="2"} 2\nbar 1\n')  # other help
    (tmp_path / "c.prom").write_text('# HELP foo one\n# TYPE foo gauge\nfoo{b="3"} 3\n')  # same family
    (tmp_path / "d.prom").write_text('# HELP foo one\n# TYPE foo gauge\nfoo{a="1",b=""} 7\n')  # dup series
    (tmp_path / "e.prom").write_text("# TYPE foo counter\nfoo 1\n")  # other type
    (tmp_path / "f.prom").write_text("node_textfile_scrape_error 0\n")  # the collector's own
    (tmp_path / "notes.txt").write_text("not a metrics file\n")
    with structlog.testing.capture_logs() as logs:
        fams = run(TextfileCollector, Host(), config=textfile_config(tmp_path))
    got = samples(fams)
    assert got["foo"] == {("1", ""): 1, ("", "3"): 3}
    assert got["bar"] == {(): 1}
    served = {Path(p).name for (p,) in got["node_textfile_mtime_seconds"]}
    assert served == {"a.prom", "b.prom", "c.prom", "d.prom", "e.prom", "f.prom"}
    assert got["node_textfile_scrape_error"] == {(): 1}
    dropped = {(Path(e["file"]).name, e["metric"]): e["error"] for e in logs if e["event"] == "textfile_metric_dropped"}
    assert set(dropped) == {("b.prom", "foo"), ("d.prom", "foo"), ("e.prom", "foo"),
                            ("f.prom", "node_textfile_scrape_error")}  # fmt: skip
    assert "another help text" in dropped[("b.prom", "foo")] and "a.prom" in dropped[("b.prom", "foo")]
    assert "repeats a series" in dropped[("d.prom", "foo")]
    assert "type counter here but gauge" in dropped[("e.prom", "foo")]


def test_textfile_family_without_help_gets_node_exporters_help(tmp_path):
    (tmp_path / "jobs.prom").write_text("# TYPE slurm_epilog_failed_total counter\nslurm_epilog_failed_total 2\n")
    fams = run(TextfileCollector, Host(), config=textfile_config(tmp_path))
    (fam,) = [f for f in fams if f.name == "slurm_epilog_failed_total"]
    assert (fam.type, fam.help, fam.samples) == ("counter", f"Metric read from {tmp_path / 'jobs.prom'}", [((), 2)])


def test_textfile_family_without_help_in_several_files_is_merged(tmp_path):
    # node_exporter 1.5 serves both, its help naming both files
    (tmp_path / "a.prom").write_text("jobs 1\n")
    (tmp_path / "b.prom").write_text('jobs{queue="gpu"} 2\n')
    fams = run(TextfileCollector, Host(), config=textfile_config(tmp_path))
    (fam,) = [f for f in fams if f.name == "jobs"]
    assert fam.help == f"Metric read from {tmp_path / 'a.prom'}, {tmp_path / 'b.prom'}"
    assert (fam.labelnames, fam.samples) == (("queue",), [(("",), 1), (("gpu",), 2)])
    assert samples(fams)["node_textfile_scrape_error"] == {(): 0}


def test_textfile_histogram_and_summary_are_served_as_their_series(tmp_path):
    (tmp_path / "h.prom").write_text(
        "# HELP job_seconds Job run time.\n# TYPE job_seconds histogram\n"
        'job_seconds_bucket{le="60"} 3\njob_seconds_bucket{le="+Inf"} 4\njob_seconds_sum 500\njob_seconds_count 4\n'
    )
    text = render(run(TextfileCollector, Host(), config=textfile_config(tmp_path))).decode()
    assert 'job_seconds_bucket{le="+Inf"} 4\n' in text
    assert "# TYPE job_seconds_sum untyped\njob_seconds_sum 500\n" in text


def test_textfile_missing_directory_is_an_error(tmp_path):
    got = samples(run(TextfileCollector, Host(), config=textfile_config(tmp_path / "nope")))
    assert got == {"node_textfile_scrape_error": {(): 1}}


def test_textfile_default_directory_without_config():
    collector = TextfileCollector(Host(), NoOptions())
    assert collector.directory() == PathsConfig().textfile_dir


# ---- efa / infiniband -----------------------------------------------------------------------------------

EFA_DEVICES = ("rdmap144s27", "rdmap160s27", "rdmap16s27", "rdmap32s27")
EFA_INDEX = {"rdmap16s27": 0, "rdmap32s27": 1, "rdmap144s27": 2, "rdmap160s27": 3}


def test_efa_and_infiniband_on_a_p5():
    fams = run(EfaCollector, p5_host())
    got = samples(fams)
    by_name = {f.name: f for f in fams}
    assert got["node_amazonefa_info"] == {(d,): 1 for d in EFA_DEVICES}
    assert got["node_amazonefa_lifespan"] == {(d, "1"): 12 for d in EFA_DEVICES}
    assert by_name["node_amazonefa_lifespan"].type == "gauge"
    assert got["node_amazonefa_rdma_read_bytes"] == {
        (d, "1"): 1047241117296 + EFA_INDEX[d] * 1000003 for d in EFA_DEVICES
    }
    assert got["node_amazonefa_rx_drops"] == {(d, "1"): 3 + EFA_INDEX[d] * 1000003 for d in EFA_DEVICES}
    assert got["node_amazonefa_unresponsive_remote_events"] == {(d, "1"): 0 for d in EFA_DEVICES}
    assert got["node_amazonefa_keep_alive_rcvd"] == {(d, "1"): 193024 for d in EFA_DEVICES}
    assert by_name["node_amazonefa_retrans_pkts"].type == "counter"
    assert by_name["node_amazonefa_tx_bytes"].help == "Number of bytes transmitted"
    efa_families = [n for n in got if n.startswith("node_amazonefa_")]
    assert len(efa_families) == 36  # 35 hw_counters files + info; the mlx5 HCA's hw_counters are not EFA's

    assert got["node_infiniband_info"] == {
        **{("", d, "0.0.0.0", ""): 1 for d in EFA_DEVICES}, ("MT_0000000224", "mlx5_0", "20.39.1002", "MT4123"): 1
    }
    assert got["node_infiniband_state_id"] == {(d, "1"): 4 for d in (*EFA_DEVICES, "mlx5_0")}
    assert got["node_infiniband_physical_state_id"] == {(d, "1"): 5 for d in (*EFA_DEVICES, "mlx5_0")}
    assert got["node_infiniband_rate_bytes_per_second"] == {
        **{(d, "1"): 12500000000 for d in EFA_DEVICES}, ("mlx5_0", "1"): 25000000000
    }
    ib = ("mlx5_0", "1")
    # node_exporter 1.5.0 on the mlx5 device alone (it reports no data at all when EFA devices are present)
    assert {n: v for n, v in got.items() if n.startswith("node_infiniband_") and n.endswith("_total")} == {
        "node_infiniband_excessive_buffer_overrun_errors_total": {ib: 0},
        "node_infiniband_link_downed_total": {ib: 1},
        "node_infiniband_link_error_recovery_total": {ib: 0},
        "node_infiniband_local_link_integrity_errors_total": {ib: 0},
        "node_infiniband_multicast_packets_received_total": {ib: 93},
        "node_infiniband_multicast_packets_transmitted_total": {ib: 16},
        "node_infiniband_port_constraint_errors_received_total": {ib: 0},
        "node_infiniband_port_constraint_errors_transmitted_total": {ib: 0},
        "node_infiniband_port_data_received_bytes_total": {ib: 17755822140},
        "node_infiniband_port_data_transmitted_bytes_total": {ib: 13560939268},
        "node_infiniband_port_discards_received_total": {ib: 12},
        "node_infiniband_port_discards_transmitted_total": {ib: 0},
        "node_infiniband_port_errors_received_total": {ib: 0},
        "node_infiniband_port_packets_received_total": {ib: 7239882},
        "node_infiniband_port_packets_transmitted_total": {ib: 6817292},
        "node_infiniband_port_receive_remote_physical_errors_total": {ib: 0},
        "node_infiniband_port_receive_switch_relay_errors_total": {ib: 0},
        "node_infiniband_port_transmit_wait_total": {ib: 183727},
        "node_infiniband_symbol_error_total": {ib: 0},
        "node_infiniband_unicast_packets_received_total": {ib: 7239789},
        "node_infiniband_unicast_packets_transmitted_total": {ib: 6817276},
        "node_infiniband_vl15_dropped_total": {ib: 0},
    }


def test_efa_options():
    only_efa = samples(run(EfaCollector, p5_host(), EfaOptions(infiniband=False)))
    assert not any(n.startswith("node_infiniband_") for n in only_efa)
    assert "node_amazonefa_tx_bytes" in only_efa
    only_ib = samples(run(EfaCollector, p5_host(), EfaOptions(amazonefa=False)))
    assert not any(n.startswith("node_amazonefa_") for n in only_ib)
    assert "node_infiniband_state_id" in only_ib


def test_efa_unreadable_counter_is_skipped(tmp_path):
    shutil.copytree(P5 / "sys" / "class" / "infiniband" / "rdmap16s27",
                    tmp_path / "sys" / "class" / "infiniband" / "rdmap16s27", symlinks=True)  # fmt: skip
    hw = tmp_path / "sys" / "class" / "infiniband" / "rdmap16s27" / "ports" / "1" / "hw_counters"
    (hw / "rx_drops").write_text("N/A (no PMA)\n")
    got = samples(run(EfaCollector, empty_host(tmp_path)))
    assert "node_amazonefa_rx_drops" not in got
    assert got["node_amazonefa_tx_bytes"] == {("rdmap16s27", "1"): 1047394519620}


# ---- lustre ------------------------------------------------------------------------------------------------


def test_lustre_from_debugfs():
    got = samples(run(LustreCollector, p5_host()))
    assert got["nodeagent_lustre_read_bytes_total"] == {("fsx",): 3951421380608}
    assert got["nodeagent_lustre_write_bytes_total"] == {("fsx",): 1288490188800}
    assert got["nodeagent_lustre_read_samples_total"] == {("fsx",): 1257813}
    assert got["nodeagent_lustre_write_samples_total"] == {("fsx",): 389421}
    ops = got["nodeagent_lustre_operations_total"]
    assert ops[("fsx", "open")] == 182734 and ops[("fsx", "close")] == 182730
    assert ops[("fsx", "getattr")] == 523456 and ops[("fsx", "ioctl")] == 2345
    assert len(ops) == 22  # every line with samples except read_bytes/write_bytes
    times = got["nodeagent_lustre_operation_time_seconds_total"]
    assert times[("fsx", "getattr")] == 8.234567
    assert ("fsx", "ioctl") not in times and ("fsx", "opencount") not in times


def test_lustre_old_client_in_procfs_two_mounts_summed(tmp_path):
    llite = tmp_path / "proc" / "fs" / "lustre" / "llite"
    for sb in ("ffff8881234abcd0", "ffff8881234abce8"):
        (llite / f"scratch-{sb}").mkdir(parents=True)
        (llite / f"scratch-{sb}" / "stats").write_text(
            "snapshot_time             1409777887.590578 secs.usecs\n"
            "read_bytes                17 samples [bytes] 0 4194304 30720\n"
            "open                      1 samples [regs]\n"
        )
    got = samples(run(LustreCollector, empty_host(tmp_path)))
    assert got["nodeagent_lustre_read_bytes_total"] == {("scratch",): 61440}
    assert got["nodeagent_lustre_read_samples_total"] == {("scratch",): 34}
    assert got["nodeagent_lustre_write_bytes_total"] == {("scratch",): 0}
    assert got["nodeagent_lustre_operations_total"] == {("scratch", "open"): 2}


def test_lustre_debugfs_not_readable():
    class NotRoot(Host):
        def listdir(self, path):
            if str(path).startswith(self.roots.debugfs):
                raise PermissionError(13, "Permission denied", str(path))
            return super().listdir(path)

    with_lustre = NotRoot(Roots(procfs=str(P5 / "proc"), sysfs=str(P5 / "sys"), debugfs=str(P5 / "debug")))
    # the fixture's procfs has no fs/lustre: no Lustre client, so nothing to report, no error
    assert run(LustreCollector, with_lustre) == []


def test_lustre_debugfs_not_readable_with_a_lustre_client(tmp_path):
    # a 2.15 client: procfs has the llite directory, the stats are only in debugfs
    (tmp_path / "proc" / "fs" / "lustre" / "llite" / "fsx-ffff9a1c2d3e4000").mkdir(parents=True)

    class NotRoot(Host):
        def listdir(self, path):
            if str(path).startswith(self.roots.debugfs):
                raise PermissionError(13, "Permission denied", str(path))
            return super().listdir(path)

    host = NotRoot(Roots(procfs=str(tmp_path / "proc"), sysfs=str(tmp_path / "sys"), debugfs=str(P5 / "debug")))
    with pytest.raises(PermissionError, match="need root"):
        LustreCollector(host, NoOptions()).collect()
