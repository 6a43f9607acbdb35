"""`nodeagent dashboard`: the cluster's CloudWatch dashboards, from the catalogue.

Two dashboards, the original system's two scripts improved:

* basic (`<cluster>-nodeagent-basic`): CPU, memory and disk per node and role;
  network and FSx for Lustre throughput; GPU utilisation, memory, temperature
  and power (from what compute nodes publish); Logs Insights widgets over the
  Slurm controller, power up/down (resume/suspend), clustermgtd and DCGM logs.
* advanced (`<cluster>-nodeagent-advanced`): Slurm nodes by state with
  ParallelCluster's powered-down cloud nodes apart, jobs by state, node
  utilisation as metric math, per-partition queues, pending reasons, jobs
  completed and failed from the controller's log, GPU health (XID, lost
  GPUs) and GPUs allocated to jobs but idle.

Every metric line is built from `Published` (publish/published.py): what the
configuration's roles send to CloudWatch, with the same dimensions. A widget
whose metric is not published is left out and listed in a text widget and in
the command's output, so a dashboard never shows a graph that cannot fill.

Logs: ParallelCluster creates one log group per cluster,
`/aws/parallelcluster/<cluster>-<timestamp>` (e.g.
`/aws/parallelcluster/mycluster-202401311405`), with one stream per node and
log, `<hostname>.<instance-id>.<log>`: slurmctld, slurmd, slurm_resume,
slurm_suspend, clustermgtd, computemgtd, ... The DCGM host engine's log is not
shipped by ParallelCluster; add it to the CloudWatch agent (append-config) with
a stream name ending in `nv-hostengine`, or name its group and stream here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent.catalogue import sinks as cat_sinks
from nodeagent.catalogue import slurm as cat_slurm
from nodeagent.catalogue import summaries as cat_sum
from nodeagent.catalogue.spec import MetricSpec
from nodeagent.publish.published import CwMetric, NotPublished, Published
from nodeagent.publish.widgets import Expr, Layout, Line, Metric, Search
from nodeagent.roles import ROLE_TABLE
from nodeagent.sinks.settings import CloudWatchSettings

PC_LOG_GROUP_PREFIX = "/aws/parallelcluster/"
PER_NODE_LABEL = "${PROP('Dim.InstanceId')}"


@dataclass(frozen=True)
class LogSources:
    """Where the Logs Insights widgets read."""

    # the cluster's log group, /aws/parallelcluster/<cluster>-<timestamp>
    cluster_group: str | None = None
    # the group holding the DCGM host engine log (default: the cluster's group)
    dcgm_group: str | None = None
    # the end of the DCGM log's stream names
    dcgm_stream: str = "nv-hostengine"

    @property
    def dcgm(self) -> str | None:
        return self.dcgm_group or self.cluster_group


@dataclass
class DashboardSet:
    cluster: str
    region: str
    namespace: str
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "<dashboard>: <widget>: <why>"


def dashboard_names(cluster: str) -> tuple[str, str]:
    return f"{cluster}-nodeagent-basic", f"{cluster}-nodeagent-advanced"


def _stream_filter(stream: str) -> str:
    if not stream.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"log stream suffix {stream!r}: letters, digits, - and _ only")
    return f"filter @logStream like /[.]{stream}$/"


def _source(group: str) -> str:
    if "'" in group or not group.isprintable():
        raise ValueError(f"log group name {group!r} is not valid")
    return f"SOURCE '{group}'"


# Logs Insights queries (Slurm 22.05+ slurmctld log lines)
Q_SLURMCTLD_ERRORS = (
    "{source} | {stream} | filter @message like /(?i)error|fatal/ "
    "| fields @timestamp, @logStream, @message | sort @timestamp desc | limit 100"
)
Q_SLURM_FAILURES_5M = (
    "{source} | {stream} | filter @message like /FAILED|ERROR|error:/ | stats count(*) as errors by bin(5m)"
)
Q_RESUME = (
    "{source} | {stream} | fields @timestamp, @message "
    "| filter @message like /(?i)error|warning|launch|resum/ | sort @timestamp desc | limit 100"
)
Q_SUSPEND = "{source} | {stream} | fields @timestamp, @message | sort @timestamp desc | limit 100"
Q_CLUSTERMGTD = (
    "{source} | {stream} | filter @message like /WARNING|ERROR|CRITICAL/ "
    "| fields @timestamp, @message | sort @timestamp desc | limit 100"
)
Q_DCGM = (
    "{source} | {stream} | filter @message like /(?i)error|xid|warn/ "
    "| fields @timestamp, @logStream, @message | sort @timestamp desc | limit 100"
)
# `_job_complete: JobId=N WEXITSTATUS S` (exit code) or `... WTERMSIG S` (killed by a signal)
Q_JOBS_COMPLETED = (
    "{source} | {stream} | filter @message like /_job_complete: JobId=[0-9]+ WEXITSTATUS 0$/ "
    "| stats count(*) as completed by bin(5m)"
)
Q_JOBS_FAILED_5M = (
    "{source} | {stream} "
    "| filter @message like /_job_complete: JobId=[0-9]+ (WEXITSTATUS [1-9][0-9]*|WTERMSIG [0-9]+)$/ "
    "| stats count(*) as failed by bin(5m)"
)
Q_JOBS_FAILED = (
    "{source} | {stream} "
    "| filter @message like /_job_complete: JobId=[0-9]+ (WEXITSTATUS [1-9][0-9]*|WTERMSIG [0-9]+)$/ "
    "| fields @timestamp, @message | sort @timestamp desc | limit 100"
)


class _Builder:
    """One dashboard: a Layout plus the record of what was left out."""

    def __init__(self, name: str, published: Published, region: str, skipped: list[str]) -> None:
        self.name = name
        self.published = published
        self.layout = Layout(published.namespace, region)
        self.skipped_here: list[str] = []
        self._skipped = skipped

    def cw(self, spec: MetricSpec, *, rollup: bool = False) -> CwMetric:
        return self.published.get(spec, rollup=rollup)

    def widget(self, title: str, build: Callable[[], Sequence[Line]], **kw: Any) -> bool:
        """Add a metric widget whose lines come from build(); NotPublished leaves it out."""
        try:
            lines = build()
        except NotPublished as e:
            self.skip(title, str(e))
            return False
        self.layout.metrics(title, list(lines), **kw)
        return True

    def skip(self, title: str, why: str) -> None:
        self.skipped_here.append(f"{title}: {why}")
        self._skipped.append(f"{self.name}: {title}: {why}")

    def logs(self, title: str, group: str | None, stream: str, query: str, **kw: Any) -> None:
        if group is None:
            self.skip(title, "no log group (pass --log-group)")
            return
        self.layout.logs(title, query.format(source=_source(group), stream=_stream_filter(stream)), **kw)

    def finish(self) -> dict[str, Any]:
        if self.skipped_here:
            self.layout.newline()
            items = "\n".join(f"* {s}" for s in self.skipped_here)
            self.layout.text(f"**Not shown** (not published by this configuration):\n\n{items}", height=3)
        return self.layout.body()


def _per_node(b: _Builder, spec: MetricSpec, role: str | None, stat: str = "Average") -> Search:
    filters = {"role": role} if role else {}
    return Search(b.cw(spec), filters, stat, PER_NODE_LABEL)


def _summed(b: _Builder, spec: MetricSpec, role: str | None, label: str, stat: str = "Average") -> Search:
    """The sum over nodes of each node's statistic (a cluster-wide throughput or total)."""
    filters = {"role": role} if role else {}
    return Search(b.cw(spec), filters, stat, label, wrap="SUM")


