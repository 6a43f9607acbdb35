"""Reloads while Prometheus scrapes, one scraper per port scraping every
10 ms: a SIGHUP storm (50 reloads in about a second on a compute node, host
and fake GPU ports), 20 reloads through `nodeagent reload` (the unit's
ExecReload), and TLS certificates changed on the same address. Listeners
whose address is unchanged are kept across reloads, and one whose TLS
settings changed swaps its context on the same socket: no scrape fails."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from testlib import free_port, wait_http

from nodeagent import reloadctl

SIGHUPS = 50
PERIOD = 0.01  # seconds between two scrapes of one scraper


class _Scraper(threading.Thread):
    def __init__(self, url: str, context: ssl.SSLContext | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.context = context
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        # a steady scraper (one scrape every PERIOD at most), so that the
        # failure count does not grow with how fast a refused connect returns
        next_at = time.monotonic()
        while not self.stopping.is_set():
            next_at += PERIOD
            time.sleep(max(0.0, next_at - time.monotonic()))
            try:
                with urllib.request.urlopen(self.url, timeout=5, context=self.context) as r:
                    r.read()
                    self.ok += r.status == 200
                    self.failed += r.status != 200
            except Exception as e:
                self.failed += 1
                self.errors.append(f"{type(e).__name__}: {e}")


@pytest.mark.slow
def test_daemon_survives_a_sighup_storm_while_scraped(tmp_path):
    host_port, gpu_port = free_port(), free_port()
    config = tmp_path / "c.yaml"
    config.write_text(
        f"exporters:\n  host: {{listen: '127.0.0.1:{host_port}', min_interval: 0}}\n"
        f"  gpu: {{listen: '127.0.0.1:{gpu_port}', min_interval: 0}}\n"
        "collectors: {disable_defaults: true, enable: [loadavg, meminfo, gpu]}\n"
        "gpu: {backend: fake, fake_description: p5-8xh100, interval: 0.5, fake_events: false}\n"
    )
    log = tmp_path / "agent.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)
    scrapers = [_Scraper(f"http://127.0.0.1:{port}/metrics") for port in (host_port, gpu_port)]
    try:
        for s in scrapers:
            wait_http(s.url)
            s.start()
        time.sleep(0.5)
        for _ in range(SIGHUPS):
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.02)
        time.sleep(2.0)  # the last reload, and scrapes after it
        for s in scrapers:
            s.stopping.set()
        for s in scrapers:
            s.join(10)
        assert proc.poll() is None, log.read_text()[-3000:]
        for s in scrapers:
            wait_http(s.url, timeout=10)
        events = [json.loads(line)["event"] for line in log.read_text().splitlines() if line.startswith("{")]
        ok = sum(s.ok for s in scrapers)
        failed = sum(s.failed for s in scrapers)
        print(f"\nSIGHUP storm: {SIGHUPS} SIGHUPs, {events.count('config_reloaded')} reloads, "
              f"{events.count('reload_rejected')} rejected; scrapes {ok} ok, {failed} failed")
        assert events.count("config_reloaded") >= 1 and "reload_rejected" not in events
        assert ok > 0
        assert failed == 0, [e for s in scrapers for e in s.errors][:5]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        assert time.monotonic() - started < 2.0 and proc.returncode == 0
        assert "Traceback" not in log.read_text()
    finally:
        for s in scrapers:
            s.stopping.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _reload(pid: int, run_dir) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodeagent", "reload", "--pid", str(pid)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "RUNTIME_DIRECTORY": str(run_dir)})


def _wait_status(run_dir) -> None:
    deadline = time.monotonic() + 10
    while reloadctl.read_status(str(run_dir / reloadctl.STATUS_FILE)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_twenty_waited_reloads_drop_no_scrape(tmp_path, agent_process):
    """20 reloads through `nodeagent reload` (what `systemctl reload` runs),
    each changing the collectors, while two ports are scraped every 10 ms."""
    host_port, gpu_port = free_port(), free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = tmp_path / "c.yaml"

    def write(collector: str) -> None:
        config.write_text(
            f"exporters:\n  host: {{listen: '127.0.0.1:{host_port}', min_interval: 0}}\n"
            f"  gpu: {{listen: '127.0.0.1:{gpu_port}', min_interval: 0}}\n"
            f"collectors: {{disable_defaults: true, enable: [{collector}, gpu]}}\n"
            "gpu: {backend: fake, fake_description: p5-8xh100, interval: 0.5, fake_events: false}\n")

    write("loadavg")
    agent = agent_process(["--role", "compute", "--config", str(config)], env={"RUNTIME_DIRECTORY": str(run_dir)})
    scrapers = [_Scraper(f"http://127.0.0.1:{port}/metrics") for port in (host_port, gpu_port)]
    try:
        for s in scrapers:
            wait_http(s.url)
        _wait_status(run_dir)
        for s in scrapers:
            s.start()
        started = time.monotonic()
        for i in range(20):
            write("meminfo" if i % 2 == 0 else "loadavg")
            done = _reload(agent.proc.pid, run_dir)
            assert done.returncode == 0, done.stderr
        took = time.monotonic() - started
        for s in scrapers:
            s.stopping.set()
            s.join(10)
        ok, failed = sum(s.ok for s in scrapers), sum(s.failed for s in scrapers)
        print(f"\n20 waited reloads in {took:.1f}s; scrapes {ok} ok, {failed} failed")
        assert ok > 0 and failed == 0, [e for s in scrapers for e in s.errors][:5]
        body = urllib.request.urlopen(scrapers[0].url, timeout=5).read()
        assert b"node_load1 " in body  # the last config (i = 19: loadavg) serves
    finally:
        for s in scrapers:
            s.stopping.set()
    rc, _, err = agent.stop()
    assert rc == 0 and "Traceback" not in err


@pytest.mark.slow
def test_a_tls_change_on_the_same_address_drops_no_scrape(tmp_path, agent_process):
    """The certificate changes at each reload: the new one is served at once
    on the same socket, and no scrape meets a refused connection."""
    port = free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    certs = []
    for name in ("a", "b"):
        key, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", f"/CN={name}",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        certs.append((crt, key))
    web = tmp_path / "web.yml"
    config = tmp_path / "c.yaml"
    config.write_text(f"exporters:\n  host: {{listen: '127.0.0.1:{port}', web_config: '{web}'}}\n"
                      "  gpu: {enabled: false}\ncollectors: {disable_defaults: true, enable: [loadavg]}\n")

    def use(i: int) -> None:
        web.write_text(f"tls_server_config:\n  cert_file: {certs[i][0]}\n  key_file: {certs[i][1]}\n")

    def served() -> bytes:
        return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=5))

    def der(i: int) -> bytes:
        return ssl.PEM_cert_to_DER_cert(certs[i][0].read_text())

    use(0)
    agent = agent_process(["--role", "compute", "--config", str(config)], env={"RUNTIME_DIRECTORY": str(run_dir)})
    context = ssl.create_default_context()
    for crt, _ in certs:
        context.load_verify_locations(str(crt))
    scraper = _Scraper(f"https://127.0.0.1:{port}/metrics", context)
    try:
        wait_http(scraper.url, context=context)
        _wait_status(run_dir)
        scraper.start()
        for i in range(1, 11):
            use(i % 2)
            done = _reload(agent.proc.pid, run_dir)
            assert done.returncode == 0, done.stderr
            assert served() == der(i % 2)
        scraper.stopping.set()
        scraper.join(10)
        print(f"\n10 certificate changes; scrapes {scraper.ok} ok, {scraper.failed} failed")
        assert scraper.ok > 0 and scraper.failed == 0, scraper.errors[:5]
    finally:
        scraper.stopping.set()
    rc, _, err = agent.stop()
    assert rc == 0 and "Traceback" not in err
