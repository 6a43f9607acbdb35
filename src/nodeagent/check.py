"""`nodeagent check`: is this node, and the agent on it, healthy?

Role-aware checks, each a one-line verdict with a hint to fix it:

- every role: the config is valid; the systemd unit nodeagent@<role> is
  active (when systemd runs); each exporter answers on its listen address
  with the families it must serve; every enabled collector succeeds once;
  Lustre mounts answer;
- compute: GPU count as expected for the instance type, NVIDIA driver
  loaded, no node-fatal XID since boot, EFA devices as expected;
- head: Slurm's commands answer; CloudWatch is reachable and the
  PutMetricData permission is there (wherever the sink runs: head and login
  by default).

`--no-endpoints` leaves out the unit and endpoint checks (the daemon is not
meant to run yet: an image build, a chroot). `--slurm-health` runs only the
node-local checks and drains or resumes this node in Slurm
(checks/slurm_health.py): Slurm's HealthCheckProgram.

Prints a table or JSON; exits 0 when nothing failed (warnings and skipped
checks are fine), 1 when something failed or the role is unknown, 78 when
the config is invalid. With --json, stdout is a JSON document whatever
happens (error_report when the checks could not run).
A bootstrap script runs it as the node's smoke test after `nodeagent install`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict
from typing import TextIO

from nodeagent.checks.head import head_checks
from nodeagent.checks.node import node_checks, systemd_running
from nodeagent.checks.options import CheckOptions
from nodeagent.checks.result import FAIL, SKIP, WARN, CheckRow, fail
from nodeagent.checks.service import service_checks
from nodeagent.config import Config
from nodeagent.daemon import Agent, host_from_config
from nodeagent.roles import ROLE_TABLE

__all__ = ["CheckOptions", "CheckRow", "error_report", "main", "run_checks"]


def collector_rows(cfg: Config, role: str) -> list[CheckRow]:
    agent = Agent.build(cfg, role, with_sinks=False)
    rows: list[CheckRow] = []
    try:
        for group in ROLE_TABLE[role].groups:
            results = agent.groups[group].supervisor.run_all()
            for r in results:
                rows.append(
                    CheckRow(
                        check=f"collector {r.name}",
                        ok=r.success,
                        duration_seconds=round(r.duration, 4),
                        series=r.series,
                        detail=r.error or "",
                        hint="" if r.success else f"see `nodeagent --role {role} --once` and the collector's source",
                        status="ok" if r.success else FAIL,
                    )
                )
    finally:
        agent.close()
    return rows


def run_checks(cfg: Config, role: str, options: CheckOptions | None = None, role_source: str = "") -> list[CheckRow]:
    options = options or CheckOptions()
    host = host_from_config(cfg)
    if options.slurm_health:
        from nodeagent.checks import slurm_health

        rows = node_checks(cfg, role, host, options)
        findings = [r.finding or r.check for r in rows if r.fatal]
        rows.append(slurm_health.apply(cfg, host, findings, options.node, options.dry_run))
        return rows
    whence = f" (from {role_source})" if role_source else ""
    rows = [CheckRow("config", True, 0.0, None, f"{cfg.source} is valid for role {role}{whence}")]
    if options.endpoints:
        rows.extend(service_checks(cfg, role, host, options, systemd_running(host)))
    rows.extend(collector_rows(cfg, role))
    rows.extend(node_checks(cfg, role, host, options))
    rows.extend(head_checks(cfg, role, host))
    return rows


def summary(rows: list[CheckRow]) -> str:
    counts = Counter(r.status for r in rows)
    extra = [f"{n} {what}" for n, what in ((counts[WARN], "with warnings"), (counts[SKIP], "skipped")) if n]
    tail = f" ({', '.join(extra)})" if extra else ""
    if counts[FAIL]:
        return f"{len(rows) - counts[FAIL] - counts[SKIP]} passed, {counts[FAIL]} failed{tail}"
    return f"all {len(rows) - counts[SKIP]} checks passed{tail}"


_VERDICT = {"ok": "ok", WARN: "WARN", FAIL: "FAILED", SKIP: "skip"}


def print_table(rows: list[CheckRow], out: TextIO) -> None:
    width = max([len(r.check) for r in rows] + [5])
    out.write(f"{'CHECK':<{width}}  {'RESULT':<6}  {'TIME':>8}  {'SERIES':>6}  DETAIL\n")
    for r in rows:
        detail = f"{r.detail} (hint: {r.hint})" if r.hint and r.status in (FAIL, WARN) else r.detail
        series = "-" if r.series is None else str(r.series)
        out.write(
            f"{r.check:<{width}}  {_VERDICT.get(r.status, r.status):<6}  "
            f"{r.duration_seconds * 1000:>6.1f}ms  {series:>6}  {detail}\n"
        )
    out.write(f"\n{summary(rows)}\n")


def _report(role: str | None, options: CheckOptions, rows: list[CheckRow], **extra: object) -> dict[str, object]:
    return {
        "role": role,
        "mode": "slurm-health" if options.slurm_health else "check",
        "healthy": all(r.ok for r in rows),
        "summary": summary(rows),
        **extra,
        "checks": [asdict(r) for r in rows],
    }


def error_report(check: str, error: str, hint: str, options: CheckOptions, out: TextIO = sys.stdout) -> None:
    """The JSON document of a check that could not run (the config is
    invalid, the role unknown): one failed row saying why."""
    row = fail(check, error, hint)
    json.dump(_report(None, options, [row], error=error), out, indent=2)
    out.write("\n")


def main(cfg: Config, role: str, as_json: bool, out: TextIO = sys.stdout, options: CheckOptions | None = None,
         role_source: str = "") -> int:
    options = options or CheckOptions()
    rows = run_checks(cfg, role, options, role_source)
    if as_json:
        json.dump(_report(role, options, rows, role_source=role_source or None), out, indent=2)
        out.write("\n")
    else:
        print_table(rows, out)
    return 0 if all(r.ok for r in rows) else 1
