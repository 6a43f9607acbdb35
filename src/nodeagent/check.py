"""`nodeagent check`: validate the config and run every enabled collector once.

Prints a table (collector, ok/failed, duration, series, error) or JSON, and
exits 0 when everything passed, 1 when anything failed, 78 when the config is
invalid. A bootstrap script or Slurm runs it as the node's smoke test.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import TextIO

from nodeagent.config import Config
from nodeagent.daemon import Agent
from nodeagent.roles import ROLE_TABLE


@dataclass(frozen=True)
class CheckRow:
    check: str
    ok: bool
    duration_seconds: float
    series: int
    detail: str
    hint: str = ""


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
                    )
                )
    finally:
        agent.close()
    return rows


def run_checks(cfg: Config, role: str) -> list[CheckRow]:
    rows = [CheckRow("config", True, 0.0, 0, f"{cfg.source} is valid for role {role}")]
    rows.extend(collector_rows(cfg, role))
    return rows


def print_table(rows: list[CheckRow], out: TextIO) -> None:
    width = max([len(r.check) for r in rows] + [5])
    out.write(f"{'CHECK':<{width}}  {'RESULT':<6}  {'TIME':>8}  {'SERIES':>6}  DETAIL\n")
    for r in rows:
        verdict = "ok" if r.ok else "FAILED"
        detail = r.detail if r.ok or not r.hint else f"{r.detail} (hint: {r.hint})"
        out.write(f"{r.check:<{width}}  {verdict:<6}  {r.duration_seconds * 1000:>6.1f}ms  {r.series:>6}  {detail}\n")
    failed = sum(not r.ok for r in rows)
    out.write(f"\n{len(rows) - failed} passed, {failed} failed\n" if failed else f"\nall {len(rows)} checks passed\n")


def main(cfg: Config, role: str, as_json: bool, out: TextIO = sys.stdout) -> int:
    rows = run_checks(cfg, role)
    healthy = all(r.ok for r in rows)
    if as_json:
        json.dump({"role": role, "healthy": healthy, "checks": [asdict(r) for r in rows]}, out, indent=2)
        out.write("\n")
    else:
        print_table(rows, out)
    return 0 if healthy else 1
