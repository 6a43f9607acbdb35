"""The shape of each EC2 instance type nodeagent knows: NVIDIA GPUs and EFA
interfaces. The GPU sampler (nodeagent_gpus{state="expected"}) and the checks
(gpu count, efa devices) read this one table.

GPUs: the NVIDIA GPUs of the type (0 for Trainium). EFA: the type's maximum
number of EFA interfaces (DescribeInstanceTypes
NetworkInfo.EfaInfo.MaximumEfaInterfaces); 0 when it has no EFA. Sources:
- GPUs: AWS's instance type pages (P6: 8 B200 or B300; P5en, P5e: 8 H200;
  P5: 8 H100, p5.4xlarge 1; P4d, P4de: 8 A100; P3: 1-8 V100; G6e: 1-8 L40S;
  G6: 1-8 L4; G5: 1-8 A10G; G4dn: 1-8 T4); p6-b200 and p6-b300 also in the
  GpuHardwareSpec table of AWS's sagemaker-hyperpod-cli (gpu_count 8);
- EFA, p5.48xlarge and p5e.48xlarge 32, g6e up to 4: Amazon EC2 User Guide,
  "Maximize network bandwidth on accelerated instances with EFA" (P5 and P5e
  support up to 32 network cards; G6e up to four);
- EFA, every other entry and the same P5/G6e numbers: the `efa` field of
  INSTANCE_RESOURCES in sagemaker-hyperpod-cli
  (src/sagemaker/hyperpod/training/constants.py; ml.<type> there is the same
  hardware as <type> here): p4d/p4de 4, p5.4xlarge 1, p5en 16, p6-b200 8,
  p6-b300 16, g5/g6 8xlarge and larger 1, g6e 8x/12x/16xlarge 1, 24xlarge 2,
  48xlarge 4, trn1 8, trn1n 16, trn2 16;
- EFA, p3dn.24xlarge 1 and g4dn 8xlarge..metal 1: DescribeInstanceTypes
  output (EfaInfo.MaximumEfaInterfaces) as published in public instance
  catalogues (e.g. torchx's named_resources_aws).
A type missing here expects no GPU (unless gpu.expected_gpus says) and is not
judged on EFA.

On Nitro instances the DMI product name is the instance type
(/sys/devices/virtual/dmi/id/product_name, e.g. "p5.48xlarge"), so no
metadata-service call is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.host import Host


@dataclass(frozen=True)
class InstanceShape:
    gpus: int
    efa: int


def _shape(gpus: int, efa: int = 0) -> InstanceShape:
    return InstanceShape(gpus=gpus, efa=efa)


INSTANCE_SHAPES: dict[str, InstanceShape] = {
    "p6-b300.48xlarge": _shape(8, efa=16),
    "p6-b200.48xlarge": _shape(8, efa=8),
    "p5en.48xlarge": _shape(8, efa=16),
    "p5e.48xlarge": _shape(8, efa=32),
    "p5.48xlarge": _shape(8, efa=32),
    "p5.4xlarge": _shape(1, efa=1),
    "p4de.24xlarge": _shape(8, efa=4),
    "p4d.24xlarge": _shape(8, efa=4),
    "p3dn.24xlarge": _shape(8, efa=1),
    "p3.16xlarge": _shape(8),
    "p3.8xlarge": _shape(4),
    "p3.2xlarge": _shape(1),
    "g6e.xlarge": _shape(1),
    "g6e.2xlarge": _shape(1),
    "g6e.4xlarge": _shape(1),
    "g6e.8xlarge": _shape(1, efa=1),
    "g6e.16xlarge": _shape(1, efa=1),
    "g6e.12xlarge": _shape(4, efa=1),
    "g6e.24xlarge": _shape(4, efa=2),
    "g6e.48xlarge": _shape(8, efa=4),
    "g6.xlarge": _shape(1),
    "g6.2xlarge": _shape(1),
    "g6.4xlarge": _shape(1),
    "g6.8xlarge": _shape(1, efa=1),
    "g6.16xlarge": _shape(1, efa=1),
    "g6.12xlarge": _shape(4, efa=1),
    "g6.24xlarge": _shape(4, efa=1),
    "g6.48xlarge": _shape(8, efa=1),
    "g5.xlarge": _shape(1),
    "g5.2xlarge": _shape(1),
    "g5.4xlarge": _shape(1),
    "g5.8xlarge": _shape(1, efa=1),
    "g5.16xlarge": _shape(1, efa=1),
    "g5.12xlarge": _shape(4, efa=1),
    "g5.24xlarge": _shape(4, efa=1),
    "g5.48xlarge": _shape(8, efa=1),
    "g4dn.xlarge": _shape(1),
    "g4dn.2xlarge": _shape(1),
    "g4dn.4xlarge": _shape(1),
    "g4dn.8xlarge": _shape(1, efa=1),
    "g4dn.16xlarge": _shape(1, efa=1),
    "g4dn.12xlarge": _shape(4, efa=1),
    "g4dn.metal": _shape(8, efa=1),
    # Trainium: EFA, no NVIDIA GPU
    "trn1.32xlarge": _shape(0, efa=8),
    "trn1n.32xlarge": _shape(0, efa=16),
    "trn2.48xlarge": _shape(0, efa=16),
}


def known_instance_type(name: str | None) -> bool:
    return bool(name) and name in INSTANCE_SHAPES


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
    shape = INSTANCE_SHAPES.get(itype or "")
    return shape.gpus if shape else 0


def expected_efa(itype: str | None) -> int | None:
    """The type's EFA interfaces; None when it has none or is unknown (not judged)."""
    shape = INSTANCE_SHAPES.get(itype or "")
    return shape.efa if shape and shape.efa else None
