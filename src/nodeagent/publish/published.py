"""What a configuration publishes to CloudWatch, read from the catalogue.

Dashboards, alarms and the cost estimate are all built from this view, so a
widget or an alarm can only name a metric that some role really sends, with
the dimensions it is sent with. The rules are the CloudWatch sink's
(sinks/mapping.py):

* a spec is published when it has a CloudWatchSpec and the sink runs in one of
  its roles (`cloudwatch.enabled`, `cloudwatch.roles`), and that role sends
  the spec's collector group to CloudWatch (roles.py; summaries derived by the
  sink itself, group "agent", go wherever the sink runs);
* dimensions are the spec's `dimensions` label names in PascalCase;
* with `cloudwatch.role_rollup`, a spec whose dimensions include `instance_id`
  is also published without it (the role-wide series alarms use);
* names in `cloudwatch.high_resolution` are stored at 1-second resolution.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nodeagent.catalogue import CATALOGUE, Catalogue, MetricSpec
from nodeagent.roles import DISPLAY_ORDER, GROUPS, ROLE_TABLE
from nodeagent.sinks.mapping import ROLLUP_LABEL as ROLLUP_LABEL  # the sink's; docs.py reads it here
from nodeagent.sinks.mapping import dimension_name, rollup_index, storage_resolution
from nodeagent.sinks.settings import CloudWatchSettings

ROLE_ORDER = DISPLAY_ORDER


class NotPublished(LookupError):
    """A metric a dashboard or alarm wants is not published by this configuration."""


@dataclass(frozen=True)
class CwMetric:
    """One CloudWatch metric (name + dimension names) and the roles that send it."""

    spec: MetricSpec
    name: str
    unit: str
    labels: tuple[str, ...]  # the spec's label names that are dimensions here
    dimensions: tuple[str, ...]  # the same, as CloudWatch dimension names
    roles: tuple[str, ...]
    storage_resolution: int
    rollup: bool  # the Role-wide variant (instance_id left out)

    @property
    def dimension_set(self) -> frozenset[str]:
        return frozenset(self.dimensions)

    def dimension_for(self, label: str) -> str:
        return self.dimensions[self.labels.index(label)]


def namespace_for(settings: CloudWatchSettings, cluster: str) -> str:
    return settings.namespace or f"ParallelCluster/{cluster}"


def _roles_of(spec: MetricSpec, settings: CloudWatchSettings) -> tuple[str, ...]:
    if spec.cloudwatch is None or not settings.enabled:
        return ()
    roles = []
    for role in ROLE_ORDER:
        if role not in spec.cloudwatch.roles or role not in settings.roles:
            continue
        if spec.group in GROUPS and spec.group not in ROLE_TABLE[role].cloudwatch:
            continue
        roles.append(role)
    return tuple(roles)


class Published:
    """The CloudWatch metrics one configuration publishes."""

    def __init__(
        self, settings: CloudWatchSettings, cluster: str, catalogue: Catalogue | None = None
    ) -> None:
        self.settings = settings
        self.cluster = cluster
        self.namespace = namespace_for(settings, cluster)
        self.metrics: list[CwMetric] = []
        self._by_prom: dict[tuple[str, bool], CwMetric] = {}
        hires = frozenset(settings.high_resolution)
        for spec in catalogue if catalogue is not None else CATALOGUE:
            cw = spec.cloudwatch
            roles = _roles_of(spec, settings)
            if cw is None or not roles:
                continue
            resolution = storage_resolution(cw, hires, cw.name, spec.name)
            variants = [(cw.dimensions, False)]
            rollup_at = rollup_index(cw.dimensions, ROLLUP_LABEL if settings.role_rollup else None)
            if rollup_at is not None:
                variants.append((cw.dimensions[:rollup_at] + cw.dimensions[rollup_at + 1 :], True))
            for labels, rollup in variants:
                metric = CwMetric(
                    spec=spec,
                    name=cw.name,
                    unit=cw.unit,
                    labels=labels,
                    dimensions=tuple(dimension_name(label) for label in labels),
                    roles=roles,
                    storage_resolution=resolution,
                    rollup=rollup,
                )
                self.metrics.append(metric)
                self._by_prom[(spec.name, rollup)] = metric

    def __iter__(self) -> Iterator[CwMetric]:
        return iter(self.metrics)

    def get(self, spec: MetricSpec | str, *, rollup: bool = False) -> CwMetric:
        """The CloudWatch metric of a catalogue spec (or its name); NotPublished when
        this configuration does not send it (with the reason)."""
        name = spec if isinstance(spec, str) else spec.name
        found = self._by_prom.get((name, rollup))
        if found is not None:
            return found
        raise NotPublished(self.why_not(name, rollup))

    def has(self, spec: MetricSpec | str, *, rollup: bool = False) -> bool:
        name = spec if isinstance(spec, str) else spec.name
        return (name, rollup) in self._by_prom

    def why_not(self, name: str, rollup: bool = False) -> str:
        spec = CATALOGUE.lookup(name)
        if spec is None:
            return f"{name} is not in the metric catalogue"
        if spec.cloudwatch is None:
            return f"{name} has no CloudWatch mapping in the catalogue"
        if not self.settings.enabled:
            return "the CloudWatch sink is disabled (cloudwatch.enabled: false)"
        if not _roles_of(spec, self.settings):
            wanted = ", ".join(spec.cloudwatch.roles)
            return (
                f"{spec.cloudwatch.name} is published by the {wanted} role(s), and the CloudWatch sink runs in "
                f"{', '.join(self.settings.roles) or 'no role'} (cloudwatch.roles)"
            )
        if rollup:
            return f"{spec.cloudwatch.name} has no role-wide series (cloudwatch.role_rollup is off)"
        return f"{name} is not published"

    def find(self, cw_name: str, dimensions: Iterable[str]) -> CwMetric | None:
        dims = frozenset(dimensions)
        for m in self.metrics:
            if m.name == cw_name and m.dimension_set == dims:
                return m
        return None

    def roles(self) -> tuple[str, ...]:
        """Roles that publish anything, in display order."""
        present = {r for m in self.metrics for r in m.roles}
        return tuple(r for r in ROLE_ORDER if r in present)
