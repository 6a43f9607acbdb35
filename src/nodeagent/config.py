"""The agent's configuration: one YAML file, frozen dataclasses, validated at
start (and on SIGHUP) with errors that name the file and key path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from nodeagent import registry
from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.flags import FlagSettings
from nodeagent.gpu.settings import GpuSettings
from nodeagent.inputs import InputError, load_yaml, read_text
from nodeagent.roles import GROUPS, ROLE_CHOICES, ROLE_TABLE, roles_serving
from nodeagent.settings import (
    ConfigError,
    check_listen,
    check_range,
    check_timeout,
    load_dataclass,
    shown,
)
from nodeagent.sinks.settings import CloudWatchSettings

DEFAULT_CONFIG_PATH = "/etc/nodeagent/config.yaml"


def _check_role(value: Any) -> str | None:
    if value is None or value in ROLE_CHOICES:
        return None
    return f"must be one of {', '.join(map(repr, ROLE_CHOICES))}, got {shown(value)}"


@dataclass(frozen=True)
class PathsConfig:
    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"
    debugfs: str = "/sys/kernel/debug"
    etc: str = "/etc"
    dev: str = "/dev"
    # *.prom files served on :9100 (node_exporter's textfile collector)
    textfile_dir: str = "/var/lib/nodeagent/textfile"
    # spool and other state
    state_dir: str = "/var/lib/nodeagent"
    # ParallelCluster's node facts (cfn_node_type, stack name, region)
    cfnconfig: str = "/etc/parallelcluster/cfnconfig"


def _check_web_config(value: str | None) -> str | None:
    """The web config file is read and checked with the config, so that a bad
    one fails `nodeagent check` and a reload as the config itself does."""
    if value is None:
        return None
    from nodeagent.webconfig import load_web_config, ssl_context

    try:
        web = load_web_config(value)
        if web.tls_server_config is not None:
            ssl_context(web.tls_server_config, value)
    except ConfigError as e:
        return str(e)
    return None


def _check_listen(value: Any) -> str | None:
    """One HOST:PORT, or a list of them (node_exporter's repeated
    --web.listen-address)."""
    if isinstance(value, str):
        return check_listen(value)
    if not value:
        return "an empty list listens nowhere: give at least one address (or set enabled: false)"
    for i, address in enumerate(value):
        problem = check_listen(address)
        if problem:
            return f"[{i}]: {problem}"
    if len(set(value)) < len(value):
        return f"the same address is listed twice: {shown(list(value))}"
    return None


def _check_metrics_path(value: Any) -> str | None:
    if value.startswith("/") and value not in ("/", "/healthz") and value.isprintable() and " " not in value:
        return None
    return f"must be a URL path starting with / (not / or /healthz), got {shown(value)}"


@dataclass(frozen=True)
class ExporterConfig:
    # HOST:PORT, or a list of them; ":9100" listens on every address, IPv4 and
    # IPv6, like node_exporter
    listen: str | tuple[str, ...] = field(default=":9100", metadata={"check": _check_listen})
    enabled: bool = True
    # the path that serves the metrics (node_exporter's --web.telemetry-path)
    metrics_path: str = field(default="/metrics", metadata={"check": _check_metrics_path})
    # a burst of scrapes never collects more often than this (seconds); scrapes
    # arriving meanwhile share the last collection
    min_interval: float = field(default=1.0, metadata={"check": check_range(0, 3600, unit="seconds")})
    # exporter-toolkit web-config.yml (TLS, basic auth); none = plain HTTP
    web_config: str | None = field(default=None, metadata={"check": _check_web_config})

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.listen,) if isinstance(self.listen, str) else self.listen


def _exporter(group: str) -> ExporterConfig:
    return ExporterConfig(listen=f":{GROUPS[group].port}")


@dataclass(frozen=True)
class ExportersConfig:
    host: ExporterConfig = _exporter("host")
    gpu: ExporterConfig = _exporter("gpu")
    slurm: ExporterConfig = _exporter("slurm")


@dataclass(frozen=True)
class CollectorsConfig:
    # collectors to run besides the role's defaults
    enable: tuple[str, ...] = ()
    # role defaults to leave out
    disable: tuple[str, ...] = ()
    # start from nothing: only `enable` runs, in every group (node_exporter's
    # --collector.disable-defaults on the command line disables only the host defaults)
    disable_defaults: bool = False
    # seconds one collector may take before its run counts as failed
    timeout: float = field(default=5.0, metadata={"check": check_timeout})
    # per-collector settings, validated against each collector's Options
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: readable console on a TTY, JSON lines otherwise (journald)
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True)
class Config:
    # compute, head, login or auto (ParallelCluster's cfnconfig); --role wins
    role: str | None = field(default=None, metadata={"check": _check_role})
    # overrides the Hostname label and CloudWatch host dimension
    hostname: str | None = None
    log: LogConfig = LogConfig()
    paths: PathsConfig = PathsConfig()
    exporters: ExportersConfig = ExportersConfig()
    collectors: CollectorsConfig = CollectorsConfig()
    gpu: GpuSettings = GpuSettings()
    slurm: SlurmSettings = SlurmSettings()
    cloudwatch: CloudWatchSettings = CloudWatchSettings()
    # where the config came from, for messages; not a YAML key
    source: str = field(default="(defaults)", metadata={"internal": True})
    # where each setting came from (`nodeagent collectors`): the keys the file
    # sets, and those command-line flags set (key -> flag); "collector:NAME"
    # for a collector the file or a flag enables or disables
    file_keys: frozenset[str] = field(default=frozenset(), compare=False, metadata={"internal": True})
    flag_keys: Mapping[str, str] = field(default_factory=dict, compare=False, metadata={"internal": True})


COMMAND_LINE = "command line"


def origin(cfg: Config, key: str) -> str:
    """Where a setting's value came from: flag, config or default."""
    if key in cfg.flag_keys:
        return "flag"
    if key in cfg.file_keys:
        return "config"
    return "default"


