"""The files the .deb ships under /usr/share/doc/nodeagent are listed in
debian/ and staged by build-deb.sh (test_deb.py lists the built .deb)."""

from __future__ import annotations

import re

from pkgtools import PACKAGING, REPO


# ---- /usr/share/doc/nodeagent ------------------------------------------------------------
def test_package_docs_are_listed_and_staged() -> None:
    """debian/nodeagent.docs and .examples name repository files that
    build-deb.sh copies into the build tree (the .deb's listing: test_deb.py)."""
    listed = []
    for name in ("nodeagent.docs", "nodeagent.examples"):
        listed += (PACKAGING / "debian" / name).read_text(encoding="utf-8").split()
    assert set(listed) == {"docs/metrics.md", "config/nodeagent.example.yaml", "config/grafana"}
    build = (PACKAGING / "build-deb.sh").read_text(encoding="utf-8")
    staged = re.search(r"-cf - ([^|]*)\|", build.replace("\\\n", " "))
    assert staged is not None
    for path in listed:
        assert (REPO / path).exists(), path
        assert path in staged.group(1).split(), f"build-deb.sh does not stage {path}"
    assert list((REPO / "config/grafana").glob("*.json"))
