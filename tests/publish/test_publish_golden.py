"""Generated files that are checked in: docs/metrics.md and config/grafana/*.json.
They must equal what the catalogue gives now. NODEAGENT_UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from nodeagent.catalogue import CATALOGUE
from nodeagent.publish import docs, grafana

ROOT = Path(__file__).resolve().parents[2]
UPDATE = os.environ.get("NODEAGENT_UPDATE_GOLDEN") == "1"


def check(path: Path, text: str, how: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: {how}"
    assert path.read_text(encoding="utf-8") == text, f"{path} is stale: {how} (or NODEAGENT_UPDATE_GOLDEN=1)"


def test_metrics_doc_is_current() -> None:
    check(ROOT / "docs" / "metrics.md", docs.render(), "python -m nodeagent.publish.docs")


@pytest.mark.parametrize("name", sorted(grafana.DASHBOARDS))
def test_grafana_dashboard_is_current(name: str) -> None:
    check(ROOT / "config" / "grafana" / name, grafana.render_all()[name], "python -m nodeagent.publish.grafana")


def test_metrics_doc_lists_every_catalogue_entry() -> None:
    text = docs.render()
    for spec in CATALOGUE:
        assert f"| `{spec.name}` |" in text, spec.name
        if spec.cloudwatch is not None:
            assert f"| `{spec.cloudwatch.name}` |" in text


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions,
    keywords, label names (inside {} or by/without lists) or durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or m.group() in PROMQL_WORDS or m.group().startswith("$"):
            continue
        if expr[m.start() - 1:m.start()] == "$":
            continue
        names.add(m.group())
    return names


def all_queries() -> list[tuple[str, str]]:
    out = []
    for name, text in grafana.render_all().items():
        body = json.loads(text)
        for panel in body["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{name}: {panel['title']}", target["expr"]))
        for var in body["templating"]["list"]:
            if var["type"] == "query":
                out.append((f"{name}: variable {var['name']}", var["definition"]))
    return out


def test_grafana_queries_name_only_catalogue_metrics() -> None:
    queries = all_queries()
    assert len(queries) > 60
    seen = set()
    for where, expr in queries:
        lv = re.fullmatch(r"label_values\((\w+), *(\w+)\)", expr)
        names = {lv.group(1)} if lv else metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        for n in names:
            assert CATALOGUE.lookup(n) is not None, f"{where}: {n} is not in the catalogue ({expr})"
            seen.add(n)
    expected = {"DCGM_FI_DEV_GPU_UTIL", "node_cpu_seconds_total", "slurm_cluster_nodes_powered_down",
                "nodeagent_slurm_up"}
    assert expected <= seen
    # the GPU dashboard filters by Slurm job with dcgm-exporter's label
    gpu = [e for w, e in queries if w.startswith("nodeagent-gpu-nodes.json")]
    assert any('hpc_job=~"$job"' in e for e in gpu)


def test_metric_name_reader() -> None:
    assert metric_names('sum by (instance) (rate(node_cpu_seconds_total{mode="idle"}[$__rate_interval]))') == {
        "node_cpu_seconds_total"}
    assert metric_names("100 * (a_b + c) / clamp_min(d - e, 1)") == {"a_b", "c", "d", "e"}
