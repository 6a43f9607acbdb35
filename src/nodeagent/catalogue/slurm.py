"""Catalogue: Slurm metrics (port 9341, head role).

Names follow SckyzO/slurm_exporter v1.8 (slurm.naming: sckyzo, the default)
or vpenso/prometheus-slurm-exporter 0.20 (slurm.naming: vpenso), so existing
Slurm dashboards keep working. Where the two exporters give one name
different labels, the labels declared here are SckyzO's and VPENSO_LABELS
has vpenso's; SCKYZO_ONLY lists the names served in the sckyzo mode only.
What nodeagent adds keeps the `slurm_` prefix where it extends one of their
families (power states, pending reasons, per-partition node counts, each
node counted once cluster-wide) and uses `nodeagent_slurm_` for the agent's
own bookkeeping and Slurm's health; those are served in both modes.

Node states. Every node is counted in exactly one of the state families
(NODE_STATES), so they add up to slurm_nodes_total. ParallelCluster's cloud
nodes carry a power-state suffix in sinfo (`idle~` powered down, `#` powering
up, `%` powering down, `!` power down pending): those nodes are counted in
slurm_nodes_powered_down / _powering_up / _powering_down and never as idle or
down. A node that does not respond (`*`) is counted in
slurm_nodes_not_responding as well as in its state, except that a
non-responding idle node is not idle capacity and counts as `other`.

CPUs and GPUs of powered-down cloud nodes. slurm_cpus_idle follows sinfo
%C (slurm.powered_down_idle: idle, the default): idle CPUs of a powered-down
or powering node are idle, as sinfo and both exporters count them; with
`other` they count as other. slurm_cpus_idle_usable (and the GPU and
per-partition forms) always count only what can run a job now.

CloudWatch: the head role publishes the dashboard's series (namespace
ParallelCluster/<cluster>): node, CPU, GPU and job counts, cluster-wide
(no dimension) and per partition (label `partition` -> dimension Partition),
under the same CloudWatch name with different dimensions. They come from
families whose meaning does not depend on slurm.naming or
slurm.powered_down_idle: node counts from slurm_cluster_nodes_* (each node
once) and slurm_partition_nodes_*, idle CPUs and GPUs from *_idle_usable,
job counts summed over the labels the naming adds.
"""

from __future__ import annotations

from nodeagent.catalogue.spec import CloudWatchSpec, MetricSpec, counter, gauge

GROUP = "slurm"
HEAD = ("head",)
PARTITION = ("partition",)
# label names of SckyzO's families that vpenso serves with other labels
VPENSO_LABELS: dict[str, tuple[str, ...]] = {}
# names served only with slurm.naming: sckyzo
SCKYZO_ONLY: set[str] = set()
NODE_SET = ("partition", "active_feature_set")  # SckyzO's slurm_nodes_* labels


def _cw(name: str, dimensions: tuple[str, ...] = ()) -> CloudWatchSpec:
    return CloudWatchSpec(name=name, unit="Count", dimensions=dimensions, roles=HEAD)


# ---- nodes (sinfo) ---------------------------------------------------------------

# state key -> (help, CloudWatch name or None). Keys are the family suffixes.
NODE_STATES: dict[str, tuple[str, str | None]] = {
    "alloc": ("Allocated nodes (all CPUs allocated).", "NodesAllocated"),
    "comp": ("Completing nodes.", None),
    "down": ("Down nodes (a powered-down cloud node is never counted here).", "NodesDown"),
    "drain": ("Drained and draining nodes.", "NodesDrain"),
    "err": ("Nodes in the error state.", None),
    "fail": ("Failing and failed nodes.", None),
    "idle": ("Idle nodes that are powered up and responding: capacity usable now.", "NodesIdle"),
    "inval": ("Nodes with an invalid registration.", None),
    "maint": ("Nodes in maintenance.", None),
    "mix": ("Mixed nodes (some CPUs allocated).", "NodesMixed"),
    "resv": ("Reserved nodes.", None),
    "planned": ("Nodes planned by the backfill scheduler.", None),
    "other": ("Nodes in any other state (unknown, future, reboot, idle but not responding).", None),
    "powered_down": ("Cloud nodes powered down (sinfo suffix ~): not idle, not down.", "NodesPoweredDown"),
    "powering_up": ("Cloud nodes powering up (sinfo suffix #).", "NodesPoweringUp"),
    "powering_down": ("Cloud nodes powering down or about to (sinfo suffix % or !).", "NodesPoweringDown"),
}


