"""The Prometheus alerting rules shipped with the Grafana dashboards
(config/prometheus/nodeagent-alerts.yaml): valid for promtool, naming only
metrics nodeagent serves (in both slurm.naming modes), and firing when they
should (`promtool test rules` on made-up series)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue import slurm as cat

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "nodeagent-alerts.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    return {m for m in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", text) if "_" in m or m == "up"}


@needs_promtool
def test_promtool_check_rules() -> None:
    out = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_rules_name_served_metrics_of_both_namings() -> None:
    seen = set()
    for rule in rules():
        for name in names(str(rule["expr"])):
            seen.add(name)
            if name == "up":  # Prometheus' own
                continue
            spec = CATALOGUE.lookup(name)
            assert spec is not None, (rule["alert"], name)
            # the same labels whatever slurm.naming says
            assert name not in cat.VPENSO_LABELS and name not in cat.SCKYZO_ONLY, (rule["alert"], name)
    assert {cat.UP.name, cat.CLUSTER_NODES["down"].name, cat.CLUSTER_NODES["drain"].name} <= seen
    alerts = {str(r["alert"]) for r in rules()}
    assert {"SlurmDown", "SlurmNodesDown", "SlurmNodesDrained", "NodeagentDown"} <= alerts


UNIT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'nodeagent_slurm_up{{command="sinfo", instance="head:9341"}}'
        values: '1 1 0 0 0 0 0 0 0 0'
      - series: 'nodeagent_slurm_up{{command="squeue", instance="head:9341"}}'
        values: '1 1 0 0 0 0 0 0 0 0'
      - series: 'slurm_cluster_nodes_down{{instance="head:9341"}}'
        values: '0 2 2 2 2 2 2 2 2 2 2 2 2 2'
      - series: 'up{{job="nodeagent-slurm", instance="head:9341"}}'
        values: '1 1 1 1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 4m
        alertname: SlurmDown
        exp_alerts: []
      - eval_time: 8m
        alertname: SlurmDown
        exp_alerts:
          - exp_labels: {{severity: critical, instance: "head:9341"}}
            exp_annotations:
              summary: "Slurm does not answer nodeagent on head:9341"
              description: "{down}"
      - eval_time: 12m
        alertname: SlurmNodesDown
        exp_alerts:
          - exp_labels: {{severity: warning, instance: "head:9341"}}
            exp_annotations:
              summary: "2 Slurm nodes down on head:9341"
              description: "{nodes_down}"
      - eval_time: 9m
        alertname: NodeagentDown
        exp_alerts: []
"""


@needs_promtool
def test_alerts_fire(tmp_path: Path) -> None:
    tests = tmp_path / "alerts_test.yaml"
    text = {str(r["alert"]): str(r["annotations"]["description"]).replace('"', '\\"')  # type: ignore[index]
            for r in rules() if "description" in r["annotations"]}  # type: ignore[operator]  # fmt: skip
    tests.write_text(UNIT_TESTS.format(rules=RULES, down=text["SlurmDown"], nodes_down=text["SlurmNodesDown"]))
    out = subprocess.run([str(PROMTOOL), "test", "rules", str(tests)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
