"""The one table of roles, collector groups, ports and metric prefixes.

    role     groups (served over HTTP, to CloudWatch when the sink runs there)
    compute  host -> :9100, gpu -> :9400
    head     host -> :9100, slurm -> :9341
    login    host -> :9100

Everything else (the registry, the CLI, install, the sinks, the config
defaults, the publishers) reads roles, groups and ports from here: a role or
a port is changed in this file and nowhere else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from nodeagent.host import Host
from nodeagent.inputs import InputError, read_bytes
from nodeagent.settings import shown


@dataclass(frozen=True)
class GroupSpec:
    port: int  # the exporter's default port (exporters.<group>.listen is ":<port>")
    # family-name prefixes: the exporter it stands in for, then nodeagent's additions
    metric_prefixes: tuple[str, ...]
    compatible_with: str  # whose names and port the group keeps
    # the setting that paces the group's collection: scrapes of the host
    # group collect at most this often; GPUs and Slurm are sampled on it
    interval_key: str


GROUPS: dict[str, GroupSpec] = {
    "host": GroupSpec(port=9100, metric_prefixes=("node_", "nodeagent_"), compatible_with="node_exporter",
                      interval_key="exporters.host.min_interval"),
    "gpu": GroupSpec(port=9400, metric_prefixes=("DCGM_", "nodeagent_gpu"), compatible_with="dcgm-exporter",
                     interval_key="gpu.interval"),
    "slurm": GroupSpec(port=9341, metric_prefixes=("slurm_", "nodeagent_slurm"), compatible_with="slurm_exporter",
                       interval_key="slurm.interval"),
}


@dataclass(frozen=True)
class RoleSpec:
    groups: tuple[str, ...]  # collector groups that run
    exporters: tuple[str, ...]  # groups served over HTTP
    cloudwatch: tuple[str, ...]  # groups whose families go to the CloudWatch sink
    node_type: str  # ParallelCluster's cfn_node_type in /etc/parallelcluster/cfnconfig
    node_type_tag: str  # the EC2 tag parallelcluster:node-type
    title: str  # how dashboards name the role's nodes


ROLE_TABLE: dict[str, RoleSpec] = {
    "compute": RoleSpec(groups=("host", "gpu"), exporters=("host", "gpu"), cloudwatch=("host", "gpu"),
                        node_type="ComputeFleet", node_type_tag="Compute", title="Compute nodes"),
    "head": RoleSpec(groups=("host", "slurm"), exporters=("host", "slurm"), cloudwatch=("host", "slurm"),
                     node_type="HeadNode", node_type_tag="HeadNode", title="Head node"),
    "login": RoleSpec(groups=("host",), exporters=("host",), cloudwatch=("host",),
                      node_type="LoginNode", node_type_tag="LoginNode", title="Login nodes"),
}

ROLES: tuple[str, ...] = tuple(ROLE_TABLE)
# what --role and the config's `role` take: auto reads ParallelCluster's cfnconfig
ROLE_CHOICES: tuple[str, ...] = (*ROLES, "auto")
# the order in which dashboards, alarms and cost reports list the roles
DISPLAY_ORDER: tuple[str, ...] = ("head", "login", "compute")
assert sorted(DISPLAY_ORDER) == sorted(ROLES)

# the hint when no role can be found
PASS_ROLE = f"pass --role {'|'.join(ROLES)}"

# ParallelCluster's cfn_node_type values
NODE_TYPES = {spec.node_type: role for role, spec in ROLE_TABLE.items()}


def roles_running(group: str) -> tuple[str, ...]:
    """The roles whose agent runs this collector group: where its collectors
    are on by default unless a collector declares its own default_roles."""
    return tuple(role for role, spec in ROLE_TABLE.items() if group in spec.groups)


def roles_serving(group: str) -> tuple[str, ...]:
    """The roles whose agent serves this group over HTTP."""
    return tuple(role for role, spec in ROLE_TABLE.items() if group in spec.exporters)


def role_help() -> str:
    """'compute, head, login or auto' for messages."""
    return f"{', '.join(ROLES)} or auto"


class RoleError(Exception):
    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message  # what was wrong, without the advice


def parse_cfnconfig(text: str) -> dict[str, str]:
    """ParallelCluster's /etc/parallelcluster/cfnconfig: shell-style KEY=value lines."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export ") :].strip()
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            values[key] = value.strip().strip("'\"")
    return values


def detect_role(host: Host, cfnconfig_path: str) -> str:
    """The role from cfn_node_type in ParallelCluster's cfnconfig."""
    try:
        # read as any config input: a FIFO or a device there must not block the start or a reload
        text = read_bytes(str(host.rooted(cfnconfig_path))).decode("utf-8", errors="replace")
    except InputError as e:
        reason = f"{shown(cfnconfig_path)} {e}"
        raise RoleError(
            f"--role auto: {reason}; this does not look like a ParallelCluster node: {PASS_ROLE}", reason
        ) from None
    node_type = parse_cfnconfig(text).get("cfn_node_type")
    if node_type is None:
        reason = f"{shown(cfnconfig_path)} has no cfn_node_type"
        raise RoleError(f"--role auto: {reason}; {PASS_ROLE}", reason)
    role = NODE_TYPES.get(node_type)
    if role is None:
        reason = f"unknown cfn_node_type {shown(node_type)} in {shown(cfnconfig_path)}"
        raise RoleError(
            f"--role auto: {reason} (expected one of {', '.join(NODE_TYPES)}); pass --role explicitly", reason
        )
    return role


# what `nodeagent install` records (install.MANIFEST), under the root of the watched system
INSTALL_RECORD = "/etc/nodeagent/.install.json"


def installed_role(host: Host) -> str | None:
    """The role `nodeagent install` last enabled on this node, from its
    record; None when there is no readable record naming a role."""
    try:
        data = json.loads(read_bytes(str(host.rooted(INSTALL_RECORD)), 65536))
    except (InputError, ValueError):
        return None
    role = data.get("role") if isinstance(data, dict) else None
    return role if role in ROLE_TABLE else None


@dataclass(frozen=True)
class ChosenRole:
    role: str
    source: str  # where it came from, for messages: "--role", "the install record", ...


def choose_role(role_arg: str | None, config_role: str | None, config_source: str, host: Host,
                cfnconfig_path: str) -> ChosenRole:
    """The role, from the first of: --role, the config's `role`, the install
    record, ParallelCluster's cfnconfig. `auto` (as --role or in the config)
    asks for the cfnconfig itself. RoleError when none gives one: the role
    is unknown, which is not a mistake in the config file."""
    asked = role_arg or config_role
    if asked == "auto":
        return ChosenRole(detect_role(host, cfnconfig_path), shown(cfnconfig_path))
    if role_arg:
        return ChosenRole(role_arg, "--role")
    if config_role:
        return ChosenRole(config_role, f"`role` in {config_source}")
    role = installed_role(host)
    if role is not None:
        return ChosenRole(role, f"the install record {INSTALL_RECORD}")
    try:
        return ChosenRole(detect_role(host, cfnconfig_path), shown(cfnconfig_path))
    except RoleError as e:
        config = "no config file" if config_source == "(defaults)" else f"no `role` in {config_source}"
        raise RoleError(
            f"role unknown: no --role, {config}, no install record {INSTALL_RECORD}, and {e.reason}; "
            f"{PASS_ROLE}, or run `nodeagent install --role ROLE`"
        ) from None
