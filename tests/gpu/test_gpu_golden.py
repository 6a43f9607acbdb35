"""Golden exposition of :9400 for every shipped fake description.

The fake's clock is injected, so the output is exact. Regenerate after an
intended change with NODEAGENT_UPDATE_GOLDEN=1 and review the diff.
Every golden file must parse: promtool (lint findings about dcgm-exporter's
names are expected, parse errors are not) and prometheus_client's parser.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from gpu_helpers import GOLDEN, Rig
from prometheus_client.parser import text_string_to_metric_families

from nodeagent.catalogue import CATALOGUE

UPDATE = os.environ.get("NODEAGENT_UPDATE_GOLDEN") == "1"

CASES = {
    # name: (description, fake seconds at the sampled cycles, fake events on)
    "p5-8xh100": ("p5-8xh100", (0, 10), False),
    "p4d-8xa100-40gb": ("p4d-8xa100-40gb", (0, 10), False),
    "g5-1xa10g": ("g5-1xa10g", (0, 10), False),
    "h100-mig": ("h100-mig", (0, 10), False),
    # after the scripted XID 94 (t=30), power cap (t=45), XID 79 and GPU 5 lost (t=60)
    "p5-8xh100-events": ("p5-8xh100", (0, 10, 35, 50, 65), True),
}


def exposition(description: str, times: tuple[int, ...], events: bool) -> str:
    r = Rig(description, events=events, process_metrics=True)
    try:
        now = 0
        for t in times:
            r.clock.advance(t - now)
            now = t
            r.cycle()
        return r.text()
    finally:
        r.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_exposition(case: str) -> None:
    description, times, events = CASES[case]
    text = exposition(description, times, events)
    path = GOLDEN / f"{case}.prom"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"missing golden file {path.name}: run with NODEAGENT_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{case}: exposition differs from {path.name}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_parses_with_prometheus_client(case: str) -> None:
    text = (GOLDEN / f"{case}.prom").read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families, case
    # every family is in the catalogue with the type written
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, type_ = line.split()
            spec = CATALOGUE.lookup(name)
            assert spec is not None, f"{name} is not in the catalogue"
            assert spec.type == type_, name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_passes_promtool_parser(case: str) -> None:
    text = (GOLDEN / f"{case}.prom").read_text()
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    output = proc.stdout + proc.stderr
    assert "parsing error" not in output and "error while linting" not in output, output[:500]
    # 0 = clean, 3 = lint findings only (dcgm-exporter's counters have no _total suffix,
    # its label names are CamelCase); 1 would be a parse failure
    assert proc.returncode in (0, 3), output[:500]


def test_golden_values_are_dcgm_formatted() -> None:
    text = (GOLDEN / "p5-8xh100.prom").read_text()
    power = [line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_POWER_USAGE{")]
    energy = [line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{")]
    assert len(power) == 8 and len(energy) == 8
    # doubles with Go's %f, integers as integers (no exponent, no fraction)
    assert all(line.rsplit(" ", 1)[1].count(".") == 1 and len(line.rsplit(".", 1)[1]) == 6 for line in power)
    assert all(line.rsplit(" ", 1)[1].isdigit() for line in energy)
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter" in text
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total" not in text
