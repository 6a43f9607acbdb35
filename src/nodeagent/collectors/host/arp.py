"""node_exporter's arp collector: node_arp_entries{device} from /proc/net/arp."""

from __future__ import annotations

from nodeagent.catalogue import host_extra as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register


def parse_arp(text: str, source: str = "arp") -> dict[str, int]:
    """/proc/net/arp -> entries per device (the header line is skipped)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        columns = line.split()
        if not columns:
            continue
        if len(columns) < 6:
            raise ValueError(f"{source}: unexpected ARP table format in line {line[:120]!r}")
        if columns[0] == "IP":  # header: "IP address  HW type ..."
            continue
        device = columns[5]
        counts[device] = counts.get(device, 0) + 1
    return counts


@register
class ArpCollector(Collector):
    name = "arp"
    group = "host"
    description = "ARP table entries per network device (node_arp_entries) from /proc/net/arp."

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("net", "arp")
        counts = parse_arp(self.host.read_text(path), str(path))
        fam = cat.NODE_ARP_ENTRIES.family()
        for device in sorted(counts):
            fam.add((device,), counts[device])
        return [fam]
