"""node_exporter's entropy collector: node_entropy_available_bits / _pool_size_bits
from /proc/sys/kernel/random/{entropy_avail,poolsize}."""

from __future__ import annotations

from nodeagent.catalogue import host_extra as cat
from nodeagent.collectors.host._values import read_uint
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register


def parse_entropy(entropy_avail: str, poolsize: str, avail_source: str = "entropy_avail",
                  pool_source: str = "poolsize") -> tuple[int, int]:
    """The two files' texts -> (available bits, pool size bits); errors name the file."""
    return read_uint(entropy_avail, avail_source), read_uint(poolsize, pool_source)


@register
class EntropyCollector(Collector):
    name = "entropy"
    group = "host"
    description = "Kernel entropy pool (node_entropy_*) from /proc/sys/kernel/random."

    def collect(self) -> list[MetricFamily]:
        avail_path = self.host.proc("sys", "kernel", "random", "entropy_avail")
        pool_path = self.host.proc("sys", "kernel", "random", "poolsize")
        avail, pool = parse_entropy(self.host.read_text(avail_path), self.host.read_text(pool_path),
                                    str(avail_path), str(pool_path))
        return [cat.NODE_ENTROPY_AVAILABLE_BITS.single(avail), cat.NODE_ENTROPY_POOL_SIZE_BITS.single(pool)]
