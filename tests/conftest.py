"""Fixtures shared by the whole suite."""

from collections.abc import Iterator

import pytest
import structlog
from testlib import AgentProcess, MotoServer


@pytest.fixture(autouse=True)
def _reset_structlog():
    """A test that configures logging onto a captured stream must not leave
    later tests writing to that stream once it is closed."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def agent_process():
    started: list[AgentProcess] = []

    def start(args, env=None):
        a = AgentProcess(args, env)
        started.append(a)
        return a

    yield start
    for a in started:
        if a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real moto_server (CloudWatch, S3) on 127.0.0.1, one for the session;
    tests reset its state (POST /moto-api/reset) as they need."""
    server = MotoServer()
    yield server.url
    server.stop()