# the states both exporters count per partition (SckyzO) or cluster-wide (vpenso)
EXPORTER_NODE_STATES = ("alloc", "comp", "down", "drain", "err", "fail", "idle", "inval", "maint", "mix",
                        "resv", "other", "planned")  # fmt: skip


def _node_specs(
    prefix: str, labels: tuple[str, ...], where: str, publish: bool = True, state_labels: tuple[str, ...] | None = None
) -> dict[str, MetricSpec]:
    specs: dict[str, MetricSpec] = {}
    for key, (text, cw) in NODE_STATES.items():
        own = labels if state_labels is None or key not in EXPORTER_NODE_STATES else state_labels
        specs[key] = gauge(
            f"{prefix}_{key}",
            f"{text}{where}",
            collector="sinfo",
            labels=own,
            group=GROUP,
            cloudwatch=_cw(cw, labels) if cw and publish else None,
        )
    specs["draining"] = gauge(
        f"{prefix}_draining",
        f"Nodes draining: drain requested while jobs still run (also counted in drain){where}",
        collector="sinfo",
        labels=labels,
        group=GROUP,
    )
    specs["not_responding"] = gauge(
        f"{prefix}_not_responding",
        f"Nodes not responding (sinfo suffix *), whatever their state{where}",
        collector="sinfo",
        labels=labels,
        group=GROUP,
        cloudwatch=_cw("NodesNotResponding", labels) if publish else None,
    )
    specs["total"] = gauge(
        f"{prefix}_total",
        f"Nodes in total{where}",
        collector="sinfo",
        labels=labels,
        group=GROUP,
        cloudwatch=_cw("NodesTotal", labels) if publish else None,
    )
    return specs


# The exporters' names: per partition and active feature set (SckyzO), or
# cluster-wide (vpenso); power states, draining, not responding and total
# are cluster-wide in both modes.
NODES = _node_specs(
    "slurm_nodes",
    (),
    " (sckyzo: per partition and active feature set; vpenso: cluster-wide).",
    publish=False,
    state_labels=NODE_SET,
)
for _key in EXPORTER_NODE_STATES:
    VPENSO_LABELS[NODES[_key].name] = ()
# each node once, whatever its partitions: what CloudWatch's Nodes* publish
CLUSTER_NODES = _node_specs("slurm_cluster_nodes", (), ", cluster-wide, each node once.")
PARTITION_NODES = _node_specs("slurm_partition_nodes", PARTITION, ", per partition.")

# ---- CPUs and GPUs (sinfo) -------------------------------------------------------------

CPUS_ALLOC = gauge(
    "slurm_cpus_alloc", "Allocated CPUs.", collector="sinfo", group=GROUP, cloudwatch=_cw("CpusAllocated")
)
CPUS_IDLE = gauge(
    "slurm_cpus_idle",
    "Idle CPUs as sinfo %C counts them: with slurm.powered_down_idle: other, those of powered-down, "
    "powering or unresponsive nodes count as other.",
    collector="sinfo",
    group=GROUP,
)
CPUS_IDLE_USABLE = gauge(
    "slurm_cpus_idle_usable",
    "Idle CPUs on nodes that can run jobs now (not powered down, powering, drained, down or unresponsive).",
    collector="sinfo",
    group=GROUP,
    cloudwatch=_cw("CpusIdle"),
)
CPUS_OTHER = gauge(
    "slurm_cpus_other",
    "CPUs neither allocated nor idle: on down, drained or failed nodes (and, with slurm.powered_down_idle: "
    "other, powered-down, powering or unresponsive ones).",
    collector="sinfo",
    group=GROUP,
)
CPUS_TOTAL = gauge("slurm_cpus_total", "CPUs in total.", collector="sinfo", group=GROUP, cloudwatch=_cw("CpusTotal"))

