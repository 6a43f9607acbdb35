"""The one collector registry.

A collector is a class registered with @register. It declares its name, the
group it feeds (the exporter port), a one-line description and an Options
dataclass for its config section (`collectors.options.<name>` in the YAML).
It is on by default in the roles that run its group (roles.py) unless it
declares default_roles itself (EFA: compute only). Every collector module is listed in
COLLECTOR_MODULES and imported explicitly: an unknown or duplicate name is an
error at start, never a silent skip.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.roles import GROUPS, ROLES, roles_running

# Every module that registers collectors. Adding a collector = one line here.
COLLECTOR_MODULES: tuple[str, ...] = (
    # host group (:9100)
    "nodeagent.collectors.host.loadavg",
    "nodeagent.collectors.host.cpu",
    "nodeagent.collectors.host.cpufreq",
    "nodeagent.collectors.host.meminfo",
    "nodeagent.collectors.host.stat",
    "nodeagent.collectors.host.filesystem",
    "nodeagent.collectors.host.diskstats",
    "nodeagent.collectors.host.netdev",
    "nodeagent.collectors.host.netclass",
    "nodeagent.collectors.host.netstat",
    "nodeagent.collectors.host.sockstat",
    "nodeagent.collectors.host.vmstat",
    "nodeagent.collectors.host.pressure",
    "nodeagent.collectors.host.filefd",
    "nodeagent.collectors.host.entropy",
    "nodeagent.collectors.host.arp",
    "nodeagent.collectors.host.softnet",
    "nodeagent.collectors.host.schedstat",
    "nodeagent.collectors.host.conntrack",
    "nodeagent.collectors.host.systime",
    "nodeagent.collectors.host.timex",
    "nodeagent.collectors.host.uname",
    "nodeagent.collectors.host.os_release",
    "nodeagent.collectors.host.hwmon",
    "nodeagent.collectors.host.textfile",
    "nodeagent.collectors.host.efa",
    "nodeagent.collectors.host.lustre",
    # gpu group (:9400)
    "nodeagent.collectors.gpu.collector",
    # slurm group (:9341)
    "nodeagent.collectors.slurm.sinfo",
    "nodeagent.collectors.slurm.squeue",
    "nodeagent.collectors.slurm.sdiag",
    "nodeagent.collectors.slurm.sshare",
    "nodeagent.collectors.slurm.scontrol",
    "nodeagent.collectors.slurm.health",
)


@dataclass(frozen=True)
class NoOptions:
    """For collectors without settings."""


class Collector:
    """Base class. Subclasses set the class attributes and implement collect().

    collect() returns families; it raises on failure (the supervisor records
    success/duration and logs). "Nothing to report" returns [] and is a success.
    Collectors hold no health logic of their own.
    """

    name: ClassVar[str]
    group: ClassVar[str]  # "host" | "gpu" | "slurm"
    # where the collector is on by default; register() fills in the roles
    # that run its group (roles.roles_running) when a class does not say
    default_roles: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    Options: ClassVar[type[Any]] = NoOptions

    def __init__(self, host: Host, options: Any, context: CollectorContext | None = None) -> None:
        self.host = host
        self.options = options
        self.context = context or CollectorContext()

    def collect(self) -> Iterable[MetricFamily]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (threads, NVML handles). Called on stop and reload."""


@dataclass
class CollectorContext:
    """What a collector may need beyond its own options: the whole config (for
    cross-cutting settings such as the Slurm bin dir or GPU backend) and the
    role it runs in."""

    config: Any = None
    role: str = "compute"
    # state the collectors of one build share (the Slurm pollers' common start)
    shared: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, type[Collector]] = {}
C = TypeVar("C", bound=type[Collector])


def register(cls: C) -> C:
    for attr in ("name", "group", "description"):
        if not hasattr(cls, attr):
            raise TypeError(f"collector {cls.__name__} does not set {attr}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"collector name {cls.name!r} registered twice")
    if cls.group not in GROUPS:
        raise ValueError(f"collector {cls.name}: unknown group {cls.group!r}")
    if not hasattr(cls, "default_roles"):
        cls.default_roles = roles_running(cls.group)
    unknown = set(cls.default_roles) - set(ROLES)
    if unknown:
        raise ValueError(f"collector {cls.name}: unknown roles {sorted(unknown)}")
    _REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Collector]]:
    """Import every collector module; returns the registry by name."""
    for module in COLLECTOR_MODULES:
        importlib.import_module(module)
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[Collector]:
    registry = load_all()
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown collector {name!r}; known: {', '.join(registry)}") from None
