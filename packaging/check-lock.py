"""Check that packaging/requirements.lock is closed: every dependency of every
locked wheel, for each Python version the .deb supports, is itself locked at a
version that satisfies it. build-deb.sh runs this on the downloaded wheels.

    python3 packaging/check-lock.py requirements.lock WHEELHOUSE

Uses the `packaging` library vendored in pip (a build dependency already).
"""

from __future__ import annotations

import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:
    from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]

# the python3 of Ubuntu 22.04, Debian 12, Ubuntu 24.04, Debian 13
PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def read_lock(path: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(name).decode("utf-8"))
    return meta.get_all("Requires-Dist") or []


def main(lock: str, wheelhouse: str) -> int:
    pins = read_lock(Path(lock))
    wheels = {}
    for w in Path(wheelhouse).glob("*.whl"):
        dist, version = w.name.split("-")[:2]
        if pins.get(canonicalize_name(dist)) == Version(version):
            wheels[canonicalize_name(dist)] = w
    problems = [f"{name}=={v}: no wheel in {wheelhouse}" for name, v in pins.items() if name not in wheels]
    for dist, wheel in sorted(wheels.items()):
        for spec in wheel_requirements(wheel):
            req = Requirement(spec)
            dep = canonicalize_name(req.name)
            for py in PYTHONS:
                env = {"python_version": py, "python_full_version": f"{py}.0", "extra": "",
                       "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                       "implementation_name": "cpython", "platform_python_implementation": "CPython"}
                if req.marker is not None and not Marker(str(req.marker)).evaluate(env):
                    continue
                if dep not in pins:
                    problems.append(f"{dist} needs {spec!r} on Python {py}, which the lock lacks")
                elif not req.specifier.contains(pins[dep], prereleases=True):
                    problems.append(f"{dist} needs {spec!r} on Python {py}; the lock has {pins[dep]}")
    for p in dict.fromkeys(problems):
        print(f"check-lock: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