def _keys_of(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted keys a config file sets, and "collector:NAME" for the
    collectors its enable and disable lists name."""
    keys: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            keys |= _keys_of(value, f"{path}.")
        else:
            keys.add(path)
        if path in ("collectors.enable", "collectors.disable") and isinstance(value, list):
            keys |= {f"collector:{name}" for name in value if isinstance(name, str)}
    return keys


def _from_data(data: dict[str, Any], source: str) -> Config:
    for f in fields(Config):
        if f.metadata.get("internal") and f.name in data:
            raise ConfigError(source, f.name, "unknown key")
    cfg = load_dataclass(Config, data, source)
    cfg = replace(cfg, source=source, file_keys=frozenset(_keys_of(data)))
    validate_collectors(cfg)
    return cfg


def _with_flags(data: dict[str, Any], source: str, flags: FlagSettings) -> Config:
    """The file's settings with the flags' over them. A bad flag value is an
    error naming the flag."""
    host_collectors = [n for n, cls in registry.load_all().items() if cls.group == "host"]
    flag_keys = flags.flag_keys(host_collectors if flags.disable_defaults else ())
    try:
        cfg = _from_data(flags.apply(data, host_collectors), source)
    except ConfigError as e:
        matching = [k for k in flag_keys if e.key == k or e.key.startswith((f"{k}.", f"{k}["))]
        if not matching:
            raise
        raise ConfigError(COMMAND_LINE, flag_keys[max(matching, key=len)], e.message) from None
    return replace(cfg, file_keys=frozenset(_keys_of(data)), flag_keys=flag_keys)


def parse_config(text: str, source: str, flags: FlagSettings | None = None) -> Config:
    """The config from a file's text, with flags (node_exporter's and
    dcgm-exporter's command-line flags) over it. The file is checked alone
    first, so that its mistakes are named as the file's."""
    try:
        data = load_yaml(text)
    except InputError as e:
        raise ConfigError(source, e.key, str(e)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", "the top level must be a mapping of keys")
    cfg = _from_data(data, source)
    if flags:
        cfg = _with_flags(data, source, flags)
    return cfg


def load_config(path: str | None, flags: FlagSettings | None = None) -> Config:
    """Load and validate the config file, with flags over it. An absent
    default file means role defaults; an absent file the user named is an
    error."""
    explicit = path is not None
    path = path or DEFAULT_CONFIG_PATH
    if not explicit and not os.path.exists(path):
        cfg = _from_data({}, Config.source)
        return _with_flags({}, Config.source, flags) if flags else cfg
    if not os.path.exists(path):
        raise ConfigError(path, "", "file not found")
    try:
        text = read_text(path)
    except InputError as e:
        raise ConfigError(path, "", str(e)) from None
    return parse_config(text, os.path.abspath(path), flags)


def collector_options(cfg: Config, name: str) -> Any:
    cls = registry.get(name)
    raw = cfg.collectors.options.get(name, {})
    return load_dataclass(cls.Options, raw or {}, cfg.source, f"collectors.options.{name}")


def validate_collectors(cfg: Config) -> None:
    known = registry.load_all()
    c = cfg.collectors
    for key, names in (("collectors.enable", c.enable), ("collectors.disable", c.disable)):
        for i, name in enumerate(names):
            if name not in known:
                raise ConfigError(
                    cfg.source, f"{key}[{i}]", f"unknown collector {name!r} (see `nodeagent collectors`)"
                )
    for name in c.options:
        if name not in known:
            raise ConfigError(cfg.source, f"collectors.options.{name}", f"unknown collector {name!r}")
        if not isinstance(c.options[name], dict) and c.options[name] is not None:
            raise ConfigError(cfg.source, f"collectors.options.{name}", "expected a mapping")
        collector_options(cfg, name)


def validate_role_collectors(cfg: Config, role: str) -> None:
    """A collector enabled in a role that does not run its group would be
    accepted and never run: an error naming the key instead."""
    groups = ROLE_TABLE[role].groups
    known = registry.load_all()
    for i, name in enumerate(cfg.collectors.enable):
        group = known[name].group
        if group not in groups:
            problem = (f"collector {name!r} feeds the {group} exporter (:{GROUPS[group].port}), which the {role} "
                       f"role does not run (roles that do: {', '.join(roles_serving(group))})")
            flag = cfg.flag_keys.get(f"collector:{name}")
            if flag:
                raise ConfigError(COMMAND_LINE, flag, f"{problem}; drop the flag for this role")
            raise ConfigError(cfg.source, f"collectors.enable[{i}]", f"{problem}; remove it from this role's config")


def enabled_collectors(cfg: Config, role: str) -> list[str]:
    """Names of the collectors that run in this role, sorted."""
    known = registry.load_all()
    c = cfg.collectors
    names = set() if c.disable_defaults else {n for n, cls in known.items() if role in cls.default_roles}
    names |= set(c.enable)
    names -= set(c.disable)
    return sorted(names)
