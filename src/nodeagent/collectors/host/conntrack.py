"""node_exporter's conntrack collector: node_nf_conntrack_entries / _entries_limit from
/proc/sys/net/netfilter and node_nf_conntrack_stat_* summed over CPUs from
/proc/net/stat/nf_conntrack. Without the nf_conntrack module there is nothing to report."""

from __future__ import annotations

from nodeagent.catalogue import host_extra as cat
from nodeagent.collectors.host._values import read_uint
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

# positions of the per-CPU columns prometheus/procfs reads (search_restart is the 17th, when present)
_COLUMNS = {"found": 2, "invalid": 4, "ignore": 5, "insert": 8, "insert_failed": 9, "drop": 10,
            "early_drop": 11, "search_restart": 16}  # fmt: skip


def parse_conntrack_stat(text: str, source: str = "nf_conntrack") -> dict[str, int]:
    """/proc/net/stat/nf_conntrack (header line, then one row of hex counters per CPU)
    -> counters summed over CPUs, keyed by node_exporter's stat names."""
    totals = dict.fromkeys(_COLUMNS, 0)
    lines = text.splitlines()
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not fields:
            continue
        if not 16 <= len(fields) <= 17:
            raise ValueError(f"{source} line {number}: {len(fields)} fields, expected 16 or 17")
        try:
            values = [int(f, 16) for f in fields]
        except ValueError:
            raise ValueError(f"{source} line {number}: not hexadecimal: {line[:120]!r}") from None
        for key, index in _COLUMNS.items():
            if index < len(values):
                totals[key] += values[index]
    return totals


@register
class ConntrackCollector(Collector):
    name = "conntrack"
    group = "host"
    description = "Connection tracking table use and statistics (node_nf_conntrack_*); absent module = none."

    def collect(self) -> list[MetricFamily]:
        count_path = self.host.proc("sys", "net", "netfilter", "nf_conntrack_count")
        max_path = self.host.proc("sys", "net", "netfilter", "nf_conntrack_max")
        count_text = self.host.read_optional(count_path)
        max_text = self.host.read_optional(max_path)
        if count_text is None or max_text is None:
            return []  # nf_conntrack not loaded
        families = [
            cat.NODE_NF_CONNTRACK_ENTRIES.single(read_uint(count_text, str(count_path))),
            cat.NODE_NF_CONNTRACK_ENTRIES_LIMIT.single(read_uint(max_text, str(max_path))),
        ]
        stat_path = self.host.proc("net", "stat", "nf_conntrack")
        stat_text = self.host.read_optional(stat_path)
        if stat_text is not None:
            totals = parse_conntrack_stat(stat_text, str(stat_path))
            families += [spec.single(totals[key]) for key, spec in cat.NODE_NF_CONNTRACK_STATS]
        return families
