"""node_exporter's filefd collector: node_filefd_allocated / _maximum from /proc/sys/fs/file-nr."""

from __future__ import annotations

from nodeagent.catalogue import host_extra as cat
from nodeagent.collectors.host._values import go_uint
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register


def parse_file_nr(text: str, source: str = "file-nr") -> tuple[int, int]:
    """'30144\\t0\\t9223372036854775807' -> (allocated, maximum)."""
    parts = text.split()
    if len(parts) < 3:
        raise ValueError(f"{source}: expected 3 fields, got {len(parts)}: {text[:80]!r}")
    try:
        return go_uint(parts[0]), go_uint(parts[2])
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


@register
class FilefdCollector(Collector):
    name = "filefd"
    group = "host"
    description = "File handles allocated and the system maximum (node_filefd_*) from /proc/sys/fs/file-nr."

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("sys", "fs", "file-nr")
        allocated, maximum = parse_file_nr(self.host.read_text(path), str(path))
        return [cat.NODE_FILEFD_ALLOCATED.single(allocated), cat.NODE_FILEFD_MAXIMUM.single(maximum)]
