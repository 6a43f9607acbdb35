"""The textfile collector reads only regular files, and never quotes file lines in its errors."""

import os

from nodeagent.collectors.host.textfile import TextfileCollector
from nodeagent.config import parse_config
from nodeagent.host import Host
from nodeagent.registry import CollectorContext


def collector(directory):
    cfg = parse_config(f"paths: {{textfile_dir: '{directory}'}}\n", "c.yaml")
    return TextfileCollector(Host(), TextfileCollector.Options(), CollectorContext(cfg, "compute"))


def values(families):
    return {(f.name, labels): v for f in families for labels, v in f.samples}


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "stuck.prom")
    (tmp_path / "good.prom").write_text("site_up 1\n")
    got = values(collector(tmp_path).collect())  # would block for ever on open()/read() of the FIFO
    assert got[("site_up", ())] == 1
    assert got[("node_textfile_scrape_error", ())] == 1


def test_a_symlink_to_a_regular_file_is_read(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("site_up 1\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link.prom").symlink_to(target)
    assert values(collector(tmp_path / "d").collect())[("site_up", ())] == 1


def test_parse_errors_do_not_quote_the_line(tmp_path, capsys):
    from nodeagent.log import setup_logging

    setup_logging("info", "json")
    (tmp_path / "bad.prom").write_text("aws_secret_access_key = AKIAEXAMPLESECRET\n")
    collector(tmp_path).collect()
    assert "AKIAEXAMPLESECRET" not in capsys.readouterr().err
