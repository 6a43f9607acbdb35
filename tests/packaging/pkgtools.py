"""Helpers for the packaging tests: the repository's paths, ports of this
suite's range (15100-15199), the .deb built with the documented command, and
fake system commands that record how the bootstrap scripts call them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
SYSTEMD = REPO / "systemd"
PACKAGING = REPO / "packaging"
PORTS = range(15100, 15200)
# Debian's tools run with the system's own PATH and python3, not the venv's
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C.UTF-8"}


def deb_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def build_deb(out: Path, version: str) -> Path:
    """The .deb of this checkout, built by packaging/build-deb.sh into `out`
    (about 45 s; fails on lintian errors)."""
    r = subprocess.run([str(PACKAGING / "build-deb.sh")], capture_output=True, text=True, timeout=900,
                       env={**CLEAN_ENV, "NODEAGENT_DEB_OUT": str(out)})
    assert r.returncode == 0, r.stderr[-4000:]
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path == out / f"nodeagent_{version}_{deb_arch()}.deb"
    return path


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 15100-15199")


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


FAKE = r"""#!/bin/bash
# fake {name}: records its arguments; fails when FAKE_FAIL_{var} is a
# substring of them
printf '%s\n' "{name} $*" >> "$FAKE_CALLS"
want="${{FAKE_FAIL_{var}:-}}"
if [ -n "$want" ] && [[ "$*" == *"$want"* ]]; then
    echo "{name}: simulated failure" >&2
    exit 3
fi
{body}
exit 0
"""

FAKE_BODIES = {
    # the installed version of nodeagent: FAKE_NODEAGENT_VERSION, else none
    "dpkg-query": r"""
if [[ "$*" == *nodeagent* ]]; then
    [ -n "${FAKE_NODEAGENT_VERSION:-}" ] || exit 1
    printf '%s' "$FAKE_NODEAGENT_VERSION"
else
    printf 'install ok installed'
fi""",
}


def make_fakes(bin_dir: Path, names: list[str]) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        var = "".join(c if c.isalnum() else "_" for c in name)
        p = bin_dir / name
        p.write_text(FAKE.format(name=name, var=var, body=FAKE_BODIES.get(name, "")))
        p.chmod(0o755)


def dummy_deb(directory: Path, version: str = "0.0.1") -> Path:
    """A tiny real .deb named like nodeagent's (dpkg-deb reads its version)."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    tree = directory / "debtree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: nodeagent\nVersion: {version}\nArchitecture: {arch}\nMaintainer: t <t@example.org>\n"
        "Description: test package\n"
    )
    out = directory / f"nodeagent_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(out)], check=True,
                   capture_output=True)
    shutil.rmtree(tree)
    return out
