"""Small helpers shared by the Slurm tests and the benchmark."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext


class FakeConfig:
    """What a collector reads from the agent's config: the slurm section."""

    def __init__(self, slurm: SlurmSettings) -> None:
        self.slurm = slurm


def make_collector(cls: type[Collector], **settings: Any) -> Any:
    defaults: dict[str, Any] = {"bin_dir": "/usr/bin", "interval": 3600.0, "first_collection_wait": 10.0}
    defaults.update(settings)
    ctx = CollectorContext(config=FakeConfig(SlurmSettings(**defaults)), role="head")
    return cls(Host(), None, ctx)


def samples(families: Iterable[MetricFamily]) -> dict[str, dict[tuple[str, ...], float]]:
    """name -> {label values: value}; a family name appearing twice fails."""
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for fam in families:
        assert fam.name not in out, f"{fam.name} emitted twice"
        out[fam.name] = {labels: value for labels, value in fam.samples}
    return out


def value(s: dict[str, dict[tuple[str, ...], float]], name: str, *labels: str) -> float:
    return s[name][tuple(labels)]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
