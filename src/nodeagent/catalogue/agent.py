"""The agent's own metrics: collector health per exporter group."""

from nodeagent.catalogue.spec import gauge

# node_exporter's meta metrics, served on :9100 for the host group.
NODE_SCRAPE_DURATION = gauge(
    "node_scrape_collector_duration_seconds",
    "node_exporter: Duration of a collector scrape.",
    collector="supervisor",
    labels=("collector",),
    unit="seconds",
)
NODE_SCRAPE_SUCCESS = gauge(
    "node_scrape_collector_success",
    "node_exporter: Whether a collector succeeded.",
    collector="supervisor",
    labels=("collector",),
)
# The same for the other groups (:9400, :9341), under nodeagent's own prefix.
AGENT_SCRAPE_DURATION = gauge(
    "nodeagent_collector_duration_seconds",
    "Duration of the collector's last run.",
    collector="supervisor",
    labels=("collector",),
    unit="seconds",
    group="agent",
)
AGENT_SCRAPE_SUCCESS = gauge(
    "nodeagent_collector_success",
    "Whether the collector's last run succeeded (1) or failed or timed out (0).",
    collector="supervisor",
    labels=("collector",),
    group="agent",
)
AGENT_BUILD_INFO = gauge(
    "nodeagent_build_info",
    "nodeagent version and role; value is always 1.",
    collector="supervisor",
    labels=("version", "role"),
    group="agent",
)
