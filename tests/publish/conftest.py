"""Fixtures of the publish tests: a real moto_server standing in for CloudWatch
and CloudWatch Logs (the suite's moto_url fixture), reset per test."""

from __future__ import annotations

import urllib.request

import pytest


@pytest.fixture
def moto(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto_server, reset, with dummy credentials in the environment (the default chain)."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=5).read()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return moto_url
