"""One check's verdict: a row of `nodeagent check`'s table and JSON report.

status is ok, warn (worth knowing, not a failure), fail or skip (does not
apply here, e.g. no GPUs expected on this instance type). `ok` is False only
for fail, so the exit status and v1's JSON `ok` field keep their meaning.
`fatal` marks a failure that makes the node unfit for jobs: what
`nodeagent check --slurm-health` drains the node for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass(frozen=True)
class CheckRow:
    check: str
    ok: bool
    duration_seconds: float
    series: int | None
    detail: str
    hint: str = ""
    status: str = OK
    fatal: bool = False
    # a short phrase for a Slurm drain reason (node-fatal findings only)
    finding: str = ""


def ok(check: str, detail: str) -> CheckRow:
    return CheckRow(check, True, 0.0, None, detail, status=OK)


def warn(check: str, detail: str, hint: str = "") -> CheckRow:
    return CheckRow(check, True, 0.0, None, detail, hint, status=WARN)


def skip(check: str, detail: str) -> CheckRow:
    return CheckRow(check, True, 0.0, None, detail, status=SKIP)


def fail(check: str, detail: str, hint: str, fatal: bool = False, finding: str = "") -> CheckRow:
    return CheckRow(check, False, 0.0, None, detail, hint, status=FAIL, fatal=fatal, finding=finding)


def timed(name: str, fn: Callable[[], CheckRow]) -> CheckRow:
    """Run one check, stamp its duration, and turn an unexpected exception
    into a failed row (a check never takes the report down)."""
    started = time.monotonic()
    try:
        row = fn()
    except Exception as e:
        row = fail(name, f"check crashed: {type(e).__name__}: {e}", "a bug in nodeagent check: please report it")
    return replace(row, duration_seconds=round(time.monotonic() - started, 4))
