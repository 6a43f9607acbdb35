"""Benchmark: HTTP serving under hostile load, nodeagent and node_exporter.

For each server, on a plain port and on a TLS port with basic auth, a real
scraper (one kept-alive connection, like Prometheus, one scrape every
--interval seconds) runs alone (its quiet p99), then while each attack runs
from a separate process:

- slowloris: 200 connections sending a request head one byte every 5 s
  (reconnecting when the server hangs up);
- idle: 40 connections that send nothing (on the TLS port: not even a
  ClientHello), reconnecting when closed;
- flood: 1,000 concurrent scrapes, each a new connection, repeated for the
  whole phase; counted by answer (200, 503, no answer).

The attack processes run at nice 19 by default: on a small machine a load
generator on the same cores takes the CPU that the server and the measuring
scraper need, which a flood arriving over the network would not;
`--attack-nice 0` shows that contended case too.

Printed per phase: the real scraper's success rate, p50/p99 and p99 against
its quiet p99 (target: 100 % and <= 2x). Then a soak of --soak scrapes per
port against nodeagent (4 scrapers: two kept-alive, two with a new
connection per scrape) with its RSS, threads and open descriptors sampled
after a warm-up tenth and at the end (target: flat).

Loopback only; about four minutes with the defaults.

    python bench/bench_hostile_http.py [--phase 10] [--soak 20000] [--no-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt

USER, PASSWORD = "prom", "bench-password"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
COLLECTORS = [  # node_exporter's collectors that nodeagent implements, as in bench_host.py
    "arp", "conntrack", "cpu", "cpufreq", "diskstats", "entropy", "filefd", "filesystem", "hwmon",
    "infiniband", "loadavg", "meminfo", "netclass", "netdev", "netstat", "os", "pressure", "schedstat",
    "sockstat", "softnet", "stat", "textfile", "time", "timex", "uname", "vmstat",
]
UPSTREAM_MOUNT_EXCLUDE = "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- the attacks (run in a child process: `--attack KIND`) ----


def _request(tls: bool) -> bytes:
    auth = f"Authorization: {AUTH}\r\n" if tls else ""
    return f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode()


async def _open(port: int, ctx: ssl.SSLContext | None, timeout: float = 30):
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None), timeout)


async def _slowloris_loop(port: int, ctx: ssl.SSLContext | None, stop: asyncio.Event, stats: dict) -> None:
    """One byte every 5 s until the server hangs up, then again on a new connection."""
    head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X" * 10000
    while not stop.is_set():
        try:
            r, w = await _open(port, ctx)
        except (OSError, asyncio.TimeoutError):
            stats["connect_failed"] += 1
            await asyncio.sleep(1)
            continue
        stats["connections"] += 1
        try:
            for i in range(len(head)):
                w.write(head[i:i + 1])
                await w.drain()
                read = asyncio.ensure_future(r.read(1))
                done, _ = await asyncio.wait({read, asyncio.ensure_future(stop.wait())}, timeout=5,
                                            return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    read.cancel()
                    return
                if read in done:  # the server answered or hung up
                    stats["closed_by_server"] += 1
                    break
                read.cancel()
        except OSError:
            stats["closed_by_server"] += 1
        finally:
            w.transport.abort()


async def _idle_loop(port: int, stop: asyncio.Event, stats: dict) -> None:
    """A TCP connection that sends nothing (no ClientHello either), again when closed."""
    while not stop.is_set():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect_failed"] += 1
            await asyncio.sleep(1)
            continue
        stats["connections"] += 1
        read = asyncio.ensure_future(r.read(1))
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({read, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if read in done:
            stats["closed_by_server"] += 1
        read.cancel()
        waiter.cancel()
        w.transport.abort()


async def _flood_client(port: int, ctx: ssl.SSLContext | None, tls: bool, stop: asyncio.Event, stats: dict,
                        latencies: list[float]) -> None:
    request = _request(tls)
    while not stop.is_set():
        started = time.perf_counter()
        outcome = "no answer"
        w = None
        try:
            r, w = await _open(port, ctx)
            w.write(request)
            data = await asyncio.wait_for(r.read(), 60)
            if data.startswith(b"HTTP/1.1 "):
                outcome = data[9:12].decode()
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
        finally:
            if w is not None:
                w.transport.abort()
        stats[outcome] = stats.get(outcome, 0) + 1
        latencies.append(time.perf_counter() - started)


async def _attack(kind: str, port: int, tls: bool, cafile: str | None, duration: float) -> dict:
    ctx = ssl.create_default_context(cafile=cafile) if tls and cafile else None
    stop = asyncio.Event()
    stats: dict = {"connections": 0, "closed_by_server": 0, "connect_failed": 0}
    latencies: list[float] = []
    if kind == "slowloris":
        tasks = [_slowloris_loop(port, ctx, stop, stats) for _ in range(200)]
    elif kind == "idle":
        tasks = [_idle_loop(port, stop, stats) for _ in range(40)]
    else:
        stats = {}
        tasks = [_flood_client(port, ctx, tls, stop, stats, latencies) for _ in range(1000)]
    running = [asyncio.ensure_future(t) for t in tasks]
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.wait(running, timeout=70)
    if latencies:
        stats["p50_ms"] = round(pct(latencies, .5) * 1000, 1)
        stats["p99_ms"] = round(pct(latencies, .99) * 1000, 1)
    return stats


def attack_main(args: argparse.Namespace) -> int:
    stats = asyncio.run(_attack(args.attack, args.port, args.tls, args.cafile, args.duration))
    print(json.dumps(stats))
    return 0


class Attack:
    def __init__(self, kind: str, target: Target, duration: float, nice: int) -> None:
        argv = ["nice", "-n", str(nice), sys.executable, __file__, "--attack", kind, "--port", str(target.port),
                "--duration", str(duration)]
        if target.tls:
            argv += ["--tls", "--cafile", target.cafile]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def result(self) -> dict:
        out, _ = self.proc.communicate(timeout=120)
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


# ---- the real scraper ----


class Scraper:
    """Prometheus-like: one kept-alive connection, a scrape every `interval`,
    a new connection after a failure; each scrape's success and latency."""

    def __init__(self, target: Target, interval: float) -> None:
        self.target, self.interval = target, interval
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        t = self.target
        if t.tls:
            return http.client.HTTPSConnection("127.0.0.1", t.port, timeout=10, context=t.client_ctx)
        return http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)

    def scrape(self) -> tuple[bool, float]:
        started = time.perf_counter()
        ok = False
        try:
            if self.conn is None:
                self.conn = self._connect()
            headers = {"Accept-Encoding": "gzip"}
            if self.target.tls:
                headers["Authorization"] = AUTH
            self.conn.request("GET", "/metrics", headers=headers)
            resp = self.conn.getresponse()
            body = resp.read()
            ok = resp.status == 200 and len(body) > 0
            if resp.will_close:
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        return ok, time.perf_counter() - started

    def run(self, seconds: float) -> tuple[int, int, list[float]]:
        """(scrapes, successes, latencies of all scrapes)"""
        deadline = time.monotonic() + seconds
        n = good = 0
        latencies: list[float] = []
        while time.monotonic() < deadline:
            ok, took = self.scrape()
            n += 1
            good += ok
            latencies.append(took)
            time.sleep(max(0.0, self.interval - took))
        return n, good, latencies

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


