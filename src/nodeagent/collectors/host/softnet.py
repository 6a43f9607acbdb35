"""node_exporter's softnet collector: node_softnet_{processed,dropped,times_squeezed}_total{cpu}
from /proc/net/softnet_stat (node_exporter 1.5's three families; cpu = line index as in 1.5)."""

from __future__ import annotations

from nodeagent.catalogue import host_extra as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

MIN_COLUMNS = 9


def parse_softnet(text: str, source: str = "softnet_stat") -> list[tuple[int, int, int]]:
    """One (processed, dropped, time_squeezed) per line; the values are hexadecimal."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        columns = line.split()
        if not columns:
            continue
        if len(columns) < MIN_COLUMNS:
            raise ValueError(
                f"{source} line {number}: {len(columns)} columns, at least {MIN_COLUMNS} expected"
            )
        try:
            rows.append((int(columns[0], 16), int(columns[1], 16), int(columns[2], 16)))
        except ValueError:
            raise ValueError(f"{source} line {number}: not hexadecimal: {line[:120]!r}") from None
    return rows


@register
class SoftnetCollector(Collector):
    name = "softnet"
    group = "host"
    description = "Per-CPU network softirq statistics (node_softnet_*) from /proc/net/softnet_stat."

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("net", "softnet_stat")
        rows = parse_softnet(self.host.read_text(path), str(path))
        processed = cat.NODE_SOFTNET_PROCESSED.family()
        dropped = cat.NODE_SOFTNET_DROPPED.family()
        squeezed = cat.NODE_SOFTNET_TIMES_SQUEEZED.family()
        for index, (p, d, s) in enumerate(rows):
            cpu = (str(index),)
            processed.add(cpu, p)
            dropped.add(cpu, d)
            squeezed.add(cpu, s)
        return [processed, dropped, squeezed]
