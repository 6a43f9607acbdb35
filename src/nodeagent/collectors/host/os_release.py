"""node_exporter's os collector: node_os_info and node_os_version from the watched system's
etc/os-release, or usr/lib/os-release when the first is absent (both under the rootfs)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from nodeagent.catalogue import host_extra as cat
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register

OS_RELEASE_FILES = ("etc/os-release", "usr/lib/os-release")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VERSION = re.compile(r"[0-9]+\.?[0-9]*")

# node_os_info label -> os-release key
_INFO_KEYS = {"build_id": "BUILD_ID", "id": "ID", "id_like": "ID_LIKE", "image_id": "IMAGE_ID",
              "image_version": "IMAGE_VERSION", "name": "NAME", "pretty_name": "PRETTY_NAME",
              "variant": "VARIANT", "variant_id": "VARIANT_ID", "version": "VERSION",
              "version_codename": "VERSION_CODENAME", "version_id": "VERSION_ID"}  # fmt: skip


def parse_os_release(text: str, source: str = "os-release") -> dict[str, str]:
    """KEY=value lines with shell quoting (os-release(5)); '#' comments and blank lines skipped.
    A line that is not an assignment, or whose quoting is broken, is an error."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise ValueError(f"{source} line {number}: not a KEY=value assignment: {raw[:120]!r}")
        try:
            words = shlex.split(value, comments=True)
        except ValueError as e:
            raise ValueError(f"{source} line {number}: {e}: {raw[:120]!r}") from None
        if len(words) > 1:
            raise ValueError(f"{source} line {number}: unquoted whitespace in value: {raw[:120]!r}")
        env[key] = words[0] if words else ""
    return env


def os_version(version_id: str) -> float:
    """The major.minor number at the start of VERSION_ID ('22.04' -> 22.04), 0 when none."""
    match = _VERSION.match(version_id)
    return float(match.group(0)) if match else 0.0


def os_families(env: dict[str, str]) -> list[MetricFamily]:
    info = cat.NODE_OS_INFO.family()
    info.add(tuple(env.get(_INFO_KEYS[label], "") for label in cat.NODE_OS_INFO.labels), 1)
    families = [info]
    version = os_version(env.get("VERSION_ID", ""))
    if version > 0:
        fam = cat.NODE_OS_VERSION.family()
        fam.add((env.get("ID", ""), env.get("ID_LIKE", ""), env.get("NAME", "")), version)
        families.append(fam)
    return families


@register
class OsCollector(Collector):
    name = "os"
    group = "host"
    description = "Operating system release (node_os_info, node_os_version) from os-release."

    def __init__(self, host: Host, options: Any, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        # (path, mtime) of the parsed file and its contents: the file rarely changes
        self._cached: tuple[Path, float, dict[str, str]] | None = None

    def collect(self) -> list[MetricFamily]:
        for rel in OS_RELEASE_FILES:
            path = self.host.rooted(rel)
            try:
                mtime = self.host.mtime(path)
            except FileNotFoundError:
                continue
            cached = self._cached
            if cached is not None and cached[0] == path and cached[1] == mtime:
                return os_families(cached[2])
            env = parse_os_release(self.host.read_text(path), str(path))
            self._cached = (path, mtime, env)
            return os_families(env)
        return []
