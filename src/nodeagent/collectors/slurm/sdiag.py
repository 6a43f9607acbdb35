"""Scheduler statistics from sdiag (slurmctld's own diagnostics).

sdiag has no machine-readable output on 22.05 (no --json, no -o), so its
report is read by section and key. Values missing from a report (no backfill
cycle yet) are left out rather than reported as 0. RPC statistics are read by
message type (a bounded set of Slurm's names) and, with slurm.naming: sckyzo,
by user (SckyzO's slurm_user_rpc_stats*): at most slurm.max_label_values
users, those with the most RPCs, the others counted in
nodeagent_slurm_label_overflow{label="rpc_user"}.
"""

from __future__ import annotations

import re

from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.labels import bounded
from nodeagent.collectors.slurm.poller import PolledSlurmCollector
from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.model import MetricFamily
from nodeagent.registry import register

# (section, key as printed) -> family key in cat.SCHEDULER
_KEYS: dict[tuple[str, str], str] = {
    ("", "Server thread count"): "threads",
    ("", "Agent queue size"): "queue_size",
    ("", "DBD Agent queue size"): "dbd_queue_size",
    ("", "Jobs submitted"): "jobs_submitted",
    ("", "Jobs started"): "jobs_started",
    ("", "Jobs completed"): "jobs_completed",
    ("", "Jobs canceled"): "jobs_canceled",
    ("", "Jobs failed"): "jobs_failed",
    ("main", "Last cycle"): "last_cycle",
    ("main", "Mean cycle"): "mean_cycle",
    ("main", "Cycles per minute"): "cycle_per_minute",
    ("backfill", "Total backfilled jobs (since last slurm start)"): "backfilled_jobs_since_start_total",
    ("backfill", "Total backfilled jobs (since last stats cycle start)"): "backfilled_jobs_since_cycle_total",
    ("backfill", "Total backfilled heterogeneous job components"): "backfilled_heterogeneous_total",
    ("backfill", "Last cycle"): "backfill_last_cycle",
    ("backfill", "Mean cycle"): "backfill_mean_cycle",
    ("backfill", "Depth Mean"): "backfill_depth_mean",
}
_RPC_USER = re.compile(r"^\s*(\S+)\s+\(\s*\d+\)\s+count:(\d+)\s+ave_time:(\d+)\s+total_time:(\d+)")
_RPC = re.compile(r"^\s*([A-Z][A-Z0-9_]+)\s+\(\s*\d+\)\s+count:(\d+)\s+ave_time:(\d+)\s+total_time:(\d+)")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?")


class SdiagResult:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.rpc: dict[str, tuple[float, float, float]] = {}
        self.rpc_user: dict[str, tuple[float, float, float]] = {}


def parse_sdiag(text: str) -> SdiagResult:
    res = SdiagResult()
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        lower = stripped.lower()
        if lower.startswith("main schedule statistics"):
            section = "main"
            continue
        if lower.startswith("backfilling stats"):
            section = "backfill"
            continue
        if lower.startswith("remote procedure call statistics by message type"):
            section = "rpc"
            continue
        if lower.startswith("remote procedure call statistics by user"):
            section = "rpc_user"
            continue
        if lower.startswith("pending rpc statistics"):
            section = "skip"
            continue
        if section == "rpc_user":
            m = _RPC_USER.match(line)
            if m:
                user = bounded(m.group(1))
                res.rpc_user[user] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
            continue
        if section == "rpc":
            m = _RPC.match(line)
            if m:
                res.rpc[m.group(1)] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
            continue
        if section == "skip" or ":" not in stripped:
            continue
        key, _, value = stripped.partition(":")
        target = _KEYS.get((section, key.strip()))
        if target is None:
            continue
        m = _NUMBER.match(value.strip())
        if m:
            res.values[target] = float(m.group(0))
    return res


def sdiag_families(res: SdiagResult, settings: SlurmSettings | None = None) -> list[MetricFamily]:
    settings = settings or SlurmSettings()
    families: list[MetricFamily] = []
    for key, spec in cat.SCHEDULER.items():
        if key in res.values:
            fam = spec.family()
            fam.add_unlabelled(res.values[key])
            families.append(fam)
    count = cat.RPC_STATS.family()
    avg = cat.RPC_STATS_AVG_TIME.family()
    total = cat.RPC_STATS_TOTAL_TIME.family()
    for op in sorted(res.rpc):
        c, a, t = res.rpc[op]
        count.add((op,), c)
        avg.add((op,), a)
        total.add((op,), t)
    families += [count, avg, total]
    if settings.naming == "sckyzo":
        families += _user_rpc(res, settings.max_label_values)
    return families


def _user_rpc(res: SdiagResult, limit: int) -> list[MetricFamily]:
    # averages cannot be summed into "(other)": keep the busiest users
    ranked = sorted(res.rpc_user, key=lambda u: (-res.rpc_user[u][0], u))
    count = cat.USER_RPC_STATS.family()
    avg = cat.USER_RPC_STATS_AVG_TIME.family()
    total = cat.USER_RPC_STATS_TOTAL_TIME.family()
    for user in sorted(ranked[:limit]):
        c, a, t = res.rpc_user[user]
        count.add((user,), c)
        avg.add((user,), a)
        total.add((user,), t)
    overflow = cat.LABEL_OVERFLOW.family()
    overflow.add(("rpc_user",), max(len(ranked) - limit, 0))
    return [count, avg, total, overflow]


@register
class SdiagCollector(PolledSlurmCollector):
    name = "sdiag"
    group = "slurm"
    default_roles = ("head",)
    description = "Slurm scheduler statistics (cycles, backfill, queue sizes, RPCs) from sdiag."
    command = "sdiag"

    def poll(self) -> list[MetricFamily]:
        res = parse_sdiag(self.runner.run(()).stdout)
        if "threads" not in res.values:
            raise ValueError("sdiag output has no 'Server thread count': not an sdiag report")
        return sdiag_families(res, self.settings)
