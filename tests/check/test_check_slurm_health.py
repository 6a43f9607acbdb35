"""`nodeagent check --slurm-health` against a real local Slurm 22.05: it
drains the node on a node-fatal finding with a reason starting `nodeagent:`,
never touches a drain someone else set, and clears its own drain once the
node is healthy; and slurmd itself running it as HealthCheckProgram."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from check_helpers import CHECK_FIXTURES, CheckSlurm, make_config, p5_paths, report, rows, run_cli

from nodeagent.check import run_checks
from nodeagent.checks.options import CheckOptions
from nodeagent.checks.slurm_health import NodeState, decide, drain_reason, parse_show_node

XID79 = CHECK_FIXTURES / "dev-xid79"
NO_DRIVER = CHECK_FIXTURES / "proc-no-driver"


def _config(tmp_path: Path, cluster: CheckSlurm, **paths: Path) -> Path:
    _, path = make_config(tmp_path, role="compute", paths=p5_paths(**paths),
                          slurm={"bin_dir": "/usr/bin", "slurm_conf": str(cluster.conf)})
    return path


def _health(tmp_path, cluster, monkeypatch, options=None, **paths):  # type: ignore[no-untyped-def]
    from nodeagent.config import load_config

    monkeypatch.setenv("SLURMD_NODENAME", "node1")
    cfg = load_config(str(_config(tmp_path, cluster, **paths)))
    return {r.check: r for r in run_checks(cfg, "compute", options or CheckOptions(slurm_health=True))}


@pytest.mark.slurm
def test_drains_on_xid79_and_resumes_when_healthy(slurm_node, tmp_path, monkeypatch):
    result = _health(tmp_path, slurm_node, monkeypatch, dev=XID79)
    assert list(result) == ["gpu count", "gpu driver", "gpu xid", "efa devices", "lustre", "slurm node node1"]
    node = result["slurm node node1"]
    assert node.status == "fail" and node.fatal and "drained: nodeagent: XID 79" in node.detail
    state, reason = slurm_node.node()
    assert "DRAIN" in state.split("+")
    assert reason == "nodeagent: XID 79 GPU has fallen off the bus on 0000:53:00"

    # a second run with the same finding changes nothing
    again = _health(tmp_path, slurm_node, monkeypatch, dev=XID79)["slurm node node1"]
    assert "already drained" in again.detail and slurm_node.node()[1] == reason

    # more faults: the reason follows the findings (without the driver, and with no
    # NVIDIA device in the fixture's PCI bus, no GPU is seen at all)
    both = _health(tmp_path, slurm_node, monkeypatch, dev=XID79, procfs=NO_DRIVER)["slurm node node1"]
    assert both.status == "fail"
    assert slurm_node.node()[1] == ("nodeagent: 0 of 8 GPUs; NVIDIA driver not loaded; "
                                    "XID 79 GPU has fallen off the bus on 0000:53:00")

    healthy = _health(tmp_path, slurm_node, monkeypatch)["slurm node node1"]
    assert healthy.status == "ok" and healthy.ok and "resumed" in healthy.detail
    state, reason = slurm_node.node()
    assert "DRAIN" not in state.split("+") and reason == ""


@pytest.mark.slurm
def test_never_clears_or_overwrites_an_admin_drain(slurm_node, tmp_path, monkeypatch):
    slurm_node.scontrol("update", "NodeName=node1", "State=DRAIN", "Reason=disk replacement (ticket 42)")
    healthy = _health(tmp_path, slurm_node, monkeypatch)["slurm node node1"]
    assert healthy.status == "warn" and "drained by someone else" in healthy.detail
    assert slurm_node.node()[1] == "disk replacement (ticket 42)"
    sick = _health(tmp_path, slurm_node, monkeypatch, dev=XID79)["slurm node node1"]
    assert sick.status == "fail" and "not drained by nodeagent" in sick.detail
    state, reason = slurm_node.node()
    assert "DRAIN" in state.split("+") and reason == "disk replacement (ticket 42)"


@pytest.mark.slurm
def test_dry_run_changes_nothing(slurm_node, tmp_path, monkeypatch):
    row = _health(tmp_path, slurm_node, monkeypatch, CheckOptions(slurm_health=True, dry_run=True), dev=XID79)
    assert "would drain (dry run): nodeagent: XID 79" in row["slurm node node1"].detail
    assert "DRAIN" not in slurm_node.node()[0]


@pytest.mark.slurm
def test_cli_exit_codes_and_json(slurm_node, tmp_path):
    path = _config(tmp_path, slurm_node, dev=XID79)
    env = {"SLURMD_NODENAME": "node1"}
    proc = run_cli("check", "--slurm-health", "--config", str(path), "--json", env=env)
    assert proc.returncode == 1, proc.stderr
    data = report(proc)
    assert data["mode"] == "slurm-health" and data["healthy"] is False
    assert rows(data)["gpu xid"]["fatal"] is True
    assert slurm_node.node()[1].startswith("nodeagent: XID 79")
    path = _config(tmp_path, slurm_node)
    proc = run_cli("check", "--slurm-health", "--config", str(path), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed: healthy again" in proc.stdout
    assert "DRAIN" not in slurm_node.node()[0]
    # an unknown node is a failure, not a crash
    proc = run_cli("check", "--slurm-health", "--config", str(path), "--node", "nosuch", env=env)
    assert proc.returncode == 1 and "cannot read the node's state" in proc.stdout and "Traceback" not in proc.stderr


def test_parse_show_node_and_decisions():
    line = (
        "NodeName=node1 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 NodeAddr=127.0.0.1 NodeHostName=ip-10-0-0-7 "
        "Port=17150 Version=22.05.8 OS=Linux 6.1 #1 SMP PREEMPT_DYNAMIC State=IDLE+DRAIN ThreadsPerCore=1 "
        "Partitions=p ExtSensorsTemp=n/s Reason=nodeagent: 7 of 8 GPUs [root@2026-11-29T10:18:47]\n"
        "NodeName=node2 Arch=x86_64 State=MIXED ThreadsPerCore=1\n"
    )
    n1, n2 = parse_show_node(line)
    assert (n1.name, n1.state, n1.reason, n1.hostname) == ("node1", "IDLE+DRAIN", "nodeagent: 7 of 8 GPUs",
                                                           "ip-10-0-0-7")
    assert n1.drained and n1.ours and not n2.drained and n2.reason == ""
    idle = NodeState("n", "IDLE", "")
    assert decide(idle, ["x"]).action == "drain"
    assert decide(idle, []).action == "none"
    assert decide(NodeState("n", "IDLE+DRAIN", drain_reason(["x"])), ["x"]).action == "none"
    assert decide(NodeState("n", "IDLE+DRAIN", "nodeagent: old"), ["x"]).action == "drain"
    assert decide(NodeState("n", "IDLE+DRAIN", "nodeagent: old"), []).action == "resume"
    assert decide(NodeState("n", "MIXED+DRAIN", "nodeagent: old"), []).action == "resume"  # draining
    assert decide(NodeState("n", "IDLE+DRAIN", "admin"), []).action == "none"
    assert decide(NodeState("n", "DOWN", "Not responding"), ["x"]).action == "none"
    reason = drain_reason(["a" * 300, 'quote " and \x07bell'])
    assert reason.startswith("nodeagent: aaa") and len(reason) == 200 and reason.isprintable()
    assert '"' not in drain_reason(['say "hi"'])


def test_node_name_from_hostname(monkeypatch):
    from nodeagent.checks.slurm_health import resolve_node
    from nodeagent.host import Host

    class _Scontrol:
        def __init__(self, text: str) -> None:
            self.text = text

        def show(self, node: str | None = None) -> list[NodeState]:
            return parse_show_node(self.text)

    class _Host(Host):
        @staticmethod
        def hostname() -> str:
            return "ip-10-0-0-7.ec2.internal"

    monkeypatch.delenv("SLURMD_NODENAME", raising=False)
    nodes = (
        "NodeName=q-st-p5-1 NodeHostName=ip-10-0-0-7 State=IDLE\n"
        "NodeName=q-st-p5-2 NodeHostName=ip-10-0-0-8 State=IDLE\n"
    )
    assert resolve_node(None, _Host(), _Scontrol(nodes)) == "q-st-p5-1"  # type: ignore[arg-type]
    assert resolve_node("given", _Host(), _Scontrol(nodes)) == "given"  # type: ignore[arg-type]
    monkeypatch.setenv("SLURMD_NODENAME", "from-slurmd")
    assert resolve_node(None, _Host(), _Scontrol(nodes)) == "from-slurmd"  # type: ignore[arg-type]
    monkeypatch.delenv("SLURMD_NODENAME")
    with pytest.raises(LookupError, match="no node with NodeHostname"):
        resolve_node(None, _Host(), _Scontrol(nodes.replace("ip-10-0-0-7", "ip-10-9-9-9")))  # type: ignore[arg-type]


# ---- slurmd runs it -------------------------------------------------------------------------
@pytest.fixture
def hc_cluster(tmp_path_factory) -> CheckSlurm:  # type: ignore[misc]
    from localslurm import slurm_available

    why = slurm_available()
    if why:
        pytest.skip(why)
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="nodeagent-check-hc-"))
    base.chmod(0o755)
    # what an admin installs: HealthCheckProgram takes no arguments, so a wrapper
    wrapper = base / "nodeagent-health"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m nodeagent check --slurm-health "
                       f"--config {base}/nodeagent.yaml >> {base}/health.log 2>&1\n")
    wrapper.chmod(0o755)
    cluster = CheckSlurm(base, base_port=17110, cluster="chkhc", node_count=1,
                         partitions=("p Nodes=node1 Default=YES MaxTime=INFINITE State=UP",),
                         extra=f"HealthCheckProgram={wrapper}\nHealthCheckInterval=1\nHealthCheckNodeState=ANY\n")
    _write_hc_config(cluster)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _write_hc_config(cluster: CheckSlurm, **paths: Path) -> None:
    tmp = cluster.base / "tmp-config"
    tmp.mkdir(exist_ok=True)
    _, path = make_config(tmp, role="compute", paths=p5_paths(**paths),
                          slurm={"bin_dir": "/usr/bin", "slurm_conf": str(cluster.conf)})
    os.replace(path, cluster.base / "nodeagent.yaml")  # atomic: slurmd may be running it right now


def _wait(cond, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


@pytest.mark.slurm
def test_slurmd_runs_it_as_health_check_program(hc_cluster):
    """slurmd starts the wrapper with no arguments and SLURMD_NODENAME set;
    the node drains on XID 79 and comes back once the log is clean."""
    _write_hc_config(hc_cluster, dev=XID79)
    try:
        _wait(lambda: hc_cluster.node()[1].startswith("nodeagent: XID 79"))
    except AssertionError:
        log = hc_cluster.base / "health.log"
        raise AssertionError(log.read_text()[-3000:] if log.exists() else "the health check never ran") from None
    assert "DRAIN" in hc_cluster.node()[0]
    _write_hc_config(hc_cluster)
    _wait(lambda: "DRAIN" not in hc_cluster.node()[0])
    assert hc_cluster.node()[1] == ""
