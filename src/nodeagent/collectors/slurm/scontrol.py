"""Licenses, reservations and Slurm's version (SckyzO's slurm_license_*,
slurm_reservation_*, slurm_info), with slurm.naming: sckyzo only; with
vpenso the collector runs nothing and serves nothing.

`scontrol show licenses -o` and `scontrol show reservation -o` print one
record a line as `Key=value` pairs; `scontrol show nodes -o` gives each node's
state, and the nodes of an active reservation are its Nodes= host list
(22.05 prints no ReservationName on a node). Values are read up
to the next space: a reservation's comment with ` Key=` inside could only
shadow keys that are not read here when it comes after them (it is printed
last). Label values an administrator writes (reservation names, users,
flags) keep at most 48 bytes (labels.bounded). `<command> --version` gives
the version of each client the agent runs.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.labels import bounded
from nodeagent.collectors.slurm.poller import PolledSlurmCollector
from nodeagent.collectors.slurm.runner import SlurmRunner
from nodeagent.collectors.slurm.sinfo import classify_state
from nodeagent.host import CommandError, Host
from nodeagent.model import MetricFamily
from nodeagent.registry import CollectorContext, register

LICENSES_ARGS = ("show", "licenses", "-o")
RESERVATIONS_ARGS = ("show", "reservation", "-o")
NODES_ARGS = ("show", "nodes", "-o")
VERSION_BINARIES = ("sinfo", "squeue", "sdiag", "scontrol", "sshare")
_PAIR = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_]*)=(\S*)")


def records(text: str) -> list[dict[str, str]]:
    """One dict of Key=value pairs per non-empty line (first value of a key wins)."""
    out = []
    for line in text.splitlines():
        pairs: dict[str, str] = {}
        for key, value in _PAIR.findall(line):
            pairs.setdefault(key, value)
        if pairs:
            out.append(pairs)
    return out


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _unix(text: str | None) -> float | None:
    """slurmctld's local time (SLURM_TIME_FORMAT=standard) -> Unix time."""
    if not text:
        return None
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def license_families(text: str) -> list[MetricFamily]:
    fams = {key: spec.family() for key, spec in cat.LICENSE.items()}
    for rec in records(text):
        name = rec.get("LicenseName")
        if not name:
            continue
        for key, field in (("total", "Total"), ("used", "Used"), ("free", "Free"), ("reserved", "Reserved")):
            value = _number(rec.get(field))
            if value is not None:
                fams[key].add((bounded(name),), value)
    return list(fams.values())


def _label(value: str | None) -> str:
    return "" if value in (None, "(null)") else bounded(value or "")


def reservation_families(text: str) -> list[MetricFamily]:
    info = cat.RESERVATION_INFO.family()
    start, end = cat.RESERVATION_START.family(), cat.RESERVATION_END.family()
    nodes, cores = cat.RESERVATION_NODE_COUNT.family(), cat.RESERVATION_CORE_COUNT.family()
    for rec in records(text):
        name = rec.get("ReservationName")
        if not name:
            continue
        label = (bounded(name),)
        info.add(
            (
                label[0],
                _label(rec.get("State")),
                _label(rec.get("Users")),
                _label(rec.get("Nodes")),
                _label(rec.get("PartitionName")),
                _label(rec.get("Flags")),
            ),
            1,
        )
        for fam, value in (
            (start, _unix(rec.get("StartTime"))),
            (end, _unix(rec.get("EndTime"))),
            (nodes, _number(rec.get("NodeCnt"))),
            (cores, _number(rec.get("CoreCnt"))),
        ):
            if value is not None:
                fam.add(label, value)
    return [info, start, end, nodes, cores]


def expand_hostlist(text: str) -> list[str]:
    """Slurm's host list syntax: `node[1-3,07-08],gpu5` -> node1 node2 node3
    node07 node08 gpu5 (ranges keep their zero padding; several bracket
    groups in one name multiply out). Empty for `(null)`."""
    if not text or text == "(null)":
        return []
    names: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            names += _expand_one(text[start:i])
            start = i + 1
    return [n for n in names if n]


