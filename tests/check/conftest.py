"""Fixtures for the `nodeagent check` tests: a one-node Slurm cluster
(slurmctld 17100, slurmd 17101, node 17150), a second one whose slurmd runs
`nodeagent check --slurm-health` as its HealthCheckProgram (17110, 17111,
17160), and a moto_server enforcing IAM policies."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from check_helpers import CheckSlurm  # noqa: E402
from localslurm import slurm_available  # noqa: E402
from testlib import MotoServer  # noqa: E402


def _base_dir(prefix: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


@pytest.fixture(scope="session")
def check_cluster() -> Iterator[CheckSlurm]:
    why = slurm_available()
    if why:
        pytest.skip(why)
    base = _base_dir("nodeagent-check-slurm-")
    cluster = CheckSlurm(base, base_port=17100, cluster="chk", node_count=1,
                         partitions=("p Nodes=node1 Default=YES MaxTime=INFINITE State=UP",))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def slurm_node(check_cluster: CheckSlurm) -> Iterator[CheckSlurm]:
    """The cluster with node1 idle and undrained before and after the test."""
    if "DRAIN" in check_cluster.node()[0]:
        check_cluster.scontrol("update", "NodeName=node1", "State=RESUME")
    yield check_cluster
    if "DRAIN" in check_cluster.node()[0]:
        check_cluster.scontrol("update", "NodeName=node1", "State=RESUME")


# ---- moto_server with IAM enforcement --------------------------------------------------
# the first requests are not authenticated (moto's INITIAL_NO_AUTH_ACTION_COUNT): the users
# and their keys are made with them; every later request must be allowed by IAM
_SETUP_ACTIONS = 6


def _iam_policy(*actions: str) -> str:
    statement = {"Effect": "Allow", "Action": list(actions), "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="session")
def moto_iam() -> Iterator[dict[str, Any]]:
    """{"url", "allowed": keys of a user who may publish, "denied": keys of one who may not}."""
    import boto3

    server = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_ACTIONS)})
    url = server.url
    try:
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=url,
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        keys = {}
        # moto names CloudWatch's IAM actions after its endpoint prefix (monitoring:),
        # AWS after the service (cloudwatch:); the allowed user gets both spellings
        policies = {
            "allowed": _iam_policy("cloudwatch:PutMetricData", "monitoring:PutMetricData",
                                   "cloudwatch:ListMetrics", "monitoring:ListMetrics"),
            "denied": _iam_policy("cloudwatch:GetMetricData", "monitoring:GetMetricData"),
        }
        for user, policy in policies.items():  # 3 actions per user
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="check", PolicyDocument=policy)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        yield {"url": url, **keys}
    finally:
        server.stop()


@pytest.fixture
def aws_keys(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Put a user's keys in the environment (the default credential chain), nothing else."""

    def use(keys: dict[str, str] | None) -> None:
        for k in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN",
                  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        for k, v in (keys or {}).items():
            monkeypatch.setenv(k, v)

    return use
