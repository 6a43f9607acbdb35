"""node_exporter's schedstat collector: node_schedstat_{running,waiting}_seconds_total and
node_schedstat_timeslices_total per CPU from /proc/schedstat."""

from __future__ import annotations

import errno

from nodeagent.catalogue import host_extra as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register


def parse_schedstat(text: str) -> list[tuple[str, int, int, int]]:
    """'cpuN f1 .. f9' lines -> (N, running ns, waiting ns, timeslices) from fields 7-9.

    Like prometheus/procfs, cpu lines that do not have nine numbers are
    skipped, and so are the version/timestamp/domain lines."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        fields = line.split()
        cpu = fields[0][3:]
        if len(fields) < 10 or not cpu.isdigit() or not all(f.isdigit() for f in fields[1:10]):
            continue
        rows.append((cpu, int(fields[7]), int(fields[8]), int(fields[9])))
    return rows


@register
class SchedstatCollector(Collector):
    name = "schedstat"
    group = "host"
    description = "Per-CPU scheduler run and wait time (node_schedstat_*) from /proc/schedstat."

    def collect(self) -> list[MetricFamily]:
        try:
            text = self.host.read_proc("schedstat")
        except OSError as e:
            if e.errno == errno.ENOENT:  # kernel without CONFIG_SCHEDSTATS
                return []
            raise
        running = cat.NODE_SCHEDSTAT_RUNNING.family()
        waiting = cat.NODE_SCHEDSTAT_WAITING.family()
        slices = cat.NODE_SCHEDSTAT_TIMESLICES.family()
        for cpu, run_ns, wait_ns, timeslices in parse_schedstat(text):
            running.add((cpu,), run_ns / 1e9)
            waiting.add((cpu,), wait_ns / 1e9)
            slices.add((cpu,), timeslices)
        return [running, waiting, slices]
