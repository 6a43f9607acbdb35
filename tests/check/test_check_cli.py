"""`nodeagent check` as a command: the table, --json, the exit statuses
(0 healthy, 1 unhealthy, 78 bad config) and the role-aware set of checks."""

from __future__ import annotations

import pytest
from check_helpers import CHECK_FIXTURES, make_config, p5_paths, report, rows, run_cli
from testlib import free_port


def _compute_config(tmp_path, **paths):  # type: ignore[no-untyped-def]
    _, path = make_config(
        tmp_path,
        paths=p5_paths(**paths),
        collectors={"disable_defaults": True, "enable": ["uname"]},
        exporters={"host": {"listen": f"127.0.0.1:{free_port()}"}, "gpu": {"listen": f"127.0.0.1:{free_port()}"}},
    )
    return path


def test_healthy_compute_node_table_and_json(tmp_path):
    path = _compute_config(tmp_path)
    proc = run_cli("check", "--role", "compute", "--config", str(path), "--no-endpoints")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "TIME", "SERIES", "DETAIL"]
    assert any(line.startswith("gpu count") and " ok " in line and "8 of 8 GPUs" in line for line in lines)
    assert lines[-1] == "all 7 checks passed (1 skipped)"  # 8 rows; cloudwatch: not on compute

    data = report(run_cli("check", "--role", "compute", "--config", str(path), "--no-endpoints", "--json"))
    assert data["healthy"] is True and data["role"] == "compute" and data["mode"] == "check"
    checks = rows(data)
    assert list(checks) == ["config", "collector uname", "gpu count", "gpu driver", "gpu xid", "efa devices",
                            "lustre", "cloudwatch"]
    assert checks["collector uname"]["series"] == 1 and checks["gpu count"]["series"] is None
    assert {r["status"] for r in data["checks"]} == {"ok", "skip"}


def test_node_fatal_xid_fails_the_check(tmp_path):
    path = _compute_config(tmp_path, dev=CHECK_FIXTURES / "dev-xid79")
    proc = run_cli("check", "--role", "compute", "--config", str(path), "--no-endpoints")
    assert proc.returncode == 1
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("gpu xid")]
    assert "FAILED" in line and "XID 79 (GPU has fallen off the bus)" in line and "(hint: node-fatal XID" in line
    assert proc.stdout.rstrip().endswith("6 passed, 1 failed (1 skipped)")


def test_endpoints_are_checked_by_default(tmp_path):
    path = _compute_config(tmp_path)
    data = report(run_cli("check", "--role", "compute", "--config", str(path), "--json"))
    assert data["healthy"] is False
    endpoints = [r for r in data["checks"] if r["check"].startswith("endpoint ")]
    assert [r["check"].split()[1] for r in endpoints] == ["host", "gpu"]
    # the gpu group has no collector in this config: no endpoint to ask
    assert endpoints[0]["status"] == "fail" and endpoints[1]["status"] == "skip"
    assert endpoints[0]["hint"] == "`systemctl start nodeagent@compute.service`"
    assert rows(data)["unit nodeagent@compute.service"]["status"] == "skip"  # no systemd in the fixture root


def test_bad_config_exits_78(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("exporters: {host: {listen: 'nope'}}\n")
    for extra in ([], ["--slurm-health"]):
        proc = run_cli("check", "--role", "compute", "--config", str(bad), *extra)
        assert proc.returncode == 78 and "exporters.host.listen" in proc.stderr and proc.stdout == ""


@pytest.mark.slurm
def test_healthy_head_node(check_cluster, moto_iam, tmp_path):
    """The head role end to end: Slurm collectors and commands against a real
    Slurm, CloudWatch against moto with a user allowed to publish."""
    _, path = make_config(
        tmp_path,
        paths={"rootfs": str(tmp_path), "cfnconfig": "/none", "state_dir": str(tmp_path / "state")},
        collectors={"disable_defaults": True, "enable": ["loadavg", "sinfo", "sdiag"]},
        slurm={"bin_dir": "/usr/bin", "slurm_conf": str(check_cluster.conf)},
        cloudwatch={"region": "us-east-1", "cluster_name": "chk", "endpoint_url": moto_iam["url"],
                    "connect_timeout": 1, "read_timeout": 2},
    )
    env = {**moto_iam["allowed"], "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    proc = run_cli("check", "--role", "head", "--config", str(path), "--no-endpoints", "--json", env=env)
    data = report(proc)
    assert proc.returncode == 0 and data["healthy"], data
    assert list(rows(data)) == ["config", "collector loadavg", "collector sdiag", "collector sinfo", "lustre",
                                "slurm sinfo", "slurm squeue", "slurm sdiag", "cloudwatch"]
    assert rows(data)["cloudwatch"]["status"] == "ok"
    # the same node with keys that may not publish: unhealthy, and the hint names the IAM action
    proc = run_cli("check", "--role", "head", "--config", str(path), "--no-endpoints", "--json",
                   env={**env, **moto_iam["denied"]})
    assert proc.returncode == 1
    assert "cloudwatch:PutMetricData" in rows(report(proc))["cloudwatch"]["hint"]
