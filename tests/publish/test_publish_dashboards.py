"""CloudWatch dashboards: every metric a widget names is one the catalogue says
a role publishes, with the same dimensions (read back from the JSON, not from
the builder's own bookkeeping)."""

from __future__ import annotations

import json

import pytest
from publish_helpers import read_dashboard

from nodeagent.catalogue import summaries as cat_sum
from nodeagent.publish.dashboards import LogSources, build_dashboards, dashboard_names
from nodeagent.publish.published import Published
from nodeagent.sinks.settings import CloudWatchSettings

GROUP = "/aws/parallelcluster/demo-202401311405"
ALL_ROLES = ("head", "login", "compute")
CONFIGS = {
    "default": CloudWatchSettings(),
    "with-compute": CloudWatchSettings(roles=ALL_ROLES),
    "no-rollup": CloudWatchSettings(roles=ALL_ROLES, role_rollup=False),
    "namespace": CloudWatchSettings(roles=ALL_ROLES, namespace="Custom/GPU-cluster"),
    "head-only": CloudWatchSettings(roles=("head",)),
}


def published_index(p: Published) -> dict[tuple[str, str, frozenset[str]], tuple[str, ...]]:
    return {(p.namespace, m.name, m.dimension_set): m.roles for m in p}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_widget_metric_is_published_with_its_dimensions(config: str) -> None:
    p = Published(CONFIGS[config], "demo")
    index = published_index(p)
    dashboards = build_dashboards(p, "us-east-1", LogSources(GROUP))
    refs = 0
    for name, body in dashboards.bodies.items():
        read = read_dashboard(json.loads(json.dumps(body)))
        assert read.problems == [], name
        for ref in read.refs:
            refs += 1
            assert ref.key in index, f"{name}: {ref.widget}: {ref.name} {sorted(ref.dims)} is not published"
            role = ref.dims.get("Role")
            if role is not None:
                assert role in index[ref.key], f"{ref.widget}: {ref.name} is not published by role {role}"
            for dim, value in ref.dims.items():
                if ref.kind == "metric":
                    assert value, f"{ref.widget}: {ref.name} has no value for {dim}"
    assert refs > 20


def test_dashboards_have_the_widgets_of_the_issue_when_compute_publishes() -> None:
    p = Published(CONFIGS["with-compute"], "demo")
    dashboards = build_dashboards(p, "us-east-1", LogSources(GROUP))
    basic, advanced = dashboard_names("demo")
    titles = {n: [w["properties"].get("title", "") for w in b["widgets"]] for n, b in dashboards.bodies.items()}
    names = {n: {r.name for r in read_dashboard(b).refs} for n, b in dashboards.bodies.items()}
    for role in ("Head node", "Login nodes", "Compute nodes"):
        assert {f"{role}: CPU used %", f"{role}: memory used %", f"{role}: disk used %"} <= set(titles[basic])
    assert {"NETWORK_RX", "NETWORK_TX", "LUSTRE_READ", "LUSTRE_WRITE"} <= names[basic]
    assert {"GPU_UTIL_MEAN", "GPU_MEMORY_USED_PERCENT", "GPU_TEMP_MAX", "GPU_POWER"} <= names[basic]
    assert {"NodesTotal", "NodesIdle", "NodesAllocated", "NodesDown", "NodesPoweredDown", "JobsRunning",
            "JobsPending", "JobsTotal", "GPU_XID_ERRORS", "GPU_NODE_ACTION", "GPU_LOST",
            "GPU_ALLOCATED_IDLE", "SPOOL_OLDEST_AGE"} <= names[advanced]
    # node utilisation is metric math over the node counts
    util = next(w for w in dashboards.bodies[advanced]["widgets"]
                if w["properties"].get("title") == "Node utilisation, %")
    exprs = [line[0]["expression"] for line in util["properties"]["metrics"] if isinstance(line[0], dict)]
    assert any("alloc + mix" in e and "total - down" in e for e in exprs)
    # Logs Insights widgets read the cluster's log group, each its own stream
    queries = [w["properties"]["query"] for b in dashboards.bodies.values() for w in b["widgets"]
               if w["type"] == "log"]
    assert queries and all(q.startswith(f"SOURCE '{GROUP}'") for q in queries)
    for stream in ("slurmctld", "slurm_resume", "slurm_suspend", "clustermgtd", "nv-hostengine"):
        assert any(f"/[.]{stream}$/" in q for q in queries), stream
    assert any("WEXITSTATUS 0" in q for q in queries) and any("WTERMSIG" in q for q in queries)


