"""Hostile textfiles, in-process: whatever is dropped into the textfile directory costs only
the file it is in (or only its family), is counted in node_textfile_scrape_error, logged
once with the file and line number and never with the file's text, and never stops the
scrape. Each case sits beside a good file that must still be served."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest
import structlog

from nodeagent.collectors.host.textfile import MAX_LABEL_NAMES, MAX_LINE_BYTES, TextfileCollector, TextfileOptions
from nodeagent.config import parse_config
from nodeagent.exposition import render
from nodeagent.host import Host
from nodeagent.registry import CollectorContext

SECRET = "S3CR3T-hunter2"  # in every bad line: it must never reach a log


def collector(directory: Path, config: str = "", role: str = "compute", host: Host | None = None,
              **limits: int) -> TextfileCollector:  # fmt: skip
    cfg = parse_config(f"paths: {{textfile_dir: '{directory}'}}\n{config}", "c.yaml")
    return TextfileCollector(host or Host(), TextfileOptions(**limits), CollectorContext(cfg, role))


def scrape(c: TextfileCollector) -> tuple[dict[tuple[str, tuple[str, ...]], float], list[dict]]:
    """One collection: its samples by (name, label values), and what it logged."""
    with structlog.testing.capture_logs() as logs:
        fams = c.collect()
    render(fams)  # a scrape that cannot be rendered would be a 500
    names = [f.name for f in fams]
    assert len(names) == len(set(names)), "a family served twice"
    return {(f.name, labels): v for f in fams for labels, v in f.samples}, logs


def served_files(got: dict) -> set[str]:
    return {Path(labels[0]).name for name, labels in got if name == "node_textfile_mtime_seconds"}


def scrape_error(got: dict) -> float:
    return got[("node_textfile_scrape_error", ())]


@pytest.fixture
def tf(tmp_path: Path) -> Path:
    directory = tmp_path / "textfile"
    directory.mkdir()
    (directory / "good.prom").write_text("# HELP site_up Site is up.\n# TYPE site_up gauge\nsite_up 1\n")
    return directory


# ---- a bad file costs only itself ------------------------------------------------------------------

BAD_FILES = {
    # name: (bytes, line blamed (0: the file as a whole), words of the logged error)
    "label value not UTF-8": (b'ok 1\nm{a="' + SECRET.encode() + b'\xff"} 1\n', 2, "not valid UTF-8"),
    "HELP not UTF-8": (b"# HELP m " + SECRET.encode() + b"\xfe\xfe\nm 1\n", 1, "not valid UTF-8"),
    "UTF-16 with BOM": ("m 1\n".encode("utf-16"), 1, "not valid UTF-8"),
    "Latin-1 text": ("m{city=\"Zürich\"} 1\n".encode("latin-1"), 1, "not valid UTF-8"),
    "all NUL bytes": (b"\0" * 4096, 1, "invalid metric name"),
    "NUL in a metric name": (b"ok 1\nm\0" + SECRET.encode() + b" 1\n", 2, "invalid character"),
    "NUL after the value": (b"m 1\0" + SECRET.encode() + b"\n", 1, "invalid value"),
    "random binary": (random.Random(14).randbytes(20000), 1, ""),
    "line over the cap": (b'm{a="' + b"x" * (MAX_LINE_BYTES + 10) + b'"} 1\n', 1, "longer than"),
    "no newline, over the cap": (b"#" + SECRET.encode() * (MAX_LINE_BYTES // 8), 1, "longer than"),
    "truncated in a label": (b'ok 1\nm{a="' + SECRET.encode(), 2, "unterminated"),
    "client-side timestamp": (b"m 1 1700000000000\n", 1, "timestamps"),
    "bad timestamp": (b"m 1 " + SECRET.encode() + b"\n", 1, "invalid timestamp"),
    "name starts with a digit": (b"0" + SECRET.encode() + b" 1\n", 1, "invalid metric name"),
    "dash in a name": (b"m-" + SECRET.encode() + b" 1\n", 1, "invalid character"),
    "dot in a name": (b"m." + SECRET.encode() + b" 1\n", 1, "invalid character"),
    "secret as key = value": (b"aws_secret_access_key = " + SECRET.encode() + b"\n", 1, "invalid value"),
    "label name starts with a digit": (b'm{0a="' + SECRET.encode() + b'"} 1\n', 1, "invalid label name"),
    "invalid escape": (b'm{a="\\' + SECRET.encode() + b'"} 1\n', 1, "invalid escape"),
    "duplicate label name": (b'm{a="1",a="' + SECRET.encode() + b'"} 1\n', 1, "duplicate label name"),
    "__name__ label": (b'm{__name__="' + SECRET.encode() + b'"} 1\n', 1, "reserved"),
    "missing value": (b'm{a="' + SECRET.encode() + b'"}\n', 1, "missing value"),
    "value not a number": (b"m " + SECRET.encode() + b"\n", 1, "invalid value"),
    "text after the value": (b"m 1 2 " + SECRET.encode() + b"\n", 1, "unexpected text"),
    "duplicate series": (b'm{a="1"} 1\nm{a="1"} 2\n', 2, "duplicate series"),
    "duplicate by an empty label": (b'm{a="1"} 1\nm{b="",a="1"} 2\n', 2, "duplicate series"),
    "second HELP": (b"# HELP m one\n# HELP m " + SECRET.encode() + b"\nm 1\n", 2, "second HELP"),
    "second TYPE": (b"# TYPE m gauge\n# TYPE m counter\nm 1\n", 2, "second TYPE"),
    "TYPE after samples": (b"m 1\n# TYPE m gauge\n", 2, "TYPE reported after samples"),
    "unknown TYPE": (b"# TYPE m " + SECRET.encode() + b"\nm 1\n", 1, "unknown metric type"),
    "HELP with a bad name": (b"# HELP 9" + SECRET.encode() + b" x\n", 1, "invalid metric name"),
    "histogram bucket without le": (b"# TYPE h histogram\nh_bucket 1\n", 2, "'le'"),
    "histogram sample without suffix": (b"# TYPE h histogram\nh 1\n", 2, "histogram sample"),
    "summary sample without quantile": (b"# TYPE s summary\ns 1\n", 2, "'quantile'"),
    "too many label names": (
        b"m{" + b",".join(b'l%d="v"' % i for i in range(MAX_LABEL_NAMES + 1)) + b"} 1\n", 1, "label names"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_costs_only_itself(tf: Path, case: str) -> None:
    data, line, words = BAD_FILES[case]
    (tf / "bad.prom").write_bytes(data)
    got, logs = scrape(collector(tf))
    assert got[("site_up", ())] == 1
    assert served_files(got) == {"good.prom"}
    assert {name for name, _ in got} == {"site_up", "node_textfile_mtime_seconds", "node_textfile_scrape_error"}
    assert scrape_error(got) == 1
    (event,) = logs
    assert (event["event"], event["file"]) == ("textfile_failed", str(tf / "bad.prom"))
    assert event.get("line", 0) == line and words in event["error"]
    assert SECRET not in repr(logs)


def test_a_file_name_that_is_not_utf8(tf: Path) -> None:
    # node_exporter 1.5 panics on it; nodeagent answered every scrape with a 500
    (tf / os.fsdecode(b"bad\xff" + SECRET.encode() + b".prom")).write_text("m 1\n")
    got, logs = scrape(collector(tf))
    assert served_files(got) == {"good.prom"} and ("m", ()) not in got
    assert scrape_error(got) == 1
    (event,) = logs
    assert event["file"] == str(tf / "bad\\xffS3CR3T-hunter2.prom")  # the name, escaped: it is not content
    assert "not valid UTF-8" in event["error"]


def test_a_file_name_in_utf8_is_served(tf: Path) -> None:
    (tf / "métriques ü.prom").write_text("m 1\n")
    got, _ = scrape(collector(tf))
    assert got[("m", ())] == 1 and served_files(got) == {"good.prom", "métriques ü.prom"}
    assert scrape_error(got) == 0


# ---- what is not a regular file is not read --------------------------------------------------------


def test_a_fifo_is_refused_without_opening_it(tf: Path) -> None:
    os.mkfifo(tf / "stuck.prom")
    got, logs = scrape(collector(tf))  # would block for ever on open() of a FIFO with no writer
    assert served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert [(e["file"], e["error"]) for e in logs] == [(str(tf / "stuck.prom"), "not a regular file")]


def test_a_directory_named_prom(tf: Path) -> None:
    (tf / "dir.prom").mkdir()
    (tf / "dir.prom" / "inner.prom").write_text("inner 1\n")
    got, logs = scrape(collector(tf))
    assert ("inner", ()) not in got and served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert logs[0]["error"] == "not a regular file"


def test_a_socket_named_prom(tf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tf)  # a relative name: a socket path may be at most 108 bytes
    with socket.socket(socket.AF_UNIX) as s:
        s.bind("sock.prom")
        got, logs = scrape(collector(tf))
    assert served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert logs[0]["error"] == "not a regular file"


def test_a_symlink_to_a_device_is_not_read(tf: Path) -> None:
    (tf / "zero.prom").symlink_to("/dev/zero")  # read, it would never end
    got, logs = scrape(collector(tf))
    assert served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert logs[0]["error"] == "not a regular file"


def test_dangling_and_looping_symlinks(tf: Path) -> None:
    (tf / "gone.prom").symlink_to(tf / "nowhere")
    (tf / "loop.prom").symlink_to(tf / "loop.prom")
    got, logs = scrape(collector(tf))
    assert served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert {Path(e["file"]).name for e in logs} == {"gone.prom", "loop.prom"}
    assert all(e["error"].startswith("cannot read: ") for e in logs)


def test_a_symlink_to_a_secret_never_shows_its_text(tf: Path, tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text(f"[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = {SECRET}\n")
    (tf / "creds.prom").symlink_to(secret)
    got, logs = scrape(collector(tf))
    assert served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert logs[0]["line"] == 1  # "[default]": '[' starts no metric name
    assert "AKIAEXAMPLE" not in repr(logs) and SECRET not in repr(logs) and "default" not in repr(logs)


def test_a_symlink_to_a_good_file_is_served(tf: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.txt").write_text("linked 1\n")
    (tf / "link.prom").symlink_to(tmp_path / "elsewhere.txt")
    got, _ = scrape(collector(tf))
    assert got[("linked", ())] == 1 and scrape_error(got) == 0


class _Unreadable(Host):
    """Opening one file fails as it does for a file the agent's user may not read (the
    tests run as root, for whom chmod 000 changes nothing)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def open_regular(self, path: Path):  # type: ignore[override]
        if path.name == self.name:
            raise PermissionError(13, "Permission denied", str(path))
        return super().open_regular(path)


