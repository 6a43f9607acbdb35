"""Small helpers shared by the node_exporter-compatible host collectors."""

from __future__ import annotations

import re

# A Prometheus metric name (node_exporter would fail the scrape on anything else).
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def parse_int(text: str | None) -> int | None:
    """A sysfs number the way Go's strconv.ParseInt(s, 0, 64) reads it
    (decimal, or 0x.. hex as in `flags`); None when absent or not a number."""
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        # int(x, 0) refuses leading zeros ("010"); Go reads them as octal.
        if len(text) > 1 and text[0] == "0" and text.isdigit():
            return int(text, 8)
        return None


def line_error(source: str, lineno: int, line: str, problem: str) -> ValueError:
    """A ValueError naming the file and line, with the line (shortened) quoted."""
    shown = line if len(line) <= 120 else line[:117] + "..."
    return ValueError(f"{source}:{lineno}: {problem}: {shown!r}")


class DeviceFilter:
    """node_exporter's deviceFilter: ignored when the exclude pattern matches
    or an include pattern is set and does not match."""

    def __init__(self, exclude: str, include: str) -> None:
        self.exclude = re.compile(exclude) if exclude else None
        self.include = re.compile(include) if include else None

    def ignored(self, name: str) -> bool:
        if self.exclude is not None and self.exclude.search(name):
            return True
        return self.include is not None and not self.include.search(name)
