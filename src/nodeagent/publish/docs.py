"""docs/metrics.md, generated from the metric catalogue.

    python -m nodeagent.publish.docs [--out docs/metrics.md] [--check]

`--check` exits 1 when the file differs from what the catalogue gives (the
test suite runs the same comparison).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence

from nodeagent.catalogue import CATALOGUE, MetricSpec
from nodeagent.publish.published import ROLLUP_LABEL
from nodeagent.sinks.mapping import dimension_name

GROUPS: tuple[tuple[str, str, str], ...] = (
    ("host", "Host metrics, port 9100",
     "node_exporter's names, labels and help texts, so dashboards built for node_exporter (Grafana 1860, "
     "\"Node Exporter Full\") work unchanged; `nodeagent_` names are additions (EFA, FSx for Lustre)."),
    ("gpu", "GPU metrics, port 9400",
     "dcgm-exporter's classic names, types, help texts and label order (NVIDIA's Grafana dashboard 12239 "
     "queries them); `nodeagent_gpu_` names are additions. The label set of the `DCGM_*` families is data "
     "driven: MIG labels, label-type fields, `err_code`, `hpc_job` appear where the data has them."),
    ("slurm", "Slurm metrics, port 9341 (head role)",
     "The names of the common Slurm exporters (vpenso/prometheus-slurm-exporter and SckyzO/slurm_exporter), "
     "with ParallelCluster's power states counted apart."),
    ("agent", "The agent's own metrics and CloudWatch summaries",
     "Collector health, the CloudWatch sink's health, and the per-node summaries that only go to CloudWatch."),
)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _labels(spec: MetricSpec) -> str:
    return ", ".join(f"`{label}`" for label in spec.labels)


def _cloudwatch(spec: MetricSpec) -> str:
    cw = spec.cloudwatch
    if cw is None:
        return ""
    dims = ", ".join(dimension_name(d) for d in cw.dimensions) or "none"
    return f"`{cw.name}` ({cw.unit}; {dims})"


def _collectors(specs: Iterable[MetricSpec]) -> list[tuple[str, list[MetricSpec]]]:
    order: dict[str, list[MetricSpec]] = {}
    for spec in specs:
        order.setdefault(spec.collector, []).append(spec)
    return list(order.items())


def render(specs: Sequence[MetricSpec] | None = None) -> str:
    specs = list(CATALOGUE) if specs is None else list(specs)
    out: list[str] = [
        "# Metrics",
        "",
        "<!-- Generated from the metric catalogue (src/nodeagent/catalogue/) by "
        "`python -m nodeagent.publish.docs`; do not edit by hand. -->",
        "",
        f"Every metric nodeagent can emit: {len(specs)} catalogue entries. A name containing `{{field}}` "
        "stands for a family of names taken from the data (one per /proc/meminfo field, for example). "
        "Dashboards and alarms (`nodeagent dashboard`, `nodeagent alarms`) and the Grafana dashboards "
        "under config/grafana/ use only these names.",
        "",
    ]
    toc: list[str] = []
    body: list[str] = []
    for group, title, intro in GROUPS:
        mine = [s for s in specs if s.group == group]
        if not mine:
            continue
        anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")  # GitHub's heading anchors
        toc.append(f"* [{title}](#{anchor}) ({len(mine)})")
        body += [f"## {title}", "", intro, ""]
        for collector, group_specs in _collectors(mine):
            body += [
                f"### {collector}",
                "",
                "| name | type | unit | labels | help | CloudWatch |",
                "|---|---|---|---|---|---|",
            ]
            for s in group_specs:
                body.append(
                    f"| `{s.name}` | {s.type} | {_cell(s.unit)} | {_labels(s)} | {_cell(s.help)} | {_cloudwatch(s)} |"
                )
            body.append("")
    others = sorted({s.group for s in specs} - {g for g, _, _ in GROUPS})
    for group in others:  # a group this page does not know yet still gets listed
        body += [f"## Group {group}", ""]
        for s in specs:
            if s.group == group:
                body.append(f"* `{s.name}` ({s.type}, collector {s.collector}): {_cell(s.help)}")
        body.append("")
    toc.append("* [CloudWatch](#cloudwatch)")
    out += [*toc, "", *body, *_cloudwatch_section(specs)]
    return "\n".join(out).rstrip("\n") + "\n"


def _cloudwatch_section(specs: Sequence[MetricSpec]) -> list[str]:
    out = [
        "## CloudWatch",
        "",
        "Namespace `ParallelCluster/<cluster>` by default (`cloudwatch.namespace`). A metric goes to CloudWatch "
        "from the roles listed, where the CloudWatch sink runs (`cloudwatch.roles`: head and login by default; "
        "add compute for the per-node GPU and I/O summaries). Dimension names are the label names in "
        "PascalCase. Counters are sent as their increase since the previous publish. With "
        f"`cloudwatch.role_rollup` (default on), a metric with the `{dimension_name(ROLLUP_LABEL)}` dimension "
        "is also sent without it: one role-wide series that alarms use.",
        "",
        "| CloudWatch name | unit | dimensions | resolution | roles | from |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for s in specs:
        cw = s.cloudwatch
        if cw is None:
            continue
        dims = ", ".join(dimension_name(d) for d in cw.dimensions) or "none"
        resolution = "1 s" if cw.storage_resolution == 1 else "60 s"
        rows.append(f"| `{cw.name}` | {cw.unit} | {dims} | {resolution} | {', '.join(cw.roles)} | `{s.name}` |")
    return [*out, *rows, ""]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nodeagent.publish.docs", description=__doc__)
    p.add_argument("--out", default="docs/metrics.md")
    p.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{args.out} is stale: run python -m nodeagent.publish.docs", file=sys.stderr)
            return 1
        return 0
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
