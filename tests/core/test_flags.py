"""node_exporter's and dcgm-exporter's flags: each sets the config setting it
stands for, over the file; anything else of theirs is a usage error naming
the flag."""

from __future__ import annotations

import pytest

from nodeagent import registry
from nodeagent.config import COMMAND_LINE, Config, parse_config
from nodeagent.flags import FLAGS, FlagError, FlagSettings, split_flags
from nodeagent.settings import ConfigError

COLLECTORS = lambda: registry.load_all().keys()  # noqa: E731


def split(*argv: str) -> tuple[list[str], FlagSettings]:
    return split_flags(list(argv), COLLECTORS)


def settings(*argv: str) -> dict[str, object]:
    rest, flags = split(*argv)
    assert rest == []
    return {key: value for key, (value, _) in flags.settings.items()}


# a value each flag accepts, and the setting it gives
VALUES = {
    "exporters.host.listen": ("127.0.0.1:19100", "127.0.0.1:19100"),
    "exporters.host.web_config": ("/etc/node_exporter/web.yml", "/etc/node_exporter/web.yml"),
    "exporters.host.metrics_path": ("/node", "/node"),
    "paths.textfile_dir": ("/var/lib/prometheus/node-exporter", "/var/lib/prometheus/node-exporter"),
    "log.level": ("warn", "warning"),
    "log.format": ("logfmt", "console"),
    "gpu.interval": ("30000", 30.0),
    "exporters.gpu.listen": (":9400", ":9400"),
    "gpu.xid_count_window_ms": ("60000", 60000),
    "gpu.clock_events_count_window_ms": ("60000", 60000),
}


@pytest.mark.parametrize("flag", [f for f in FLAGS if not f.boolean], ids=lambda f: f.names[-1])
def test_every_value_flag_in_both_spellings(flag):
    given, expected = VALUES.get(flag.key, ("^x$", "^x$"))
    for name in flag.names:
        assert settings(f"{name}={given}") == {flag.key: expected}
        assert settings(name, given) == {flag.key: expected}
    if flag.replaces:
        assert settings(flag.replaces, given) == {flag.key: expected}
        with pytest.raises(FlagError, match=f"{flag.replaces} and {flag.names[-1]} are mutually exclusive"):
            split(flag.replaces, given, flag.names[-1], given)


@pytest.mark.parametrize("flag", [f for f in FLAGS if f.boolean], ids=lambda f: f.names[-1])
def test_every_boolean_flag_in_kingpins_spellings(flag):
    name = flag.names[-1]
    negated = name.replace("--", "--no-", 1)
    assert settings(name) == {flag.key: True}
    assert settings(f"{name}=false") == {flag.key: False}
    assert settings(negated) == {flag.key: False}
    with pytest.raises(FlagError, match=f"{name}: expected true or false"):
        split(f"{name}=maybe")


def _field_type(key: str) -> object:
    """The dataclass a dotted key's last part is a field of (collector
    options included); KeyError when the key names no setting."""
    parts = key.split(".")
    if parts[:2] == ["collectors", "options"]:
        cls, rest = registry.get(parts[2]).Options, parts[3:]
    else:
        cls, rest = Config, parts
    for part in rest[:-1]:
        cls = type(getattr(cls(), part))
    return cls.__dataclass_fields__[rest[-1]]


@pytest.mark.parametrize("flag", FLAGS, ids=lambda f: f.names[-1])
def test_every_flag_names_a_real_setting(flag):
    assert _field_type(flag.key) is not None


def test_listen_address_repeats_into_a_list():
    assert settings("--web.listen-address=:9100") == {"exporters.host.listen": ":9100"}
    assert settings("--web.listen-address=:9100", "--web.listen-address", "[::1]:9100") == {
        "exporters.host.listen": [":9100", "[::1]:9100"]}
    _, flags = split("--web.listen-address=127.0.0.1:9100", "--web.listen-address=[::1]:9100")
    assert parse_config("", "c.yaml", flags).exporters.host.addresses == ("127.0.0.1:9100", "[::1]:9100")


def test_a_flag_given_twice_keeps_the_last():
    assert settings("-a", ":9400", "--address=:9401") == {"exporters.gpu.listen": ":9401"}


def test_other_arguments_pass_through_in_order():
    rest, flags = split("check", "--role", "compute", "--web.listen-address=:9100", "--json", "--", "-f")
    assert rest == ["check", "--role", "compute", "--json", "--", "-f"]
    assert flags.settings["exporters.host.listen"] == (":9100", "--web.listen-address")


def test_collector_toggles():
    _, flags = split("--collector.efa", "--no-collector.cpu", "--collector.arp=false", "--no-collector.wifi")
    assert flags.collectors == {"efa": (True, "--collector.efa"), "cpu": (False, "--no-collector.cpu"),
                                "arp": (False, "--collector.arp=false".partition("=")[0])}
    assert flags.warnings == []  # wifi: node_exporter's, not nodeagent's, and off is what it is
    cfg = parse_config("collectors: {enable: [cpu], disable: [efa]}", "c.yaml", flags)
    assert "efa" in cfg.collectors.enable and "efa" not in cfg.collectors.disable
    assert "cpu" in cfg.collectors.disable and "cpu" not in cfg.collectors.enable
    assert cfg.flag_keys["collector:cpu"] == "--no-collector.cpu"


