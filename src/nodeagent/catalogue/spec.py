"""The metric catalogue's types: every metric nodeagent can emit is declared
once as a MetricSpec, and collectors build their families from the spec, so a
name, its type, labels and help are written in exactly one place.

A spec is either an exact name (`node_load1`) or a pattern with one `{field}`
placeholder for families whose names come from the data, the way
node_exporter names them (`node_memory_{field}_bytes` for every /proc/meminfo
line).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from nodeagent.model import MetricFamily, MetricType

Group = str  # "host" (:9100), "gpu" (:9400), "slurm" (:9341), "agent"


@dataclass(frozen=True)
class CloudWatchSpec:
    """How a metric is published to CloudWatch (issue: head and login roles)."""

    name: str
    unit: str = "None"  # a CloudWatch StandardUnit
    dimensions: tuple[str, ...] = ()  # label names that become dimensions
    storage_resolution: int = 60  # 1 for high resolution
    roles: tuple[str, ...] = ("head", "login")  # roles that publish it


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: MetricType
    help: str
    collector: str
    labels: tuple[str, ...] = ()
    unit: str = ""
    group: Group = "host"
    cloudwatch: CloudWatchSpec | None = None
    value_format: str = "go"
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def is_pattern(self) -> bool:
        return "{" in self.name

    def family(self, labels: tuple[str, ...] | None = None, **fields: str) -> MetricFamily:
        """A new empty family for this spec. `fields` fill a pattern's placeholders;
        `labels` overrides the label names only for families whose labels are
        data-driven (textfile); everything else must use the declared ones."""
        name = self.name.format(**fields) if fields else self.name
        help_text = self.help.format(**fields) if fields else self.help
        return MetricFamily(
            name=name,
            help=help_text,
            type=self.type,
            labelnames=self.labels if labels is None else labels,
            value_format=self.value_format,  # type: ignore[arg-type]
        )

    def single(self, value: float, **fields: str) -> MetricFamily:
        """A new family holding one unlabelled sample, the shape of most
        node_exporter gauges; `fields` as for family()."""
        fam = self.family(None, **fields)
        fam.add((), value)
        return fam

    def matches(self, name: str) -> bool:
        if not self.is_pattern:
            return name == self.name
        return pattern_regex(self.name).fullmatch(name) is not None


_PATTERN_CACHE: dict[str, re.Pattern[str]] = {}


def pattern_regex(pattern: str) -> re.Pattern[str]:
    cached = _PATTERN_CACHE.get(pattern)
    if cached is None:
        regex = re.sub(r"\\\{\w+\\\}", r"[A-Za-z0-9_:]+", re.escape(pattern))
        cached = _PATTERN_CACHE[pattern] = re.compile(regex)
    return cached


class Catalogue:
    def __init__(self) -> None:
        self._exact: dict[str, MetricSpec] = {}
        self._patterns: list[MetricSpec] = []

    def add(self, spec: MetricSpec) -> MetricSpec:
        if spec.name in self._exact or any(p.name == spec.name for p in self._patterns):
            raise ValueError(f"metric {spec.name} is declared twice in the catalogue")
        if spec.is_pattern:
            self._patterns.append(spec)
        else:
            self._exact[spec.name] = spec
        return spec

    def lookup(self, name: str) -> MetricSpec | None:
        spec = self._exact.get(name)
        if spec is not None:
            return spec
        for pat in self._patterns:
            if pat.matches(name):
                return pat
        return None

    def __iter__(self) -> Iterator[MetricSpec]:
        yield from self._exact.values()
        yield from self._patterns

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)


CATALOGUE = Catalogue()


def gauge(name: str, help: str, collector: str, labels: tuple[str, ...] = (), **kw: object) -> MetricSpec:
    return CATALOGUE.add(MetricSpec(name, "gauge", help, collector, labels, **kw))  # type: ignore[arg-type]


def counter(name: str, help: str, collector: str, labels: tuple[str, ...] = (), **kw: object) -> MetricSpec:
    return CATALOGUE.add(MetricSpec(name, "counter", help, collector, labels, **kw))  # type: ignore[arg-type]


def untyped(name: str, help: str, collector: str, labels: tuple[str, ...] = (), **kw: object) -> MetricSpec:
    return CATALOGUE.add(MetricSpec(name, "untyped", help, collector, labels, **kw))  # type: ignore[arg-type]
