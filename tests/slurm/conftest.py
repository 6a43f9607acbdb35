"""Fixtures for the Slurm tests.

`slurm_scenario` (session): one real Slurm 22.05 cluster (munged, slurmctld,
8 slurmd + 2 cloud nodes) on ports 16817 (slurmctld), 16818, 16916-16926,
with the scripted job mix of scenario.py; torn down at the end (jobs
cancelled, daemons shut down and waited for, SIGKILL after a timeout).
`mini_cluster` (per test): a small second cluster on ports 16860-16969 for
the tests that break things (slurmctld killed, nodes powered down).
Both are skipped where Slurm or root is missing.
"""

from __future__ import annotations

import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import scenario  # noqa: E402
from localslurm import LocalSlurm, ensure_user, slurm_available  # noqa: E402


def _base_dir(prefix: str) -> Path:
    # not under pytest's 0700 tmp dir: jobs run as a second user and need it
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


@pytest.fixture(scope="session")
def slurm_scenario() -> Iterator[tuple[LocalSlurm, dict[str, int]]]:
    why = slurm_available()
    if why:
        pytest.skip(why)
    ensure_user()
    base = _base_dir("nodeagent-slurm-")
    cluster = scenario.new_cluster(base, base_port=16817)
    try:
        cluster.start()
        ids = scenario.build(cluster)
        yield cluster, ids
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mini_cluster() -> Iterator[LocalSlurm]:
    why = slurm_available()
    if why:
        pytest.skip(why)
    base = _base_dir("nodeagent-slurm-mini-")
    cluster = LocalSlurm(
        base,
        base_port=16860,
        cluster="mini",
        node_count=3,
        partitions=("batch Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP",),
        power_save=True,
        # not-responding nodes are noticed within a few seconds
        extra="SlurmdTimeout=6\n",
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a fake Slurm command (a shell script) into a bin dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def write(name: str, script: str) -> Path:
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return bin_dir

    return write
