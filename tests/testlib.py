"""Helpers shared by the test suite (imported as `testlib`; tests/ is on pytest's pythonpath)."""

import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 10.0, **kw) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1, **kw).read()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class AgentProcess:
    """A real `nodeagent` process, started with argv and stopped by PID."""

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        import os

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nodeagent", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )

    def stop(self, sig=None, timeout: float = 5.0) -> tuple[int, str, str]:
        import signal as _s

        if self.proc.poll() is None:
            self.proc.send_signal(sig or _s.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


