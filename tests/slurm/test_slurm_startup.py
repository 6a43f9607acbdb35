"""Start-up of the head role with a hung slurmctld (SIGSTOP: every Slurm
client waits for an answer that never comes), against a real local Slurm.

The Slurm collectors wait for their first collection together, against one
deadline capped below collectors.timeout, so the first scrape of :9341 and
`nodeagent --once` are served within collectors.timeout (default 5 s) with
every collector failed, not after one first_collection_wait per collector
(16 s before). Stopping the agent kills the hung commands at once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from localslurm import LocalSlurm
from testlib import free_port

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TIMEOUT = 5.0  # collectors.timeout, the default
MARGIN = 0.5  # rendering, and a loaded test machine
SLURM_COLLECTORS = ("sinfo", "squeue", "sdiag", "sshare")


def _config(path: Path, cluster: LocalSlurm, host_port: int, slurm_port: int) -> Path:
    # slurm's first_collection_wait (4 s) and command_timeout (10 s) keep their defaults
    path.write_text(
        "role: head\n"
        f"exporters:\n  host: {{listen: '127.0.0.1:{host_port}'}}\n  slurm: {{listen: '127.0.0.1:{slurm_port}'}}\n"
        f"collectors: {{timeout: {TIMEOUT}}}\n"
        "cloudwatch: {enabled: false}\n"
        f"slurm: {{bin_dir: /usr/bin, slurm_conf: '{cluster.conf}'}}\n"
    )
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-2000:]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on :{port}")


def _success(text: str) -> dict[str, float]:
    out = {}
    for name in SLURM_COLLECTORS:
        key = f'nodeagent_collector_success{{collector="{name}"}} '
        line = next(line for line in text.splitlines() if line.startswith(key))
        out[name] = float(line.rsplit(" ", 1)[1])
    return out


def test_first_scrape_and_once_with_a_hung_slurmctld(mini_cluster: LocalSlurm, tmp_path: Path) -> None:
    cluster = mini_cluster
    host_port, slurm_port = free_port(), free_port()
    cfg = _config(tmp_path / "agent.yaml", cluster, host_port, slurm_port)
    cluster.pause("slurmctld")
    try:
        # the daemon: the first scrape of :9341 after start
        proc = subprocess.Popen([sys.executable, "-m", "nodeagent", "--config", str(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())  # fmt: skip
        try:
            _wait_listening(slurm_port, proc)
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{slurm_port}/metrics", timeout=30) as r:
                text = r.read().decode()
            first_scrape = time.monotonic() - started
            assert _success(text) == dict.fromkeys(SLURM_COLLECTORS, 0.0)
            assert "slurm_nodes_total" not in text
            started = time.monotonic()
            proc.terminate()
            out, _ = proc.communicate(timeout=15)
            stop = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, out[-2000:]
        print(f"first scrape of :9341 {first_scrape:.2f}s, stop {stop:.2f}s")
        assert first_scrape < TIMEOUT + MARGIN, f"first scrape took {first_scrape:.2f}s"
        assert stop < 3.0, f"stop took {stop:.2f}s"

        # --once: the same bound; the interpreter's start-up (about 0.4 s)
        # comes on top
        started = time.monotonic()
        once = subprocess.run([sys.executable, "-m", "nodeagent", "--config", str(cfg), "--once"],
                              capture_output=True, text=True, env=_env(), timeout=60)  # fmt: skip
        once_s = time.monotonic() - started
        assert once.returncode == 0, once.stderr[-2000:]
        assert _success(once.stdout) == dict.fromkeys(SLURM_COLLECTORS, 0.0)
        assert 'node_scrape_collector_success{collector="loadavg"} 1' in once.stdout
        print(f"--once {once_s:.2f}s")
        assert once_s < TIMEOUT + 1.0, f"--once took {once_s:.2f}s"
    finally:
        cluster.resume("slurmctld")
