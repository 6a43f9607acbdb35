"""The .deb: built with the one documented command (packaging/build-deb.sh,
which fails on lintian errors), then installed into clean chroots of
distributions whose python3 differs from this machine's, with no network:
`nodeagent --version`, `nodeagent check` and a client for each AWS service
the code uses (from the trimmed botocore) run there, and the purge leaves the
file system as it found it (packaging/chroot-test.sh). Upgrades with no
terminal, from 0.1.0 (built from the git history) and to a build with a
changed default, keep the operator's config (packaging/upgrade-test.sh).

Slow (about 20 s to build, 7 s per chroot once cached, 25 s more to build
0.1.0 once, 40-60 s for the upgrades) and needs root, dpkg-buildpackage,
lintian and debootstrap; the first run downloads wheels from PyPI and the
chroots from Debian's and Ubuntu's archives."""

from __future__ import annotations

import functools
import gzip
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from pkgtools import CLEAN_ENV, PACKAGING, REPO

from nodeagent import __version__ as VERSION

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot)"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("dpkg-buildpackage", "lintian", "debootstrap", "unshare")),
        reason="needs dpkg-dev, debhelper, lintian, debootstrap",
    ),
]


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def test_metadata(deb: Path) -> None:
    depends = {d.split()[0] for d in field(deb, "Depends").split(", ")}
    # the distribution's python3 and base libraries only: no python3-* modules
    assert depends <= {"python3", "passwd", "libc6", "libgcc-s1"}, depends
    assert re.search(r"python3 \(>= 3\.10\)", field(deb, "Depends"))
    # no conffile: the operator's /etc/nodeagent/config.yaml is written by
    # postinst, so an upgrade never stops at a conffile prompt
    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(control)) as t:
        names = {n.lstrip("./") for n in t.getnames()}
    assert "conffiles" not in names
    assert {"preinst", "postinst", "prerm", "postrm"} <= names


def deb_paths(deb: Path) -> set[str]:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].lstrip(".") for line in listing.splitlines()}


@functools.lru_cache(maxsize=2)
def deb_data(deb: Path) -> bytes:
    return subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout


def deb_file(deb: Path, path: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(deb_data(deb))) as t:
        f = t.extractfile("." + path)
        assert f is not None, path
        return f.read()


DOC = "/usr/share/doc/nodeagent"


def test_docs_in_usr_share_doc(deb: Path) -> None:
    """The example config, the metrics catalogue, the Grafana dashboards and
    the Prometheus alerting rules, as they are in the repository (the dashboards and the example
    uncompressed, to be imported or copied as they are)."""
    paths = deb_paths(deb)
    dashboards = sorted(p.name for p in (REPO / "config/grafana").glob("*.json"))
    assert len(dashboards) == 3
    shipped = {p.removeprefix(f"{DOC}/examples/grafana/") for p in paths
               if p.startswith(f"{DOC}/examples/grafana/") and not p.endswith("/")}
    assert sorted(shipped) == dashboards
    for name in dashboards:
        assert deb_file(deb, f"{DOC}/examples/grafana/{name}") == (REPO / "config/grafana" / name).read_bytes()
    assert deb_file(deb, f"{DOC}/examples/nodeagent.example.yaml") == (
        REPO / "config/nodeagent.example.yaml").read_bytes()
    # the Prometheus alerting rules, beside the dashboards
    assert deb_file(deb, f"{DOC}/examples/prometheus/nodeagent-alerts.yaml") == (
        REPO / "config/prometheus/nodeagent-alerts.yaml").read_bytes()
    assert gzip.decompress(deb_file(deb, f"{DOC}/metrics.md.gz")) == (REPO / "docs/metrics.md").read_bytes()
    assert deb_file(deb, "/usr/share/nodeagent/config.yaml") == (
        REPO / "src/nodeagent/data/config.yaml").read_bytes()


def test_contents(deb: Path) -> None:
    paths = deb_paths(deb)
    # nothing in /etc: the config is the operator's (postinst writes it)
    assert not [p for p in paths if p.startswith("/etc/")]
    for p in ("/usr/bin/nodeagent", "/usr/share/nodeagent/config.yaml", "/usr/share/man/man1/nodeagent.1.gz",
              "/usr/lib/systemd/system/nodeagent@.service",
              "/usr/lib/systemd/system/nodeagent@compute.service.d/role.conf",
              "/var/lib/nodeagent/spool/", "/var/lib/nodeagent/textfile/",
              "/usr/lib/nodeagent/nodeagent/cli.py", "/usr/lib/nodeagent/yaml/__init__.py"):
        assert p in paths, p
    # nothing tied to one Python version: no bytecode, only abi3 extensions
    assert not [p for p in paths if p.endswith(".pyc")]
    assert {p for p in paths if p.endswith(".so")} == {"/usr/lib/nodeagent/bcrypt/_bcrypt.abi3.so"}


