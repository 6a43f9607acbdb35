"""AWS Elastic Fabric Adapter and InfiniBand counters from /sys/class/infiniband.

- EFA devices: every file in ports/<port>/hw_counters/ as node_amazonefa_<counter>{device,port}
  (the names of AWS's EFA node exporter; lifespan, the driver's counter cache period, is a
  gauge) and node_amazonefa_info{device}.
- Every RDMA device: node_exporter's infiniband families (node_infiniband_info, _state_id,
  _physical_state_id, _rate_bytes_per_second and the ports/<port>/counters/ counters).
  Unlike node_exporter 1.5, whose whole collector reports no data when a device has no
  counters/ directory (every EFA device), the other families are still reported.

A node without /sys/class/infiniband has nothing to report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nodeagent.catalogue import host_extra as cat
from nodeagent.catalogue.spec import MetricSpec
from nodeagent.collectors.host._values import go_uint
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_]")
# the files node_exporter reads, by directory under ports/<port>/
_COUNTER_FILES: dict[str, list[str]] = {}
for _directory, _filename, _spec, _multiplier in cat.NODE_INFINIBAND_COUNTERS:
    _COUNTER_FILES.setdefault(_directory, []).append(_filename)

# help texts of AWS's EFA exporter for the counters it knows (other counters get the spec's)
EFA_COUNTER_HELP = {
    "alloc_pd_err": "Number of allocations PD errors",
    "alloc_ucontext_err": "Number of allocations UContext errors",
    "cmds_err": "Number of commands errors",
    "completed_cmds": "Number of completed commands",
    "create_ah_err": "Number of create AH errors",
    "create_cq_err": "Number of create CQ errors",
    "create_qp_err": "Number of create qp errors",
    "keep_alive_rcvd": "Number of keep-alive packets received",
    "mmap_err": "Number of mmap errors",
    "no_completion_cmds": "Number of commands with no completion",
    "rdma_read_bytes": "Number of bytes read with RDMA",
    "rdma_read_resp_bytes": "Number of read reponses bytes with RDMA",
    "rdma_read_wr_err": "Number of read write errors with RDMA",
    "rdma_read_wrs": "Number of read rs with RDMA",
    "rdma_write_bytes": "Number of bytes wrote with RDMA",
    "rdma_write_recv_bytes": "Number of bytes wrote and received with RDMA",
    "rdma_write_wr_err": "Number of bytes wrote wr with error RDMA",
    "rdma_write_wrs": "Number of bytes wrote wrs RDMA",
    "recv_bytes": "Number of bytes recv bytes",
    "recv_wrs": "Number of bytes recv wrs",
    "reg_mr_err": "Number of reg_mr errors",
    "rx_bytes": "Number of bytes received",
    "rx_drops": "Number of packets droped",
    "rx_pkts": "Number of packets received",
    "send_bytes": "Number of bytes send",
    "send_wrs": "Number of wrs send",
    "submitted_cmds": "Number of submitted commands",
    "tx_bytes": "Number of bytes transmitted",
    "tx_pkts": "Number of packets transmitted",
    "retrans_bytes": "Number of bytes retransmitted",
    "retrans_pkts": "Number of packets retransmitted",
    "retrans_timeout_events": "Number of retransmission timeout events",
    "impaired_remote_conn_events": "Number of impaired remote connection events",
    "unresponsive_remote_events": "Number of unresponsive remote events",
}


@dataclass(frozen=True)
class EfaOptions:
    # node_amazonefa_* from the hw_counters of EFA devices
    amazonefa: bool = True
    # node_exporter's node_infiniband_* for every RDMA device (EFA and InfiniBand HCAs)
    infiniband: bool = True


def parse_ib_state(text: str, source: str = "state") -> int:
    """'4: ACTIVE' -> 4 (state and phys_state files)."""
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip().isdigit():
        raise ValueError(f"{source}: expected 'ID: NAME', got {text.strip()[:80]!r}")
    return int(parts[0].strip())


def parse_ib_rate(text: str, source: str = "rate") -> float:
    """'100 Gb/sec (4X EDR)' -> 12500000000 bytes per second."""
    parts = text.strip().split(" ", 1)
    try:
        if len(parts) != 2:
            raise ValueError
        gbits = float(parts[0])
    except ValueError:
        raise ValueError(f"{source}: expected '<N> Gb/sec ...', got {text.strip()[:80]!r}") from None
    return float(int(gbits * 125000000))


def parse_counter(text: str) -> int | None:
    """A counter file's value, or None when the driver reports none ('N/A (no PMA)')."""
    try:
        return go_uint(text.strip())
    except ValueError:
        return None


