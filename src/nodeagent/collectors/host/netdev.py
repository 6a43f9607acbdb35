"""node_exporter's netdev collector (Linux).

node_network_{receive,transmit}_<column>_total{device} for the 16 columns of
/proc/net/dev, plus node_network_receive_nohandler_total from sysfs
statistics/rx_nohandler: node_exporter 1.5 reads netlink by default, which
carries that one extra counter; its other netlink counters are folded into
the /proc/net/dev columns exactly as the kernel folds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import DeviceFilter, line_error
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register

COLUMNS = len(cat.NETDEV_FIELDS)
NOHANDLER = ("statistics/rx_nohandler",)


@dataclass(frozen=True)
class NetdevOptions:
    # regular expression (searched) of interfaces to leave out; "" leaves none out.
    # Upstream node_exporter has no default here; Debian's build (and nodeagent) leave out lo.
    device_exclude: str = field(default="^lo$", metadata={"regex": True})
    # regular expression of interfaces to keep; "" keeps all
    device_include: str = field(default="", metadata={"regex": True})
    # also export node_network_receive_nohandler_total (one sysfs read per interface)
    receive_nohandler: bool = True


def parse_netdev(text: str, source: str = "net/dev") -> list[tuple[str, list[float]]]:
    """/proc/net/dev as (interface, 16 counters in column order). The two
    header lines are skipped; a line with another number of columns or a
    non-numeric counter is an error."""
    devices = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if "|" in line or not line.strip():
            continue
        name, sep, rest = line.rpartition(":")
        name = name.strip()
        if not sep or not name:
            raise line_error(source, lineno, line, "missing interface name")
        parts = rest.split()
        if len(parts) != COLUMNS:
            raise line_error(source, lineno, line, f"expected {COLUMNS} counters, got {len(parts)}")
        try:
            devices.append((name, [float(int(v)) for v in parts]))
        except ValueError:
            raise line_error(source, lineno, line, "non-numeric counter") from None
    return devices


@register
class NetdevCollector(Collector):
    name = "netdev"
    group = "host"
    description = "Network interface counters from /proc/net/dev (node_network_*_total)."
    Options = NetdevOptions

    def __init__(self, host: Host, options: NetdevOptions, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._filter = DeviceFilter(options.device_exclude, options.device_include)

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("net", "dev")
        devices = parse_netdev(self.host.read_text(path), str(path))
        families = [spec.family() for spec in cat.NETDEV_SPECS]
        adders = [fam.samples.append for fam in families]
        nohandler = cat.NETDEV_RECEIVE_NOHANDLER.family()
        net = self.host.sys("class", "net")
        for name, counters in devices:
            if self._filter.ignored(name):
                continue
            labels = (name,)
            for add, value in zip(adders, counters, strict=False):
                add((labels, value))
            if self.options.receive_nohandler:
                raw = self.host.read_attrs(net / name, NOHANDLER)[NOHANDLER[0]]
                if raw is not None and raw.isdigit():
                    nohandler.add(labels, float(raw))
        families.append(nohandler)
        return families
