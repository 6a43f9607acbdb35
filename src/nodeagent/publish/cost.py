"""`nodeagent cost`: what the current configuration costs in CloudWatch.

CloudWatch bills each custom metric (a name plus one set of dimension values)
per month, and PutMetricData per request. From the catalogue view
(publish/published.py) and a cluster's shape this counts:

* custom metrics: per-node series once per node of the role (InstanceId),
  role-wide series (the rollup, Role only) once per role, cluster-wide Slurm
  series once, per-partition series once per partition, DISK_USED_PERCENT once
  per configured mount point;
* datums per publish on each node: one per series the node sends, role-wide
  copies included;
* requests per publish: the datums packed exactly as the sink packs them
  (sinks/mapping.pack: 1,000 datums and 1 MB per request at most);
* requests per month: nodes x requests per publish x publishes per month
  (730 hours / `cloudwatch.interval`).

The dollar figures use CloudWatch's us-east-1 list prices (custom metrics
$0.30 / month for the first 10,000, $0.10 up to 250,000, $0.05 up to
1,000,000, then $0.02; PutMetricData $0.01 per 1,000 requests); prices differ
by region and change: check the CloudWatch pricing page.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from nodeagent.catalogue import summaries as cat_sum
from nodeagent.publish.published import ROLE_ORDER, CwMetric, Published
from nodeagent.sinks.mapping import Datum, pack

HOURS_PER_MONTH = 730
METRIC_TIERS = ((10_000, 0.30), (240_000, 0.10), (750_000, 0.05), (math.inf, 0.02))
PRICE_PER_1000_REQUESTS = 0.01
# values for sizing the synthetic datums (longer than typical, so the request count is an upper bound)
_EXAMPLE_VALUES = {"role": "compute", "instance_id": "i-0123456789abcdef0", "mountpoint": "/fsx/scratch"}


@dataclass(frozen=True)
class Shape:
    nodes: int  # compute nodes
    gpus_per_node: int
    head_nodes: int = 1
    login_nodes: int = 0
    partitions: int = 1
    pending_reasons: int = 5  # distinct pending reasons, for series with a reason dimension

    def nodes_of(self, role: str) -> int:
        return {"compute": self.nodes, "head": self.head_nodes, "login": self.login_nodes}[role]


@dataclass
class RoleCost:
    role: str
    nodes: int
    series_per_node: int  # datums each node sends per publish
    requests_per_publish: int  # per node
    requests_per_month: float  # all nodes of the role


@dataclass
class Estimate:
    interval: float
    publishes_per_month: float
    roles: list[RoleCost] = field(default_factory=list)
    custom_metrics: int = 0
    requests_per_month: float = 0.0
    metrics_usd: float = 0.0
    requests_usd: float = 0.0
    per_gpu_alternative: int = 0  # GPU summary metrics if they were published per GPU instead
    assumptions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "interval_seconds": self.interval,
            "publishes_per_month": self.publishes_per_month,
            "custom_metrics": self.custom_metrics,
            "put_metric_data_requests_per_month": self.requests_per_month,
            "usd_per_month": {"metrics": round(self.metrics_usd, 2), "requests": round(self.requests_usd, 2)},
            "roles": [vars(r) for r in self.roles],
            "per_gpu_alternative_custom_metrics": self.per_gpu_alternative,
            "assumptions": self.assumptions,
        }


def metrics_price(count: int) -> float:
    total, left = 0.0, float(count)
    for size, price in METRIC_TIERS:
        used = min(left, size)
        total += used * price
        left -= used
        if left <= 0:
            break
    return total


class _Cardinality:
    def __init__(self, published: Published, shape: Shape) -> None:
        self.values = {
            "partition": shape.partitions,
            "mountpoint": max(1, len(published.settings.disk_mountpoints)),
            "gpu": shape.gpus_per_node,
            "UUID": shape.gpus_per_node,
            "reason": shape.pending_reasons,
        }
        self.assumed: set[str] = set()

    def of(self, label: str) -> int:
        if label in ("role", "instance_id"):
            return 1
        if label not in self.values:
            self.assumed.add(label)
            return 1
        return self.values[label]

    def series(self, metric: CwMetric) -> int:
        return math.prod(self.of(label) for label in metric.labels)


def _example_datums(metric: CwMetric, count: int) -> list[Datum]:
    dims = tuple(
        (metric.dimension_for(label), _EXAMPLE_VALUES.get(label, f"{label}-value-000"))
        for label in metric.labels
    )
    return [Datum(metric.name, dims, 123.456789, metric.unit, metric.storage_resolution, 0.0)] * count


def estimate(published: Published, shape: Shape) -> Estimate:
    s = published.settings
    interval = float(s.interval)
    est = Estimate(interval, HOURS_PER_MONTH * 3600 / interval)
    card = _Cardinality(published, shape)
    for role in ROLE_ORDER:
        nodes = shape.nodes_of(role)
        mine = [m for m in published if role in m.roles]
        if not mine or nodes <= 0:
            continue
        datums: list[Datum] = []
        for m in mine:
            datums += _example_datums(m, card.series(m))
        requests = len(pack(datums, published.namespace, s.max_datums_per_request, s.max_request_bytes))
        est.roles.append(
            RoleCost(role, nodes, len(datums), requests, nodes * requests * est.publishes_per_month)
        )
    # distinct metrics: a series with InstanceId exists once per node; one with Role once per role
    for m in published:
        for role in m.roles if "role" in m.labels else m.roles[:1]:
            nodes = shape.nodes_of(role)
            if nodes <= 0:
                continue
            est.custom_metrics += card.series(m) * (nodes if "instance_id" in m.labels else 1)
    est.requests_per_month = sum(r.requests_per_month for r in est.roles)
    est.metrics_usd = metrics_price(est.custom_metrics)
    est.requests_usd = est.requests_per_month / 1000 * PRICE_PER_1000_REQUESTS
    if any(published.has(spec) for spec in cat_sum.GPU_SUMMARY_SPECS):
        est.per_gpu_alternative = len(cat_sum.GPU_SUMMARY_SPECS) * shape.nodes * shape.gpus_per_node
    est.assumptions = [f"one value assumed for dimension label {label!r}" for label in sorted(card.assumed)]
    return est


def render(est: Estimate, published: Published, shape: Shape) -> str:
    s = published.settings
    lines = [
        f"namespace {published.namespace}; publishing every {est.interval:g} s "
        f"({est.publishes_per_month:,.0f} publishes per node per month); CloudWatch sink in: "
        f"{', '.join(s.roles) if s.enabled else 'no role (disabled)'}",
        "",
        f"{'role':<8} {'nodes':>6} {'datums/publish/node':>20} {'requests/publish/node':>22} {'requests/month':>15}",
    ]
    for r in est.roles:
        lines.append(f"{r.role:<8} {r.nodes:>6} {r.series_per_node:>20} {r.requests_per_publish:>22} "
                     f"{r.requests_per_month:>15,.0f}")
    lines += [
        "",
        f"custom metrics:                  {est.custom_metrics:,}",
        f"PutMetricData requests / month:  {est.requests_per_month:,.0f}",
        f"estimate (us-east-1 list prices): ${est.metrics_usd:,.2f} metrics + ${est.requests_usd:,.2f} requests "
        f"= ${est.metrics_usd + est.requests_usd:,.2f} per month",
    ]
    if est.per_gpu_alternative:
        lines.append(f"(the GPU summary is per node: publishing its {len(cat_sum.GPU_SUMMARY_SPECS)} metrics per GPU "
                     f"would take {est.per_gpu_alternative:,} custom metrics for {shape.nodes} x "
                     f"{shape.gpus_per_node} GPUs)")
    elif "compute" not in s.roles:
        lines.append("compute nodes publish nothing to CloudWatch (add compute to cloudwatch.roles for the "
                     "per-node GPU and host summaries)")
    lines += [f"assumption: {a}" for a in est.assumptions]
    return "\n".join(lines)


# ---- command line ---------------------------------------------------------------------
def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_cost_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=_non_negative, required=True, help="compute nodes")
    p.add_argument("--gpus-per-node", type=_non_negative, required=True, help="GPUs per compute node")
    p.add_argument("--head-nodes", type=_non_negative, default=1, help="head nodes (default 1)")
    p.add_argument("--login-nodes", type=_non_negative, default=0, help="login nodes (default 0)")
    p.add_argument("--partitions", type=_non_negative, default=1, help="Slurm partitions (default 1)")
    p.add_argument("--cluster", default="CLUSTER", help="cluster name, for the namespace (default CLUSTER)")
    p.add_argument("--config", metavar="PATH", default=None,
                   help="agent config (default /etc/nodeagent/config.yaml; absent = defaults)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cost_main(args: argparse.Namespace) -> int:
    from nodeagent.publish.dashboards import load_settings
    from nodeagent.settings import ConfigError

    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"nodeagent: {e}", file=sys.stderr)
        return 78
    published = Published(settings, args.cluster)
    shape = Shape(args.nodes, args.gpus_per_node, args.head_nodes, args.login_nodes, args.partitions)
    est = estimate(published, shape)
    if args.json:
        json.dump(est.as_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(render(est, published, shape))
    return 0
