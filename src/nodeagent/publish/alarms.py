"""`nodeagent alarms`: recommended CloudWatch alarms, built from the catalogue.

Each alarm watches a metric the configuration publishes (publish/published.py),
with the dimensions it is published with. Per-node metrics are watched through
their role-wide series (`cloudwatch.role_rollup`, dimension Role only), which
CloudWatch aggregates over the nodes: Maximum is the worst node, Sum adds the
nodes' datums up. So an alarm does not need to know instance ids and keeps
working when nodes are replaced.

| alarm | metric | fires when |
|---|---|---|
| head-cpu-idle-low | CPU_IDLE, Role=head | idle < 20 % for 2 x 5 min (the original system's example alarm) |
| nodes-down | NodesDown (+ NodesNotResponding) | a node stays down (or unresponsive) for 2 x 5 min |
| gpu-node-action-xid | GPU_NODE_ACTION, Role=compute | a GPU saw an XID that needs node action (48, 64, 74, 79, 95) |
| gpu-lost | GPU_LOST, Role=compute | a GPU expected on a node does not answer, 2 x 1 min |
| gpu-temperature | GPU_TEMP_MAX, Role=compute | the hottest GPU is above 85 C for 2 x 5 min |
| gpus-allocated-idle | GPU_ALLOCATED_IDLE, Role=compute | more than 8 GPUs allocated to jobs sit idle for 3 x 5 min |
| spool-backlog-<role> | SPOOL_OLDEST_AGE, Role=<role> | data waited > 15 min in a spool, 3 x 5 min (head: or no data) |

PutMetricAlarm creates or replaces an alarm of the same name, so applying
twice leaves the same set. An alarm whose metric the configuration does not
publish is not created; the command says why.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from nodeagent.catalogue import sinks as cat_sinks
from nodeagent.catalogue import slurm as cat_slurm
from nodeagent.catalogue import summaries as cat_sum
from nodeagent.publish.dashboards import add_common_arguments, aws_client, aws_error, load_settings
from nodeagent.publish.published import CwMetric, NotPublished, Published
from nodeagent.roles import DISPLAY_ORDER

MANAGED = "Managed by `nodeagent alarms`"


@dataclass(frozen=True)
class Thresholds:
    head_cpu_idle: float = 20.0  # %
    gpu_temperature: float = 85.0  # degrees C
    idle_gpus: float = 8.0  # GPUs allocated but idle, cluster-wide
    spool_age: float = 900.0  # seconds


@dataclass
class AlarmSet:
    alarms: list[dict[str, Any]] = field(default_factory=list)  # PutMetricAlarm parameters
    skipped: list[str] = field(default_factory=list)


def _dimensions(metric: CwMetric, values: dict[str, str]) -> list[dict[str, str]]:
    if set(values) != set(metric.labels):
        raise ValueError(f"{metric.name}: dimensions {sorted(values)} given, published with {sorted(metric.labels)}")
    return [{"Name": metric.dimension_for(label), "Value": values[label]} for label in metric.labels]


def _metric_stat(namespace: str, metric: CwMetric, values: dict[str, str], stat: str, period: int) -> dict[str, Any]:
    return {
        "Metric": {"Namespace": namespace, "MetricName": metric.name, "Dimensions": _dimensions(metric, values)},
        "Period": period,
        "Stat": stat,
    }


class AlarmBuilder:
    def __init__(self, published: Published, thresholds: Thresholds, sns_topic: str | None = None) -> None:
        self.published = published
        self.t = thresholds
        self.sns_topic = sns_topic
        self.out = AlarmSet()
        self.prefix = f"{published.cluster}-nodeagent-"
        # datums per node per minute: the role-wide Sum over a period counts each node's datums
        self.interval = max(1.0, float(published.settings.interval))

    def _base(self, key: str, description: str, evaluation: int, threshold: float, comparison: str,
              missing: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "AlarmName": self.prefix + key,
            "AlarmDescription": f"{description} {MANAGED} for cluster {self.published.cluster}.",
            "EvaluationPeriods": evaluation,
            "DatapointsToAlarm": evaluation,
            "Threshold": threshold,
            "ComparisonOperator": comparison,
            "TreatMissingData": missing,
            "ActionsEnabled": True,
        }
        if self.sns_topic:
            params["AlarmActions"] = [self.sns_topic]
            params["OKActions"] = [self.sns_topic]
        return params

    def single(self, key: str, description: str, metric: CwMetric, values: dict[str, str], *, stat: str,
               period: int, evaluation: int, threshold: float, comparison: str, missing: str = "missing") -> None:
        params = self._base(key, description, evaluation, threshold, comparison, missing)
        params.update(
            Namespace=self.published.namespace,
            MetricName=metric.name,
            Dimensions=_dimensions(metric, values),
            Statistic=stat,
            Period=period,
        )
        self.out.alarms.append(params)

    def math(self, key: str, description: str, expression: str, label: str,
             parts: dict[str, tuple[CwMetric, dict[str, str], str]], *, period: int, evaluation: int,
             threshold: float, comparison: str, missing: str = "missing") -> None:
        params = self._base(key, description, evaluation, threshold, comparison, missing)
        queries: list[dict[str, Any]] = [
            {"Id": ident, "MetricStat": _metric_stat(self.published.namespace, m, values, stat, period),
             "ReturnData": False}
            for ident, (m, values, stat) in parts.items()
        ]
        queries.append({"Id": "e1", "Expression": expression, "Label": label, "ReturnData": True})
        params["Metrics"] = queries
        self.out.alarms.append(params)

    def skip(self, key: str, why: str) -> None:
        self.out.skipped.append(f"{self.prefix}{key}: {why}")

    # ---- the recommended set ----------------------------------------------------------
    def build(self) -> AlarmSet:
        p = self.published
        for key, make in (
            ("head-cpu-idle-low", self.head_cpu),
            ("nodes-down", self.nodes_down),
            ("gpu-node-action-xid", self.gpu_node_action),
            ("gpu-lost", self.gpu_lost),
            ("gpu-temperature", self.gpu_temperature),
            ("gpus-allocated-idle", self.idle_gpus),
        ):
            try:
                make(key)
            except NotPublished as e:
                self.skip(key, str(e))
        for role in DISPLAY_ORDER:
            key = f"spool-backlog-{role}"
            if role not in p.settings.roles or not p.settings.enabled:
                continue  # this role does not publish: nothing to watch
            try:
                self.spool_backlog(key, role)
            except NotPublished as e:
                self.skip(key, str(e))
        return self.out

    def head_cpu(self, key: str) -> None:
        m = self.published.get(cat_sinks.HOST_CPU_IDLE, rollup=True)
        if "head" not in m.roles:
            raise NotPublished("CPU_IDLE is not published by the head role")
        self.single(key, f"Head node CPU idle below {self.t.head_cpu_idle:g} % (busy above "
                         f"{100 - self.t.head_cpu_idle:g} %) for 10 minutes.", m, {"role": "head"},
                    stat="Average", period=300, evaluation=2, threshold=self.t.head_cpu_idle,
                    comparison="LessThanThreshold")

    def nodes_down(self, key: str) -> None:
        down = self.published.get(cat_slurm.CLUSTER_NODES["down"])
        description = "Slurm nodes down for 10 minutes"
        if self.published.has(cat_slurm.CLUSTER_NODES["not_responding"]):
            not_resp = self.published.get(cat_slurm.CLUSTER_NODES["not_responding"])
            self.math(key, description + " or not responding.", "down + nresp", "down or not responding",
                      {"down": (down, {}, "Minimum"), "nresp": (not_resp, {}, "Minimum")},
                      period=300, evaluation=2, threshold=0, comparison="GreaterThanThreshold")
            return
        self.single(key, description + " (NodesNotResponding is not published).", down, {}, stat="Minimum",
                    period=300, evaluation=2, threshold=0, comparison="GreaterThanThreshold")

    def gpu_node_action(self, key: str) -> None:
        m = self.published.get(cat_sum.GPU_NODE_ACTION, rollup=True)
        self.single(key, "A GPU saw an XID error that needs node action (48, 64, 74, 79 or 95): drain the node "
                         "and reset the GPU or replace the instance.", m, {"role": "compute"},
                    stat="Maximum", period=60, evaluation=1, threshold=0, comparison="GreaterThanThreshold",
                    missing="notBreaching")

    def gpu_lost(self, key: str) -> None:
        m = self.published.get(cat_sum.GPU_LOST, rollup=True)
        self.single(key, "A GPU expected on a compute node does not answer (fallen off the bus, or NVML hangs).",
                    m, {"role": "compute"}, stat="Maximum", period=60, evaluation=2, threshold=0,
                    comparison="GreaterThanThreshold", missing="notBreaching")

    def gpu_temperature(self, key: str) -> None:
        m = self.published.get(cat_sum.GPU_TEMP_MAX, rollup=True)
        self.single(key, f"The hottest GPU of the cluster is above {self.t.gpu_temperature:g} C for 10 minutes.",
                    m, {"role": "compute"}, stat="Maximum", period=300, evaluation=2,
                    threshold=self.t.gpu_temperature, comparison="GreaterThanThreshold", missing="notBreaching")

    def idle_gpus(self, key: str) -> None:
        m = self.published.get(cat_sum.GPU_ALLOCATED_IDLE, rollup=True)
        period = 300
        # each node sends period / interval datums per period: scale the Sum back to GPUs
        factor = self.interval / period
        self.math(key, f"More than {self.t.idle_gpus:g} GPUs allocated to jobs stayed idle for 15 minutes.",
                  f"idle * {factor:.6g}", "GPUs allocated but idle",
                  {"idle": (m, {"role": "compute"}, "Sum")}, period=period, evaluation=3,
                  threshold=self.t.idle_gpus, comparison="GreaterThanThreshold", missing="notBreaching")

    def spool_backlog(self, key: str, role: str) -> None:
        m = self.published.get(cat_sum.SPOOL_OLDEST_AGE, rollup=True)
        if role not in m.roles:
            raise NotPublished(f"{m.name} is not published by the {role} role")
        # A cluster always has its head node: no datum at all from it means its agent does not
        # publish (or CloudWatch is unreachable from it). Login and compute nodes may not
        # exist (compute fleets scale to zero), so for them only a reported backlog alarms.
        missing = "breaching" if role == "head" else "notBreaching"
        self.single(key, f"nodeagent on a {role} node holds data older than {self.t.spool_age:g} s in its "
                         "CloudWatch spool" + (", or the head node publishes nothing" if role == "head" else "")
                    + ".", m, {"role": role}, stat="Maximum", period=300, evaluation=3,
                    threshold=self.t.spool_age, comparison="GreaterThanThreshold", missing=missing)


def build_alarms(published: Published, thresholds: Thresholds | None = None,
                 sns_topic: str | None = None) -> AlarmSet:
    return AlarmBuilder(published, thresholds or Thresholds(), sns_topic).build()


def put_alarms(client: Any, alarms: AlarmSet) -> None:
    for params in alarms.alarms:
        client.put_metric_alarm(**params)


# ---- command line ---------------------------------------------------------------------
def add_alarm_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--apply", action="store_true", help="create or update the alarms (PutMetricAlarm)")
    p.add_argument("--sns-topic", metavar="ARN", default=None, help="SNS topic notified on ALARM and OK")
    defaults = Thresholds()
    p.add_argument("--head-cpu-idle", type=float, default=defaults.head_cpu_idle, metavar="PERCENT",
                   help=f"head node CPU idle below this alarms (default {defaults.head_cpu_idle:g})")
    p.add_argument("--gpu-temperature", type=float, default=defaults.gpu_temperature, metavar="CELSIUS",
                   help=f"hottest GPU above this alarms (default {defaults.gpu_temperature:g})")
    p.add_argument("--idle-gpus", type=float, default=defaults.idle_gpus, metavar="N",
                   help=f"more GPUs allocated but idle than this alarms (default {defaults.idle_gpus:g})")
    p.add_argument("--spool-age", type=float, default=defaults.spool_age, metavar="SECONDS",
                   help=f"spooled data older than this alarms (default {defaults.spool_age:g})")


def alarms_main(args: argparse.Namespace) -> int:
    from nodeagent.settings import ConfigError

    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"nodeagent: {e}", file=sys.stderr)
        return 78
    if args.sns_topic is not None and not args.sns_topic.startswith("arn:"):
        print(f"nodeagent: --sns-topic {args.sns_topic!r} is not an ARN", file=sys.stderr)
        return 2
    published = Published(settings, args.cluster)
    thresholds = Thresholds(args.head_cpu_idle, args.gpu_temperature, args.idle_gpus, args.spool_age)
    alarms = build_alarms(published, thresholds, args.sns_topic)
    for line in alarms.skipped:
        print(f"not created: {line}", file=sys.stderr)
    if not args.apply:
        json.dump(alarms.alarms, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    try:
        client = aws_client("cloudwatch", args.region, args.endpoint_url or settings.endpoint_url)
        put_alarms(client, alarms)
    except Exception as e:
        message = aws_error(e)
        if message is None:
            raise
        print(f"nodeagent: AWS: {message}", file=sys.stderr)
        return 1
    for params in alarms.alarms:
        print(f"alarm {params['AlarmName']}")
    return 0
