"""node_exporter's and dcgm-exporter's command-line flags, each mapped to the
config setting it stands for, so that a systemd unit, drop-in, Ansible role
or /etc/default file written for those exporters starts nodeagent as it is.

FLAGS is the one table: the README's table is generated from it (a test
keeps the two equal). Flags win over the config file, on start and on every
reload, and `nodeagent collectors` shows what they set (source "flag").

Syntax as the exporters take it: `--name=value` or `--name value`; boolean
flags as `--flag`, `--flag=false` or `--no-flag` (kingpin); dcgm-exporter's
short forms `-f value` and `-f=value` (urfave/cli). A flag given twice keeps
the last value, except --web.listen-address, which adds an address each time.

Collectors: `--collector.NAME` enables and `--no-collector.NAME` disables a
nodeagent collector (node_exporter's names; nodeagent's own too). A
node_exporter collector that nodeagent lacks is accepted with a warning
(enabling it cannot be honoured, disabling it is already true), and so are
its options; a name neither knows, or an option of a collector nodeagent has
but does not take, is a usage error naming the flag.
`--collector.disable-defaults` disables, as in node_exporter, every host
collector not enabled by a --collector.NAME flag or by the config's
collectors.enable: the GPU and Slurm collectors are not node_exporter's and
stay as the role has them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NODE_EXPORTER = "node_exporter"
DCGM_EXPORTER = "dcgm-exporter"


class FlagError(Exception):
    """A usage error: the message names the flag."""


def _text(value: str) -> str:
    return value


def _milliseconds(value: str) -> float:
    if not value.isdigit():
        raise ValueError(f"expected a whole number of milliseconds, got {value!r}")
    return int(value) / 1000


def _whole(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


# node_exporter's (go-kit/promslog) names -> nodeagent's log.level
_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "error": "error"}
# node_exporter's log formats -> log.format: logfmt's key=value lines are what
# the console renderer writes
_LOG_FORMATS = {"logfmt": "console", "json": "json"}


def _choice(choices: Mapping[str, str]) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return choices[value]

    return convert


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]  # as written on a command line, short form first
    origin: str  # whose flag it is: NODE_EXPORTER or DCGM_EXPORTER
    key: str  # the config setting it sets
    convert: Callable[[str], Any] = _text
    repeatable: bool = False  # each use adds a value: the setting becomes a list
    boolean: bool = False  # takes no value: --flag, --flag=false, --no-flag
    note: str = ""  # for the README: how the value is read, when not as it is
    replaces: str = ""  # an older spelling of this flag (the two exclude each other)


FLAGS: tuple[Flag, ...] = (
    Flag(("--web.listen-address",), NODE_EXPORTER, "exporters.host.listen", repeatable=True,
         note="repeat it for several addresses (a list)"),
    Flag(("--web.config.file",), NODE_EXPORTER, "exporters.host.web_config", replaces="--web.config"),
    Flag(("--web.telemetry-path",), NODE_EXPORTER, "exporters.host.metrics_path"),
    Flag(("--collector.textfile.directory",), NODE_EXPORTER, "paths.textfile_dir"),
    Flag(("--collector.filesystem.mount-points-exclude",), NODE_EXPORTER,
         "collectors.options.filesystem.mount_points_exclude",
         replaces="--collector.filesystem.ignored-mount-points"),
    Flag(("--collector.filesystem.fs-types-exclude",), NODE_EXPORTER, "collectors.options.filesystem.fs_types_exclude",
         replaces="--collector.filesystem.ignored-fs-types"),
    Flag(("--collector.netdev.device-exclude",), NODE_EXPORTER, "collectors.options.netdev.device_exclude",
         replaces="--collector.netdev.device-blacklist"),
    Flag(("--collector.netdev.device-include",), NODE_EXPORTER, "collectors.options.netdev.device_include",
         replaces="--collector.netdev.device-whitelist"),
    Flag(("--collector.diskstats.device-exclude",), NODE_EXPORTER, "collectors.options.diskstats.device_exclude",
         replaces="--collector.diskstats.ignored-devices"),
    Flag(("--collector.diskstats.device-include",), NODE_EXPORTER, "collectors.options.diskstats.device_include"),
    Flag(("--collector.netclass.ignored-devices",), NODE_EXPORTER, "collectors.options.netclass.ignored_devices"),
    Flag(("--collector.netclass.ignore-invalid-speed",), NODE_EXPORTER,
         "collectors.options.netclass.ignore_invalid_speed", boolean=True),
    Flag(("--collector.netstat.fields",), NODE_EXPORTER, "collectors.options.netstat.fields"),
    Flag(("--collector.vmstat.fields",), NODE_EXPORTER, "collectors.options.vmstat.fields"),
    Flag(("--collector.cpu.guest",), NODE_EXPORTER, "collectors.options.cpu.guest", boolean=True),
    Flag(("--path.procfs",), NODE_EXPORTER, "paths.procfs"),
    Flag(("--path.sysfs",), NODE_EXPORTER, "paths.sysfs"),
    Flag(("--path.rootfs",), NODE_EXPORTER, "paths.rootfs"),
    Flag(("--path.udev.data",), NODE_EXPORTER, "collectors.options.diskstats.udev_data_path"),
    Flag(("--log.level",), NODE_EXPORTER, "log.level", _choice(_LOG_LEVELS), note="`warn` is `warning`"),
    Flag(("--log.format",), NODE_EXPORTER, "log.format", _choice(_LOG_FORMATS),
         note="`logfmt` is `console`, `json` is `json`"),
    Flag(("-f", "--collectors"), DCGM_EXPORTER, "gpu.counters_file"),
    Flag(("-a", "--address"), DCGM_EXPORTER, "exporters.gpu.listen", note="e.g. `:9400`"),
    Flag(("-c", "--collect-interval"), DCGM_EXPORTER, "gpu.interval", _milliseconds,
         note="milliseconds, set in seconds (30000 is 30)"),
    Flag(("--web-config-file",), DCGM_EXPORTER, "exporters.gpu.web_config"),
    Flag(("--hpc-job-mapping-dir",), DCGM_EXPORTER, "gpu.hpc_job_mapping_dir"),
    Flag(("-x", "--xid-count-window-size"), DCGM_EXPORTER, "gpu.xid_count_window_ms", _whole),
    Flag(("--clock-events-count-window-size",), DCGM_EXPORTER, "gpu.clock_events_count_window_ms", _whole),
)

# node_exporter flags that change nothing nodeagent does, accepted with a warning
NO_EFFECT: dict[str, str] = {
    "--web.max-requests": "nodeagent serves at most 40 connections at once, as node_exporter's default",
    "--runtime.gomaxprocs": "a Go runtime setting",
}

# node_exporter's collectors (1.x, Linux and others). Those nodeagent also has
# keep their names; the others are accepted and warned about.
NODE_EXPORTER_COLLECTORS = frozenset((
    "arp", "bcache", "bonding", "boottime", "btrfs", "buddyinfo", "cgroups", "conntrack", "cpu",
    "cpu_vulnerabilities", "cpufreq", "devstat", "diskstats", "dmi", "dmmultipath", "drbd", "drm", "edac", "entropy",
    "ethtool", "exec", "fibrechannel", "filefd", "filesystem", "hwmon", "infiniband", "interrupts", "ipvs",
    "kernel_hung", "ksmd", "lnstat", "loadavg", "logind", "mdadm", "meminfo", "meminfo_numa", "mountstats",
    "netclass", "netdev", "netinterface", "netisr", "netstat", "network_route", "nfs", "nfsd", "ntp", "nvme",
    "nvmesubsystem", "os", "partition", "pcidevice", "perf", "powersupplyclass", "pressure", "processes", "qdisc",
    "rapl", "runit", "schedstat", "selinux", "slabinfo", "sockstat", "softirqs", "softnet", "stat", "supervisord",
    "swap", "sysctl", "systemd", "tapestats", "tcpstat", "textfile", "thermal", "thermal_zone", "time", "timex",
    "udp_queues", "uname", "vmstat", "watchdog", "wifi", "xfrm", "xfs", "zfs", "zoneinfo",
))

# prefixes of node_exporter's flag names: any other flag under them is unknown
NODE_EXPORTER_PREFIXES = ("--collector.", "--no-collector.", "--web.", "--no-web.", "--log.", "--path.",
                          "--runtime.")

_BY_NAME: dict[str, Flag] = {name: f for f in FLAGS for name in f.names}
_OLD_NAMES: dict[str, Flag] = {f.replaces: f for f in FLAGS if f.replaces}


@dataclass
class FlagSettings:
    """What the exporter flags of one command line set."""

    # setting key -> (value, the flag that set it), in the order given
    settings: dict[str, tuple[Any, str]] = field(default_factory=dict)
    # collector name -> (enabled, the flag)
    collectors: dict[str, tuple[bool, str]] = field(default_factory=dict)
    disable_defaults: str = ""  # the flag, when given
    warnings: list[str] = field(default_factory=list)
    # the flag names given, for the exclusive pairs
    given: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.settings or self.collectors or self.disable_defaults or self.warnings)

    def flag_keys(self, host_collectors: Iterable[str] = ()) -> dict[str, str]:
        """Provenance: setting key (or "collector:NAME") -> the flag that set it."""
        keys = {key: flag for key, (_, flag) in self.settings.items()}
        if self.disable_defaults:
            for name in host_collectors:
                keys[f"collector:{name}"] = self.disable_defaults
        keys.update({f"collector:{name}": flag for name, (_, flag) in self.collectors.items()})
        return keys

    def apply(self, data: Mapping[str, Any], host_collectors: Sequence[str]) -> dict[str, Any]:
        """The config file's data with the flags' settings over it. host_collectors:
        every collector of the host group (what --collector.disable-defaults turns off)."""
        out: dict[str, Any] = copy.deepcopy(dict(data))
        for key, (value, _) in self.settings.items():
            node = out
            *parents, last = key.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[last] = value
        if self.collectors or self.disable_defaults:
            section = out.get("collectors")
            if not isinstance(section, dict):
                section = out["collectors"] = {}
            enable = list(section.get("enable") or [])
            disable = list(section.get("disable") or [])
            for name, (enabled, _) in self.collectors.items():
                enable = [n for n in enable if n != name] + ([name] if enabled else [])
                disable = [n for n in disable if n != name] + ([] if enabled else [name])
            if self.disable_defaults:
                disable += [n for n in host_collectors if n not in enable and n not in disable]
            section["enable"], section["disable"] = enable, disable
        return out


def _bool_value(flag: str, value: str | None) -> bool:
    if value is None:
        return True
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise FlagError(f"{flag}: expected true or false, got {value!r}")


def _collector_toggle(out: FlagSettings, name: str, value: str | None, known: Collection[str]) -> bool:
    """--collector.NAME / --no-collector.NAME; False when it is not one."""
    negated = name.startswith("--no-collector.")
    collector = name.removeprefix("--no-collector.").removeprefix("--collector.")
    if "." in collector or collector == "disable-defaults":
        return False
    enabled = _bool_value(name, value) != negated
    if collector in known:
        out.collectors[collector] = (enabled, name)
    elif collector in NODE_EXPORTER_COLLECTORS:
        if enabled:
            out.warnings.append(f"{name}: nodeagent has no {collector} collector; ignored")
    else:
        raise FlagError(f"{name}: unknown collector {collector!r} (see `nodeagent collectors`)")
    return True


def split_flags(argv: Sequence[str], collectors: Callable[[], Collection[str]]) -> tuple[list[str], FlagSettings]:
    """Take the exporter flags out of argv. Returns the rest (for argparse)
    and what the flags set. collectors() gives nodeagent's collector names
    (asked only when a flag names a collector). FlagError names a flag that
    is node_exporter's kind but unknown, or misused."""
    out = FlagSettings()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest.extend(argv[i - 1:])
            break
        name, eq, inline = arg.partition("=")
        value = inline if eq else None
        if not name.startswith("-") or name in ("-", "--"):
            rest.append(arg)
            continue
        flag = _BY_NAME.get(name) or _OLD_NAMES.get(name)
        negated = _BY_NAME.get("--" + name.removeprefix("--no-")) if name.startswith("--no-") else None
        if negated is not None and negated.boolean:
            _set(out, negated, name, not _bool_value(name, value))
        elif flag is not None and flag.boolean:
            _set(out, flag, name, _bool_value(name, value))
        elif flag is not None:
            if value is None:
                if i >= len(argv):
                    raise FlagError(f"{name}: expected a value")
                value = argv[i]
                i += 1
            _set(out, flag, name, value)
        elif name == "--collector.disable-defaults":
            if _bool_value(name, value):
                out.disable_defaults = name
        elif name.startswith(("--collector.", "--no-collector.")) and _collector_toggle(
            out, name, value, collectors()
        ):
            pass
        elif name in NO_EFFECT:
            if value is None and i < len(argv) and not argv[i].startswith("-"):
                i += 1
            out.warnings.append(f"{name}: {NO_EFFECT[name]}; ignored")
        elif name.startswith("--collector."):
            collector = name.removeprefix("--collector.").split(".", 1)[0]
            if collector in collectors() or collector not in NODE_EXPORTER_COLLECTORS:
                raise FlagError(f"{name}: not a flag nodeagent takes (see the flag table in nodeagent(1))")
            if value is None and i < len(argv) and not argv[i].startswith("-"):
                i += 1  # an option's value, as in `--collector.systemd.unit-include .+`
            out.warnings.append(f"{name}: an option of node_exporter's {collector} collector, which nodeagent "
                                "does not have; ignored")
        elif name.startswith(NODE_EXPORTER_PREFIXES):
            raise FlagError(f"{name}: not a flag nodeagent takes (see the flag table in nodeagent(1))")
        else:
            rest.append(arg)
    return rest, out


