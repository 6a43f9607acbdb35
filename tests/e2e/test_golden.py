"""End to end: the compute role run against the p5 fixture tree, its whole
exposition diffed against a checked-in file (node_exporter's end-to-end test
does the same). Durations vary from run to run and are normalised; the
clock-driven collectors (time, timex) are left out, as node_exporter's test
leaves them out.

Update the golden file after an intended change with:
    NODEAGENT_UPDATE_GOLDEN=1 pytest tests/e2e/test_golden.py
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testlib import FIXTURES

P5 = FIXTURES / "p5"
GOLDEN = Path(__file__).parent / "golden"


def fixture_config(tmp_path: Path, role: str = "compute", extra: str = "") -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"hostname: p5-node-1\n"
        f"paths:\n  procfs: '{P5 / 'proc'}'\n  sysfs: '{P5 / 'sys'}'\n  rootfs: '{P5 / 'root'}'\n"
        f"  debugfs: '{P5 / 'debug'}'\n  textfile_dir: '{P5 / 'textfile'}'\n"
        "collectors:\n  disable: [time, timex, filesystem, gpu, gpu_status]\n" + extra
    )
    return cfg


def normalise(text: str) -> str:
    # the textfile collector names files by absolute path and reports their mtime (the checkout's time)
    text = text.replace(str(P5), "<fixture>")
    text = re.sub(r"^(node_textfile_mtime_seconds\{[^}]*\}) \S+$", r"\1 <mtime>", text, flags=re.M)
    text = re.sub(r'^((?:node|nodeagent)_(?:scrape_)?collector_duration_seconds\{[^}]*\}) \S+$', r"\1 <duration>",
                  text, flags=re.M)
    return re.sub(r"^(nodeagent_\w*age_seconds(?:\{[^}]*\})?) \S+$", r"\1 <age>", text, flags=re.M)


def run_once(cfg: Path, role: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "nodeagent", "--role", role, "--config", str(cfg), "--once"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def compare(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NODEAGENT_UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    expected = path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            f"golden/{name}", "actual", n=1))
        pytest.fail(f"exposition differs from golden/{name}:\n{diff[:6000]}")


def test_compute_role_golden(tmp_path):
    cfg = fixture_config(tmp_path)
    compare("compute-p5.prom", normalise(run_once(cfg, "compute")))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
@pytest.mark.parametrize("role", ["compute", "head", "login"])
def test_promtool_finds_no_parse_errors(tmp_path, role):
    """promtool check metrics: rc 0 clean, 3 lint findings only, 1 parse errors.
    Lint findings are allowed only where node_exporter or dcgm-exporter
    compatibility forces the name; they are listed here."""
    cfg = fixture_config(tmp_path)
    text = run_once(cfg, role)
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    findings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    unexplained = [f for f in findings if not any(re.search(p, f) for p in ALLOWED_LINT)]
    assert not unexplained, "\n".join(unexplained)


# promtool's lint findings that compatibility forces, each with the reason. The
# first three appear in node_exporter 1.5's own output on the same machine.
ALLOWED_LINT = [
    # node_exporter keeps /proc/meminfo and /proc/net/{netstat,snmp} field names as the kernel spells them
    r"^node_(memory|netstat)_\w+ metric names should be written in 'snake_case' not 'camelCase'$",
    # node_exporter's entropy gauges are in bits
    r'^node_entropy_\w+_bits use base unit "bytes" instead of "bits"$',
    # AWS's EFA exporter names its counters after the sysfs hw_counters files, without _total
    r'^node_amazonefa_\w+ counter metrics should have "_total" suffix$',
    # dcgm-exporter's counters have no _total suffix, and its names are upper case
    r'^DCGM_\w+ (counter metrics should have "_total" suffix|metric names should be written in \'snake_case\')',
]
