"""node_exporter's netclass collector (Linux, sysfs variant: 1.5's default).

Per interface in /sys/class/net: node_network_up (operstate is "up"),
node_network_info{address,broadcast,duplex,ifalias,operstate} and one gauge
or counter per numeric attribute (mtu_bytes, speed_bytes, carrier,
carrier_changes_total, flags, iface_id, ...). An attribute the driver does
not implement (reading it fails, e.g. the speed or carrier of a link that is
down) is left out for that interface, as node_exporter does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import DeviceFilter, parse_int
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register

# string attributes, in node_network_info's label order (device goes third)
INFO_ATTRS = ("address", "broadcast", "duplex", "ifalias", "operstate")


@dataclass(frozen=True)
class NetclassOptions:
    # regular expression (searched) of interfaces to leave out (node_exporter's
    # --collector.netclass.ignored-devices); "^$" and "" leave none out
    ignored_devices: str = field(default="^$", metadata={"regex": True})
    # leave out node_network_speed_bytes where the driver reports -1 (unknown);
    # node_exporter exports -125000 for those unless told otherwise
    ignore_invalid_speed: bool = False


def interface_values(attrs: dict[str, str | None], ignore_invalid_speed: bool = False) -> dict[str, int]:
    """The numeric node_network_<name> values of one interface from its sysfs
    attribute texts ({"mtu": "9001", "flags": "0x1003", "speed": None, ...}):
    {"mtu_bytes": 9001, "flags": 4099, ...}; unreadable or non-numeric
    attributes are left out, speed is converted from Mb/s to bytes/s."""
    values: dict[str, int] = {}
    for name, attr, _ in cat.NETCLASS_PROPERTIES:
        value = parse_int(attrs.get(attr))
        if value is None:
            continue
        if attr == "speed":
            if value < 0 and ignore_invalid_speed:
                continue
            value *= 125_000  # Mb/s -> bytes/s
        values[name] = value
    return values


@register
class NetclassCollector(Collector):
    name = "netclass"
    group = "host"
    description = "Network interface properties from /sys/class/net (node_network_up, _info, _mtu_bytes, ...)."
    Options = NetclassOptions

    def __init__(self, host: Host, options: NetclassOptions, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._filter = DeviceFilter(options.ignored_devices, "")
        self._attrs = tuple({attr for _, attr, _ in cat.NETCLASS_PROPERTIES} | set(INFO_ATTRS))

    def collect(self) -> list[MetricFamily]:
        net = self.host.sys("class", "net")
        up = cat.NETWORK_UP.family()
        info = cat.NETWORK_INFO.family()
        props = {name: cat.NETCLASS_SPECS[name].family() for name, _, _ in cat.NETCLASS_PROPERTIES}
        for device in self.host.listdir(net):
            if self._filter.ignored(device):
                continue
            attrs = self.host.read_attrs(net / device, self._attrs)
            operstate = attrs["operstate"]
            if operstate is None and attrs["ifindex"] is None:
                # not an interface (bonding_masters is a file) or it went away meanwhile
                continue
            labels = (device,)
            up.add(labels, 1.0 if operstate == "up" else 0.0)
            info.add(
                (attrs["address"] or "", attrs["broadcast"] or "", device, attrs["duplex"] or "",
                 attrs["ifalias"] or "", operstate or ""),
                1.0,
            )
            for name, value in interface_values(attrs, self.options.ignore_invalid_speed).items():
                props[name].add(labels, float(value))
        return [up, info, *props.values()]