# ---- the servers ----


class Target:
    def __init__(self, name: str, argv: list[str], port: int, tls: bool, cafile: str) -> None:
        self.name, self.port, self.tls, self.cafile = name, port, tls, cafile
        self.client_ctx = ssl.create_default_context(cafile=cafile) if tls else None
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        probe = Scraper(self, 0)
        while not probe.scrape()[0]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.1)
        probe.close()

    def usage(self) -> tuple[float, int, int]:
        """RSS in MB, threads, open descriptors."""
        pid = self.proc.pid
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        return rss / 2**20, len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_tls_files(d: Path) -> tuple[str, str, str]:
    key, crt = d / "tls.key", d / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode().replace("$2b$", "$2y$")
    web = d / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n"
                   f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    return str(web), str(crt), str(key)


def start_nodeagent(d: Path, textfile: str, tls: bool, web: str, cafile: str) -> Target:
    port = free_port()
    web_line = f", web_config: '{web}'" if tls else ""
    cfg = d / f"nodeagent-{'tls' if tls else 'plain'}.yaml"
    cfg.write_text(f"exporters:\n  host: {{listen: '127.0.0.1:{port}'{web_line}}}\n"
                   f"  gpu: {{enabled: false}}\npaths: {{textfile_dir: '{textfile}'}}\n")
    argv = [sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(cfg)]
    return Target(f"nodeagent {'TLS+auth' if tls else 'plain'}", argv, port, tls, cafile)


def start_node_exporter(exe: str, textfile: str, tls: bool, web: str, cafile: str) -> Target:
    port = free_port()
    argv = [exe, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
            f"--collector.textfile.directory={textfile}",
            f"--collector.filesystem.mount-points-exclude={UPSTREAM_MOUNT_EXCLUDE}"]
    argv += [f"--collector.{c}" for c in COLLECTORS]
    if tls:
        argv.append(f"--web.config.file={web}")
    return Target(f"node_exporter {'TLS+auth' if tls else 'plain'}", argv, port, tls, cafile)


