"""Catalogue: the CloudWatch sink's metrics.

Two kinds:

* the sink's own health (spool depth and age, datums sent and dropped, API
  errors), served beside the agent's other metrics for Prometheus; they are not
  sent to CloudWatch (an outage would hide them there);
* the host summary the sink derives from the host group's node_exporter
  families before each publish, for CloudWatch only (Prometheus computes the
  same with rate()): CPU idle / used / iowait %, memory used % and available
  bytes, disk used % per mount point. These replace what the CloudWatch Agent
  published (on every node of the original system); CPU_IDLE is the name the
  original example alarm used. They are published wherever the sink runs: the
  head and login nodes by default, compute nodes where `cloudwatch.roles`
  includes compute.

CloudWatch dimension names are the label names in PascalCase (instance_id ->
InstanceId, partition -> Partition). Host summary dimensions: Role (head,
login) and InstanceId (the EC2 instance id from instance metadata, the host
name where there is none); DISK_USED_PERCENT adds Mountpoint. With
`cloudwatch.role_rollup` (default on) each is also published with Role alone
(plus Mountpoint), a series that survives the replacement of the head node.
"""

from nodeagent.catalogue.spec import CloudWatchSpec, counter, gauge
from nodeagent.roles import ROLES

_SINK = "cloudwatch"

# ---- the sink's own metrics (Prometheus) ---------------------------------------
CW_SPOOL_DATUMS = gauge(
    "nodeagent_cloudwatch_spool_datums",
    "Datums waiting in the CloudWatch spool (on disk) to be accepted by CloudWatch.",
    collector=_SINK,
    group="agent",
)
CW_SPOOL_BYTES = gauge(
    "nodeagent_cloudwatch_spool_bytes",
    "Size of the CloudWatch spool (compressed segments).",
    collector=_SINK,
    unit="bytes",
    group="agent",
)
CW_SPOOL_OLDEST_AGE = gauge(
    "nodeagent_cloudwatch_spool_oldest_age_seconds",
    "Age of the oldest datum waiting in the CloudWatch spool; 0 when the spool is empty.",
    collector=_SINK,
    unit="seconds",
    group="agent",
)
CW_SPOOL_MEMORY_ONLY = gauge(
    "nodeagent_cloudwatch_spool_memory_only",
    "1 while the CloudWatch spool keeps data in memory only, because its directory cannot be written "
    "(missing, read-only, full): a restart would lose that data; 0 while everything waiting is on disk.",
    collector=_SINK,
    group="agent",
)
CW_DATUMS_PUBLISHED = counter(
    "nodeagent_cloudwatch_datums_published_total",
    "Datums the CloudWatch sink produced and spooled.",
    collector=_SINK,
    group="agent",
)
CW_DATUMS_SENT = counter(
    "nodeagent_cloudwatch_datums_sent_total",
    "Datums CloudWatch accepted (a datum resent after a lost answer counts again).",
    collector=_SINK,
    group="agent",
)
CW_DATUMS_DROPPED = counter(
    "nodeagent_cloudwatch_datums_dropped_total",
    "Datums dropped, by reason: nan, infinite, out_of_range, invalid_name, invalid_dimension, "
    "too_many_dimensions, too_old, too_new, rejected (CloudWatch refused the datum itself), "
    "spool_full (oldest data dropped at the spool cap), spool_corrupt, spool_error.",
    collector=_SINK,
    labels=("reason",),
    group="agent",
)
CW_REQUESTS = counter(
    "nodeagent_cloudwatch_requests_total",
    "PutMetricData calls CloudWatch accepted.",
    collector=_SINK,
    group="agent",
)
CW_REQUEST_BYTES = counter(
    "nodeagent_cloudwatch_request_bytes_total",
    "Bytes of accepted PutMetricData request bodies, by stage: before_compression, sent (gzip above "
    "cloudwatch.compress_min_bytes).",
    collector=_SINK,
    labels=("stage",),
    unit="bytes",
    group="agent",
)
CW_API_ERRORS = counter(
    "nodeagent_cloudwatch_api_errors_total",
    "PutMetricData calls that failed after botocore's retries, and reachability probes (ListMetrics, sent "
    "after a request got no answer) that got no answer, by error code "
    "(Throttling, InternalServiceError, ReadTimeoutError, ExpiredToken, ...).",
    collector=_SINK,
    labels=("code",),
    group="agent",
)
CW_LAST_SUCCESS = gauge(
    "nodeagent_cloudwatch_last_success_timestamp_seconds",
    "Unix time of the last PutMetricData call CloudWatch accepted; 0 before the first.",
    collector=_SINK,
    unit="seconds",
    group="agent",
)
CW_UP = gauge(
    "nodeagent_cloudwatch_up",
    "Whether the last PutMetricData call succeeded (1) or failed (0); 1 before the first call.",
    collector=_SINK,
    group="agent",
)

