"""Hostile textfiles against a real agent process on 127.0.0.1, and beside Debian's
node_exporter 1.5 on the same directory: every scrape is a 200 with a valid exposition,
each problem is logged once, secrets never reach the log, and the agent's memory stays
under 100 MB with a 64 MB file in the directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from testlib import free_port, wait_http

SECRET = "S3CR3T-hunter2"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROMTOOL = shutil.which("promtool")


class Agent:
    """A nodeagent process serving only :9100 (host group) on a free port."""

    def __init__(self, tmp_path: Path, directory: Path, extra: str = "") -> None:
        self.port = free_port()
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"exporters:\n  host: {{listen: '127.0.0.1:{self.port}', min_interval: 0}}\n  gpu: {{enabled: false}}\n"
            f"paths: {{textfile_dir: '{directory}'}}\nlog: {{format: json}}\n{extra}"
        )
        self.stderr = (tmp_path / "agent.log").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(cfg)],
            stdout=subprocess.DEVNULL, stderr=self.stderr,
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{self.port}/healthz", timeout=30)

    def get(self, path: str = "/metrics") -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def status(self, field: str) -> int:
        """A /proc/PID/status field in kB (VmRSS, VmHWM)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))  # type: ignore[union-attr]

    def log(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@pytest.fixture
def agent(tmp_path: Path):
    started: list[Agent] = []

    def start(directory: Path, extra: str = "") -> Agent:
        a = Agent(tmp_path, directory, extra)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def type_lines(text: str) -> list[str]:
    return re.findall(r"^# TYPE (\S+) ", text, re.M)


def test_hostile_directory_scrapes_are_200_and_valid(tmp_path: Path, agent) -> None:
    d = tmp_path / "textfile"
    d.mkdir()
    (d / "good.prom").write_text("# HELP site_up Site is up.\n# TYPE site_up gauge\nsite_up 1\n")
    (d / os.fsdecode(b"bad\xffname.prom")).write_text("m 1\n")  # every scrape was a 500
    os.mkfifo(d / "fifo.prom")
    (d / "dir.prom").mkdir()
    (tmp_path / "secret").write_text(f"password = {SECRET}\n")
    (d / "secret.prom").symlink_to(tmp_path / "secret")
    (d / "nonutf8.prom").write_bytes(b'm{a="' + SECRET.encode() + b'\xff"} 1\n')
    (d / "own.prom").write_text(
        "# HELP node_load1 mine\n# TYPE node_load1 gauge\nnode_load1 99\n"  # a second HELP/TYPE block before
        'node_scrape_collector_success{collector="cpu"} 0\nprocess_open_fds 1\nnodeagent_build_info 1\n'
        "node_textfile_scrape_error 0\nown_other 1\n"
    )
    a = agent(d)
    for _ in range(3):
        code, text = a.get()
        assert code == 200
        types = type_lines(text)
        assert len(types) == len(set(types)), "a family with two HELP/TYPE blocks"
        if PROMTOOL:  # Prometheus's own parser (lint remarks aside)
            check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
            assert "error while linting" not in check.stdout + check.stderr
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["site_up"].samples[0].value == 1 and families["own_other"].samples[0].value == 1
        assert families["node_textfile_scrape_error"].samples[0].value == 1
        assert families["node_load1"].samples[0].value != 99
        success = {s.labels["collector"]: s.value for s in families["node_scrape_collector_success"].samples}
        assert success["cpu"] == 1 and success["textfile"] == 1
    assert a.get("/healthz")[0] == 200
    log = a.log()
    assert SECRET not in log
    events = [line for line in log.splitlines() if '"textfile_' in line]
    assert len(events) == 10, events  # 5 files and 5 families, each logged once over 3 scrapes
    assert '"file": "' + str(d) + '/bad\\\\xffname.prom"' in log


# ---- beside node_exporter 1.5 --------------------------------------------------------------------

# Files on which nodeagent serves what node_exporter 1.5 serves (series, help, type).
SAME_AS_NODE_EXPORTER = {
    "a1.prom": "samea 1\n",  # one family without HELP in two files: merged, help names both
    "a2.prom": 'samea{x="2"} 2\n',
    "b1.prom": '# HELP h1 one\nh1{f="a"} 1\n',  # another help in a later file: that family lost
    "b2.prom": '# HELP h1 two\nh1{f="b"} 1\nb2other 5\n',
    "c1.prom": '# TYPE t1 gauge\nt1{f="a"} 1\n',  # another type in a later file
    "c2.prom": '# TYPE t1 counter\nt1{f="b"} 1\nc2other 5\n',
    "e1.prom": "xdup 1\nxdupother 1\n",  # a series repeated in a later file
    "e2.prom": "xdup 2\n",
    "k1.prom": 'mix{a="1"} 1\n',  # no HELP, then HELP: the default help wins, the later family is lost
    "k2.prom": '# HELP mix explicit\nmix{a="2"} 2\n',
    "j1.prom": 'lbl{a="1"} 1\nlbl{b="2"} 2\n',  # label names that vary within a family
    "esc.prom": '# HELP esc A \\\\ and\\nnewline.\nesc{p="C:\\\\d",q="\\"hi\\"\\n"} 1\n',
    "hist.prom": '# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le="0.1"} 1\nlat_bucket{le="+Inf"} 2\n'
                 'lat_sum 0.3\nlat_count 2\n# TYPE rpc summary\nrpc{quantile="0.5"} 0.1\nrpc_sum 1\nrpc_count 4\n',
    "ts.prom": "ts 1 1700000000000\n",  # timestamps: the file is left out by both
    "syntax.prom": 'syn{a="1" 1\n',  # a syntax error: left out by both
    "utf.prom": b'badutf{a="\xff"} 1\n'.decode("latin-1"),  # written as bytes below
    "nul.prom": 'nul{a="x\0y"} 1\n',  # a NUL in a label value is valid UTF-8: served by both
}


def user_series(text: str) -> dict[tuple[str, tuple], tuple[float, str, str]]:
    """Series of families not served by node_exporter or nodeagent themselves:
    (name, labels without empty ones) -> (value, family help, family type). Histograms and
    summaries count as untyped: nodeagent serves them as their untyped component series."""
    out = {}
    for fam in text_string_to_metric_families(text):
        if re.match(r"(node|go|process|promhttp|nodeagent)_", fam.name):
            continue
        kind = "unknown" if fam.type in ("histogram", "summary") else fam.type
        for s in fam.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if v))
            out[(s.name, labels)] = (s.value, fam.documentation, kind)
    return out


