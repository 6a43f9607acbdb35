"""The command lines that node_exporter's and dcgm-exporter's packages, units
and charts use start nodeagent as they are, and give the settings they stand
for: run through `nodeagent collectors --json` (and once through the daemon,
scraped)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from testlib import free_port

from nodeagent import flags as flags_module
from nodeagent.config import load_config
from nodeagent.flags import split_flags

REPO = Path(__file__).resolve().parents[2]
COMPAT = REPO / "tests" / "fixtures" / "compat"
DCGM = COMPAT / "dcgm-exporter"


def environment_file(text: str) -> dict[str, str]:
    """systemd's EnvironmentFile=: KEY=VALUE lines, quotes around the value removed."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return env


def exec_start(unit: str, env: dict[str, str] | None = None) -> list[str]:
    """ExecStart='s arguments after the program, $VAR split at whitespace as
    systemd does for an unbraced variable."""
    (line,) = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    words = shlex.split(line.removeprefix("ExecStart="))
    argv: list[str] = []
    for word in words[1:]:
        if word.startswith("$") and env is not None:
            argv.extend(env.get(word[1:], "").split())
        else:
            argv.append(word)
    return argv


def debian_node_exporter(default_file: Path, unit_file: Path) -> list[str]:
    unit = unit_file.read_text()
    (env_line,) = [ln for ln in unit.splitlines() if ln.startswith("EnvironmentFile=")]
    assert env_line.removeprefix("EnvironmentFile=").lstrip("-") == "/etc/default/prometheus-node-exporter"
    return exec_start(unit, environment_file(default_file.read_text()))


