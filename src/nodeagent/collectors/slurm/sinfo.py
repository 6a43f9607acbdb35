"""Nodes, CPUs and GPUs from sinfo, cluster-wide and per partition.

One line per (node, partition) from
`sinfo -h -a -N -O StateLong:|,CPUsState:|,Gres:|,GresUsed:|,NodeList:|,PartitionName:0`.
Node names, states and GRES strings cannot contain `|`; the partition name
comes last, so even a partition name with the delimiter in it cannot shift a
field. A node in several partitions counts once cluster-wide and once in each
partition.

States: sinfo's long state with ParallelCluster's power suffixes, e.g.
`idle~` (powered down), `mixed#` (powering up), `idle%` (powering down),
`idle!` (power down pending), `down*` (not responding), `draining`,
`drained`. See nodeagent.catalogue.slurm for how each is counted. CPUs: the
A/I/O/T of CPUsState, except that idle CPUs on nodes that cannot run a job now
(powered down or powering, not responding) count as other, as Slurm already
does for down and drained nodes. GPUs: totals from Gres, allocated from
GresUsed; the rest is idle on usable nodes and other elsewhere.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.gres import gpu_count
from nodeagent.collectors.slurm.poller import PolledSlurmCollector
from nodeagent.model import MetricFamily
from nodeagent.registry import register

SINFO_FORMAT = "StateLong:|,CPUsState:|,Gres:|,GresUsed:|,NodeList:|,PartitionName:0"
SINFO_ARGS = ("-h", "-a", "-N", "-O", SINFO_FORMAT)

_BASE_STATES = {
    "allocated": "alloc",
    "alloc": "alloc",
    "completing": "comp",
    "down": "down",
    "drained": "drain",
    "draining": "drain",
    "drain": "drain",
    "error": "err",
    "fail": "fail",
    "failing": "fail",
    "idle": "idle",
    "inval": "inval",
    "maint": "maint",
    "mixed": "mix",
    "mix": "mix",
    "reserved": "resv",
    "resv": "resv",
    "planned": "planned",
    "powered_down": "powered_down",
    "power_down": "powering_down",
    "powering_down": "powering_down",
    "powering_up": "powering_up",
}
# suffix -> bucket that replaces the base state's
_POWER_SUFFIXES = {"~": "powered_down", "#": "powering_up", "%": "powering_down", "!": "powering_down"}
_SUFFIX_CHARS = "*~#%!$@^-+"
# buckets whose idle CPUs and GPUs are capacity usable now
_USABLE = frozenset({"idle", "mix", "alloc", "comp", "resv", "planned"})


@dataclass(frozen=True)
class NodeState:
    bucket: str
    draining: bool = False
    not_responding: bool = False

    @property
    def usable(self) -> bool:
        return self.bucket in _USABLE and not self.not_responding


def classify_state(state: str) -> NodeState:
    """sinfo long state (with suffixes) -> the one bucket it counts in."""
    text = state.strip().lower()
    # compound forms (StateComplete style: "idle+cloud+powered_down") -> flags
    parts = text.split("+")
    base_text = parts[0]
    suffixes = ""
    while base_text and base_text[-1] in _SUFFIX_CHARS:
        suffixes = base_text[-1] + suffixes
        base_text = base_text[:-1]
    flags = set(parts[1:])
    not_responding = "*" in suffixes or "not_responding" in flags or "no_respond" in flags
    draining = base_text == "draining" or ("drain" in flags and base_text in ("allocated", "mixed", "completing"))
    for ch, bucket in _POWER_SUFFIXES.items():
        if ch in suffixes:
            return NodeState(bucket, draining, not_responding)
    for flag, bucket in (
        ("powered_down", "powered_down"),
        ("powering_up", "powering_up"),
        ("powering_down", "powering_down"),
        ("power_down", "powering_down"),
    ):
        if flag in flags:
            return NodeState(bucket, draining, not_responding)
    if "drain" in flags:
        return NodeState("drain", draining, not_responding)
    if "$" in suffixes or "maint" in flags:
        return NodeState("maint", draining, not_responding)
    if "-" in suffixes:
        return NodeState("planned", draining, not_responding)
    bucket = _BASE_STATES.get(base_text, "other")
    if bucket == "idle" and not_responding:
        bucket = "other"  # an unresponsive idle node is not idle capacity
    return NodeState(bucket, draining, not_responding)


def _gpus(text: str) -> int:
    return gpu_count(text)


@dataclass
class Usage:
    nodes: Counter[str] = field(default_factory=Counter)
    cpus_alloc: int = 0
    cpus_idle: int = 0
    cpus_other: int = 0
    cpus_total: int = 0
    gpus_alloc: int = 0
    gpus_idle: int = 0
    gpus_other: int = 0
    gpus_total: int = 0

    def add(self, state: NodeState, cpus: tuple[int, int, int, int], gpus_total: int, gpus_used: int) -> None:
        self.nodes[state.bucket] += 1
        self.nodes["total"] += 1
        if state.draining:
            self.nodes["draining"] += 1
        if state.not_responding:
            self.nodes["not_responding"] += 1
        alloc, idle, other, total = cpus
        if not state.usable:
            other += idle
            idle = 0
        self.cpus_alloc += alloc
        self.cpus_idle += idle
        self.cpus_other += other
        self.cpus_total += total
        gpus_used = min(gpus_used, gpus_total) if gpus_total else gpus_used
        free = max(gpus_total - gpus_used, 0)
        self.gpus_alloc += gpus_used
        self.gpus_total += max(gpus_total, gpus_used)
        if state.usable:
            self.gpus_idle += free
        else:
            self.gpus_other += free


@dataclass
class SinfoResult:
    cluster: Usage
    partitions: dict[str, Usage]
    malformed: int = 0


def _cpus(text: str) -> tuple[int, int, int, int]:
    parts = text.split("/")
    if len(parts) != 4:
        raise ValueError(f"CPUsState {text!r} is not A/I/O/T")
    a, i, o, t = (int(p) for p in parts)
    return a, i, o, t


def parse_sinfo(text: str) -> SinfoResult:
    """Aggregate `sinfo -N -O SINFO_FORMAT` output."""
    cluster = Usage()
    partitions: dict[str, Usage] = {}
    seen: set[str] = set()
    malformed = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 5)
        try:
            if len(fields) != 6:
                raise ValueError("wrong number of fields")
            state_text, cpus_text, gres, gres_used, node, partition = fields
            state = classify_state(state_text)
            cpus = _cpus(cpus_text)
            gpus_total = _gpus(gres)
            gpus_used = _gpus(gres_used)
        except ValueError:
            malformed += 1
            continue
        node = node.strip()
        partition = partition.strip()
        if node not in seen:
            seen.add(node)
            cluster.add(state, cpus, gpus_total, gpus_used)
        if partition:
            partitions.setdefault(partition, Usage()).add(state, cpus, gpus_total, gpus_used)
    return SinfoResult(cluster, partitions, malformed)


def sinfo_families(result: SinfoResult) -> list[MetricFamily]:
    families: list[MetricFamily] = []
    c = result.cluster
    for key, spec in cat.NODES.items():
        fam = spec.family()
        fam.add_unlabelled(c.nodes.get(key, 0))
        families.append(fam)
    for spec, value in (
        (cat.CPUS_ALLOC, c.cpus_alloc),
        (cat.CPUS_IDLE, c.cpus_idle),
        (cat.CPUS_OTHER, c.cpus_other),
        (cat.CPUS_TOTAL, c.cpus_total),
        (cat.GPUS_ALLOC, c.gpus_alloc),
        (cat.GPUS_IDLE, c.gpus_idle),
        (cat.GPUS_OTHER, c.gpus_other),
        (cat.GPUS_TOTAL, c.gpus_total),
        (cat.GPUS_UTILIZATION, c.gpus_alloc / c.gpus_total if c.gpus_total else 0.0),
    ):
        fam = spec.family()
        fam.add_unlabelled(value)
        families.append(fam)
    names = sorted(result.partitions)
    for key, spec in cat.PARTITION_NODES.items():
        fam = spec.family()
        for name in names:
            fam.add((name,), result.partitions[name].nodes.get(key, 0))
        families.append(fam)
    for spec, attr in (
        (cat.PARTITION_CPUS_ALLOCATED, "cpus_alloc"),
        (cat.PARTITION_CPUS_IDLE, "cpus_idle"),
        (cat.PARTITION_CPUS_OTHER, "cpus_other"),
        (cat.PARTITION_CPUS_TOTAL, "cpus_total"),
        (cat.PARTITION_GPUS_ALLOCATED, "gpus_alloc"),
        (cat.PARTITION_GPUS_IDLE, "gpus_idle"),
        (cat.PARTITION_GPUS_OTHER, "gpus_other"),
        (cat.PARTITION_GPUS_TOTAL, "gpus_total"),
    ):
        fam = spec.family()
        for name in names:
            fam.add((name,), getattr(result.partitions[name], attr))
        families.append(fam)
    bad = cat.MALFORMED_RECORDS.family()
    bad.add(("sinfo",), result.malformed)
    families.append(bad)
    return families


@register
class SinfoCollector(PolledSlurmCollector):
    name = "sinfo"
    group = "slurm"
    default_roles = ("head",)
    description = (
        "Slurm nodes by state (power states of cloud nodes apart), CPUs and GPUs, "
        "cluster-wide and per partition, from sinfo, polled every slurm.interval."
    )
    command = "sinfo"

    def poll(self) -> list[MetricFamily]:
        parsed = parse_sinfo(self.runner.run(SINFO_ARGS).stdout)
        if parsed.malformed and not parsed.cluster.nodes["total"]:
            raise ValueError(f"sinfo: none of {parsed.malformed} lines is in the requested format")
        return sinfo_families(parsed)
