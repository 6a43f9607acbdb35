"""FSx for Lustre (any Lustre) client statistics from llite.*.stats: debugfs
lustre/llite/<fs>-<sb>/stats (Lustre >= 2.12, root only) or, on older clients,
procfs fs/lustre/llite/<fs>-<sb>/stats. One series per file system name: two mounts of
the same file system are summed. node_exporter has no Lustre collector; the families are
nodeagent_lustre_*. A node without a Lustre client has nothing to report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nodeagent.catalogue import host_extra as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

# llite directory names are '<fsname>-<superblock address in hex>'
_LLITE_DIR = re.compile(r"(.+)-([0-9a-fA-F]{8,16})")
_BYTES_OPS = ("read_bytes", "write_bytes")


@dataclass(frozen=True)
class OpStats:
    samples: int
    unit: str  # 'bytes', 'usecs', 'reqs', ...
    sum: int | None  # the sum column, when the line has min/max/sum


def fs_name(directory: str) -> str:
    """'fsx-ffff9a1c2d3e4000' -> 'fsx' (the name as it is when there is no address suffix)."""
    match = _LLITE_DIR.fullmatch(directory)
    return match.group(1) if match else directory


def parse_llite_stats(text: str, source: str = "stats") -> dict[str, OpStats]:
    """'<op> <count> samples [<unit>] [<min> <max> <sum> [<sumsq>]]' lines -> {op: OpStats}.

    snapshot_time/start_time/elapsed_time and other lines without 'samples' are skipped;
    a 'samples' line whose numbers do not parse is an error."""
    ops: dict[str, OpStats] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if len(fields) < 4 or fields[2] != "samples":
            continue
        unit = fields[3]
        if not (unit.startswith("[") and unit.endswith("]")):
            raise ValueError(f"{source} line {number}: expected '[unit]', got {line[:120]!r}")
        if not fields[1].isdigit() or not all(f.isdigit() for f in fields[4:7]):
            raise ValueError(f"{source} line {number}: not a number in {line[:120]!r}")
        total = int(fields[6]) if len(fields) >= 7 else None
        ops[fields[0]] = OpStats(int(fields[1]), unit[1:-1], total)
    return ops


def lustre_families(per_fs: dict[str, dict[str, OpStats]]) -> list[MetricFamily]:
    read_bytes = cat.NODEAGENT_LUSTRE_READ_BYTES.family()
    write_bytes = cat.NODEAGENT_LUSTRE_WRITE_BYTES.family()
    read_samples = cat.NODEAGENT_LUSTRE_READ_SAMPLES.family()
    write_samples = cat.NODEAGENT_LUSTRE_WRITE_SAMPLES.family()
    operations = cat.NODEAGENT_LUSTRE_OPERATIONS.family()
    op_time = cat.NODEAGENT_LUSTRE_OPERATION_TIME.family()
    for fs in sorted(per_fs):
        ops = per_fs[fs]
        for op, samples_fam, bytes_fam in (("read_bytes", read_samples, read_bytes),
                                           ("write_bytes", write_samples, write_bytes)):  # fmt: skip
            stats = ops.get(op)
            # a client that has not read (written) yet has no line: its counters are 0
            samples_fam.add((fs,), stats.samples if stats else 0)
            bytes_fam.add((fs,), stats.sum if stats and stats.sum is not None else 0)
        for op in sorted(ops):
            if op in _BYTES_OPS:
                continue
            stats = ops[op]
            operations.add((fs, op), stats.samples)
            if stats.unit == "usecs" and stats.sum is not None:
                op_time.add((fs, op), stats.sum / 1e6)
    return [read_bytes, write_bytes, read_samples, write_samples, operations, op_time]


def merge_stats(into: dict[str, OpStats], ops: dict[str, OpStats]) -> None:
    """Add one mount's stats to its file system's totals."""
    for op, stats in ops.items():
        prev = into.get(op)
        if prev is None:
            into[op] = stats
        else:
            total = None if prev.sum is None or stats.sum is None else prev.sum + stats.sum
            into[op] = OpStats(prev.samples + stats.samples, prev.unit, total)


@register
class LustreCollector(Collector):
    name = "lustre"
    group = "host"
    description = "Lustre client (FSx for Lustre) read/write bytes and operations from llite stats."

    def _lustre_client_present(self) -> bool:
        return self.host.exists(self.host.proc("fs", "lustre")) or self.host.exists(self.host.sys("fs", "lustre"))

    def collect(self) -> list[MetricFamily]:
        denied: Path | None = None
        per_fs: dict[str, dict[str, OpStats]] = {}
        for base in (self.host.debugfs("lustre", "llite"), self.host.proc("fs", "lustre", "llite")):
            try:
                entries = self.host.listdir(base)
            except PermissionError:
                denied = base
                continue
            for entry in entries:
                path = base / entry / "stats"
                text = self.host.read_optional(path)
                if text is None:
                    continue  # unmounted meanwhile, or no stats here (2.12+ keeps them in debugfs)
                merge_stats(per_fs.setdefault(fs_name(entry), {}), parse_llite_stats(text, str(path)))
            if per_fs:
                return lustre_families(per_fs)
        if denied is not None and self._lustre_client_present():
            raise PermissionError(f"{denied}: permission denied (Lustre client statistics in debugfs need root)")
        return []