def aws_services() -> list[str]:
    """packaging/aws-services.txt's services, in order."""
    lines = (PACKAGING / "aws-services.txt").read_text().splitlines()
    return [f[1] for f in (line.split("#", 1)[0].split() for line in lines) if f]


def test_botocore_data_is_trimmed_to_the_listed_services(deb: Path) -> None:
    paths = deb_paths(deb)
    data = "/usr/lib/nodeagent/botocore/data/"
    top = {p[len(data):].strip("/").split("/")[0] for p in paths if p.startswith(data) and p != data}
    shared = {"_retry.json", "endpoints.json", "partitions.json", "sdk-default-configuration.json"}
    assert top == shared | set(aws_services())
    # every API version of a kept service, with its rule set (CloudWatch Logs has one version today)
    assert any(p.startswith(data + "logs/") and p.endswith("/service-2.json.gz") for p in paths)
    assert any(p.startswith(data + "cloudwatch/") and p.endswith("/endpoint-rule-set-1.json.gz") for p in paths)


@pytest.mark.parametrize("suite", ["trixie", "jammy"])
def test_installs_runs_and_purges_in_a_chroot(deb: Path, suite: str) -> None:
    """trixie has python 3.13, Ubuntu 22.04 (jammy) 3.10; this machine 3.11."""
    r = subprocess.run([str(PACKAGING / "chroot-test.sh"), str(deb)], capture_output=True, text=True,
                       timeout=900, env={**CLEAN_ENV, "NODEAGENT_CHROOT_SUITE": suite})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"nodeagent --version: nodeagent {VERSION}" in r.stdout
    # a client for every service the code and botocore's credential chain use, from the installed package
    assert f"AWS clients load: {' '.join(aws_services())}" in r.stdout
    assert "PASS" in r.stdout


@pytest.fixture(scope="module")
def old_deb() -> Path:
    """0.1.0, the last version that shipped /etc/nodeagent/config.yaml as a
    conffile, built from the git history with its own build-deb.sh (once;
    kept in out/upgrade-test/)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        # the commit that stopped shipping it; 0.1.0 is its parent
        moved = git("log", "-1", "--format=%H", "-G", "^debian/config.yaml etc/nodeagent/", "HEAD", "--",
                    "packaging/debian/nodeagent.install")
        rev = git("rev-parse", f"{moved}^")
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"the upgrade test builds 0.1.0 from the git history, which is not there: {e}")
    cache = REPO / "out" / "upgrade-test"
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    cached = cache / f"nodeagent_0.1.0_{arch}.{rev[:12]}.deb"
    if cached.is_file():
        return cached
    src = cache / f"src-{rev[:12]}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    wheels = REPO / "out" / "wheelhouse"
    if wheels.is_dir():
        shutil.copytree(wheels, src / "out" / "wheelhouse")
    r = subprocess.run([str(src / "packaging/build-deb.sh")], capture_output=True, text=True, timeout=900,
                       env={**CLEAN_ENV, "NODEAGENT_DEB_OUT": str(src / "deb"), "NODEAGENT_SKIP_LINTIAN": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    built = Path(r.stdout.strip().splitlines()[-1])
    assert field(built, "Version") == "0.1.0"
    control = subprocess.run(["dpkg-deb", "-I", str(built), "conffiles"], capture_output=True, text=True).stdout
    assert control.split() == ["/etc/nodeagent/config.yaml"], control
    shutil.copy(built, cached)
    shutil.rmtree(src)
    return cached


def test_upgrades_with_no_terminal_keep_the_operators_config(deb: Path, old_deb: Path) -> None:
    """From 0.1.0 (configured with `nodeagent install --config`, and
    untouched) and from this build to one with a changed default, every dpkg
    run reading /dev/null: no prompt, the operator's file unchanged, removal
    restores nothing, purge leaves nothing; and the same upgrade under the
    conffile scheme does stop at the prompt, so the check can fail."""
    r = subprocess.run([str(PACKAGING / "upgrade-test.sh"), str(old_deb), str(deb)], capture_output=True,
                       text=True, timeout=900, env={**CLEAN_ENV, "NODEAGENT_CHROOT_SUITE": "trixie"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for line in ("old-configured: upgraded to", "old-untouched: the unchanged 0.1.0 conffile gave way",
                 "new-configured: removed; /etc/nodeagent/config.yaml is still the operator's",
                 "old-scheme: as expected, the conffile scheme stops at the prompt", "PASS"):
        assert line in r.stdout, line
