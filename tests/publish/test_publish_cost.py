"""`nodeagent cost`: counts checked by hand on a small catalogue, and the CLI."""

from __future__ import annotations

import json

import pytest

from nodeagent.catalogue.spec import Catalogue, CloudWatchSpec, MetricSpec
from nodeagent.cli import main
from nodeagent.publish.cost import Shape, estimate, metrics_price
from nodeagent.publish.published import Published
from nodeagent.sinks.settings import CloudWatchSettings

ROLES = ("head", "login", "compute")


def small_catalogue() -> Catalogue:
    c = Catalogue()
    node = ("role", "instance_id")
    c.add(MetricSpec("a_per_node", "gauge", "", "x", node, group="agent",
                     cloudwatch=CloudWatchSpec("A", dimensions=node, roles=("compute", "head"))))
    c.add(MetricSpec("b_cluster", "gauge", "", "x", (), group="slurm",
                     cloudwatch=CloudWatchSpec("B", roles=("head",))))
    c.add(MetricSpec("c_partition", "gauge", "", "x", ("partition",), group="slurm",
                     cloudwatch=CloudWatchSpec("C", dimensions=("partition",), roles=("head",))))
    disk = (*node, "mountpoint")
    c.add(MetricSpec("d_disk", "gauge", "", "x", disk, group="agent",
                     cloudwatch=CloudWatchSpec("D", dimensions=disk, roles=("head", "login"))))
    c.add(MetricSpec("e_not_published", "gauge", "", "x", ()))
    return c


SETTINGS = CloudWatchSettings(roles=ROLES, disk_mountpoints=("/", "/fsx"), interval=60)
SHAPE = Shape(nodes=3, gpus_per_node=8, head_nodes=1, login_nodes=2, partitions=4)


def test_small_case_by_hand() -> None:
    est = estimate(Published(SETTINGS, "demo", small_catalogue()), SHAPE)
    # custom metrics:
    #   A: per instance head 1 + compute 3, role-wide head 1 + compute 1    = 6
    #   B: once                                                              = 1
    #   C: once per partition                                                = 4
    #   D: 2 mount points x (per instance head 1 + login 2, role-wide 2)     = 10
    assert est.custom_metrics == 21
    per_node = {r.role: (r.nodes, r.series_per_node, r.requests_per_publish) for r in est.roles}
    # datums per publish: head A 2 + B 1 + C 4 + D 4 = 11; login D 4; compute A 2
    assert per_node == {"head": (1, 11, 1), "login": (2, 4, 1), "compute": (3, 2, 1)}
    assert est.publishes_per_month == 730 * 3600 / 60 == 43_800
    assert est.requests_per_month == (1 + 2 + 3) * 43_800
    assert est.metrics_usd == pytest.approx(21 * 0.30)
    assert est.requests_usd == pytest.approx(262_800 / 1000 * 0.01)


def test_requests_follow_the_sinks_packing() -> None:
    settings = CloudWatchSettings(roles=ROLES, disk_mountpoints=("/", "/fsx"), interval=30, max_datums_per_request=5)
    est = estimate(Published(settings, "demo", small_catalogue()), SHAPE)
    # head 11 datums -> 3 requests of at most 5; login 4 -> 1; compute 2 -> 1; twice as many publishes
    assert [(r.role, r.requests_per_publish) for r in est.roles] == [("head", 3), ("login", 1), ("compute", 1)]
    assert est.requests_per_month == (1 * 3 + 2 * 1 + 3 * 1) * 87_600


def test_roles_without_the_sink_cost_nothing() -> None:
    settings = CloudWatchSettings(roles=("head",), disk_mountpoints=("/", "/fsx"))
    est = estimate(Published(settings, "demo", small_catalogue()), SHAPE)
    # head only: A 1 + 1, B 1, C 4, D 2 + 2
    assert est.custom_metrics == 11
    assert [r.role for r in est.roles] == ["head"]
    disabled = estimate(Published(CloudWatchSettings(enabled=False), "demo", small_catalogue()), SHAPE)
    assert disabled.custom_metrics == 0 and disabled.requests_per_month == 0


def test_metric_price_tiers() -> None:
    assert metrics_price(10_000) == pytest.approx(3000)
    assert metrics_price(10_001) == pytest.approx(3000.10)
    assert metrics_price(250_000) == pytest.approx(3000 + 24_000)


def test_gpu_count_does_not_change_the_per_node_summary(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cloudwatch:\n  roles: [head, login, compute]\n")
    results = []
    for gpus in (1, 8):
        assert main(["cost", "--nodes", "100", "--gpus-per-node", str(gpus), "--config", str(cfg), "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["custom_metrics"] == results[1]["custom_metrics"] > 0
    assert results[1]["per_gpu_alternative_custom_metrics"] == 8 * results[0]["per_gpu_alternative_custom_metrics"]
    compute = next(r for r in results[0]["roles"] if r["role"] == "compute")
    assert compute["requests_per_month"] == 100 * compute["requests_per_publish"] * 43_800
    assert main(["cost", "--nodes", "2", "--gpus-per-node", "8", "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "custom metrics:" in text and "PutMetricData requests / month:" in text
