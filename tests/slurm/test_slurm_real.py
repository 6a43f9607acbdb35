"""The Slurm collectors against a real Slurm 22.05 on this machine (Debian
slurm-wlm + munge): exact node, CPU, GPU and job counts for the scripted
scenario (scenario.py), hostile job fields, power states produced for real
(cloud nodes powered down at start, one powering up for a job, a node powered
down with `scontrol update state=power_down`), a node that stops responding,
slurmctld killed while the agent runs.

Power states produced for real by a local 22.05 and tested live here: idle~
(cloud nodes, and a node powered down by scontrol), mixed# (a cloud node
powering up for a job), idle! and idle% (on the way down). Not-responding
nodes (idle* then down*, a killed slurmd) are real too but take ~30 s to
appear even with SlurmdTimeout=6, so they are tested from outputs captured
from that cluster (tests/fixtures/slurm/22.05/sinfo_no_response_*). Not
produced locally, tested from sinfo's state strings only
(test_slurm_parsers.test_classify_state): idle# without a job, drained*, and
the maintenance and reboot suffixes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import scenario
import structlog
from localslurm import LocalSlurm
from slurm_helpers import make_collector, make_collectors, samples

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.health import SlurmHealthCollector
from nodeagent.collectors.slurm.labels import bounded
from nodeagent.collectors.slurm.poller import SlurmUnavailable
from nodeagent.collectors.slurm.scontrol import ScontrolCollector
from nodeagent.collectors.slurm.sdiag import SdiagCollector
from nodeagent.collectors.slurm.sinfo import SinfoCollector
from nodeagent.collectors.slurm.squeue import SqueueCollector
from nodeagent.collectors.slurm.sshare import SshareCollector
from nodeagent.exposition import render

pytestmark = pytest.mark.slurm


def conf(cluster: LocalSlurm) -> dict[str, str]:
    return {"slurm_conf": str(cluster.conf)}


@pytest.mark.parametrize("naming", ["sckyzo", "vpenso"])
def test_scenario_exact_counts(slurm_scenario: tuple[LocalSlurm, dict[str, int]], naming: str) -> None:
    cluster, _ = slurm_scenario
    sinfo = make_collector(SinfoCollector, naming=naming, **conf(cluster))
    squeue = make_collector(SqueueCollector, naming=naming, **conf(cluster))
    try:
        scenario.check_nodes(samples(sinfo.collect()), naming)
        s = samples(squeue.collect())
        scenario.check_queue(s, naming)
        assert "slurm_user_jobs_pending" not in s and "slurm_account_jobs_pending" not in s
    finally:
        sinfo.close()
        squeue.close()


def test_hostile_jobs_per_user_and_account(slurm_scenario: tuple[LocalSlurm, dict[str, int]]) -> None:
    """Jobs named and commented with the delimiter, newlines, quotes, braces,
    non-ASCII and 1 KB of text, with such accounts too, in a partition named
    `we|rd`: the counts are exact and each account is its own label."""
    cluster, _ = slurm_scenario
    c = make_collector(SqueueCollector, per_user=True, per_account=True, **conf(cluster))
    try:
        s = samples(c.collect())
        scenario.check_queue(s)
        scenario.check_owners(s)
        text = render(c.collect()).decode()
        assert 'slurm_account_jobs_pending{account="acc|one"} 1' in text
        assert 'slurm_account_jobs_pending{account="\\"q\\"{b}"} 1' in text
        assert "line1" not in text and "x|y" not in text  # names and comments never read
    finally:
        c.close()


def test_label_cap_real(slurm_scenario: tuple[LocalSlurm, dict[str, int]]) -> None:
    cluster, _ = slurm_scenario
    c = make_collector(SqueueCollector, per_account=True, max_label_values=3, **conf(cluster))
    try:
        s = samples(c.collect())
        # 23 jobs without an account, 1 per hostile account: (none) and the two
        # first hostile names in sort order keep their label, 3 fold into (other)
        assert set(s["slurm_account_jobs_pending"]) == {("(none)",), ('"q"{b}',), ("acc?nl",), ("(other)",)}
        assert s["slurm_account_jobs_pending"][("(other)",)] == 3
        assert s["nodeagent_slurm_label_overflow"][("account",)] == 3
        assert sum(s["slurm_account_jobs_pending"].values()) == scenario.EXPECTED_QUEUE["slurm_queue_pending"]
    finally:
        c.close()


def test_sdiag_and_sshare_real(slurm_scenario: tuple[LocalSlurm, dict[str, int]]) -> None:
    cluster, ids = slurm_scenario
    sdiag = make_collector(SdiagCollector, **conf(cluster))
    sshare = make_collector(SshareCollector, **conf(cluster))
    try:
        s = samples(sdiag.collect())
        assert s["slurm_scheduler_threads"][()] >= 1
        assert s["slurm_scheduler_jobs_submitted"][()] >= len(ids)
        assert s["slurm_rpc_stats"][("REQUEST_SUBMIT_BATCH_JOB",)] >= len(ids)
        # no accounting database here: nothing to report, and no failure
        names = {f.name for f in sshare.collect()}
        assert not any(n.startswith(("slurm_account_fairshare", "slurm_user_fairshare")) for n in names)
    finally:
        sdiag.close()
        sshare.close()


@pytest.mark.parametrize("naming", ["sckyzo", "vpenso"])
def test_every_family_is_in_the_catalogue(slurm_scenario: tuple[LocalSlurm, dict[str, int]], naming: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    cluster, _ = slurm_scenario
    classes = (SinfoCollector, SqueueCollector, SdiagCollector, SshareCollector, ScontrolCollector,
               SlurmHealthCollector)  # fmt: skip
    collectors = make_collectors(classes, per_user=True, per_account=True, naming=naming,
                                 slurm_conf=str(cluster.conf))  # fmt: skip
    try:
        families = [f for c in collectors for f in c.collect()]
    finally:
        for c in collectors:
            c.close()
    for fam in families:
        spec = CATALOGUE.lookup(fam.name)
        assert spec is not None, fam.name
        labels = cat.VPENSO_LABELS.get(fam.name, spec.labels) if naming == "vpenso" else spec.labels
        assert (spec.type, labels, spec.group) == (fam.type, fam.labelnames, "slurm"), fam.name
        assert naming == "sckyzo" or fam.name not in cat.SCKYZO_ONLY, fam.name
    from nodeagent.model import merge_families

    text = render(merge_families(families)).decode()
    parsed = {f.name for f in text_string_to_metric_families(text)}
    assert "slurm_nodes_powered_down" in parsed and "slurm_queue_pending_reason" in parsed


def _sample(collector: SinfoCollector) -> dict[str, float]:
    collector.run_once()
    return {name: v.get((), 0.0) for name, v in samples(collector.collect()).items()}


def test_power_down_for_real(mini_cluster: LocalSlurm) -> None:
    """node3 powered down with scontrol: idle! -> idle% -> idle~ (its slurmd
    stopped by the suspend program). Sampled all along: never counted idle,
    never down, and the states always add up to the 3 nodes. Its 8 idle CPUs
    and 4 GPUs stay idle as sinfo %C counts them (slurm.powered_down_idle:
    idle, the default), count as other with `other`, and never as usable."""
    cluster = mini_cluster
    c = make_collector(SinfoCollector, **conf(cluster))
    other = make_collector(SinfoCollector, powered_down_idle="other", **conf(cluster))
    try:
        assert _sample(c)["slurm_cluster_nodes_idle"] == 3
        cluster.scontrol("update", "nodename=node3", "state=power_down")
        seen: list[tuple[float, float]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            s, o = _sample(c), _sample(other)
            assert sum(s[n] for n in scenario.NODE_STATE_FAMILIES) == 3
            assert s["slurm_cluster_nodes_idle"] == 2 and s["slurm_cluster_nodes_down"] == 0
            assert s["slurm_cpus_idle_usable"] == 16 and s["slurm_gpus_idle_usable"] == 8
            step = (s["slurm_cluster_nodes_powering_down"], s["slurm_cluster_nodes_powered_down"])
            assert step in ((1, 0), (0, 1))
            sinfo_idle = sum(int(cpus.split("/")[1]) for cpus in _sinfo_cpus(cluster).values())
            if (o["slurm_cluster_nodes_powering_down"], o["slurm_cluster_nodes_powered_down"]) == step:
                # both sampled in the same step: the two settings differ by node3 alone
                assert (s["slurm_cpus_idle"], s["slurm_cpus_other"]) == (24, 0)
                assert (o["slurm_cpus_idle"], o["slurm_cpus_other"]) == (16, 8)
                assert (s["slurm_gpus_idle"], o["slurm_gpus_idle"], o["slurm_gpus_other"]) == (12, 8, 4)
            assert sinfo_idle == 24  # what sinfo %C says, all along
            if not seen or seen[-1] != step:
                seen.append(step)
            if step == (0, 1):
                break
            time.sleep(0.05)
        assert seen == [(1, 0), (0, 1)], seen
        # CloudWatch's CpusIdle / GpusIdle come from the usable counts
        assert cat.CPUS_IDLE_USABLE.cloudwatch and cat.CPUS_IDLE_USABLE.cloudwatch.name == "CpusIdle"
        assert cat.GPUS_IDLE_USABLE.cloudwatch and cat.GPUS_IDLE_USABLE.cloudwatch.name == "GpusIdle"
        assert cat.CPUS_IDLE.cloudwatch is None and cat.GPUS_IDLE.cloudwatch is None
    finally:
        c.close()
        other.close()


def _sinfo_cpus(cluster: LocalSlurm) -> dict[str, str]:
    out = cluster.run("sinfo", "-h", "-N", "-o", "%N %C").stdout
    return dict(line.split() for line in out.splitlines())


def test_slurmctld_killed_mid_run(mini_cluster: LocalSlurm) -> None:
    cluster = mini_cluster
    collectors = [make_collector(cls, command_timeout=1.5, serve_stale=0, **conf(cluster))
                  for cls in (SinfoCollector, SqueueCollector, SdiagCollector)]  # fmt: skip

    def run_all() -> None:  # one collection of each, side by side as in the agent
        with ThreadPoolExecutor(len(collectors)) as pool:
            list(pool.map(lambda c: c.run_once(), collectors))

    try:
        run_all()
        for c in collectors:
            c.collect()
        cluster.kill("slurmctld")
        with structlog.testing.capture_logs() as logs:
            for _ in range(2):
                started = time.monotonic()
                run_all()
                assert time.monotonic() - started < 2.5  # killed at the timeout at the latest
                for c in collectors:
                    with pytest.raises(SlurmUnavailable):
                        c.collect()
        failed = [e for e in logs if e["event"] == "slurm_collection_failed"]
        assert sorted(e["collector"] for e in failed) == ["sdiag", "sinfo", "squeue"]  # once each
        cluster.start_slurmctld()
        with structlog.testing.capture_logs() as logs:
            run_all()
            for c in collectors:
                assert c.collect()
        assert sorted(e["collector"] for e in logs if e["event"] == "slurm_collection_recovered") == [
            "sdiag", "sinfo", "squeue",
        ]  # fmt: skip
    finally:
        for c in collectors:
            c.close()


def _scrape(url: str) -> tuple[dict[str, float], float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    elapsed = time.monotonic() - started
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values, elapsed


def test_agent_keeps_serving_when_slurmctld_dies(mini_cluster: LocalSlurm, tmp_path: Path) -> None:
    """The real daemon in the head role: slurmctld killed, the Slurm
    collectors report success 0 within an interval, scrapes stay fast, the
    host exporter is untouched; slurmctld back, success 1 again."""
    cluster = mini_cluster
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "role: head\n"
        "exporters:\n  host: {listen: '127.0.0.1:16898'}\n  slurm: {listen: '127.0.0.1:16899'}\n"
        "cloudwatch: {enabled: false}\n"
        f"slurm: {{bin_dir: /usr/bin, slurm_conf: '{cluster.conf}', interval: 0.5, command_timeout: 2}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodeagent", "--config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    url = "http://127.0.0.1:16899/metrics"

    def wait_for(key: str, want: float, timeout: float = 15.0) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                values, elapsed = _scrape(url)
            except OSError:
                time.sleep(0.1)
                continue
            assert elapsed < 1.0, f"scrape took {elapsed:.2f}s"
            if values.get(key) == want:
                return values
            time.sleep(0.1)
        raise AssertionError(f"{key} never became {want}")

    try:
        values = wait_for('nodeagent_collector_success{collector="sinfo"}', 1.0)
        values = wait_for("slurm_nodes_total", 3.0)
        assert values["slurm_cluster_nodes_idle"] == 3
        assert values['nodeagent_slurm_up{command="sinfo"}'] == 1
        cluster.kill("slurmctld")
        for name in COMMANDS:
            wait_for(f'nodeagent_collector_success{{collector="{name}"}}', 0.0)
        values = _scrape(url)[0]
        assert "slurm_nodes_total" not in values  # stale numbers withdrawn after serve_stale (1 s here)
        for name in COMMANDS:  # Slurm's health stays served, and says so
            assert values[f'nodeagent_slurm_up{{command="{name}"}}'] == 0
            assert values[f'nodeagent_slurm_poll_failures_total{{command="{name}"}}'] >= 1
            assert values[f'nodeagent_slurm_data_age_seconds{{command="{name}"}}'] > 1.0
        host, _ = _scrape("http://127.0.0.1:16898/metrics")
        assert host['node_scrape_collector_success{collector="loadavg"}'] == 1.0
        cluster.start_slurmctld()
        for name in COMMANDS:
            wait_for(f'nodeagent_collector_success{{collector="{name}"}}', 1.0)
        values = _scrape(url)[0]
        assert values["slurm_nodes_total"] == 3
        assert values['nodeagent_slurm_up{command="sinfo"}'] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out[-2000:]
    # the failure is logged once per collector, not once per interval
    assert out.count("slurm_collection_failed") == len(COMMANDS), out[-3000:]


COMMANDS = ("sinfo", "squeue", "sdiag", "sshare", "scontrol")


def test_last_good_values_served_then_withdrawn(mini_cluster: LocalSlurm) -> None:
    """slurmctld killed: the last good values are served for serve_stale
    seconds after the first failed poll, then withdrawn; the health
    collector says up 0, counts the failed polls and the data's age."""
    cluster = mini_cluster
    sinfo, health = make_collectors((SinfoCollector, SlurmHealthCollector), command_timeout=1.5,
                                    serve_stale=2.0, slurm_conf=str(cluster.conf))  # fmt: skip
    try:
        sinfo.run_once()
        before = samples(sinfo.collect())
        h = samples(health.collect())
        assert h["nodeagent_slurm_up"] == {("sinfo",): 1} and h["nodeagent_slurm_poll_failures_total"][("sinfo",)] == 0
        assert h["slurm_exporter_collector_success"] == {("sinfo",): 1}
        cluster.kill("slurmctld")
        sinfo.run_once()
        failed_at = time.monotonic()
        assert samples(sinfo.collect()) == before  # served as they were
        h = samples(health.collect())
        assert h["nodeagent_slurm_up"] == {("sinfo",): 0}
        assert h["nodeagent_slurm_poll_failures_total"] == {("sinfo",): 1}
        assert h["slurm_exporter_command_errors_total"] == {("sinfo",): 1}
        sinfo.run_once()
        assert samples(health.collect())["nodeagent_slurm_poll_failures_total"] == {("sinfo",): 2}
        time.sleep(max(2.1 - (time.monotonic() - failed_at), 0))
        with pytest.raises(SlurmUnavailable):
            sinfo.collect()
        h = samples(health.collect())
        assert h["nodeagent_slurm_up"] == {("sinfo",): 0}
        assert h["nodeagent_slurm_data_age_seconds"][("sinfo",)] > 2.0
        cluster.start_slurmctld()
        sinfo.run_once()
        assert samples(sinfo.collect())["slurm_nodes_total"] == {(): 3}
        assert samples(health.collect())["nodeagent_slurm_up"] == {("sinfo",): 1}
    finally:
        sinfo.close()
        health.close()


def test_long_accounts_never_merge_for_real(mini_cluster: LocalSlurm) -> None:
    """Held jobs under two 60-byte accounts sharing their first 52 bytes and
    two 60-byte multi-byte accounts (no accounting here: sbatch takes any
    account): each its own series, a label of at most 48 bytes cut on a
    character boundary with a hash of the whole account."""
    cluster = mini_cluster
    accounts = ["proj-" + "x" * 47 + "-alpha-1", "proj-" + "x" * 47 + "-beta-22", "ü" * 30, "ü" * 29 + "ö"]
    for account in accounts:
        cluster.sbatch("--hold", f"--account={account}")
        cluster.sbatch("--hold", f"--account={account}")
    c = make_collector(SqueueCollector, per_account=True, **conf(cluster))
    try:
        s = samples(c.collect())
    finally:
        c.close()
    pending = s["slurm_account_jobs_pending"]
    assert pending == {(bounded(a),): 2 for a in accounts}
    for (label,) in pending:
        assert len(label.encode()) <= 48 and "\ufffd" not in label and "~" in label