def _header(b: _Builder, cluster: str, kind: str, other: str) -> None:
    b.layout.text(
        f"# {cluster}: {kind}\n"
        f"Metrics from nodeagent in namespace `{b.published.namespace}`; per-node graphs follow the nodes "
        f"that come and go. Generated by `nodeagent dashboard`; see also **{other}**.",
        height=2,
    )


def _host_row(b: _Builder, role: str) -> None:
    title = ROLE_TABLE[role].title
    b.widget(f"{title}: CPU used %", lambda: [_per_node(b, cat_sinks.HOST_CPU_USED, role)], width=8, y_max=100)
    b.widget(f"{title}: memory used %", lambda: [_per_node(b, cat_sinks.HOST_MEM_USED, role)], width=8, y_max=100)
    b.widget(f"{title}: disk used %", lambda: [
        Search(b.cw(cat_sinks.HOST_DISK_USED), {"role": role}, "Maximum",
               "${PROP('Dim.InstanceId')} ${PROP('Dim.Mountpoint')}")], stat="Maximum", width=8, y_max=100)


def build_basic(published: Published, region: str, logs: LogSources, skipped: list[str]) -> dict[str, Any]:
    basic, advanced = dashboard_names(published.cluster)
    b = _Builder(basic, published, region, skipped)
    _header(b, published.cluster, "nodes, GPUs and logs", advanced)

    host_roles = published.get(cat_sinks.HOST_CPU_USED).roles if published.has(cat_sinks.HOST_CPU_USED) else ()
    if not host_roles:
        b.skip("CPU, memory and disk per node", published.why_not(cat_sinks.HOST_CPU_USED.name))
    for role in host_roles:
        _host_row(b, role)

    def network() -> list[Line]:
        roles = b.cw(cat_sum.NETWORK_RX).roles
        lines: list[Line] = []
        for role in roles:
            lines.append(_summed(b, cat_sum.NETWORK_RX, role, f"{role} received"))
            lines.append(_summed(b, cat_sum.NETWORK_TX, role, f"{role} transmitted"))
        return lines

    b.layout.newline()
    b.widget("Network throughput by role, all nodes (bytes/s)", network, width=12)
    b.widget("FSx for Lustre client throughput, all nodes (bytes/s)", lambda: [
        _summed(b, cat_sum.LUSTRE_READ, None, "read"),
        _summed(b, cat_sum.LUSTRE_WRITE, None, "written"),
    ], width=12)

    b.layout.newline()
    gpu_titles = ("GPU utilisation per node (mean of its GPUs), %", "GPU memory used per node, %",
                  "Hottest GPU per node, deg C", "GPU power, all compute nodes (W)")
    if not published.has(cat_sum.GPU_UTIL_MEAN):
        why = published.why_not(cat_sum.GPU_UTIL_MEAN.name)
        for title in gpu_titles:
            b.skip(title, why)
    else:
        b.widget(gpu_titles[0], lambda: [_per_node(b, cat_sum.GPU_UTIL_MEAN, "compute")], width=6, y_max=100)
        b.widget(gpu_titles[1], lambda: [_per_node(b, cat_sum.GPU_MEMORY_USED_PERCENT, "compute")],
                 width=6, y_max=100)
        b.widget(gpu_titles[2], lambda: [_per_node(b, cat_sum.GPU_TEMP_MAX, "compute", "Maximum")],
                 stat="Maximum", width=6, y_min=None)
        b.widget(gpu_titles[3], lambda: [_summed(b, cat_sum.GPU_POWER, "compute", "power")], width=6)

    b.layout.newline()
    group = logs.cluster_group
    b.logs("Slurm controller: errors", group, "slurmctld", Q_SLURMCTLD_ERRORS, width=12)
    b.logs("Slurm: FAILED / ERROR lines per 5 min", group, "slurmctld", Q_SLURM_FAILURES_5M,
           view="timeSeries", width=12)
    b.logs("Power up (slurm_resume)", group, "slurm_resume", Q_RESUME, width=8)
    b.logs("Power down (slurm_suspend)", group, "slurm_suspend", Q_SUSPEND, width=8)
    b.logs("clustermgtd: warnings and errors", group, "clustermgtd", Q_CLUSTERMGTD, width=8)
    b.logs("DCGM host engine", logs.dcgm, logs.dcgm_stream, Q_DCGM, width=24)
    return b.finish()


