"""The daemon as a real process: start, serve, reload, systemd notify, stop."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from testlib import free_port, wait_http


def write_config(path, port, extra=""):
    path.write_text(
        f"exporters:\n  host: {{listen: '127.0.0.1:{port}'}}\n  gpu: {{listen: '127.0.0.1:{free_port()}'}}\n"
        "collectors: {disable_defaults: true, enable: [loadavg]}\n" + extra
    )


def test_serves_reloads_and_stops_within_two_seconds(tmp_path, agent_process):
    cfg = tmp_path / "config.yaml"
    port = free_port()
    write_config(cfg, port)
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(10)
    agent = agent_process(["--role", "compute", "--config", str(cfg)],
                          env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"})
    try:
        assert sock.recv(4096).startswith(b"READY=1")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"node_load1 " in body and b'node_scrape_collector_success{collector="loadavg"} 1' in body
        assert b"process_resident_memory_bytes" in body  # the agent's own registry, served beside
        assert sock.recv(4096) == b"WATCHDOG=1"

        # a bad reload keeps the running config
        cfg.write_text("exporters: {host: {listen: 'bad'}}\n")
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read() == b"ok\n"

        # a good reload moves to the new port
        new_port = free_port()
        write_config(cfg, new_port)
        agent.proc.send_signal(signal.SIGHUP)
        wait_http(f"http://127.0.0.1:{new_port}/healthz")

        started = time.monotonic()
        rc, _, err = agent.stop(signal.SIGTERM)
        assert rc == 0 and time.monotonic() - started < 2.0
        events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
        assert "reload_rejected" in events and "config_reloaded" in events and events[-1] == "agent_stopped"
        assert "Traceback" not in err
    finally:
        sock.close()


def test_sigint_also_stops(tmp_path, agent_process):
    cfg = tmp_path / "config.yaml"
    port = free_port()
    write_config(cfg, port)
    agent = agent_process(["--role", "compute", "--config", str(cfg)])
    wait_http(f"http://127.0.0.1:{port}/healthz")
    rc, _, _ = agent.stop(signal.SIGINT)
    assert rc == 0


def test_port_in_use_is_a_clear_failure(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = tmp_path / "config.yaml"
        write_config(cfg, busy.getsockname()[1])
        proc = subprocess.run([sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(cfg)],
                              capture_output=True, text=True, timeout=30)
        taken = busy.getsockname()[1]
    assert proc.returncode == 1
    assert "listen_failed" in proc.stderr and "Address already in use" in proc.stderr
    assert f"cannot listen on 127.0.0.1:{taken}" in proc.stderr


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "nodeagent", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_role_auto_reads_cfnconfig(tmp_path):
    root = tmp_path / "root"
    (root / "etc/parallelcluster").mkdir(parents=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"paths: {{rootfs: '{root}'}}\ncollectors: {{disable_defaults: true, enable: [loadavg]}}\n")
    (root / "etc/parallelcluster/cfnconfig").write_text("stack_name=pc-test\ncfn_node_type=ComputeFleet\n")
    proc = run_cli("--role", "auto", "--config", str(cfg), "--once")
    assert proc.returncode == 0 and "node_load1 " in proc.stdout
    (root / "etc/parallelcluster/cfnconfig").write_text("cfn_node_type=Weird\n")
    proc = run_cli("--role", "auto", "--config", str(cfg), "--once")
    assert proc.returncode == 1 and "unknown cfn_node_type 'Weird'" in proc.stderr
    (root / "etc/parallelcluster/cfnconfig").unlink()
    proc = run_cli("--role", "auto", "--config", str(cfg), "--once")
    assert proc.returncode == 1 and "pass --role compute|head|login" in proc.stderr


def test_check_exit_codes(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("collectors: {disable_defaults: true, enable: [loadavg]}\n")
    # --no-endpoints: no daemon runs in this test (tests/check covers the endpoint checks)
    proc = run_cli("check", "--role", "compute", "--config", str(cfg), "--no-endpoints")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "collector loadavg" in proc.stdout and "checks passed" in proc.stdout.splitlines()[-1]

    empty = tmp_path / "emptyproc"
    empty.mkdir()
    cfg.write_text(f"paths: {{procfs: '{empty}'}}\ncollectors: {{disable_defaults: true, enable: [loadavg]}}\n")
    proc = run_cli("check", "--role", "compute", "--config", str(cfg), "--json", "--no-endpoints")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["healthy"] is False
    row = next(r for r in report["checks"] if r["check"] == "collector loadavg")
    assert row["ok"] is False and "No such file" in row["detail"]

    cfg.write_text("collectors: {enable: [nosuch]}\n")
    proc = run_cli("check", "--role", "compute", "--config", str(cfg))
    assert proc.returncode == 78 and "unknown collector 'nosuch'" in proc.stderr


def test_collectors_listing():
    proc = run_cli("collectors", "--json", "--role", "compute")
    rows = {r["name"]: r for r in json.loads(proc.stdout)["collectors"]}
    assert rows["loadavg"]["group"] == "host" and rows["loadavg"]["port"] == 9100
    assert "compute" in rows["loadavg"]["default_roles"]
    assert run_cli("--version").stdout.startswith("nodeagent ")


def test_sink_health_is_served_beside_host_metrics(tmp_path, agent_process):
    """The CloudWatch sink's own metrics (spool, sent, dropped) are scraped from :9100."""
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"exporters: {{host: {{listen: '127.0.0.1:{port}'}}}}\n"
        "collectors: {disable_defaults: true, enable: [loadavg]}\n"
        f"paths: {{state_dir: '{tmp_path / 'state'}', cfnconfig: '{tmp_path / 'none'}'}}\n"
        # nothing listens on port 9 (discard): CloudWatch is unreachable, data waits in the spool
        "cloudwatch: {cluster_name: demo, region: us-east-1, endpoint_url: 'http://127.0.0.1:9'}\n"
    )
    agent = agent_process(["--role", "login", "--config", str(cfg)])
    wait_http(f"http://127.0.0.1:{port}/healthz")
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "node_load1 " in body
    assert "nodeagent_cloudwatch_spool" in body
    rc, _, err = agent.stop()
    assert rc == 0, err


