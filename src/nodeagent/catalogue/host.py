"""node_exporter-compatible host metrics (port 9100)."""

from nodeagent.catalogue.spec import gauge

NODE_LOAD1 = gauge("node_load1", "1m load average.", collector="loadavg")
NODE_LOAD5 = gauge("node_load5", "5m load average.", collector="loadavg")
NODE_LOAD15 = gauge("node_load15", "15m load average.", collector="loadavg")