def build_advanced(published: Published, region: str, logs: LogSources, skipped: list[str]) -> dict[str, Any]:
    basic, advanced = dashboard_names(published.cluster)
    b = _Builder(advanced, published, region, skipped)
    _header(b, published.cluster, "Slurm and GPU health", basic)
    n = cat_slurm.CLUSTER_NODES
    q = cat_slurm.QUEUE

    def cluster_line(spec: MetricSpec, label: str, **kw: Any) -> Metric:
        return Metric(b.cw(spec), {}, label=label, **kw)

    b.widget("Slurm nodes by state", lambda: [
        cluster_line(n["total"], "total"),
        cluster_line(n["idle"], "idle (powered up)"),
        cluster_line(n["alloc"], "allocated"),
        cluster_line(n["mix"], "mixed"),
        cluster_line(n["down"], "down"),
        cluster_line(n["drain"], "drained / draining"),
    ], stat="Maximum", width=12)
    b.widget("Cloud nodes by power state", lambda: [
        cluster_line(n["powered_down"], "powered down (~)"),
        cluster_line(n["powering_up"], "powering up (#)"),
        cluster_line(n["powering_down"], "powering down (% !)"),
    ], stat="Maximum", width=12)

    b.widget("Jobs by state", lambda: [
        cluster_line(q["running"], "running"),
        cluster_line(q["pending"], "pending"),
        cluster_line(q["total"], "total"),
    ], stat="Maximum", width=8)

    def utilisation() -> list[Line]:
        return [
            cluster_line(n["alloc"], "allocated", id="alloc", visible=False),
            cluster_line(n["mix"], "mixed", id="mix", visible=False),
            cluster_line(n["total"], "total", id="total", visible=False),
            cluster_line(n["powered_down"], "powered down", id="down", visible=False),
            cluster_line(n["powering_up"], "powering up", id="up", visible=False),
            cluster_line(n["powering_down"], "powering down", id="going", visible=False),
            Expr("IF(total - down - up - going > 0, 100 * (alloc + mix) / (total - down - up - going), 0)",
                 "util", "% of powered-up nodes running jobs"),
            Expr("IF(total > 0, 100 * (alloc + mix) / total, 0)", "util_all", "% of all nodes (incl. powered down)"),
        ]

    b.widget("Node utilisation, %", utilisation, stat="Maximum", width=8, y_max=100)
    b.widget("Jobs per partition", lambda: [
        Search(b.cw(cat_slurm.PARTITION_JOBS["pending"]), {}, "Maximum", "pending ${PROP('Dim.Partition')}"),
        Search(b.cw(cat_slurm.PARTITION_JOBS["running"]), {}, "Maximum", "running ${PROP('Dim.Partition')}"),
    ], stat="Maximum", width=8)

    b.widget("Pending jobs by reason", lambda: [
        Search(b.cw(cat_slurm.QUEUE_PENDING_REASON), {}, "Maximum", "${PROP('Dim.Reason')}"),
    ], stat="Maximum", width=12)
    b.widget("Not responding nodes", lambda: [
        cluster_line(n["not_responding"], "not responding (*)"),
    ], stat="Maximum", width=12)

    b.layout.newline()
    group = logs.cluster_group
    b.logs("Jobs completed per 5 min (slurmctld log)", group, "slurmctld", Q_JOBS_COMPLETED,
           view="timeSeries", width=8)
    b.logs("Jobs failed per 5 min (slurmctld log)", group, "slurmctld", Q_JOBS_FAILED_5M,
           view="timeSeries", width=8)
    b.logs("Failed jobs (slurmctld log)", group, "slurmctld", Q_JOBS_FAILED, width=8)

    b.layout.newline()
    b.widget("GPU XID errors, all compute nodes (per 5 min)", lambda: [
        _summed(b, cat_sum.GPU_XID_ERRORS, "compute", "XID errors", "Sum"),
        Search(b.cw(cat_sum.GPU_NODE_ACTION), {"role": "compute"}, "Maximum",
               "needs node action ${PROP('Dim.InstanceId')}"),
    ], stat="Sum", width=8)
    b.widget("Lost GPUs per node", lambda: [_per_node(b, cat_sum.GPU_LOST, "compute", "Maximum")],
             stat="Maximum", width=8)

    def idle_gpus() -> list[Line]:
        lines: list[Line] = [_summed(b, cat_sum.GPU_ALLOCATED_IDLE, "compute", "allocated but idle")]
        if b.published.has(cat_slurm.GPUS_ALLOC):  # context from the head role, not the widget's point
            lines.append(cluster_line(cat_slurm.GPUS_ALLOC, "allocated (Slurm)"))
        return lines

    b.widget("GPUs allocated to jobs but idle", idle_gpus, width=8)

    b.layout.newline()
    b.widget("nodeagent: oldest datum waiting in each node's CloudWatch spool (s)", lambda: [
        Search(b.cw(cat_sum.SPOOL_OLDEST_AGE), {}, "Maximum", "${PROP('Dim.Role')} ${PROP('Dim.InstanceId')}"),
    ], stat="Maximum", width=24, height=5)
    return b.finish()


