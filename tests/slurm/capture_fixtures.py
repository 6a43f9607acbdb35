"""Capture the Slurm outputs the parser tests read, from a real local cluster
in the scripted scenario (scenario.py), into tests/fixtures/slurm/<version>/.

    python tests/slurm/capture_fixtures.py            # needs root and slurm-wlm

Run it again on a machine with another Slurm version to add that version's
fixtures; the parser tests run against every version directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "src"))

import scenario  # noqa: E402
from localslurm import LocalSlurm, ensure_user, slurm_available  # noqa: E402

from nodeagent.collectors.slurm.scontrol import LICENSES_ARGS, NODES_ARGS, RESERVATIONS_ARGS  # noqa: E402
from nodeagent.collectors.slurm.sinfo import REASON_ARGS, SINFO_ARGS  # noqa: E402
from nodeagent.collectors.slurm.squeue import PARTITIONS_ARGS, SqueueFormat  # noqa: E402
from nodeagent.collectors.slurm.sshare import SSHARE_ARGS  # noqa: E402

NEUTRAL_BASE = b"/srv/slurm-test"


def main() -> int:
    why = slurm_available()
    if why:
        print(why, file=sys.stderr)
        return 1
    ensure_user()
    base = Path(tempfile.mkdtemp(prefix="nodeagent-capture-"))
    base.chmod(0o755)
    cluster = scenario.new_cluster(base, base_port=16840)
    try:
        cluster.start()
        scenario.build(cluster)
        version = cluster.run("sinfo", "--version").stdout.split()[1]
        major = ".".join(version.split(".")[:2])
        out = HERE.parent / "fixtures" / "slurm" / major
        out.mkdir(parents=True, exist_ok=True)

        def raw(cmd: str, *args: str) -> bytes:
            out = subprocess.run(
                [cluster.bin(cmd), *args], env=cluster.env, capture_output=True, check=True, timeout=30
            ).stdout
            # the cluster's temporary directory is no part of the fixture
            escaped = str(base).replace("/", "\\/").encode()  # as JSON writes it
            out = out.replace(str(base).encode(), NEUTRAL_BASE)
            return out.replace(escaped, NEUTRAL_BASE.replace(b"/", b"\\/"))

        (out / "VERSION").write_text(version + "\n")
        (out / "sinfo_scenario.txt").write_bytes(raw("sinfo", *SINFO_ARGS))
        (out / "sinfo_partitions.txt").write_bytes(raw("sinfo", *PARTITIONS_ARGS))
        (out / "squeue_scenario.out").write_bytes(raw("squeue", *SqueueFormat(owners=False).args()))
        (out / "squeue_scenario_owners.out").write_bytes(raw("squeue", *SqueueFormat(owners=True).args()))
        (out / "squeue_scenario_user.out").write_bytes(raw("squeue", *SqueueFormat(user=True).args()))
        (out / "sinfo_reasons.txt").write_bytes(raw("sinfo", *REASON_ARGS))
        (out / "scontrol_licenses.txt").write_bytes(raw("scontrol", *LICENSES_ARGS))
        (out / "scontrol_reservations.txt").write_bytes(raw("scontrol", *RESERVATIONS_ARGS))
        (out / "scontrol_nodes.txt").write_bytes(raw("scontrol", *NODES_ARGS))
        (out / "sdiag.txt").write_bytes(raw("sdiag"))
        (out / "sshare_no_accounting.txt").write_bytes(raw("sshare", *SSHARE_ARGS))
        # squeue --json of the same jobs, for the benchmark's comparison
        (out / "squeue_scenario.json").write_bytes(raw("squeue", "-a", "-r", "-t", "all", "--json"))
        # a node going through power down: idle! (pending), idle% (powering
        # down), idle~ (powered down); every distinct sinfo output in turn
        cluster.scontrol("update", "nodename=node5", "state=power_down")
        steps: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = raw("sinfo", *SINFO_ARGS)
            state = next(ln.split(b"|")[0] for ln in text.splitlines() if b"|node5|" in ln).decode()
            if not steps or steps[-1][0] != state:
                steps.append((state, text))
            if state == "idle~":
                break
            time.sleep(0.05)
        for i, (state, text) in enumerate(steps):
            name = {"idle!": "pending", "idle%": "powering_down", "idle~": "powered_down"}.get(state, state)
            (out / f"sinfo_power_down_{i}_{name}.txt").write_bytes(text)
        print(f"wrote {out} ({version}); power-down steps: {[s for s, _ in steps]}")
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    capture_not_responding(out)
    return 0


def capture_not_responding(out: Path) -> None:
    """A node whose slurmd dies: idle -> idle* -> down*. Takes about 30 s
    even with SlurmdTimeout=6, too slow for the test suite to wait for."""
    base = Path(tempfile.mkdtemp(prefix="nodeagent-capture-"))
    base.chmod(0o755)
    cluster = LocalSlurm(
        base,
        base_port=16870,
        cluster="mini",
        node_count=3,
        partitions=("batch Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP",),
        extra="SlurmdTimeout=6\n",
    )
    try:
        cluster.start()
        cluster.kill("slurmd-node2")
        steps: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            text = subprocess.run(
                [cluster.bin("sinfo"), *SINFO_ARGS], env=cluster.env, capture_output=True, check=True
            ).stdout
            state = next(ln.split(b"|")[0] for ln in text.splitlines() if b"|node2|" in ln).decode()
            if not steps or steps[-1][0] != state:
                steps.append((state, text))
            if state.startswith("down"):
                break
            time.sleep(0.2)
        for i, (state, text) in enumerate(steps):
            name = state.replace("*", "_not_responding")
            (out / f"sinfo_no_response_{i}_{name}.txt").write_bytes(text)
        print(f"not-responding steps: {[s for s, _ in steps]}")
    finally:
        cluster.stop(timeout=3)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
