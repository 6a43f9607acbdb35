"""Catalogue: per-node summaries for CloudWatch, derived from other groups' families.

CloudWatch bills every distinct metric (name + dimensions). Publishing each
GPU's fields from every compute node would cost G x fields metrics per node;
these summaries cost a handful per node whatever the number of GPUs:

* GPU summary (sinks/gpu_summary.py), from the gpu group's families: mean and
  max utilisation, memory used, hottest GPU, power drawn by all GPUs, XID
  errors, GPUs needing node action, lost GPUs and GPUs allocated to a job but
  idle. Published by the compute role only, and only where the CloudWatch sink
  runs on compute nodes (`cloudwatch.roles`; off by default).
* I/O summary (sinks/io_summary.py), from the host group's families: network
  and FSx for Lustre client throughput of the node, for the dashboards'
  network and FSx widgets. Published by every role the sink runs in.

Dimensions, like the host summary (catalogue/sinks.py): Role and InstanceId;
with `cloudwatch.role_rollup` each is also published with Role alone, the
series the alarms use (CloudWatch aggregates the nodes' datums: Maximum is the
worst node, Sum adds the nodes up).

These families exist only on the way to CloudWatch; Prometheus computes the
same from the per-GPU and per-device series (config/grafana/ shows how).
"""

from nodeagent.catalogue.spec import CloudWatchSpec, gauge
from nodeagent.roles import ROLES

_GPU = "gpu_summary"
_IO = "io_summary"
DIMS = ("role", "instance_id")
COMPUTE = ("compute",)
ALL_ROLES = ROLES


def _cw(name: str, unit: str, roles: tuple[str, ...]) -> CloudWatchSpec:
    return CloudWatchSpec(name, unit=unit, dimensions=DIMS, roles=roles)


# ---- GPU summary (compute role) --------------------------------------------------
GPU_UTIL_MEAN = gauge(
    "nodeagent_node_gpu_utilization_mean_percent",
    "Mean GPU utilisation over the node's GPUs (DCGM_FI_DEV_GPU_UTIL), % (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    unit="percent",
    group="agent",
    cloudwatch=_cw("GPU_UTIL_MEAN", "Percent", COMPUTE),
)
GPU_UTIL_MAX = gauge(
    "nodeagent_node_gpu_utilization_max_percent",
    "Highest GPU utilisation among the node's GPUs, % (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    unit="percent",
    group="agent",
    cloudwatch=_cw("GPU_UTIL_MAX", "Percent", COMPUTE),
)
GPU_MEMORY_USED = gauge(
    "nodeagent_node_gpu_memory_used_bytes",
    "Framebuffer memory used on all the node's GPUs (DCGM_FI_DEV_FB_USED summed), bytes (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    unit="bytes",
    group="agent",
    cloudwatch=_cw("GPU_MEMORY_USED", "Bytes", COMPUTE),
)
GPU_MEMORY_USED_PERCENT = gauge(
    "nodeagent_node_gpu_memory_used_percent",
    "Framebuffer memory used on all the node's GPUs, % of used + free + reserved (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    unit="percent",
    group="agent",
    cloudwatch=_cw("GPU_MEMORY_USED_PERCENT", "Percent", COMPUTE),
)
GPU_TEMP_MAX = gauge(
    "nodeagent_node_gpu_temperature_max_celsius",
    "Temperature of the node's hottest GPU (DCGM_FI_DEV_GPU_TEMP), degrees C (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    unit="celsius",
    group="agent",
    cloudwatch=_cw("GPU_TEMP_MAX", "None", COMPUTE),
)
GPU_POWER = gauge(
    "nodeagent_node_gpu_power_watts",
    "Power drawn by all the node's GPUs (DCGM_FI_DEV_POWER_USAGE summed), watts (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    unit="watts",
    group="agent",
    cloudwatch=_cw("GPU_POWER", "None", COMPUTE),
)
GPU_XID_ERRORS = gauge(
    "nodeagent_node_gpu_xid_errors",
    "XID errors on the node's GPUs since the previous publish, all codes "
    "(increase of nodeagent_gpu_xid_errors_total) (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    group="agent",
    cloudwatch=_cw("GPU_XID_ERRORS", "Count", COMPUTE),
)
GPU_NODE_ACTION = gauge(
    "nodeagent_node_gpus_node_action",
    "GPUs on which an XID that needs node action (48, 64, 74, 79, 95) was seen since the agent started "
    "(nodeagent_gpu_node_action_xid > 0) (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    group="agent",
    cloudwatch=_cw("GPU_NODE_ACTION", "Count", COMPUTE),
)
GPU_LOST = gauge(
    "nodeagent_node_gpus_lost",
    "GPUs expected or present on the node that did not answer in the last sampling cycle "
    "(from nodeagent_gpus{state}; else the GPUs with nodeagent_gpu_up 0) (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    group="agent",
    cloudwatch=_cw("GPU_LOST", "Count", COMPUTE),
)
GPU_ALLOCATED_IDLE = gauge(
    "nodeagent_node_gpus_allocated_idle",
    "GPUs that belong to a job but stayed idle (nodeagent_gpu_allocated_idle) (CloudWatch only).",
    collector=_GPU,
    labels=DIMS,
    group="agent",
    cloudwatch=_cw("GPU_ALLOCATED_IDLE", "Count", COMPUTE),
)