def collectors_json(tmp_path: Path, role: str, argv: list[str], config: str = "") -> dict[str, Any]:
    path = tmp_path / "config.yaml"
    path.write_text(config or "cloudwatch: {enabled: false}\n")
    proc = subprocess.run([sys.executable, "-m", "nodeagent", "collectors", "--json", "--role", role,
                           "--config", str(path), *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    data["stderr"] = proc.stderr
    data["by_name"] = {r["name"]: r for r in data["collectors"]}
    return data


def _effective(tmp_path: Path, argv: list[str]) -> Any:
    rest, flags = split_flags(argv, lambda: __import__("nodeagent.registry").registry.load_all().keys())
    assert rest == []
    path = tmp_path / "effective.yaml"
    path.write_text("")
    return load_config(str(path), flags)


# ---- node_exporter ----------------------------------------------------------------


def test_debian_packages_unit_and_default_file(tmp_path):
    """Debian 12's prometheus-node-exporter: ExecStart=... $ARGS with ARGS from
    /etc/default (empty as shipped): nodeagent's own defaults, none from a flag."""
    argv = debian_node_exporter(COMPAT / "debian/prometheus-node-exporter.default",
                                COMPAT / "debian/prometheus-node-exporter.service")
    assert argv == []
    data = collectors_json(tmp_path, "compute", argv)
    loadavg, gpu = data["by_name"]["loadavg"], data["by_name"]["gpu"]
    assert loadavg["enabled"] is True and loadavg["listen"] == [":9100"] and loadavg["port"] == 9100
    assert gpu["listen"] == [":9400"] and gpu["interval_seconds"] == 5.0
    assert {r[k] for r in data["collectors"] for k in ("enabled_source", "listen_source", "interval_source")} == {
        "default"}


@pytest.mark.skipif(not Path("/etc/default/prometheus-node-exporter").is_file(),
                    reason="Debian's prometheus-node-exporter is not installed here")
def test_debian_package_as_installed_here(tmp_path):
    argv = debian_node_exporter(Path("/etc/default/prometheus-node-exporter"),
                                Path("/lib/systemd/system/prometheus-node-exporter.service"))
    data = collectors_json(tmp_path, "login", argv)
    assert data["by_name"]["cpu"]["enabled"] is True and data["stderr"] == ""


def test_debian_args_with_flags_set(tmp_path):
    """What an operator puts in ARGS= of /etc/default/prometheus-node-exporter."""
    default = tmp_path / "prometheus-node-exporter"
    default.write_text('ARGS="--web.listen-address=127.0.0.1:9100 --collector.textfile.directory='
                       '/var/lib/prometheus/node-exporter --no-collector.hwmon --collector.systemd '
                       '--log.level=warn"\n')
    argv = debian_node_exporter(default, COMPAT / "debian/prometheus-node-exporter.service")
    data = collectors_json(tmp_path, "compute", argv)
    by = data["by_name"]
    assert by["cpu"]["listen"] == ["127.0.0.1:9100"] and by["cpu"]["listen_source"] == "flag"
    assert by["hwmon"]["enabled"] is False and by["hwmon"]["enabled_source"] == "flag"
    assert by["hwmon"]["enabled_flag"] == "--no-collector.hwmon"
    assert by["gpu"]["listen"] == [":9400"] and by["gpu"]["listen_source"] == "default"
    assert "--collector.systemd: nodeagent has no systemd collector; ignored" in data["stderr"]
    cfg = _effective(tmp_path, argv)
    assert cfg.paths.textfile_dir == "/var/lib/prometheus/node-exporter" and cfg.log.level == "warning"


def test_container_and_chart_lines(tmp_path):
    """node_exporter's README (docker), the prometheus-community chart's
    node-exporter arguments, and the older spellings still found in the wild."""
    docker = ["--path.rootfs=/host"]
    chart = shlex.split(
        "--path.procfs=/host/proc --path.sysfs=/host/sys --path.rootfs=/host/root "
        "--path.udev.data=/host/root/run/udev/data --web.listen-address=[::1]:9100 "
        "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|var/lib/docker/.+|var/lib/kubelet/.+)($|/) "
        "--collector.filesystem.fs-types-exclude=^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs"
        "|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs"
        "|sysfs|tracefs)$ --no-collector.wifi --collector.netclass.ignored-devices=^(veth.*|[a-f0-9]{15})$ "
        "--collector.netdev.device-exclude=^(veth.*|[a-f0-9]{15})$")
    older = ["--path.procfs", "/host/proc", "--path.sysfs", "/host/sys", "--collector.filesystem.ignored-mount-points",
             "^/(sys|proc|dev|host|etc)($|/)", "--collector.diskstats.ignored-devices=^(ram|loop)\\d+$",
             "--web.config", str(tmp_path / "web.yml")]
    (tmp_path / "web.yml").write_text("basic_auth_users: {}\n")

    cfg = _effective(tmp_path, docker)
    assert cfg.paths.rootfs == "/host" and cfg.paths.procfs == "/proc"

    cfg = _effective(tmp_path, chart)
    assert (cfg.paths.procfs, cfg.paths.sysfs, cfg.paths.rootfs) == ("/host/proc", "/host/sys", "/host/root")
    assert cfg.exporters.host.listen == "[::1]:9100"
    fs = cfg.collectors.options["filesystem"]
    assert fs["mount_points_exclude"].startswith("^/(dev|proc|sys|var/lib/docker") and "tracefs" in fs[
        "fs_types_exclude"]
    assert cfg.collectors.options["netclass"] == {"ignored_devices": "^(veth.*|[a-f0-9]{15})$"}
    assert cfg.collectors.options["netdev"] == {"device_exclude": "^(veth.*|[a-f0-9]{15})$"}
    assert cfg.collectors.options["diskstats"] == {"udev_data_path": "/host/root/run/udev/data"}
    data = collectors_json(tmp_path, "login", chart)
    assert data["stderr"] == "" and data["by_name"]["netclass"]["enabled"] is True

    cfg = _effective(tmp_path, older)
    assert cfg.collectors.options["filesystem"] == {"mount_points_exclude": "^/(sys|proc|dev|host|etc)($|/)"}
    assert cfg.collectors.options["diskstats"] == {"device_exclude": "^(ram|loop)\\d+$"}
    assert cfg.exporters.host.web_config == str(tmp_path / "web.yml")


def test_disable_defaults_line(tmp_path):
    argv = ["--collector.disable-defaults", "--collector.cpu", "--collector.meminfo", "--collector.textfile"]
    data = collectors_json(tmp_path, "compute", argv)
    on = {name for name, r in data["by_name"].items() if r["enabled"]}
    assert on == {"cpu", "meminfo", "textfile", "gpu", "gpu_status"}  # the GPU exporter is not node_exporter's
    assert data["by_name"]["loadavg"]["enabled_source"] == "flag"
    assert data["by_name"]["gpu"]["enabled_source"] == "default"


# ---- dcgm-exporter -----------------------------------------------------------------


def _dcgm_paths(argv: list[str], tmp_path: Path) -> list[str]:
    """/etc/dcgm-exporter/*.csv (what the package installs) from the fixtures."""
    etc = tmp_path / "etc-dcgm-exporter"
    if not etc.exists():
        shutil.copytree(DCGM, etc)
    return [a.replace("/etc/dcgm-exporter/", f"{etc}/") for a in argv]


@pytest.mark.parametrize(("name", "argv", "listen", "interval", "counters"), [
    ("packaged systemd unit", exec_start((DCGM / "nvidia-dcgm-exporter.service").read_text()),
     ":9400", 5.0, "default-counters.csv"),
    ("Helm chart since 2025-01", ["-f", "/etc/dcgm-exporter/default-counters.csv"],
     ":9400", 5.0, "default-counters.csv"),
    ("Helm chart 2021-08 to 2025-01", ["-f", "/etc/dcgm-exporter/dcp-metrics-included.csv"],
     ":9400", 5.0, "dcp-metrics-included.csv"),
    ("systemd unit with address and interval",
     shlex.split("-f /etc/dcgm-exporter/default-counters.csv -a :9400 -c 30000"), ":9400", 30.0,
     "default-counters.csv"),
    ("long spellings", shlex.split("--collectors=/etc/dcgm-exporter/default-counters.csv --address 127.0.0.1:9401 "
                                   "--collect-interval=1000"), "127.0.0.1:9401", 1.0, "default-counters.csv"),
])
def test_dcgm_exporter_lines(tmp_path, name, argv, listen, interval, counters):
    argv = _dcgm_paths(argv, tmp_path)
    data = collectors_json(tmp_path, "compute", argv)
    gpu = data["by_name"]["gpu"]
    assert gpu["enabled"] is True and gpu["listen"] == [listen] and gpu["interval_seconds"] == interval
    assert gpu["interval_source"] == ("flag" if "-c" in argv or any(a.startswith("--collect-interval") for a in argv)
                                      else "default")
    assert gpu["listen_source"] == ("flag" if listen != ":9400" or "-a" in argv else "default")
    assert data["by_name"]["cpu"]["listen"] == [":9100"]  # the host exporter is not dcgm-exporter's
    cfg = _effective(tmp_path, argv)
    assert cfg.gpu.counters_file == str(tmp_path / "etc-dcgm-exporter" / counters)


def test_dcgm_exporter_extras(tmp_path):
    (tmp_path / "web.yml").write_text("basic_auth_users: {}\n")
    (tmp_path / "jobs").mkdir()
    cfg = _effective(tmp_path, ["--web-config-file", str(tmp_path / "web.yml"), "--hpc-job-mapping-dir",
                                str(tmp_path / "jobs"), "-x", "60000"])
    assert cfg.exporters.gpu.web_config == str(tmp_path / "web.yml") and cfg.exporters.host.web_config is None
    assert cfg.gpu.hpc_job_mapping_dir == str(tmp_path / "jobs") and cfg.gpu.xid_count_window_ms == 60000


def test_a_counters_file_that_is_not_there_names_the_flag(tmp_path):
    (tmp_path / "none.yaml").write_text("")
    proc = subprocess.run([sys.executable, "-m", "nodeagent", "collectors", "--role", "compute", "--config",
                           str(tmp_path / "none.yaml"), "-f", "/etc/dcgm-exporter/nosuch.csv"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78
    assert proc.stderr.startswith("nodeagent: command line: -f: /etc/dcgm-exporter/nosuch.csv: cannot read")


# ---- the command line as a whole -----------------------------------------------------


def test_unknown_flags_are_usage_errors_naming_them(tmp_path):
    for argv, named in ((["--web.listen-addres=:9100"], "--web.listen-addres"), (["--bogus"], "--bogus"),
                        (["-k"], "-k"), (["--collector.nosuch"], "--collector.nosuch")):
        proc = subprocess.run([sys.executable, "-m", "nodeagent", "--role", "login", *argv], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and named in proc.stderr.splitlines()[-1], proc.stderr


def test_flags_are_refused_where_they_mean_nothing():
    proc = subprocess.run([sys.executable, "-m", "nodeagent", "prometheus-config", "--cluster", "c", "--region",
                           "us-east-1", "--web.listen-address=:9100"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not to `prometheus-config`" in proc.stderr


def test_the_daemon_serves_what_the_flags_say(tmp_path):
    """A node_exporter unit's flags, on loopback ports: two listen addresses,
    another metrics path; a reload keeps the flags over the file."""
    ports = [free_port(), free_port()]
    config = tmp_path / "config.yaml"
    config.write_text("collectors: {disable_defaults: true, enable: [loadavg, uname]}\ncloudwatch: {enabled: false}\n"
                      "exporters: {host: {listen: '127.0.0.1:1'}}\n")
    argv = [sys.executable, "-m", "nodeagent", "--role", "login", "--config", str(config),
            f"--web.listen-address=127.0.0.1:{ports[0]}", f"--web.listen-address=127.0.0.1:{ports[1]}",
            "--web.telemetry-path=/node-metrics", "--no-collector.uname", "--log.level=warn"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        bodies = [_get(f"http://127.0.0.1:{port}/node-metrics") for port in ports]
        assert all("node_load1 " in b and "node_uname_info" not in b for b in bodies)
        config.write_text(config.read_text().replace("[loadavg, uname]", "[loadavg, uname, filefd]"))
        proc.send_signal(1)  # SIGHUP: the file changes, the flags stay over it
        deadline = time.monotonic() + 20
        while "node_filefd_allocated" not in (body := _get(f"http://127.0.0.1:{ports[1]}/node-metrics")):
            assert time.monotonic() < deadline, body[-500:]
            time.sleep(0.2)
        assert "node_uname_info" not in body
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"level": "info"' not in err  # --log.level=warn


def _get(url: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---- documentation ----------------------------------------------------------------


def test_the_readme_table_is_the_flag_table():
    readme = (REPO / "README.md").read_text()
    assert flags_module.markdown_table() in readme, "regenerate: python -c 'from nodeagent.flags import " \
        "markdown_table; print(markdown_table())'"


def test_the_man_page_has_the_flag_table():
    man = (REPO / "packaging" / "debian" / "nodeagent.1").read_text()
    assert flags_module.man_section() in man
    text = man.replace("\\-", "-")
    for flag in flags_module.FLAGS:
        assert all(name in text for name in (*flag.names, flag.replaces) if name), flag.names
