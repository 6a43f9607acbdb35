"""node_exporter's cpu collector (Linux, 1.5 defaults).

node_cpu_seconds_total{cpu,mode} and node_cpu_guest_seconds_total{cpu,mode}
from the per-CPU lines of /proc/stat (USER_HZ ticks, 100 per second);
node_cpu_isolated{cpu} from /sys/devices/system/cpu/isolated;
node_cpu_core_throttles_total{core,package} and
node_cpu_package_throttles_total{package} from thermal_throttle (Intel).

Like node_exporter, counters never go backwards: a value below the last one
is held at the last one (the kernel's idle/iowait accounting jitters), and a
CPU whose idle time drops by 3 s or more (a CPU hotplugged back) starts over.
node_cpu_info (--collector.cpu.info) is off by default upstream and not
implemented here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import line_error
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register

USER_HZ = 100.0
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# /proc/stat cpu columns: the 8 modes, then guest and guest_nice.
COLUMNS = 10
IDLE = 3
JUMP_BACK_SECONDS = 3.0
CORE_THROTTLE = ("core_throttle_count",)
PACKAGE_THROTTLE = ("package_throttle_count",)


@dataclass(frozen=True)
class CpuOptions:
    # export node_cpu_guest_seconds_total (node_exporter's --collector.cpu.guest, on by default)
    guest: bool = True


def parse_cpu_stat(text: str, source: str = "stat") -> list[tuple[str, list[float]]]:
    """The per-CPU lines of /proc/stat as (cpu number, seconds per column), in
    file order; columns are user, nice, system, idle, iowait, irq, softirq,
    steal, guest, guest_nice (missing trailing columns of old kernels are 0).
    The all-CPU "cpu" line is skipped."""
    # The cpu lines come first; the intr line after them can be very long.
    end = text.find("\nintr")
    head = text if end < 0 else text[:end]
    cpus: list[tuple[str, list[float]]] = []
    for lineno, line in enumerate(head.splitlines(), 1):
        if not line.startswith("cpu"):
            continue
        parts = line.split()
        name = parts[0]
        if name == "cpu":
            continue
        cpu = name[3:]
        if not cpu.isdigit() or len(parts) < 2:
            raise line_error(source, lineno, line, "malformed cpu line")
        try:
            values = [float(v) / USER_HZ for v in parts[1 : COLUMNS + 1]]
        except ValueError:
            raise line_error(source, lineno, line, "non-numeric cpu time") from None
        if len(values) < COLUMNS:
            values.extend([0.0] * (COLUMNS - len(values)))
        cpus.append((cpu, values))
    if not cpus:
        raise ValueError(f"{source}: no per-CPU lines (cpuN) found")
    return cpus


def parse_cpu_list(text: str, source: str = "isolated") -> list[str]:
    """A kernel CPU list ("0-3,8,10-11") as CPU numbers; "" is no CPUs."""
    cpus: list[str] = []
    text = text.strip()
    if not text:
        return cpus
    for part in text.split(","):
        first, sep, last = part.partition("-")
        try:
            start = int(first)
            stop = int(last) if sep else start
        except ValueError:
            raise ValueError(f"{source}: invalid CPU list {text[:80]!r}") from None
        if stop < start or start < 0:
            raise ValueError(f"{source}: invalid CPU range {part!r}")
        cpus.extend(str(c) for c in range(start, stop + 1))
    return cpus


def clamp_monotonic(
    last: dict[str, list[float]], current: list[tuple[str, list[float]]]
) -> dict[str, list[float]]:
    """node_exporter's guard against counters going backwards: every column
    keeps the larger of the last and the new value; a CPU whose idle time fell
    by JUMP_BACK_SECONDS or more (hotplug) restarts from the new values.
    Returns the new state; CPUs that disappeared are dropped."""
    state: dict[str, list[float]] = {}
    for cpu, new in current:
        prev = last.get(cpu)
        if prev is None or prev[IDLE] - new[IDLE] >= JUMP_BACK_SECONDS:
            state[cpu] = list(new)
            continue
        state[cpu] = [n if n >= p else p for p, n in zip(prev, new, strict=False)]
    return state


class _Topology:
    """CPU -> (package, core) and which CPUs have thermal_throttle counters.
    Static while the set of CPUs stays the same; re-read when it changes."""

    def __init__(self, host: Host, cpus: list[str]) -> None:
        self.cpus = cpus
        # (package, core, cpu dir) for the first CPU seen of each core
        self.cores: list[tuple[str, str, Path]] = []
        # (package, cpu dir) for the first CPU seen of each package
        self.packages: list[tuple[str, Path]] = []
        seen_cores: set[tuple[str, str]] = set()
        seen_packages: set[str] = set()
        for cpu in cpus:
            base = host.sys("devices", "system", "cpu", cpu)
            throttle = base / "thermal_throttle"
            if not host.exists(throttle):
                continue
            topo = host.read_attrs(base / "topology", ("physical_package_id", "core_id"))
            package, core = topo["physical_package_id"], topo["core_id"]
            if package is None or core is None or not package.isdigit() or not core.isdigit():
                continue
            if (package, core) not in seen_cores:
                seen_cores.add((package, core))
                self.cores.append((package, core, throttle))
            if package not in seen_packages:
                seen_packages.add(package)
                self.packages.append((package, throttle))


@register
class CpuCollector(Collector):
    name = "cpu"
    group = "host"
    description = "CPU time per CPU and mode from /proc/stat (node_cpu_seconds_total), isolation, throttling."
    Options = CpuOptions

    def __init__(self, host: Host, options: CpuOptions, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._last: dict[str, list[float]] = {}
        self._labels: dict[str, tuple[tuple[str, str], ...]] = {}
        self._isolated: list[str] | None = None
        self._topology: _Topology | None = None

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("stat")
        current = parse_cpu_stat(self.host.read_text(path), str(path))
        self._last = state = clamp_monotonic(self._last, current)

        seconds = cat.CPU_SECONDS.family()
        guest = cat.CPU_GUEST_SECONDS.family()
        add_seconds = seconds.samples.append
        add_guest = guest.samples.append
        with_guest = self.options.guest
        labels = self._labels
        for cpu, _ in current:
            values = state[cpu]
            pairs = labels.get(cpu)
            if pairs is None:
                pairs = labels[cpu] = tuple((cpu, m) for m in (*MODES, "user", "nice"))
            for i in range(8):
                add_seconds((pairs[i], values[i]))
            if with_guest:
                # guest time is also counted in user and nice
                add_guest((pairs[8], values[8]))
                add_guest((pairs[9], values[9]))
        families = [seconds, guest]
        families.extend(self._isolated_family())
        families.extend(self._throttle_families())
        return families

    def _isolated_family(self) -> list[MetricFamily]:
        if self._isolated is None:
            path = self.host.sys("devices", "system", "cpu", "isolated")
            text = self.host.read_optional(path)
            self._isolated = parse_cpu_list(text, str(path)) if text else []
        if not self._isolated:
            return []
        fam = cat.CPU_ISOLATED.family()
        for cpu in self._isolated:
            fam.add((cpu,), 1.0)
        return [fam]

    def _throttle_families(self) -> list[MetricFamily]:
        cpu_dir = self.host.sys("devices", "system", "cpu")
        cpus = [e for e in self.host.listdir(cpu_dir) if e.startswith("cpu") and e[3:].isdigit()]
        topo = self._topology
        if topo is None or topo.cpus != cpus:
            topo = self._topology = _Topology(self.host, cpus)
        if not topo.cores and not topo.packages:
            return []
        core_fam = cat.CPU_CORE_THROTTLES.family()
        for package, core, throttle in topo.cores:
            count = self.host.read_attrs(throttle, CORE_THROTTLE)[CORE_THROTTLE[0]]
            if count is not None and count.isdigit():
                core_fam.add((core, package), float(count))
        package_fam = cat.CPU_PACKAGE_THROTTLES.family()
        for package, throttle in topo.packages:
            count = self.host.read_attrs(throttle, PACKAGE_THROTTLE)[PACKAGE_THROTTLE[0]]
            if count is not None and count.isdigit():
                package_fam.add((package,), float(count))
        return [package_fam, core_fam]