def test_a_node_exporter_collector_nodeagent_lacks_is_a_warning():
    rest, flags = split("--collector.systemd", "--collector.systemd.unit-include", ".+\\.service", "--json")
    assert rest == ["--json"] and flags.collectors == {}
    assert flags.warnings == [
        "--collector.systemd: nodeagent has no systemd collector; ignored",
        "--collector.systemd.unit-include: an option of node_exporter's systemd collector, which nodeagent does "
        "not have; ignored",
    ]


def test_disable_defaults_turns_off_the_host_defaults_only():
    _, flags = split("--collector.disable-defaults", "--collector.cpu", "--collector.meminfo")
    cfg = parse_config("collectors: {enable: [loadavg]}", "c.yaml", flags)
    from nodeagent.config import enabled_collectors

    assert enabled_collectors(cfg, "compute") == ["cpu", "gpu", "gpu_status", "loadavg", "meminfo"]
    assert enabled_collectors(cfg, "head") == ["cpu", "loadavg", "meminfo", "scontrol", "sdiag", "sinfo",
                                              "slurm_health", "squeue", "sshare"]
    assert cfg.flag_keys["collector:diskstats"] == "--collector.disable-defaults"
    assert cfg.flag_keys["collector:cpu"] == "--collector.cpu"


@pytest.mark.parametrize(("argv", "message"), [
    (["--web.listen-addres=:9100"], "--web.listen-addres: not a flag nodeagent takes"),
    (["--web.disable-exporter-metrics"], "--web.disable-exporter-metrics: not a flag nodeagent takes"),
    (["--log.foo=1"], "--log.foo: not a flag nodeagent takes"),
    (["--collector.nosuch"], "--collector.nosuch: unknown collector 'nosuch'"),
    (["--no-collector.nosuch"], "--no-collector.nosuch: unknown collector 'nosuch'"),
    (["--collector.cpu.info"], "--collector.cpu.info: not a flag nodeagent takes"),
    (["--collector.cpu=perhaps"], "--collector.cpu: expected true or false"),
    (["--web.listen-address"], "--web.listen-address: expected a value"),
    (["-c", "30s"], "-c: expected a whole number of milliseconds, got '30s'"),
    (["--log.level=trace"], "--log.level: must be one of debug, info, warn, error, got 'trace'"),
    (["--log.format=text"], "--log.format: must be one of logfmt, json, got 'text'"),
])
def test_usage_errors_name_the_flag(argv, message):
    with pytest.raises(FlagError, match=message.replace(".", r"\.").replace("(", r"\(")):
        split(*argv)


def test_flags_with_no_effect_are_accepted_with_a_warning():
    rest, flags = split("--web.max-requests=40", "--runtime.gomaxprocs", "2", "--once")
    assert rest == ["--once"] and flags.settings == {}
    assert [w.split(":")[0] for w in flags.warnings] == ["--web.max-requests", "--runtime.gomaxprocs"]


def test_flags_win_over_the_file_and_name_themselves_when_wrong():
    text = "exporters: {host: {listen: ':9200', min_interval: 3}}\ngpu: {interval: 10}\n"
    _, flags = split("--web.listen-address=:9300", "-c", "2000")
    cfg = parse_config(text, "c.yaml", flags)
    assert cfg.exporters.host.listen == ":9300" and cfg.exporters.host.min_interval == 3.0
    assert cfg.gpu.interval == 2.0
    assert cfg.flag_keys == {"exporters.host.listen": "--web.listen-address", "gpu.interval": "-c"}
    assert {"exporters.host.listen", "exporters.host.min_interval", "gpu.interval"} <= cfg.file_keys
    # a bad value of a flag is named as the flag's, not the file's
    _, flags = split("--web.listen-address=:99999")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml", flags)
    assert str(e.value).startswith(f"{COMMAND_LINE}: --web.listen-address: port must be a number")
    _, flags = split("--collector.netdev.device-exclude=(")
    with pytest.raises(ConfigError, match=r"^command line: --collector\.netdev\.device-exclude: invalid regular"):
        parse_config("", "c.yaml", flags)
    # and the file's own mistakes are still the file's
    with pytest.raises(ConfigError, match=r"^c\.yaml: exporters\.host\.min_interval"):
        parse_config("exporters: {host: {min_interval: -1}}", "c.yaml", flags)


def test_a_collector_flag_the_role_cannot_run_is_named():
    from nodeagent.config import validate_role_collectors

    _, flags = split("--collector.sdiag")
    cfg = parse_config("", "c.yaml", flags)
    with pytest.raises(ConfigError, match=r"^command line: --collector\.sdiag: collector 'sdiag' feeds the slurm"):
        validate_role_collectors(cfg, "compute")
    validate_role_collectors(cfg, "head")
