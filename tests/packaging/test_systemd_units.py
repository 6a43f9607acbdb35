"""The systemd units: `systemd-analyze verify` is clean, `systemd-analyze
security --offline=true` rates head and login at or below 2.0 and compute at
or below 2.4 (it also reads the kernel log for XIDs), the directives the
agent relies on are there, and the copies shipped in the Python package are
the same files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pkgtools import PACKAGING, REPO, SYSTEMD

ROLES = ("compute", "head", "login")
UNIT_FILES = ("nodeagent@.service", "nodeagent@compute.service.d/role.conf", "nodeagent@head.service.d/role.conf")
MAX_EXPOSURE = {"compute": 2.4, "head": 2.0, "login": 2.0}

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file system root with systemd's own units, ours, the binaries our
    units name and our man page, as the .deb installs them."""
    root = tmp_path_factory.mktemp("root")
    units = root / "usr/lib/systemd/system"
    host_units = Path("/lib/systemd/system")
    shutil.copytree(host_units, units, symlinks=True)
    for name in UNIT_FILES:
        (units / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SYSTEMD / name, units / name)
    for exe in ("usr/bin/nodeagent", "bin/kill"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    man = root / "man/man1"
    man.mkdir(parents=True)
    shutil.copy(PACKAGING / "debian/nodeagent.1", man / "nodeagent.1")
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}"],
        capture_output=True, text=True, timeout=60, env={"MANPATH": str(root / "man"), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("role", ROLES)
def test_verify_is_clean(unit_root: Path, role: str) -> None:
    r = analyze(unit_root, "verify", f"nodeagent@{role}.service")
    # verify exits 0 on unknown keys and only warns: any output is a finding
    assert r.returncode == 0 and r.stderr == "" and r.stdout == "", r.stderr + r.stdout


def test_verify_catches_a_typo(unit_root: Path, tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive is reported."""
    broken = tmp_path / "root"
    shutil.copytree(unit_root, broken, symlinks=True)
    conf = broken / "usr/lib/systemd/system/nodeagent@head.service.d/role.conf"
    conf.write_text(conf.read_text() + "ProtectSystm=strict\n")
    r = analyze(broken, "verify", "nodeagent@head.service")
    assert "Unknown key" in r.stderr


def exposure(unit_root: Path, role: str) -> tuple[float, str]:
    r = analyze(unit_root, "security", "--offline=true", f"nodeagent@{role}.service")
    m = re.search(r"Overall exposure level for nodeagent@\w+\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1)), r.stdout


@pytest.mark.parametrize("role", ROLES)
def test_security_exposure(unit_root: Path, role: str) -> None:
    score, report = exposure(unit_root, role)
    assert score <= MAX_EXPOSURE[role], report


def test_compute_opens_only_nvidia_devices(unit_root: Path) -> None:
    _, report = exposure(unit_root, "compute")
    line = next(line for line in report.splitlines() if "DeviceAllow=" in line)
    # the device ACL: the NVIDIA groups and the kernel log, nothing else
    assert re.findall(r"(char-\S+):", line) == ["char-nvidia*"], line
    _, head = exposure(unit_root, "head")
    assert "char-nvidia" not in head
    assert "Service has no access to hardware devices" in head


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_directives() -> None:
    d = directives((SYSTEMD / "nodeagent@.service").read_text())
    assert d["Type"] == ["notify"]
    assert d["WatchdogSec"] and float(d["WatchdogSec"][0]) > 0
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["78"]
    assert d["User"] == ["nodeagent"]
    assert d["ExecStart"] == ["/usr/bin/nodeagent --role %i --config /etc/nodeagent/config.yaml"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": ""}.items():
        assert d[key] == [value], key
    # the only writable path is the state directory
    assert d["StateDirectory"] == ["nodeagent"]
    assert "ReadWritePaths" not in d
    # the timex collector's adjtimex(2) read must not be blocked
    assert "ProtectClock" not in d
    assert d["SystemCallFilter"][-1] == "adjtimex clock_adjtime"
    compute = directives((SYSTEMD / "nodeagent@compute.service.d/role.conf").read_text())
    assert compute["DevicePolicy"] == ["closed"]
    assert compute["DeviceAllow"] == ["char-nvidia* rw", "/dev/kmsg r"]
    # the kernel log for XIDs, and nothing more: CAP_SYSLOG is the only capability
    assert compute["CapabilityBoundingSet"] == compute["AmbientCapabilities"] == ["CAP_SYSLOG"]
    assert compute["ProtectKernelLogs"] == ["no"]


def test_exit_status_78_is_the_daemons_config_error() -> None:
    from nodeagent import install
    from nodeagent.daemon import EX_CONFIG

    assert install.EX_CONFIG == EX_CONFIG == 78


@pytest.mark.parametrize("name", UNIT_FILES)
def test_package_data_copies_are_identical(name: str) -> None:
    """`nodeagent install` writes the units from the package's data (pip
    installs); the .deb ships systemd/. They must not drift apart."""
    data = REPO / "src/nodeagent/data/systemd" / name
    assert data.read_bytes() == (SYSTEMD / name).read_bytes(), f"copy systemd/{name} to {data}"
