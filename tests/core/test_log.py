"""Journal priorities: when stderr is journald's stream (JOURNAL_STREAM names
its device and inode), each log line carries the sd-daemon prefix of its
level, and anything else written to stderr is an error. A file stands in
for the journal's socket here (the match is on device and inode);
test_journal_live.py runs the real systemd-journald."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from nodeagent import log as nlog


def journal_env(monkeypatch: pytest.MonkeyPatch, fileno: int) -> None:
    st = os.fstat(fileno)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")


def test_journal_stream_matches_device_and_inode(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = socket.socketpair()
    with a, b, a.makefile("w") as fa, b.makefile("w") as fb:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        assert not nlog.journal_stream(fa)
        journal_env(monkeypatch, a.fileno())
        assert nlog.journal_stream(fa)
        assert not nlog.journal_stream(fb)  # another socket: stderr redirected elsewhere
        assert not nlog.journal_stream(io.StringIO())
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not nlog.journal_stream(fa)


def test_with_priority() -> None:
    assert nlog.with_priority("x", "error") == "<3>x"
    assert nlog.with_priority("x", "warning") == "<4>x"
    assert nlog.with_priority("x", "info") == "<6>x"
    assert nlog.with_priority("x", "debug") == "<7>x"
    assert nlog.with_priority("x", "critical") == "<2>x"
    assert nlog.with_priority("a\nb", "error") == "<3>a\n<3>b"


def _log_every_level(path: Path, monkeypatch: pytest.MonkeyPatch, journal: bool, fmt: str = "json") -> list[str]:
    with open(path, "w") as stream:
        if journal:
            journal_env(monkeypatch, stream.fileno())
        else:
            monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        nlog.setup_logging("debug", fmt, stream)
        logger = structlog.get_logger("t")
        logger.debug("d_event")
        logger.info("i_event")
        logger.warning("w_event")
        logger.error("e_event")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("x_event")
    return path.read_text().splitlines()


def test_log_lines_carry_their_level_s_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _log_every_level(tmp_path / "journal", monkeypatch, journal=True)
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<3>"]
    assert '"event": "e_event"' in lines[3] and '"level": "error"' in lines[3]
    assert "boom" in lines[4]  # the traceback stays on the JSON line


def test_console_traceback_lines_are_all_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _log_every_level(tmp_path / "journal", monkeypatch, journal=True, fmt="console")
    tail = lines[lines.index(next(line for line in lines if "x_event" in line)):]
    assert len(tail) > 3 and all(line.startswith("<3>") for line in tail)


def test_no_prefix_off_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _log_every_level(tmp_path / "file", monkeypatch, journal=False)
    assert len(lines) == 5 and all(line.startswith("{") for line in lines)


def test_raw_stderr_lines_are_errors_prefixed_ones_kept() -> None:
    raw = io.StringIO()
    err = nlog._JournalErrors(raw)  # the wrapper journal_stderr() installs
    print("nodeagent: config.yaml: exporters.host.listen: bad", file=err)  # written in two pieces
    print('<4>{"event": "w"}', file=err)
    err.write("Traceback (most recent call last):\n  File ...\nValueError: x\npartial")
    err.write(" line\n")
    assert raw.getvalue().splitlines() == [
        "<3>nodeagent: config.yaml: exporters.host.listen: bad",
        '<4>{"event": "w"}',
        "<3>Traceback (most recent call last):",
        "<3>  File ...",
        "<3>ValueError: x",
        "<3>partial line",
    ]


def _run_cli(args: list[str], tmp_path: Path, journal: bool) -> tuple[int, str]:
    err = tmp_path / "stderr"
    with open(err, "w") as f:
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        if journal:
            st = os.fstat(f.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        r = subprocess.run([sys.executable, "-m", "nodeagent", *args], stderr=f, stdout=subprocess.DEVNULL,
                           env=env, timeout=60)  # fmt: skip
    return r.returncode, err.read_text()


def test_fatal_bad_config_line_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("exporters: {host: {listen: 'bad'}}\n")
    rc, text = _run_cli(["--role", "compute", "--config", str(cfg)], tmp_path, journal=True)
    assert rc == 78
    assert text.startswith("<3>nodeagent: ") and "listen" in text
    # off the journal, unchanged
    rc, text = _run_cli(["--role", "compute", "--config", str(cfg)], tmp_path, journal=False)
    assert rc == 78 and text.startswith("nodeagent: ")


def test_usage_error_is_an_error(tmp_path: Path) -> None:
    rc, text = _run_cli(["--no-such-flag"], tmp_path, journal=True)
    assert rc == 2
    assert text.splitlines() and all(line.startswith("<3>") for line in text.splitlines())
