"""`nodeagent check --slurm-health`: Slurm's HealthCheckProgram.

slurmd runs HealthCheckProgram as root every HealthCheckInterval seconds,
with no arguments and an environment holding little more than
SLURMD_NODENAME, so Slurm's commands are found through slurm.bin_dir and
slurm.conf through slurm.slurm_conf (or the commands' built-in default). As
the program takes no arguments, point it at a two-line wrapper:

    #!/bin/sh
    exec /usr/bin/nodeagent check --slurm-health

The node-local checks run (checks/node.py: GPUs, driver, XIDs, EFA, Lustre;
every failure there is node-fatal). Then, following the convention of LBNL
NHC, nodeagent touches only what it owns:

- node-fatal finding: drain the node with a reason that starts `nodeagent:`
  (`scontrol update NodeName=N State=DRAIN Reason="nodeagent: ..."`), unless
  the node already carries a reason that is not nodeagent's (an admin's
  drain, a DOWN set by slurmctld): that one is never overwritten;
- no finding: resume the node (State=RESUME) only when it is drained with a
  reason that starts `nodeagent:`; a drain anyone else set is left alone.

The node's Slurm name: --node, else $SLURMD_NODENAME (what slurmd passes),
else the one node whose NodeHostname is this host's name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import structlog

from nodeagent.checks.result import CheckRow, fail, ok, warn
from nodeagent.collectors.slurm.runner import SlurmRunner
from nodeagent.config import Config
from nodeagent.host import CommandError, Host

log = structlog.get_logger(__name__)

REASON_PREFIX = "nodeagent:"
MAX_REASON = 200
_REASON_SUFFIX = re.compile(r"\s*\[[^\]\[]*@[^\]\[]*\]\s*$")  # " [root@2026-01-01T00:00:00]"
_UNSAFE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class NodeState:
    name: str
    state: str  # e.g. IDLE+DRAIN
    reason: str  # without Slurm's " [user@time]" suffix; "" when none
    hostname: str = ""

    @property
    def flags(self) -> set[str]:
        return set(self.state.split("+"))

    @property
    def drained(self) -> bool:
        """DRAIN set (drained or draining)."""
        return "DRAIN" in self.flags

    @property
    def ours(self) -> bool:
        return self.reason.startswith(REASON_PREFIX)


def parse_show_node(text: str) -> list[NodeState]:
    """`scontrol show node -o` output: one node per line. Values are single
    words except Reason, which runs to its " [user@time]" suffix (the last
    field of the line in Slurm 22.05 and later)."""
    nodes: list[NodeState] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("NodeName="):
            continue
        reason = ""
        head = line
        at = line.find(" Reason=")
        if at >= 0:
            head, reason = line[:at], line[at + len(" Reason=") :]
            reason = _REASON_SUFFIX.sub("", reason).strip()
        fields = dict(part.split("=", 1) for part in head.split() if "=" in part)
        nodes.append(
            NodeState(fields.get("NodeName", ""), fields.get("State", ""), reason, fields.get("NodeHostName", ""))
        )
    return nodes


def drain_reason(findings: list[str]) -> str:
    """'nodeagent: <finding>; <finding>', printable ASCII, at most MAX_REASON characters."""
    text = _UNSAFE.sub("?", "; ".join(findings)).replace('"', "'")
    reason = f"{REASON_PREFIX} {text}"
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


@dataclass(frozen=True)
class Decision:
    action: str  # drain, resume or none
    why: str


def decide(node: NodeState, findings: list[str]) -> Decision:
    """What to do to the node: the NHC convention (see the module doc)."""
    if findings:
        reason = drain_reason(findings)
        if node.reason and not node.ours:
            return Decision("none", f"not drained by nodeagent: it already carries another reason ({node.reason!r})")
        if node.drained and node.reason == reason:
            return Decision("none", f"already drained: {reason}")
        return Decision("drain", reason)
    if node.drained and node.ours:
        return Decision("resume", f"healthy again: clearing nodeagent's drain ({node.reason!r})")
    if node.drained:
        return Decision("none", f"healthy; drained by someone else ({node.reason!r}): left alone")
    return Decision("none", "healthy")


class Scontrol:
    def __init__(self, cfg: Config, host: Host) -> None:
        self.runner = SlurmRunner(host, cfg.slurm, "scontrol")

    def show(self, node: str | None = None) -> list[NodeState]:
        args = ["--oneliner", "show", "node"]
        if node is not None:
            args.append(node)
        return parse_show_node(self.runner.run(args).stdout)

    def update(self, node: str, *settings: str) -> None:
        self.runner.run(["update", f"NodeName={node}", *settings])


def resolve_node(explicit: str | None, host: Host, scontrol: Scontrol) -> str:
    """This node's Slurm name (see the module doc). Raises LookupError."""
    if explicit:
        return explicit
    env = os.environ.get("SLURMD_NODENAME")
    if env:
        return env
    full = host.hostname()
    names = {full, full.split(".", 1)[0]}
    matches = [n.name for n in scontrol.show() if n.hostname in names or n.name in names]
    if len(matches) == 1:
        return matches[0]
    found = f"{len(matches)} nodes ({', '.join(matches[:5])})" if matches else "no node"
    raise LookupError(f"{found} with NodeHostname {full!r}: pass --node or set SLURMD_NODENAME")


def apply(cfg: Config, host: Host, findings: list[str], node_arg: str | None, dry_run: bool) -> CheckRow:
    """Drain or resume this node as the findings say; one row for the report."""
    scontrol = Scontrol(cfg, host)
    try:
        name = resolve_node(node_arg, host, scontrol)
    except LookupError as e:
        return fail("slurm node", f"cannot tell this node's Slurm name: {e}", "pass --node NAME")
    except CommandError as e:
        return fail("slurm node", f"cannot list Slurm's nodes: {e}", "pass --node NAME; is slurmctld up?")
    check = f"slurm node {name}"
    try:
        states = scontrol.show(name)
    except CommandError as e:
        return fail(check, f"cannot read the node's state: {e}",
                    "is slurmctld up (`scontrol ping`)? are slurm.bin_dir / slurm.slurm_conf right?")
    if len(states) != 1:
        return fail(check, f"`scontrol show node {name}` returned {len(states)} nodes", "pass --node NAME")
    node = states[0]
    decision = decide(node, findings)
    state = f"state {node.state}"
    if decision.action == "none":
        if findings:
            return fail(check, f"{state}; {decision.why}", "fix the findings above", fatal=True)
        return ok(check, f"{state}; {decision.why}") if not node.drained else warn(check, f"{state}; {decision.why}")
    if dry_run:
        verb = "would drain" if decision.action == "drain" else "would resume"
        row = f"{state}; {verb} (dry run): {decision.why}"
        return fail(check, row, "fix the findings above", fatal=True) if findings else ok(check, row)
    try:
        if decision.action == "drain":
            scontrol.update(name, "State=DRAIN", f"Reason={decision.why}")
        else:
            scontrol.update(name, "State=RESUME")
    except CommandError as e:
        log.error("slurm_node_update_failed", node=name, action=decision.action, error=str(e))
        return fail(check, f"{state}; scontrol update failed: {e}", "run it as root or SlurmUser")
    if decision.action == "drain":
        log.warning("slurm_node_drained", node=name, reason=decision.why)
        return fail(check, f"{state}; drained: {decision.why}", "fix the findings above; the next run resumes it",
                    fatal=True)
    log.info("slurm_node_resumed", node=name, reason=node.reason)
    return ok(check, f"{state}; resumed: {decision.why}")
