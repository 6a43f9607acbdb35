"""Every metric nodeagent can emit, declared once.

Domain modules declare specs at import; importing this package loads them all.
"""

# Declarations register themselves on import; the order is the documentation order.
from nodeagent.catalogue import agent, gpu, host, host_extra, sinks, slurm, summaries  # noqa: F401
from nodeagent.catalogue.spec import CATALOGUE, Catalogue, CloudWatchSpec, MetricSpec

__all__ = ["CATALOGUE", "Catalogue", "CloudWatchSpec", "MetricSpec"]
