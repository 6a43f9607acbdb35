"""What an EC2 instance type should have: EFA devices (GPUs are in
gpu/instances.py), and the instance type itself (DMI, else instance metadata).

EFA_BY_INSTANCE_TYPE is each type's maximum number of EFA interfaces
(DescribeInstanceTypes NetworkInfo.EfaInfo.MaximumEfaInterfaces). Sources:
- p5.48xlarge, p5e.48xlarge 32 and g6e up to 4: Amazon EC2 User Guide,
  "Maximize network bandwidth on accelerated instances with EFA" (P5 and P5e
  support up to 32 network cards; G6e up to four);
- every other entry, and the same P5/G6e numbers: the `efa` field of
  INSTANCE_RESOURCES in AWS's sagemaker-hyperpod-cli
  (src/sagemaker/hyperpod/training/constants.py; ml.<type> there is the same
  hardware as <type> here): p4d/p4de 4, p5.4xlarge 1, p5en 16, p6-b200 8,
  p6-b300 16, g5/g6 8xlarge and larger 1, g6e 8x/12x/16xlarge 1, 24xlarge 2,
  48xlarge 4, trn1 8, trn1n 16, trn2 16;
- p3dn.24xlarge 1 and g4dn 8xlarge..metal 1: DescribeInstanceTypes output
  (EfaInfo.MaximumEfaInterfaces) as published in public instance catalogues
  (e.g. torchx's named_resources_aws).
Types missing here (or with no EFA) are not judged on EFA.
"""

from __future__ import annotations

from nodeagent.gpu.instances import GPUS_BY_INSTANCE_TYPE
from nodeagent.gpu.instances import instance_type as dmi_instance_type
from nodeagent.host import Host

EFA_BY_INSTANCE_TYPE: dict[str, int] = {
    "p6-b300.48xlarge": 16,
    "p6-b200.48xlarge": 8,
    "p5en.48xlarge": 16,
    "p5e.48xlarge": 32,
    "p5.48xlarge": 32,
    "p5.4xlarge": 1,
    "p4de.24xlarge": 4,
    "p4d.24xlarge": 4,
    "p3dn.24xlarge": 1,
    "g6e.8xlarge": 1,
    "g6e.12xlarge": 1,
    "g6e.16xlarge": 1,
    "g6e.24xlarge": 2,
    "g6e.48xlarge": 4,
    "g6.8xlarge": 1,
    "g6.12xlarge": 1,
    "g6.16xlarge": 1,
    "g6.24xlarge": 1,
    "g6.48xlarge": 1,
    "g5.8xlarge": 1,
    "g5.12xlarge": 1,
    "g5.16xlarge": 1,
    "g5.24xlarge": 1,
    "g5.48xlarge": 1,
    "g4dn.8xlarge": 1,
    "g4dn.12xlarge": 1,
    "g4dn.16xlarge": 1,
    "g4dn.metal": 1,
    "trn1.32xlarge": 8,
    "trn1n.32xlarge": 16,
    "trn2.48xlarge": 16,
}

IMDS_INSTANCE_TYPE = "/latest/meta-data/instance-type"


def known_instance_type(name: str | None) -> bool:
    return bool(name) and (name in GPUS_BY_INSTANCE_TYPE or name in EFA_BY_INSTANCE_TYPE)


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
