"""GPUs per EC2 instance type, for nodeagent_gpus{state="expected"}.

On Nitro instances the DMI product name is the instance type
(/sys/devices/virtual/dmi/id/product_name, e.g. "p5.48xlarge"), so no
metadata-service call is needed.
"""

from __future__ import annotations

from nodeagent.host import Host

GPUS_BY_INSTANCE_TYPE: dict[str, int] = {
    "p6-b200.48xlarge": 8,
    "p5en.48xlarge": 8,
    "p5e.48xlarge": 8,
    "p5.48xlarge": 8,
    "p5.4xlarge": 1,
    "p4de.24xlarge": 8,
    "p4d.24xlarge": 8,
    "p3dn.24xlarge": 8,
    "p3.16xlarge": 8,
    "p3.8xlarge": 4,
    "p3.2xlarge": 1,
    "g6e.xlarge": 1,
    "g6e.2xlarge": 1,
    "g6e.4xlarge": 1,
    "g6e.8xlarge": 1,
    "g6e.16xlarge": 1,
    "g6e.12xlarge": 4,
    "g6e.24xlarge": 4,
    "g6e.48xlarge": 8,
    "g6.xlarge": 1,
    "g6.2xlarge": 1,
    "g6.4xlarge": 1,
    "g6.8xlarge": 1,
    "g6.16xlarge": 1,
    "g6.12xlarge": 4,
    "g6.24xlarge": 4,
    "g6.48xlarge": 8,
    "g5.xlarge": 1,
    "g5.2xlarge": 1,
    "g5.4xlarge": 1,
    "g5.8xlarge": 1,
    "g5.16xlarge": 1,
    "g5.12xlarge": 4,
    "g5.24xlarge": 4,
    "g5.48xlarge": 8,
    "g4dn.xlarge": 1,
    "g4dn.2xlarge": 1,
    "g4dn.4xlarge": 1,
    "g4dn.8xlarge": 1,
    "g4dn.16xlarge": 1,
    "g4dn.12xlarge": 4,
    "g4dn.metal": 8,
}


def instance_type(host: Host) -> str | None:
    """The EC2 instance type from DMI, or None off EC2 / when unreadable."""
    text = host.read_optional(host.sys("devices", "virtual", "dmi", "id", "product_name"))
    if text is None:
        return None
    value = text.strip()
    return value or None


def expected_gpus(host: Host, configured: int | None, instance: str | None = None) -> int:
    """gpu.expected_gpus, else the instance type's GPU count, else 0."""
    if configured is not None:
        return configured
    itype = instance if instance is not None else instance_type(host)
    return GPUS_BY_INSTANCE_TYPE.get(itype or "", 0)
