"""The real agent, `python -m nodeagent --role login`, publishing the host
summary to CloudWatch (moto behind the fault proxy) the way the CloudWatch
Agent did on login nodes, and losing nothing across a kill -9 during an
outage."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from cwtools import LoginAgent, statistics, wait_for
from faultproxy import FaultProxy

from nodeagent.sinks.spool import decode

NS = "ParallelCluster/logincluster"
SUMMARY = {"CPU_IDLE", "CPU_USED", "CPU_IOWAIT", "MEM_USED_PERCENT", "MEM_AVAILABLE", "DISK_USED_PERCENT"}


def Agent(tmp_path: Path, proxy: FaultProxy, run: int) -> LoginAgent:
    return LoginAgent(tmp_path, proxy.url, run, "logincluster", """\
  max_attempts: 1
  connect_timeout: 0.5
  read_timeout: 0.5
  retry_max_delay: 0.2
""")


def summary_names(proxy: FaultProxy) -> set[str]:
    return {d[0] for r in proxy.delivered() for d in r.datums}


def test_login_agent_publishes_the_host_summary(tmp_path: Path, proxy: FaultProxy, cw: Any) -> None:
    agent = Agent(tmp_path, proxy, 1)
    try:
        wait_for(lambda: summary_names(proxy) >= SUMMARY, timeout=20, what="host summary from the agent")
    finally:
        assert agent.stop() == 0
    datums = [d for r in proxy.delivered() for d in r.datums]
    # the login role publishes its host summary only: no Slurm, no per-device series
    io = {"NETWORK_RX", "NETWORK_TX", "LUSTRE_READ", "LUSTRE_WRITE"}
    assert {d[0] for d in datums} <= SUMMARY | io | {"SPOOL_OLDEST_AGE"}
    for name, dims, ts, value, unit, res in datums:
        assert dict(dims)["Role"] == "login" and dict(dims).get("InstanceId", "login-1") == "login-1"
        assert res == 60
        if name.endswith(("_PERCENT", "IDLE", "USED", "IOWAIT")):
            assert unit == "Percent" and 0.0 <= value <= 100.0
    idle = [d for d in datums if d[0] == "CPU_IDLE" and len(d[1]) == 2]
    points = statistics(
        cw, NS, "CPU_IDLE", {"Role": "login", "InstanceId": "login-1"}, idle[0][2] - 1, idle[-1][2] + 1, unit="Percent"
    )
    assert points and all(0.0 <= p["Maximum"] <= 100.0 for p in points)


def test_agent_kill9_during_outage_loses_nothing(tmp_path: Path, proxy: FaultProxy) -> None:
    proxy.set_mode("error500")
    first = Agent(tmp_path, proxy, 1)
    spool = tmp_path / "state" / "spool" / "login"  # the login role's own spool
    try:
        wait_for(lambda: len(list(spool.glob("*.seg"))) >= 3, timeout=20, what="three spooled publishes")
    finally:
        first.stop(signal.SIGKILL)
    assert first.proc.returncode == -signal.SIGKILL
    assert proxy.delivered() == []
    # what the killed agent had made durable
    # (botocore's JSON protocol sends whole seconds)
    produced = {(d.name, d.dims, int(d.timestamp)) for seg in spool.glob("*.seg") for d in decode(seg.read_bytes())}
    assert {name for name, _, _ in produced} >= {"MEM_USED_PERCENT", "DISK_USED_PERCENT"}

    proxy.set_mode("pass")
    second = Agent(tmp_path, proxy, 2)
    try:

        def all_arrived() -> bool:
            got = {(d[0], tuple(d[1]), int(d[2])) for r in proxy.delivered() for d in r.datums}
            newest = max(p[2] for p in produced)
            return produced <= got and any(g[2] > newest for g in got)

        wait_for(all_arrived, timeout=20, what="the killed agent's spool replayed, then new data")
    finally:
        assert second.stop() == 0
    # the backlog went out first, in order, then the new agent's own data
    ts = [d[2] for r in proxy.delivered() for d in r.datums]
    assert ts == sorted(ts)
    assert max(ts) > max(p[2] for p in produced)
