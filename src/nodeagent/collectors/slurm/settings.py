"""Settings of the Slurm group (`slurm:` in the config file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nodeagent.settings import MAX_INTERVAL, check_interval, check_range, check_timeout


def _check_bin_dir(value: object) -> str | None:
    if isinstance(value, str) and value and not value.startswith("/"):
        return f"must be an absolute directory, got {value!r}"
    return None


def _check_slurm_conf(value: object) -> str | None:
    if isinstance(value, str) and not value.startswith("/"):
        return f"must be an absolute path to slurm.conf, got {value!r}"
    return None


def _check_label_cap(value: object) -> str | None:
    if isinstance(value, int) and not 1 <= value <= 10000:
        return f"must be from 1 to 10000, got {value!r}"
    return None


def _check_max_nodes(value: object) -> str | None:
    if isinstance(value, int) and not 0 <= value <= 1_000_000:
        return f"must be from 0 (no per-node series) to 1000000, got {value!r}"
    return None


@dataclass(frozen=True)
class SlurmSettings:
    # directory searched first for sinfo, squeue, sdiag, sshare (where
    # ParallelCluster installs Slurm); commands not found there come from PATH
    bin_dir: str = field(default="/opt/slurm/bin", metadata={"check": _check_bin_dir})
    # slurm.conf the commands should read, passed to them as SLURM_CONF;
    # null leaves SLURM_CONF as the agent's environment has it
    slurm_conf: str | None = field(default=None, metadata={"check": _check_slurm_conf})
    # seconds one Slurm command may run; it is killed after that and the
    # collector reports failure until a later run succeeds
    command_timeout: float = field(default=10.0, metadata={"check": check_timeout})
    # seconds between two collections of each Slurm collector; they run in the
    # background, never once per scrape, so several Prometheus servers cannot
    # multiply the load on slurmctld
    interval: float = field(default=60.0, metadata={"check": check_interval})
    # how long the first scrape after start waits for the first collections
    # (seconds); the Slurm collectors start together and wait against one
    # deadline, capped at 80 % of collectors.timeout, so the first scrape is
    # served within collectors.timeout even with slurmctld hung
    first_collection_wait: float = field(default=4.0, metadata={"check": check_timeout})
    # count jobs that finished within slurmctld's MinJobAge (completed, failed,
    # timeout, ...) as well as the active ones (squeue --states=all)
    finished_jobs: bool = True
    # per-user series (slurm_user_*): off by default, one series per user
    per_user: bool = False
    # per-account series (slurm_account_*): off by default
    per_account: bool = False
    # at most this many distinct values of a user-controlled label (user,
    # account, pending reason); job counts beyond it are summed into the value
    # "(other)"; fairshare (not a sum) keeps the accounts with the most usage
    # and the user rows with the lowest factor. Either way the values left out
    # are counted in nodeagent_slurm_label_overflow
    max_label_values: int = field(default=100, metadata={"check": _check_label_cap})
    # which Slurm exporter's names, types and labels :9341 serves: "sckyzo"
    # (SckyzO/slurm_exporter v1.8, the maintained one) or "vpenso"
    # (vpenso/prometheus-slurm-exporter 0.20, archived); nodeagent's own
    # families (power states, pending reasons, fairshare levels, health) are
    # served under their own names either way
    naming: Literal["sckyzo", "vpenso"] = "sckyzo"
    # how idle CPUs and GPUs of powered-down or powering cloud nodes count in
    # slurm_cpus_idle / slurm_gpus_idle (and their per-partition forms):
    # "idle" as sinfo %C and both exporters count them, or "other" (capacity
    # not usable now). slurm_cpus_idle_usable and CloudWatch's CpusIdle /
    # GpusIdle count usable capacity only, whatever this says
    powered_down_idle: Literal["idle", "other"] = "idle"
    # while Slurm does not answer, the last good values are served for this
    # many seconds after the failed poll, then withdrawn (health families stay);
    # null: two slurm.interval
    serve_stale: float | None = field(default=None, metadata={"check": check_range(0, MAX_INTERVAL, unit="seconds")})
    # per-node series (slurm_node_*, one per node and partition) are served
    # only while the cluster has at most this many nodes; 0 turns them off
    max_nodes: int = field(default=4096, metadata={"check": _check_max_nodes})

    @property
    def stale_after(self) -> float:
        """Seconds the last good values outlive a failed poll."""
        return 2 * self.interval if self.serve_stale is None else self.serve_stale
