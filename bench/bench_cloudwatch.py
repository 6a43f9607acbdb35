"""CloudWatch sink benchmark: datums, requests and bytes per flush.

    python bench/bench_cloudwatch.py [--nodes 100] [--partitions 8]

Runs the real sink against a local moto_server, behind the test suite's
recording proxy (tests/cloudwatch/faultproxy.py, which also works around
moto_server's double gunzip), and prints per flush:

* head node of a cluster of NODES nodes and PARTITIONS partitions: every
  Slurm family of the catalogue (cluster-wide and per partition) plus the head
  node's host families (16 CPUs, 5 file systems, 3 network devices), the way
  the daemon hands them over; steady state (the second flush: CPU and network
  need a previous reading);
* one compute node, where the sink is enabled on compute nodes (off by
  default): the per-node summaries of the catalogue mapped for the compute
  role (GPU, I/O, host), and what NODES such nodes send together;
* synthetic loads of 2,500 and 10,000 small datums, and 600 datums of 30
  dimensions x 1 KB, where the 1 MB limit rather than the 1,000 datums governs.

It checks that requests == ceil(datums / 1000) wherever the 1 MB limit
allows, and that no request passes 1,000 datums, 1 MB or 30 dimensions.
Also printed: publish() time (mapping + spool write + fsync) and the spool
segment size of one flush.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cloudwatch"))

from faultproxy import FaultProxy  # noqa: E402

from nodeagent.catalogue import CATALOGUE  # noqa: E402
from nodeagent.catalogue.spec import MetricSpec  # noqa: E402
from nodeagent.host import Host  # noqa: E402
from nodeagent.model import MetricFamily  # noqa: E402
from nodeagent.sinks.cloudwatch import CloudWatchSink  # noqa: E402
from nodeagent.sinks.mapping import CloudWatchMapper, Datum  # noqa: E402
from nodeagent.sinks.settings import CloudWatchSettings  # noqa: E402


def free_port() -> int:
    for port in range(15000, 15100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 15000-15099")


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    beside = Path(sys.executable).parent / "moto_server"
    exe = str(beside) if beside.exists() else shutil.which("moto_server")
    argv = [exe] if exe else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        [*argv, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


# ---- synthetic families ----------------------------------------------------------------
def label_values(label: str, partitions: int) -> list[str]:
    if label == "partition":
        return [f"queue{i}" for i in range(partitions)]
    if label == "reason":
        return ["Resources", "Priority", "JobHeldUser", "BeginTime", "Dependency"]
    return [f"{label}{i}" for i in range(4)]


def spec_family(spec: MetricSpec, partitions: int, value: float) -> MetricFamily:
    fam = spec.family(field="x") if spec.is_pattern else spec.family()
    combos: list[tuple[str, ...]] = [()]
    for label in spec.labels:
        combos = [(*c, v) for c in combos for v in label_values(label, partitions)]
    for i, c in enumerate(combos):
        fam.add(c, value + i)
    return fam


def slurm_families(nodes: int, partitions: int) -> list[MetricFamily]:
    out = []
    for spec in CATALOGUE:
        if spec.group == "slurm" and not spec.is_pattern:
            out.append(spec_family(spec, partitions, float(nodes // partitions)))
    return out


def host_families(t: float) -> list[MetricFamily]:
    cpu = MetricFamily("node_cpu_seconds_total", "cpu", "counter", ("cpu", "mode"))
    for c in range(16):
        for j, mode in enumerate(("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")):
            cpu.add((str(c), mode), t * (0.8 if mode == "idle" else 0.02) + j)
    out = [cpu]
    for name, v in (
        ("node_memory_MemTotal_bytes", 64e9),
        ("node_memory_MemAvailable_bytes", 40e9),
        ("node_memory_MemFree_bytes", 20e9),
    ):
        f = MetricFamily(name, "mem", "gauge")
        f.add((), v)
        out.append(f)
    mounts = [
        ("/dev/nvme0n1p1", "xfs", "/"),
        ("/dev/nvme1n1", "ext4", "/shared"),
        ("tmpfs", "tmpfs", "/run"),
        ("fsx@tcp:/x", "lustre", "/fsx"),
        ("/dev/nvme0n1p128", "vfat", "/boot/efi"),
    ]
    for name, v in (
        ("node_filesystem_size_bytes", 200e9),
        ("node_filesystem_free_bytes", 120e9),
        ("node_filesystem_avail_bytes", 110e9),
    ):
        f = MetricFamily(name, "fs", "gauge", ("device", "fstype", "mountpoint"))
        for m in mounts:
            f.add(m, v)
        out.append(f)
    for name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total"):
        f = MetricFamily(name, "net", "counter", ("device",))
        for dev in ("lo", "eth0", "efa0"):
            f.add((dev,), t * 1e6)
        out.append(f)
    return out


def compute_summary_families(role: str = "compute") -> list[MetricFamily]:
    """One sample of every per-node summary the catalogue maps for `role`."""
    out = []
    for spec in CATALOGUE:
        cw = spec.cloudwatch
        if cw is None or role not in cw.roles or not {"role", "instance_id"} <= set(spec.labels):
            continue
        fam = spec.family()
        extra = [label_values(label, 1)[0] for label in spec.labels if label not in ("role", "instance_id")]
        fam.add((role, "i-0123456789abcdef0", *extra), 42.0)
        out.append(fam)
    return out


# ---- measuring ------------------------------------------------------------------------------
class Run:
    def __init__(self, proxy: FaultProxy, workdir: Path) -> None:
        self.proxy = proxy
        self.workdir = workdir
        self.n = 0

    def sink(self, role: str, **overrides: Any) -> CloudWatchSink:
        self.n += 1
        base = CloudWatchSettings(
            cluster_name="bench",
            region="us-east-1",
            endpoint_url=self.proxy.url,
            spool_dir=str(self.workdir / f"spool{self.n}"),
            imds=False,
            max_attempts=2,
            retry_max_delay=0.2,
        )
        settings = replace(base, **overrides)
        return CloudWatchSink(
            settings,
            role,
            host=Host(),
            spool_dir=settings.spool_dir or "",
            cfnconfig_path=str(self.workdir / "absent"),
            hostname="bench-host",
        )

    def flush(self, sink: CloudWatchSink, families: list[MetricFamily], ts: float) -> dict[str, Any]:
        before = len(self.proxy.put_records())
        t = time.perf_counter()
        sink.publish(families, ts)
        publish_ms = (time.perf_counter() - t) * 1000
        spool_bytes = sink.spool.size_bytes
        sink.flush(30)
        assert sink.spool.datums == 0, "flush left datums in the spool"
        recs = self.proxy.put_records()[before:]
        return summarize(recs, publish_ms, spool_bytes)


def summarize(recs: list[Any], publish_ms: float = 0.0, spool_bytes: int = 0) -> dict[str, Any]:
    datums = sum(len(r.datums) for r in recs)
    return {
        "datums": datums,
        "requests": len(recs),
        "raw": sum(r.raw_bytes for r in recs),
        "wire": sum(r.wire_bytes for r in recs),
        "max_raw": max((r.raw_bytes for r in recs), default=0),
        "max_datums": max((len(r.datums) for r in recs), default=0),
        "max_dims": max((r.max_dimensions for r in recs), default=0),
        "gzip": sum(r.gzip for r in recs),
        "publish_ms": publish_ms,
        "spool_bytes": spool_bytes,
        "ok": all(r.status == 200 for r in recs),
    }


def check(label: str, r: dict[str, Any], size_bound: bool = False) -> list[str]:
    problems = []
    if r["max_datums"] > 1000:
        problems.append(f"{label}: a request with {r['max_datums']} datums")
    if r["max_raw"] > 1_000_000:
        problems.append(f"{label}: a request of {r['max_raw']} bytes")
    if r["max_dims"] > 30:
        problems.append(f"{label}: {r['max_dims']} dimensions")
    if not r["ok"]:
        problems.append(f"{label}: a request failed")
    ideal = math.ceil(r["datums"] / 1000)
    if not size_bound and r["requests"] != ideal:
        problems.append(f"{label}: {r['requests']} requests for {r['datums']} datums (ceil = {ideal})")
    if size_bound and r["requests"] < math.ceil(r["raw"] / 1_000_000):
        problems.append(f"{label}: fewer requests than 1 MB allows")
    return problems


def row(label: str, r: dict[str, Any]) -> str:
    ideal = str(math.ceil(r["datums"] / 1000)) if not r.get("many_senders") else "-"
    return (
        f"{label:<44} {r['datums']:>7} {r['requests']:>5} {ideal:>5} {r['raw']:>11,} {r['wire']:>10,}"
        f" {r['max_raw']:>10,} {r['publish_ms']:>8.1f} {r['spool_bytes']:>8,}"
    )


def synthetic(n: int, dims: int, value_len: int) -> list[MetricFamily]:
    labels = tuple(f"d{i}" for i in range(dims))
    fam = MetricFamily("bench_synthetic", "synthetic", "gauge", labels)
    for i in range(n):
        fam.add(tuple((f"{i}-{j}-".ljust(value_len, "x")) for j in range(dims)), float(i))
    return [fam]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only

    moto, url = start_moto()
    proxy = FaultProxy(url, free_port()).start()
    work = Path(tempfile.mkdtemp(prefix="nodeagent-bench-"))
    problems: list[str] = []
    try:
        run = Run(proxy, work)
        now = time.time() // 60 * 60
        print(
            f"nodeagent CloudWatch sink: {args.nodes} nodes, {args.partitions} partitions "
            f"(botocore protocol: see 'raw'; gzip above 10 KB)"
        )
        print(
            f"{'flush':<44} {'datums':>7} {'reqs':>5} {'ceil':>5} {'raw bytes':>11} {'wire bytes':>10}"
            f" {'max req':>10} {'pub ms':>8} {'spool B':>8}"
        )

        # head node: Slurm + host, steady state
        head = run.sink("head")
        slurm = slurm_families(args.nodes, args.partitions)
        run.flush(head, [*slurm, *host_families(1000.0)], now - 120)
        r = run.flush(head, [*slurm, *host_families(1060.0)], now - 60)
        mapped = {d[0] for rec in proxy.put_records()[-r["requests"] :] for d in rec.datums}
        print(row("head: Slurm + host summary", r))
        problems += check("head", r)
        head.close()

        # compute node summaries, where the sink runs on compute nodes
        summaries = compute_summary_families()
        if summaries:
            node = run.sink("compute", roles=("compute",))
            node.publish(host_families(1000.0), now - 120)
            node.flush(10)
            c = run.flush(node, [*summaries, *host_families(1060.0)], now - 60)
            print(row("compute node: GPU + I/O + host summaries", c))
            cluster = {k: c[k] * args.nodes for k in ("datums", "requests", "raw", "wire")}
            cluster.update(
                max_raw=c["max_raw"], publish_ms=c["publish_ms"], spool_bytes=c["spool_bytes"], many_senders=True
            )
            print(row(f"  x {args.nodes} compute nodes (each its own requests)", cluster))
            problems += check("compute", c)
            node.close()
        else:
            print("compute node summaries: none in the catalogue")

        # synthetic: count-bound and size-bound
        from nodeagent.catalogue.spec import Catalogue, CloudWatchSpec

        for n, dims, vlen, label in (
            (2500, 3, 12, "synthetic: 2,500 datums, 3 dims"),
            (10000, 3, 12, "synthetic: 10,000 datums, 3 dims"),
            (600, 30, 1024, "synthetic: 600 datums, 30 dims x 1 KB"),
        ):
            cat = Catalogue()
            labels = tuple(f"d{i}" for i in range(dims))
            cat.add(
                MetricSpec(
                    "bench_synthetic",
                    "gauge",
                    "s",
                    "bench",
                    labels,
                    cloudwatch=CloudWatchSpec("Synthetic", unit="Count", dimensions=labels),
                )
            )
            sink = run.sink("head")
            sink.mapper = CloudWatchMapper("head", catalogue=cat)
            s = run.flush(sink, synthetic(n, dims, vlen), now - 60)
            print(row(label, s))
            problems += check(label, s, size_bound=dims == 30)
            sink.close()

        print()
        print(f"head flush: {len(mapped)} CloudWatch metric names: {', '.join(sorted(mapped))}")
        print(f"size bound: pack() estimate vs real body, 1000 typical datums: {estimate_ratio():.2f}x")
    finally:
        proxy.stop()
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(
        "OK: every request within 1,000 datums / 1 MB / 30 dimensions; requests == ceil(datums/1000) "
        "wherever 1 MB allows"
    )
    return 0


def estimate_ratio() -> float:
    import botocore.session
    from botocore.serialize import create_serializer

    from nodeagent.sinks.mapping import datum_size, request_overhead

    model = botocore.session.get_session().get_service_model("cloudwatch")
    protocol = getattr(model, "resolved_protocol", None) or model.protocol
    op = model.operation_model("PutMetricData")
    datums = [
        Datum("NodesIdle", (("Partition", f"queue{i % 8}"),), float(i), "Count", 60, 1.7e9 + i) for i in range(1000)
    ]
    from datetime import datetime, timezone

    params = {
        "Namespace": "ParallelCluster/bench",
        "MetricData": [
            {
                "MetricName": d.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in d.dims],
                "Timestamp": datetime.fromtimestamp(d.timestamp, tz=timezone.utc),
                "Value": d.value,
                "Unit": d.unit,
                "StorageResolution": d.resolution,
            }
            for d in datums
        ],
    }
    body = create_serializer(protocol).serialize_to_request(params, op)["body"]
    bound = request_overhead("ParallelCluster/bench") + sum(datum_size(d, protocol) for d in datums)
    return bound / len(body)


if __name__ == "__main__":
    sys.exit(main())