GPUS_ALLOC = gauge(
    "slurm_gpus_alloc",
    "Allocated GPUs (sinfo GresUsed).",
    collector="sinfo",
    group=GROUP,
    cloudwatch=_cw("GpusAllocated"),
)
GPUS_IDLE = gauge(
    "slurm_gpus_idle",
    "Free GPUs on nodes whose CPUs sinfo counts idle (slurm.powered_down_idle as for CPUs).",
    collector="sinfo",
    group=GROUP,
)
GPUS_IDLE_USABLE = gauge(
    "slurm_gpus_idle_usable",
    "Free GPUs on nodes that can run jobs now.",
    collector="sinfo",
    group=GROUP,
    cloudwatch=_cw("GpusIdle"),
)
GPUS_OTHER = gauge(
    "slurm_gpus_other",
    "GPUs neither allocated nor idle: on down, drained or failed nodes (and, with slurm.powered_down_idle: "
    "other, powered-down, powering or unresponsive ones).",
    collector="sinfo",
    group=GROUP,
)
GPUS_TOTAL = gauge(
    "slurm_gpus_total",
    "GPUs in total (sinfo Gres).",
    collector="sinfo",
    group=GROUP,
    cloudwatch=_cw("GpusTotal"),
)
GPUS_UTILIZATION = gauge(
    "slurm_gpus_utilization",
    "Allocated GPUs / total GPUs (0 without GPUs).",
    collector="sinfo",
    group=GROUP,
)

PARTITION_CPUS_ALLOCATED = gauge(
    "slurm_partition_cpus_allocated",
    "Allocated CPUs, per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
    cloudwatch=_cw("CpusAllocated", PARTITION),
)
PARTITION_CPUS_IDLE = gauge(
    "slurm_partition_cpus_idle",
    "Idle CPUs as sinfo %C counts them (see slurm_cpus_idle), per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
)
PARTITION_CPUS_IDLE_USABLE = gauge(
    "slurm_partition_cpus_idle_usable",
    "Idle CPUs on nodes that can run jobs now, per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
    cloudwatch=_cw("CpusIdle", PARTITION),
)
PARTITION_CPUS_OTHER = gauge(
    "slurm_partition_cpus_other",
    "CPUs neither allocated nor idle, per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
)
PARTITION_CPUS_TOTAL = gauge(
    "slurm_partition_cpus_total",
    "CPUs in total, per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
    cloudwatch=_cw("CpusTotal", PARTITION),
)
PARTITION_GPUS_ALLOCATED = gauge(
    "slurm_partition_gpus_allocated",
    "Allocated GPUs, per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
    cloudwatch=_cw("GpusAllocated", PARTITION),
)
PARTITION_GPUS_IDLE = gauge(
    "slurm_partition_gpus_idle",
    "Free GPUs on nodes whose CPUs sinfo counts idle (see slurm_gpus_idle), per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
)
PARTITION_GPUS_IDLE_USABLE = gauge(
    "slurm_partition_gpus_idle_usable",
    "Free GPUs on nodes that can run jobs now, per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
    cloudwatch=_cw("GpusIdle", PARTITION),
)
PARTITION_GPUS_OTHER = gauge(
    "slurm_partition_gpus_other",
    "GPUs neither allocated nor idle, per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
)
PARTITION_GPUS_TOTAL = gauge(
    "slurm_partition_gpus_total",
    "GPUs in total, per partition.",
    collector="sinfo",
    labels=PARTITION,
    group=GROUP,
    cloudwatch=_cw("GpusTotal", PARTITION),
)

# ---- per node (sinfo; at most slurm.max_nodes nodes) ------------------------------------

NODE_LABELS = ("node", "status", "partition")  # SckyzO: one series per node and partition
VPENSO_NODE_LABELS = ("node", "status")  # vpenso: one series per node


def _per_node(name: str, text: str) -> MetricSpec:
    spec = gauge(name, text + " (sinfo -N; status is sinfo's StateLong).", collector="sinfo",
                 labels=NODE_LABELS, group=GROUP)  # fmt: skip
    VPENSO_LABELS[name] = VPENSO_NODE_LABELS
    return spec


