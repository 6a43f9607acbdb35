"""node_exporter's loadavg collector: node_load1/5/15 from /proc/loadavg."""

from __future__ import annotations

from nodeagent.catalogue import host as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """'0.25 0.30 0.35 1/234 5678' -> (0.25, 0.30, 0.35)."""
    parts = text.split()
    if len(parts) < 3:
        raise ValueError(f"loadavg: expected at least 3 fields, got {len(parts)}: {text[:80]!r}")
    return float(parts[0]), float(parts[1]), float(parts[2])


@register
class LoadavgCollector(Collector):
    name = "loadavg"
    group = "host"
    description = "Load averages (node_load1, node_load5, node_load15) from /proc/loadavg."

    def collect(self) -> list[MetricFamily]:
        one, five, fifteen = parse_loadavg(self.host.read_proc("loadavg"))
        return [cat.NODE_LOAD1.single(one), cat.NODE_LOAD5.single(five), cat.NODE_LOAD15.single(fifteen)]