def is_efa(device: str, driver_link: str | None) -> bool:
    """An EFA device: bound to the efa driver, or (without a driver link) named like one."""
    if driver_link:
        return driver_link.rstrip("/").rsplit("/", 1)[-1] == "efa"
    return device.startswith(("rdmap", "efa_"))


def _family(families: dict[str, MetricFamily], spec: MetricSpec) -> MetricFamily:
    fam = families.get(spec.name)
    if fam is None:
        fam = families[spec.name] = spec.family()
    return fam


def amazonefa_family(counter: str) -> MetricFamily:
    """The family for one hw_counters file name."""
    if counter == "lifespan":
        return cat.NODE_AMAZONEFA_LIFESPAN.family()
    fam = cat.NODE_AMAZONEFA_COUNTER.family(field=_INVALID_NAME.sub("_", counter))
    known = EFA_COUNTER_HELP.get(counter)
    if known is not None:
        fam.help = known
    return fam


@register
class EfaCollector(Collector):
    name = "efa"
    group = "host"
    # EFA is attached to the compute fleet; head and login nodes have none
    default_roles = ("compute",)
    description = "EFA hw_counters (node_amazonefa_*) and InfiniBand port counters (node_infiniband_*)."
    Options = EfaOptions

    def collect(self) -> list[MetricFamily]:
        base = self.host.sys("class", "infiniband")
        families: dict[str, MetricFamily] = {}

        for device in self.host.listdir(base):
            dev_path = base / device
            efa = is_efa(device, self.host.readlink(dev_path / "device" / "driver"))
            want_efa = efa and self.options.amazonefa
            if not (want_efa or self.options.infiniband):
                continue
            if self.options.infiniband:
                attrs = self.host.read_attrs(dev_path, ("board_id", "fw_ver", "hca_type"))
                board, firmware, hca = (attrs[f] or "" for f in ("board_id", "fw_ver", "hca_type"))
                _family(families, cat.NODE_INFINIBAND_INFO).add((board, device, firmware, hca), 1)
            if want_efa:
                _family(families, cat.NODE_AMAZONEFA_INFO).add((device,), 1)
            for port in self.host.listdir(dev_path / "ports"):
                if not port.isdigit():
                    continue
                port_path = dev_path / "ports" / port
                labels = (device, port)
                if self.options.infiniband:
                    self._infiniband_port(port_path, labels, families)
                if want_efa:
                    hw = port_path / "hw_counters"
                    for counter, text in self.host.read_attrs(hw, self.host.listdir(hw)).items():
                        value = parse_counter(text) if text is not None and counter != "info" else None
                        if value is None:
                            continue
                        fam = families.get("node_amazonefa_" + _INVALID_NAME.sub("_", counter))
                        if fam is None:
                            fam = amazonefa_family(counter)
                            families[fam.name] = fam
                        fam.add(labels, value)
        return [families[name] for name in sorted(families)]

    def _infiniband_port(self, port_path: Path, labels: tuple[str, str], families: dict[str, MetricFamily]) -> None:
        host = self.host
        port_attrs = host.read_attrs(port_path, ("state", "phys_state", "rate"))
        for filename, spec, parse in (
            ("state", cat.NODE_INFINIBAND_STATE_ID, parse_ib_state),
            ("phys_state", cat.NODE_INFINIBAND_PHYSICAL_STATE_ID, parse_ib_state),
            ("rate", cat.NODE_INFINIBAND_RATE_BYTES_PER_SECOND, parse_ib_rate),
        ):
            text = port_attrs[filename]
            if text is None:
                continue
            _family(families, spec).add(labels, parse(text, str(port_path / filename)))
        values: dict[str, dict[str, str | None]] = {}
        for directory, filename, spec, multiplier in cat.NODE_INFINIBAND_COUNTERS:
            texts = values.get(directory)
            if texts is None:
                path = port_path / directory
                texts = values[directory] = host.read_attrs(path, _COUNTER_FILES[directory])
            text = texts[filename]
            value = parse_counter(text) if text is not None else None
            if value is None:
                continue  # 'N/A (no PMA)' and unreadable counters are skipped, as node_exporter does
            _family(families, spec).add(labels, value * multiplier)
