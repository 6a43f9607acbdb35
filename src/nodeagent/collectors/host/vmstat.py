"""node_exporter's vmstat collector (Linux).

node_vmstat_<field> (untyped) for the /proc/vmstat fields matching
node_exporter's default pattern (OOM kills, paging, swapping, page faults).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import METRIC_NAME, line_error
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register

DEFAULT_FIELDS = "^(oom_kill|pgpg|pswp|pg.*fault).*"


@dataclass(frozen=True)
class VmstatOptions:
    # regular expression (searched) of /proc/vmstat fields to export
    fields: str = field(default=DEFAULT_FIELDS, metadata={"regex": True})


def parse_vmstat(text: str, source: str = "vmstat") -> list[tuple[str, str]]:
    """/proc/vmstat as (field, value text) pairs; a line that is not
    "name value" is an error (node_exporter fails on it too)."""
    pairs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise line_error(source, lineno, line, "expected 'name value'")
        pairs.append((parts[0], parts[1]))
    return pairs


@register
class VmstatCollector(Collector):
    name = "vmstat"
    group = "host"
    description = "Paging, swapping, page faults and OOM kills from /proc/vmstat (node_vmstat_*)."
    Options = VmstatOptions

    def __init__(self, host: Host, options: VmstatOptions, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._fields = re.compile(options.fields)
        # field -> exported? (the set of fields is fixed per kernel)
        self._wanted: dict[str, bool] = {}

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("vmstat")
        families = []
        wanted = self._wanted
        for name, raw in parse_vmstat(self.host.read_text(path), str(path)):
            selected = wanted.get(name)
            if selected is None:
                selected = wanted[name] = (
                    self._fields.search(name) is not None and METRIC_NAME.fullmatch(name) is not None
                )
            if not selected:
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{path}: invalid value {raw!r} for {name}") from None
            families.append(cat.VMSTAT.single(value, field=name))
        return families