def _set(out: FlagSettings, flag: Flag, name: str, value: str | bool) -> None:
    primary = flag.names[-1]
    other = flag.replaces if name != flag.replaces else primary
    if other and other in out.given:
        raise FlagError(f"{flag.replaces} and {primary} are mutually exclusive")
    out.given.add(name)
    try:
        converted = value if isinstance(value, bool) else flag.convert(value)
    except ValueError as e:
        raise FlagError(f"{name}: {e}") from None
    if flag.repeatable and flag.key in out.settings:
        previous, _ = out.settings[flag.key]
        converted = [*([previous] if isinstance(previous, str) else previous), converted]
    out.settings[flag.key] = (converted, name)


def markdown_table() -> str:
    """The README's table of flags."""
    lines = ["| flag | from | config setting | notes |", "|---|---|---|---|"]
    for f in FLAGS:
        names = ", ".join(f"`{n}`" for n in f.names)
        if f.boolean:
            names += ", `" + f.names[-1].replace("--", "--no-", 1) + "`"
        if f.replaces:
            names += f" (or the older `{f.replaces}`)"
        lines.append(f"| {names} | {f.origin} | `{f.key}` | {f.note} |")
    lines += [
        f"| `--collector.NAME`, `--no-collector.NAME` | {NODE_EXPORTER} | `collectors.enable`, `collectors.disable` "
        "| a collector nodeagent has (its own names too); one it lacks is ignored with a warning |",
        f"| `--collector.disable-defaults` | {NODE_EXPORTER} | `collectors.disable` | every host collector "
        "not enabled by a flag or `collectors.enable`; GPU and Slurm collectors stay |",
    ]
    for name, why in NO_EFFECT.items():
        lines.append(f"| `{name}` | {NODE_EXPORTER} | none | {why}; ignored with a warning |")
    return "\n".join(lines) + "\n"