def build_dashboards(published: Published, region: str, logs: LogSources) -> DashboardSet:
    out = DashboardSet(published.cluster, region, published.namespace)
    basic, advanced = dashboard_names(published.cluster)
    out.bodies[basic] = build_basic(published, region, logs, out.skipped)
    out.bodies[advanced] = build_advanced(published, region, logs, out.skipped)
    return out


# ---- AWS ------------------------------------------------------------------------------
def aws_client(service: str, region: str, endpoint_url: str | None) -> Any:
    """A boto3 client from the default credential chain (never keys from arguments)."""
    import boto3

    return boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint_url)


def aws_error(e: Exception) -> str | None:
    """A one-line message for an AWS error (credentials, permissions, network), or None."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}"
    if isinstance(e, BotoCoreError):
        return f"{type(e).__name__}: {e}"
    return None


def discover_log_group(logs_client: Any, cluster: str) -> str | None:
    """The newest `/aws/parallelcluster/<cluster>-<timestamp>` log group, if any."""
    prefix = f"{PC_LOG_GROUP_PREFIX}{cluster}-"
    best: tuple[int, str] | None = None
    for page in logs_client.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix):
        for group in page.get("logGroups", []):
            name = group["logGroupName"]
            suffix = name[len(prefix):]
            if not suffix.isdigit():
                continue  # another cluster whose name starts with this one's plus "-"
            key = (int(group.get("creationTime", 0)), name)
            if best is None or key > best:
                best = key
    return best[1] if best else None


def put_dashboards(client: Any, dashboards: DashboardSet) -> list[str]:
    """PutDashboard for each body; returns CloudWatch's validation messages."""
    messages: list[str] = []
    for name, body in dashboards.bodies.items():
        answer = client.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body))
        for m in answer.get("DashboardValidationMessages", []):
            messages.append(f"{name}: {m.get('DataPath', '')}: {m.get('Message', '')}")
    return messages


