"""Helpers for the GPU tests: a sampler over the fake backend with an injected
clock, a fixture /proc tree for job attribution, and text helpers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nodeagent.collectors.gpu.collector import GpuCollector, GpuStatusCollector
from nodeagent.collectors.gpu.sampler import Sampler
from nodeagent.exposition import render
from nodeagent.gpu.backend import open_backend
from nodeagent.gpu.counters import CounterRow
from nodeagent.gpu.fake import FakeClock, FakeNvml
from nodeagent.gpu.settings import GpuSettings
from nodeagent.host import Host, Roots

GPU_TESTS = Path(__file__).resolve().parent
FIXTURES = GPU_TESTS / "fixtures"
PROC = FIXTURES / "proc"
GOLDEN = GPU_TESTS / "golden"
WALL = 1_767_225_600.0


def fixture_host(tmp: Path | None = None) -> Host:
    """Host whose procfs is the fixture tree and whose sysfs is empty (no DMI)."""
    sysfs = (tmp or FIXTURES) / "no-sys"
    return Host(Roots(procfs=str(PROC), sysfs=str(sysfs), rootfs=str(tmp or FIXTURES), dev=str(sysfs)))


class Rig:
    """A sampler over a FakeNvml, driven by hand: `rig.cycle()` samples once."""

    def __init__(
        self,
        description: str = "p5-8xh100",
        *,
        events: bool = False,
        threads: bool = False,
        host: Host | None = None,
        counters: list[CounterRow] | None = None,
        start: bool = True,
        watch_period: float = 0.01,
        clock: FakeClock | None = None,
        **settings: Any,
    ) -> None:
        self.clock = clock or FakeClock()
        self.settings = GpuSettings(backend="fake", fake_description=description, fake_events=events, **settings)
        self.backend = open_backend(self.settings, clock=self.clock)
        self.fake: FakeNvml = self.backend.api  # type: ignore[assignment]
        self.sampler = Sampler(
            self.settings,
            host or fixture_host(),
            "node-1",
            backend=self.backend,
            clock=self.clock,
            wall=lambda: WALL,
            counters=counters,
            threads=threads,
            watch_period=watch_period,
        )
        self.gpu = GpuCollector(Host(), None, sampler=self.sampler)
        self.status = GpuStatusCollector(Host(), None, sampler=self.sampler)
        self.gpu.first_cycle_wait = self.status.first_cycle_wait = 0.01
        if start:
            self.sampler.start()

    def cycle(self) -> Any:
        return self.sampler.run_cycle()

    def text(self) -> str:
        return render(self.gpu.collect()).decode()

    def status_text(self) -> str:
        return render(self.status.collect()).decode()

    def close(self) -> None:
        self.fake.release_hangs()
        self.sampler.close(timeout=2.0)


@pytest.fixture(name="rig")
def rig_fixture() -> Iterator[Callable[..., Rig]]:
    """`rig(description, **settings)` -> a Rig, closed after the test. Test
    modules import this fixture (no conftest.py here: tests/conftest.py is the
    suite's shared `conftest` module)."""
    made: list[Rig] = []

    def make(*args: Any, **kwargs: Any) -> Rig:
        r = Rig(*args, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


_LINE = re.compile(r'^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], str]]:
    """(labels, value text) of every sample of `name`, labels in written order."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and m.group("name") == name:
            labels = dict(_LABEL.findall(m.group("labels") or ""))
            out.append((labels, m.group("value")))
    return out


def label_names(text: str, name: str) -> list[tuple[str, ...]]:
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and m.group("name") == name:
            out.append(tuple(k for k, _ in _LABEL.findall(m.group("labels") or "")))
    return out


def value(text: str, name: str, **labels: str) -> str | None:
    for got, v in samples(text, name):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    return None


def settings(**kw: Any) -> GpuSettings:
    return replace(GpuSettings(backend="fake", fake_events=False), **kw)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, timeout: float = 10.0) -> str:
    """GET url, retrying until the server answers or timeout passes."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