def test_an_unreadable_file(tf: Path) -> None:
    (tf / "private.prom").write_text(f"m{{a=\"{SECRET}\"}} 1\n")
    got, logs = scrape(collector(tf, host=_Unreadable("private.prom")))
    assert served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert [(Path(e["file"]).name, e["error"]) for e in logs] == [("private.prom", "cannot read: Permission denied")]


def test_a_missing_directory_and_a_file_in_place_of_it(tmp_path: Path) -> None:
    got, logs = scrape(collector(tmp_path / "nope"))
    assert scrape_error(got) == 1 and logs[0]["file"] == str(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    got, logs = scrape(collector(tmp_path / "file"))
    assert scrape_error(got) == 1 and logs[0]["file"] == str(tmp_path / "file")
    assert logs[0]["error"] == "cannot read directory: not a directory"


def test_other_names_are_ignored(tf: Path) -> None:
    for name in ("notes.txt", "x.prom.tmp", ".prom", "x.PROM", "x.prom~"):
        (tf / name).write_bytes(b"\xff\xfe garbage")
    got, logs = scrape(collector(tf))
    # ".prom" itself ends with ".prom" and is a file named so: node_exporter reads it too
    assert scrape_error(got) == 1 and [Path(e["file"]).name for e in logs] == [".prom"]
    assert served_files(got) == {"good.prom"}


# ---- caps ------------------------------------------------------------------------------------------


def series_file(path: Path, n: int, name: str = "m") -> None:
    path.write_text("".join(f'{name}{{i="{i}"}} {i}\n' for i in range(n)))


def test_a_file_over_max_file_bytes_is_not_read(tf: Path) -> None:
    (tf / "big.prom").write_bytes(b"#" * 2000 + b"\n")
    c = collector(tf, max_file_bytes=1000)
    got, logs = scrape(c)
    assert served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert "max_file_bytes (1000)" in logs[0]["error"]
    assert c.parses == 1  # good.prom only


def test_a_file_over_max_file_series(tf: Path) -> None:
    series_file(tf / "many.prom", 101)
    got, logs = scrape(collector(tf, max_file_series=100))
    assert served_files(got) == {"good.prom"} and scrape_error(got) == 1
    assert (logs[0]["line"], logs[0]["error"]) == (101, "more than 100 series")


def test_files_over_the_totals_are_left_out_in_name_order(tf: Path) -> None:
    series_file(tf / "a.prom", 60, "a")
    series_file(tf / "b.prom", 60, "b")
    c = collector(tf, max_total_series=100)
    got, logs = scrape(c)
    assert served_files(got) == {"a.prom", "good.prom"} and scrape_error(got) == 1
    assert Path(logs[0]["file"]).name == "b.prom"
    assert logs[0]["error"] == "over max_total_series (100) with the files before it"
    parses = c.parses
    got, logs = scrape(c)
    assert c.parses == parses and logs == []  # not parsed nor logged again
    series_file(tf / "a.prom", 10, "a")  # room again
    got, logs = scrape(c)
    assert served_files(got) == {"a.prom", "b.prom", "good.prom"} and scrape_error(got) == 0
    assert [e["event"] for e in logs] == ["textfile_recovered"]


def test_files_over_max_total_bytes(tf: Path) -> None:
    (tf / "a.prom").write_text("a 1\n" + "#" * 500 + "\n")
    (tf / "b.prom").write_text("b 1\n" + "#" * 500 + "\n")
    c = collector(tf, max_total_bytes=700)
    got, logs = scrape(c)
    assert served_files(got) == {"a.prom", "good.prom"} and scrape_error(got) == 1  # good.prom fits after b
    assert [Path(e["file"]).name for e in logs] == ["b.prom"]
    assert "over max_total_bytes (700)" in logs[0]["error"]
    assert c.parses == 2  # b.prom, over the total, is not even read


def test_a_file_growing_past_the_cap_while_read(tf: Path) -> None:
    # what the stat said was small is read with the cap all the same
    class Growing(Host):
        def stat(self, path: Path) -> os.stat_result:
            st = super().stat(path)
            if path.name == "grows.prom":
                fields = list(st)
                fields[6] = 10  # st_size as it was at the stat
                return os.stat_result(fields)
            return st

    (tf / "grows.prom").write_text("m 1\n" + "#" * 5000 + "\n")
    got, logs = scrape(collector(tf, host=Growing(), max_file_bytes=1000))
    assert served_files(got) == {"good.prom"} and "larger than 1000 bytes" in logs[0]["error"]


@pytest.mark.parametrize("bad", ["0", "-1", str(2**40), "1.5", "true", "'16M'"])
def test_limits_are_checked_in_the_config(bad: str) -> None:
    from nodeagent.config import ConfigError, collector_options

    with pytest.raises(ConfigError, match=r"collectors\.options\.textfile\.max_file_bytes"):
        cfg = parse_config(f"collectors: {{options: {{textfile: {{max_file_bytes: {bad}}}}}}}\n", "c.yaml")
        collector_options(cfg, "textfile")


# ---- parse once, log once --------------------------------------------------------------------------


def test_a_big_file_with_a_bad_last_line_is_parsed_once(tf: Path) -> None:
    big = tf / "big.prom"
    with big.open("w") as f:
        f.write("".join(f'm{{i="{i}"}} {i}\n' for i in range(20000)))
        f.write("m{i=oops} 1\n")
    c = collector(tf)
    got, logs = scrape(c)
    assert scrape_error(got) == 1 and logs[0]["line"] == 20001
    assert c.parses == 2
    for _ in range(3):
        got, logs = scrape(c)
        assert scrape_error(got) == 1 and got[("site_up", ())] == 1 and logs == []
    assert c.parses == 2  # neither the bad file nor the good one is parsed again
    os.utime(big, ns=(1, 1))  # a new mtime: parsed again
    scrape(c)
    assert c.parses == 3


@pytest.mark.slow
def test_a_40mb_file_with_a_bad_last_line_is_parsed_once(tf: Path) -> None:
    # the case that cost 5.2 s of parsing on every scrape
    big = tf / "big.prom"
    with big.open("w") as f:
        block = ("# " + "x" * 97 + "\n") * 10000
        for _ in range(40):
            f.write(block)
        f.write("m 1 2 3\n")
    c = collector(tf, max_file_bytes=64 * 1024 * 1024, max_total_bytes=64 * 1024 * 1024)
    got, logs = scrape(c)
    assert scrape_error(got) == 1 and logs[0]["line"] == 400001 and c.parses == 2
    for _ in range(3):
        got, logs = scrape(c)
        assert got[("site_up", ())] == 1 and logs == []
    assert c.parses == 2


def test_a_file_replaced_by_rename_is_parsed_again(tf: Path) -> None:
    c = collector(tf)
    scrape(c)
    tmp = tf / "good.prom.tmp"
    tmp.write_text("site_up 0\n")  # same size class, maybe the same mtime second
    os.replace(tmp, tf / "good.prom")
    got, _ = scrape(c)
    assert got[("site_up", ())] == 0 and c.parses == 2


def test_a_problem_is_logged_once_and_its_end_once(tf: Path) -> None:
    (tf / "bad.prom").write_text("m 1 2 3\n")
    c = collector(tf)
    events = [e for _ in range(5) for e in scrape(c)[1]]
    assert [e["event"] for e in events] == ["textfile_failed"]
    (tf / "bad.prom").write_text("m{a=} 1\n")  # another error: logged, once
    logs = scrape(c)[1]
    assert [(e["event"], e["error"]) for e in logs] == [("textfile_failed", "expected '\"' to start a label value")]
    assert scrape(c)[1] == []
    (tf / "bad.prom").write_text("m 1\n")
    got, logs = scrape(c)
    assert scrape_error(got) == 0 and [(e["event"], Path(e["file"]).name) for e in logs] == [
        ("textfile_recovered", "bad.prom")
    ]
    (tf / "bad.prom").unlink()
    assert scrape(c)[1] == []


# ---- families the agent serves itself --------------------------------------------------------------

SERVED = [
    "node_load1",  # loadavg
    "node_cpu_seconds_total",  # cpu
    "node_memory_MemFree_bytes",  # meminfo, a pattern family
    "node_memory_Anything_bytes",  # ... any name of that pattern
    "node_scrape_collector_success",
    "node_scrape_collector_duration_seconds",
    "node_textfile_scrape_error",
    "node_textfile_mtime_seconds",
    "process_open_fds",
    "process_anything",
    "nodeagent_build_info",
    "nodeagent_anything",
]


@pytest.mark.parametrize("name", SERVED)
def test_a_served_family_is_not_redefined(tf: Path, name: str) -> None:
    (tf / "x.prom").write_text(f"# HELP {name} mine\n{name}{{collector=\"cpu\"}} 99\nx_other 1\n")
    got, logs = scrape(collector(tf))
    assert (name, ("cpu",)) not in got
    assert got[("x_other", ())] == 1 and served_files(got) == {"good.prom", "x.prom"}  # the rest of the file
    assert scrape_error(got) == 1
    (event,) = logs
    assert (event["event"], event["metric"]) == ("textfile_metric_dropped", name)
    assert "served by" in event["error"]
    assert scrape(collector(tf))[0] == got  # and so on every scrape


def test_a_family_of_a_collector_that_does_not_run_is_served(tf: Path) -> None:
    # node_exporter parity: with its loadavg collector off, node_load1 may come from a file
    (tf / "x.prom").write_text("node_load1 99\n")
    got, logs = scrape(collector(tf, config="collectors: {disable: [loadavg]}\n"))
    assert got[("node_load1", ())] == 99 and scrape_error(got) == 0 and logs == []


def test_node_prefixed_families_of_no_collector_are_served(tf: Path) -> None:
    # what textfile collector scripts commonly write
    (tf / "x.prom").write_text("node_reboot_required 0\nnode_apt_upgrades_pending{origin=\"x\"} 3\n")
    got, _ = scrape(collector(tf))
    assert got[("node_reboot_required", ())] == 0 and scrape_error(got) == 0


# ---- several files, one family: node_exporter 1.5's merge ------------------------------------------


def test_one_family_without_help_in_two_files(tf: Path) -> None:
    (tf / "a.prom").write_text("jobs 1\n")
    (tf / "b.prom").write_text('jobs{queue="gpu"} 2\n')
    c = collector(tf)
    fams = {f.name: f for f in c.collect()}
    assert fams["jobs"].help == f"Metric read from {tf / 'a.prom'}, {tf / 'b.prom'}"
    assert sorted(fams["jobs"].samples) == [(("",), 1), (("gpu",), 2)]


def test_one_family_with_one_help_in_two_files(tf: Path) -> None:
    for name, gpu in (("a.prom", "0"), ("b.prom", "1")):
        (tf / name).write_text(f'# HELP util GPU use.\n# TYPE util gauge\nutil{{gpu="{gpu}"}} 0.5\n')
    got, logs = scrape(collector(tf))
    assert got[("util", ("0",))] == got[("util", ("1",))] == 0.5 and scrape_error(got) == 0 and logs == []


@pytest.mark.parametrize(
    ("second", "words"),
    [
        ('# HELP util Other.\n# TYPE util gauge\nutil{gpu="1"} 1\n', "another help text"),
        ('# TYPE util gauge\nutil{gpu="1"} 1\n', "another help text"),  # the default help is another
        ('util{gpu="1"} 1\n', "type untyped here but gauge"),
        ('# HELP util GPU use.\n# TYPE util counter\nutil{gpu="1"} 1\n', "type counter here but gauge"),
        ('# HELP util GPU use.\n# TYPE util gauge\nutil{gpu="0"} 7\n', "repeats a series"),
        ('# HELP util GPU use.\n# TYPE util gauge\nutil{gpu="0",x=""} 7\n', "repeats a series"),
    ],
)
def test_a_later_file_that_disagrees_loses_that_family(tf: Path, second: str, words: str) -> None:
    (tf / "a.prom").write_text('# HELP util GPU use.\n# TYPE util gauge\nutil{gpu="0"} 0.5\n')
    (tf / "b.prom").write_text(second + "b_other 1\n")
    got, logs = scrape(collector(tf))
    assert [k for k in got if k[0] == "util"] == [("util", ("0",))] and got[("util", ("0",))] == 0.5
    assert got[("b_other", ())] == 1 and served_files(got) == {"a.prom", "b.prom", "good.prom"}
    assert scrape_error(got) == 1
    (event,) = logs
    assert (Path(event["file"]).name, event["metric"]) == ("b.prom", "util") and words in event["error"]


def test_label_escapes_round_trip(tf: Path) -> None:
    (tf / "esc.prom").write_text(
        '# HELP esc A \\\\ backslash\\nand a newline.\nesc{path="C:\\\\dir",q="say \\"hi\\"\\nbye"} 1\n'
    )
    text = render(collector(tf).collect()).decode()
    assert "# HELP esc A \\\\ backslash\\nand a newline.\n" in text
    assert 'esc{path="C:\\\\dir",q="say \\"hi\\"\\nbye"} 1\n' in text
