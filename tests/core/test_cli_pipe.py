"""No command ends in a traceback when its reader goes away
(`nodeagent collectors | head`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv", [
    ["collectors", "--role", "login"],
    ["collectors", "--role", "login", "--json"],
    ["prometheus-config", "--cluster", "demo", "--region", "us-east-1"],
    ["--role", "login", "--once"],
    ["check", "--role", "login", "--no-endpoints", "--json"],
    ["--help"],
])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path, argv):
    config = tmp_path / "c.yaml"
    config.write_text("collectors: {disable_defaults: true, enable: [uname, loadavg]}\ncloudwatch: {enabled: false}\n")
    if argv[0] in ("check", "collectors", "--role"):
        argv = [*argv, "--config", str(config)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "nodeagent", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.stderr == ""
    assert proc.returncode in (0, 1)  # 0: argparse's --help swallows the error itself


def test_head_reads_the_first_lines():
    proc = subprocess.run(f"'{sys.executable}' -m nodeagent collectors --role head | head -n 2", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("role head, config ") and proc.stdout.splitlines()[1].startswith("NAME")
    assert proc.stderr == ""
