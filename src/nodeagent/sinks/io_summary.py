"""Per-node network and FSx for Lustre throughput for CloudWatch, derived from
the host group's counters (catalogue/summaries.py).

Throughput is the increase of the summed counters between two publishes
divided by the time between them, so the first publish after start carries
none. Each series (device, file system) is compared with its own previous
reading (counters.py): a device or file system that appears counts from its
first reading on, one that disappears stops counting, and a counter that went
back (a driver reload, a remount) counts from zero.

Use: `summary = IoSummary(role, instance_id)` once, then
`summary.derive(families, timestamp)` on each publish.
"""

from __future__ import annotations

from collections.abc import Iterable

from nodeagent.catalogue import host_extra as hx
from nodeagent.catalogue.spec import MetricSpec
from nodeagent.catalogue.summaries import LUSTRE_READ, LUSTRE_WRITE, NETWORK_RX, NETWORK_TX
from nodeagent.model import MetricFamily, is_finite
from nodeagent.sinks.counters import total_increase

NET_RX = "node_network_receive_bytes_total"
NET_TX = "node_network_transmit_bytes_total"
EXCLUDED_DEVICES = frozenset({"lo"})

# input family -> summary spec
SOURCES: dict[str, MetricSpec] = {
    NET_RX: NETWORK_RX,
    NET_TX: NETWORK_TX,
    hx.NODEAGENT_LUSTRE_READ_BYTES.name: LUSTRE_READ,
    hx.NODEAGENT_LUSTRE_WRITE_BYTES.name: LUSTRE_WRITE,
}


def _series(fam: MetricFamily) -> dict[tuple[str, ...], float]:
    dev = fam.labelnames.index("device") if "device" in fam.labelnames else None
    out: dict[tuple[str, ...], float] = {}
    for labels, value in fam.samples:
        if dev is not None and labels[dev] in EXCLUDED_DEVICES:
            continue
        if is_finite(value):
            out[labels] = value
    return out


class IoSummary:
    def __init__(self, role: str, instance_id: str) -> None:
        self.role = role
        self.instance_id = instance_id
        self._last: dict[str, tuple[float, dict[tuple[str, ...], float]]] = {}

    def derive(self, families: Iterable[MetricFamily], timestamp: float) -> list[MetricFamily]:
        out: list[MetricFamily] = []
        seen: set[str] = set()
        for fam in families:
            spec = SOURCES.get(fam.name)
            if spec is None or fam.name in seen:
                continue
            seen.add(fam.name)
            current = _series(fam)
            previous = self._last.get(fam.name)
            self._last[fam.name] = (timestamp, current)
            if previous is None or timestamp <= previous[0]:
                continue
            rate = total_increase(previous[1], current) / (timestamp - previous[0])
            summary = spec.family()
            summary.add((self.role, self.instance_id), round(rate, 3))
            out.append(summary)
        for name in list(self._last):
            if name not in seen:
                del self._last[name]  # the collector stopped: start over when it is back
        return out