NODE_CPU_ALLOC = _per_node("slurm_node_cpu_alloc", "Allocated CPUs per node")
NODE_CPU_IDLE = _per_node("slurm_node_cpu_idle", "Idle CPUs per node, as sinfo %C counts them")
NODE_CPU_OTHER = _per_node("slurm_node_cpu_other", "Other CPUs per node")
NODE_CPU_TOTAL = _per_node("slurm_node_cpu_total", "Total CPUs per node")
NODE_MEM_ALLOC = _per_node("slurm_node_mem_alloc", "Allocated memory per node, MiB")
NODE_MEM_TOTAL = _per_node("slurm_node_mem_total", "Total memory per node, MiB")
NODE_STATUS = gauge(
    "slurm_node_status",
    "1 for each node and partition, with the node's state (sinfo StateLong) in `status`.",
    collector="sinfo",
    labels=NODE_LABELS,
    group=GROUP,
)
NODE_DRAIN_REASON = gauge(
    "slurm_node_drain_reason_info",
    "1 for each drained, draining or down node with a reason: the reason (at most 48 bytes, longer ones "
    "shortened with a hash) and since when (sinfo %H).",
    collector="sinfo",
    labels=("node", "reason", "since"),
    group=GROUP,
)
SCKYZO_ONLY.update({NODE_STATUS.name, NODE_DRAIN_REASON.name})

# ---- jobs (squeue) ---------------------------------------------------------------------

# state key -> (help, CloudWatch name or None)
JOB_STATES: dict[str, tuple[str, str | None]] = {
    "pending": ("Pending jobs.", "JobsPending"),
    "running": ("Running jobs.", "JobsRunning"),
    "suspended": ("Suspended jobs.", None),
    "cancelled": ("Cancelled jobs (finished within MinJobAge).", None),
    "completing": ("Completing jobs.", None),
    "completed": ("Completed jobs (finished within MinJobAge).", None),
    "configuring": ("Configuring jobs (waiting for their nodes, e.g. powering up).", None),
    "failed": ("Failed jobs (finished within MinJobAge).", None),
    "timeout": ("Jobs stopped by their time limit (within MinJobAge).", None),
    "preempted": ("Preempted jobs (within MinJobAge).", None),
    "node_fail": ("Jobs stopped by a node failure (within MinJobAge).", None),
    "other": ("Jobs in any other state (requeued, held for requeue, boot_fail, deadline, oom, ...).", None),
}


# the states both exporters name (slurm_queue_<state>, SckyzO's slurm_cores_<state>, slurm_jobs_<state>)
EXPORTER_JOB_STATES = ("pending", "running", "suspended", "cancelled", "completing", "completed", "configuring",
                       "failed", "timeout", "preempted", "node_fail")  # fmt: skip
QUEUE_LABELS = ("user", "partition")  # SckyzO's slurm_queue_* and slurm_cores_*
QUEUE_PENDING_LABELS = ("user", "partition", "reason")  # ... for pending jobs


def _job_specs(
    prefix: str, labels: tuple[str, ...], where: str, publish: bool = True, exporter: bool = False
) -> dict[str, MetricSpec]:
    specs: dict[str, MetricSpec] = {}
    plain = "." if exporter else where  # the families with the same labels in both modes
    for key, (text, cw) in JOB_STATES.items():
        own = labels
        if exporter and key in EXPORTER_JOB_STATES:
            own = QUEUE_PENDING_LABELS if key == "pending" else QUEUE_LABELS
        specs[key] = gauge(
            f"{prefix}_{key}",
            f"{text[:-1]}{where if own != labels else plain}",
            collector="squeue",
            labels=own,
            group=GROUP,
            # summed over the labels the naming adds: each job is in one series
            cloudwatch=_cw(cw, labels) if cw and publish else None,
        )
        if exporter and key in EXPORTER_JOB_STATES:
            VPENSO_LABELS[specs[key].name] = ()
    specs["pending_dependency"] = gauge(
        f"{prefix}_pending_dependency",
        f"Pending jobs waiting for a dependency (also counted in pending){plain}",
        collector="squeue",
        labels=labels,
        group=GROUP,
    )
    specs["total"] = gauge(
        f"{prefix}_total",
        f"Jobs in the queue that have not finished (pending, running, suspended, completing, ...){plain}",
        collector="squeue",
        labels=labels,
        group=GROUP,
        cloudwatch=_cw("JobsTotal", labels),
    )
    return specs