def test_every_widget_is_shown_when_everything_is_published() -> None:
    p = Published(CONFIGS["with-compute"], "demo")
    dashboards = build_dashboards(p, "us-east-1", LogSources(GROUP))
    assert dashboards.skipped == []
    _, advanced = dashboard_names("demo")
    titles = {w["properties"].get("title") for w in dashboards.bodies[advanced]["widgets"]}
    assert any(t and "pending" in t.lower() and "reason" in t.lower() for t in titles), titles


def test_default_config_leaves_gpu_widgets_out_and_says_why() -> None:
    p = Published(CONFIGS["default"], "demo")
    dashboards = build_dashboards(p, "us-east-1", LogSources(None))
    names = {r.name for b in dashboards.bodies.values() for r in read_dashboard(b).refs}
    assert not any(n.startswith("GPU_") for n in names)
    gpu_lines = [s for s in dashboards.skipped if "GPU" in s]
    assert gpu_lines and all("cloudwatch.roles" in s for s in gpu_lines)
    # without a log group there is no Logs Insights widget, and the dashboard says so
    assert not any(w["type"] == "log" for b in dashboards.bodies.values() for w in b["widgets"])
    assert any("--log-group" in s for s in dashboards.skipped)


def test_search_schema_lists_exactly_the_published_dimensions() -> None:
    p = Published(CONFIGS["with-compute"], "demo")
    body = build_dashboards(p, "us-east-1", LogSources(GROUP)).bodies[dashboard_names("demo")[0]]
    searches = [r for r in read_dashboard(body).refs if r.kind == "search" and r.name == "GPU_UTIL_MEAN"]
    assert searches and all(set(r.dims) == {"InstanceId", "Role"} for r in searches)
    assert all(r.dims["Role"] == "compute" for r in searches)
    assert p.get(cat_sum.GPU_UTIL_MEAN).dimensions == ("Role", "InstanceId")


def test_widgets_stay_within_the_grid() -> None:
    p = Published(CONFIGS["with-compute"], "demo")
    for body in build_dashboards(p, "eu-west-1", LogSources(GROUP)).bodies.values():
        cells: set[tuple[int, int]] = set()
        for w in body["widgets"]:
            assert w["x"] >= 0 and w["x"] + w["width"] <= 24
            for x in range(w["x"], w["x"] + w["width"]):
                for y in range(w["y"], w["y"] + w["height"]):
                    assert (x, y) not in cells, f"widgets overlap at {x},{y}"
                    cells.add((x, y))
            if w["type"] in ("metric", "log"):
                assert w["properties"]["region"] == "eu-west-1"


def test_hostile_log_group_is_refused() -> None:
    p = Published(CONFIGS["with-compute"], "demo")
    with pytest.raises(ValueError):
        build_dashboards(p, "us-east-1", LogSources("/aws/x' | delete"))
    with pytest.raises(ValueError):
        build_dashboards(p, "us-east-1", LogSources(GROUP, dcgm_stream="a/b"))


def test_the_reader_catches_a_wrong_dimension_and_an_undefined_id() -> None:
    p = Published(CONFIGS["with-compute"], "demo")
    index = published_index(p)
    body = {"widgets": [{"type": "metric", "properties": {"title": "bad", "metrics": [
        ["ParallelCluster/demo", "CPU_IDLE", "InstanceId", "i-1"],
        ["ParallelCluster/demo", "CPU_IDLE", "Role", "head", "InstanceId", "i-1", {"id": "a"}],
        [{"expression": "a + b", "id": "e"}],
        [{"expression": "SEARCH('{\"ParallelCluster/demo\",InstanceId} MetricName=\"GPU_LOST\"', 'Maximum', 60)"}],
    ]}}]}
    read = read_dashboard(body)
    assert read.problems == ["bad: expression 'a + b' uses 'b', which no line defines"]
    keys = [r.key in index for r in read.refs]
    assert keys == [False, True, False]
