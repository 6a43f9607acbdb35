"""Helpers for the `nodeagent check` tests: fixture roots, configs, a local
Slurm cluster on this suite's ports (17100-17199) and running the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from testlib import FIXTURES, ROOT

from nodeagent.config import Config, parse_config

sys.path.insert(0, str(ROOT / "tests" / "slurm"))
from localslurm import LocalSlurm

CHECK_FIXTURES = FIXTURES / "check"
P5 = CHECK_FIXTURES / "p5"


def p5_paths(**overrides: Path) -> dict[str, str]:
    """paths: of the healthy p5.48xlarge fixture, with some roots swapped."""
    paths = {"procfs": P5 / "proc", "sysfs": P5 / "sys", "rootfs": P5 / "root", "dev": P5 / "dev"}
    paths.update(overrides)
    return {k: str(v) for k, v in paths.items()}


def make_config(tmp_path: Path, **sections: Any) -> tuple[Config, Path]:
    """A config file (returned parsed and as a path). Defaults suited to a
    test: no instance metadata, CloudWatch off unless given."""
    data: dict[str, Any] = {"cloudwatch": {"imds": False}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp_path / "config.yaml"
    text = yaml.safe_dump(data)
    path.write_text(text)
    return parse_config(text, str(path)), path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodeagent", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["check"]: r for r in data["checks"]}


class CheckSlurm(LocalSlurm):
    """LocalSlurm with its node ports inside this suite's range: slurmctld
    base_port, slurmd base_port+1, nodes base_port+50..."""

    def write_config(self) -> None:
        super().write_config()
        lo, hi = self.base_port + 101, self.base_port + 100 + self.node_count
        new_lo, new_hi = self.base_port + 50, self.base_port + 49 + self.node_count
        text = self.conf.read_text()
        assert f"Port=[{lo}-{hi}]" in text
        self.conf.write_text(text.replace(f"Port=[{lo}-{hi}]", f"Port=[{new_lo}-{new_hi}]"))

    def node(self, name: str = "node1") -> tuple[str, str]:
        """(State, Reason without its [user@time] suffix) of a node."""
        from nodeagent.checks.slurm_health import parse_show_node

        (state,) = parse_show_node(self.scontrol("--oneliner", "show", "node", name))
        return state.state, state.reason
