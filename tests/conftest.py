"""Fixtures shared by the whole suite."""

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from testlib import AgentProcess, free_port


@pytest.fixture(autouse=True)
def _reset_structlog():
    """A test that configures logging onto a captured stream must not leave
    later tests writing to that stream once it is closed."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def agent_process():
    started: list[AgentProcess] = []

    def start(args, env=None):
        a = AgentProcess(args, env)
        started.append(a)
        return a

    yield start
    for a in started:
        if a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real moto_server (CloudWatch, S3) on 127.0.0.1, one for the session;
    tests reset its state (POST /moto-api/reset) as they need."""
    # the console script installed beside this interpreter (not a pyenv shim), else PATH
    beside = Path(sys.executable).parent / "moto_server"
    exe = str(beside) if beside.exists() else shutil.which("moto_server")
    argv = [exe] if exe else [sys.executable, "-m", "moto.server"]
    port = free_port()
    proc = subprocess.Popen([*argv, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.05)
    yield url
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
