"""Settings of the Slurm group (`slurm:` in the config file)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.settings import check_interval, check_timeout


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
