"""Every query of the shipped Grafana dashboards returns data through a real
Prometheus (Debian's package) scraping real nodeagent processes:

* compute role on the p5 fixture tree with the fake GPU backend (a small
  description written here: one busy GPU, one idle GPU that belongs to a
  job, one that falls off the bus after an XID), Slurm jobs mapped to GPUs
  with dcgm-exporter's job-mapping directory;
* head role against a local Slurm 22.05 cluster (one node, a running GPU job
  and a held one, so there are pending reasons).

Ports: Prometheus and the agents' exporters 19290-19299, Slurm 15290-15292.
Grafana template variables are substituted the way Grafana would with "All"
selected; `$__rate_interval` becomes 10s (Prometheus scrapes every second here).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nodeagent.catalogue import CATALOGUE
from nodeagent.publish import grafana

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "p5"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PORTS = iter(range(19290, 19300))
SLURM_BASE_PORT = 15290
RATE_INTERVAL = "10s"
JOB_BUSY, JOB_IDLE = "4241", "4242"

sys.path.insert(0, str(ROOT / "tests" / "slurm"))
from localslurm import LocalSlurm, slurm_available  # noqa: E402

FAKE_GPUS = """\
name: publish-test-3xh100
instance_type: p5.48xlarge
profiling: gpm
models:
  h100:
    name: NVIDIA H100 80GB HBM3
    memory_mib: 81559
    reserved_mib: 531
    gpm: true
    fields:
      DCGM_FI_DEV_SM_CLOCK: 1980
      DCGM_FI_DEV_MEM_CLOCK: 2619
      DCGM_FI_DEV_GPU_TEMP: {min: 40, max: 60}
      DCGM_FI_DEV_POWER_USAGE: {min: 200, max: 600}
      DCGM_FI_DEV_GPU_UTIL: 0
      DCGM_FI_PROF_PIPE_TENSOR_ACTIVE: {min: 0.1, max: 0.7}
gpus:
  - {model: h100, fields: {DCGM_FI_DEV_GPU_UTIL: 93}}
  - {model: h100}
  - {model: h100}
events:
  - {at: 0.5, gpu: 0, xid: 94}
  - {at: 0.5, gpu: 2, xid: 79}
  - {at: 1.0, gpu: 2, lost: true}
"""


class PatchedSlurm(LocalSlurm):
    """LocalSlurm with its slurmd ports moved next to slurmctld's (our port range)."""

    def write_config(self) -> None:
        super().write_config()
        lo, hi = self.base_port + 101, self.base_port + 100 + self.node_count
        text = self.conf.read_text()
        self.conf.write_text(text.replace(f"Port=[{lo}-{hi}]", f"Port=[{self.base_port + 2}-"
                                                                  f"{self.base_port + 1 + self.node_count}]"))


@dataclass
class Stack:
    prometheus: str
    slurm: str | None  # why the head role is missing, or None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def label_values(self, metric: str, label: str) -> list[str]:
        url = f"{self.prometheus}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric})
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)["data"]  # type: ignore[no-any-return]