def test_reloads_do_not_leak_threads_and_kept_alive_connections_get_the_new_config(tmp_path, agent_process):
    """Repeated reloads leave no threads; the listening socket and a kept-alive
    scrape connection survive a reload, and that connection is answered by the
    new configuration (never by the old one)."""
    import http.client
    import os

    cfg = tmp_path / "config.yaml"
    port = free_port()
    write_config(cfg, port)
    agent = agent_process(["--role", "compute", "--config", str(cfg)])
    wait_http(f"http://127.0.0.1:{port}/healthz")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    assert b"node_load1" in conn.getresponse().read()

    def threads():
        return len(os.listdir(f"/proc/{agent.proc.pid}/task"))

    for _ in range(2):  # warm: first reload starts what steady state has
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.6)
        wait_http(f"http://127.0.0.1:{port}/metrics")
    before = threads()
    for _ in range(6):
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.6)
        wait_http(f"http://127.0.0.1:{port}/metrics")
    # a leak would be a thread per group per reload (12 here); a request
    # thread may still be finishing, so allow one and let it settle
    deadline = time.monotonic() + 3
    while threads() > before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threads() <= before + 1, (before, threads())

    cfg.write_text(cfg.read_text().replace("enable: [loadavg]", "enable: [meminfo]"))
    agent.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read()  # the same connection all along
        if b"node_memory_MemTotal_bytes" in body:
            break
        time.sleep(0.1)
    assert b"node_memory_MemTotal_bytes" in body and b"node_load1 " not in body
    assert agent.stop()[0] == 0


def test_bad_certificate_on_reload_keeps_serving(tmp_path, agent_process):
    cfg = tmp_path / "config.yaml"
    port = free_port()
    write_config(cfg, port)
    agent = agent_process(["--role", "compute", "--config", str(cfg)])
    wait_http(f"http://127.0.0.1:{port}/healthz")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {tmp_path / 'missing.crt'}\n"
                   f"  key_file: {tmp_path / 'missing.key'}\n")
    write_config(cfg, port, extra="")
    text = cfg.read_text().replace(f"host: {{listen: '127.0.0.1:{port}'}}",
                                   f"host: {{listen: '127.0.0.1:{port}', web_config: '{web}'}}")
    cfg.write_text(text)
    agent.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert agent.proc.poll() is None, "the daemon died on a bad certificate"
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read() == b"ok\n"
    rc, _, err = agent.stop()
    assert rc == 0 and "reload_rejected" in err
    assert "exporters.host.web_config" in err and "tls_server_config.cert_file" in err and "missing.crt" in err


def test_connections_beyond_the_cap_are_closed_not_threaded(tmp_path, agent_process):
    import os

    from nodeagent.exporter import MAX_REQUESTS

    cfg = tmp_path / "config.yaml"
    port = free_port()
    write_config(cfg, port)
    agent = agent_process(["--role", "compute", "--config", str(cfg)])
    wait_http(f"http://127.0.0.1:{port}/healthz")
    before = len(os.listdir(f"/proc/{agent.proc.pid}/task"))
    idle = []
    try:
        for _ in range(MAX_REQUESTS + 60):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never finish the request
            idle.append(s)
        time.sleep(0.5)
        assert len(os.listdir(f"/proc/{agent.proc.pid}/task")) <= before + MAX_REQUESTS
    finally:
        for s in idle:
            s.close()
    wait_http(f"http://127.0.0.1:{port}/healthz")
    assert agent.stop()[0] == 0


def test_options_before_a_subcommand_are_kept():
    from nodeagent.cli import build_parser

    p = build_parser()
    args = p.parse_args(["--role", "compute", "--config", "/x", "check", "--json"])
    assert (args.role, args.config, args.json) == ("compute", "/x", True)
    args = p.parse_args(["check", "--role", "head"])
    assert args.role == "head"
    assert p.parse_args(["--once", "run"]).once is True