@pytest.mark.skipif(NODE_EXPORTER is None, reason="prometheus-node-exporter not installed")
def test_the_same_directory_as_node_exporter(tmp_path: Path, agent) -> None:
    d = tmp_path / "textfile"
    d.mkdir()
    for name, text in SAME_AS_NODE_EXPORTER.items():
        (d / name).write_bytes(text.encode("latin-1") if name == "utf.prom" else text.encode())
    port = free_port()
    ne = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--no-collector.systemd",
                           f"--collector.textfile.directory={d}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            theirs_text = r.read().decode()
    finally:
        ne.terminate()
        ne.wait(10)
    code, ours_text = agent(d).get()
    assert code == 200
    ours, theirs = user_series(ours_text), user_series(theirs_text)
    assert ours == theirs
    assert ("samea", ()) in ours and ("h1", (("f", "a"),)) in ours and ("h1", (("f", "b"),)) not in ours
    assert ours[("samea", ())][1] == f"Metric read from {d / 'a1.prom'}, {d / 'a2.prom'}"

    def scrape_error(text: str) -> float:
        return float(re.search(r"^node_textfile_scrape_error (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]

    assert scrape_error(ours_text) == scrape_error(theirs_text) == 1

    def files(text: str) -> set[str]:
        return {Path(f).name for f in re.findall(r'^node_textfile_mtime_seconds\{file="([^"]+)"\}', text, re.M)}

    assert files(ours_text) == files(theirs_text) == set(SAME_AS_NODE_EXPORTER) - {"ts.prom", "syntax.prom", "utf.prom"}


# ---- memory with a 64 MB file ----------------------------------------------------------------------

MB = 1024 * 1024


def write_series_file(path: Path, size: int) -> None:
    line = 'job_gpu_util{job="%d",gpu="%d",user="user%d"} 0.%d\n'
    with path.open("w") as f:
        i = 0
        while f.tell() < size:
            f.write("".join(line % (i + k, k % 8, k % 300, k) for k in range(10000)))
            i += 10000


def write_comment_file(path: Path, size: int, series: int) -> None:
    with path.open("w") as f:
        comment = "# " + "x" * 97 + "\n"
        block = comment * 10000
        while f.tell() < size:
            f.write(block)
        f.write("".join(f'tail_series{{i="{i}"}} {i}\n' for i in range(series)))


@pytest.mark.slow
def test_a_64mb_file_with_the_default_caps(tmp_path: Path, agent) -> None:
    d = tmp_path / "textfile"
    d.mkdir()
    (d / "good.prom").write_text("site_up 1\n")
    write_series_file(d / "big.prom", 64 * MB)
    a = agent(d)
    for _ in range(3):
        code, text = a.get()
        assert code == 200 and "site_up 1" in text and "node_textfile_scrape_error 1" in text
    assert "job_gpu_util" not in text
    assert a.status("VmHWM") < 100 * 1024, f"peak RSS {a.status('VmHWM')} kB"
    assert a.log().count("max_file_bytes") == 1


@pytest.mark.slow
def test_64mb_files_streamed_with_raised_byte_caps(tmp_path: Path, agent) -> None:
    # with the byte caps raised, the files are read: a line at a time, never whole; one
    # stops at the series cap, one (comments, then 1,000 series) is served
    d = tmp_path / "textfile"
    d.mkdir()
    (d / "good.prom").write_text("site_up 1\n")
    write_series_file(d / "big-series.prom", 64 * MB)
    write_comment_file(d / "big-comments.prom", 64 * MB, 1000)
    a = agent(d, "collectors:\n  timeout: 60\n  options:\n    textfile: {max_file_bytes: 134217728, "
                 "max_total_bytes: 268435456}\n")  # fmt: skip
    started = time.monotonic()
    code, text = a.get()
    first = time.monotonic() - started
    assert code == 200 and "site_up 1" in text and 'tail_series{i="999"} 999' in text
    assert "job_gpu_util" not in text and "node_textfile_scrape_error 1" in text
    for _ in range(3):
        assert a.get()[0] == 200
    hwm = a.status("VmHWM")
    print(f"first scrape {first:.1f} s, peak RSS {hwm / 1024:.0f} MB")
    assert hwm < 100 * 1024, f"peak RSS {hwm} kB"
    assert re.search(r'"line": \d+, "error": "more than 25000 series"', a.log())


def fill(path: Path, size: int, count: int, line) -> int:
    """Write at most count lines line(i) while they fit in size bytes; returns how many."""
    written = i = 0
    with path.open("w") as f:
        while i < count and written + len(text := line(i)) <= size:
            f.write(text)
            written += len(text)
            i += 1
    return i


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["series", "long label values", "long help"])
def test_files_that_fill_the_default_caps(tmp_path: Path, agent, kind: str) -> None:
    # what the default caps let in, however it is made up, keeps the agent under 100 MB
    from nodeagent.collectors.host.textfile import TextfileOptions

    caps = TextfileOptions()
    lines = {
        "series": lambda f: lambda i: f'job_util_{f}{{job="{100000 + i}",gpu="{i % 8}",user="u{i % 300}"}} 0.{i}\n',
        "long label values": lambda f: lambda i: f'l{f}{{i="{i}",v="' + f"{i:07d}" * 40 + '"} 1\n',
        "long help": lambda f: lambda i: f"# HELP h{f}_{i} " + "x" * (MAX_HELP - 100) + f"\nh{f}_{i} 1\n",
    }[kind]
    d = tmp_path / "textfile"
    d.mkdir()
    for f in range(2):
        size = min(caps.max_total_bytes // 2, caps.max_file_bytes)
        assert fill(d / f"f{f}.prom", size, min(caps.max_total_series // 2, caps.max_file_series), lines(f)) > 0
    a = agent(d)
    for _ in range(5):
        code, text = a.get()
        assert code == 200 and "node_textfile_scrape_error 0" in text
    hwm = a.status("VmHWM")
    print(f"{kind}: peak RSS {hwm / 1024:.0f} MB")
    assert hwm < 100 * 1024, f"peak RSS {hwm} kB"


MAX_HELP = 512 * 1024  # half the line cap
