"""Fixtures of the packaging tests: the .deb (built once per session), a
moto server and an AWS environment."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest
from pkgtools import build_deb

from nodeagent import __version__ as VERSION


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's .deb, built with packaging/build-deb.sh once for the
    chroot, upgrade and live systemd tests together."""
    return build_deb(tmp_path_factory.mktemp("deb"), VERSION)


@pytest.fixture
def aws_env(moto_url: str) -> dict[str, str]:
    """Environment for the AWS CLI and boto3 against moto, after a reset."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_REGION="eu-west-1",
        AWS_ENDPOINT_URL=moto_url,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return env
