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




class MotoServer:
    """A real moto_server on 127.0.0.1 (CloudWatch, S3, IAM), stopped by PID."""

    def __init__(self, env: dict | None = None) -> None:
        import os
        import shutil
        import urllib.request

        # the console script installed beside this interpreter (not a pyenv shim), else PATH
        beside = Path(sys.executable).parent / "moto_server"
        exe = str(beside) if beside.exists() else shutil.which("moto_server")
        argv = [exe] if exe else [sys.executable, "-m", "moto.server"]
        port = free_port()
        self.proc = subprocess.Popen([*argv, "-H", "127.0.0.1", "-p", str(port)], env={**os.environ, **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
