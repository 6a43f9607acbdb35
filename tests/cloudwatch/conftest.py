"""Fixtures for the CloudWatch sink: a real moto_server, the fault proxy in
front of it, a read-back client, and a sink factory with short timeouts."""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.host import Host
from nodeagent.sinks.cloudwatch import CloudWatchSink

sys.path.insert(0, str(Path(__file__).parent))
from cwtools import aws_test_env, fast_settings, free_port
from faultproxy import FaultProxy

_USED_PORTS: set[int] = set()


@pytest.fixture(scope="session")
def _proxy(moto_url: str) -> Iterator[FaultProxy]:
    port = free_port(_USED_PORTS)
    _USED_PORTS.add(port)
    p = FaultProxy(moto_url, port).start()
    yield p
    p.stop()


@pytest.fixture
def proxy(_proxy: FaultProxy, moto_url: str) -> Iterator[FaultProxy]:
    """The fault proxy in pass mode, records cleared, moto state reset."""
    req = urllib.request.Request(moto_url + "/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=5).close()
    _proxy.reset()
    yield _proxy
    _proxy.reset()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = aws_test_env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return env


@pytest.fixture
def cw(moto_url: str, aws_env: dict[str, str]) -> Any:
    """A boto3 client straight to moto, for reading back."""
    import boto3

    return boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)


@pytest.fixture
def make_sink(tmp_path: Path, proxy: FaultProxy, aws_env: dict[str, str]) -> Iterator[Callable[..., CloudWatchSink]]:
    sinks: list[CloudWatchSink] = []

    def factory(role: str = "head", spool: Path | None = None, **overrides: Any) -> CloudWatchSink:
        catalogue = overrides.pop("catalogue", None)
        settings = fast_settings(proxy.url, spool or tmp_path / "spool", **overrides)
        sink = CloudWatchSink(
            settings,
            role,
            host=Host(),
            spool_dir=settings.spool_dir or "",
            cfnconfig_path=str(tmp_path / "no-cfnconfig"),
            hostname="testhost",
            catalogue=catalogue,
        )
        sinks.append(sink)
        return sink

    yield factory
    for s in sinks:
        s.close()


if os.environ.get("NODEAGENT_TEST_DEBUG"):  # pragma: no cover
    import structlog

    structlog.configure()
