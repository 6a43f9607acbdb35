"""node_exporter's cpufreq collector (Linux).

Per CPU, from /sys/devices/system/cpu/cpuN/cpufreq/ (kHz, exported in Hz):
node_cpu_frequency_{,min_,max_}hertz from cpuinfo_{cur,min,max}_freq and
node_cpu_scaling_frequency_{,min_,max_}hertz from scaling_{cur,min,max}_freq.
A value whose file is missing or unreadable (cpuinfo_cur_freq is root-only)
is left out, as node_exporter does. Machines without cpufreq (most cloud VMs)
cost one directory listing.
"""

from __future__ import annotations

from nodeagent.catalogue import host as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

# (file in cpuN/cpufreq, spec), in node_exporter's order
FILES = (
    ("cpuinfo_cur_freq", cat.CPU_FREQUENCY),
    ("cpuinfo_min_freq", cat.CPU_FREQUENCY_MIN),
    ("cpuinfo_max_freq", cat.CPU_FREQUENCY_MAX),
    ("scaling_cur_freq", cat.CPU_SCALING_FREQUENCY),
    ("scaling_min_freq", cat.CPU_SCALING_FREQUENCY_MIN),
    ("scaling_max_freq", cat.CPU_SCALING_FREQUENCY_MAX),
)
FILENAMES = tuple(name for name, _ in FILES)


def parse_khz(text: str | None) -> float | None:
    """A cpufreq file's kHz value in Hz; None for absent or non-numeric
    ("<unknown>" is what some drivers write)."""
    if text is None or not text.isdigit():
        return None
    return float(text) * 1000.0


def cpu_dirs(entries: list[str]) -> list[str]:
    """The cpuN entries of /sys/devices/system/cpu, in CPU number order."""
    cpus = [e for e in entries if e.startswith("cpu") and e[3:].isdigit()]
    cpus.sort(key=lambda e: int(e[3:]))
    return cpus


@register
class CpufreqCollector(Collector):
    name = "cpufreq"
    group = "host"
    description = "CPU frequencies per CPU from /sys/devices/system/cpu/cpu*/cpufreq."

    def collect(self) -> list[MetricFamily]:
        cpu_root = self.host.sys("devices", "system", "cpu")
        # cpuN/cpufreq links to cpufreq/policyM; no policy, no cpufreq anywhere
        if not any(e.startswith("policy") for e in self.host.listdir(cpu_root / "cpufreq")):
            return []
        families = [spec.family() for _, spec in FILES]
        adders = [fam.samples.append for fam in families]
        for cpu_name in cpu_dirs(self.host.listdir(cpu_root)):
            attrs = self.host.read_attrs(cpu_root / cpu_name / "cpufreq", FILENAMES)
            labels = (cpu_name[3:],)
            for filename, add in zip(FILENAMES, adders, strict=False):
                hz = parse_khz(attrs[filename])
                if hz is not None:
                    add((labels, hz))
        return families
