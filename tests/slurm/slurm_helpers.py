"""Small helpers shared by the Slurm tests and the benchmark."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.config import CollectorsConfig
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext


class FakeConfig:
    """What a collector reads from the agent's config: the slurm section, and
    collectors.timeout when given."""

    def __init__(self, slurm: SlurmSettings, timeout: float | None = None) -> None:
        self.slurm = slurm
        if timeout is not None:
            self.collectors = CollectorsConfig(timeout=timeout)


def _context(settings: dict[str, Any], timeout: float | None = None) -> CollectorContext:
    defaults: dict[str, Any] = {"bin_dir": "/usr/bin", "interval": 3600.0, "first_collection_wait": 10.0}
    defaults.update(settings)
    return CollectorContext(config=FakeConfig(SlurmSettings(**defaults), timeout), role="head")


def make_collector(cls: type[Collector], **settings: Any) -> Any:
    return cls(Host(), None, _context(settings))


def make_collectors(classes: Iterable[type[Collector]], timeout: float | None = None, **settings: Any) -> list[Any]:
    """Collectors built together, as the agent builds them: one context."""
    ctx = _context(settings, timeout)
    return [cls(Host(), None, ctx) for cls in classes]


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
