"""The CloudWatch sink's spool backlog as a per-node CloudWatch metric
(catalogue/summaries.py SPOOL_OLDEST_AGE), for the spool-backlog alarm.

The sink's own metrics (catalogue/sinks.py) carry no node identity and are
not sent to CloudWatch; this gives the oldest spooled datum's age the Role
and InstanceId dimensions. Datums made while CloudWatch is unreachable are
spooled like any other and arrive, with their timestamps, once it answers:
an alarm then sees how long data waited. While nothing arrives at all, the
alarm's missing-data rule tells (see publish/alarms.py).

Use, in the sink's publish(): `spool_summary(self.own_metrics(), role, instance_id)`.
"""

from __future__ import annotations

from collections.abc import Iterable

from nodeagent.catalogue.sinks import CW_SPOOL_OLDEST_AGE
from nodeagent.catalogue.summaries import SPOOL_OLDEST_AGE
from nodeagent.model import MetricFamily, is_finite


def spool_summary(own_metrics: Iterable[MetricFamily], role: str, instance_id: str) -> list[MetricFamily]:
    for fam in own_metrics:
        if fam.name != CW_SPOOL_OLDEST_AGE.name or not fam.samples:
            continue
        value = fam.samples[0][1]
        if not is_finite(value):
            return []
        out = SPOOL_OLDEST_AGE.family()
        out.add((role, instance_id), round(max(0.0, value), 3))
        return [out]
    return []
