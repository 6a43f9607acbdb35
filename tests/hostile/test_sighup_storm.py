"""A SIGHUP storm while Prometheus scrapes: 50 reloads in about a second on a
compute node (host and fake GPU ports), one scraper per port scraping every
10 ms. The daemon stays up and serves after the storm, and no scrape fails:
listeners whose address is unchanged are kept across reloads."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from testlib import free_port, wait_http

SIGHUPS = 50
PERIOD = 0.01  # seconds between two scrapes of one scraper


class _Scraper(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
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
                with urllib.request.urlopen(self.url, timeout=5) as r:
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
