"""The instance type of this node for the checks: DMI, else instance
metadata. What each type should have is in nodeagent/instances.py."""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.instances import instance_type as dmi_instance_type
from nodeagent.instances import known_instance_type

IMDS_INSTANCE_TYPE = "/latest/meta-data/instance-type"


def resolve_instance_type(host: Host, imds_endpoint: str | None, imds_timeout: float) -> tuple[str | None, str]:
    """(instance type, where it came from). DMI's product name is the type on
    Nitro instances; older (Xen) ones say "HVM domU", so a name that is not an
    instance type we know is checked against instance metadata (IMDSv2) when
    imds_endpoint is given."""
    dmi = dmi_instance_type(host)
    if known_instance_type(dmi):
        return dmi, "dmi"
    if imds_endpoint:
        from nodeagent.sinks.discovery import Imds

        try:
            value = Imds(imds_endpoint, imds_timeout).get(IMDS_INSTANCE_TYPE)
        except ValueError:
            value = None
        if value:
            return value, "imds"
    return dmi, "dmi" if dmi else "none"
