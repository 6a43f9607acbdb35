"""Grafana dashboards (config/grafana/*.json), generated from the catalogue.

    python -m nodeagent.publish.grafana [--out config/grafana] [--check]

Three dashboards querying Prometheus with the catalogue's names:

* nodeagent-cluster-overview: Slurm summary, CPU / memory / disk / network /
  EFA / FSx per node, GPU summary per node, collector health;
* nodeagent-gpu-nodes: per-GPU fields filtered by node (`Hostname`) and by
  Slurm job (`hpc_job`, dcgm-exporter's job label), per-job utilisation,
  allocated-but-idle GPUs, XID errors and GPU health;
* nodeagent-slurm: nodes by state with ParallelCluster's power states apart,
  utilisation, CPUs and GPUs, jobs by state and pending reason, per partition,
  scheduler statistics.

Every metric name in a query goes through `m()`, which fails when the catalogue
does not know the name, so a dashboard cannot drift from what the agent serves.
Template variables: `datasource` (a Prometheus data source), `node`, `job`,
`partition`; queries use `$__rate_interval`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue import gpu as g
from nodeagent.catalogue import slurm as s

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
NODE = 'instance=~"$node(:[0-9]+)?"'  # host and Slurm exporters: instance is host:port
GPU_SEL = 'Hostname=~"$node", hpc_job=~"$job"'
PART = 'partition=~"$partition"'


def m(name: str) -> str:
    """A metric name, checked against the catalogue."""
    if CATALOGUE.lookup(name) is None:
        raise KeyError(f"{name} is not in the metric catalogue")
    return name


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (PromQL, legend format)
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 8
    height: int = 8
    description: str = ""
    stacked: bool = False
    max: float | None = None


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    variables: list[dict[str, Any]]
    rows: list[tuple[str, list[Panel]]] = field(default_factory=list)

    def render(self) -> dict[str, Any]:
        panels: list[dict[str, Any]] = []
        pid = 0
        y = 0
        for row_title, row_panels in self.rows:
            pid += 1
            panels.append({"type": "row", "title": row_title, "id": pid, "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            y += 1
            x = 0
            row_height = 0
            for p in row_panels:
                if x + p.width > 24:
                    x, y, row_height = 0, y + row_height, 0
                pid += 1
                panels.append(_panel(p, pid, x, y))
                x += p.width
                row_height = max(row_height, p.height)
            y += row_height
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["nodeagent"],
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 38,
            "version": 1,
            "refresh": "1m",
            "time": {"from": "now-6h", "to": "now"},
            "timezone": "",
            "annotations": {"list": []},
            "links": [],
            "templating": {"list": self.variables},
            "panels": panels,
        }


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i),
         "range": p.kind == "timeseries", "instant": p.kind != "timeseries",
         **({"format": "table"} if p.kind == "table" else {})}
        for i, (expr, legend) in enumerate(p.targets)
    ]
    defaults: dict[str, Any] = {"unit": p.unit}
    if p.max is not None:
        defaults["max"] = p.max
        defaults["min"] = 0
    if p.kind == "timeseries":
        defaults["custom"] = {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never",
                              "stacking": {"mode": "normal" if p.stacked else "none", "group": "A"}}
    out: dict[str, Any] = {
        "type": p.kind,
        "title": p.title,
        "id": pid,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": p.width, "h": p.height},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
    }
    if p.description:
        out["description"] = p.description
    if p.kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    elif p.kind == "stat":
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "area", "textMode": "value_and_name"}
    return out


def _datasource_var() -> dict[str, Any]:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}


def _query_var(name: str, label: str, metric: str, label_name: str, regex: str = "") -> dict[str, Any]:
    query = f"label_values({m(metric)}, {label_name})"
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "definition": query, "query": {"query": query, "refId": f"var-{name}"},
            "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0,
            "refresh": 2, "regex": regex, "sort": 1, "options": []}


def _jobs(name: str) -> str:
    """Jobs in a state whatever slurm.naming says: SckyzO's families have a
    series per user and partition, and none when no job is in that state."""
    return f"sum({m(name)}) or vector(0)"


def _node_utilisation() -> str:
    n = s.CLUSTER_NODES
    up = (f"{m(n['total'].name)} - {m(n['powered_down'].name)} - {m(n['powering_up'].name)} "
          f"- {m(n['powering_down'].name)}")
    return f"100 * ({m(n['alloc'].name)} + {m(n['mix'].name)}) / clamp_min({up}, 1)"


# ---- cluster overview ------------------------------------------------------------------
def overview() -> Dashboard:
    n, q = s.CLUSTER_NODES, s.QUEUE
    d = Dashboard(
        "nodeagent-overview", "nodeagent: cluster overview",
        "Slurm, nodes and GPUs of a ParallelCluster cluster, from nodeagent (ports 9100, 9400, 9341).",
        [_datasource_var(),
         _query_var("node", "Node", "node_uname_info", "instance", regex="/^([^:]+)/")],
    )
    d.rows.append(("Slurm", [
        Panel("Nodes by state", [(m(n[k].name), k) for k in ("alloc", "mix", "idle", "drain", "down")]
              + [(m(n["powered_down"].name), "powered down")], stacked=True),
        Panel("Jobs", [(_jobs(q["running"].name), "running"), (_jobs(q["pending"].name), "pending")]),
        Panel("Node utilisation (allocated or mixed / powered-up nodes)", [(_node_utilisation(), "utilisation")],
              unit="percent", max=100),
        Panel("GPUs: allocated by Slurm, idle on the GPU", [
            (m(s.GPUS_ALLOC.name), "allocated (Slurm)"),
            (m(s.GPUS_TOTAL.name), "total (Slurm)"),
            (f"sum({m(g.ALLOCATED_IDLE.name)})", "allocated but idle (nodeagent)"),
        ], width=12),
        Panel("CPUs", [(m(s.CPUS_ALLOC.name), "allocated"), (m(s.CPUS_IDLE.name), "idle"),
                       (m(s.CPUS_TOTAL.name), "total")], width=12),
    ]))
    d.rows.append(("Nodes", [
        Panel("CPU busy", [(
            f'100 * (1 - avg by (instance) (rate({m("node_cpu_seconds_total")}{{mode="idle", {NODE}}}[{RATE}])))',
            "{{instance}}")], unit="percent", max=100),
        Panel("Memory used", [(
            f'100 * (1 - {m("node_memory_MemAvailable_bytes")}{{{NODE}}} / {m("node_memory_MemTotal_bytes")}'
            f"{{{NODE}}})", "{{instance}}")], unit="percent", max=100),
        Panel("Root file system used", [(
            f'100 * (1 - {m("node_filesystem_avail_bytes")}{{mountpoint="/", {NODE}}} / '
            f'{m("node_filesystem_size_bytes")}{{mountpoint="/", {NODE}}})', "{{instance}}")],
            unit="percent", max=100),
        Panel("Load (1 min)", [(f"{m('node_load1')}{{{NODE}}}", "{{instance}}")]),
        Panel("Network received / transmitted", [
            (f'sum by (instance) (rate({m("node_network_receive_bytes_total")}{{device!="lo", {NODE}}}[{RATE}]))',
             "{{instance}} rx"),
            (f'sum by (instance) (rate({m("node_network_transmit_bytes_total")}{{device!="lo", {NODE}}}[{RATE}]))',
             "{{instance}} tx"),
        ], unit="Bps"),
        Panel("EFA received / transmitted", [
            (f"sum by (instance) (rate({m('node_amazonefa_rx_bytes')}{{{NODE}}}[{RATE}]))", "{{instance}} rx"),
            (f"sum by (instance) (rate({m('node_amazonefa_tx_bytes')}{{{NODE}}}[{RATE}]))", "{{instance}} tx"),
        ], unit="Bps"),
        Panel("FSx for Lustre read / written", [
            (f"sum by (instance) (rate({m('nodeagent_lustre_read_bytes_total')}{{{NODE}}}[{RATE}]))",
             "{{instance}} read"),
            (f"sum by (instance) (rate({m('nodeagent_lustre_write_bytes_total')}{{{NODE}}}[{RATE}]))",
             "{{instance}} written"),
        ], unit="Bps", width=16),
    ]))
    d.rows.append(("GPUs", [
        Panel("GPU utilisation (mean per node)", [(f"avg by (Hostname) ({m(g.GPU_UTIL.name)})", "{{Hostname}}")],
              unit="percent", max=100, width=6),
        Panel("Hottest GPU per node", [(f"max by (Hostname) ({m(g.GPU_TEMP.name)})", "{{Hostname}}")],
              unit="celsius", width=6),
        Panel("GPU power, all nodes", [(f"sum({m(g.POWER_USAGE.name)})", "watts")], unit="watt", width=6),
        Panel("Unhealthy GPUs per node (lost, or XID needing node action)", [
            (f"sum by (Hostname) (1 - {m(g.GPU_HEALTHY.name)})", "{{Hostname}}")], width=6),
    ]))
    d.rows.append(("Agent", [
        Panel("Failing host collectors per node", [
            (f"sum by (instance) (1 - {m('node_scrape_collector_success')})", "{{instance}}")], width=8),
        Panel("Failing GPU and Slurm collectors per node", [
            (f"sum by (instance) (1 - {m('nodeagent_collector_success')})", "{{instance}}")], width=8),
        Panel("Slowest host collector", [
            (f"max by (instance) ({m('node_scrape_collector_duration_seconds')})", "{{instance}}")],
            unit="s", width=8),
    ]))
    return d


# ---- GPU nodes -------------------------------------------------------------------------
def gpu_nodes() -> Dashboard:
    d = Dashboard(
        "nodeagent-gpu", "nodeagent: GPU nodes",
        "Per-GPU fields (dcgm-exporter names) by node and Slurm job (hpc_job).",
        [_datasource_var(),
         _query_var("node", "Node", g.GPU_UTIL.name, "Hostname"),
         _query_var("job", "Slurm job", g.GPU_UTIL.name, "hpc_job")],
    )
    per_gpu = "{{Hostname}} GPU {{gpu}}"
    d.rows.append(("Utilisation", [
        Panel("GPU utilisation", [(f"{m(g.GPU_UTIL.name)}{{{GPU_SEL}}}", per_gpu)], unit="percent", max=100),
        Panel("Tensor cores active", [(f"{m(g.PROF_PIPE_TENSOR_ACTIVE.name)}{{{GPU_SEL}}}", per_gpu)],
              unit="percentunit", max=1),
        Panel("Framebuffer memory used", [(
            f"100 * {m(g.FB_USED.name)}{{{GPU_SEL}}} / ({m(g.FB_USED.name)}{{{GPU_SEL}}} + "
            f"{m(g.FB_FREE.name)}{{{GPU_SEL}}})", per_gpu)], unit="percent", max=100),
    ]))
    d.rows.append(("Slurm jobs", [
        Panel("GPU utilisation per job", [
            (f'avg by (hpc_job) ({m(g.GPU_UTIL.name)}{{{GPU_SEL}, hpc_job!=""}})', "job {{hpc_job}}")],
            unit="percent", max=100),
        Panel("GPUs per job", [
            (f'count by (hpc_job) ({m(g.GPU_UTIL.name)}{{{GPU_SEL}, hpc_job!=""}})', "job {{hpc_job}}")]),
        Panel("GPUs allocated to a job but idle", [
            (f"{m(g.ALLOCATED_IDLE.name)}{{{GPU_SEL}}}", per_gpu + " job {{hpc_job}}")],
            description="1 when the GPU belongs to a job and stayed below gpu.idle_threshold for gpu.idle_after."),
    ]))
    d.rows.append(("Temperature, power, clocks", [
        Panel("GPU temperature", [(f"{m(g.GPU_TEMP.name)}{{{GPU_SEL}}}", per_gpu)], unit="celsius"),
        Panel("Power draw", [(f"{m(g.POWER_USAGE.name)}{{{GPU_SEL}}}", per_gpu)], unit="watt"),
        Panel("SM clock", [(f"{m(g.SM_CLOCK.name)}{{{GPU_SEL}}} * 1000000", per_gpu)], unit="hertz"),
    ]))
    d.rows.append(("Health", [
        Panel("XID errors (last hour)", [
            (f'sum by (Hostname, gpu, xid, action) (increase({m(g.XID_ERRORS_TOTAL.name)}{{Hostname=~"$node"}}[1h]))',
             "{{Hostname}} GPU {{gpu}} XID {{xid}} ({{action}})")],
            description="action=node: drain the node and reset the GPU (XID 48, 64, 74, 79, 95)."),
        Panel("Last XID (dcgm-exporter)", [(f'{m(g.XID_ERRORS.name)}{{Hostname=~"$node"}}', per_gpu)]),
        Panel("GPU up / healthy", [
            (f'min by (Hostname) ({m(g.GPU_UP.name)}{{Hostname=~"$node"}})', "{{Hostname}} all up"),
            (f'min by (Hostname) ({m(g.GPU_HEALTHY.name)}{{Hostname=~"$node"}})', "{{Hostname}} all healthy"),
        ], max=1),
        Panel("GPUs expected / present / up", [(f"{m(g.GPUS.name)}", "{{instance}} {{state}}")]),
        Panel("GPU backend", [(f"{m(g.BACKEND_INFO.name)}", "{{instance}} {{backend}} / {{profiling}}")],
              kind="table"),
        Panel("GPU snapshot age", [(f"{m(g.SNAPSHOT_AGE.name)}", "{{instance}}")], unit="s"),
    ]))
    return d


# ---- Slurm -----------------------------------------------------------------------------
def slurm() -> Dashboard:
    # mode-independent families: each node once, jobs summed over the labels
    # slurm.naming adds (SckyzO's user, partition, reason)
    n, q, pn, pj = s.CLUSTER_NODES, s.QUEUE, s.PARTITION_NODES, s.PARTITION_JOBS
    d = Dashboard(
        "nodeagent-slurm", "nodeagent: Slurm",
        "Slurm from nodeagent's head role (port 9341); ParallelCluster's powered-down cloud nodes are counted apart.",
        [_datasource_var(), _query_var("partition", "Partition", pn["total"].name, "partition")],
    )
    states = ("alloc", "mix", "idle", "comp", "drain", "down", "fail", "maint", "resv", "other")
    d.rows.append(("Nodes", [
        Panel("Nodes by state", [(m(n[k].name), k) for k in states], stacked=True, width=12),
        Panel("Cloud nodes by power state", [
            (m(n["powered_down"].name), "powered down (~)"),
            (m(n["powering_up"].name), "powering up (#)"),
            (m(n["powering_down"].name), "powering down (% !)"),
            (m(n["not_responding"].name), "not responding (*)"),
        ], width=12),
        Panel("Node utilisation", [(_node_utilisation(), "% of powered-up nodes running jobs")],
              unit="percent", max=100),
        Panel("CPUs", [(m(s.CPUS_ALLOC.name), "allocated"), (m(s.CPUS_IDLE.name), "idle"),
                       (m(s.CPUS_OTHER.name), "other"), (m(s.CPUS_TOTAL.name), "total")]),
        Panel("GPUs", [(m(s.GPUS_ALLOC.name), "allocated"), (m(s.GPUS_IDLE.name), "idle"),
                       (m(s.GPUS_TOTAL.name), "total")]),
    ]))
    d.rows.append(("Jobs", [
        Panel("Jobs by state", [(_jobs(q[k].name), k) for k in ("running", "pending", "completing", "suspended")],
              width=12),
        Panel("Pending jobs by reason", [(m(s.QUEUE_PENDING_REASON.name), "{{reason}}")], stacked=True, width=12),
    ]))
    d.rows.append(("Partitions", [
        Panel("Pending jobs", [(f"{m(pj['pending'].name)}{{{PART}}}", "{{partition}}")]),
        Panel("Running jobs", [(f"{m(pj['running'].name)}{{{PART}}}", "{{partition}}")]),
        Panel("Allocated / total nodes", [
            (f"{m(pn['alloc'].name)}{{{PART}}} + {m(pn['mix'].name)}{{{PART}}}", "{{partition}} allocated"),
            (f"{m(pn['total'].name)}{{{PART}}}", "{{partition}} total"),
        ]),
        Panel("Allocated / total GPUs", [
            (f"{m(s.PARTITION_GPUS_ALLOCATED.name)}{{{PART}}}", "{{partition}} allocated"),
            (f"{m(s.PARTITION_GPUS_TOTAL.name)}{{{PART}}}", "{{partition}} total"),
        ], width=12),
        Panel("Allocated / total CPUs", [
            (f"{m(s.PARTITION_CPUS_ALLOCATED.name)}{{{PART}}}", "{{partition}} allocated"),
            (f"{m(s.PARTITION_CPUS_TOTAL.name)}{{{PART}}}", "{{partition}} total"),
        ], width=12),
    ]))
    sched = s.SCHEDULER
    d.rows.append(("Scheduler and collection", [
        Panel("Scheduler cycle", [(m(sched["last_cycle"].name), "last"), (m(sched["mean_cycle"].name), "mean"),
                                  (m(sched["backfill_last_cycle"].name), "backfill last")], unit="µs"),
        Panel("Scheduler queue and threads", [(m(sched["queue_size"].name), "queue"),
                                              (m(sched["threads"].name), "threads"),
                                              (m(sched["dbd_queue_size"].name), "DBD agent queue")]),
        Panel("Slurm command time", [(m(s.COMMAND_DURATION.name), "{{command}}")], unit="s"),
    ]))
    d.rows.append(("Slurm health", [
        Panel("Last poll succeeded (1) or failed (0)", [(m(s.UP.name), "{{command}}")], max=1,
              description="nodeagent_slurm_up: 0 while slurmctld does not answer that command."),
        Panel("Failed polls per 10 min", [(f"increase({m(s.POLL_FAILURES.name)}[10m])", "{{command}}")]),
        Panel("Age of the data", [(m(s.DATA_AGE.name), "{{command}}")], unit="s",
              description="Last good values are served for slurm.serve_stale after a failed poll, then withdrawn."),
    ]))
    return d


DASHBOARDS = {
    "nodeagent-cluster-overview.json": overview,
    "nodeagent-gpu-nodes.json": gpu_nodes,
    "nodeagent-slurm.json": slurm,
}


def render_all() -> dict[str, str]:
    return {name: json.dumps(build().render(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nodeagent.publish.grafana", description=__doc__)
    p.add_argument("--out", default=os.path.join("config", "grafana"))
    p.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = p.parse_args(argv)
    stale = []
    if not args.check:
        os.makedirs(args.out, exist_ok=True)
    for name, text in render_all().items():
        path = os.path.join(args.out, name)
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() == text:
                        continue
            except FileNotFoundError:
                pass
            stale.append(path)
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}: run python -m nodeagent.publish.grafana", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
