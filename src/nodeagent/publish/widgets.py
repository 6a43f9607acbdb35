"""CloudWatch dashboard widgets built from published metrics only.

A metric widget's lines are `Metric` (one series, every dimension given),
`Search` (a SEARCH expression over one metric's exact dimension set: the per
node graphs, where instance ids are not known in advance) and `Expr` (metric
math over the other lines' ids). Each is checked against the catalogue view
(`Published`) when it is built: a line cannot name a metric, or a dimension
set, that no role publishes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from nodeagent.publish.published import CwMetric

GRID_WIDTH = 24
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+=,\- ]*$")


def _quote(value: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise ValueError(f"unsupported character in {value!r}")
    return f'"{value}"'


@dataclass(frozen=True)
class Metric:
    metric: CwMetric
    dims: dict[str, str] = field(default_factory=dict)  # label name -> value
    stat: str | None = None
    label: str | None = None
    id: str | None = None
    visible: bool = True

    def render(self, namespace: str) -> list[Any]:
        if set(self.dims) != set(self.metric.labels):
            raise ValueError(
                f"{self.metric.name}: dimensions {sorted(self.dims)} given, published with {sorted(self.metric.labels)}"
            )
        line: list[Any] = [namespace, self.metric.name]
        for label in self.metric.labels:
            line += [self.metric.dimension_for(label), self.dims[label]]
        opts: dict[str, Any] = {}
        if self.stat:
            opts["stat"] = self.stat
        if self.label is not None:
            opts["label"] = self.label
        if self.id:
            opts["id"] = self.id
        if not self.visible:
            opts["visible"] = False
        if opts:
            line.append(opts)
        return line


def search_expression(namespace: str, metric: CwMetric, filters: dict[str, str], stat: str, period: int) -> str:
    """SEARCH over exactly the metric's dimension set, filtered on some dimension values."""
    for label in filters:
        if label not in metric.labels:
            raise ValueError(f"{metric.name} has no dimension for label {label!r}")
    schema = ",".join([_quote(namespace), *sorted(metric.dimensions)])
    terms = [f"MetricName={_quote(metric.name)}"]
    terms += [f"{metric.dimension_for(label)}={_quote(value)}" for label, value in sorted(filters.items())]
    return f"SEARCH('{{{schema}}} {' '.join(terms)}', '{stat}', {period})"


@dataclass(frozen=True)
class Search:
    metric: CwMetric
    filters: dict[str, str] = field(default_factory=dict)
    stat: str = "Average"
    label: str | None = None
    id: str | None = None
    wrap: str | None = None  # a metric-math function applied to the result, e.g. "SUM"
    visible: bool = True

    def render(self, namespace: str, period: int) -> dict[str, Any]:
        expr = search_expression(namespace, self.metric, self.filters, self.stat, period)
        if self.wrap:
            expr = f"{self.wrap}({expr})"
        out: dict[str, Any] = {"expression": expr}
        if self.label is not None:
            out["label"] = self.label
        if self.id:
            out["id"] = self.id
        if not self.visible:
            out["visible"] = False
        return out


@dataclass(frozen=True)
class Expr:
    expression: str
    id: str
    label: str

    def render(self) -> dict[str, Any]:
        return {"expression": self.expression, "id": self.id, "label": self.label}


Line = Metric | Search | Expr


class Layout:
    """Places widgets left to right in rows of GRID_WIDTH columns."""

    def __init__(self, namespace: str, region: str) -> None:
        self.namespace = namespace
        self.region = region
        self.widgets: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def _place(self, kind: str, properties: dict[str, Any], width: int, height: int) -> None:
        if self._x + width > GRID_WIDTH:
            self.newline()
        self.widgets.append(
            {"type": kind, "x": self._x, "y": self._y, "width": width, "height": height, "properties": properties}
        )
        self._x += width
        self._row_height = max(self._row_height, height)

    def newline(self) -> None:
        if self._x:
            self._y += self._row_height
            self._x = 0
            self._row_height = 0

    def text(self, markdown: str, width: int = GRID_WIDTH, height: int = 2) -> None:
        self._place("text", {"markdown": markdown}, width, height)

    def metrics(
        self,
        title: str,
        lines: list[Line],
        *,
        stat: str = "Average",
        period: int = 300,
        width: int = 12,
        height: int = 6,
        y_label: str | None = None,
        y_min: float | None = 0,
        y_max: float | None = None,
        stacked: bool = False,
    ) -> None:
        rendered: list[Any] = []
        auto = 0
        ids: set[str] = set()
        for line in lines:
            if line.id:
                if line.id in ids:
                    raise ValueError(f"{title}: id {line.id} used twice")
                ids.add(line.id)
        for line in lines:
            if isinstance(line, Metric):
                rendered.append(line.render(self.namespace))
            elif isinstance(line, Search):
                if line.id is None:
                    auto += 1
                    line = Search(line.metric, line.filters, line.stat, line.label, f"s{auto}", line.wrap, line.visible)
                rendered.append([line.render(self.namespace, period)])
            else:
                rendered.append([line.render()])
        left: dict[str, Any] = {"showUnits": False}
        if y_label:
            left["label"] = y_label
        if y_min is not None:
            left["min"] = y_min
        if y_max is not None:
            left["max"] = y_max
        props: dict[str, Any] = {
            "title": title,
            "view": "timeSeries",
            "stacked": stacked,
            "region": self.region,
            "stat": stat,
            "period": period,
            "metrics": rendered,
            "yAxis": {"left": left},
        }
        self._place("metric", props, width, height)

    def logs(self, title: str, query: str, *, view: str = "table", width: int = 12, height: int = 6) -> None:
        self._place("log", {"title": title, "query": query, "region": self.region, "view": view}, width, height)

    def body(self) -> dict[str, Any]:
        return {"start": "-PT6H", "periodOverride": "inherit", "widgets": self.widgets}

    def json(self) -> str:
        return json.dumps(self.body(), indent=1, sort_keys=False)
