"""A dark CloudWatch outage with a kill -9, accounted datum by datum.

A real agent (`python -m nodeagent --role login`) publishes every second to
moto_server through the fault proxy. CloudWatch then goes dark in the proxy's
`late` mode, the worst case for duplicates: every request reaches moto and is
stored, but no answer comes back. During the outage the agent is killed with
SIGKILL and started again; later CloudWatch comes back.

The accounting: every datum the agents made durable (seen in the spool, or
sent) is stored in moto (no loss), and the only duplicates are the datums of
the one request that was in flight when CloudWatch went dark (at-least-once
delivery: that request may or may not have been stored, so it is sent again).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cloudwatch"))
from cwtools import LoginAgent, aws_test_env, wait_for
from faultproxy import FaultProxy

from nodeagent.sinks.spool import decode

NAMESPACE = "ParallelCluster/outagecluster"
Key = tuple[str, tuple[tuple[str, str], ...], int]  # metric, dimensions, timestamp (whole seconds on the wire)


def Agent(tmp_path: Path, proxy: FaultProxy, run: int) -> LoginAgent:
    """The login agent with botocore's retries and a read timeout longer than a publish."""
    return LoginAgent(tmp_path, proxy.url, run, "outagecluster", """\
  max_attempts: 4
  connect_timeout: 0.5
  read_timeout: 2
  retry_max_delay: 1
""")


class SpoolWatcher(threading.Thread):
    """Reads every segment that appears in the spool: what the agents made
    durable (a publish returned), whatever happens to the process later."""

    def __init__(self, directory: Path) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.segments: dict[str, set[Key]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.scan()

    def scan(self) -> None:
        for seg in self.directory.glob("*.seg"):
            if seg.name not in self.segments:
                try:
                    blob = seg.read_bytes()
                except FileNotFoundError:
                    continue  # sent and deleted already: the proxy saw it
                self.segments[seg.name] = {(d.name, d.dims, int(d.timestamp)) for d in decode(blob)}

    def keys(self) -> set[Key]:
        return set().union(*self.segments.values())


def spooled(directory: Path) -> int:
    return len(list(directory.glob("*.seg")))


def probes(proxy: FaultProxy) -> int:
    return sum(r.action == "ListMetrics" for r in proxy.records)


def moto_sample_count(moto_url: str, start: float, end: float) -> int:
    """Datums moto stored in the namespace, from its own statistics (per
    metric name with no dimension filter: moto matches dimensions as a
    subset, so a Role-only query would count the per-instance datums too)."""
    import boto3

    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    pages = cw.get_paginator("list_metrics").paginate(Namespace=NAMESPACE)
    names = {m["MetricName"] for page in pages for m in page["Metrics"]}
    total = 0
    for name in names:
        points = cw.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=name,
            StartTime=datetime.fromtimestamp(start, tz=timezone.utc),
            EndTime=datetime.fromtimestamp(end, tz=timezone.utc),
            Period=60,
            Statistics=["SampleCount"],
        )["Datapoints"]
        total += int(sum(p["SampleCount"] for p in points))
    return total


@pytest.mark.slow
def test_dark_outage_kill9_restart_recover_accounting(
    tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in aws_test_env().items():
        monkeypatch.setenv(k, v)
    proxy = FaultProxy(moto_url).start()
    spool = tmp_path / "state" / "spool" / "login"  # the login role's own spool
    watcher = SpoolWatcher(spool)
    watcher.start()
    start = time.time() - 120
    agents: list[Agent] = []
    try:
        first = Agent(tmp_path, proxy, 1)
        agents.append(first)
        wait_for(lambda: len(proxy.delivered()) >= 2, timeout=30, what="two publishes delivered")
        counters_first = first.counters()

        proxy.set_mode("late")  # dark: stored, never answered
        wait_for(lambda: spooled(spool) >= 3, timeout=20, what="three publishes spooled in the outage")
        puts_at_kill = len(proxy.put_records())
        at_kill = spooled(spool)
        first.stop(signal.SIGKILL)
        assert first.proc.returncode == -signal.SIGKILL

        second = Agent(tmp_path, proxy, 2)
        agents.append(second)
        probes_before = probes(proxy)
        wait_for(lambda: spooled(spool) >= at_kill + 3, timeout=20, what="three more publishes after the restart")
        wait_for(
            lambda: probes(proxy) > probes_before or len(proxy.put_records()) > puts_at_kill,
            timeout=10,
            what="the restarted agent trying CloudWatch",
        )
        # what the restarted agent sent into the dark (it should ask first)
        sent_after_restart = len(proxy.put_records()) - puts_at_kill

        proxy.set_mode("pass")
        recovered = len(proxy.put_records())
        wait_for(
            lambda: spooled(spool) == 0 and len(proxy.delivered()) > recovered + 1,
            timeout=30,
            what="the backlog sent and new publishes delivered",
        )
        counters_second = second.counters()
        assert second.stop() == 0
    finally:
        for a in agents:
            if a.proc.poll() is None:
                a.stop(signal.SIGKILL)
        watcher.done.set()
        watcher.join()
        proxy.stop()
    watcher.scan()

    puts = proxy.put_records()
    unanswered = [r for r in puts if r.mode == "late"]
    in_flight = {(d[0], d[1], int(d[2])) for d in unanswered[0].datums}
    stored = Counter((d[0], d[1], int(d[2])) for r in proxy.stored() for d in r.datums)
    attempted = {(d[0], d[1], int(d[2])) for r in puts for d in r.datums}
    generated = watcher.keys() | attempted
    left = {(d.name, d.dims, int(d.timestamp)) for seg in spool.glob("*.seg") for d in decode(seg.read_bytes())}
    lost = generated - set(stored) - left
    duplicates = sum(stored.values()) - len(stored)
    dup_keys = {k for k, n in stored.items() if n > 1}
    in_moto = moto_sample_count(moto_url, start, time.time() + 120)
    print(
        f"\ngenerated {len(generated)} datums ({len(watcher.keys())} seen spooled, {len(watcher.segments)} segments); "
        f"stored {sum(stored.values())} (moto's SampleCount: {in_moto}); lost {len(lost)}; still spooled {len(left)}; "
        f"duplicates {duplicates} (request in flight when it went dark: {len(in_flight)} datums); "
        f"PutMetricData requests {len(puts)} ({len(unanswered)} into the dark, {sent_after_restart} of them "
        f"after the restart), probes {probes(proxy)}; "
        f"agent 1 before the outage {counters_first}, agent 2 at the end {counters_second}"
    )
    assert in_moto == sum(stored.values())  # the proxy's view is moto's
    assert not lost
    # one request went into the dark, once: no botocore retry, then probes
    # only, and the restarted agent asked before sending its backlog
    assert len(unanswered) == 1 and sent_after_restart == 0
    assert dup_keys <= in_flight and max(stored.values()) <= 2
    assert duplicates <= len(in_flight)