QUEUE = _job_specs(
    "slurm_queue",
    (),
    " (sckyzo: per user and partition, pending ones per reason too; vpenso: in total).",
    exporter=True,
)
# A job pending in several partitions counts once in each of them.
PARTITION_JOBS = _job_specs("slurm_partition_jobs", PARTITION, ", per partition.")

# SckyzO's CPU counts per job state and its cluster-wide job totals
CORES = {
    key: gauge(
        f"slurm_cores_{key}",
        f"CPUs of {key.replace('_', ' ')} jobs, per user and partition" + (" and reason." if key == "pending" else "."),
        collector="squeue",
        labels=QUEUE_PENDING_LABELS if key == "pending" else QUEUE_LABELS,
        group=GROUP,
    )
    for key in EXPORTER_JOB_STATES
}
JOBS = {
    key: gauge(
        f"slurm_jobs_{key}",
        f"{key.replace('_', ' ').capitalize()} jobs in the cluster.",
        collector="squeue",
        group=GROUP,
    )
    for key in EXPORTER_JOB_STATES
}
JOBS_CORES_RUNNING = gauge("slurm_jobs_cores_running", "CPUs of running jobs.", collector="squeue", group=GROUP)
JOBS_CORES_PENDING = gauge("slurm_jobs_cores_pending", "CPUs requested by pending jobs.", collector="squeue",
                           group=GROUP)  # fmt: skip
SCKYZO_ONLY.update(spec.name for spec in (*CORES.values(), *JOBS.values(), JOBS_CORES_RUNNING, JOBS_CORES_PENDING))

QUEUE_PENDING_REASON = gauge(
    "slurm_queue_pending_reason",
    "Pending jobs by the reason they wait (Resources, Priority, JobHeldUser, ...).",
    collector="squeue",
    labels=("reason",),
    group=GROUP,
    # Slurm's reasons are a fixed enumeration, so the Reason dimension stays bounded
    cloudwatch=_cw("JobsPendingByReason", ("reason",)),
)
PARTITION_JOBS_PENDING_REASON = gauge(
    "slurm_partition_jobs_pending_reason",
    "Pending jobs by the reason they wait, per partition.",
    collector="squeue",
    labels=("partition", "reason"),
    group=GROUP,
)
QUEUE_CPUS_PENDING = gauge(
    "slurm_queue_cpus_pending", "CPUs requested by pending jobs.", collector="squeue", group=GROUP
)
QUEUE_CPUS_RUNNING = gauge(
    "slurm_queue_cpus_running", "CPUs allocated to running jobs.", collector="squeue", group=GROUP
)

# per user / per account: opt-in (slurm.per_user, slurm.per_account), bounded


def _owner_specs(owner: str) -> dict[str, MetricSpec]:
    labels = (owner,)
    return {
        "jobs_pending": gauge(
            f"slurm_{owner}_jobs_pending", f"Pending jobs, per {owner}.", "squeue", labels, group=GROUP
        ),
        "jobs_running": gauge(
            f"slurm_{owner}_jobs_running", f"Running jobs, per {owner}.", "squeue", labels, group=GROUP
        ),
        "jobs_suspended": gauge(
            f"slurm_{owner}_jobs_suspended", f"Suspended jobs, per {owner}.", "squeue", labels, group=GROUP
        ),
        "cpus_running": gauge(
            f"slurm_{owner}_cpus_running", f"CPUs of running jobs, per {owner}.", "squeue", labels, group=GROUP
        ),
        "gpus_running": gauge(
            f"slurm_{owner}_gpus_running",
            f"GPUs of running jobs (requested per node, job and task), per {owner}.",
            "squeue",
            labels,
            group=GROUP,
        ),
    }


USER = _owner_specs("user")
ACCOUNT = _owner_specs("account")

# ---- scheduler (sdiag) --------------------------------------------------------------

