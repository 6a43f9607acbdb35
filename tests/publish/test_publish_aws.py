"""Dashboards and alarms applied to a real moto_server and read back; the
CloudWatch sink's datums land where the dashboards look for them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
from publish_helpers import read_dashboard, write_config

from nodeagent.cli import main
from nodeagent.publish.alarms import Thresholds, build_alarms
from nodeagent.publish.dashboards import LogSources, build_dashboards, dashboard_names
from nodeagent.publish.published import Published
from nodeagent.sinks.settings import CloudWatchSettings

REGION = "us-east-1"
TOPIC = "arn:aws:sns:us-east-1:123456789012:hpc-alerts"
ALL_ROLES = ("head", "login", "compute")


def client(service: str, url: str):
    return boto3.session.Session().client(service, region_name=REGION, endpoint_url=url)


def test_dashboards_applied_and_read_back(moto: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = client("logs", moto)
    for name in ("/aws/parallelcluster/demo-202401010000", "/aws/parallelcluster/demo-other-202501010000"):
        logs.create_log_group(logGroupName=name)
        time.sleep(0.01)
    newest = "/aws/parallelcluster/demo-202402010000"
    logs.create_log_group(logGroupName=newest)
    cfg = write_config(tmp_path / "agent.yaml")
    out = tmp_path / "out"
    rc = main(["dashboard", "--cluster", "demo", "--region", REGION, "--apply", "--out", str(out),
               "--config", cfg, "--endpoint-url", moto])
    assert rc == 0
    printed = capsys.readouterr()
    assert f"log group: {newest}" in printed.out  # the newest of this cluster's groups, not demo-other's

    expected = build_dashboards(Published(CloudWatchSettings(roles=ALL_ROLES), "demo"), REGION, LogSources(newest))
    cw = client("cloudwatch", moto)
    listed = {d["DashboardName"] for d in cw.list_dashboards()["DashboardEntries"]}
    assert set(dashboard_names("demo")) <= listed
    for name, body in expected.bodies.items():
        stored = json.loads(cw.get_dashboard(DashboardName=name)["DashboardBody"])
        assert stored == body
        assert json.loads((out / f"{name}.json").read_text()) == body
    # applying again replaces, it does not add
    assert main(["dashboard", "--cluster", "demo", "--region", REGION, "--apply", "--log-group", newest,
                 "--config", cfg, "--endpoint-url", moto]) == 0
    assert len([d for d in cw.list_dashboards()["DashboardEntries"] if d["DashboardName"].startswith("demo-")]) == 2


def test_dashboard_without_apply_writes_json_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path / "agent.yaml", roles=("head",))
    assert main(["dashboard", "--cluster", "c1", "--region", "eu-west-1", "--config", cfg]) == 0
    files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert files == sorted(f"{n}.json" for n in dashboard_names("c1"))


def alarm_set(cw) -> dict[str, dict]:
    alarms = cw.describe_alarms(AlarmNamePrefix="demo-nodeagent-")["MetricAlarms"]
    return {a["AlarmName"]: a for a in alarms}


def test_alarms_applied_twice_are_the_same_set(moto: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "agent.yaml")
    argv = ["alarms", "--cluster", "demo", "--region", REGION, "--apply", "--sns-topic", TOPIC,
            "--config", cfg, "--endpoint-url", moto]
    assert main(argv) == 0
    cw = client("cloudwatch", moto)
    first = alarm_set(cw)
    assert main(argv) == 0
    second = alarm_set(cw)
    assert set(first) == set(second)
    assert len(cw.describe_alarms()["MetricAlarms"]) == len(first)

    published = Published(CloudWatchSettings(roles=ALL_ROLES), "demo")
    expected = build_alarms(published, Thresholds(), TOPIC)
    assert set(first) == {a["AlarmName"] for a in expected.alarms}
    index = {(m.name, m.dimension_set): m for m in published}
    for name, alarm in second.items():
        assert alarm["AlarmActions"] == [TOPIC], name
        if alarm.get("Metrics"):
            stats = [q["MetricStat"]["Metric"] for q in alarm["Metrics"] if "MetricStat" in q]
            assert [q["Id"] for q in alarm["Metrics"] if q.get("ReturnData")] == ["e1"]
        else:
            stats = [{"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"],
                      "Dimensions": alarm["Dimensions"]}]
        for metric in stats:
            assert metric["Namespace"] == "ParallelCluster/demo"
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            m = index.get((metric["MetricName"], frozenset(dims)))
            assert m is not None, f"{name}: {metric['MetricName']} {dims} is not published"
            if "Role" in dims:
                assert dims["Role"] in m.roles
    cpu = second["demo-nodeagent-head-cpu-idle-low"]  # the original system's example alarm
    assert (cpu["MetricName"], cpu["Statistic"], cpu["Period"], cpu["Threshold"], cpu["ComparisonOperator"],
            cpu["EvaluationPeriods"]) == ("CPU_IDLE", "Average", 300, 20.0, "LessThanThreshold", 2)
    assert {"demo-nodeagent-gpu-node-action-xid", "demo-nodeagent-gpu-lost", "demo-nodeagent-gpu-temperature",
            "demo-nodeagent-gpus-allocated-idle", "demo-nodeagent-nodes-down"} <= set(second)


def test_alarms_without_apply_print_the_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "agent.yaml", roles=("head", "login"))
    assert main(["alarms", "--cluster", "demo", "--region", REGION, "--config", cfg]) == 0
    printed = capsys.readouterr()
    names = {a["AlarmName"] for a in json.loads(printed.out)}
    assert "demo-nodeagent-head-cpu-idle-low" in names
    assert not any("gpu" in n for n in names)  # compute does not publish: no alarm that cannot fill
    assert "not created: demo-nodeagent-gpu-lost" in printed.err and "cloudwatch.roles" in printed.err
    assert main(["alarms", "--cluster", "demo", "--region", REGION, "--sns-topic", "not-an-arn"]) == 2


def test_idle_gpu_alarm_scales_the_sum_back_to_gpus() -> None:
    settings = CloudWatchSettings(roles=ALL_ROLES, interval=30)
    alarm = next(a for a in build_alarms(Published(settings, "demo")).alarms
                 if a["AlarmName"].endswith("gpus-allocated-idle"))
    # each node sends 10 datums per 300 s period: the Sum over nodes is divided by 10
    expr = next(q["Expression"] for q in alarm["Metrics"] if "Expression" in q)
    assert expr == "idle * 0.1"
    assert alarm["Threshold"] == Thresholds().idle_gpus


# ---- the sink sends what the dashboards show --------------------------------------------
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "p5"


def host_families(role: str) -> list:
    from nodeagent.config import parse_config
    from nodeagent.daemon import Agent

    cfg = parse_config(
        "paths:\n"
        f"  procfs: {FIXTURE / 'proc'}\n  sysfs: {FIXTURE / 'sys'}\n  rootfs: {FIXTURE / 'root'}\n"
        f"  debugfs: {FIXTURE / 'debug'}\n  textfile_dir: {FIXTURE / 'textfile'}\n",
        "test",
    )
    agent = Agent.build(cfg, role, with_sinks=False)
    try:
        return agent.groups["host"].get(max_age=0).families
    finally:
        agent.close()


def later(families: list, seconds: float) -> list:
    """The same families a little later: counters grown (CPU idle and user time, bytes)."""
    from nodeagent.model import MetricFamily

    out = []
    for fam in families:
        if fam.type == "counter":
            fam = MetricFamily(fam.name, fam.help, fam.type, fam.labelnames,
                               [(lv, v + seconds * (1 + i % 3)) for i, (lv, v) in enumerate(fam.samples)],
                               fam.value_format)
        out.append(fam)
    return out


def slurm_families() -> list:
    from nodeagent.catalogue import CATALOGUE

    out = []
    for spec in CATALOGUE:
        if spec.group != "slurm" or spec.is_pattern:
            continue
        fam = spec.family()
        if spec.labels == ("partition",):
            fam.add(("gpu",), 3)
            fam.add(("cpu",), 1)
        elif spec.labels == ("reason",):
            fam.add(("Resources",), 2)
            fam.add(("JobHeldUser",), 1)
        elif not spec.labels:
            fam.add((), 4)
        else:  # e.g. SckyzO's slurm_queue_pending{user,partition,reason}: CloudWatch sums the labels away
            fam.add(tuple(f"{label}-1" for label in spec.labels), 4)
        out.append(fam)
    return out


def gpu_families() -> list:
    from nodeagent.catalogue import gpu as g

    labels = g.gpu_labelnames()
    out = []
    for spec, value in ((g.GPU_UTIL, 50), (g.FB_USED, 1000), (g.FB_FREE, 80000), (g.FB_RESERVED, 500),
                        (g.GPU_TEMP, 55), (g.POWER_USAGE, 400.5)):
        fam = spec.family(labels=labels)
        for i in range(8):
            ident = {"gpu": str(i), "UUID": f"GPU-{i}", "pci_bus_id": f"0:{i}", "device": f"nvidia{i}",
                     "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node-1", "DCGM_FI_DRIVER_VERSION": "550"}
            fam.add(tuple(ident[n] for n in labels), value + i)
        out.append(fam)
    per_gpu = [(str(i), f"GPU-{i}", f"0:{i}", f"nvidia{i}", "NVIDIA H100 80GB HBM3", "node-1") for i in range(8)]
    for spec in (g.GPU_UP, g.GPU_HEALTHY):
        fam = spec.family()
        for lv in per_gpu:
            fam.add(lv, 1)
        out.append(fam)
    node_action = g.NODE_ACTION_XID.family()
    xid = g.XID_ERRORS_TOTAL.family()
    idle = g.ALLOCATED_IDLE.family()
    for lv in per_gpu:
        node_action.add(lv, 0)
        idle.add((*lv, "42"), 0)
    xid.add((*per_gpu[0], "app", "13"), 1)
    gpus = g.GPUS.family()
    for state in ("expected", "present", "up"):
        gpus.add((state,), 8)
    return [*out, node_action, xid, idle, gpus]


def test_the_sink_sends_every_metric_the_dashboards_and_alarms_use(moto: str, tmp_path: Path) -> None:
    from nodeagent.host import Host, Roots
    from nodeagent.sinks.cloudwatch import CloudWatchSink

    settings = CloudWatchSettings(roles=ALL_ROLES, cluster_name="demo", region=REGION, endpoint_url=moto,
                                  imds=False, spool_fsync=False, max_attempts=1,
                                  compress=False)  # moto_server 5.2 decompresses gzip JSON bodies twice
    host = Host(Roots(procfs=str(FIXTURE / "proc"), sysfs=str(FIXTURE / "sys"), rootfs=str(FIXTURE / "root")))
    inputs = {
        "head": host_families("head") + slurm_families(),
        "login": host_families("login"),
        "compute": host_families("compute") + gpu_families(),
    }
    t0 = time.time() - 120
    for role, families in inputs.items():
        sink = CloudWatchSink(settings, role, host=host, spool_dir=str(tmp_path / f"spool-{role}"),
                              cfnconfig_path=str(tmp_path / "no-cfnconfig"), hostname=f"{role}-1")
        try:
            sink.publish(families, t0)
            sink.publish(later(families, 60), t0 + 60)
            sink.flush(timeout=20)
            assert sink.spool.empty(), f"{role}: data left in the spool"
        finally:
            sink.close()

    cw = client("cloudwatch", moto)
    arrived: dict[tuple[str, frozenset[str]], set[tuple[tuple[str, str], ...]]] = {}
    for page in cw.get_paginator("list_metrics").paginate(Namespace="ParallelCluster/demo"):
        for metric in page["Metrics"]:
            dims = tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]))
            arrived.setdefault((metric["MetricName"], frozenset(n for n, _ in dims)), set()).add(dims)

    published = Published(settings, "demo")
    dashboards = build_dashboards(published, REGION, LogSources("/aws/parallelcluster/demo-202401010000"))
    needed: list[tuple[str, dict[str, str | None]]] = []
    for body in dashboards.bodies.values():
        needed += [(ref.name, ref.dims) for ref in read_dashboard(body).refs]
    for alarm in build_alarms(published).alarms:
        metrics = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q] or [alarm]
        needed += [(mm["MetricName"], {d["Name"]: d["Value"] for d in mm["Dimensions"]}) for mm in metrics]
    missing = set()
    for name, dims in needed:
        found = arrived.get((name, frozenset(dims)), set())
        wanted = {k: v for k, v in dims.items() if v is not None}
        if not any(wanted.items() <= dict(d).items() for d in found):
            missing.add((name, tuple(sorted(wanted.items()))))
    assert not missing, f"dashboard or alarm metrics the sink does not send: {sorted(missing)}"
    assert len(arrived) > 40


def test_spool_backlog_alarms_per_role() -> None:
    alarms = {a["AlarmName"]: a for a in build_alarms(Published(CloudWatchSettings(roles=ALL_ROLES), "demo")).alarms}
    head = alarms["demo-nodeagent-spool-backlog-head"]
    assert (head["MetricName"], head["Dimensions"], head["TreatMissingData"]) == (
        "SPOOL_OLDEST_AGE", [{"Name": "Role", "Value": "head"}], "breaching")
    # compute fleets scale to zero and login nodes are optional: silence is not an alarm there
    assert alarms["demo-nodeagent-spool-backlog-compute"]["TreatMissingData"] == "notBreaching"
    assert alarms["demo-nodeagent-spool-backlog-login"]["TreatMissingData"] == "notBreaching"
    head_only = build_alarms(Published(CloudWatchSettings(roles=("head",)), "demo")).alarms
    assert [a["AlarmName"] for a in head_only if "spool" in a["AlarmName"]] == ["demo-nodeagent-spool-backlog-head"]


def test_missing_credentials_are_one_line_not_a_traceback(moto_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cfg = write_config(tmp_path / "agent.yaml")
    for command in ("dashboard", "alarms"):
        argv = [command, "--cluster", "demo", "--region", REGION, "--apply", "--config", cfg,
                "--endpoint-url", moto_url]
        if command == "dashboard":
            argv += ["--log-group", "/aws/parallelcluster/demo-202401010000"]
        assert main(argv) == 1
        assert "nodeagent: AWS: NoCredentialsError" in capsys.readouterr().err
