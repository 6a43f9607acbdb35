"""Region / cluster name / instance id: config, else cfnconfig, else IMDSv2
(a fake instance metadata server on 127.0.0.1); and the `cloudwatch:` settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cwtools import free_port

from nodeagent.config import Config, parse_config
from nodeagent.host import Host
from nodeagent.settings import ConfigError
from nodeagent.sinks import build_sinks, cloudwatch_enabled
from nodeagent.sinks.discovery import discover

# What ParallelCluster 3 writes on a head node (cookbook template init/cfnconfig.erb).
CFNCONFIG = """\
stack_name=mycluster
cfn_preinstall=NONE
cfn_preinstall_args=(NONE)
cfn_postinstall=NONE
cfn_postinstall_args=(NONE)
cfn_region=eu-west-1
cfn_scheduler=slurm
cfn_scheduler_slots=vcpus
cfn_instance_slots=1
cfn_ephemeral_dir=/scratch
cfn_ebs_shared_dirs=/shared
cfn_proxy=NONE
cfn_node_type=HeadNode
cfn_cluster_user=ec2-user
cfn_volume=vol-0123456789abcdef0
"""


class FakeImds:
    """IMDSv2: PUT /latest/api/token, then GETs that must carry the token."""

    TOKEN = "fake-imds-token"

    def __init__(self, values: dict[str, str], delay: float = 0.0) -> None:
        self.values = values
        self.delay = delay
        self.requests: list[tuple[str, str, bool]] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                imds.requests.append(("PUT", self.path, True))
                time.sleep(imds.delay)
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._send(200, imds.TOKEN)
                else:
                    self._send(400)

            def do_GET(self) -> None:
                ok = self.headers.get("X-aws-ec2-metadata-token") == imds.TOKEN
                imds.requests.append(("GET", self.path, ok))
                if not ok:
                    self._send(401)
                elif self.path in imds.values:
                    self._send(200, imds.values[self.path])
                else:
                    self._send(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


EC2 = {
    "/latest/meta-data/placement/region": "ap-southeast-2",
    "/latest/meta-data/instance-id": "i-0abc1234def567890",
    "/latest/meta-data/tags/instance/parallelcluster:cluster-name": "tagcluster",
}


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds(EC2)
    yield server
    server.close()


def test_config_wins_over_everything(tmp_path: Path, imds: FakeImds) -> None:
    cfn = tmp_path / "cfnconfig"
    cfn.write_text(CFNCONFIG)
    ident = discover(
        host=Host(),
        cfnconfig_path=str(cfn),
        region="us-east-2",
        cluster_name="fromconfig",
        imds_endpoint=imds.url,
    )
    assert (ident.region, ident.cluster_name, ident.instance_id) == (
        "us-east-2",
        "fromconfig",
        EC2["/latest/meta-data/instance-id"],
    )
    assert ident.sources == {"region": "config", "cluster_name": "config", "instance_id": "imds"}
    # only the instance id was asked for, with a token
    assert [r[1] for r in imds.requests] == ["/latest/api/token", "/latest/meta-data/instance-id"]
    assert all(ok for _, _, ok in imds.requests)


def test_cfnconfig_then_imds(tmp_path: Path, imds: FakeImds) -> None:
    cfn = tmp_path / "cfnconfig"
    cfn.write_text(CFNCONFIG)
    ident = discover(host=Host(), cfnconfig_path=str(cfn), region=None, cluster_name=None, imds_endpoint=imds.url)
    assert (ident.region, ident.cluster_name) == ("eu-west-1", "mycluster")
    assert ident.sources["region"] == ident.sources["cluster_name"] == "cfnconfig"
    assert ident.instance_id == "i-0abc1234def567890"


def test_cfnconfig_under_rootfs(tmp_path: Path) -> None:
    (tmp_path / "etc/parallelcluster").mkdir(parents=True)
    (tmp_path / "etc/parallelcluster/cfnconfig").write_text(CFNCONFIG)
    from nodeagent.host import Roots

    ident = discover(
        host=Host(Roots(rootfs=str(tmp_path))),
        cfnconfig_path="/etc/parallelcluster/cfnconfig",
        region=None,
        cluster_name=None,
        imds_endpoint=None,
    )
    assert (ident.region, ident.cluster_name, ident.instance_id) == ("eu-west-1", "mycluster", None)


def test_imds_only(tmp_path: Path, imds: FakeImds) -> None:
    ident = discover(
        host=Host(),
        cfnconfig_path=str(tmp_path / "absent"),
        region=None,
        cluster_name=None,
        imds_endpoint=imds.url,
    )
    assert (ident.region, ident.cluster_name, ident.instance_id) == (
        "ap-southeast-2",
        "tagcluster",
        "i-0abc1234def567890",
    )
    assert ident.sources == {"region": "imds", "cluster_name": "imds", "instance_id": "imds"}


def test_imds_without_tags_in_metadata(tmp_path: Path) -> None:
    server = FakeImds({k: v for k, v in EC2.items() if "tags" not in k})
    try:
        ident = discover(
            host=Host(),
            cfnconfig_path=str(tmp_path / "absent"),
            region=None,
            cluster_name=None,
            imds_endpoint=server.url,
        )
    finally:
        server.close()
    assert ident.region == "ap-southeast-2" and ident.cluster_name is None


def test_no_imds_costs_one_short_timeout(tmp_path: Path) -> None:
    # a port nobody listens on: refused at once
    start = time.monotonic()
    ident = discover(
        host=Host(),
        cfnconfig_path=str(tmp_path / "absent"),
        region=None,
        cluster_name=None,
        imds_endpoint=f"http://127.0.0.1:{free_port()}",
        imds_timeout=0.3,
    )
    assert ident.region is None and ident.instance_id is None
    assert time.monotonic() - start < 1.0
    # a server that does not answer in time: one timeout, then no more tries
    slow = FakeImds(EC2, delay=1.0)
    try:
        start = time.monotonic()
        ident = discover(
            host=Host(),
            cfnconfig_path=str(tmp_path / "absent"),
            region=None,
            cluster_name=None,
            imds_endpoint=slow.url,
            imds_timeout=0.2,
        )
        elapsed = time.monotonic() - start
    finally:
        slow.close()
    assert ident.region is None
    assert elapsed < 0.8
    assert [r[0] for r in slow.requests] == ["PUT"]


# ---- settings ---------------------------------------------------------------------
def test_defaults_on_for_head_and_login_only() -> None:
    cfg = Config()
    assert cloudwatch_enabled(cfg, "head") and cloudwatch_enabled(cfg, "login")
    assert not cloudwatch_enabled(cfg, "compute")
    assert build_sinks(cfg, "compute", Host()) == []
    off = parse_config("cloudwatch:\n  enabled: false\n", "test.yaml")
    assert not cloudwatch_enabled(off, "head")
    only = parse_config("cloudwatch:\n  roles: [compute]\n", "test.yaml")
    assert cloudwatch_enabled(only, "compute") and not cloudwatch_enabled(only, "head")
    assert Config().cloudwatch.interval == 60.0
    assert Config().cloudwatch.retry_mode == "standard"


def test_settings_from_yaml() -> None:
    cfg = parse_config(
        """
