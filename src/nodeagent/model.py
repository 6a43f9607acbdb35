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
from collections.abc import Callable, Iterable, Sequence
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
    # How values are written: "go" (like client_golang: integers without a
    # fraction) or "fixed6" (like dcgm-exporter's %f for float fields).
    value_format: Literal["go", "fixed6", "int"] = "go"

    def add(self, labelvalues: Sequence[str], value: float) -> None:
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(
                f"{self.name}: {len(labelvalues)} label values for {len(self.labelnames)} label names"
            )
        self.samples.append((tuple(labelvalues), value))

    def add_unlabelled(self, value: float) -> None:
        self.add((), value)


def merge_families(
    families: Iterable[MetricFamily], on_conflict: Callable[[str], None] | None = None
) -> list[MetricFamily]:
    """Join families of the same name (several collectors may add to one name),
    keeping the first occurrence's metadata and order of appearance. A family
    whose labels or type disagree with the first is left out and reported."""
    by_name: dict[str, MetricFamily] = {}
    for fam in families:
        existing = by_name.get(fam.name)
        if existing is None:
            by_name[fam.name] = fam
        elif existing.labelnames == fam.labelnames and existing.type == fam.type:
            existing.samples.extend(fam.samples)
        elif on_conflict is not None:
            on_conflict(fam.name)
        else:
            raise ValueError(f"metric {fam.name} emitted twice with different labels or type")
    return list(by_name.values())


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
