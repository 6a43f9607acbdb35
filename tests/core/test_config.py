"""Every kind of config mistake gets one line naming the file, the key and the problem."""

import subprocess
import sys

import pytest

from nodeagent.config import Config, enabled_collectors, load_config, parse_config
from nodeagent.settings import ConfigError


def err(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/etc/nodeagent/config.yaml")
    return str(e.value)


def test_defaults_without_a_file(tmp_path):
    cfg = parse_config("", "x.yaml")
    assert cfg.exporters.host.listen == ":9100"
    assert cfg.exporters.gpu.listen == ":9400"
    assert cfg.exporters.slurm.listen == ":9341"
    assert "loadavg" in enabled_collectors(cfg, "compute")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus: 1", "/etc/nodeagent/config.yaml: bogus: unknown key"),
        ("exporters: {host: {listne: ':9100'}}", "exporters.host.listne: unknown key"),
        ("exporters: {host: {listen: ':99999'}}", "exporters.host.listen: port must be a number from 0 to 65535"),
        ("exporters: {host: {listen: 'nope'}}", "exporters.host.listen: listen address must look like"),
        ("exporters: {host: {min_interval: fast}}", "exporters.host.min_interval: expected a number, got str 'fast'"),
        ("exporters: {host: {min_interval: -1}}", "exporters.host.min_interval: must be a finite number, 0 or more"),
        ("collectors: {timeout: 0}", "collectors.timeout: must be a finite number greater than 0"),
        ("collectors: {timeout: .inf}", "collectors.timeout: must be a finite number greater than 0, got inf"),
        ("collectors: {enable: [nosuch]}", "collectors.enable[0]: unknown collector 'nosuch'"),
        ("collectors: {disable: loadavg}", "collectors.disable: expected a list, got str 'loadavg'"),
        ("collectors: {options: {nosuch: {}}}", "collectors.options.nosuch: unknown collector 'nosuch'"),
        ("collectors: {options: {loadavg: {x: 1}}}", "collectors.options.loadavg.x: unknown key"),
        ("role: boss", "role: must be one of"),
        ("log: {level: loud}", "log.level: must be one of"),
        ("exporters: {host: {enabled: 'yes'}}", "exporters.host.enabled: expected true or false"),
        ("- a\n- b", "the top level must be a mapping"),
        ("exporters: {host: [1, 2]}", "exporters.host: expected a mapping, got a list"),
        ("exporters:\n  host: {listen: ':9100'\n", "not valid YAML at line"),
    ],
)
def test_every_kind_of_mistake_is_named(text, expected):
    message = err(text)
    assert expected in message
    assert "\n" not in message


def test_regex_options_are_compiled():
    from dataclasses import dataclass, field

    from nodeagent.settings import load_dataclass

    @dataclass(frozen=True)
    class Opts:
        exclude: str = field(default="^lo$", metadata={"regex": True})

    with pytest.raises(ConfigError, match=r"f.yaml: collectors.options.x.exclude: invalid regular expression"):
        load_dataclass(Opts, {"exclude": "(unclosed"}, "f.yaml", "collectors.options.x")


def test_named_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_disable_defaults_and_enable():
    cfg = parse_config("collectors: {disable_defaults: true, enable: [loadavg]}", "x")
    assert enabled_collectors(cfg, "compute") == ["loadavg"]
    cfg = parse_config("collectors: {disable: [loadavg]}", "x")
    assert "loadavg" not in enabled_collectors(cfg, "compute")


def test_bad_config_exits_78_with_one_line_and_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("exporters: {host: {listen: ':70000'}}\n")
    proc = subprocess.run([sys.executable, "-m", "nodeagent", "--role", "compute", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 78
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert f"{path}: exporters.host.listen: port must be" in proc.stderr


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.role = "head"  # type: ignore[misc]
