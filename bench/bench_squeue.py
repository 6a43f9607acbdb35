"""Benchmark: squeue parsing, nodeagent's fixed-width stream against
`squeue --json` + json.loads, on the same jobs, in the same run.

    python bench/bench_squeue.py [--no-real] [--repeat N]

1. Generated output of 10k and 100k jobs (a realistic mix of states, pending
   reasons, partitions), in the exact bytes squeue prints for nodeagent's
   format, and the same jobs as `squeue --json` (Slurm 22.05's job objects,
   from a captured real job), both held in memory. Timed: nodeagent's parse
   and aggregation (RecordCounter + aggregate, in 64 KiB chunks as the
   collector reads its pipe) against json.loads + the same counting. Peak memory with
   tracemalloc, in a separate run (it slows what it measures).
2. A real local Slurm 22.05 with 10k jobs (one held array split into 10k job
   records): squeue's own run time in nodeagent's format and with --json, and
   the parse of each output. Skipped without root and slurm-wlm.

Targets (issue): parse >= 10x faster than the JSON path, parse <= 25% of
squeue's own run time at 10k jobs, peak memory independent of the job count.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "slurm"))

from nodeagent.collectors.slurm.squeue import REASON_WIDTH, SqueueFormat, parse_squeue_stream  # noqa: E402

# what one read of squeue's stdout pipe returns at most (Linux pipe capacity)
CHUNK = 1 << 16
JSON_TEMPLATE = ROOT / "tests" / "fixtures" / "slurm" / "22.05" / "squeue_scenario.json"

STATES = (("RUNNING", "R", 55), ("PENDING", "PD", 40), ("COMPLETING", "CG", 2), ("COMPLETED", "CD", 3))
REASONS = (("Resources", 30), ("Priority", 50), ("Dependency", 8), ("JobHeldUser", 7), ("BeginTime", 5))
PARTITIONS = (("gpu", 50), ("cpu", 30), ("debug", 10), ("gpu,cpu", 10))


def pick(rng: random.Random, table: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    return rng.choices(table, weights=[row[-1] for row in table])[0]


def generate_jobs(n: int, seed: int = 7) -> list[tuple[str, str, str, int, str]]:
    """(long state, compact state, reason, cpus, partition) per job."""
    rng = random.Random(seed)
    jobs = []
    for _ in range(n):
        state, compact, _ = pick(rng, STATES)
        reason = pick(rng, REASONS)[0] if compact == "PD" else "None"
        jobs.append((state, compact, reason, rng.choice((1, 2, 4, 8, 16, 32, 96)), pick(rng, PARTITIONS)[0]))
    return jobs


def fixed_output(jobs: list[tuple[str, str, str, int, str]]) -> bytes:
    """What `squeue -O Reason:40,StateCompact:|,NumCPUs:|,Partition:0` prints."""
    return b"".join(
        reason.encode()[:REASON_WIDTH].ljust(REASON_WIDTH) + f"{compact}|{cpus}|{part}\n".encode()
        for _, compact, reason, cpus, part in jobs
    )


def json_output(jobs: list[tuple[str, str, str, int, str]]) -> bytes:
    """The same jobs as squeue --json (22.05, openapi v0.0.38) prints them:
    each a real captured job object with its fields set."""
    doc = json.loads(JSON_TEMPLATE.read_text())
    template = doc["jobs"][0]
    out = []
    for i, (state, _, reason, cpus, part) in enumerate(jobs):
        job = dict(template)
        job.update(job_id=1000 + i, job_state=state, state_reason=reason, cpus=cpus, partition=part)
        out.append(job)
    doc["jobs"] = out
    return json.dumps(doc, indent=2).encode()


# ---- the two parse paths (the same numbers out of each) -------------------------------

JSON_STATES = {"PENDING": "pending", "RUNNING": "running", "COMPLETING": "completing", "COMPLETED": "completed"}


def parse_fixed(data: bytes | Iterator[bytes]) -> dict[str, Any]:
    chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK)) if isinstance(data, bytes) else data
    res = parse_squeue_stream(chunks, SqueueFormat())
    return {
        "states": {k: v for k, v in res.states.items() if k in JSON_STATES.values()},
        "reasons": dict(res.reasons),
        "partition_pending": {p: c["pending"] for p, c in res.partition_states.items() if c["pending"]},
    }


def parse_json(data: bytes) -> dict[str, Any]:
    doc = json.loads(data)
    states: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    partition_pending: Counter[str] = Counter()
    for job in doc["jobs"]:
        state = JSON_STATES.get(job["job_state"], "other")
        states[state] += 1
        if state == "pending":
            reasons[job["state_reason"]] += 1
            for part in job["partition"].split(","):
                partition_pending[part] += 1
    return {"states": dict(states), "reasons": dict(reasons), "partition_pending": dict(partition_pending)}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def peak_memory(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def mib(n: float) -> str:
    return f"{n / 1048576:8.2f} MiB"


def ms(t: float) -> str:
    return f"{t * 1000:9.2f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---- generated outputs ---------------------------------------------------------------


def bench_generated(repeat: int) -> list[bool]:
    print("== generated squeue output (same jobs both ways) ==")
    print(f"{'jobs':>7} {'fixed bytes':>12} {'json bytes':>12} {'fixed parse':>12} {'json parse':>12} "
          f"{'speedup':>8} {'fixed peak':>13} {'json peak':>13}")  # fmt: skip
    ok = []
    peaks = {}
    for n in (10_000, 100_000):
        jobs = generate_jobs(n)
        fixed = fixed_output(jobs)
        js = json_output(jobs)
        t_fixed, r_fixed = timed(partial(parse_fixed, fixed), repeat)
        t_json, r_json = timed(partial(parse_json, js), max(1, repeat // (3 if n <= 10_000 else 7)))
        assert r_fixed == r_json, "the two paths disagree"
        # peak while parsing a stream (the collector reads squeue's pipe):
        # the output is produced chunk by chunk, never held whole
        m_fixed = peak_memory(partial(parse_fixed, iter_chunks(fixed)))
        m_json = peak_memory(partial(parse_json, js))
        peaks[n] = m_fixed
        speedup = t_json / t_fixed
        print(f"{n:>7} {len(fixed):>12,} {len(js):>12,} {ms(t_fixed)} {ms(t_json)} {speedup:7.1f}x "
              f"{mib(m_fixed)} {mib(m_json)}")  # fmt: skip
        ok.append(speedup >= 10)
        print(f"        target >= 10x faster than json.loads: {verdict(speedup >= 10)}")
    growth = peaks[100_000] / peaks[10_000]
    print(f"fixed-format peak memory 100k / 10k jobs: {growth:.2f}x (json: grows with the jobs)")
    print(f"        target: peak memory independent of the job count (< 1.5x for 10x the jobs): "
          f"{verdict(growth < 1.5)}")  # fmt: skip
    ok.append(growth < 1.5)
    return ok


def iter_chunks(data: bytes) -> Iterator[bytes]:
    """Chunks copied out one at a time, as os.read hands them over."""
    for i in range(0, len(data), CHUNK):
        yield bytes(data[i : i + CHUNK])


# ---- a real Slurm -----------------------------------------------------------------------


def bench_real(repeat: int, jobs: int) -> list[bool]:
    from localslurm import LocalSlurm, slurm_available

    why = slurm_available()
    if why:
        print(f"== real Slurm: skipped ({why}) ==")
        return []
    base = Path(tempfile.mkdtemp(prefix="nodeagent-bench-slurm-"))
    base.chmod(0o755)
    cluster = LocalSlurm(
        base,
        base_port=16880,
        cluster="bench",
        partitions=(
            "gpu Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP",
            "cpu Nodes=node4 MaxTime=INFINITE State=UP",
        ),
    )
    ok: list[bool] = []
    try:
        started = time.monotonic()
        cluster.start()
        array = cluster.sbatch("--hold", f"--array=0-{jobs - 1}", "-p", "gpu", wrap="true")
        # a held array is one record in slurmctld; updating a task's partition
        # splits it into a job of its own: 10k real job records
        script = "".join(f"update jobid={array}_{i} partition={'cpu' if i % 3 == 0 else 'gpu'}\n"
                         for i in range(jobs))  # fmt: skip
        subprocess.run(
            [cluster.bin("scontrol"), "-Q"], input=script, text=True, env=cluster.env,
            capture_output=True, check=False, timeout=600,
        )  # fmt: skip
        records = len(cluster.run("squeue", "-h", "-o", "%i").stdout.splitlines())
        print(f"== real Slurm {cluster.run('sinfo', '--version').stdout.strip()}: {records} job records "
              f"({jobs} jobs), set up in {time.monotonic() - started:.1f}s ==")  # fmt: skip
        fmt_args = SqueueFormat().args()

        def run_squeue(args: list[str]) -> tuple[float, bytes]:
            started = time.perf_counter()
            out = subprocess.run([cluster.bin("squeue"), *args], env=cluster.env, capture_output=True,
                                 check=True).stdout  # fmt: skip
            return time.perf_counter() - started, out

        fixed_runs = [run_squeue(fmt_args) for _ in range(repeat)]
        t_squeue = statistics.median(t for t, _ in fixed_runs)
        fixed = fixed_runs[0][1]
        json_runs = [run_squeue(["-a", "-r", "-t", "all", "--json"]) for _ in range(max(1, repeat // 3))]
        t_squeue_json = statistics.median(t for t, _ in json_runs)
        js = json_runs[0][1]
        t_parse, r_fixed = timed(lambda: parse_fixed(fixed), repeat)
        t_json, r_json = timed(lambda: parse_json(js), max(1, repeat // 3))
        assert r_fixed["states"] == r_json["states"], (r_fixed, r_json)
        print(f"squeue, nodeagent's format: {ms(t_squeue)}  ({len(fixed):,} bytes)  parse {ms(t_parse)}")
        print(f"squeue --json:              {ms(t_squeue_json)}  ({len(js):,} bytes)  json.loads+count "
              f"{ms(t_json)}")  # fmt: skip
        share = t_parse / t_squeue
        print(f"parse / squeue's own run time: {share * 100:.1f}%   target <= 25%: {verdict(share <= 0.25)}")
        total_fixed, total_json = t_squeue + t_parse, t_squeue_json + t_json
        print(f"end to end (squeue + parse): fixed {ms(total_fixed)}, json {ms(total_json)}: "
              f"{total_json / total_fixed:.1f}x")  # fmt: skip
        print(f"parse alone: {t_json / t_parse:.1f}x faster than json.loads+count   target >= 10x: "
              f"{verdict(t_json / t_parse >= 10)}")  # fmt: skip
        ok += [share <= 0.25, t_json / t_parse >= 10]
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-real", action="store_true", help="skip the real-Slurm part")
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement (median)")
    parser.add_argument("--real-jobs", type=int, default=10_000)
    args = parser.parse_args()
    ok = bench_generated(args.repeat)
    if not args.no_real:
        ok += bench_real(args.repeat, args.real_jobs)
    print(f"\n{sum(ok)}/{len(ok)} targets met")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
