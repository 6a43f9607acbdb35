"""Head node: Slurm's commands answering, and CloudWatch reachable with the
permission to publish.

The Slurm commands run as the Slurm collectors run them (slurm.bin_dir,
slurm.slurm_conf, slurm.command_timeout), with small outputs: `sinfo
--summarize`, `squeue --me` (the agent's own jobs, not the whole queue) and
`sdiag`.

CloudWatch is checked wherever the sink runs (by default head and login
nodes): region and namespace found the way the sink finds them (config,
cfnconfig, instance metadata), then one PutMetricData of a single datum,
`AgentCheck` = 1 with the dimension Role, in the sink's namespace: it proves
the endpoint is reachable and the instance role holds
cloudwatch:PutMetricData. One attempt, the sink's timeouts.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import partial
from typing import Any

from nodeagent.checks.result import CheckRow, fail, ok, skip, timed
from nodeagent.collectors.slurm.runner import SlurmRunner
from nodeagent.config import Config
from nodeagent.host import CommandError, CommandTimeout, Host

SLURM_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sinfo", ("--noheader", "--summarize")),
    ("squeue", ("--noheader", "--me", "--format=%A")),
    ("sdiag", ()),
)
CHECK_METRIC = "AgentCheck"
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
BAD_CREDENTIALS = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
    }
)
_XML_CODE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
IAM_HINT = (
    "grant the instance role cloudwatch:PutMetricData (the publish policy in config/iam/; "
    "ParallelCluster: Iam.AdditionalIamPolicies)"
)


def check_slurm_command(cfg: Config, host: Host, command: str, args: tuple[str, ...]) -> CheckRow:
    name = f"slurm {command}"
    runner = SlurmRunner(host, cfg.slurm, command)
    try:
        result = runner.run(args)
    except CommandTimeout as e:
        return fail(name, str(e), "slurmctld is slow or unreachable: `scontrol ping`, its log, and `sdiag`")
    except CommandError as e:
        if e.returncode is None:
            return fail(name, str(e), "set slurm.bin_dir to the directory holding Slurm's commands")
        return fail(name, str(e), "is slurmctld up (`scontrol ping`)? is slurm.slurm_conf (SLURM_CONF) right?")
    lines = len(result.stdout.splitlines())
    return ok(name, f"{runner.binary()} answered in {result.duration:.2f}s ({lines} lines)")


def slurm_checks(cfg: Config, host: Host) -> list[CheckRow]:
    return [
        timed(f"slurm {cmd}", partial(check_slurm_command, cfg, host, cmd, args)) for cmd, args in SLURM_COMMANDS
    ]


def error_code(code: str, message: str) -> str:
    """The AWS error code; an XML error body that reached a JSON-protocol
    client (some proxies and emulators) leaves only the HTTP status as the
    code and the body as the message: the code is read from the body then."""
    if code and not code.isdigit():
        return code
    m = _XML_CODE.search(message)
    return m.group(1) if m else (code or "unknown")


def _client(cfg: Config, region: str) -> Any:
    import boto3

    from nodeagent.sinks.cloudwatch import botocore_config

    s = replace(cfg.cloudwatch, max_attempts=1)
    return boto3.session.Session().client(
        "cloudwatch", region_name=region, endpoint_url=s.endpoint_url, config=botocore_config(s)
    )


def check_cloudwatch(cfg: Config, role: str, host: Host) -> CheckRow:
    name = "cloudwatch"
    from nodeagent.sinks import cloudwatch_enabled

    if not cloudwatch_enabled(cfg, role):
        return skip(name, f"the CloudWatch sink does not run on the {role} role (cloudwatch.enabled, .roles)")
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from nodeagent.sinks.cloudwatch import namespace_problem
    from nodeagent.sinks.discovery import discover

    cw = cfg.cloudwatch
    ident = discover(
        host=host,
        cfnconfig_path=cfg.paths.cfnconfig,
        region=cw.region,
        cluster_name=cw.cluster_name,
        imds_endpoint=cw.imds_endpoint if cw.imds else None,
        imds_timeout=cw.imds_timeout,
        need_instance_id=False,
    )
    namespace = cw.namespace or (f"ParallelCluster/{ident.cluster_name}" if ident.cluster_name else None)
    if namespace is None:
        return fail(name, "no namespace: the cluster name is not in the config, cfnconfig or instance metadata",
                    "set cloudwatch.cluster_name (or cloudwatch.namespace)")
    problem = namespace_problem(namespace)
    if problem:
        return fail(name, problem, "set cloudwatch.namespace to a valid name")
    region = ident.region
    if region is None:
        return fail(name, "no region: not in the config, cfnconfig or instance metadata", "set cloudwatch.region")
    where = f"{namespace} in {region}"
    try:
        client = _client(cfg, region)
        client.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": CHECK_METRIC,
                    "Value": 1.0,
                    "Unit": "Count",
                    "Dimensions": [{"Name": "Role", "Value": role}],
                }
            ],
        )
    except NoCredentialsError:
        return fail(name, f"no AWS credentials for {where}", "attach an instance profile (IAM role) to the instance")
    except ClientError as e:
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(err.get("Message") or "")
        code = error_code(str(err.get("Code") or ""), message)
        if code in ACCESS_DENIED or (status == 403 and "AccessDenied" in message):
            return fail(name, f"PutMetricData to {where} denied ({code}): cloudwatch:PutMetricData missing", IAM_HINT)
        if code in BAD_CREDENTIALS:
            return fail(name, f"credentials refused for {where} ({code})",
                        "the instance profile's credentials are invalid or expired: check the instance role")
        if status == 403:
            return fail(name, f"PutMetricData to {where} forbidden (HTTP 403, {code})", IAM_HINT)
        return fail(name, f"PutMetricData to {where} failed: {code}: {message[:200]}",
                    "see the CloudWatch error above")
    except BotoCoreError as e:
        endpoint = cw.endpoint_url or f"monitoring.{region}.amazonaws.com"
        return fail(name, f"CloudWatch unreachable ({endpoint}): {type(e).__name__}: {e}",
                    "route to CloudWatch: a NAT gateway, or a VPC interface endpoint com.amazonaws.<region>.monitoring")
    return ok(name, f"PutMetricData of {CHECK_METRIC} to {where} accepted")


def head_checks(cfg: Config, role: str, host: Host) -> list[CheckRow]:
    """Slurm's commands on the head node; CloudWatch on every role (skipped
    where the sink does not run)."""
    rows: list[CheckRow] = []
    if role == "head":
        rows.extend(slurm_checks(cfg, host))
    rows.append(timed("cloudwatch", partial(check_cloudwatch, cfg, role, host)))
    return rows
