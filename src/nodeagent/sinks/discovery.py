"""Where the CloudWatch sink publishes: region, cluster name (for the default
namespace ParallelCluster/<ClusterName>) and the instance id (a dimension of
the host summary).

Each comes from the config, else from ParallelCluster's cfnconfig
(`cfn_region`, `stack_name`: on ParallelCluster 3 the cluster's CloudFormation
stack carries the cluster's name), else from instance metadata (IMDSv2:
placement/region, the instance tag parallelcluster:cluster-name when tags are
exposed in metadata, instance-id). Instance metadata gets a short timeout, so
a machine outside EC2 costs at most one timeout.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

import structlog

from nodeagent.host import Host
from nodeagent.inputs import InputError, read_bytes
from nodeagent.roles import parse_cfnconfig

log = structlog.get_logger(__name__)

IMDS_TOKEN_PATH = "/latest/api/token"  # noqa: S105 (a URL path, not a secret)
IMDS_REGION = "/latest/meta-data/placement/region"
IMDS_INSTANCE_ID = "/latest/meta-data/instance-id"
IMDS_CLUSTER_TAG = "/latest/meta-data/tags/instance/parallelcluster:cluster-name"
IMDS_TOKEN_TTL = "60"  # noqa: S105 (seconds)
_MAX_ANSWER = 4096


@dataclass
class Identity:
    region: str | None = None
    cluster_name: str | None = None
    instance_id: str | None = None
    # where each value came from (config, cfnconfig, imds), for the log
    sources: dict[str, str] = field(default_factory=dict)

    def complete(self) -> bool:
        return None not in (self.region, self.cluster_name, self.instance_id)


def read_cfnconfig(host: Host, path: str) -> dict[str, str]:
    """ParallelCluster's cfnconfig as a mapping; empty when absent or unreadable."""
    try:  # read as config input: a FIFO or a device there must not block the agent
        return parse_cfnconfig(read_bytes(str(host.rooted(path))).decode("utf-8", errors="replace"))
    except InputError:
        return {}


class Imds:
    """A minimal IMDSv2 client: one token, then GETs; every call bounded by timeout."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"instance metadata endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._token: str | None = None
        self.reachable = True

    def _open(self, req: urllib.request.Request) -> str:
        # no proxies: instance metadata is link-local
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=self.timeout) as resp:
            data: bytes = resp.read(_MAX_ANSWER)
        return data.decode("utf-8", errors="replace").strip()

    def token(self) -> str | None:
        if self._token is None and self.reachable:
            req = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
                self.endpoint + IMDS_TOKEN_PATH,
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": IMDS_TOKEN_TTL},
            )
            try:
                self._token = self._open(req)
            except (OSError, urllib.error.URLError, ValueError) as e:
                # one failed token request is enough: off EC2 we do not wait again
                self.reachable = False
                log.info("imds_unavailable", endpoint=self.endpoint, error=str(e))
        return self._token

    def get(self, path: str) -> str | None:
        token = self.token()
        if token is None:
            return None
        headers = {"X-aws-ec2-metadata-token": token}
        req = urllib.request.Request(self.endpoint + path, headers=headers)  # noqa: S310 (scheme checked)
        try:
            value = self._open(req)
        except urllib.error.HTTPError as e:
            if e.code != 404:  # 404: not there (e.g. tags not exposed in metadata)
                log.info("imds_error", path=path, status=e.code)
            return None
        except (OSError, urllib.error.URLError, ValueError) as e:
            log.info("imds_error", path=path, error=str(e))
            return None
        return value or None


def discover(
    *,
    host: Host,
    cfnconfig_path: str,
    region: str | None,
    cluster_name: str | None,
    imds_endpoint: str | None,
    imds_timeout: float = 1.0,
    need_instance_id: bool = True,
) -> Identity:
    """Region, cluster name and instance id from config, cfnconfig, then IMDSv2
    (imds_endpoint None: not asked)."""
    ident = Identity()
    if region:
        ident.region, ident.sources["region"] = region, "config"
    if cluster_name:
        ident.cluster_name, ident.sources["cluster_name"] = cluster_name, "config"
    if ident.region is None or ident.cluster_name is None:
        cfn = read_cfnconfig(host, cfnconfig_path)
        if ident.region is None and cfn.get("cfn_region"):
            ident.region, ident.sources["region"] = cfn["cfn_region"], "cfnconfig"
        if ident.cluster_name is None and cfn.get("stack_name"):
            ident.cluster_name, ident.sources["cluster_name"] = cfn["stack_name"], "cfnconfig"
    wanted = ident.region is None or ident.cluster_name is None or need_instance_id
    if imds_endpoint and wanted:
        imds = Imds(imds_endpoint, imds_timeout)
        if ident.region is None:
            ident.region = imds.get(IMDS_REGION)
            if ident.region:
                ident.sources["region"] = "imds"
        if ident.cluster_name is None:
            ident.cluster_name = imds.get(IMDS_CLUSTER_TAG)
            if ident.cluster_name:
                ident.sources["cluster_name"] = "imds"
        if need_instance_id:
            ident.instance_id = imds.get(IMDS_INSTANCE_ID)
            if ident.instance_id:
                ident.sources["instance_id"] = "imds"
    return ident