_SDIAG = "Information provided by the Slurm sdiag command, "
SCHEDULER: dict[str, MetricSpec] = {
    key: gauge(f"slurm_scheduler_{key}", _SDIAG + text, collector="sdiag", group=GROUP)
    for key, text in (
        ("threads", "number of scheduler threads"),
        ("queue_size", "length of the scheduler queue"),
        ("dbd_queue_size", "length of the DBD agent queue"),
        ("last_cycle", "scheduler last cycle time in (microseconds)"),
        ("mean_cycle", "scheduler mean cycle time in (microseconds)"),
        ("cycle_per_minute", "number scheduler cycles per minute"),
        ("backfill_last_cycle", "scheduler backfill last cycle time in (microseconds)"),
        ("backfill_mean_cycle", "scheduler backfill mean cycle time in (microseconds)"),
        ("backfill_depth_mean", "scheduler backfill mean depth"),
        (
            "backfilled_jobs_since_start_total",
            "number of jobs started thanks to backfilling since last slurm start",
        ),
        (
            "backfilled_jobs_since_cycle_total",
            "number of jobs started thanks to backfilling since last time stats where reset",
        ),
        (
            "backfilled_heterogeneous_total",
            "number of heterogeneous job components started thanks to backfilling since last Slurm start",
        ),
        ("jobs_submitted", "jobs submitted since the last stats reset"),
        ("jobs_started", "jobs started since the last stats reset"),
        ("jobs_completed", "jobs completed since the last stats reset"),
        ("jobs_canceled", "jobs canceled since the last stats reset"),
        ("jobs_failed", "jobs failed since the last stats reset"),
    )
}
RPC_STATS = gauge(
    "slurm_rpc_stats",
    "RPCs served by slurmctld since the last stats reset, by message type (sdiag).",
    collector="sdiag",
    labels=("operation",),
    group=GROUP,
)
RPC_STATS_AVG_TIME = gauge(
    "slurm_rpc_stats_avg_time",
    "Average time of an RPC by message type, microseconds (sdiag).",
    collector="sdiag",
    labels=("operation",),
    group=GROUP,
)
RPC_STATS_TOTAL_TIME = gauge(
    "slurm_rpc_stats_total_time",
    "Total time spent in RPCs by message type, microseconds (sdiag).",
    collector="sdiag",
    labels=("operation",),
    group=GROUP,
)

USER_RPC_STATS = gauge(
    "slurm_user_rpc_stats",
    "RPCs sent to slurmctld since the last stats reset, per user (sdiag; at most slurm.max_label_values users, "
    "the busiest).",
    collector="sdiag",
    labels=("user",),
    group=GROUP,
)
USER_RPC_STATS_AVG_TIME = gauge(
    "slurm_user_rpc_stats_avg_time",
    "Average time of a user's RPCs, microseconds (sdiag).",
    collector="sdiag",
    labels=("user",),
    group=GROUP,
)
USER_RPC_STATS_TOTAL_TIME = gauge(
    "slurm_user_rpc_stats_total_time",
    "Total time spent in a user's RPCs, microseconds (sdiag).",
    collector="sdiag",
    labels=("user",),
    group=GROUP,
)
SCKYZO_ONLY.update(x.name for x in (USER_RPC_STATS, USER_RPC_STATS_AVG_TIME, USER_RPC_STATS_TOTAL_TIME))

# ---- fairshare (sshare; only where accounting is configured) ------------------------

