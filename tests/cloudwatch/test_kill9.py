"""Nothing is lost across a kill -9 during an outage: a process publishes
through build_sinks() while CloudWatch (moto behind the fault proxy) fails,
is killed with SIGKILL, and a fresh process replays the spool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cwtools import aws_test_env, minute, statistics
from faultproxy import FaultProxy

DRIVER = Path(__file__).parent / "driver.py"
NS = "ParallelCluster/killcluster"


def write_config(tmp_path: Path, proxy: FaultProxy) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
paths:
  cfnconfig: {tmp_path / "cfnconfig"}
  state_dir: {tmp_path / "state"}
cloudwatch:
  region: us-east-1
  endpoint_url: {proxy.url}
  max_attempts: 1
  connect_timeout: 0.5
  read_timeout: 0.5
  retry_max_delay: 0.2
  imds: false
"""
    )
    # the cluster name comes from ParallelCluster's cfnconfig, as on a real head node
    (tmp_path / "cfnconfig").write_text("stack_name=killcluster\ncfn_region=us-east-1\ncfn_node_type=HeadNode\n")
    return cfg


def driver(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **aws_test_env()},
    )


@pytest.mark.parametrize("outage", ["error500", "dark"])
def test_kill9_during_outage_then_replay(tmp_path: Path, proxy: FaultProxy, cw: Any, outage: str) -> None:
    cfg = write_config(tmp_path, proxy)
    start = minute(time.time()) - 6 * 3600
    proxy.set_mode(outage)
    p = driver(str(cfg), "--role", "head", "--start", str(start), "--count", "300", "--pause", "0.02")
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    published: list[int] = []
    while len(published) < 25:
        line = p.stdout.readline()
        assert line, "driver exited early"
        published.append(int(line.split()[1]))
    os.kill(p.pid, signal.SIGKILL)
    p.wait(5)
    published += [int(line.split()[1]) for line in p.stdout.read().splitlines() if line.startswith("published")]
    assert p.returncode == -signal.SIGKILL
    assert proxy.delivered() == []  # nothing got through during the outage
    spooled = list((tmp_path / "state" / "spool" / "head").glob("*.seg"))
    assert spooled, "nothing was spooled"

    proxy.set_mode("pass")
    r = driver(str(cfg), "--role", "head", "--replay", "15")
    out, _ = r.communicate(timeout=30)
    assert r.returncode == 0, out
    assert out.splitlines()[-1] == "left 0"

    # every value whose publish() returned reached CloudWatch, at its own timestamp
    delivered = {(d[2], d[3]) for rec in proxy.delivered() for d in rec.datums}
    missing = [i for i in published if (start + 60 * i, float(i)) not in delivered]
    assert missing == []
    order = [d[2] for rec in proxy.delivered() for d in rec.datums]
    assert order == sorted(order)  # replayed in order
    points = statistics(cw, NS, "NodesIdle", {}, start, start + 60 * (max(published) + 1), unit="Count")
    got = {p["Timestamp"].timestamp(): p["Maximum"] for p in points}
    assert all(got.get(start + 60 * i) == float(i) for i in published)
