"""Slurm's health, explicit: for each Slurm command the agent polls, whether
its last poll succeeded (nodeagent_slurm_up), how many polls failed
(nodeagent_slurm_poll_failures_total) and how old the data is
(nodeagent_slurm_data_age_seconds); with slurm.naming: sckyzo, the same
numbers under SckyzO's own names (slurm_exporter_collector_success, ...).

This collector never fails: while slurmctld is down it is what says so, so
that an alert on `nodeagent_slurm_up == 0` fires where one on
`slurm_nodes_down > 0` would only see its series go away.
"""

from __future__ import annotations

from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.poller import CommonStart, Health, slurm_settings
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register


def health_families(states: list[Health], naming: str) -> list[MetricFamily]:
    up, failures, age = cat.UP.family(), cat.POLL_FAILURES.family(), cat.DATA_AGE.family()
    sckyzo = naming == "sckyzo"
    success, duration = cat.EXPORTER_COLLECTOR_SUCCESS.family(), cat.EXPORTER_COLLECTOR_DURATION.family()
    errors, cache_age = cat.EXPORTER_COMMAND_ERRORS.family(), cat.EXPORTER_CACHE_AGE.family()
    for h in sorted(states, key=lambda h: h.command):
        value = 1 if h.up else 0  # no poll finished yet counts as down
        up.add((h.command,), value)
        failures.add((h.command,), h.failures)
        success.add((h.collector,), value)
        errors.add((h.command,), h.failures)
        if h.age is not None:
            age.add((h.command,), h.age)
            cache_age.add((h.command,), h.age)
        if h.duration is not None:
            duration.add((h.collector,), h.duration)
    own = [up, failures, age]
    return [*own, success, duration, errors, cache_age] if sckyzo else own


@register
class SlurmHealthCollector(Collector):
    name = "slurm_health"
    group = "slurm"
    default_roles = ("head",)
    description = "Slurm's health: last poll of each Slurm command ok or not, failed polls, age of the data."

    def collect(self) -> list[MetricFamily]:
        settings = slurm_settings(self.context)
        pollers = [p for p in CommonStart.of(self.context, settings).pollers() if p.active]
        for p in pollers:
            p.wait_first()
        return health_families([p.health() for p in pollers], settings.naming)