# ---- phases ----


def run_phases(target: Target, phase: float, interval: float, attacks: list[str], nice: int) -> list[str]:
    scraper = Scraper(target, interval)
    lines = []
    n, good, lat = scraper.run(phase)
    quiet = pct(lat, .99)
    lines.append(f"  quiet      real scraper {good}/{n} ok, p50 {pct(lat, .5) * 1000:.1f} ms, "
                 f"p99 {quiet * 1000:.1f} ms; server {usage_text(target)}")
    for kind in attacks:
        attack = Attack(kind, target, phase + 1, nice)
        time.sleep(1.0)  # let the attack build up
        n, good, lat = scraper.run(phase)
        under_attack = usage_text(target)
        stats = attack.result()
        p99 = pct(lat, .99)
        ratio = p99 / quiet if quiet else float("inf")
        verdict = "met" if good == n and ratio <= 2.0 else "MISSED"
        lines.append(f"  {kind:<10} real scraper {good}/{n} ok ({100 * good / max(n, 1):.1f} %), "
                     f"p50 {pct(lat, .5) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms = {ratio:.2f}x quiet ({verdict})")
        lines.append(f"             attack: {json.dumps(stats, sort_keys=True)}; server {under_attack}")
    scraper.close()
    return lines


def usage_text(target: Target) -> str:
    rss, threads, fds = target.usage()
    return f"RSS {rss:.0f} MB, {threads} threads, {fds} fds"


def soak(target: Target, total: int) -> str:
    per = total // 4
    warm_at = per // 10
    samples: dict[str, tuple[float, int, int]] = {}
    failures = [0]
    lock = threading.Lock()

    def worker(i: int) -> None:
        scraper = Scraper(target, 0)
        for k in range(per):
            ok, _ = scraper.scrape()
            if not ok:
                with lock:
                    failures[0] += 1
            if i >= 2:  # a new connection for every scrape
                scraper.close()
                scraper.conn = None
            if i == 0 and k == warm_at:
                samples["warm"] = target.usage()
        scraper.close()

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    took = time.monotonic() - started
    end = target.usage()
    warm = samples["warm"]
    flat = end[0] - warm[0] <= 5 and end[1] <= warm[1] + 2 and end[2] <= warm[2] + 2
    return (f"  soak: {per * 4} scrapes in {took:.0f} s, {failures[0]} failed; after {warm_at * 4}: "
            f"RSS {warm[0]:.1f} MB, {warm[1]} threads, {warm[2]} fds; at the end: RSS {end[0]:.1f} MB, "
            f"{end[1]} threads, {end[2]} fds ({'flat' if flat else 'NOT FLAT'})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", type=float, default=10.0, help="seconds per phase (quiet, each attack)")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between the real scraper's scrapes")
    ap.add_argument("--soak", type=int, default=20000, help="scrapes per nodeagent port in the soak (0: none)")
    ap.add_argument("--no-peer", action="store_true", help="skip node_exporter")
    ap.add_argument("--ports", default="plain,tls", help="which ports to run: plain, tls or both")
    ap.add_argument("--attack-nice", type=int, default=19,
                    help="nice value of the attack processes (0: they compete for CPU with the server and scraper)")
    ap.add_argument("--attacks", default="slowloris,idle,flood", help="which attacks to run")
    ap.add_argument("--attack", choices=["slowloris", "idle", "flood"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cafile", help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.attack:
        return attack_main(args)
    work = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    textfile = str(work / "textfile")
    os.mkdir(textfile)
    web, crt, _ = make_tls_files(work)
    node_exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    starters = [lambda tls: start_nodeagent(work, textfile, tls, web, crt)]
    if node_exporter and not args.no_peer:
        starters.append(lambda tls: start_node_exporter(node_exporter, textfile, tls, web, crt))
    elif not args.no_peer:
        print("node_exporter not found: nodeagent only", file=sys.stderr)
    print(f"phases of {args.phase:.0f} s, real scraper every {args.interval * 1000:.0f} ms on one kept-alive "
          f"connection; targets: 100 % success, p99 <= 2x quiet")
    try:
        for start in starters:
            for tls in [p == "tls" for p in args.ports.split(",")]:
                target = start(tls)
                try:
                    print(f"{target.name} (:{target.port})", flush=True)
                    for line in run_phases(target, args.phase, args.interval, args.attacks.split(","),
                                           args.attack_nice):
                        print(line, flush=True)
                    if args.soak and target.name.startswith("nodeagent"):
                        print(soak(target, args.soak), flush=True)
                finally:
                    target.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
