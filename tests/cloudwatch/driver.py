"""A small process that publishes through build_sinks(), for the kill -9 tests.

driver.py CONFIG --role head --start TS --count N [--pause S]
    publishes slurm_cluster_nodes_idle = i at TS + 60 * i, i = 0..N-1, and prints
    "published i" once publish() returned (the datum is then durable)
driver.py CONFIG --role head --replay SECONDS
    starts the sink (which reads the spool), flushes, prints "left N"
"""

from __future__ import annotations

import argparse
import sys
import time

import structlog

from nodeagent.catalogue import slurm as sl
from nodeagent.config import load_config
from nodeagent.host import Host
from nodeagent.sinks import build_sinks


def main() -> int:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--role", default="head")
    ap.add_argument("--start", type=float, default=0.0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--pause", type=float, default=0.02)
    ap.add_argument("--replay", type=float, default=None)
    args = ap.parse_args()
    cfg = load_config(args.config)
    sinks = build_sinks(cfg, args.role, Host())
    if len(sinks) != 1:
        print("no sink", flush=True)
        return 2
    (sink,) = sinks
    print("ready", flush=True)
    if args.replay is not None:
        sink.flush(args.replay)
        left = {f.name: f.samples for f in sink.own_metrics()}["nodeagent_cloudwatch_spool_datums"][0][1]
        print(f"left {int(left)}", flush=True)
        sink.close()
        return 0
    for i in range(args.count):
        fam = sl.CLUSTER_NODES["idle"].family()
        fam.add((), float(i))
        sink.publish([fam], args.start + 60 * i)
        print(f"published {i}", flush=True)
        time.sleep(args.pause)
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
