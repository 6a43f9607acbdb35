"""Benchmark: nodeagent's :9100 against node_exporter, same machine, same run.

Both servers run the equivalent collector set against this machine's real
/proc and /sys. Scrapes alternate between the two in rounds, so drift in the
machine's load hits both alike. Printed per server: CPU seconds per scrape
(from the server process's own utime+stime), p50/p99 scrape latency with 1 and
with 8 concurrent scrapers, resident memory; then the ratios against the
targets (CPU <= 1.0x node_exporter, p99 <= node_exporter, RSS <= 60 MB).

nodeagent is measured twice: with min_interval 0 (collects on every scrape,
as node_exporter does: the like-for-like figure) and with the default 1 s
(what users get: a burst of scrapes shares one collection).

    python bench/bench_host.py [--scrapes 500] [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# node_exporter's collectors that nodeagent implements (the comparison set)
COLLECTORS = [
    "arp", "conntrack", "cpu", "cpufreq", "diskstats", "entropy", "filefd", "filesystem", "hwmon",
    "infiniband", "loadavg", "meminfo", "netclass", "netdev", "netstat", "os", "pressure", "schedstat",
    "sockstat", "softnet", "stat", "textfile", "time", "timex", "uname", "vmstat",
]
UPSTREAM_MOUNT_EXCLUDE = "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def scrape(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        r.read()
    return time.perf_counter() - started


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            scrape(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Server:
    def __init__(self, name: str, argv: list[str], url: str) -> None:
        self.name, self.url = name, url
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(url)
        for _ in range(5):
            scrape(url)  # warm up
        self.latencies: dict[int, list[float]] = {1: [], 8: []}
        self.cpu = 0.0
        self.scrapes = 0
        self.rss_max = 0

    def run_round(self, n: int, concurrency: int) -> None:
        before = cpu_seconds(self.proc.pid)
        if concurrency == 1:
            lat = [scrape(self.url) for _ in range(n)]
        else:
            with ThreadPoolExecutor(concurrency) as pool:
                lat = list(pool.map(lambda _: scrape(self.url), range(n)))
        self.cpu += cpu_seconds(self.proc.pid) - before
        self.scrapes += n
        self.latencies[concurrency].extend(lat)
        self.rss_max = max(self.rss_max, rss_bytes(self.proc.pid))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=500, help="scrapes per server per concurrency level")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    node_exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not node_exporter:
        print("node_exporter not found (apt-get install prometheus-node-exporter)", file=sys.stderr)
        return 2
    textfile = tempfile.mkdtemp(prefix="bench-textfile-")
    ne_port = free_port()
    ne_argv = [node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}", "--collector.disable-defaults",
               f"--collector.textfile.directory={textfile}",
               f"--collector.filesystem.mount-points-exclude={UPSTREAM_MOUNT_EXCLUDE}"]
    ne_argv += [f"--collector.{c}" for c in COLLECTORS]
    servers = [Server("node_exporter", ne_argv, f"http://127.0.0.1:{ne_port}/metrics")]
    for label, min_interval in (("nodeagent (min_interval 0)", 0.0), ("nodeagent (default 1 s)", 1.0)):
        port = free_port()
        cfg = Path(tempfile.mkdtemp(prefix="bench-nodeagent-")) / "config.yaml"
        cfg.write_text(
            f"exporters:\n  host: {{listen: '127.0.0.1:{port}', min_interval: {min_interval}}}\n"
            f"  gpu: {{enabled: false}}\npaths: {{textfile_dir: '{textfile}'}}\n"
        )
        argv = [sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(cfg)]
        servers.append(Server(label, argv, f"http://127.0.0.1:{port}/metrics"))
    try:
        per_round = max(1, args.scrapes // args.rounds)
        for concurrency in (1, 8):
            for _ in range(args.rounds):
                for s in servers:
                    s.run_round(per_round, concurrency)
        lines = [s.name for s in servers]
        width = max(map(len, lines)) + 2
        print(f"scrapes per server: {servers[0].scrapes} ({args.scrapes} at concurrency 1, {args.scrapes} at 8)")
        print(f"{'server':<{width}}{'CPU ms/scrape':>14}{'p50 c1':>9}{'p99 c1':>9}{'p50 c8':>9}{'p99 c8':>9}"
              f"{'RSS MB':>8}")
        for s in servers:
            c1, c8 = s.latencies[1], s.latencies[8]
            print(f"{s.name:<{width}}{s.cpu / s.scrapes * 1000:>14.2f}{pct(c1, .5) * 1000:>9.2f}"
                  f"{pct(c1, .99) * 1000:>9.2f}{pct(c8, .5) * 1000:>9.2f}{pct(c8, .99) * 1000:>9.2f}"
                  f"{s.rss_max / 2**20:>8.1f}")
        ne = servers[0]
        ne_cpu = ne.cpu / ne.scrapes
        print("\nratios against node_exporter (targets: CPU <= 1.0x, p99 <= 1.0x, RSS <= 60 MB)")
        for s in servers[1:]:
            cpu_ratio = (s.cpu / s.scrapes) / ne_cpu if ne_cpu else float("inf")
            p99_1 = pct(s.latencies[1], .99) / pct(ne.latencies[1], .99)
            p99_8 = pct(s.latencies[8], .99) / pct(ne.latencies[8], .99)
            rss = s.rss_max / 2**20
            verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
            print(f"  {s.name}: CPU {cpu_ratio:.2f}x ({verdict(cpu_ratio <= 1.0)}), "
                  f"p99 c1 {p99_1:.2f}x ({verdict(p99_1 <= 1.0)}), p99 c8 {p99_8:.2f}x ({verdict(p99_8 <= 1.0)}), "
                  f"RSS {rss:.1f} MB ({verdict(rss <= 60)})")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(textfile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
