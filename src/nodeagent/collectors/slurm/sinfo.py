"""Nodes, CPUs and GPUs from sinfo, cluster-wide and per partition.

One line per (node, partition) from `sinfo -h -a -N -O SINFO_FORMAT`: state,
CPUs, GRES, memory, active features, node name and partition. Node names,
states, GRES and feature strings cannot contain `|`; the partition name comes
last, so even a partition name with the delimiter in it cannot shift a field.
A node in several partitions counts once cluster-wide (slurm_cluster_nodes_*,
and vpenso's slurm_nodes_*) and once in each partition (SckyzO's
slurm_nodes_*, slurm_partition_*).

States: sinfo's long state with ParallelCluster's power suffixes, e.g.
`idle~` (powered down), `mixed#` (powering up), `idle%` (powering down),
`idle!` (power down pending), `down*` (not responding), `draining`,
`drained`. See nodeagent.catalogue.slurm for how each is counted. CPUs: the
A/I/O/T of CPUsState as sinfo counts them (slurm.powered_down_idle: idle),
or with the idle CPUs of nodes that cannot run a job now (powered down or
powering, not responding) counted as other (`other`); the *_idle_usable
families always count the latter way. GPUs: totals from Gres, allocated from
GresUsed; the free ones count idle where the node's CPUs do (sinfo: on a
node with no CPU counted other) and other elsewhere.

Per-node families (slurm_node_*) are served while the cluster has at most
slurm.max_nodes nodes; the drain reasons (SckyzO's
slurm_node_drain_reason_info) come from a second sinfo, run only then.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nodeagent.catalogue import slurm as cat
from nodeagent.catalogue.spec import MetricSpec
from nodeagent.collectors.slurm.gres import gpu_count
from nodeagent.collectors.slurm.labels import bounded
from nodeagent.collectors.slurm.poller import PolledSlurmCollector
from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.model import MetricFamily
from nodeagent.registry import register

SINFO_FORMAT = "StateLong:|,CPUsState:|,Gres:|,GresUsed:|,AllocMem:|,Memory:|,FeaturesAct:|,NodeList:|,PartitionName:0"
SINFO_ARGS = ("-h", "-a", "-N", "-O", SINFO_FORMAT)
_FIELDS = 9
# node, since, state, then the reason last (free text an administrator wrote)
REASON_ARGS = ("-h", "-a", "-N", "-O", "NodeList:|,Timestamp:|,StateLong:|,Reason:0")

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


@dataclass
class Usage:
    nodes: Counter[str] = field(default_factory=Counter)
    cpus_alloc: int = 0
    cpus_idle: int = 0  # as sinfo counts them
    cpus_idle_usable: int = 0  # on nodes that can run a job now
    cpus_other: int = 0  # as sinfo counts them
    cpus_total: int = 0
    gpus_alloc: int = 0
    gpus_idle: int = 0  # free on nodes with no CPU counted other (sinfo's view)
    gpus_idle_usable: int = 0
    gpus_total: int = 0

    def add(self, state: NodeState, cpus: tuple[int, int, int, int], gpus_total: int, gpus_used: int) -> None:
        self.nodes[state.bucket] += 1
        self.nodes["total"] += 1
        if state.draining:
            self.nodes["draining"] += 1
        if state.not_responding:
            self.nodes["not_responding"] += 1
        alloc, idle, other, total = cpus
        self.cpus_alloc += alloc
        self.cpus_idle += idle
        self.cpus_other += other
        self.cpus_total += total
        if state.usable:
            self.cpus_idle_usable += idle
        gpus_used = min(gpus_used, gpus_total) if gpus_total else gpus_used
        free = max(gpus_total - gpus_used, 0)
        self.gpus_alloc += gpus_used
        self.gpus_total += max(gpus_total, gpus_used)
        if other == 0:
            self.gpus_idle += free
        if state.usable:
            self.gpus_idle_usable += free

    def idle(self, settings: SlurmSettings) -> tuple[int, int, int, int]:
        """(CPUs idle, CPUs other, GPUs idle, GPUs other) as slurm.powered_down_idle says."""
        cpus_idle = self.cpus_idle if settings.powered_down_idle == "idle" else self.cpus_idle_usable
        gpus_idle = self.gpus_idle if settings.powered_down_idle == "idle" else self.gpus_idle_usable
        cpus_other = self.cpus_total - self.cpus_alloc - cpus_idle
        gpus_other = self.gpus_total - self.gpus_alloc - gpus_idle
        return cpus_idle, cpus_other, gpus_idle, gpus_other


@dataclass(frozen=True)
class NodeRow:
    """One (node, partition) line, for the per-node families."""

    node: str
    partition: str
    status: str
    cpus: tuple[int, int, int, int]
    mem_alloc: int
    mem_total: int


@dataclass
class SinfoResult:
    cluster: Usage
    partitions: dict[str, Usage]
    malformed: int = 0
    # (partition, active feature set) -> bucket -> nodes (SckyzO's slurm_nodes_*)
    feature_sets: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    rows: list[NodeRow] = field(default_factory=list)


def _cpus(text: str) -> tuple[int, int, int, int]:
    parts = text.split("/")
    if len(parts) != 4:
        raise ValueError(f"CPUsState {text!r} is not A/I/O/T")
    a, i, o, t = (int(p) for p in parts)
    return a, i, o, t


def _mem(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0


def feature_set(text: str) -> str:
    """SckyzO's active_feature_set: the features sorted, `null` for none."""
    text = text.strip()
    if not text or text == "(null)":
        return "null"
    return ",".join(sorted(text.split(",")))


