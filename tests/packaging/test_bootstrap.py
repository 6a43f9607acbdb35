"""The ParallelCluster bootstrap (config/): shellcheck, the DRY_RUN plan of
each node type, failures that must fail the node, a real run (with recording
fakes for apt-get, nodeagent and dpkg-query) fetching everything from S3
(moto), the cluster template and the IAM policies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pkgtools import CONFIG, PACKAGING, REPO, dummy_deb, make_fakes

SCRIPTS = sorted([*CONFIG.rglob("*.sh"), *PACKAGING.glob("*.sh")])
MAINTAINER_SCRIPTS = [PACKAGING / "debian" / f"nodeagent{s}"
                      for s in (".preinst", ".postinst", ".prerm", ".postrm", "-slurm-health")]
NODE_TYPES = {"HeadNode": "head", "ComputeFleet": "compute", "LoginNode": "login"}


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", [*SCRIPTS, *MAINTAINER_SCRIPTS], ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    # -x follows the files the scripts source; run from elsewhere on purpose
    r = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True, cwd="/", timeout=120)
    assert r.returncode == 0, r.stdout


def test_scripts_are_executable() -> None:
    sourced = {CONFIG / "environment-variables.sh", PACKAGING / "chroot-lib.sh"}
    for script in {*CONFIG.glob("*.sh"), *CONFIG.glob("*/setup-*.sh"), *PACKAGING.glob("*.sh")} - sourced:
        assert os.access(script, os.X_OK), script


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A bootstrap source directory (packages/ with a .deb) and node facts."""
    (tmp_path / "packages").mkdir()
    dummy_deb(tmp_path / "packages", "0.0.1")
    return tmp_path


def bootstrap_env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENABLE_", "NODEAGENT_", "AWS_"))}
    env.update(
        NODEAGENT_CFNCONFIG=str(site / "cfnconfig"),
        NODEAGENT_DNA_JSON=str(site / "dna.json"),
        NODEAGENT_BOOTSTRAP_LOG=str(site / "log" / "nodeagent-bootstrap.log"),
        NODEAGENT_BOOTSTRAP_DIR=str(site / "bootstrap"),
        SLURM_PREFIX=str(site / "slurm"),
    )
    env.update(extra)
    return env