def _expand_one(item: str) -> list[str]:
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
    if not m:
        return [item]
    head, ranges, tail = m.groups()
    out: list[str] = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return [item]  # not a range Slurm writes: keep the text
        width = len(lo)
        for n in range(int(lo), int(hi or lo) + 1):
            out += [f"{head}{n:0{width}d}{rest}" for rest in _expand_one(tail)]
            if len(out) > 1_000_000:  # a host list is a cluster's nodes, not more
                return out
    return out


_RESERVATION_BUCKETS = {"alloc": "alloc", "idle": "idle", "mix": "mix", "planned": "planned", "down": "down",
                        "drain": "drain"}  # fmt: skip
_HEALTHY = frozenset({"alloc", "idle", "mix", "planned"})


def reservation_node_families(reservations_text: str, nodes_text: str) -> list[MetricFamily]:
    """Nodes of each active reservation by state (nodeagent's state buckets:
    IDLE+DRAIN is drained, a powered-down node is other)."""
    states = {rec["NodeName"]: rec.get("State", "") for rec in records(nodes_text) if "NodeName" in rec}
    counts: dict[str, Counter[str]] = {}
    for rec in records(reservations_text):
        name = rec.get("ReservationName")
        if not name or rec.get("State", "").upper() != "ACTIVE":
            continue
        c = counts.setdefault(bounded(name), Counter())
        for node in expand_hostlist(rec.get("Nodes", "")):
            state = states.get(node)
            if state is None:
                continue
            bucket = _RESERVATION_BUCKETS.get(classify_state(state).bucket, "other")
            c[bucket] += 1
            if bucket in _HEALTHY:
                c["healthy"] += 1
    fams = []
    for key, spec in cat.RESERVATION_NODES.items():
        fam = spec.family()
        for name in sorted(counts):
            fam.add((name,), counts[name].get(key, 0))
        fams.append(fam)
    return fams


def version_of(text: str) -> str | None:
    """`slurm 22.05.8` -> `22.05.8`."""
    parts = text.split()
    return parts[1] if len(parts) > 1 else None


@register
class ScontrolCollector(PolledSlurmCollector):
    name = "scontrol"
    group = "slurm"
    default_roles = ("head",)
    description = (
        "Slurm licenses, reservations and version from scontrol (slurm.naming: sckyzo only), "
        "polled every slurm.interval."
    )
    command = "scontrol"

    def __init__(self, host: Host, options: Any, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._clients = {b: SlurmRunner(host, self.settings, b) for b in VERSION_BINARIES if b != "scontrol"}

    @property
    def active(self) -> bool:
        return self.settings.naming == "sckyzo"

    def poll(self) -> list[MetricFamily]:
        if not self.active:
            return []
        families = license_families(self.runner.run(LICENSES_ARGS).stdout)
        reservations = self.runner.run(RESERVATIONS_ARGS).stdout
        families += reservation_families(reservations)
        if any(r.get("State", "").upper() == "ACTIVE" for r in records(reservations)):
            families += reservation_node_families(reservations, self.runner.run(NODES_ARGS).stdout)
        families.append(self._versions())
        return families

    def _versions(self) -> MetricFamily:
        fam = cat.SLURM_INFO.family()
        found: dict[str, str | None] = {}
        for binary in VERSION_BINARIES:
            runner = self.runner if binary == "scontrol" else self._clients[binary]
            try:
                found[binary] = version_of(runner.run(("--version",)).stdout)
            except CommandError:
                found[binary] = None
        general = found["sinfo"]
        fam.add(("general", "", general or "not_found"), 1 if general else 0)
        for binary, version in found.items():
            fam.add(("binary", binary, version or "not_found"), 1 if version else 0)
        return fam

    def close(self) -> None:
        super().close()
        for runner in self._clients.values():
            runner.close()
