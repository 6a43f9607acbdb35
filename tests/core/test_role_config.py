"""A collector enabled in a role that does not run its group is an error
naming the key (it was accepted and never ran)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from nodeagent import registry
from nodeagent.config import parse_config, validate_role_collectors
from nodeagent.daemon import Agent
from nodeagent.install import install
from nodeagent.roles import ROLE_TABLE
from nodeagent.settings import ConfigError


def _cases() -> list[tuple[str, str, bool]]:
    """(role, collector, allowed) for every role and collector."""
    return [(role, name, cls.group in spec.groups)
            for role, spec in ROLE_TABLE.items() for name, cls in registry.load_all().items()]


@pytest.mark.parametrize(("role", "name", "allowed"), _cases())
def test_enable_is_checked_against_the_roles_groups(role, name, allowed):
    cfg = parse_config(f"collectors: {{enable: [loadavg, {name}]}}", "c.yaml")
    if allowed:
        validate_role_collectors(cfg, role)
        return
    with pytest.raises(ConfigError) as e:
        validate_role_collectors(cfg, role)
    assert e.value.key == "collectors.enable[1]"
    assert f"collector {name!r} feeds the" in str(e.value) and f"which the {role} role does not run" in str(e.value)


def test_building_the_agent_refuses_it_too():
    cfg = parse_config("collectors: {disable_defaults: true, enable: [sdiag]}", "c.yaml")
    with pytest.raises(ConfigError, match=r"collectors\.enable\[0\]: collector 'sdiag' feeds the slurm exporter"):
        Agent.build(cfg, "compute", with_sinks=False)


def test_disabling_another_roles_collector_is_fine():
    validate_role_collectors(parse_config("collectors: {disable: [sdiag, gpu_status]}", "c.yaml"), "login")


def test_check_and_the_daemon_exit_78_naming_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("collectors: {enable: [sdiag]}\n")
    for argv in (["check", "--role", "compute", "--no-endpoints"], ["--role", "compute", "--once"]):
        proc = subprocess.run([sys.executable, "-m", "nodeagent", *argv, "--config", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 78, proc.stderr
        assert f"{path}: collectors.enable[0]: collector 'sdiag'" in proc.stderr and "Traceback" not in proc.stderr


def test_install_refuses_it_and_changes_nothing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("collectors: {enable: [sdiag]}\n")
    root = tmp_path / "root"
    root.mkdir()
    out = io.StringIO()
    assert install("login", str(path), root=str(root), out=out) == 78
    assert "collectors.enable[0]" in out.getvalue()
    assert list(root.iterdir()) == []
    assert install("head", str(path), root=str(root), systemctl="/bin/true", systemd_running=False,
                   exec_path="/usr/bin/nodeagent", out=io.StringIO()) == 0
