"""How `nodeagent check` runs (command-line choices, not config-file settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckOptions:
    # check the systemd unit and the HTTP endpoints (off: the daemon is not
    # meant to run yet, e.g. an image build or a chroot)
    endpoints: bool = True
    # --slurm-health: the node-local checks only, then drain or resume this node
    slurm_health: bool = False
    # --slurm-health: report what would be done to the node, change nothing
    dry_run: bool = False
    # --slurm-health: this node's Slurm name (default: $SLURMD_NODENAME, else
    # the node whose NodeHostname is this host's name)
    node: str | None = None
    systemctl: str = "/usr/bin/systemctl"
    journalctl: str = "/usr/bin/journalctl"
    # seconds per endpoint request, per statfs of a Lustre mount, per command
    http_timeout: float = 5.0
    lustre_timeout: float = 5.0
    command_timeout: float = 10.0