def _roff(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-").replace("`", "")


def man_section() -> str:
    """The same table for nodeagent(1), in roff."""
    out = [
        '.SH "NODE_EXPORTER AND DCGM\\-EXPORTER FLAGS"',
        "The flags that node_exporter's and dcgm\\-exporter's units, drop\\-ins and charts set are taken",
        "too, each for the configuration setting it stands for; they win over the",
        "configuration file, also on reload, and apply to running the agent,",
        ".B check",
        "and",
        ".BR collectors .",
        "Their other flags are usage errors naming the flag, but for the collectors nodeagent",
        "does not have (below).",
    ]
    for f in FLAGS:
        names = ", ".join(f"\\fB{_roff(n)}\\fR" for n in f.names)
        if f.boolean:
            names += f", \\fB{_roff(f.names[-1].replace('--', '--no-', 1))}\\fR"
        if f.replaces:
            names += f" (or \\fB{_roff(f.replaces)}\\fR)"
        note = f"; {_roff(f.note)}" if f.note else ""
        out += [".TP", names, f"{f.origin}: sets \\fB{_roff(f.key)}\\fR{note}."]
    out += [
        ".TP", "\\fB\\-\\-collector.\\fINAME\\fR, \\fB\\-\\-no\\-collector.\\fINAME\\fR",
        "node_exporter: add the collector to \\fBcollectors.enable\\fR or \\fBcollectors.disable\\fR; one",
        "nodeagent does not have is ignored with a warning.",
        ".TP", "\\fB\\-\\-collector.disable\\-defaults\\fR",
        "node_exporter: disable every host collector that no flag and no \\fBcollectors.enable\\fR enables;",
        "the GPU and Slurm collectors stay.",
    ]
    for name, why in NO_EFFECT.items():
        out += [".TP", f"\\fB{_roff(name)}\\fR", f"node_exporter: {_roff(why)}; ignored with a warning."]
    return "\n".join(out) + "\n"
