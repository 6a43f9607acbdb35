"""The role table: which collector groups run in a role, which groups get an
HTTP exporter, and which go to CloudWatch (when the sink is enabled).

    compute: host -> :9100, gpu -> :9400
    head:    host -> :9100 (+CloudWatch), slurm -> :9341 (+CloudWatch)
    login:   host -> :9100 (+CloudWatch)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodeagent.host import Host
from nodeagent.inputs import InputError, read_bytes
from nodeagent.settings import shown


@dataclass(frozen=True)
class RoleSpec:
    groups: tuple[str, ...]  # collector groups that run
    exporters: tuple[str, ...]  # groups served over HTTP
    cloudwatch: tuple[str, ...]  # groups whose families go to the CloudWatch sink


ROLE_TABLE: dict[str, RoleSpec] = {
    "compute": RoleSpec(groups=("host", "gpu"), exporters=("host", "gpu"), cloudwatch=("host", "gpu")),
    "head": RoleSpec(groups=("host", "slurm"), exporters=("host", "slurm"), cloudwatch=("host", "slurm")),
    "login": RoleSpec(groups=("host",), exporters=("host",), cloudwatch=("host",)),
}

# ParallelCluster's cfn_node_type values
NODE_TYPES = {"HeadNode": "head", "ComputeFleet": "compute", "LoginNode": "login"}


class RoleError(Exception):
    pass


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
        raise RoleError(
            f"--role auto: {shown(cfnconfig_path)} {e}; "
            "this does not look like a ParallelCluster node: pass --role compute|head|login"
        ) from None
    node_type = parse_cfnconfig(text).get("cfn_node_type")
    if node_type is None:
        raise RoleError(f"--role auto: {shown(cfnconfig_path)} has no cfn_node_type; pass --role compute|head|login")
    role = NODE_TYPES.get(node_type)
    if role is None:
        raise RoleError(
            f"--role auto: unknown cfn_node_type {shown(node_type)} in {shown(cfnconfig_path)} "
            f"(expected one of {', '.join(NODE_TYPES)}); pass --role explicitly"
        )
    return role
