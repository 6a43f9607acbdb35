"""Hostile config input, case by case: whatever bytes (or whatever kind of
file) sit where the config or a file it names should be, the agent answers
with one line naming the file and, where it applies, the key: exit 78 at
start-up and in `nodeagent check`, `reload_rejected` on SIGHUP while the
running config keeps serving. SIGTERM ends the daemon within 2 s whatever a
reload is doing."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from testlib import free_port, wait_http

from nodeagent.config import load_config
from nodeagent.inputs import MAX_FILE_BYTES
from nodeagent.settings import ConfigError


def _alias_bomb() -> str:
    """A billion-laughs document under a fixed-choice key: nine levels of nine
    aliases (about 650 bytes, 9**9 strings once expanded)."""
    levels = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "log:\n  level: [" + ", ".join(levels) + "]\n"


def _write(text: str | bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return make


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))  # left bound: the process ends it
    _SOCKETS.append(s)


_SOCKETS: list[socket.socket] = []


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")  # reading it would never end


_SERIAL = itertools.count()


def _referring(key: str, make_target: Callable[[Path], None], name: str) -> Callable[[Path], None]:
    """A valid config whose `key` names a bad file, made beside it."""

    def make(path: Path) -> None:
        target = path.parent / f"{next(_SERIAL)}-{name}"  # a new one each time: the reload test reuses the directory
        make_target(target)
        section, field = key.split(".", 1)
        if section == "exporters":
            group, field = field.split(".")
            text = f"exporters:\n  {group}: {{{field}: '{target}'}}\n"
        else:
            text = f"{section}: {{{field}: '{target}'}}\n"
        path.write_text(text)

    return make


def _web_config_with_cert_fifo(path: Path) -> None:
    cert = path.with_suffix(".pem")
    _fifo(cert)
    path.write_text(f"tls_server_config: {{cert_file: '{cert}', key_file: '{cert}'}}\n")


BAD_FAKE = "models: {h: {name: H100, memory_mib: lots}}\ngpus: [{model: h}]\n"

# id: (makes the config at the path, what the one line must say besides the file)
CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "non-utf8": (_write(b"role: compute\nhostname: caf\xe9\n"), ["is not UTF-8 text (line 2"]),
    "utf16": (_write("role: compute\n".encode("utf-16")), ["UTF-16"]),
    "deep-nesting": (_write("hostname: " + "[" * 5000 + "]" * 5000 + "\n"), ["nested deeper than 64 levels"]),
    "alias-bomb": (_write(_alias_bomb()), ["aliases expand the document past"]),
    "self-alias": (_write("log: {level: &a [*a]}\n"), ["refers to a node that contains it"]),
    "duplicate-key": (_write("role: compute\nrole: head\n"), ["role: duplicate key 'role' at line 2"]),
    "nested-duplicate-key": (_write("exporters:\n  host: {listen: ':1', listen: ':2'}\n"),
                             ["exporters.host.listen: duplicate key"]),
    "fifo": (_fifo, ["is a FIFO (named pipe), not a regular file"]),
    "directory": (_directory, ["is a directory, not a regular file"]),
    "socket": (_socket, ["is a socket, not a regular file"]),
    "device": (_device, ["is a character device, not a regular file"]),
    "too-large": (_write("# padding\n" * (MAX_FILE_BYTES // 10 + 1)), [f"over the limit of {MAX_FILE_BYTES} bytes"]),
    "nul-byte": (_write(b"role: compute\x00\n"), ["not valid YAML"]),
    "timeout-1e308": (_write("collectors: {timeout: 1.0e+308}\n"), ["collectors.timeout: must be"]),
    "gpu-interval-1e39": (_write("gpu: {interval: 1.0e+39}\n"), ["gpu.interval: must be"]),
    "nan": (_write("gpu: {call_timeout: .nan}\n"), ["gpu.call_timeout: must be a finite number"]),
    "huge-int": (_write("gpu: {expected_gpus: 123456789012345678901234567890}\n"),
                 ["gpu.expected_gpus: number out of range"]),
    "listen-unparsable": (_write("exporters: {host: {listen: '[::1:39196'}}\n"), ["exporters.host.listen:"]),
    "listen-unresolvable": (_write("exporters: {gpu: {listen: 'no-such-host.invalid:9400'}}\n"),
                            ["exporters.gpu.listen: cannot resolve host"]),
    "listen-port": (_write("exporters: {host: {listen: ':65536'}}\n"), ["exporters.host.listen: port must be"]),
    "web-config-fifo": (_referring("exporters.host.web_config", _fifo, "web.yml"),
                        ["exporters.host.web_config:", "is a FIFO"]),
    "web-config-non-utf8": (_referring("exporters.host.web_config", _write(b"basic_auth_users: {\xff: x}\n"),
                                       "web.yml"), ["exporters.host.web_config:", "not UTF-8"]),
    "web-config-duplicate": (_referring("exporters.host.web_config",
                                        _write("basic_auth_users: {u: $2y$10$x, u: $2y$10$y}\n"), "web.yml"),
                             ["exporters.host.web_config:", "basic_auth_users.u: duplicate key"]),
    "web-config-cert-fifo": (_referring("exporters.host.web_config", _web_config_with_cert_fifo, "web.yml"),
                             ["exporters.host.web_config:", "tls_server_config.cert_file:", "is a FIFO"]),
    "counters-fifo": (_referring("gpu.counters_file", _fifo, "counters.csv"), ["gpu.counters_file:", "is a FIFO"]),
    "counters-bad": (_referring("gpu.counters_file", _write("DCGM_FI_DEV_GPU_TEMP, gauge\n"), "counters.csv"),
                     ["gpu.counters_file:", "line 1: expected 3 fields"]),
    "counters-directory": (_referring("gpu.counters_file", _directory, "counters.d"),
                           ["gpu.counters_file:", "is a directory"]),
    "fake-description-fifo": (_referring("gpu.fake_description", _fifo, "gpus.yaml"),
                              ["gpu.fake_description:", "is a FIFO"]),
    "fake-description-bad": (_referring("gpu.fake_description", _write(BAD_FAKE), "gpus.yaml"),
                             ["gpu.fake_description:", "invalid description"]),
    "fake-description-bomb": (_referring("gpu.fake_description", _write(_alias_bomb()), "gpus.yaml"),
                              ["gpu.fake_description:", "aliases expand the document"]),
}


def _assert_one_line(message: str, path: Path, expected: list[str]) -> None:
    assert "\n" not in message.strip() and "Traceback" not in message, message[:2000]
    assert len(message) < 1024, len(message)
    assert str(path) in message, message
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("case", sorted(CASES))
def test_loader_names_file_and_key(tmp_path, case):
    make, expected = CASES[case]
    path = tmp_path / "c.yaml"
    make(path)
    started = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert time.monotonic() - started < 2.0
    _assert_one_line(str(e.value), path, expected)


@pytest.mark.slow
def test_cli_exits_78_with_one_line_at_startup_and_in_check(tmp_path):
    """Every case as a real process, the daemon and `check`: exit 78, one
    line on stderr, no traceback. The processes run side by side."""
    jobs = []
    for case in sorted(CASES):
        make, expected = CASES[case]
        (tmp_path / case).mkdir()
        path = tmp_path / case / "c.yaml"
        make(path)
        jobs.append((case, path, expected, ["--role", "compute", "--config", str(path)]))
        jobs.append((case, path, expected, ["check", "--role", "compute", "--no-endpoints", "--config", str(path)]))
    for start in range(0, len(jobs), 8):  # a few at a time on a small machine
        batch = [(job, subprocess.Popen([sys.executable, "-m", "nodeagent", *job[3]], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)) for job in jobs[start:start + 8]]
        for (case, path, expected, argv), proc in batch:
            try:
                _out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                pytest.fail(f"{case} ({argv[0]}): still running after 60 s")
            assert proc.returncode == 78, (case, argv[0], proc.returncode, err[-2000:])
            _assert_one_line(err, path, expected)


def _daemon_config(port: int) -> str:
    return (f"exporters:\n  host: {{listen: '127.0.0.1:{port}'}}\n  gpu: {{listen: '127.0.0.1:{free_port()}'}}\n"
            "collectors: {disable_defaults: true, enable: [loadavg]}\n")


class _Daemon:
    """A daemon whose stderr goes to a file, read while it runs."""

    def __init__(self, tmp_path: Path, config: Path, python: list[str] | None = None) -> None:
        self.log = tmp_path / "agent.log"
        with open(self.log, "w") as log:
            argv = python or [sys.executable, "-m", "nodeagent"]
            self.proc = subprocess.Popen([*argv, "--role", "compute", "--config", str(config)],
                                         stdout=subprocess.DEVNULL, stderr=log)

    def events(self, name: str) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    out.append(event)
        return out

    def wait_events(self, name: str, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(events := self.events(name)) < count:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no {count}th {name}: {self.log.read_text()[-3000:]}"
            time.sleep(0.05)
        return events

    def stop_within(self, seconds: float) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(seconds + 5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()
    make(path)


@pytest.mark.slow
def test_every_case_on_reload_is_rejected_and_the_daemon_serves_on(tmp_path):
    config = tmp_path / "c.yaml"
    port = free_port()
    good = _daemon_config(port)
    config.write_text(good)
    daemon = _Daemon(tmp_path, config)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        for n, case in enumerate(sorted(CASES), start=1):
            make, expected = CASES[case]
            _replace(config, make)
            daemon.proc.send_signal(signal.SIGHUP)
            rejected = daemon.wait_events("reload_rejected", n)[-1]
            for part in expected:
                assert part in rejected["error"], (case, rejected)
            assert str(config) in rejected["error"] and len(rejected["error"]) < 1024
            assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).status == 200, case
        _replace(config, _write(good))
        assert daemon.stop_within(2.0) < 2.0
        assert daemon.proc.returncode == 0
        assert "Traceback" not in daemon.log.read_text()
    finally:
        daemon.kill()


def test_sigterm_during_a_reload_on_a_fifo(tmp_path):
    config = tmp_path / "c.yaml"
    port = free_port()
    config.write_text(_daemon_config(port))
    daemon = _Daemon(tmp_path, config)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        _replace(config, _fifo)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_events("reload_rejected", 1)
        daemon.proc.send_signal(signal.SIGHUP)
        assert daemon.stop_within(2.0) < 2.0 and daemon.proc.returncode == 0
    finally:
        daemon.kill()


# The daemon, with every reload after the first load blocked for good in
# reading the config (what a hung network filesystem does).
_BLOCKED_RELOAD = """
import sys, threading
import nodeagent.daemon as daemon
daemon.load_config = lambda path: threading.Event().wait()
from nodeagent.cli import main
sys.exit(main())
"""


def test_sigterm_ends_the_daemon_within_two_seconds_while_a_reload_is_blocked(tmp_path):
    config = tmp_path / "c.yaml"
    port = free_port()
    config.write_text(_daemon_config(port))
    daemon = _Daemon(tmp_path, config, python=[sys.executable, "-c", _BLOCKED_RELOAD])
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        daemon.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        # blocked in the reload, the daemon still serves
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).status == 200
        assert daemon.stop_within(2.0) < 2.0 and daemon.proc.returncode == 0
        assert daemon.events("agent_stopped")
    finally:
        daemon.kill()
