"""node_exporter's sockstat collector (Linux).

node_sockstat_sockets_used and node_sockstat_<PROTO>_<state> gauges from
/proc/net/sockstat and /proc/net/sockstat6 (either may be absent when the
address family is disabled); `mem` (pages) is also exported in bytes as
<PROTO>_mem_bytes.
"""

from __future__ import annotations

import resource

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import METRIC_NAME, line_error
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

# the per-protocol keys node_exporter knows, in its order; others are ignored
STATES = ("inuse", "orphan", "tw", "alloc", "mem", "memory")


def parse_sockstat(text: str, source: str = "net/sockstat") -> tuple[int | None, list[tuple[str, dict[str, int]]]]:
    """(sockets used or None, [(protocol, {key: value})]) from a sockstat file.
    Every line is "PROTO: key value key value ..."; an odd number of
    key/value fields or a non-integer value is an error (as in procfs)."""
    used: int | None = None
    protocols: list[tuple[str, dict[str, int]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].endswith(":"):
            raise line_error(source, lineno, line, "malformed sockstat line")
        if len(fields) % 2 == 0:
            raise line_error(source, lineno, line, "odd number of key/value fields")
        try:
            kvs = {fields[i]: int(fields[i + 1]) for i in range(1, len(fields), 2)}
        except ValueError:
            raise line_error(source, lineno, line, "non-integer value") from None
        proto = fields[0][:-1]
        if proto == "sockets":
            used = kvs.get("used", 0)
        else:
            protocols.append((proto, kvs))
    return used, protocols


def sockstat_samples(protocols: list[tuple[str, dict[str, int]]], page_size: int) -> list[tuple[str, str, str, int]]:
    """(metric suffix, protocol, state, value) for each known key, plus
    mem_bytes = mem pages * page_size where mem is given."""
    out = []
    for proto, kvs in protocols:
        for state in STATES:
            value = kvs.get(state)
            if value is not None:
                out.append((f"{proto}_{state}", proto, state, value))
        mem = kvs.get("mem")
        if mem is not None:
            out.append((f"{proto}_mem_bytes", proto, "mem_bytes", mem * page_size))
    return out


@register
class SockstatCollector(Collector):
    name = "sockstat"
    group = "host"
    description = "Socket counts and memory per protocol from /proc/net/sockstat and sockstat6."

    page_size = resource.getpagesize()

    def collect(self) -> list[MetricFamily]:
        families: dict[str, MetricFamily] = {}
        for filename, ipv6 in (("sockstat", False), ("sockstat6", True)):
            path = self.host.proc("net", filename)
            text = self.host.read_optional(path)
            if text is None:
                continue
            used, protocols = parse_sockstat(text, str(path))
            if used is not None and not ipv6:
                fam = cat.SOCKSTAT_SOCKETS_USED.single(float(used))
                families[fam.name] = fam
            for suffix, proto, state, value in sockstat_samples(protocols, self.page_size):
                if METRIC_NAME.fullmatch(suffix) is None:
                    continue
                fam = cat.SOCKSTAT.single(float(value), field=suffix, protocol=proto, state=state)
                families.setdefault(fam.name, fam)  # the first of a repeated name wins
        return list(families.values())
