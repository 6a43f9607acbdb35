"""The agent itself: the systemd unit (a fake systemctl under a root where
systemd "runs") and each endpoint, asked over HTTP while a real nodeagent
daemon serves them, and after it stopped."""

from __future__ import annotations

import signal
from pathlib import Path

from check_helpers import make_config
from testlib import free_port, wait_http

from nodeagent.checks.options import CheckOptions
from nodeagent.checks.service import (
    check_unit,
    exposed_families,
    loopback_url,
    service_checks,
)
from nodeagent.host import Host, Roots


def _agent_config(tmp_path: Path, procfs: str = "/proc") -> tuple[object, Path, int, int]:
    host_port, gpu_port = free_port(), free_port()
    cfg, path = make_config(
        tmp_path,
        paths={"procfs": procfs, "state_dir": str(tmp_path / "state")},
        exporters={"host": {"listen": f"127.0.0.1:{host_port}"}, "gpu": {"listen": f"127.0.0.1:{gpu_port}"}},
        collectors={"disable_defaults": True, "enable": ["loadavg", "gpu_status"]},
        gpu={"backend": "fake", "fake_events": False, "interval": 0.5},
    )
    return cfg, path, host_port, gpu_port


def test_endpoints_answer_with_their_families_then_fail_when_stopped(tmp_path, agent_process):
    cfg, path, host_port, gpu_port = _agent_config(tmp_path)
    agent = agent_process(["--role", "compute", "--config", str(path)])
    wait_http(f"http://127.0.0.1:{host_port}/healthz")
    wait_http(f"http://127.0.0.1:{gpu_port}/healthz")
    rows = service_checks(cfg, "compute", Host(), CheckOptions(), systemd_running=False)  # type: ignore[arg-type]
    by = {r.check: r for r in rows}
    assert by["unit nodeagent@compute.service"].status == "skip"
    host = by[f"endpoint host 127.0.0.1:{host_port}"]
    gpu = by[f"endpoint gpu 127.0.0.1:{gpu_port}"]
    assert host.status == "ok" and "serves node_load1, node_scrape_collector_success" in host.detail
    assert gpu.status == "ok" and "serves nodeagent_gpus, nodeagent_collector_success" in gpu.detail

    rc, _, err = agent.stop(signal.SIGTERM)
    assert rc == 0, err
    rows = service_checks(cfg, "compute", Host(), CheckOptions(http_timeout=1), systemd_running=False)  # type: ignore[arg-type]
    for r in rows[1:]:
        assert r.status == "fail" and not r.ok
        assert "not answering at http://127.0.0.1:" in r.detail and "Connection refused" in r.detail
        assert r.hint == "`systemctl start nodeagent@compute.service`"


def test_endpoint_without_its_family_fails(tmp_path, agent_process):
    empty = tmp_path / "emptyproc"
    empty.mkdir()
    # the daemon runs, but loadavg fails (no procfs loadavg): node_load1 is missing
    cfg, path, host_port, _ = _agent_config(tmp_path, procfs=str(empty))
    agent_process(["--role", "compute", "--config", str(path)])
    wait_http(f"http://127.0.0.1:{host_port}/healthz")
    rows = {r.check: r for r in service_checks(cfg, "compute", Host(), CheckOptions(), False)}  # type: ignore[arg-type]
    host = rows[f"endpoint host 127.0.0.1:{host_port}"]
    assert host.status == "fail" and host.detail.endswith("answers without node_load1")
    assert "nodeagent --role compute --once" in host.hint


def test_disabled_exporter_and_group_without_collectors_are_skipped(tmp_path):
    cfg, _ = make_config(tmp_path, exporters={"gpu": {"enabled": False}},
                         collectors={"disable_defaults": True, "enable": ["loadavg"]})
    rows = service_checks(cfg, "head", Host(), CheckOptions(http_timeout=0.5), False)
    by = {r.check.split()[1]: r for r in rows[1:]}
    assert by["slurm"].status == "skip" and "no slurm collector enabled" in by["slurm"].detail
    cfg, _ = make_config(tmp_path, exporters={"gpu": {"enabled": False}})
    rows = service_checks(cfg, "compute", Host(), CheckOptions(http_timeout=0.5), False)
    assert {r.check.split()[1]: r for r in rows[1:]}["gpu"].detail == "exporters.gpu.enabled is false"


def _fake_systemctl(tmp_path: Path, state: str, rc: int) -> str:
    path = tmp_path / "systemctl"
    path.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/systemctl.args\necho {state}\nexit {rc}\n')
    path.chmod(0o755)
    return str(path)


def test_unit_active_failed_inactive(tmp_path):
    root = tmp_path / "root"
    (root / "run/systemd/system").mkdir(parents=True)
    host = Host(Roots(rootfs=str(root)))
    row = check_unit("compute", host, CheckOptions(systemctl=_fake_systemctl(tmp_path, "active", 0)), True)
    assert (row.check, row.status, row.detail) == ("unit nodeagent@compute.service", "ok", "active")
    assert (tmp_path / "systemctl.args").read_text().split() == ["is-active", "nodeagent@compute.service"]
    row = check_unit("head", host, CheckOptions(systemctl=_fake_systemctl(tmp_path, "failed", 3)), True)
    assert row.status == "fail" and "journalctl -u nodeagent@head.service" in row.hint
    row = check_unit("head", host, CheckOptions(systemctl=_fake_systemctl(tmp_path, "inactive", 3)), True)
    assert row.status == "fail" and row.detail == "inactive"
    assert "systemctl enable --now nodeagent@head.service" in row.hint
    row = check_unit("head", host, CheckOptions(systemctl=str(tmp_path / "none")), True)
    assert row.status == "fail" and "cannot ask systemd" in row.detail


def test_loopback_url_and_exposition_names():
    assert loopback_url(":9100", False) == "http://127.0.0.1:9100/metrics"
    assert loopback_url("0.0.0.0:9400", False) == "http://127.0.0.1:9400/metrics"
    assert loopback_url("[::]:9341", True) == "https://[::1]:9341/metrics"
    assert loopback_url("10.0.0.7:9100", False) == "http://10.0.0.7:9100/metrics"
    body = (
        "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.5\n"
        'nodeagent_gpus{state="expected"} 8\n'
    )
    assert exposed_families(body) == {"node_load1", "nodeagent_gpus"}
