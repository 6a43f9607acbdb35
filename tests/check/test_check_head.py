"""Head node checks: Slurm's commands against a real local Slurm 22.05 (and
fake commands that fail or hang), CloudWatch against a moto_server that
enforces IAM: a user allowed cloudwatch:PutMetricData, one who is not, and
an endpoint where nothing listens."""

from __future__ import annotations

from pathlib import Path

import pytest
from check_helpers import make_config
from testlib import free_port

from nodeagent.checks.head import CHECK_METRIC, check_cloudwatch, head_checks
from nodeagent.host import Host, Roots


@pytest.mark.slurm
def test_slurm_commands_answer(check_cluster, tmp_path):
    cfg, _ = make_config(tmp_path, slurm={"bin_dir": "/usr/bin", "slurm_conf": str(check_cluster.conf)},
                         cloudwatch={"enabled": False})
    rows = head_checks(cfg, "head", Host())
    assert [r.check for r in rows] == ["slurm sinfo", "slurm squeue", "slurm sdiag", "cloudwatch"]
    for r in rows[:3]:
        assert r.status == "ok", r
        assert r.detail.startswith(f"/usr/bin/{r.check.split()[1]} answered in ")
    assert rows[3].status == "skip"


def _fake(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_slurm_commands_failing_or_hanging(tmp_path):
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "sinfo", "echo 'sinfo: error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n")
    _fake(bin_dir, "squeue", "exec sleep 30\n")
    _fake(bin_dir, "sdiag", "echo ok\n")
    cfg, _ = make_config(tmp_path, slurm={"bin_dir": str(bin_dir), "command_timeout": 0.5},
                         cloudwatch={"enabled": False})
    rows = {r.check: r for r in head_checks(cfg, "head", Host())}
    sinfo, squeue = rows["slurm sinfo"], rows["slurm squeue"]
    assert sinfo.status == "fail" and "Unable to contact slurm controller" in sinfo.detail
    assert "scontrol ping" in sinfo.hint
    assert squeue.status == "fail" and "timed out after 0.5s" in squeue.detail and squeue.duration_seconds < 5
    assert rows["slurm sdiag"].status == "ok"


def _cw_config(tmp_path: Path, url: str, **cw: object):  # type: ignore[no-untyped-def]
    settings = {"region": "us-east-1", "cluster_name": "chk", "endpoint_url": url, "connect_timeout": 1,
                "read_timeout": 2, "imds": False, **cw}
    cfg, _ = make_config(tmp_path, cloudwatch=settings,
                         paths={"rootfs": str(tmp_path), "cfnconfig": "/no-cfnconfig"})
    return cfg


def test_cloudwatch_allowed_publishes_one_datum(moto_iam, aws_keys, tmp_path):
    aws_keys(moto_iam["allowed"])
    row = check_cloudwatch(_cw_config(tmp_path, moto_iam["url"]), "head", Host(Roots(rootfs=str(tmp_path))))
    assert row.status == "ok", row
    assert row.detail == f"PutMetricData of {CHECK_METRIC} to ParallelCluster/chk in us-east-1 accepted"
    import boto3

    # a session of its own: the default session caches the first credentials it
    # resolved, which may be another test's
    cw = boto3.session.Session().client("cloudwatch", region_name="us-east-1", endpoint_url=moto_iam["url"])
    metrics = cw.list_metrics(Namespace="ParallelCluster/chk", MetricName=CHECK_METRIC)["Metrics"]
    assert [m["Dimensions"] for m in metrics] == [[{"Name": "Role", "Value": "head"}]]


def test_cloudwatch_without_permission_names_the_iam_action(moto_iam, aws_keys, tmp_path):
    aws_keys(moto_iam["denied"])
    row = check_cloudwatch(_cw_config(tmp_path, moto_iam["url"]), "login", Host(Roots(rootfs=str(tmp_path))))
    assert row.status == "fail" and not row.ok
    assert row.detail == ("PutMetricData to ParallelCluster/chk in us-east-1 denied (AccessDenied): "
                          "cloudwatch:PutMetricData missing")
    assert "cloudwatch:PutMetricData" in row.hint


def test_cloudwatch_unknown_keys(moto_iam, aws_keys, tmp_path):
    aws_keys({"AWS_ACCESS_KEY_ID": "AKIANOTKNOWN", "AWS_SECRET_ACCESS_KEY": "nope"})
    row = check_cloudwatch(_cw_config(tmp_path, moto_iam["url"]), "head", Host(Roots(rootfs=str(tmp_path))))
    assert row.status == "fail"
    assert row.detail == "credentials refused for ParallelCluster/chk in us-east-1 (InvalidClientTokenId)"
    assert "instance role" in row.hint


def test_cloudwatch_unreachable(aws_keys, tmp_path):
    aws_keys({"AWS_ACCESS_KEY_ID": "AKIAX", "AWS_SECRET_ACCESS_KEY": "x"})
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    row = check_cloudwatch(_cw_config(tmp_path, url), "head", Host(Roots(rootfs=str(tmp_path))))
    assert row.status == "fail" and row.detail.startswith(f"CloudWatch unreachable ({url})")
    assert "VPC interface endpoint" in row.hint and row.duration_seconds < 5


def test_cloudwatch_without_credentials_region_or_cluster(aws_keys, tmp_path):
    aws_keys(None)
    url = f"http://127.0.0.1:{free_port()}"
    host = Host(Roots(rootfs=str(tmp_path)))
    row = check_cloudwatch(_cw_config(tmp_path, url), "head", host)
    assert row.status == "fail" and row.detail.startswith("no AWS credentials") and "instance profile" in row.hint
    row = check_cloudwatch(_cw_config(tmp_path, url, cluster_name=None), "head", host)
    assert row.status == "fail" and "set cloudwatch.cluster_name" in row.hint
    row = check_cloudwatch(_cw_config(tmp_path, url, region=None), "head", host)
    assert row.status == "fail" and row.hint == "set cloudwatch.region"
    # region and cluster from ParallelCluster's cfnconfig, as the sink finds them
    (tmp_path / "cfnconfig").write_text("stack_name=pc1\ncfn_region=eu-west-1\n")
    cfg, _ = make_config(tmp_path, cloudwatch={"endpoint_url": url, "imds": False, "connect_timeout": 1},
                         paths={"rootfs": str(tmp_path), "cfnconfig": "/cfnconfig"})
    row = check_cloudwatch(cfg, "head", host)
    assert "ParallelCluster/pc1 in eu-west-1" in row.detail
    assert check_cloudwatch(cfg, "compute", host).status == "skip"  # the sink does not run there


def test_error_code_from_an_xml_body():
    from nodeagent.checks.head import error_code

    assert error_code("AccessDenied", "whatever") == "AccessDenied"
    body = "<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>x</Message></Error></Errors>"
    assert error_code("403", body) == "InvalidClientTokenId"
    assert error_code("403", "no body") == "403" and error_code("", "") == "unknown"