def parse_sinfo(text: str) -> SinfoResult:
    """Aggregate `sinfo -N -O SINFO_FORMAT` output."""
    cluster = Usage()
    partitions: dict[str, Usage] = {}
    res = SinfoResult(cluster, partitions)
    seen: set[str] = set()
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", _FIELDS - 1)
        try:
            if len(fields) != _FIELDS:
                raise ValueError("wrong number of fields")
            state_text, cpus_text, gres, gres_used, mem_alloc, mem_total, features, node, partition = fields
            state = classify_state(state_text)
            cpus = _cpus(cpus_text)
            gpus_total = gpu_count(gres)
            gpus_used = gpu_count(gres_used)
        except ValueError:
            res.malformed += 1
            continue
        node = node.strip()
        partition = partition.strip()
        if node not in seen:
            seen.add(node)
            cluster.add(state, cpus, gpus_total, gpus_used)
        if partition:
            partitions.setdefault(partition, Usage()).add(state, cpus, gpus_total, gpus_used)
            key = (partition, feature_set(features))
            res.feature_sets.setdefault(key, Counter())[state.bucket] += 1
        res.rows.append(NodeRow(node, partition, state_text.strip(), cpus, _mem(mem_alloc), _mem(mem_total)))
    return res


@dataclass(frozen=True)
class DrainReason:
    node: str
    reason: str
    since: str


_NO_REASON = frozenset({"", "none", "not responding", "unknown"})


def parse_reasons(text: str) -> tuple[list[DrainReason], int]:
    """Drained, draining and down nodes with a reason, once per node, from
    `sinfo REASON_ARGS`; and the number of lines not in that format."""
    out: list[DrainReason] = []
    seen: set[str] = set()
    malformed = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 3)
        if len(fields) != 4:
            malformed += 1  # e.g. the rest of a reason with a newline in it
            continue
        node, since, state, reason = (f.strip() for f in fields)
        if not node or node in seen or reason.lower() in _NO_REASON:
            continue
        if classify_state(state).bucket not in ("drain", "down") and not classify_state(state).draining:
            continue
        seen.add(node)
        out.append(DrainReason(node, bounded(reason), since))
    return out, malformed


def _add(families: list[MetricFamily], spec: MetricSpec, value: float) -> None:
    fam = spec.family()
    fam.add_unlabelled(value)
    families.append(fam)


def _node_families(result: SinfoResult, settings: SlurmSettings) -> list[MetricFamily]:
    families: list[MetricFamily] = []
    c = result.cluster
    vpenso = settings.naming == "vpenso"
    if vpenso:  # cluster-wide, one node once
        for key in cat.EXPORTER_NODE_STATES:
            fam = cat.NODES[key].family(labels=())
            fam.add_unlabelled(c.nodes.get(key, 0))
            families.append(fam)
    else:  # per partition and active feature set, every state of each (zeros too)
        for key in cat.EXPORTER_NODE_STATES:
            fam = cat.NODES[key].family()
            for (partition, features), counts in sorted(result.feature_sets.items()):
                fam.add((partition, features), counts.get(key, 0))
            families.append(fam)
    for key, spec in cat.NODES.items():
        if key not in cat.EXPORTER_NODE_STATES:  # power states, draining, not responding, total
            _add(families, spec, c.nodes.get(key, 0))
    for spec in cat.CLUSTER_NODES.values():
        _add(families, spec, c.nodes.get(spec.name.removeprefix("slurm_cluster_nodes_"), 0))
    return families


