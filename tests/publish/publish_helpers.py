"""Reading generated CloudWatch dashboards back, independently of the code
that writes them: which metrics (namespace, name, dimensions) each widget
names, whether directly, through SEARCH or through metric math."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

SEARCH = re.compile(r"SEARCH\('\{(?P<schema>[^}]*)\}\s*(?P<terms>[^']*)',\s*'(?P<stat>\w+)',\s*(?P<period>\d+)\)")
TERM = re.compile(r'(?P<key>\w+)="(?P<value>[^"]*)"')
IDENT = re.compile(r"\b[a-z][a-zA-Z0-9_]*\b")


@dataclass
class Ref:
    widget: str
    kind: str  # "metric" or "search"
    namespace: str
    name: str
    dims: dict[str, str | None] = field(default_factory=dict)  # None: any value (SEARCH)

    @property
    def key(self) -> tuple[str, str, frozenset[str]]:
        return self.namespace, self.name, frozenset(self.dims)


@dataclass
class WidgetProblems:
    refs: list[Ref] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_dashboard(body: dict[str, Any]) -> WidgetProblems:
    out = WidgetProblems()
    for w in body["widgets"]:
        if w["type"] != "metric":
            continue
        title = w["properties"].get("title", "?")
        ids: set[str] = set()
        expressions: list[str] = []
        for line in w["properties"]["metrics"]:
            if len(line) == 1 and isinstance(line[0], dict):
                opts = line[0]
                expr = opts["expression"]
                ids.add(opts.get("id", ""))
                searches = list(SEARCH.finditer(expr))
                for sm in searches:
                    schema = [p.strip().strip('"') for p in sm["schema"].split(",")]
                    terms = dict((t["key"], t["value"]) for t in TERM.finditer(sm["terms"]))
                    name = terms.pop("MetricName", None)
                    if name is None:
                        out.problems.append(f"{title}: SEARCH without MetricName: {expr}")
                        continue
                    dims: dict[str, str | None] = {d: None for d in schema[1:]}
                    for k, v in terms.items():
                        if k not in dims:
                            out.problems.append(f"{title}: filter {k} is not in the SEARCH schema {schema}")
                        dims[k] = v
                    out.refs.append(Ref(title, "search", schema[0], name, dims))
                if not searches:
                    expressions.append(expr)
                elif "SEARCH(" in SEARCH.sub("", expr):
                    out.problems.append(f"{title}: unparsed SEARCH in {expr}")
                continue
            ns, name, *rest = line
            opts = rest[-1] if rest and isinstance(rest[-1], dict) else {}
            pairs = rest[:-1] if opts else rest
            if len(pairs) % 2:
                out.problems.append(f"{title}: odd dimension list {line}")
                continue
            out.refs.append(Ref(title, "metric", ns, name, dict(zip(pairs[::2], pairs[1::2]))))
            if "id" in opts:
                ids.add(opts["id"])
        for expr in expressions:
            for ident in IDENT.findall(expr):
                if ident not in ids:
                    out.problems.append(f"{title}: expression {expr!r} uses {ident!r}, which no line defines")
    return out


def write_config(path: os.PathLike[str] | str, roles: tuple[str, ...] = ("head", "login", "compute"),
                 extra: str = "") -> str:
    text = "cloudwatch:\n  roles: [" + ", ".join(roles) + "]\n" + extra
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)
