"""node_exporter's pressure collector: PSI totals from /proc/pressure/{cpu,io,memory}."""

from __future__ import annotations

import errno

from nodeagent.catalogue import host_extra as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

RESOURCES = ("cpu", "io", "memory")
_SPECS = {
    ("cpu", "some"): cat.NODE_PRESSURE_CPU_WAITING,
    ("cpu", "full"): cat.NODE_PRESSURE_CPU_STALLED,
    ("io", "some"): cat.NODE_PRESSURE_IO_WAITING,
    ("io", "full"): cat.NODE_PRESSURE_IO_STALLED,
    ("memory", "some"): cat.NODE_PRESSURE_MEMORY_WAITING,
    ("memory", "full"): cat.NODE_PRESSURE_MEMORY_STALLED,
}


def parse_pressure(text: str, source: str = "pressure") -> dict[str, float]:
    """'some avg10=0.00 avg60=0.00 avg300=0.00 total=1234' lines -> {"some": seconds, "full": seconds}.

    total is in microseconds. Lines with another prefix are ignored, as in
    prometheus/procfs; a some/full line without a valid total is an error."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind not in ("some", "full"):
            continue
        total = None
        for field in rest.split():
            key, sep, value = field.partition("=")
            if sep and key == "total":
                total = value
        if total is None or not total.isdigit():
            raise ValueError(f"{source}: no valid total= in line {line[:120]!r}")
        out[kind] = int(total) / 1e6
    return out


@register
class PressureCollector(Collector):
    name = "pressure"
    group = "host"
    description = "Pressure stall information (node_pressure_*) from /proc/pressure; absent PSI reports nothing."

    def collect(self) -> list[MetricFamily]:
        families = []
        for resource in RESOURCES:
            path = self.host.proc("pressure", resource)
            try:
                text = self.host.read_text(path)
            except OSError as e:
                # kernel without CONFIG_PSI (ENOENT) or booted with psi=0 (EOPNOTSUPP)
                if e.errno in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENOTDIR):
                    continue
                raise
            families += [_SPECS[(resource, kind)].single(seconds)
                         for kind, seconds in parse_pressure(text, str(path)).items()]
        return families
