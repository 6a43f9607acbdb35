"""Runs nodeagent against the real systemd-journald, as a service's output
reaches it under systemd; used by test_journal_live.py.

    unshare -m --propagation private python journald_scenario.py OUT_DIR

Inside a private mount namespace (nothing of the host's /run or journal is
touched): a tmpfs on /run (and on /var/log/journal if there is one), then
systemd-journald started by hand; it creates its sockets itself. Each
nodeagent run gets stdout and stderr connected to journald's stream socket
with the stream protocol's header (identifier, priority 6, level prefix on),
and JOURNAL_STREAM set to that socket's device:inode, which is what systemd
does for StandardOutput=journal. The runs:

1. a bad config: exit 78;
2. the daemon at log level debug, NOTIFY_SOCKET pointing nowhere (warnings
   sd_notify_failed), a rejected reload (error reload_rejected), SIGTERM;
3. the daemon with its port already taken (error listen_failed, exit 1);
4. `nodeagent check`;
5. one line at each level (debug, info, warning, error).

Then OUT_DIR/all.json and OUT_DIR/warning.json: `journalctl -o json`
without and with `-p warning`, and OUT_DIR/rc.json the exit codes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STDOUT_SOCKET = "/run/systemd/journal/stdout"


def journald_binary() -> str | None:
    for path in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"):
        if os.access(path, os.X_OK):
            return path
    return None


def start_journald() -> subprocess.Popen[bytes]:
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    if os.path.isdir("/var/log/journal"):  # volatile storage only, never the host's journal
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/var/log/journal"], check=True)
    os.makedirs("/run/systemd/journal")
    os.makedirs("/run/log/journal")
    binary = journald_binary()
    assert binary is not None
    proc = subprocess.Popen([binary], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(STDOUT_SOCKET):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("systemd-journald did not start")
        time.sleep(0.05)
    return proc


def journal_connection() -> socket.socket:
    """A stream connection as systemd opens one for a service."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(STDOUT_SOCKET)
    s.shutdown(socket.SHUT_RD)
    # identifier, unit id, default priority, level prefix, syslog, kmsg, console
    s.sendall(b"nodeagent\n\n6\n1\n0\n0\n0\n")
    return s


def spawn(args: list[str], env: dict[str, str] | None = None, module: bool = True) -> subprocess.Popen[bytes]:
    conn = journal_connection()
    st = os.fstat(conn.fileno())
    full_env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    full_env.update(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}", **(env or {}))
    try:
        argv = [sys.executable, "-m", "nodeagent", *args] if module else [sys.executable, *args]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=conn.fileno(), stderr=conn.fileno(), env=full_env)  # fmt: skip
    finally:
        conn.close()  # the child holds it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(path: Path, port: int, level: str = "info") -> Path:
    path.write_text(
        f"exporters:\n  host: {{listen: '127.0.0.1:{port}'}}\n  gpu: {{listen: '127.0.0.1:{free_port()}'}}\n"
        "collectors: {disable_defaults: true, enable: [loadavg]}\n"
        f"cloudwatch: {{enabled: false}}\nlog: {{level: {level}}}\n"
    )
    return path


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def scenario(work: Path) -> dict[str, int | None]:
    rc: dict[str, int | None] = {}
    bad = work / "bad.yaml"
    bad.write_text("exporters: {host: {listen: 'bad'}}\n")
    rc["bad_config"] = spawn(["--role", "compute", "--config", str(bad)]).wait(30)

    port = free_port()
    good = config(work / "good.yaml", port, level="debug")
    daemon = spawn(["--role", "compute", "--config", str(good)], env={"NOTIFY_SOCKET": str(work / "nowhere")})
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", daemon)
        good.write_text(bad.read_text())
        daemon.send_signal(signal.SIGHUP)  # rejected: the running config stays
        time.sleep(1.0)
        wait_http(f"http://127.0.0.1:{port}/metrics", daemon)
        daemon.send_signal(signal.SIGTERM)
        rc["daemon"] = daemon.wait(30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = config(work / "busy.yaml", taken.getsockname()[1])
        rc["listen_failed"] = spawn(["--role", "compute", "--config", str(busy)]).wait(30)

    check = config(work / "check.yaml", free_port())
    rc["check"] = spawn(["check", "--role", "compute", "--config", str(check), "--no-endpoints"]).wait(120)

    # every level once, through the agent's logging set-up (the agent itself
    # logs nothing at debug on a healthy run)
    rc["levels"] = spawn(["-c", EVERY_LEVEL], module=False).wait(30)
    return rc


EVERY_LEVEL = """
import structlog
from nodeagent.log import journal_stderr, setup_logging
journal_stderr()
setup_logging("debug")
log = structlog.get_logger("levels")
for level in ("debug", "info", "warning", "error"):
    getattr(log, level)("level_" + level)
"""


def main() -> int:
    out = Path(sys.argv[1])
    journald = start_journald()
    try:
        rc = scenario(out)
        time.sleep(0.5)  # journald reads the streams asynchronously
        for name, extra in (("all", []), ("warning", ["-p", "warning"])):
            with open(out / f"{name}.json", "w") as f:
                subprocess.run([shutil.which("journalctl") or "journalctl", "-D", "/run/log/journal", "--no-pager",
                                "-o", "json", "-t", "nodeagent", *extra], stdout=f, check=True)  # fmt: skip
        (out / "rc.json").write_text(json.dumps(rc))
    finally:
        journald.terminate()
        journald.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