ACCOUNT_FAIRSHARE = gauge(
    "slurm_account_fairshare",
    "FairShare factor of the account (0 lowest priority, 1 highest).",
    collector="sshare",
    labels=("account",),
    group=GROUP,
)
ACCOUNT_FAIRSHARE_LEVEL = gauge(
    "slurm_account_fairshare_level",
    "Fair Tree LevelFS of the account: its normalised shares over its normalised usage among its siblings; "
    "> 1 = under-served (sshare LevelFS; absent under the classic algorithm)",
    collector="sshare",
    labels=("account",),
    group=GROUP,
)
ACCOUNT_FAIRSHARE_NORM_SHARES = gauge(
    "slurm_account_fairshare_norm_shares",
    "Normalised shares of the account.",
    collector="sshare",
    labels=("account",),
    group=GROUP,
)
ACCOUNT_FAIRSHARE_NORM_USAGE = gauge(
    "slurm_account_fairshare_norm_usage",
    "Normalised usage of the account.",
    collector="sshare",
    labels=("account",),
    group=GROUP,
)
ACCOUNT_FAIRSHARE_RAW_SHARES = gauge(
    "slurm_account_fairshare_raw_shares",
    "Raw shares of the account.",
    collector="sshare",
    labels=("account",),
    group=GROUP,
)
ACCOUNT_FAIRSHARE_RAW_USAGE = gauge(
    "slurm_account_fairshare_raw_usage_cpu_seconds",
    "Raw (decayed) usage of the account, CPU-seconds.",
    collector="sshare",
    labels=("account",),
    group=GROUP,
)
USER_FAIRSHARE = gauge(
    "slurm_user_fairshare",
    "FairShare factor of a user in an account (only with slurm.per_user).",
    collector="sshare",
    labels=("account", "user"),
    group=GROUP,
)

USER_FAIRSHARE_SHARES: dict[str, MetricSpec] = {
    key: gauge(
        f"slurm_user_fairshare_{key}",
        f"{text} of a user in an account (only with slurm.per_user).",
        collector="sshare",
        labels=("account", "user"),
        group=GROUP,
    )
    for key, text in (
        ("raw_shares", "Raw shares"),
        ("norm_shares", "Normalised shares"),
        ("raw_usage_cpu_seconds", "Raw (decayed) usage, CPU-seconds,"),
        ("norm_usage", "Normalised usage"),
    )
}
SCKYZO_ONLY.update(x.name for x in USER_FAIRSHARE_SHARES.values())

# ---- licenses, reservations, version (scontrol; sckyzo naming only) ---------------------

LICENSE: dict[str, MetricSpec] = {
    key: gauge(
        f"slurm_license_{key}",
        f"{text} (scontrol show licenses).",
        collector="scontrol",
        labels=("license",),
        group=GROUP,
    )
    for key, text in (
        ("total", "Licenses in total"),
        ("used", "Licenses in use"),
        ("free", "Licenses free"),
        ("reserved", "Licenses reserved"),
    )
}
RESERVATION_INFO = gauge(
    "slurm_reservation_info",
    "1 for each reservation, with its state, users, nodes, partition and flags (scontrol show reservation; "
    "values over 48 bytes shortened with a hash).",
    collector="scontrol",
    labels=("reservation_name", "state", "users", "nodes", "partition", "flags"),
    group=GROUP,
)
RESERVATION_START = gauge(
    "slurm_reservation_start_time_seconds", "Start of the reservation, Unix time.", collector="scontrol",
    labels=("reservation_name",), unit="seconds", group=GROUP,
)  # fmt: skip
RESERVATION_END = gauge(
    "slurm_reservation_end_time_seconds", "End of the reservation, Unix time.", collector="scontrol",
    labels=("reservation_name",), unit="seconds", group=GROUP,
)  # fmt: skip
RESERVATION_NODE_COUNT = gauge(
    "slurm_reservation_node_count", "Nodes in the reservation.", collector="scontrol",
    labels=("reservation_name",), group=GROUP,
)  # fmt: skip
RESERVATION_CORE_COUNT = gauge(
    "slurm_reservation_core_count", "Cores in the reservation.", collector="scontrol",
    labels=("reservation_name",), group=GROUP,
)  # fmt: skip
RESERVATION_NODES: dict[str, MetricSpec] = {
    key: gauge(
        f"slurm_reservation_nodes_{key}",
        f"{text} in an active reservation (scontrol show nodes).",
        collector="scontrol",
        labels=("reservation",),
        group=GROUP,
    )
    for key, text in (
        ("alloc", "Allocated nodes"),
        ("idle", "Idle nodes"),
        ("mix", "Mixed nodes"),
        ("down", "Down nodes"),
        ("drain", "Drained and draining nodes"),
        ("planned", "Planned nodes"),
        ("other", "Nodes in other states"),
        ("healthy", "Allocated, idle, mixed or planned nodes"),
    )
}
SLURM_INFO = gauge(
    "slurm_info",
    "1 with Slurm's version: type=general (the version of sinfo), and type=binary for each client "
    "command, whose version is `unavailable` when it does not run (value 0).",
    collector="scontrol",
    labels=("type", "binary", "version"),
    group=GROUP,
)
SCKYZO_ONLY.update(x.name for x in (*LICENSE.values(), RESERVATION_INFO, RESERVATION_START, RESERVATION_END,
                                     RESERVATION_NODE_COUNT, RESERVATION_CORE_COUNT, *RESERVATION_NODES.values(),
                                     SLURM_INFO))  # fmt: skip

