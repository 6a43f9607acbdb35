"""node_exporter's netstat collector (Linux).

node_netstat_<Protocol>_<Field> (untyped) from /proc/net/netstat and
/proc/net/snmp (header/value line pairs) and /proc/net/snmp6 (one
"Icmp6InMsgs N" per line; absent when IPv6 is off), for the fields matching
node_exporter 1.5's default pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import METRIC_NAME
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register

# node_exporter 1.5's --collector.netstat.fields default (1.6 added TcpExt_TCPOFOQueue)
DEFAULT_FIELDS = (
    "^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    "|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
    "|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    "|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)

# (protocol, field, value text)
Stat = tuple[str, str, str]


@dataclass(frozen=True)
class NetstatOptions:
    # regular expression (searched) of Protocol_Field names to export
    fields: str = field(default=DEFAULT_FIELDS, metadata={"regex": True})


def parse_netstat(text: str, source: str = "net/netstat") -> list[Stat]:
    """/proc/net/netstat or /proc/net/snmp: pairs of lines, names then values,
    both starting with "Protocol:". An unpaired line, a protocol mismatch or a
    different number of names and values is an error."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) % 2:
        raise ValueError(f"{source}: odd number of lines ({len(lines)}): truncated?")
    stats: list[Stat] = []
    for i in range(0, len(lines), 2):
        names = lines[i].split()
        values = lines[i + 1].split()
        protocol = names[0]
        if not protocol.endswith(":") or values[0] != protocol:
            raise ValueError(f"{source}:{i + 1}: header {protocol!r} and values {values[0]!r} do not pair up")
        if len(names) != len(values):
            raise ValueError(
                f"{source}:{i + 1}: {protocol[:-1]} has {len(names) - 1} names but {len(values) - 1} values"
            )
        proto = protocol[:-1]
        stats.extend((proto, name, value) for name, value in zip(names[1:], values[1:], strict=False))
    return stats


def parse_snmp6(text: str) -> list[Stat]:
    """/proc/net/snmp6: "Icmp6InMsgs 12" lines; the protocol is the name up
    to its first "6". Lines without a "6" or a value are skipped, as in
    node_exporter."""
    stats: list[Stat] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name = parts[0]
        six = name.find("6")
        if six < 0:
            continue
        stats.append((name[: six + 1], name[six + 1 :], parts[1]))
    return stats


@register
class NetstatCollector(Collector):
    name = "netstat"
    group = "host"
    description = "Network protocol counters from /proc/net/netstat, snmp and snmp6 (node_netstat_*)."
    Options = NetstatOptions

    def __init__(self, host: Host, options: NetstatOptions, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._fields = re.compile(options.fields)
        # Protocol_Field -> exported?  (the set of names is fixed per kernel)
        self._wanted: dict[str, bool] = {}

    def _selected(self, key: str) -> bool:
        wanted = self._wanted.get(key)
        if wanted is None:
            wanted = self._wanted[key] = (
                self._fields.search(key) is not None and METRIC_NAME.fullmatch(key) is not None
            )
        return wanted

    def collect(self) -> list[MetricFamily]:
        by_protocol: dict[str, list[Stat]] = {}
        for name in ("netstat", "snmp"):
            path = self.host.proc("net", name)
            for stat in parse_netstat(self.host.read_text(path), str(path)):
                by_protocol.setdefault(stat[0], []).append(stat)
        snmp6 = self.host.read_optional(self.host.proc("net", "snmp6"))
        if snmp6 is not None:
            for stat in parse_snmp6(snmp6):
                by_protocol.setdefault(stat[0], []).append(stat)
        families: dict[str, MetricFamily] = {}
        for stats in by_protocol.values():
            for proto, name, raw in stats:
                key = f"{proto}_{name}"
                if not self._selected(key):
                    continue
                try:
                    value = float(raw)
                except ValueError:
                    raise ValueError(f"netstat: invalid value {raw!r} for {key}") from None
                if key not in families:
                    families[key] = cat.NETSTAT.single(value, field=key, stat=proto + name)
        return list(families.values())