def _agent(config: Path, role: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "nodeagent", "--role", role, "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


COMMON = "cloudwatch:\n  enabled: false\nlog:\n  format: json\n"


def _fixture_paths(rootfs: Path) -> str:
    return (f"paths:\n  procfs: {FIXTURE / 'proc'}\n  sysfs: {FIXTURE / 'sys'}\n  rootfs: {rootfs}\n"
            f"  debugfs: {FIXTURE / 'debug'}\n  textfile_dir: {FIXTURE / 'textfile'}\n")


def _wait(what: str, cond: Any, timeout: float, procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if cond():
                return
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited with {p.returncode} while waiting for {what}; logs in {logs}")
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for {what}; logs in {logs}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip("prometheus not installed (Debian package prometheus)")
    base = Path(tempfile.mkdtemp(prefix="nodeagent-publish-"))
    base.chmod(0o755)
    slurm: LocalSlurm | None = None
    why_no_slurm = slurm_available()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if why_no_slurm is None:
            slurm = PatchedSlurm(base / "slurm", base_port=SLURM_BASE_PORT, cluster="pub", node_count=1, gpus=2,
                                 partitions=("gpu Nodes=node1 Default=YES MaxTime=INFINITE State=UP",))
            slurm.start()
            slurm.sbatch("--gres=gpu:1", "-c", "1")  # running
            slurm.sbatch("--hold")  # pending, reason JobHeldUser

        # compute role: host collectors on the p5 fixture tree (its rootfs copied, to hold
        # the job-mapping directory, which the agent reads under rootfs), fake GPUs
        (base / "fake-gpus.yaml").write_text(FAKE_GPUS)
        rootfs = base / "rootfs"
        shutil.copytree(FIXTURE / "root", rootfs, symlinks=True)
        jobs = rootfs / "run" / "nodeagent-jobs"
        jobs.mkdir(parents=True)
        (jobs / "0").write_text(f"{JOB_BUSY}\n")
        (jobs / "1").write_text(f"{JOB_IDLE}\n")
        ports = {name: next(PORTS) for name in ("prometheus", "c_host", "c_gpu", "h_host", "h_slurm")}
        compute = base / "compute.yaml"
        compute.write_text(
            _fixture_paths(rootfs) + COMMON
            + f"exporters:\n  host: {{listen: '127.0.0.1:{ports['c_host']}'}}\n"
            f"  gpu: {{listen: '127.0.0.1:{ports['c_gpu']}'}}\n"
            f"gpu:\n  backend: fake\n  fake_description: {base / 'fake-gpus.yaml'}\n  interval: 0.5\n"
            "  idle_after: 1\n  expected_gpus: 3\n  hpc_job_mapping_dir: /run/nodeagent-jobs\n"
            "  job_attribution: false\n"
        )
        procs.append(_agent(compute, "compute", base / "compute.log"))
        targets = {"node": [ports["c_host"]], "gpu": [ports["c_gpu"]], "slurm": []}
        if slurm is not None:
            head = base / "head.yaml"
            # head role: this machine's own /proc and /sys, and the local Slurm
            head.write_text(
                COMMON + f"paths:\n  textfile_dir: {base / 'textfile'}\n"
                + f"exporters:\n  host: {{listen: '127.0.0.1:{ports['h_host']}'}}\n"
                f"  slurm: {{listen: '127.0.0.1:{ports['h_slurm']}'}}\n"
                f"slurm:\n  bin_dir: /usr/bin\n  slurm_conf: {slurm.conf}\n  interval: 1\n"
            )
            procs.append(_agent(head, "head", base / "head.log"))
            targets["node"].append(ports["h_host"])
            targets["slurm"].append(ports["h_slurm"])
        scrape = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: [{', '.join(f'127.0.0.1:{p}' for p in ps)}]\n"
            for job, ps in targets.items() if ps
        )
        (base / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n{scrape}"
        )
        with open(base / "prometheus.log", "wb") as out:
            procs.append(subprocess.Popen(
                [PROMETHEUS, f"--config.file={base / 'prometheus.yml'}",
                 f"--web.listen-address=127.0.0.1:{ports['prometheus']}", f"--storage.tsdb.path={base / 'tsdb'}"],
                stdout=out, stderr=subprocess.STDOUT))
        st = Stack(f"http://127.0.0.1:{ports['prometheus']}", why_no_slurm, procs)
        n_targets = sum(len(v) for v in targets.values())
        # every target up, and enough scrapes for rate() over the substituted interval
        _wait("all targets up", lambda: len([r for r in st.query("up == 1")]) == n_targets, 30, procs, base)
        _wait("a few scrapes", lambda: all(float(r["value"][1]) >= 5 for r in st.query("count_over_time(up[1m])")),
              30, procs, base)
        yield st
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if slurm is not None:
            slurm.stop()
        shutil.rmtree(base, ignore_errors=True)


def substitute(expr: str, job: str = ".*") -> str:
    return (expr.replace("$__rate_interval", RATE_INTERVAL).replace("$node", ".*").replace("$job", job)
            .replace("$partition", ".*"))


def needs_slurm(expr: str) -> bool:
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return any((spec := CATALOGUE.lookup(n)) is not None and spec.group == "slurm" for n in names)


def dashboard_queries(name: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    body = json.loads((ROOT / "config" / "grafana" / name).read_text())
    panels = [(p["title"], t["expr"]) for p in body["panels"] for t in p.get("targets", [])]
    variables = [(v["name"], v["definition"]) for v in body["templating"]["list"] if v["type"] == "query"]
    return panels, variables


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(grafana.DASHBOARDS))
def test_every_dashboard_query_returns_a_series(stack: Stack, name: str) -> None:
    panels, variables = dashboard_queries(name)
    empty, left_out = [], []
    for title, expr in panels:
        if stack.slurm and needs_slurm(expr):
            left_out.append(title)
            continue
        if not stack.query(substitute(expr)):
            empty.append(f"{title}: {expr}")
    for var, definition in variables:
        m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", definition)
        assert m, definition
        if stack.slurm and needs_slurm(m.group(1)):
            left_out.append(f"variable {var}")
            continue
        if not stack.label_values(m.group(1), m.group(2)):
            empty.append(f"variable {var}: {definition}")
    assert not empty, "queries without a series:\n" + "\n".join(empty)
    if left_out:
        pytest.skip(f"no local Slurm ({stack.slurm}): not checked: {', '.join(left_out)}")


@pytest.mark.slow
def test_gpu_dashboard_filters_by_slurm_job(stack: Stack) -> None:
    panels, _ = dashboard_queries("nodeagent-gpu-nodes.json")
    util = next(expr for title, expr in panels if title == "GPU utilisation")
    series = stack.query(substitute(util, job=JOB_BUSY))
    assert series and {s["metric"]["hpc_job"] for s in series} == {JOB_BUSY}
    assert {s["metric"]["gpu"] for s in series} == {"0"}
    idle = next(expr for title, expr in panels if title == "GPUs allocated to a job but idle")
    flagged = {s["metric"]["hpc_job"] for s in stack.query(substitute(idle)) if float(s["value"][1]) == 1}
    assert flagged == {JOB_IDLE}
    xid = next(expr for title, expr in panels if title == "XID errors (last hour)")
    codes = {(s["metric"]["xid"], s["metric"]["action"]) for s in stack.query(substitute(xid))}
    assert {("94", "app"), ("79", "node")} <= codes