GPU_SUMMARY_SPECS = (
    GPU_UTIL_MEAN,
    GPU_UTIL_MAX,
    GPU_MEMORY_USED,
    GPU_MEMORY_USED_PERCENT,
    GPU_TEMP_MAX,
    GPU_POWER,
    GPU_XID_ERRORS,
    GPU_NODE_ACTION,
    GPU_LOST,
    GPU_ALLOCATED_IDLE,
)

# ---- I/O summary (every role) -----------------------------------------------------
NETWORK_RX = gauge(
    "nodeagent_node_network_receive_bytes_per_second",
    "Bytes received per second on the node's network devices other than lo since the previous publish "
    "(node_network_receive_bytes_total) (CloudWatch only).",
    collector=_IO,
    labels=DIMS,
    unit="bytes_per_second",
    group="agent",
    cloudwatch=_cw("NETWORK_RX", "Bytes/Second", ALL_ROLES),
)
NETWORK_TX = gauge(
    "nodeagent_node_network_transmit_bytes_per_second",
    "Bytes transmitted per second on the node's network devices other than lo since the previous publish "
    "(node_network_transmit_bytes_total) (CloudWatch only).",
    collector=_IO,
    labels=DIMS,
    unit="bytes_per_second",
    group="agent",
    cloudwatch=_cw("NETWORK_TX", "Bytes/Second", ALL_ROLES),
)
LUSTRE_READ = gauge(
    "nodeagent_node_lustre_read_bytes_per_second",
    "Bytes per second read by the node's FSx for Lustre client, all file systems, since the previous "
    "publish (nodeagent_lustre_read_bytes_total) (CloudWatch only).",
    collector=_IO,
    labels=DIMS,
    unit="bytes_per_second",
    group="agent",
    cloudwatch=_cw("LUSTRE_READ", "Bytes/Second", ALL_ROLES),
)
LUSTRE_WRITE = gauge(
    "nodeagent_node_lustre_write_bytes_per_second",
    "Bytes per second written by the node's FSx for Lustre client, all file systems, since the previous "
    "publish (nodeagent_lustre_write_bytes_total) (CloudWatch only).",
    collector=_IO,
    labels=DIMS,
    unit="bytes_per_second",
    group="agent",
    cloudwatch=_cw("LUSTRE_WRITE", "Bytes/Second", ALL_ROLES),
)

IO_SUMMARY_SPECS = (NETWORK_RX, NETWORK_TX, LUSTRE_READ, LUSTRE_WRITE)

# ---- the sink's own backlog (every role) -----------------------------------------
SPOOL_OLDEST_AGE = gauge(
    "nodeagent_node_cloudwatch_spool_oldest_age_seconds",
    "Age of the oldest datum waiting in this node's CloudWatch spool when the publish was made; 0 when the "
    "spool is empty (nodeagent_cloudwatch_spool_oldest_age_seconds with the node's identity) (CloudWatch only).",
    collector="cloudwatch_sink",
    labels=DIMS,
    unit="seconds",
    group="agent",
    cloudwatch=_cw("SPOOL_OLDEST_AGE", "Seconds", ALL_ROLES),
)
