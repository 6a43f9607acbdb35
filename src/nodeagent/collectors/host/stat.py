"""node_exporter's stat collector (Linux): kernel counters from /proc/stat.

node_boot_time_seconds (btime), node_context_switches_total (ctxt),
node_forks_total (processes), node_intr_total (first number of intr),
node_procs_running, node_procs_blocked. The per-IRQ and softirq breakdowns
(--collector.stat.softirq) are off by default upstream and not exported.
"""

from __future__ import annotations

from nodeagent.catalogue import host as cat
from nodeagent.catalogue.spec import MetricSpec
from nodeagent.collectors.host._common import line_error
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

# /proc/stat key -> spec, in node_exporter's order
KEYS: dict[str, MetricSpec] = {
    "intr": cat.INTR,
    "ctxt": cat.CONTEXT_SWITCHES,
    "processes": cat.FORKS,
    "btime": cat.BOOT_TIME,
    "procs_running": cat.PROCS_RUNNING,
    "procs_blocked": cat.PROCS_BLOCKED,
}


def parse_stat(text: str, source: str = "stat") -> dict[str, float]:
    """The kernel-wide counters of /proc/stat: {key: value} for the keys in
    KEYS that the file has. A known key without a number is an error; a file
    with none of them (truncated, or not /proc/stat) is an error too."""
    values: dict[str, float] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("cpu"):
            continue
        key, _, rest = line.partition(" ")
        if key not in KEYS:
            continue
        # intr is followed by thousands of per-IRQ counts: split off only the first
        first = rest.split(None, 1)
        try:
            values[key] = float(int(first[0]))
        except (ValueError, IndexError):
            raise line_error(source, lineno, line, f"cannot parse {key}") from None
    if not values:
        raise ValueError(f"{source}: none of {', '.join(KEYS)} found")
    return values


@register
class StatCollector(Collector):
    name = "stat"
    group = "host"
    description = "Boot time, context switches, forks, interrupts and process counts from /proc/stat."

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("stat")
        values = parse_stat(self.host.read_text(path), str(path))
        families = []
        for key, spec in KEYS.items():
            value = values.get(key)
            if value is not None:
                families.append(spec.single(value))
        return families
