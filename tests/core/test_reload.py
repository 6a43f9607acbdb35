"""Reloads as systemd sees them: `nodeagent reload --pid` (the unit's
ExecReload) waits for the daemon's verdict and exits 0 when the new config is
applied, 1 when it was rejected; the daemon sends RELOADING=1 with
MONOTONIC_USEC, then READY=1; listeners are kept, changed or added as the
new config says, and listen errors name the address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from testlib import free_port, wait_http

from nodeagent import reloadctl


def config_text(*listen: str, collectors: str = "loadavg") -> str:
    listen_value = f"'{listen[0]}'" if len(listen) == 1 else "[" + ", ".join(f"'{a}'" for a in listen) + "]"
    return (f"exporters:\n  host: {{listen: {listen_value}}}\n  gpu: {{enabled: false}}\n"
            f"collectors: {{disable_defaults: true, enable: [{collectors}]}}\n")


def reload_cli(pid: int, run_dir, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nodeagent", "reload", "--pid", str(pid), "--timeout", "20"],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "RUNTIME_DIRECTORY": str(run_dir)})


def wait_status(run_dir, timeout: float = 10) -> reloadctl.ReloadStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = reloadctl.read_status(str(run_dir / reloadctl.STATUS_FILE))
        if status is not None:
            return status
        assert time.monotonic() < deadline, "the daemon wrote no reload status"
        time.sleep(0.05)


def test_reload_command_exit_codes_and_notify_protocol(tmp_path, agent_process):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(f"127.0.0.1:{port}"))
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(10)
    agent = agent_process(["--role", "compute", "--config", str(cfg)],
                          env={"RUNTIME_DIRECTORY": str(run_dir), "NOTIFY_SOCKET": str(notify_path)})
    try:
        assert notify.recv(4096).startswith(b"READY=1")
        status = wait_status(run_dir)
        assert (status.pid, status.started, status.finished) == (agent.proc.pid, 0, 0)

        # applied: exit 0, and the new config serves when the command returns
        cfg.write_text(config_text(f"127.0.0.1:{port}", collectors="meminfo"))
        before_usec = time.monotonic_ns() // 1000
        done = reload_cli(agent.proc.pid, run_dir)
        assert done.returncode == 0, done.stderr
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"node_memory_MemTotal_bytes" in body and b"node_load1 " not in body
        reloading = notify.recv(4096).decode()
        assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
        usec = int(reloading.split("MONOTONIC_USEC=")[1].split("\n")[0])
        assert before_usec <= usec <= time.monotonic_ns() // 1000  # CLOCK_MONOTONIC, as systemd reads it
        assert notify.recv(4096).decode().startswith("READY=1\nSTATUS=serving role compute")

        # rejected: exit 1 naming the problem; the old config goes on serving
        cfg.write_text("exporters: {host: {listen: 'nonsense'}}\n")
        done = reload_cli(agent.proc.pid, run_dir)
        assert done.returncode == 1
        assert "reload rejected" in done.stderr and "exporters.host.listen" in done.stderr
        assert notify.recv(4096).startswith(b"RELOADING=1")
        assert b"last reload rejected" in notify.recv(4096)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200

        # a port that cannot be bound rejects the reload too
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            cfg.write_text(config_text(f"127.0.0.1:{port}", f"127.0.0.1:{taken}"))
            done = reload_cli(agent.proc.pid, run_dir)
        assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{taken}" in done.stderr
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200

        status = wait_status(run_dir)
        assert (status.started, status.finished, status.result) == (3, 3, "rejected")
        # no verdict to wait for: a PID that is not this daemon's, or no runtime directory
        assert reload_cli(os.getpid(), run_dir).returncode == 1
        no_dir = subprocess.run([sys.executable, "-m", "nodeagent", "reload", "--pid", str(agent.proc.pid)],
                                capture_output=True, text=True, timeout=30,
                                env={k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"})
        assert no_dir.returncode == 1 and "RUNTIME_DIRECTORY" in no_dir.stderr
        rc, _, err = agent.stop()
        assert rc == 0, err
        assert not (run_dir / reloadctl.STATUS_FILE).exists()
    finally:
        notify.close()


def test_reload_command_reports_a_daemon_that_dies(tmp_path):
    """A process that takes SIGHUP as death: no verdict, exit 1."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = subprocess.Popen(["sleep", "30"])
    try:
        reloadctl.write_status(str(run_dir / reloadctl.STATUS_FILE), reloadctl.ReloadStatus(victim.pid))
        done = reload_cli(victim.pid, run_dir)
        assert done.returncode == 1 and "exited during the reload" in done.stderr
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()


def test_addresses_kept_added_and_dropped_across_reloads(tmp_path, agent_process):
    """An unchanged address keeps its socket and connections (one opened
    before the reload is answered after it); an added one opens, a dropped
    one closes."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    a, b = free_port(), free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(f"127.0.0.1:{a}"))
    agent = agent_process(["--role", "compute", "--config", str(cfg)], env={"RUNTIME_DIRECTORY": str(run_dir)})
    wait_http(f"http://127.0.0.1:{a}/healthz")
    wait_status(run_dir)
    # connected before the reload, request sent after it
    early = socket.create_connection(("127.0.0.1", a), timeout=5)
    cfg.write_text(config_text(f"127.0.0.1:{a}", f"127.0.0.1:{b}"))
    assert reload_cli(agent.proc.pid, run_dir).returncode == 0
    early.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert early.recv(4096).startswith(b"HTTP/1.1 200 ")
    early.close()
    for port in (a, b):
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
    cfg.write_text(config_text(f"127.0.0.1:{b}"))
    assert reload_cli(agent.proc.pid, run_dir).returncode == 0
    assert urllib.request.urlopen(f"http://127.0.0.1:{b}/healthz", timeout=5).status == 200
    try:
        socket.create_connection(("127.0.0.1", a), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused, "a dropped address still listens"
    rc, _, err = agent.stop(signal.SIGTERM)
    assert rc == 0, err
