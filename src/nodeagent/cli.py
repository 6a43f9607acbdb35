"""Command line: `nodeagent --role R` runs the daemon; subcommands do the rest."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence

from nodeagent import __version__, registry
from nodeagent.checks.options import CheckOptions
from nodeagent.config import Config, load_config
from nodeagent.daemon import EX_CONFIG, Agent, Daemon, choose_config_role, host_from_config
from nodeagent.exposition import render
from nodeagent.flags import FlagError, FlagSettings, split_flags
from nodeagent.log import journal_stderr, setup_logging
from nodeagent.model import merge_families
from nodeagent.roles import GROUPS, ROLE_CHOICES, ROLE_TABLE, ChosenRole, RoleError
from nodeagent.settings import ConfigError


def _common(p: argparse.ArgumentParser, sub: bool = False) -> None:
    """Options accepted before and after the subcommand; on the subcommand
    they must not reset what was given before it."""
    default = argparse.SUPPRESS if sub else None
    p.add_argument("--role", choices=ROLE_CHOICES, default=default,
                   help="node role (default: the config's `role`, else the role `nodeagent install` enabled, "
                   "else auto from ParallelCluster's cfnconfig)")
    p.add_argument("--config", metavar="PATH", default=default,
                   help="config file (default /etc/nodeagent/config.yaml; absent = role defaults)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodeagent",
        epilog="node_exporter's and dcgm-exporter's flags (--web.listen-address, --collector.NAME, -f, -a, -c, ...) "
        "are taken too, each for the config setting it stands for: see the flag table in nodeagent(1).",
        description="Monitoring agent for GPU cluster nodes: "
        + ", ".join(f"{group} (:{spec.port})" for group, spec in GROUPS.items()) + ", CloudWatch.",
    )
    parser.add_argument("--version", action="version", version=f"nodeagent {__version__}")
    _common(parser)
    parser.add_argument("--once", action="store_true",
                        help="print one collection of the role's exporters in exposition format and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (the default)")
    _common(run, sub=True)
    run.add_argument("--once", action="store_true", default=argparse.SUPPRESS, help="print one collection and exit")

    check = sub.add_parser("check", help="health of this node and its agent (config, unit, endpoints, collectors, "
                           "GPUs, EFA, Lustre, Slurm, CloudWatch); exit 0 healthy, 1 unhealthy, 78 bad config")
    _common(check, sub=True)
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--no-endpoints", action="store_true",
                       help="skip the systemd unit and HTTP endpoint checks (the agent is not meant to run yet)")
    check.add_argument("--slurm-health", action="store_true",
                       help="Slurm HealthCheckProgram mode: node-local checks only, then drain this node on a "
                       "node-fatal finding (reason 'nodeagent: ...') or clear a drain nodeagent set")
    check.add_argument("--node", metavar="NAME", default=None,
                       help="with --slurm-health: this node's Slurm name (default $SLURMD_NODENAME)")
    check.add_argument("--dry-run", action="store_true",
                       help="with --slurm-health: say what would be done to the node, change nothing")

    collectors = sub.add_parser("collectors", help="the collectors and what the config, role and flags make of "
                                "them: enabled, listen address, interval, and where each came from")
    _common(collectors, sub=True)
    collectors.add_argument("--json", action="store_true", help="machine-readable output")

    install = sub.add_parser("install", help="write and enable the systemd unit and config for a role (idempotent)")
    install.add_argument("--role", choices=ROLE_CHOICES, required=True)
    install.add_argument("--config", metavar="FILE", default=None, help="config file to install")
    install.add_argument("--no-start", action="store_true", help="enable the unit but do not start it now")
    sub.add_parser("uninstall", help="reverse `install`: disable and remove the units, restore the config")

    reload = sub.add_parser("reload", help="reload a running daemon (SIGHUP) and wait: exit 0 when the new config "
                            "is applied, 1 when it was rejected (the unit's ExecReload)")
    reload.add_argument("--pid", type=int, required=True, help="the daemon's PID ($MAINPID in the unit)")
    reload.add_argument("--timeout", type=float, default=90.0, metavar="SECONDS",
                        help="how long to wait for the verdict (default 90)")

    prom = sub.add_parser("prometheus-config", help="print a Prometheus scrape config (EC2 service discovery)")
    prom.add_argument("--cluster", required=True, help="ParallelCluster cluster name")
    prom.add_argument("--region", required=True, help="AWS region of the cluster")
    prom.add_argument("--scrape-interval", default="15s")

    from nodeagent.publish import alarms, cost, dashboards

    dashboards.add_dashboard_arguments(sub.add_parser("dashboard", help="CloudWatch dashboards from the catalogue"))
    alarms.add_alarm_arguments(sub.add_parser("alarms", help="recommended CloudWatch alarms from the catalogue"))
    cost.add_cost_arguments(sub.add_parser("cost", help="custom metrics and PutMetricData requests per month"))
    return parser


# The role is unknown (no --role, no `role` in the config, no install record
# and no ParallelCluster cfnconfig): not the config file's fault, so not 78.
EX_ROLE_UNKNOWN = 1
CONFIG_HINT = "fix what the message names in the config file, then run the check again"
ROLE_HINT = "pass --role, set `role` in the config, or run `nodeagent install --role ROLE`"


# commands that node_exporter's and dcgm-exporter's flags apply to
FLAG_COMMANDS = ("run", "check", "collectors")


def _load(args: argparse.Namespace, flags: FlagSettings) -> tuple[Config, ChosenRole]:
    cfg = load_config(args.config, flags)
    return cfg, choose_config_role(cfg, args.role, host_from_config(cfg))


def cmd_collectors(args: argparse.Namespace, flags: FlagSettings) -> int:
    """The effective collector set; without a role (none found) the
    settings still show, with enabled unknown."""
    from nodeagent import effective

    cfg = load_config(args.config, flags)
    role: str | None = None
    try:
        role = choose_config_role(cfg, args.role, host_from_config(cfg)).role
    except RoleError as e:
        print(f"nodeagent: {e}", file=sys.stderr)
    rows = effective.collector_rows(cfg, role)
    if args.json:
        json.dump({"role": role, "config": cfg.source, "collectors": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"role {role or 'unknown'}, config {cfg.source}")
        effective.print_table(rows, sys.stdout)
    return 0


def cmd_once(cfg: Config, role: str) -> int:
    """One collection of every group the role serves, as one exposition: the
    groups' own metrics (build info) are written once."""
    agent = Agent.build(cfg, role, with_sinks=False)
    try:
        families = []
        for group in ROLE_TABLE[role].exporters:
            if agent.groups[group].supervisor.collectors:
                families.extend(agent.groups[group].get(max_age=0).families)
        sys.stdout.buffer.write(render(merge_families(families)))
        sys.stdout.flush()
    finally:
        agent.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. A reader that goes away (`nodeagent collectors |
    head`) ends the command quietly, as Python's documentation advises:
    stdout is pointed at /dev/null so that the flush at exit cannot fail
    again."""
    journal_stderr()  # under systemd: each stderr line reaches the journal with its priority
    try:
        status = _main(argv)
        sys.stdout.flush()  # inside the try: a pipe closed early fails here
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return status


def _config_failed(args: argparse.Namespace, command: str, check: str, error: Exception, status: int,
                   hint: str) -> int:
    """One line on stderr; `check --json` also prints its JSON document."""
    print(f"nodeagent: {error}", file=sys.stderr)
    if command == "check" and args.json:
        from nodeagent import check as check_module

        check_module.error_report(check, str(error), hint, _check_options(args))
    return status


def _check_options(args: argparse.Namespace) -> CheckOptions:
    return CheckOptions(endpoints=not args.no_endpoints, slurm_health=args.slurm_health,
                        dry_run=args.dry_run, node=args.node)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        rest, flags = split_flags(sys.argv[1:] if argv is None else argv, lambda: registry.load_all().keys())
    except FlagError as e:
        parser.error(str(e))
    args = parser.parse_args(rest)
    command = args.command or "run"
    if flags and command not in FLAG_COMMANDS:
        parser.error(f"node_exporter's and dcgm-exporter's flags apply to running the agent, `check` and "
                     f"`collectors`, not to `{command}`")
    for warning in flags.warnings:
        print(f"nodeagent: warning: {warning}", file=sys.stderr)
    if command == "collectors":
        try:
            return cmd_collectors(args, flags)
        except ConfigError as e:
            print(f"nodeagent: {e}", file=sys.stderr)
            return EX_CONFIG
    if command == "reload":
        from nodeagent import reloadctl

        return reloadctl.reload(args.pid, args.timeout)
    if command in ("install", "uninstall"):
        from nodeagent import install

        if command == "install":
            return install.install(args.role, args.config, start=not args.no_start)
        return install.uninstall()
    if command == "prometheus-config":
        from nodeagent.publish import prometheus_config

        try:
            sys.stdout.write(prometheus_config.render(args.cluster, args.region, scrape_interval=args.scrape_interval))
        except ValueError as e:
            print(f"nodeagent: {e}", file=sys.stderr)
            return 64
        return 0
    if command in ("dashboard", "alarms", "cost"):
        from nodeagent.publish import alarms, cost, dashboards

        handlers = {"dashboard": dashboards.dashboard_main, "alarms": alarms.alarms_main, "cost": cost.cost_main}
        return handlers[command](args)
    try:
        cfg, chosen = _load(args, flags)
    except ConfigError as e:
        return _config_failed(args, command, "config", e, EX_CONFIG, CONFIG_HINT)
    except RoleError as e:
        return _config_failed(args, command, "role", e, EX_ROLE_UNKNOWN, ROLE_HINT)
    setup_logging(args.log_level or cfg.log.level, cfg.log.format)
    role = chosen.role
    try:
        if command == "check":
            from nodeagent import check

            try:
                return check.main(cfg, role, args.json, options=_check_options(args), role_source=chosen.source)
            except (ConfigError, BrokenPipeError):
                raise
            except Exception as e:
                if not args.json:
                    raise
                # --json promises a JSON document: the bug's traceback goes to stderr
                traceback.print_exc()
                check.error_report("check", f"{type(e).__name__}: {e}", "a bug in nodeagent check: please report it",
                                   _check_options(args))
                return 1
        if args.once:
            return cmd_once(cfg, role)
        return Daemon(args.config, args.role, args.log_level, flags).run(cfg, role)
    except ConfigError as e:
        # collector options are validated when collectors are built
        return _config_failed(args, command, "config", e, EX_CONFIG, CONFIG_HINT)


