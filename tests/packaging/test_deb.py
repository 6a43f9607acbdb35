"""The .deb: built with the one documented command (packaging/build-deb.sh,
which fails on lintian errors), then installed into clean chroots of
distributions whose python3 differs from this machine's, with no network:
`nodeagent --version` and `nodeagent check` run there, and the purge leaves
the file system as it found it (packaging/chroot-test.sh).

Slow (about 45 s to build, 10 s per chroot once cached) and needs root,
dpkg-buildpackage, lintian and debootstrap; the first run downloads wheels
from PyPI and the chroots from Debian's and Ubuntu's archives."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pkgtools import PACKAGING

from nodeagent import __version__ as VERSION

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot)"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("dpkg-buildpackage", "lintian", "debootstrap", "unshare")),
        reason="needs dpkg-dev, debhelper, lintian, debootstrap",
    ),
]

CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C.UTF-8"}


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run([str(PACKAGING / "build-deb.sh")], capture_output=True, text=True, timeout=900,
                       env={**CLEAN_ENV, "NODEAGENT_DEB_OUT": str(out)})
    assert r.returncode == 0, r.stderr[-4000:]
    path = Path(r.stdout.strip().splitlines()[-1])
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    assert path == out / f"nodeagent_{VERSION}_{arch}.deb"
    return path


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def test_metadata(deb: Path) -> None:
    depends = {d.split()[0] for d in field(deb, "Depends").split(", ")}
    # the distribution's python3 and base libraries only: no python3-* modules
    assert depends <= {"python3", "passwd", "libc6", "libgcc-s1"}, depends
    assert re.search(r"python3 \(>= 3\.10\)", field(deb, "Depends"))
    conffiles = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True).stdout
    assert b"conffiles" in conffiles


def test_contents(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for p in ("/usr/bin/nodeagent", "/etc/nodeagent/config.yaml", "/usr/share/man/man1/nodeagent.1.gz",
              "/usr/lib/systemd/system/nodeagent@.service",
              "/usr/lib/systemd/system/nodeagent@compute.service.d/role.conf",
              "/var/lib/nodeagent/spool/", "/var/lib/nodeagent/textfile/",
              "/usr/lib/nodeagent/nodeagent/cli.py", "/usr/lib/nodeagent/yaml/__init__.py"):
        assert p in paths, p
    # nothing tied to one Python version: no bytecode, only abi3 extensions
    assert not [p for p in paths if p.endswith(".pyc")]
    assert {p for p in paths if p.endswith(".so")} == {
        "/usr/lib/nodeagent/psutil/_psutil_linux.abi3.so", "/usr/lib/nodeagent/bcrypt/_bcrypt.abi3.so"}


@pytest.mark.parametrize("suite", ["trixie", "jammy"])
def test_installs_runs_and_purges_in_a_chroot(deb: Path, suite: str) -> None:
    """trixie has python 3.13, Ubuntu 22.04 (jammy) 3.10; this machine 3.11."""
    r = subprocess.run([str(PACKAGING / "chroot-test.sh"), str(deb)], capture_output=True, text=True,
                       timeout=900, env={**CLEAN_ENV, "NODEAGENT_CHROOT_SUITE": suite})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"nodeagent --version: nodeagent {VERSION}" in r.stdout
    assert "PASS" in r.stdout
