"""Benchmark: the cost of one Slurm poll on a large cluster, in both namings.

    python bench/bench_slurm_poll.py [--nodes 1000] [--jobs 50000] [--repeat 5]

Generated outputs, in the exact formats the collectors ask for: a sinfo of
N nodes (8 partitions of N/8 nodes, a quarter of the nodes also in a
partition `all`; states mixed, allocated, idle, powered down, drained; 8 GPUs
each) and a squeue of J jobs (states, reasons, 500 users, 200 accounts, GPU
requests; per_user and per_account on), plus an sdiag report. Timed: what one
poll does after the commands return: parsing, aggregation, building the
families, for sinfo (per-node families on) and squeue, then rendering
everything in the exposition format. Peak Python memory of the same with
tracemalloc, in a separate run. Printed: time per step, series and bytes
served, peak memory.

The commands' own run time is not in it: on a real cluster it is
slurmctld's (bench/bench_squeue.py measures squeue's on a local Slurm).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bench_squeue import peak_memory, timed  # noqa: E402  (the same timing helpers)

from nodeagent.collectors.slurm.sdiag import parse_sdiag, sdiag_families  # noqa: E402
from nodeagent.collectors.slurm.settings import SlurmSettings  # noqa: E402
from nodeagent.collectors.slurm.sinfo import parse_sinfo, per_node_families, sinfo_families  # noqa: E402
from nodeagent.collectors.slurm.squeue import (  # noqa: E402
    ACCOUNT_WIDTH,
    REASON_WIDTH,
    USER_WIDTH,
    SqueueFormat,
    parse_squeue_stream,
    queue_families,
)
from nodeagent.exposition import render  # noqa: E402
from nodeagent.model import MetricFamily, merge_families  # noqa: E402

CHUNK = 1 << 16  # one read of squeue's pipe
SDIAG = ROOT / "tests" / "fixtures" / "slurm" / "22.05" / "sdiag.txt"
NODE_STATES = (("mixed", 30), ("allocated", 30), ("idle", 10), ("idle~", 20), ("drained", 5), ("down", 5))
JOB_STATES = (("R", 55), ("PD", 40), ("CG", 2), ("CD", 3))
REASONS = (("Resources", 30), ("Priority", 50), ("Dependency", 8), ("JobHeldUser", 7), ("BeginTime", 5))


def pick(rng: random.Random, table: tuple[tuple[Any, ...], ...]) -> Any:
    return rng.choices(table, weights=[row[-1] for row in table])[0][0]


def sinfo_output(nodes: int, seed: int = 3) -> str:
    rng = random.Random(seed)
    lines = []
    for i in range(nodes):
        state = pick(rng, NODE_STATES)
        alloc = {"mixed": 40, "allocated": 96}.get(state, 0)
        other = 96 if state in ("drained", "down") else 0
        idle = 96 - alloc - other
        used = 8 if state == "allocated" else 4 if state == "mixed" else 0
        name, features = f"gpu-st-p5-{i + 1}", "p5,h100" if i % 2 else "p5"
        row = f"{state}|{alloc}/{idle}/{other}/96|gpu:h100:8(S:0-1)|gpu:h100:{used}(IDX:0-{max(used - 1, 0)})|"
        row += f"{alloc * 8000}|2000000|{features}|{name}|"
        lines.append(row + f"q{i % 8}")
        if i % 4 == 0:
            lines.append(row + "all")
    return "\n".join(lines) + "\n"


def squeue_output(jobs: int, fmt: SqueueFormat, seed: int = 5) -> bytes:
    rng = random.Random(seed)
    out = []
    for _ in range(jobs):
        state = pick(rng, JOB_STATES)
        reason = pick(rng, REASONS) if state == "PD" else "None"
        record = reason.ljust(REASON_WIDTH).encode()
        if fmt.has_user:
            record += f"user{rng.randrange(500)}".ljust(USER_WIDTH).encode()
        if fmt.owners:
            record += f"project-{rng.randrange(200)}".ljust(ACCOUNT_WIDTH).encode()
        cpus = rng.choice((1, 4, 12, 96))
        record += f"{state}|{cpus}|".encode()
        if fmt.owners:
            record += f"{rng.choice((1, 2))}|1|gres:gpu:{rng.choice((0, 1, 8))}|N/A|N/A|".encode()
        out.append(record + f"q{rng.randrange(8)}\n".encode())
    return b"".join(out)


def sinfo_poll(sinfo_text: str, settings: SlurmSettings) -> list[MetricFamily]:
    parsed = parse_sinfo(sinfo_text)
    return sinfo_families(parsed, settings) + per_node_families(parsed, settings, [])


def squeue_poll(squeue_bytes: bytes, settings: SlurmSettings) -> list[MetricFamily]:
    fmt = SqueueFormat.for_settings(settings)
    chunks = (squeue_bytes[i : i + CHUNK] for i in range(0, len(squeue_bytes), CHUNK))
    res = parse_squeue_stream(chunks, fmt, settings.max_label_values, [f"q{i}" for i in range(8)])
    return queue_families(res, settings)


def one_poll(sinfo_text: str, squeue_bytes: bytes, sdiag_text: str, settings: SlurmSettings) -> list[MetricFamily]:
    families = sinfo_poll(sinfo_text, settings) + squeue_poll(squeue_bytes, settings)
    return families + sdiag_families(parse_sdiag(sdiag_text), settings)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    sinfo_text = sinfo_output(args.nodes)
    sdiag_text = SDIAG.read_text()
    print(f"{args.nodes} nodes ({len(sinfo_text.splitlines())} sinfo lines, {len(sinfo_text) / 1024:.0f} KiB), "
          f"{args.jobs} jobs; median of {args.repeat}")  # fmt: skip
    rows = [
        (naming, owners, max_nodes)
        for naming in ("sckyzo", "vpenso")
        for owners in (False, True)
        for max_nodes in ((4096, 0) if not owners else (4096,))
    ]
    for naming, owners, max_nodes in rows:
        settings = SlurmSettings(naming=naming, per_user=owners, per_account=owners, max_nodes=max_nodes)  # type: ignore[arg-type]
        squeue_bytes = squeue_output(args.jobs, SqueueFormat.for_settings(settings))
        t_sinfo, _ = timed(lambda s=settings: sinfo_poll(sinfo_text, s), args.repeat)
        t_squeue, _ = timed(lambda s=settings, q=squeue_bytes: squeue_poll(q, s), args.repeat)
        families = one_poll(sinfo_text, squeue_bytes, sdiag_text, settings)
        merged = merge_families(families)
        t_render, text = timed(lambda m=merged: render(m), args.repeat)
        series = sum(len(f.samples) for f in merged)
        node_series = sum(len(f.samples) for f in merged if f.name.startswith("slurm_node_"))
        mem_sinfo = peak_memory(lambda s=settings: render(sinfo_poll(sinfo_text, s)))
        mem_squeue = peak_memory(lambda s=settings, q=squeue_bytes: render(squeue_poll(q, s)))
        label = f"{naming}, per_user/per_account {'on ' if owners else 'off'}, max_nodes {max_nodes}"
        out_mib = len(squeue_bytes) / 2**20
        print(f"  {label}:\n    sinfo {t_sinfo * 1000:.1f} ms (peak {peak_mib(mem_sinfo)}), "
              f"squeue {t_squeue * 1000:.1f} ms (peak {peak_mib(mem_squeue)}, its output {out_mib:.1f} MiB), "
              f"render {t_render * 1000:.1f} ms: {series} series ({node_series} per node), "
              f"{len(text) / 1024:.0f} KiB")  # fmt: skip
    return 0


def peak_mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


if __name__ == "__main__":
    raise SystemExit(main())
