"""node_exporter's meminfo collector (Linux).

One gauge per /proc/meminfo line: `Field: N kB` becomes
node_memory_Field_bytes (N * 1024), a line without a unit (HugePages_Total)
becomes node_memory_Field; "Active(anon)" is named "Active_anon".
"""

from __future__ import annotations

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import METRIC_NAME, line_error
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register


def parse_meminfo(text: str, source: str = "meminfo") -> list[tuple[str, float, bool]]:
    """/proc/meminfo as (field, value, in_bytes): kB values are converted to
    bytes (in_bytes True); unitless values are kept (in_bytes False).
    Blank lines are skipped (some kernels print one); a line without a value,
    with a non-numeric value or with more than one unit is an error, like
    node_exporter's "invalid line in meminfo"."""
    fields: list[tuple[str, float, bool]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3) or not parts[0].endswith(":"):
            raise line_error(source, lineno, line, "invalid line in meminfo")
        key = parts[0][:-1]
        if "(" in key:
            # Active(anon) -> Active_anon (node_exporter's `\((.*)\)` -> `_$1`)
            open_at = key.find("(")
            close_at = key.rfind(")")
            if close_at > open_at:
                key = key[:open_at] + "_" + key[open_at + 1 : close_at] + key[close_at + 1 :]
        try:
            value = float(parts[1])
        except ValueError:
            raise line_error(source, lineno, line, "invalid value in meminfo") from None
        if len(parts) == 3:
            fields.append((key, value * 1024.0, True))
        else:
            fields.append((key, value, False))
    if not fields:
        raise ValueError(f"{source}: empty")
    return fields


@register
class MeminfoCollector(Collector):
    name = "meminfo"
    group = "host"
    description = "Memory statistics from /proc/meminfo (node_memory_*)."

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("meminfo")
        families = []
        seen: set[str] = set()
        for key, value, in_bytes in parse_meminfo(self.host.read_text(path), str(path)):
            name = key + "_bytes" if in_bytes else key
            if name in seen or METRIC_NAME.fullmatch(key) is None:
                # a repeated or unnameable field would break the whole scrape
                continue
            seen.add(name)
            families.append((cat.MEMORY_BYTES if in_bytes else cat.MEMORY).single(value, field=key))
        return families
