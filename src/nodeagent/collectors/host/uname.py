"""node_exporter's uname collector: node_uname_info. The kernel strings come from
/proc/sys/kernel/{ostype,osrelease,version,hostname,domainname} (what uname(2) returns for the
reader's UTS namespace), so fixture trees work; the machine is uname(2)'s."""

from __future__ import annotations

from nodeagent.catalogue import host_extra as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

# label -> /proc/sys/kernel file
_FILES = {"sysname": "ostype", "release": "osrelease", "version": "version",
          "nodename": "hostname", "domainname": "domainname"}  # fmt: skip


def uname_labels(files: dict[str, str | None], fallback: dict[str, str]) -> tuple[str, ...]:
    """Label values in the spec's order (domainname, machine, nodename, release, sysname,
    version): each file's text without its newline, or the fallback when it was unreadable."""
    values = {}
    for label, text in files.items():
        values[label] = text.rstrip("\n") if text is not None else fallback.get(label, "")
    values["machine"] = fallback.get("machine", "")
    return tuple(values[name] for name in cat.NODE_UNAME_INFO.labels)


@register
class UnameCollector(Collector):
    name = "uname"
    group = "host"
    description = "Kernel name, release, version, host and machine (node_uname_info)."

    def collect(self) -> list[MetricFamily]:
        files = {
            label: self.host.read_optional(self.host.proc("sys", "kernel", name))
            for label, name in _FILES.items()
        }
        u = self.host.uname()
        fallback = {"sysname": u.sysname, "release": u.release, "version": u.version,
                    "nodename": u.nodename, "machine": u.machine, "domainname": "(none)"}  # fmt: skip
        fam = cat.NODE_UNAME_INFO.family()
        fam.add(uname_labels(files, fallback), 1)
        return [fam]