def sinfo_families(result: SinfoResult, settings: SlurmSettings | None = None) -> list[MetricFamily]:
    settings = settings or SlurmSettings()
    families = _node_families(result, settings)
    c = result.cluster
    cpus_idle, cpus_other, gpus_idle, gpus_other = c.idle(settings)
    for spec, value in (
        (cat.CPUS_ALLOC, c.cpus_alloc),
        (cat.CPUS_IDLE, cpus_idle),
        (cat.CPUS_IDLE_USABLE, c.cpus_idle_usable),
        (cat.CPUS_OTHER, cpus_other),
        (cat.CPUS_TOTAL, c.cpus_total),
        (cat.GPUS_ALLOC, c.gpus_alloc),
        (cat.GPUS_IDLE, gpus_idle),
        (cat.GPUS_IDLE_USABLE, c.gpus_idle_usable),
        (cat.GPUS_OTHER, gpus_other),
        (cat.GPUS_TOTAL, c.gpus_total),
        (cat.GPUS_UTILIZATION, c.gpus_alloc / c.gpus_total if c.gpus_total else 0.0),
    ):
        _add(families, spec, value)
    names = sorted(result.partitions)
    for key, spec in cat.PARTITION_NODES.items():
        fam = spec.family()
        for name in names:
            fam.add((name,), result.partitions[name].nodes.get(key, 0))
        families.append(fam)
    per_partition: dict[str, tuple[int, ...]] = {}
    for name, u in result.partitions.items():
        cpus_idle, cpus_other, gpus_idle, gpus_other = u.idle(settings)
        per_partition[name] = (u.cpus_alloc, cpus_idle, u.cpus_idle_usable, cpus_other, u.cpus_total,
                               u.gpus_alloc, gpus_idle, u.gpus_idle_usable, gpus_other, u.gpus_total)  # fmt: skip
    specs = (
        cat.PARTITION_CPUS_ALLOCATED, cat.PARTITION_CPUS_IDLE, cat.PARTITION_CPUS_IDLE_USABLE,
        cat.PARTITION_CPUS_OTHER, cat.PARTITION_CPUS_TOTAL, cat.PARTITION_GPUS_ALLOCATED, cat.PARTITION_GPUS_IDLE,
        cat.PARTITION_GPUS_IDLE_USABLE, cat.PARTITION_GPUS_OTHER, cat.PARTITION_GPUS_TOTAL,
    )  # fmt: skip
    for i, spec in enumerate(specs):
        fam = spec.family()
        for name in names:
            fam.add((name,), per_partition[name][i])
        families.append(fam)
    bad = cat.MALFORMED_RECORDS.family()
    bad.add(("sinfo",), result.malformed)
    families.append(bad)
    return families


def node_count(result: SinfoResult) -> int:
    return int(result.cluster.nodes["total"])


def per_node_families(
    result: SinfoResult, settings: SlurmSettings, reasons: list[DrainReason] | None = None
) -> list[MetricFamily]:
    """slurm_node_* (and SckyzO's status and drain reasons), or nothing but
    the overflow count when the cluster has more than slurm.max_nodes nodes."""
    overflow = cat.LABEL_OVERFLOW.family()
    nodes = node_count(result)
    if nodes > settings.max_nodes:
        overflow.add(("node",), nodes)
        return [overflow]
    overflow.add(("node",), 0)
    vpenso = settings.naming == "vpenso"
    specs = (cat.NODE_CPU_ALLOC, cat.NODE_CPU_IDLE, cat.NODE_CPU_OTHER, cat.NODE_CPU_TOTAL,
             cat.NODE_MEM_ALLOC, cat.NODE_MEM_TOTAL)  # fmt: skip
    fams = [spec.family(labels=cat.VPENSO_NODE_LABELS) if vpenso else spec.family() for spec in specs]
    status = cat.NODE_STATUS.family()
    done: set[str] = set()
    for row in sorted(result.rows, key=lambda r: (r.node, r.partition)):
        if vpenso:  # one series per node
            if row.node in done:
                continue
            done.add(row.node)
            labels: tuple[str, ...] = (row.node, row.status)
        else:
            labels = (row.node, row.status, row.partition)
            status.add(labels, 1)
        for fam, value in zip(fams, (*row.cpus, row.mem_alloc, row.mem_total), strict=True):
            fam.add(labels, value)
    out = [*fams, overflow]
    if not vpenso:
        out.append(status)
        drain = cat.NODE_DRAIN_REASON.family()
        for r in reasons or ():
            drain.add((r.node, r.reason, r.since), 1)
        out.append(drain)
    return out


@register
class SinfoCollector(PolledSlurmCollector):
    name = "sinfo"
    group = "slurm"
    default_roles = ("head",)
    description = (
        "Slurm nodes by state (power states of cloud nodes apart), CPUs and GPUs, "
        "cluster-wide, per partition and per node, from sinfo, polled every slurm.interval."
    )
    command = "sinfo"

    def poll(self) -> list[MetricFamily]:
        settings = self.settings
        parsed = parse_sinfo(self.runner.run(SINFO_ARGS).stdout)
        if parsed.malformed and not parsed.cluster.nodes["total"]:
            raise ValueError(f"sinfo: none of {parsed.malformed} lines is in the requested format")
        reasons: list[DrainReason] = []
        if settings.naming == "sckyzo" and 0 < node_count(parsed) <= settings.max_nodes:
            reasons, bad = parse_reasons(self.runner.run(REASON_ARGS).stdout)
            parsed.malformed += bad
        return sinfo_families(parsed, settings) + per_node_families(parsed, settings, reasons)
