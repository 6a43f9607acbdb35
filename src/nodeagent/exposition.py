"""Prometheus text exposition format 0.0.4, written by hand for exact output.

The output for a family is:

    # HELP name help
    # TYPE name type
    name{label="value",...} value

Label order is the family's declared order (dcgm-exporter's order matters to
users who diff outputs); families come in the order given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from nodeagent.model import MetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def escape_help(text: str) -> str:
    if "\\" in text or "\n" in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n")
    return text


def format_value(value: float, style: str = "go") -> str:
    if isinstance(value, int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if style == "fixed6":
        return f"{value:f}"
    if style == "int" or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(value)


def render_family(fam: MetricFamily, out: list[str]) -> None:
    name = fam.name
    out.append(f"# HELP {name} {escape_help(fam.help)}\n# TYPE {name} {fam.type}\n")
    labelnames = fam.labelnames
    style = fam.value_format
    if not labelnames:
        for _, value in fam.samples:
            out.append(f"{name} {format_value(value, style)}\n")
        return
    prefixes = [f'{ln}="' for ln in labelnames]
    for labelvalues, value in fam.samples:
        pairs = '",'.join(p + escape_label_value(v) for p, v in zip(prefixes, labelvalues, strict=True))
        out.append(f'{name}{{{pairs}"}} {format_value(value, style)}\n')


def render(families: Iterable[MetricFamily]) -> bytes:
    out: list[str] = []
    for fam in families:
        if fam.samples:
            render_family(fam, out)
    return "".join(out).encode("utf-8")
