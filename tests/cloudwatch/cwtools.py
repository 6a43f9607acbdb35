"""Helpers for the CloudWatch tests (ports, credentials, read-back, waiting)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nodeagent.catalogue.spec import Catalogue, CloudWatchSpec, MetricSpec
from nodeagent.model import MetricFamily
from nodeagent.sinks.cloudwatch import CloudWatchSink
from nodeagent.sinks.settings import CloudWatchSettings

PORT_RANGE = range(15000, 15100)
SECRET = "nodeagent-test-secret-DO-NOT-LOG-0123456789"
KEY_ID = "AKIANODEAGENTTEST"


def free_port(exclude: set[int] = set()) -> int:
    for port in PORT_RANGE:
        if port in exclude:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 15000-15099")


def aws_test_env() -> dict[str, str]:
    """Dummy credentials through the default chain (environment), nothing else."""
    return {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


def fast_settings(endpoint: str, spool_dir: Path, **overrides: Any) -> CloudWatchSettings:
    base = CloudWatchSettings(
        cluster_name="testcluster",
        region="us-east-1",
        endpoint_url=endpoint,
        spool_dir=str(spool_dir),
        max_attempts=1,
        retry_max_delay=0.2,
        connect_timeout=0.5,
        read_timeout=0.5,
        imds=False,
        interval=1.0,
    )
    return replace(base, **overrides)


def statistics(
    cw: Any, namespace: str, name: str, dims: dict[str, str], start: float, end: float, unit: str | None = None
) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {}
    if unit:
        kwargs["Unit"] = unit
    r = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=datetime.fromtimestamp(start, tz=timezone.utc),
        EndTime=datetime.fromtimestamp(end, tz=timezone.utc),
        Period=60,
        Statistics=["SampleCount", "Minimum", "Maximum"],
        **kwargs,
    )
    return sorted(r["Datapoints"], key=lambda p: p["Timestamp"])


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def own(sink: CloudWatchSink) -> dict[str, dict[tuple[str, ...], float]]:
    return {f.name: dict(f.samples) for f in sink.own_metrics()}


def minute(t: float) -> float:
    return float(int(t) // 60 * 60)


def host_families(
    idle: float,
    user: float,
    iowait: float = 0.0,
    *,
    mem_total: float = 16e9,
    mem_avail: float = 4e9,
    fs_size: float = 100e9,
    fs_free: float = 40e9,
    fs_avail: float = 35e9,
) -> list[MetricFamily]:
    """node_exporter families as the host collectors emit them (two CPUs, same numbers each)."""
    cpu = MetricFamily("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", "counter", ("cpu", "mode"))
    for c in ("0", "1"):
        for mode, v in (("idle", idle), ("user", user), ("iowait", iowait), ("system", 0.0)):
            cpu.add((c, mode), v)
    out = [cpu]
    for name, v in (("node_memory_MemTotal_bytes", mem_total), ("node_memory_MemAvailable_bytes", mem_avail)):
        f = MetricFamily(name, "mem", "gauge")
        f.add((), v)
        out.append(f)
    for name, v in (
        ("node_filesystem_size_bytes", fs_size),
        ("node_filesystem_free_bytes", fs_free),
        ("node_filesystem_avail_bytes", fs_avail),
    ):
        f = MetricFamily(name, "fs", "gauge", ("device", "fstype", "mountpoint"))
        f.add(("/dev/root", "ext4", "/"), v)
        f.add(("tmpfs", "tmpfs", "/run"), 1e9)
        out.append(f)
    load = MetricFamily("node_load1", "load", "gauge")
    load.add((), 0.5)
    out.append(load)
    return out


def seq_catalogue(labels: tuple[str, ...] = (), dims: tuple[str, ...] | None = None, **cw: Any) -> Catalogue:
    """A private catalogue with one gauge `t_seq` -> CloudWatch `Seq` (tests only)."""
    c = Catalogue()
    c.add(
        MetricSpec(
            "t_seq",
            "gauge",
            "test sequence",
            "test",
            labels,
            cloudwatch=CloudWatchSpec("Seq", unit="Count", dimensions=labels if dims is None else dims, **cw),
        )
    )
    return c


def seq_family(samples: Sequence[tuple[tuple[str, ...], float]], labels: tuple[str, ...] = ()) -> MetricFamily:
    f = MetricFamily("t_seq", "test sequence", "gauge", labels)
    for lv, v in samples:
        f.add(lv, v)
    return f


class LoginAgent:
    """`nodeagent --role login` publishing every second to CloudWatch through
    `endpoint` (a fault proxy), its host port on `port`. `cloudwatch` holds the
    sink's retry and timeout settings as YAML lines."""

    def __init__(self, tmp_path: Path, endpoint: str, run: int, cluster: str, cloudwatch: str) -> None:
        self.port = free_port()
        cfg = tmp_path / f"config-{run}.yaml"
        cfg.write_text(
            f"""
hostname: login-1
paths:
  cfnconfig: {tmp_path / "no-cfnconfig"}
  state_dir: {tmp_path / "state"}
  textfile_dir: {tmp_path / "textfile"}
exporters:
  host:
    listen: 127.0.0.1:{self.port}
cloudwatch:
  cluster_name: {cluster}
  region: us-east-1
  endpoint_url: {endpoint}
  interval: 1
  imds: false
{cloudwatch}"""
        )
        (tmp_path / "textfile").mkdir(exist_ok=True)
        self.log = open(tmp_path / f"agent-{run}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nodeagent", "--role", "login", "--config", str(cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **aws_test_env()},
        )

    def counters(self) -> dict[str, float]:
        """The sink's own counters from /metrics (empty if it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        return {
            m[1]: float(m[2])
            for m in re.finditer(r"^(nodeagent_cloudwatch_datums_(?:published|sent)_total) (\S+)$", text, re.M)
        }

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self.log.close()
        return rc
