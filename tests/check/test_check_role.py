"""Which role `nodeagent check` (and the daemon) runs without --role: the
config's `role`, then the install record, then ParallelCluster's cfnconfig.
No role at all is "role unknown", exit 1 with a hint, never 78; --json
prints a JSON document whatever happens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from check_helpers import make_config, report, rows, run_cli

from nodeagent.host import Host, Roots
from nodeagent.roles import INSTALL_RECORD, ChosenRole, RoleError, choose_role

CFN = "/etc/parallelcluster/cfnconfig"


def _root(tmp_path: Path, record: str | None = None, node_type: str | None = None) -> Path:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    if record is not None:
        (root / "etc/nodeagent").mkdir(parents=True, exist_ok=True)
        (root / INSTALL_RECORD.lstrip("/")).write_text(json.dumps({"role": record, "units": []}))
    if node_type is not None:
        (root / "etc/parallelcluster").mkdir(parents=True, exist_ok=True)
        (root / CFN.lstrip("/")).write_text(f"cfn_node_type={node_type}\n")
    return root


def _choose(root: Path, role_arg: str | None = None, config_role: str | None = None) -> ChosenRole:
    return choose_role(role_arg, config_role, "c.yaml", Host(Roots(rootfs=str(root))), CFN)


def test_the_order_flag_config_record_cfnconfig(tmp_path):
    root = _root(tmp_path, record="login", node_type="HeadNode")
    assert _choose(root, "compute", "head") == ChosenRole("compute", "--role")
    assert _choose(root, None, "head") == ChosenRole("head", "`role` in c.yaml")
    assert _choose(root) == ChosenRole("login", f"the install record {INSTALL_RECORD}")
    (root / INSTALL_RECORD.lstrip("/")).unlink()
    assert _choose(root).role == "head" and CFN in _choose(root).source


def test_auto_asks_the_cfnconfig_itself(tmp_path):
    root = _root(tmp_path, record="login", node_type="ComputeFleet")
    assert _choose(root, "auto").role == "compute"
    assert _choose(root, None, "auto").role == "compute"
    assert _choose(root, "auto", "head").role == "compute"  # the flag wins over the config


@pytest.mark.parametrize("record", ["not json", '{"role": "gpu"}', "[1, 2]", '{"units": []}'])
def test_a_record_without_a_role_is_passed_over(tmp_path, record):
    root = _root(tmp_path, node_type="LoginNode")
    (root / "etc/nodeagent").mkdir(parents=True)
    (root / INSTALL_RECORD.lstrip("/")).write_text(record)
    assert _choose(root).role == "login"


def test_nothing_says_the_role(tmp_path):
    with pytest.raises(RoleError) as e:
        _choose(_root(tmp_path))
    message = str(e.value)
    assert message.startswith("role unknown: no --role, no `role` in c.yaml, no install record")
    assert "cfnconfig' cannot read" in message and "pass --role compute|head|login" in message


def _config(tmp_path: Path, root: Path, **extra: object) -> Path:
    _, path = make_config(tmp_path, paths={"rootfs": str(root)}, cloudwatch={"enabled": False},
                          collectors={"disable_defaults": True, "enable": ["uname"]}, **extra)
    return path


def test_check_uses_the_install_record(tmp_path):
    path = _config(tmp_path, _root(tmp_path, record="login"))
    proc = run_cli("check", "--config", str(path), "--no-endpoints")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"is valid for role login (from the install record {INSTALL_RECORD})" in proc.stdout
    data = report(run_cli("check", "--config", str(path), "--no-endpoints", "--json"))
    assert data["role"] == "login" and data["role_source"] == f"the install record {INSTALL_RECORD}"
    # the config's role comes first
    path = _config(tmp_path, _root(tmp_path), role="compute")
    assert report(run_cli("check", "--config", str(path), "--no-endpoints", "--json"))["role"] == "compute"


def test_role_unknown_is_exit_1_with_a_hint_and_json(tmp_path):
    path = _config(tmp_path, _root(tmp_path))
    proc = run_cli("check", "--config", str(path), "--no-endpoints")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("nodeagent: role unknown:") and "`nodeagent install --role ROLE`" in proc.stderr
    proc = run_cli("check", "--config", str(path), "--json")
    assert proc.returncode == 1
    data = report(proc)
    assert data["role"] is None and data["healthy"] is False and data["error"].startswith("role unknown:")
    assert rows(data)["role"]["status"] == "fail" and "--role" in rows(data)["role"]["hint"]
    # a cfnconfig naming no known node type is no config mistake either
    _root(tmp_path, node_type="Weird")
    proc = run_cli("check", "--config", str(path), "--json", "--slurm-health")
    assert proc.returncode == 1 and report(proc)["mode"] == "slurm-health"
    assert "unknown cfn_node_type 'Weird'" in report(proc)["error"]


def test_bad_config_with_json_still_prints_json(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("exporters: {host: {listen: 'nope'}}\n")
    proc = run_cli("check", "--role", "compute", "--config", str(bad), "--json")
    assert proc.returncode == 78 and "exporters.host.listen" in proc.stderr
    data = report(proc)
    assert data["healthy"] is False and "exporters.host.listen" in data["error"]
    assert list(rows(data)) == ["config"]
    # so does a config valid on its own but not for the role
    bad.write_text("collectors: {enable: [sdiag]}\n")
    proc = run_cli("check", "--role", "login", "--config", str(bad), "--json")
    assert proc.returncode == 78 and "collectors.enable[0]" in report(proc)["error"]
