"""Push sinks: where a role's families go besides the HTTP exporters.

The daemon builds them with build_sinks() and calls publish() every
`cloudwatch.interval` seconds with the families of the role's groups.
Heavy imports (boto3) happen only when a sink is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog

from nodeagent.model import MetricFamily

if TYPE_CHECKING:
    from nodeagent.config import Config
    from nodeagent.host import Host

log = structlog.get_logger(__name__)


@runtime_checkable
class Sink(Protocol):
    def publish(self, families: list[MetricFamily], timestamp: float) -> None:
        """Hand over one publish's families (fast: spool and return; never raises
        for a destination's trouble)."""

    def flush(self, timeout: float) -> None:
        """Try to deliver what is pending; return within timeout seconds."""

    def own_metrics(self) -> list[MetricFamily]:
        """The sink's health metrics (spool depth, sent, dropped, errors)."""

    def close(self) -> None:
        """Stop background work; pending data stays spooled for the next start."""


def cloudwatch_enabled(config: Config, role: str) -> bool:
    cw = config.cloudwatch
    return cw.enabled and role in cw.roles


def build_sinks(config: Config, role: str, host: Host) -> list[Sink]:
    """The sinks of this role: the CloudWatch sink where it is enabled (by
    default on the head and login nodes)."""
    if not cloudwatch_enabled(config, role):
        return []
    from nodeagent.sinks.cloudwatch import CloudWatchSink, default_spool_dir
    from nodeagent.sinks.role_spool import role_spool_dir
    from nodeagent.sinks.spool import SpoolLocked

    cw = config.cloudwatch
    # each role its own spool: a role change never sends the old role's data
    spool_dir = role_spool_dir(cw.spool_dir or default_spool_dir(config.paths.state_dir), role)
    try:
        sink = CloudWatchSink(
            cw,
            role,
            host=host,
            spool_dir=spool_dir,
            cfnconfig_path=config.paths.cfnconfig,
            hostname=config.hostname,
        )
    except SpoolLocked as e:
        # another agent on this machine already publishes the same data
        log.error("cloudwatch_sink_disabled", reason=str(e))
        return []
    return [sink]


__all__ = ["Sink", "build_sinks", "cloudwatch_enabled"]