# ---- Slurm's health (every poller, both namings) ----------------------------------------

UP = gauge(
    "nodeagent_slurm_up",
    "1 when the last poll of the command succeeded, 0 when it failed (slurmctld down or hung, the command "
    "timed out or exited non-zero).",
    collector="slurm_health",
    labels=("command",),
    group=GROUP,
)
POLL_FAILURES = counter(
    "nodeagent_slurm_poll_failures_total",
    "Polls of the command that failed since the agent started.",
    collector="slurm_health",
    labels=("command",),
    group=GROUP,
)
DATA_AGE = gauge(
    "nodeagent_slurm_data_age_seconds",
    "Age of the data served for the command (since its last good poll); the data is withdrawn when it is "
    "older than slurm.serve_stale after a failed poll (default: two slurm.interval).",
    collector="slurm_health",
    labels=("command",),
    unit="seconds",
    group=GROUP,
)
# SckyzO's own health families, from the same numbers (collector = nodeagent's Slurm collector)
EXPORTER_COLLECTOR_SUCCESS = gauge(
    "slurm_exporter_collector_success", "1 when the last poll of the collector succeeded (nodeagent_slurm_up).",
    collector="slurm_health", labels=("collector",), group=GROUP,
)  # fmt: skip
EXPORTER_COLLECTOR_DURATION = gauge(
    "slurm_exporter_collector_duration_seconds", "How long the collector's last poll took, seconds.",
    collector="slurm_health", labels=("collector",), unit="seconds", group=GROUP,
)  # fmt: skip
EXPORTER_COMMAND_ERRORS = counter(
    "slurm_exporter_command_errors_total", "Failed polls of the command (nodeagent_slurm_poll_failures_total).",
    collector="slurm_health", labels=("command",), group=GROUP,
)  # fmt: skip
EXPORTER_CACHE_AGE = gauge(
    "slurm_exporter_cache_age_seconds", "Age of the data served for the command, seconds "
    "(nodeagent_slurm_data_age_seconds).",
    collector="slurm_health", labels=("cache",), unit="seconds", group=GROUP,
)  # fmt: skip
SCKYZO_ONLY.update(x.name for x in (EXPORTER_COLLECTOR_SUCCESS, EXPORTER_COLLECTOR_DURATION, EXPORTER_COMMAND_ERRORS,
                                     EXPORTER_CACHE_AGE))  # fmt: skip

# ---- the collectors' own bookkeeping --------------------------------------------

COMMAND_DURATION = gauge(
    "nodeagent_slurm_command_duration_seconds",
    "How long the Slurm command of the last collection ran.",
    collector="slurm",
    labels=("command",),
    unit="seconds",
    group=GROUP,
)
COLLECTION_TIMESTAMP = gauge(
    "nodeagent_slurm_collection_timestamp_seconds",
    "When the data served now was collected (Unix time); collection runs every slurm.interval.",
    collector="slurm",
    labels=("command",),
    unit="seconds",
    group=GROUP,
)
MALFORMED_RECORDS = gauge(
    "nodeagent_slurm_malformed_records",
    "Output records of the last collection that could not be parsed and were skipped.",
    collector="slurm",
    labels=("command",),
    group=GROUP,
)
LABEL_OVERFLOW = gauge(
    "nodeagent_slurm_label_overflow",
    "Distinct values of a label beyond slurm.max_label_values, summed into the value (other); for "
    'label="node", the nodes of a cluster larger than slurm.max_nodes (per-node series left out).',
    collector="slurm",
    labels=("label",),
    group=GROUP,
)
