"""Catalogue: Slurm metrics (port 9341, head role).

Names follow vpenso/prometheus-slurm-exporter and its maintained successor
SckyzO/slurm_exporter (which also serves on 9341), so existing Slurm
dashboards keep working. What nodeagent adds keeps the `slurm_` prefix where
it extends one of their families (power states, pending reasons, per-partition
node counts) and uses `nodeagent_slurm_` for the agent's own bookkeeping.

Node states. Every node is counted in exactly one of the state families
(NODE_STATES), so they add up to slurm_nodes_total. ParallelCluster's cloud
nodes carry a power-state suffix in sinfo (`idle~` powered down, `#` powering
up, `%` powering down, `!` power down pending): those nodes are counted in
slurm_nodes_powered_down / _powering_up / _powering_down and never as idle or
down. A node that does not respond (`*`) is counted in
slurm_nodes_not_responding as well as in its state, except that a
non-responding idle node is not idle capacity and counts as `other`.

CloudWatch: the head role publishes the dashboard's series (namespace
ParallelCluster/<cluster>): node, CPU, GPU and job counts, cluster-wide
(no dimension) and per partition (label `partition` -> dimension Partition),
under the same CloudWatch name with different dimensions.
"""

from __future__ import annotations

from nodeagent.catalogue.spec import CloudWatchSpec, MetricSpec, gauge

GROUP = "slurm"
HEAD = ("head",)
PARTITION = ("partition",)


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


def _node_specs(prefix: str, labels: tuple[str, ...], where: str) -> dict[str, MetricSpec]:
    specs: dict[str, MetricSpec] = {}
    for key, (text, cw) in NODE_STATES.items():
        specs[key] = gauge(
            f"{prefix}_{key}",
            f"{text}{where}",
            collector="sinfo",
            labels=labels,
            group=GROUP,
            cloudwatch=_cw(cw, labels) if cw else None,
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
        cloudwatch=_cw("NodesNotResponding", labels),
    )
    specs["total"] = gauge(
        f"{prefix}_total",
        f"Nodes in total{where}",
        collector="sinfo",
        labels=labels,
        group=GROUP,
        cloudwatch=_cw("NodesTotal", labels),
    )
    return specs


NODES = _node_specs("slurm_nodes", (), ".")
PARTITION_NODES = _node_specs("slurm_partition_nodes", PARTITION, ", per partition.")

# ---- CPUs and GPUs (sinfo) -------------------------------------------------------------

CPUS_ALLOC = gauge(
    "slurm_cpus_alloc", "Allocated CPUs.", collector="sinfo", group=GROUP, cloudwatch=_cw("CpusAllocated")
)
CPUS_IDLE = gauge(
    "slurm_cpus_idle",
    "Idle CPUs on nodes that can run jobs now (not powered down, drained, down or unresponsive).",
    collector="sinfo",
    group=GROUP,
    cloudwatch=_cw("CpusIdle"),
)
CPUS_OTHER = gauge(
    "slurm_cpus_other",
    "CPUs neither allocated nor idle: on down, drained, failed, powered-down or unresponsive nodes.",
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
    "Idle GPUs on nodes that can run jobs now.",
    collector="sinfo",
    group=GROUP,
    cloudwatch=_cw("GpusIdle"),
)
GPUS_OTHER = gauge(
    "slurm_gpus_other",
    "GPUs neither allocated nor idle: on down, drained, failed, powered-down or unresponsive nodes.",
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
    "Idle GPUs on nodes that can run jobs now, per partition.",
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


def _job_specs(prefix: str, labels: tuple[str, ...], where: str) -> dict[str, MetricSpec]:
    specs: dict[str, MetricSpec] = {}
    for key, (text, cw) in JOB_STATES.items():
        specs[key] = gauge(
            f"{prefix}_{key}",
            f"{text[:-1]}{where}",
            collector="squeue",
            labels=labels,
            group=GROUP,
            cloudwatch=_cw(cw, labels) if cw else None,
        )
    specs["pending_dependency"] = gauge(
        f"{prefix}_pending_dependency",
        f"Pending jobs waiting for a dependency (also counted in pending){where}",
        collector="squeue",
        labels=labels,
        group=GROUP,
    )
    specs["total"] = gauge(
        f"{prefix}_total",
        f"Jobs in the queue that have not finished (pending, running, suspended, completing, ...){where}",
        collector="squeue",
        labels=labels,
        group=GROUP,
        cloudwatch=_cw("JobsTotal", labels),
    )
    return specs


QUEUE = _job_specs("slurm_queue", (), ".")
# A job pending in several partitions counts once in each of them.
PARTITION_JOBS = _job_specs("slurm_partition_jobs", PARTITION, ", per partition.")

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
    "Distinct values of a label beyond slurm.max_label_values, summed into the value (other).",
    collector="slurm",
    labels=("label",),
    group=GROUP,
)