# ---- command line ---------------------------------------------------------------------
def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", required=True, help="ParallelCluster cluster name")
    p.add_argument("--region", required=True, help="AWS region of the cluster")
    p.add_argument("--config", metavar="PATH", default=None,
                   help="agent config whose `cloudwatch:` section says what is published "
                        "(default /etc/nodeagent/config.yaml; absent = defaults)")
    p.add_argument("--endpoint-url", default=None, help=argparse.SUPPRESS)


def add_dashboard_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--apply", action="store_true", help="create or update the dashboards (PutDashboard)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write the dashboards' JSON here (default: the current directory, unless --apply)")
    p.add_argument("--log-group", default=None,
                   help="the cluster's CloudWatch Logs group, /aws/parallelcluster/<cluster>-<timestamp> "
                        "(with --apply, found by that prefix when not given)")
    p.add_argument("--dcgm-log-group", default=None, help="log group of the DCGM host engine log "
                                                          "(default: the cluster's)")
    p.add_argument("--dcgm-log-stream", default="nv-hostengine",
                   help="end of the DCGM log's stream names (default: nv-hostengine)")


def load_settings(config_path: str | None) -> CloudWatchSettings:
    from nodeagent.config import load_config

    return load_config(config_path).cloudwatch


def dashboard_main(args: argparse.Namespace) -> int:
    from nodeagent.settings import ConfigError

    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"nodeagent: {e}", file=sys.stderr)
        return 78
    endpoint = args.endpoint_url or settings.endpoint_url
    published = Published(settings, args.cluster)
    try:
        return _dashboard(args, settings, endpoint, published)
    except Exception as e:
        message = aws_error(e)
        if message is None:
            raise
        print(f"nodeagent: AWS: {message}", file=sys.stderr)
        return 1


def _dashboard(args: argparse.Namespace, settings: CloudWatchSettings, endpoint: str | None,
               published: Published) -> int:
    group = args.log_group
    if group is None and args.apply:
        group = discover_log_group(aws_client("logs", args.region, endpoint), args.cluster)
        if group:
            print(f"log group: {group}")
    try:
        logs = LogSources(group, args.dcgm_log_group, args.dcgm_log_stream)
        dashboards = build_dashboards(published, args.region, logs)
    except ValueError as e:
        print(f"nodeagent: {e}", file=sys.stderr)
        return 2
    for line in dashboards.skipped:
        print(f"not shown: {line}", file=sys.stderr)
    out_dir = args.out if args.out is not None else (None if args.apply else ".")
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        for name, body in dashboards.bodies.items():
            path = os.path.join(out_dir, f"{name}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(body, f, indent=1)
                f.write("\n")
            print(f"wrote {path}")
    if args.apply:
        client = aws_client("cloudwatch", args.region, endpoint)
        for message in put_dashboards(client, dashboards):
            print(f"CloudWatch: {message}", file=sys.stderr)
        for name in dashboards.bodies:
            print(f"dashboard {name}: https://{args.region}.console.aws.amazon.com/cloudwatch/home"
                  f"?region={args.region}#dashboards:name={name}")
    return 0
