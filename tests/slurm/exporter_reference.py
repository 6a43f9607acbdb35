"""The Slurm exporters :9341 stands in for, as reference lists the tests
compare against: every metric each exporter declares (name, type, label
names) and every metric name the public Grafana dashboards built for it
query. The lists live in tests/fixtures/slurm/exporters/; each names the
repository, the release and the files it was read from.

Reading a list (the tests): `declared(path)` and `dashboard_names(path)`.

Writing one (by hand, once per release), from a git clone of the exporter:

    python tests/slurm/exporter_reference.py metrics CLONE OWNER/REPO TAG > FILE
    python tests/slurm/exporter_reference.py dashboards CLONE OWNER/REPO TAG DIR > FILE

`metrics` reads the Go sources at TAG for prometheus.NewDesc(...) and the
New{Gauge,Counter,Histogram}Vec(...) options; label names given as a
variable are resolved in the same file, and the exporter's default flags
decide where a variable has two values (DEFAULT_LABELS below). A type comes
from the MustNewConstMetric(...) call that emits the descriptor.
`dashboards` reads every *.json under DIR at TAG and lists the metric names
in its queries (expr, query, definition), string literals left out.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

EXPORTERS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "slurm" / "exporters"


@dataclass(frozen=True)
class Declared:
    name: str
    type: str
    labels: tuple[str, ...]
    source: str


def declared(path: Path) -> dict[str, Declared]:
    """name -> Declared, from a list written by `metrics`."""
    out: dict[str, Declared] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, type_, labels, source = line.split()
        out[name] = Declared(name, type_, () if labels == "-" else tuple(labels.split(",")), source)
    return out


def dashboard_names(path: Path) -> dict[str, tuple[str, ...]]:
    """metric name -> the dashboards that query it, from a list written by
    `dashboards`."""
    out: dict[str, tuple[str, ...]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, files = line.split()
        out[name] = tuple(files.split(","))
    return out


# ---- writing the lists ------------------------------------------------------------

# Label variables with two values, chosen by a flag: the value under the
# exporter's default flags (SckyzO v1.x: --collector.queue.user-label and
# --collector.nodes.feature-set default to true).
DEFAULT_LABELS = {
    ("queue.go", "labelsJob"): ("user", "partition"),
    ("queue.go", "labelsPending"): ("user", "partition", "reason"),
    ("nodes.go", "labelnames"): ("partition", "active_feature_set"),
}
_STRING = r'"(?:[^"\\]|\\.)*"'
_DESC = re.compile(
    r"(\w+)\s*[:=]\s*prometheus\.NewDesc\(\s*(" + _STRING + r")\s*,\s*" + _STRING
    + r"(?:\s*\+\s*" + _STRING + r")*\s*,\s*(\[\]string\{[^}]*\}|[^,]+?)\s*,\s*nil\s*,?\s*\)",
    re.S,
)  # fmt: skip
_VEC = re.compile(
    r"prometheus\.New(Gauge|Counter|Histogram)Vec\(\s*prometheus\.\w+Opts\{.*?Name:\s*(" + _STRING
    + r").*?\}\s*,\s*(\[\]string\{[^}]*\})",
    re.S,
)  # fmt: skip
_EMIT = re.compile(
    r"(?:MustNewConstMetric|SendFeatureSetMetric)\(\s*(?:ch\s*,\s*)?(?:\w+\.)?(\w+)\s*,\s*prometheus\.(\w+)Value"
)
_TYPES = {"Gauge": "gauge", "Counter": "counter", "Untyped": "untyped"}


def _strings(literal: str) -> tuple[str, ...]:
    return tuple(json.loads(s) for s in re.findall(_STRING, literal))


def _labels(expr: str, text: str, file: str) -> tuple[str, ...]:
    expr = expr.strip()
    if expr == "nil":
        return ()
    if expr.startswith("[]string{"):
        return _strings(expr)
    default = DEFAULT_LABELS.get((file.rsplit("/", 1)[-1], expr))
    if default is not None:
        return default
    found = re.findall(r"\b" + re.escape(expr) + r"\s*:?=\s*(\[\]string\{[^}]*\})", text)
    found = [f for f in found if re.fullmatch(r"\[\]string\{\s*(" + _STRING + r"\s*,?\s*)*\}", f)]  # names, not values
    if len(set(found)) != 1:
        raise SystemExit(f"{file}: cannot resolve the labels {expr!r} ({len(found)} assignments)")
    return _strings(found[0])


def _git(clone: str, *args: str) -> str:
    return subprocess.run(["git", "-C", clone, *args], check=True, capture_output=True, text=True).stdout


def write_metrics(clone: str, repo: str, tag: str) -> str:
    commit = _git(clone, "rev-list", "-n", "1", tag).strip()
    files = [f for f in _git(clone, "ls-tree", "-r", "--name-only", tag).split()
             if f.endswith(".go") and not f.endswith("_test.go")]  # fmt: skip
    rows: list[Declared] = []
    for file in files:
        text = _git(clone, "show", f"{tag}:{file}")
        types = {field: _TYPES[kind] for field, kind in _EMIT.findall(text)}
        for field, name, labels in _DESC.findall(text):
            kind = types.get(field)
            if kind is None and len(set(types.values())) == 1:
                kind = next(iter(types.values()))  # emitted through a helper; the file emits one type only
            if kind is None:
                raise SystemExit(f"{file}: no MustNewConstMetric for {field} ({name})")
            rows.append(Declared(json.loads(name), kind, _labels(labels, text, file), file))
        for kind, name, labels in _VEC.findall(text):
            rows.append(Declared(json.loads(name), kind.lower(), _strings(labels), file))
    used = sorted({r.source for r in rows})
    head = [
        f"# github.com/{repo} {tag} (commit {commit})",
        "# every metric its Go sources declare (prometheus.NewDesc and the options of",
        "# prometheus.New{Gauge,Counter,Histogram}Vec), labels as served with the default flags",
        f"# files: {' '.join(used)}",
        "# written by tests/slurm/exporter_reference.py; columns: name type labels source",
    ]
    body = [f"{r.name} {r.type} {','.join(r.labels) or '-'} {r.source}" for r in sorted(rows, key=lambda r: r.name)]
    return "\n".join(head + body) + "\n"


def _queries(node: object, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                out.append(value)
            else:
                _queries(value, out)
    elif isinstance(node, list):
        for item in node:
            _queries(item, out)


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query selects: identifiers outside string
    literals and label matchers that are not functions, keywords or labels."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', query)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors and durations
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        word = m.group(1)
        if "_" in word or word == "up":
            names.add(word)
    return {n for n in names if not n.startswith("__")}


def write_dashboards(clone: str, repo: str, tag: str, folder: str) -> str:
    commit = _git(clone, "rev-list", "-n", "1", tag).strip()
    files = sorted(f for f in _git(clone, "ls-tree", "-r", "--name-only", tag, folder).split() if f.endswith(".json"))
    by_name: dict[str, list[str]] = {}
    for file in files:
        queries: list[str] = []
        _queries(json.loads(_git(clone, "show", f"{tag}:{file}")), queries)
        for name in sorted({n for q in queries for n in metric_names(q)}):
            by_name.setdefault(name, []).append(file.rsplit("/", 1)[-1])
    head = [
        f"# github.com/{repo} {tag} (commit {commit}): the Grafana dashboards it ships",
        f"# files: {' '.join(files)}",
        "# every metric name their queries select; written by tests/slurm/exporter_reference.py",
        "# columns: name dashboards",
    ]
    return "\n".join(head + [f"{n} {','.join(f)}" for n, f in sorted(by_name.items())]) + "\n"



if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "metrics":
        sys.stdout.write(write_metrics(*sys.argv[2:]))
    elif len(sys.argv) == 6 and sys.argv[1] == "dashboards":
        sys.stdout.write(write_dashboards(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