# ---- host summary, derived from node_exporter families (CloudWatch only) --------
_HOST_DIMS = ("role", "instance_id")
# wherever the sink runs: head and login by default, compute nodes when enabled there
_ALL_ROLES = ROLES

HOST_CPU_IDLE = gauge(
    "nodeagent_host_cpu_idle_percent",
    "CPU time spent idle since the previous publish, % of all CPUs (CloudWatch only).",
    collector=_SINK,
    labels=_HOST_DIMS,
    unit="percent",
    group="agent",
    cloudwatch=CloudWatchSpec("CPU_IDLE", unit="Percent", dimensions=_HOST_DIMS, roles=_ALL_ROLES),
)
HOST_CPU_USED = gauge(
    "nodeagent_host_cpu_used_percent",
    "CPU time spent busy (user, nice, system, irq, softirq, steal) since the previous publish, "
    "% of all CPUs; 100 - idle - iowait (CloudWatch only).",
    collector=_SINK,
    labels=_HOST_DIMS,
    unit="percent",
    group="agent",
    cloudwatch=CloudWatchSpec("CPU_USED", unit="Percent", dimensions=_HOST_DIMS, roles=_ALL_ROLES),
)
HOST_CPU_IOWAIT = gauge(
    "nodeagent_host_cpu_iowait_percent",
    "CPU time spent idle waiting for I/O since the previous publish, % of all CPUs (CloudWatch only).",
    collector=_SINK,
    labels=_HOST_DIMS,
    unit="percent",
    group="agent",
    cloudwatch=CloudWatchSpec("CPU_IOWAIT", unit="Percent", dimensions=_HOST_DIMS, roles=_ALL_ROLES),
)
HOST_MEM_USED = gauge(
    "nodeagent_host_memory_used_percent",
    "Memory in use: 100 * (1 - MemAvailable / MemTotal) (CloudWatch only).",
    collector=_SINK,
    labels=_HOST_DIMS,
    unit="percent",
    group="agent",
    cloudwatch=CloudWatchSpec("MEM_USED_PERCENT", unit="Percent", dimensions=_HOST_DIMS, roles=_ALL_ROLES),
)
HOST_MEM_AVAILABLE = gauge(
    "nodeagent_host_memory_available_bytes",
    "MemAvailable from /proc/meminfo (CloudWatch only).",
    collector=_SINK,
    labels=_HOST_DIMS,
    unit="bytes",
    group="agent",
    cloudwatch=CloudWatchSpec("MEM_AVAILABLE", unit="Bytes", dimensions=_HOST_DIMS, roles=_ALL_ROLES),
)
HOST_DISK_USED = gauge(
    "nodeagent_host_disk_used_percent",
    "File system use like df's Use%: used / (used + available to users) (CloudWatch only).",
    collector=_SINK,
    labels=(*_HOST_DIMS, "mountpoint"),
    unit="percent",
    group="agent",
    cloudwatch=CloudWatchSpec(
        "DISK_USED_PERCENT", unit="Percent", dimensions=(*_HOST_DIMS, "mountpoint"), roles=_ALL_ROLES
    ),
)

HOST_SUMMARY_SPECS = (
    HOST_CPU_IDLE,
    HOST_CPU_USED,
    HOST_CPU_IOWAIT,
    HOST_MEM_USED,
    HOST_MEM_AVAILABLE,
    HOST_DISK_USED,
)