def run_script(script: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("node_type", NODE_TYPES)
def test_dry_run_plan_per_node_type(site: Path, node_type: str) -> None:
    role = NODE_TYPES[node_type]
    (site / "cfnconfig").write_text(f"stack_name=train\ncfn_region=eu-west-1\ncfn_node_type={node_type}\n")
    env = bootstrap_env(site, DRY_RUN="1")
    r = run_script(CONFIG / "on-node-configured.sh", [str(site)], env)
    assert r.returncode == 0, r.stderr
    plan = r.stdout
    deb = next((site / "packages").glob("*.deb"))
    assert f"apt-get -o DPkg::Lock::Timeout=900 -y install --no-install-recommends {deb}" in plan
    assert f"[dry-run] nodeagent install --role {role}\n" in plan
    assert plan.rstrip().endswith(f"[dry-run] nodeagent check --role {role}")
    if role == "compute":
        for job in ("efa", "nccl", "docker", "enroot"):
            assert f"[dry-run] job {job} (in parallel" in plan
    if role == "head":
        assert "nodeagent prometheus-config --cluster train --region eu-west-1" in plan
        assert "plugstack.conf.d/pyxis.conf" in plan
    # a dry run changes nothing, not even the log
    assert not (site / "log").exists() and not (site / "bootstrap").exists()
    assert f"node type {node_type}" in r.stderr


def test_node_type_from_dna_json(site: Path) -> None:
    (site / "dna.json").write_text(json.dumps({"cluster": {"node_type": "LoginNode", "stack_name": "x"}}))
    r = run_script(CONFIG / "on-node-configured.sh", [str(site)], bootstrap_env(site, DRY_RUN="1"))
    assert r.returncode == 0, r.stderr
    assert "nodeagent install --role login" in r.stdout


def test_unknown_node_type_fails(site: Path) -> None:
    r = run_script(CONFIG / "on-node-configured.sh", [str(site)], bootstrap_env(site, DRY_RUN="1"))
    assert r.returncode != 0
    assert "cannot tell the node type" in r.stderr
    (site / "cfnconfig").write_text("cfn_node_type=Bastion\n")
    assert run_script(CONFIG / "on-node-configured.sh", [str(site)], bootstrap_env(site, DRY_RUN="1")).returncode != 0


def test_disabled_node_type_does_nothing(site: Path) -> None:
    (site / "cfnconfig").write_text("cfn_node_type=ComputeFleet\n")
    env = bootstrap_env(site, DRY_RUN="1", ENABLE_COMPUTE_SETUP="false")
    r = run_script(CONFIG / "on-node-configured.sh", [str(site)], env)
    assert r.returncode == 0
    assert "nodeagent" not in r.stdout and "ENABLE_COMPUTE_SETUP=false" in r.stderr


def test_optional_components_follow_their_flags(site: Path) -> None:
    (site / "cfnconfig").write_text("cfn_node_type=ComputeFleet\n")
    flags = {f"ENABLE_{c}": "false" for c in ("EFA_INSTALLER", "NCCL", "DOCKER", "PYXIS")}
    r = run_script(CONFIG / "on-node-configured.sh", [str(site)], bootstrap_env(site, DRY_RUN="1", **flags))
    assert r.returncode == 0, r.stderr
    assert "job" not in r.stdout and "pyxis" not in r.stdout
    assert "nodeagent install --role compute" in r.stdout


def test_no_second_exporter_is_installed() -> None:
    """nodeagent is the only host and GPU exporter: no script installs
    node_exporter or dcgm-exporter (comments may name them)."""
    pattern = re.compile(r"node[-_]exporter|dcgm[-_]exporter|dcgm-exporter", re.IGNORECASE)
    for script in [*CONFIG.rglob("*.sh"), CONFIG / "cluster-config.yaml.template"]:
        for n, line in enumerate(script.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not pattern.search(code), f"{script}:{n}: {line}"


def test_job_failures_are_all_caught(tmp_path: Path) -> None:
    """Every background job is waited for; each failure is named; the logs of
    all jobs reach the main log."""
    log = tmp_path / "boot.log"
    snippet = f"""
set -Eeuo pipefail
NODEAGENT_BOOTSTRAP_LOG={log}
. {CONFIG}/lib/common.sh
setup_logging
slow_ok() {{ sleep 1; echo slow-done; touch {tmp_path}/slow-finished; }}
fails_fast() {{ echo about-to-fail; false; echo never-printed; }}
fails_later() {{ sleep 0.3; exit 7; }}
job_start slow slow_ok
job_start fast fails_fast
job_start later fails_later
jobs_wait
echo not-reached
"""
    r = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "not-reached" not in r.stdout
    assert (tmp_path / "slow-finished").exists(), "jobs_wait returned before every job finished"
    assert "background job(s) failed: fast later" in r.stderr
    text = log.read_text()
    assert "[job slow] slow-done" in text and "[job fast] about-to-fail" in text
    assert "never-printed" not in text
    assert "job later FAILED with exit status 7" in text


@pytest.fixture
def fakes(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "fakebin"
    make_fakes(bin_dir, ["apt-get", "nodeagent", "dpkg-query", "enroot", "systemctl", "curl"])
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_CALLS": str(tmp_path / "calls")}


def calls(env: dict[str, str]) -> list[str]:
    p = Path(env["FAKE_CALLS"])
    return p.read_text().splitlines() if p.exists() else []


def test_compute_job_failure_fails_the_node(site: Path, fakes: dict[str, str]) -> None:
    (site / "cfnconfig").write_text("cfn_node_type=ComputeFleet\n")
    # NCCL's download fails; Enroot is "already there" (a fake on PATH), so
    # that job succeeds; NCCL is probed absent (no /opt/nccl here)
    env = bootstrap_env(site, ENABLE_EFA_INSTALLER="false", ENABLE_DOCKER="false", ENABLE_PYXIS="true",
                        ENABLE_NCCL="true", FAKE_FAIL_curl="NVIDIA/nccl", **fakes)
    if Path("/opt/nccl/lib/libnccl.so").exists():
        pytest.skip("this machine has NCCL in /opt/nccl")
    r = run_script(CONFIG / "on-node-configured.sh", [str(site)], env)
    assert r.returncode == 1
    assert "background job(s) failed: nccl" in r.stderr
    assert "command failed with exit status 3: curl" in r.stderr
    assert "compute/setup-compute-node.sh failed" in r.stderr
    # the node is not declared healthy after a failed step
    assert not any(c.startswith("nodeagent check") for c in calls(env))
    log = Path(env["NODEAGENT_BOOTSTRAP_LOG"]).read_text()
    assert "[job enroot]" in log and "Enroot: already installed" in log


def test_failed_step_outside_jobs_fails_the_node(site: Path, fakes: dict[str, str]) -> None:
    (site / "cfnconfig").write_text("cfn_node_type=LoginNode\n")
    env = bootstrap_env(site, LOGIN_PACKAGES="", FAKE_FAIL_nodeagent="install --role", **fakes)
    r = run_script(CONFIG / "on-node-configured.sh", [str(site)], env)
    assert r.returncode == 1
    assert "failed at" in r.stderr and "nodeagent install --role login" in r.stderr


def test_check_failure_fails_the_node(site: Path, fakes: dict[str, str]) -> None:
    (site / "cfnconfig").write_text("cfn_node_type=LoginNode\n")
    env = bootstrap_env(site, LOGIN_PACKAGES="", FAKE_FAIL_nodeagent="check", **fakes)
    r = run_script(CONFIG / "on-node-configured.sh", [str(site)], env)
    assert r.returncode == 1
    assert "nodeagent check --role login failed" in r.stderr


def test_login_node_from_s3(tmp_path: Path, site: Path, fakes: dict[str, str], aws_env: dict[str, str]) -> None:
    """As ParallelCluster runs it: the one script, downloaded alone, given the
    S3 prefix deploy-to-s3.sh filled (moto); then a re-run."""
    env = {**aws_env, **fakes, "S3_BUCKET": "boot-bucket", "S3_PREFIX": "na"}
    subprocess.run(["aws", "s3", "mb", "s3://boot-bucket"], env=env, check=True, capture_output=True, timeout=60)
    deb = next((site / "packages").glob("*.deb"))
    d = subprocess.run([str(CONFIG / "deploy-to-s3.sh"), "--deb", str(deb)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert d.returncode == 0, d.stderr
    alone = tmp_path / "downloaded" / "on-node-configured.sh"
    alone.parent.mkdir()
    shutil.copy(CONFIG / "on-node-configured.sh", alone)
    (site / "cfnconfig").write_text("cfn_node_type=LoginNode\n")
    env.update(bootstrap_env(site, LOGIN_PACKAGES="", **fakes))
    env.update({k: v for k, v in aws_env.items() if k.startswith("AWS_")})

    r = run_script(alone, ["s3://boot-bucket/na"], env)
    assert r.returncode == 0, r.stderr
    assert (site / "bootstrap/config/loginnode/setup-loginnode.sh").is_file()
    seen = calls(env)
    installs = [c for c in seen if c.startswith("apt-get") and " install " in c]
    assert len(installs) == 1 and installs[0].endswith(f"/{deb.name}")
    assert seen[-2:] == ["nodeagent install --role login", "nodeagent check --role login"]
    log = Path(env["NODEAGENT_BOOTSTRAP_LOG"]).read_text()
    assert "login node setup finished" in log and "node type LoginNode" in log

    # the same version installed: a re-run installs nothing, enables and checks again
    Path(env["FAKE_CALLS"]).unlink()
    env["FAKE_NODEAGENT_VERSION"] = "0.0.1"
    r = run_script(alone, ["s3://boot-bucket/na"], env)
    assert r.returncode == 0, r.stderr
    seen = calls(env)
    assert not [c for c in seen if c.startswith("apt-get")]
    assert seen[-2:] == ["nodeagent install --role login", "nodeagent check --role login"]


def test_deploy_to_s3(tmp_path: Path, site: Path, aws_env: dict[str, str]) -> None:
    env = {**aws_env, "S3_BUCKET": "deploy-bucket", "S3_PREFIX": "pfx"}
    subprocess.run(["aws", "s3", "mb", "s3://deploy-bucket"], env=env, check=True, capture_output=True, timeout=60)
    old = dummy_deb(tmp_path, "0.0.0")
    new = next((site / "packages").glob("*.deb"))
    for deb in (old, new):
        r = subprocess.run([str(CONFIG / "deploy-to-s3.sh"), "--deb", str(deb)], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    ls = subprocess.run(["aws", "s3", "ls", "--recursive", "s3://deploy-bucket/pfx/"], env=env, capture_output=True,
                        text=True, check=True, timeout=60).stdout
    keys = {line.split()[-1] for line in ls.splitlines()}
    assert f"pfx/packages/{new.name}" in keys and f"pfx/packages/{old.name}" not in keys
    for rel in ("on-node-configured.sh", "lib/common.sh", "compute/setup-compute-node.sh",
                "headnode/setup-headnode.sh", "loginnode/setup-loginnode.sh", "environment-variables.sh"):
        assert f"pfx/config/{rel}" in keys
    assert "s3://deploy-bucket/pfx/config/on-node-configured.sh" in r.stdout


def render_template(**extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("CLUSTER_NAME", "AWS_REGION", "S3_BUCKET")}
    env.update(extra)
    r = subprocess.run(
        ["bash", "-c", f". {CONFIG}/environment-variables.sh && envsubst < {CONFIG}/cluster-config.yaml.template"],
        capture_output=True, text=True, env=env, check=True, timeout=60,
    )
    return r.stdout


def test_cluster_template_renders() -> None:
    text = render_template(CLUSTER_NAME="llm", AWS_REGION="eu-north-1", S3_BUCKET="b", S3_PREFIX="p")
    assert "${" not in text and "$" not in text.replace("$$", "")
    doc = yaml.safe_load(text)
    assert doc["Region"] == "eu-north-1"
    script = "s3://b/p/config/on-node-configured.sh"
    actions = [
        doc["HeadNode"]["CustomActions"],
        doc["Scheduling"]["SlurmQueues"][0]["CustomActions"],
        doc["LoginNodes"]["Pools"][0]["CustomActions"],
    ]
    for a in actions:
        assert a["OnNodeConfigured"] == {"Script": script, "Args": ["s3://b/p"]}

    def policies(section: dict) -> list[str]:
        return [p["Policy"] for p in section["Iam"]["AdditionalIamPolicies"]]

    head = policies(doc["HeadNode"])
    compute = policies(doc["Scheduling"]["SlurmQueues"][0])
    login = policies(doc["LoginNodes"]["Pools"][0])
    assert [p.rsplit("/", 1)[1] for p in head] == [
        "llm-nodeagent-bootstrap", "llm-nodeagent-publish", "llm-nodeagent-discovery"]
    assert [p.rsplit("/", 1)[1] for p in compute] == ["llm-nodeagent-bootstrap"]
    assert [p.rsplit("/", 1)[1] for p in login] == ["llm-nodeagent-bootstrap", "llm-nodeagent-publish"]
    # nothing broad: no AWS managed policies, no S3 write
    assert "arn:aws:iam::aws:policy" not in text and "EnableWriteAccess: true" not in text


NODE_ACTIONS = {
    "bootstrap": {"s3:GetObject", "s3:ListBucket"},
    "publish": {"cloudwatch:PutMetricData"},
    "discovery": {"ec2:DescribeInstances", "ec2:DescribeAvailabilityZones"},
}


def render_policy(name: str) -> dict:
    env = {**os.environ, "CLUSTER_NAME": "llm", "S3_BUCKET": "b", "S3_PREFIX": "p", "AWS_ACCOUNT_ID": "111122223333",
           "AWS_REGION": "eu-north-1"}
    text = subprocess.run(["envsubst"], input=(CONFIG / "iam" / f"{name}-policy.json.template").read_text(),
                          capture_output=True, text=True, env=env, check=True, timeout=60).stdout
    assert "${" not in text
    return json.loads(text)


@pytest.mark.parametrize("name", NODE_ACTIONS)
def test_node_policies_are_least_privilege(name: str) -> None:
    doc = render_policy(name)
    actions: set[str] = set()
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow"
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert not any("*" in a for a in acts)
        actions |= set(acts)
        if "s3:GetObject" in acts:
            assert st["Resource"] == "arn:aws:s3:::b/p/*"
        if "s3:ListBucket" in acts:
            assert st["Condition"] == {"StringLike": {"s3:prefix": ["p/*"]}}
        if "cloudwatch:PutMetricData" in acts:
            assert st["Condition"] == {"StringEquals": {"cloudwatch:namespace": "ParallelCluster/llm"}}
    assert actions == NODE_ACTIONS[name]


def test_create_iam_policies(aws_env: dict[str, str]) -> None:
    import boto3

    env = {**aws_env, "CLUSTER_NAME": "llm", "S3_BUCKET": "b", "S3_PREFIX": "p"}
    script = str(CONFIG / "create-iam-policies.sh")
    r = subprocess.run([script, "--operator"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in r.stdout.splitlines())
    assert set(exports) == {f"NODEAGENT_{n}_POLICY_ARN" for n in ("BOOTSTRAP", "PUBLISH", "DISCOVERY", "OPERATOR")}
    iam = boto3.client("iam", region_name="eu-west-1", endpoint_url=aws_env["AWS_ENDPOINT_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = exports["NODEAGENT_PUBLISH_POLICY_ARN"]
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    assert doc == render_policy("publish")
    # a re-run updates the policy whose document changed and leaves the others
    r = subprocess.run([script], env={**env, "S3_PREFIX": "q"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "updated llm-nodeagent-bootstrap" in r.stderr and r.stderr.count("is up to date") == 2, r.stderr
    version = iam.get_policy(PolicyArn=exports["NODEAGENT_BOOTSTRAP_POLICY_ARN"])["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=exports["NODEAGENT_BOOTSTRAP_POLICY_ARN"], VersionId=version)
    assert doc["PolicyVersion"]["Document"]["Statement"][0]["Resource"] == "arn:aws:s3:::b/q/*"
    assert "updated llm-nodeagent-publish" not in r.stderr
