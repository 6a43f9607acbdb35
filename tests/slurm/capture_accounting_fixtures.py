"""Capture sshare's output with real accounting (MariaDB + slurmdbd, the
scenario of localaccounting.py), exactly as the sshare collector runs it, into
tests/fixtures/slurm/<version>/sshare_accounting_{fair_tree,classic}.txt.

    python tests/slurm/capture_accounting_fixtures.py   # needs root, slurm-wlm, slurmdbd, MariaDB
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "src"))

from localaccounting import accounting_available, build_usage, new_cluster  # noqa: E402
from localslurm import ensure_user, slurm_available  # noqa: E402

from nodeagent.collectors.slurm.sshare import SSHARE_ARGS  # noqa: E402


def main() -> int:
    why = slurm_available() or accounting_available()
    if why:
        print(why, file=sys.stderr)
        return 1
    ensure_user()
    base = Path(tempfile.mkdtemp(prefix="nodeagent-capture-acct-"))
    base.chmod(0o755)
    # ports 17350-17399, next to the test's 17300-17349
    cluster = new_cluster(base, base_port=17350)
    try:
        cluster.start()
        build_usage(cluster)
        version = cluster.run("sinfo", "--version").stdout.split()[1]
        out = HERE.parent / "fixtures" / "slurm" / ".".join(version.split(".")[:2])
        out.mkdir(parents=True, exist_ok=True)
        for flags, name in (("", "fair_tree"), ("NO_FAIR_TREE", "classic")):
            cluster.set_priority_flags(flags)
            text = cluster.run("sshare", *SSHARE_ARGS).stdout
            (out / f"sshare_accounting_{name}.txt").write_text(text)
            print(f"{out}/sshare_accounting_{name}.txt:\n{text}")
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
