"""Settings of the CloudWatch sink (`cloudwatch:` in the config file).

There is deliberately no place for AWS credentials here: the sink uses the
default credential chain only (the instance profile on ParallelCluster nodes),
so keys never sit in a config file or in a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nodeagent.roles import ROLES

# CloudWatch's own limits. The sink never sends beyond them, whatever the settings.
MAX_DATUMS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 1_000_000  # 1 MB per PutMetricData request (decimal, below 1 MiB)
MAX_DIMENSIONS = 30



def _check_roles(value: Any) -> str | None:
    unknown = [r for r in value if r not in ROLES]
    if unknown:
        return f"unknown role(s) {', '.join(map(repr, unknown))}; roles are {', '.join(ROLES)}"
    return None


def _check_interval(value: Any) -> str | None:
    return None if 1 <= value <= 86_400 else f"must be from 1 to 86400 (seconds), got {value!r}"


def _check_positive(value: Any) -> str | None:
    # seconds (timeouts, retry delay): bounded so that time arithmetic never overflows
    return None if 0 < value <= 86_400 else f"must be more than 0 and at most 86400, got {value!r}"


def _check_attempts(value: Any) -> str | None:
    return None if 1 <= value <= 20 else f"must be from 1 to 20, got {value!r}"


def _check_datums(value: Any) -> str | None:
    if 1 <= value <= MAX_DATUMS_PER_REQUEST:
        return None
    return f"must be from 1 to {MAX_DATUMS_PER_REQUEST} (CloudWatch's limit), got {value!r}"


def _check_request_bytes(value: Any) -> str | None:
    if 10_000 <= value <= MAX_REQUEST_BYTES:
        return None
    return f"must be from 10000 to {MAX_REQUEST_BYTES} (CloudWatch's 1 MB limit), got {value!r}"


def _check_spool_bytes(value: Any) -> str | None:
    return None if 1 << 20 <= value <= 1 << 40 else f"must be from 1048576 (1 MiB) to 1 TiB, got {value!r}"


def namespace_problem(namespace: str) -> str | None:
    """Why CloudWatch would refuse this namespace (a cluster name from instance
    tags can hold anything), or None. The config check and the sink both ask here."""
    if not 1 <= len(namespace) <= 255:
        return f"namespace must be 1-255 characters, got {len(namespace)}"
    if not all(" " <= c <= "~" for c in namespace):
        return f"namespace must be printable ASCII: {namespace!r}"
    if namespace.startswith((":", "AWS/")):
        return f"namespace must not start with ':' or 'AWS/': {namespace!r}"
    return None


def _check_namespace(value: Any) -> str | None:
    return None if value is None else namespace_problem(value)


def _check_min_compression(value: Any) -> str | None:
    return None if 0 <= value <= 10_485_760 else f"must be from 0 to 10485760, got {value!r}"


@dataclass(frozen=True)
class CloudWatchSettings:
    # master switch; `roles` then says where the sink runs
    enabled: bool = True
    # roles that publish to CloudWatch: the head node (Slurm + host metrics)
    # and login nodes (host metrics, what the CloudWatch Agent did there)
    roles: tuple[str, ...] = field(default=("head", "login"), metadata={"check": _check_roles})
    # metric namespace; default "ParallelCluster/<cluster_name>", what the
    # original dashboards and alarms used
    namespace: str | None = field(default=None, metadata={"check": _check_namespace})
    # cluster name; default: stack_name in ParallelCluster's cfnconfig, else
    # the instance tag parallelcluster:cluster-name from instance metadata
    cluster_name: str | None = None
    # AWS region; default: cfn_region in cfnconfig, else instance metadata,
    # else botocore's own chain (AWS_REGION, ~/.aws/config)
    region: str | None = None
    # CloudWatch endpoint; default: the region's (set only for tests or VPC endpoints)
    endpoint_url: str | None = None
    # seconds between publishes (CloudWatch's standard resolution is 60 s)
    interval: float = field(default=60.0, metadata={"check": _check_interval})
    # metrics stored at 1-second resolution (CloudWatch or Prometheus names);
    # useful only with an interval below 60 s, and billed as high-resolution
    high_resolution: tuple[str, ...] = ()
    # on-disk spool of datums not yet accepted by CloudWatch, one directory
    # per role (<spool_dir>/<role>); default: <paths.state_dir>/spool
    spool_dir: str | None = None
    # spool size cap per role (bytes, compressed); beyond it the oldest data is dropped
    # and counted in nodeagent_cloudwatch_datums_dropped_total{reason="spool_full"}
    spool_max_bytes: int = field(default=256 << 20, metadata={"check": _check_spool_bytes})
    # fsync each spool segment and the spool directory (survives power loss, not only kill -9)
    spool_fsync: bool = True
    # botocore retry mode within one PutMetricData call: standard or adaptive
    # (adaptive adds client-side rate limiting when CloudWatch throttles)
    retry_mode: Literal["standard", "adaptive"] = "standard"
    # attempts per PutMetricData call, the first one included (botocore's
    # total_max_attempts; AWS_MAX_ATTEMPTS has the same meaning); a request
    # that got no answer (read timeout) is not repeated within the call, as
    # CloudWatch may have stored it: it is resent once CloudWatch answers again
    max_attempts: int = field(default=4, metadata={"check": _check_attempts})
    # after a call fails for good, the spool is retried after a delay that
    # doubles from 1 s up to this many seconds
    retry_max_delay: float = field(default=60.0, metadata={"check": _check_positive})
    # seconds to wait for a TCP connection and for an answer
    connect_timeout: float = field(default=5.0, metadata={"check": _check_positive})
    read_timeout: float = field(default=15.0, metadata={"check": _check_positive})
    # gzip request bodies (botocore request compression; CloudWatch accepts gzip)
    compress: bool = True
    # bodies smaller than this are sent uncompressed (botocore's default: 10240)
    compress_min_bytes: int = field(default=10240, metadata={"check": _check_min_compression})
    # at most this many datums per request (CloudWatch's limit: 1000)
    max_datums_per_request: int = field(default=MAX_DATUMS_PER_REQUEST, metadata={"check": _check_datums})
    # at most this many bytes per request body before compression (limit: 1 MB)
    max_request_bytes: int = field(default=MAX_REQUEST_BYTES, metadata={"check": _check_request_bytes})
    # mount points whose use is published as DISK_USED_PERCENT
    disk_mountpoints: tuple[str, ...] = ("/",)
    # also publish the host summary (CPU_IDLE, MEM_USED_PERCENT, ...) with the
    # Role dimension alone: one series per role that survives an instance's
    # replacement (for alarms on the head node), besides the per-instance one
    role_rollup: bool = True
    # instance metadata (IMDSv2) for region, cluster name and instance id
    imds: bool = True
    imds_endpoint: str = "http://169.254.169.254"
    # seconds per instance metadata request
    imds_timeout: float = field(default=1.0, metadata={"check": _check_positive})