cloudwatch:
  namespace: Custom/Ns
  region: us-west-2
  interval: 30
  retry_mode: adaptive
  max_attempts: 5
  high_resolution: [CPU_IDLE]
  spool_max_bytes: 10485760
  disk_mountpoints: [/, /shared]
""",
        "test.yaml",
    )
    cw = cfg.cloudwatch
    assert (cw.namespace, cw.region, cw.interval, cw.retry_mode, cw.max_attempts) == (
        "Custom/Ns",
        "us-west-2",
        30.0,
        "adaptive",
        5,
    )
    assert cw.high_resolution == ("CPU_IDLE",) and cw.disk_mountpoints == ("/", "/shared")


@pytest.mark.parametrize(
    "yaml_text,key",
    [
        ("cloudwatch:\n  aws_secret_access_key: abc\n", "cloudwatch.aws_secret_access_key"),
        ("cloudwatch:\n  aws_access_key_id: AKIA\n", "cloudwatch.aws_access_key_id"),
        ("cloudwatch:\n  retry_mode: legacy\n", "cloudwatch.retry_mode"),
        ("cloudwatch:\n  roles: [head, gpu]\n", "cloudwatch.roles"),
        ("cloudwatch:\n  max_datums_per_request: 1001\n", "cloudwatch.max_datums_per_request"),
        ("cloudwatch:\n  max_request_bytes: 2000000\n", "cloudwatch.max_request_bytes"),
        ("cloudwatch:\n  namespace: AWS/EC2\n", "cloudwatch.namespace"),
        # what the sink would refuse (namespace_problem) is refused when the config is read
        ("cloudwatch:\n  namespace: Clüster/x\n", "cloudwatch.namespace"),
        ("cloudwatch:\n  namespace: ':x'\n", "cloudwatch.namespace"),
        ("cloudwatch:\n  interval: 0.5\n", "cloudwatch.interval"),
        ("cloudwatch:\n  spool_max_bytes: 1000\n", "cloudwatch.spool_max_bytes"),
    ],
)
def test_bad_settings_name_the_key(yaml_text: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(yaml_text, "test.yaml")
    assert e.value.key == key
    assert "abc" not in str(e.value) or "aws_secret" not in key
