"""Metric families as collectors produce them and exporters render them.

A family is one metric name with a fixed tuple of label names; each sample is a
tuple of label values (in the same order) and a value. The label order is the
order the family declares, which is what dcgm-exporter compatibility needs.
We keep our own small type instead of prometheus_client's Metric because
client_python always appends `_total` to counters, and dcgm-exporter's
counters have no such suffix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["gauge", "counter", "untyped", "info"]
LabelValues = tuple[str, ...]


@dataclass(slots=True)
class MetricFamily:
    name: str
    help: str
    type: MetricType
    labelnames: tuple[str, ...] = ()
    samples: list[tuple[LabelValues, float]] = field(default_factory=list)
    # How values are written: "go" (whole numbers without a fraction, others
    # as Python's shortest repr; client_golang writes large numbers in exponent
    # form, the same value) or "fixed6" (dcgm-exporter's %f for float fields).
    value_format: Literal["go", "fixed6", "int"] = "go"
    # Leave out labels whose value is empty, as dcgm-exporter does for its
    # optional labels (GPU_I_*, Hostname, hpc_job): Prometheus reads an empty
    # label as an absent one, but the text must match byte for byte.
    omit_empty_labels: bool = False

    def add(self, labelvalues: Sequence[str], value: float) -> None:
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(
                f"{self.name}: {len(labelvalues)} label values for {len(self.labelnames)} label names"
            )
        self.samples.append((tuple(labelvalues), value))

    def add_unlabelled(self, value: float) -> None:
        self.add((), value)


def merge_families(families: Iterable[MetricFamily], problems: set[str] | None = None) -> list[MetricFamily]:
    """Join families of the same name (several collectors may add to one name,
    a textfile may repeat one), keeping the first occurrence's metadata and
    order. Left out, and their names added to `problems`: a family whose labels
    or type disagree with the first, and a series (name + label values) seen
    before, as node_exporter refuses "collected before with the same name and
    label values". The collectors' own families are never modified."""
    by_name: dict[str, MetricFamily] = {}
    seen: dict[str, set[tuple[str, ...]]] = {}
    for fam in families:
        existing = by_name.get(fam.name)
        if existing is None:
            by_name[fam.name] = fam
            continue
        if existing.labelnames != fam.labelnames or existing.type != fam.type:
            if problems is not None:
                problems.add(fam.name)
            continue
        labelsets = seen.get(fam.name)
        if labelsets is None:  # first collision: copy, and index what is there
            existing = by_name[fam.name] = MetricFamily(
                existing.name, existing.help, existing.type, existing.labelnames,
                list(existing.samples), existing.value_format, existing.omit_empty_labels,
            )
            labelsets = seen[fam.name] = {labels for labels, _ in existing.samples}
        for labels, value in fam.samples:
            if labels in labelsets:
                if problems is not None:
                    problems.add(fam.name)
                continue
            labelsets.add(labels)
            existing.samples.append((labels, value))
    return list(by_name.values())


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
