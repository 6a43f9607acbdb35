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
    # the common case first: a whole number (is_integer is False for NaN and infinities)
    if style == "go" and value.is_integer() and -1e15 < value < 1e15:
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


LabelCache = dict[tuple[tuple[str, ...], tuple[str, ...]], str]


def render_family(fam: MetricFamily, out: list[str], cache: LabelCache | None = None) -> None:
    name = fam.name
    out.append(f"# HELP {name} {escape_help(fam.help)}\n# TYPE {name} {fam.type}\n")
    labelnames = fam.labelnames
    style = fam.value_format
    if not labelnames:
        for _, value in fam.samples:
            out.append(f"{name} {format_value(value, style)}\n")
        return
    # The same label set recurs across families (a GPU's identity on every
    # DCGM field, a disk on every node_disk_* family): build each label string once.
    if cache is None:
        cache = {}
    prefixes: list[str] | None = None
    omit = fam.omit_empty_labels
    for labelvalues, value in fam.samples:
        key = (labelnames, labelvalues) if not omit else (labelnames, (*labelvalues, "\0omit"))
        labels = cache.get(key)
        if labels is None:
            if prefixes is None:
                prefixes = [f'{ln}="' for ln in labelnames]
            labels = cache[key] = '",'.join(
                p + escape_label_value(v) for p, v in zip(prefixes, labelvalues, strict=True) if v or not omit
            )
        if labels:
            out.append(f'{name}{{{labels}"}} {format_value(value, style)}\n')
        else:
            out.append(f"{name} {format_value(value, style)}\n")


def render(families: Iterable[MetricFamily], bad: list[str] | None = None) -> bytes:
    """The exposition text. A family that cannot be written (a value that is
    not a number, a label value that is not a string) is left out whole and
    its name added to `bad`, so one collector's mistake cannot fail a scrape."""
    out: list[str] = []
    cache: LabelCache = {}
    for fam in families:
        if not fam.samples:
            continue
        mark = len(out)
        try:
            render_family(fam, out, cache)
        except (TypeError, ValueError, AttributeError):
            del out[mark:]
            if bad is not None:
                bad.append(fam.name)
    return "".join(out).encode("utf-8")
