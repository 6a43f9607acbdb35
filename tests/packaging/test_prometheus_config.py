"""`nodeagent prometheus-config`: the generated prometheus.yml passes
`promtool check config`, and a real Prometheus using it discovers exactly the
right targets from EC2 (moto) by the ParallelCluster tags."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from pkgtools import free_port, wait_http

from nodeagent.publish.prometheus_config import JOB_NAMES, render

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


def test_region_and_cluster_are_parameters() -> None:
    doc = yaml.safe_load(render("train-a", "ap-southeast-2"))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(JOB_NAMES.values()) <= set(jobs)
    for name in JOB_NAMES.values():
        sd = jobs[name]["ec2_sd_configs"][0]
        assert sd["region"] == "ap-southeast-2"
        filters = {f["name"]: f["values"] for f in sd["filters"]}
        assert filters["tag:parallelcluster:cluster-name"] == ["train-a"]
    assert "us-west-2" not in render("train-a", "eu-central-1")


def test_jobs_follow_the_role_table() -> None:
    doc = yaml.safe_load(render("c", "us-east-1"))
    jobs = {j["job_name"]: j["ec2_sd_configs"][0] for j in doc["scrape_configs"] if "ec2_sd_configs" in j}
    node_types = {name: next(f["values"] for f in sd["filters"] if f["name"] == "tag:parallelcluster:node-type")
                  for name, sd in jobs.items()}
    assert node_types == {
        "nodeagent-host": ["Compute", "HeadNode", "LoginNode"],
        "nodeagent-gpu": ["Compute"],
        "nodeagent-slurm": ["HeadNode"],
    }
    assert {name: sd["port"] for name, sd in jobs.items()} == {
        "nodeagent-host": 9100, "nodeagent-gpu": 9400, "nodeagent-slurm": 9341
    }


@pytest.mark.parametrize(
    ("cluster", "region"),
    [("bad name", "us-east-1"), ("c", "us-east-1'\nfoo: bar"), ("-c", "us-east-1"), ("c", "")],
)
def test_hostile_values_are_rejected(cluster: str, region: str) -> None:
    with pytest.raises(ValueError):
        render(cluster, region)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "us-gov-west-1"])
def test_promtool_accepts_it(tmp_path: Path, region: str) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(render("my-cluster", region, scrape_interval="30s"))
    r = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def launch(ec2: Any, subnet: str, cluster: str, node_type: str) -> dict[str, Any]:
    r = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="p5.48xlarge", SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "parallelcluster:cluster-name", "Value": cluster},
            {"Key": "parallelcluster:node-type", "Value": node_type},
            {"Key": "parallelcluster:queue-name", "Value": "gpu"},
        ]}],
    )
    return r["Instances"][0]  # type: ignore[no-any-return]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (apt-get install prometheus)")
def test_prometheus_discovers_the_cluster_from_ec2(tmp_path: Path, aws_env: dict[str, str]) -> None:
    import boto3

    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=aws_env["AWS_ENDPOINT_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    mine = {t: launch(ec2, subnet, "train", t) for t in ("HeadNode", "LoginNode")}
    computes = [launch(ec2, subnet, "train", "Compute") for _ in range(2)]
    stopped = launch(ec2, subnet, "train", "Compute")
    ec2.stop_instances(InstanceIds=[stopped["InstanceId"]])
    other = launch(ec2, subnet, "other", "Compute")

    doc = yaml.safe_load(render("train", "eu-west-1"))
    for job in doc["scrape_configs"]:
        for sd in job.get("ec2_sd_configs", []):
            # only what a test needs on top: where EC2 is and static keys
            sd.update(endpoint=aws_env["AWS_ENDPOINT_URL"], access_key="testing", secret_key="testing")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(doc))
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.tsdb.path={tmp_path / 'data'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready")
        want = {
            "nodeagent-host": {f"{i['PrivateIpAddress']}:9100" for i in [*mine.values(), *computes]},
            "nodeagent-gpu": {f"{i['PrivateIpAddress']}:9400" for i in computes},
            "nodeagent-slurm": {f"{mine['HeadNode']['PrivateIpAddress']}:9341"},
        }
        got: dict[str, set[str]] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
                targets = json.load(r)["data"]["activeTargets"]
            got = {}
            for t in targets:
                got.setdefault(t["scrapePool"], set()).add(t["labels"]["instance"])
            if all(got.get(k) == v for k, v in want.items()):
                break
            time.sleep(0.5)
        for job, addresses in want.items():
            assert got.get(job) == addresses, (job, got)
        labels = next(t["labels"] for t in targets if t["scrapePool"] == "nodeagent-gpu")
        assert labels["node_type"] == "Compute" and labels["queue"] == "gpu"
        assert labels["instance_type"] == "p5.48xlarge" and labels["instance_id"].startswith("i-")
        assert other["PrivateIpAddress"] not in str(got) and stopped["PrivateIpAddress"] not in str(got)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
