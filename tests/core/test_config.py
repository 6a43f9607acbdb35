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
        ("exporters: {host: {min_interval: -1}}", "exporters.host.min_interval: must be from 0 to 3600 (seconds)"),
        ("collectors: {timeout: 0}", "collectors.timeout: must be more than 0 and at most 600 (seconds), got 0"),
        ("collectors: {timeout: .inf}", "collectors.timeout: must be a finite number, got inf"),
        ("collectors: {timeout: 1.0e+308}", "collectors.timeout: must be more than 0 and at most 600 (seconds)"),
        ("gpu: {interval: 1.0e+39}", "gpu.interval: must be from 0.1 to 3600 (seconds)"),
        ("gpu: {interval: .nan}", "gpu.interval: must be a finite number, got nan"),
        ("gpu: {expected_gpus: 99999999999999999999}", "gpu.expected_gpus: number out of range"),
        ("gpu: {xid_count_window_ms: 99999999999}", "gpu.xid_count_window_ms: must be from 1000 to 604800000"),
        ("slurm: {interval: 1.0e+10}", "slurm.interval: must be more than 0 and at most 86400 (seconds)"),
        ("cloudwatch: {read_timeout: .inf}", "cloudwatch.read_timeout: must be a finite number"),
        ("cloudwatch: {spool_max_bytes: 9223372036854775807}", "cloudwatch.spool_max_bytes: must be from 1048576"),
        ("collectors: {options: {filesystem: {mount_timeout: 1.0e+300}}}",
         "collectors.options.filesystem.mount_timeout: must be more than 0 and at most 600"),
        ("exporters: {host: {listen: '[::1:39196'}}", "exporters.host.listen: not an IPv6 address in brackets"),
        ("exporters: {host: {listen: '::1:9100'}}", "exporters.host.listen: an IPv6 address must be in brackets"),
        ("exporters: {host: {listen: ':\uff19\uff11\uff10\uff10'}}",  # full-width digits
         "exporters.host.listen: port must be a number from 0 to 65535"),
        ("exporters: {host: {listen: 'no-such-host.invalid:9100'}}",
         "exporters.host.listen: cannot resolve host 'no-such-host.invalid'"),
        ("role: compute\nrole: head\n", "config.yaml: role: duplicate key 'role' at line 2"),
        ("exporters:\n  gpu: {enabled: true, enabled: false}\n", "exporters.gpu.enabled: duplicate key 'enabled'"),
        ("hostname: \"a\\0b\"", "hostname: must not contain a NUL character"),
        ("hostname: " + "[" * 5000 + "]" * 5000, "YAML nested deeper than 64 levels at line 1"),
        ("a: &a [*a]", "refers to a node that contains it"),
        ("hostname: 2024-13-45", "not valid YAML: a value cannot be read (month must be in 1..12)"),
        ("gpu: {expected_gpus: " + "9" * 5000 + "}", "a value cannot be read (a number of too many digits)"),
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


@pytest.mark.parametrize("listen", [":0", "0.0.0.0:0", "127.0.0.1:9100", "localhost:9100", "[::1]:9100", "[::]:0"])
def test_listen_addresses_that_parse_and_resolve(listen):
    cfg = parse_config(f"exporters: {{host: {{listen: '{listen}'}}}}", "x.yaml")
    assert cfg.exporters.host.listen == listen


def test_several_listen_addresses():
    """node_exporter's repeatable --web.listen-address, as a YAML list."""
    cfg = parse_config("exporters: {host: {listen: ['127.0.0.1:9100', '[::1]:9100']}}", "x.yaml")
    assert cfg.exporters.host.listen == ("127.0.0.1:9100", "[::1]:9100")
    with pytest.raises(ConfigError, match=r"exporters.host.listen: \[1\]: port must be a number"):
        parse_config("exporters: {host: {listen: [':9100', ':99999']}}", "x.yaml")
    with pytest.raises(ConfigError, match=r"exporters\.host\.listen: an empty list listens nowhere"):
        parse_config("exporters: {host: {listen: []}}", "x.yaml")


def test_merge_keys_and_anchors_still_work():
    text = "exporters:\n  host: &h {listen: ':9100', min_interval: 2.0}\n  gpu:\n    <<: *h\n    listen: ':9400'\n"
    cfg = parse_config(text, "x.yaml")
    assert cfg.exporters.gpu.min_interval == 2.0 and cfg.exporters.gpu.listen == ":9400"
