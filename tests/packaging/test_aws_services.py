"""The .deb carries botocore's data only for the AWS services in
packaging/aws-services.txt (trim-botocore.py, run by debian/rules). Fast
checks that the list is what the code needs: its `code` lines are exactly the
clients src/ creates, its `credentials` lines exactly the clients botocore's
credential chain creates; and that the trimming keeps what it must. The
installed package is checked in a chroot by test_deb.py (slow)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import botocore
import pytest
from pkgtools import PACKAGING, REPO

SRC = REPO / "src" / "nodeagent"
SERVICES = PACKAGING / "aws-services.txt"
TRIM = PACKAGING / "trim-botocore.py"
# calls that create a boto3/botocore client, the service name first
CLIENT_CALLS = {"client", "create_client"}
# nodeagent's functions that pass their caller's service name on to .client()
WRAPPERS = {"aws_client"}


def listed() -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for line in SERVICES.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            kinds.setdefault(fields[0], set()).add(fields[1])
    return kinds


class _ClientCalls(ast.NodeVisitor):
    """String-literal service names of client calls (and of the wrappers'
    calls); non-literal names outside a wrapper are collected as unresolved."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.functions: list[str] = []
        self.names: set[str] = set()
        self.unresolved: list[str] = []
        self.resources: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        where = f"{self.path.relative_to(REPO)}:{node.lineno}"
        if called == "resource" and isinstance(func, ast.Attribute):
            self.resources.append(where)
        if called in CLIENT_CALLS or called in WRAPPERS:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self.names.add(first.value)
            elif not (called in CLIENT_CALLS and self.functions and self.functions[-1] in WRAPPERS):
                self.unresolved.append(where)
        self.generic_visit(node)


def clients_in_src() -> tuple[set[str], list[str], list[str]]:
    names: set[str] = set()
    unresolved: list[str] = []
    resources: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        visitor = _ClientCalls(path)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        names |= visitor.names
        unresolved += visitor.unresolved
        resources += visitor.resources
    return names, unresolved, resources


# botocore's credential and token providers: `self._client_creator('sts', ...)`,
# `create_nested_client(self._session, "sso-oidc", ...)`
_CREDENTIAL_CLIENT = re.compile(
    r"(?:_client_creator|create_nested_client|create_client)\(\s*(?:self\._session,\s*)?['\"]([a-z0-9-]+)['\"]"
)


def credential_chain_clients() -> set[str]:
    base = Path(botocore.__file__).parent
    return {m.group(1) for name in ("credentials.py", "tokens.py", "utils.py")
            for m in _CREDENTIAL_CLIENT.finditer((base / name).read_text())}


def test_the_code_lines_are_the_clients_src_creates():
    names, unresolved, resources = clients_in_src()
    assert unresolved == [], "a client made from a name this scan cannot read: add its wrapper to WRAPPERS"
    assert resources == [], "boto3 resources need boto3's resource models, which the package trims"
    assert names == {"cloudwatch", "logs"}  # so that the scan can be seen to find them
    assert listed()["code"] == names


def test_the_credentials_lines_are_the_clients_botocores_credential_chain_creates():
    found = credential_chain_clients()
    assert "sts" in found  # the scan does read botocore's providers
    assert listed()["credentials"] == found
    assert set(listed()) == {"code", "credentials"}


def _fake_vendor(tmp_path: Path) -> Path:
    vendor = tmp_path / "vendor"
    data = vendor / "botocore" / "data"
    for service in ("cloudwatch", "logs", "sts", "sso", "sso-oidc", "signin", "s3", "ec2"):
        (data / service / "2010-08-01").mkdir(parents=True)
        (data / service / "2010-08-01" / "service-2.json.gz").write_bytes(b"x" * 100)
    (data / "logs" / "2014-03-28").mkdir()
    (data / "logs" / "2014-03-28" / "paginators-1.json").write_text("{}")
    for name in ("_retry.json", "endpoints.json", "partitions.json", "sdk-default-configuration.json"):
        (data / name).write_text("{}")
    for service in ("cloudwatch", "s3", "ec2"):
        (vendor / "boto3" / "data" / service / "2010-08-01").mkdir(parents=True)
    return vendor


def _trim(vendor: Path, services: Path = SERVICES) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TRIM), str(vendor), str(services)], capture_output=True, text=True)


def test_trim_keeps_the_listed_services_every_version_and_the_shared_files(tmp_path):
    vendor = _fake_vendor(tmp_path)
    r = _trim(vendor)
    assert r.returncode == 0, r.stderr
    assert "kept cloudwatch, logs, sts, sso, sso-oidc, signin" in r.stdout
    data = vendor / "botocore" / "data"
    assert sorted(p.name for p in data.iterdir()) == sorted(
        ["_retry.json", "endpoints.json", "partitions.json", "sdk-default-configuration.json",
         "cloudwatch", "logs", "signin", "sso", "sso-oidc", "sts"])
    assert sorted(p.name for p in (data / "logs").iterdir()) == ["2010-08-01", "2014-03-28"]
    assert [p.name for p in (vendor / "boto3" / "data").iterdir()] == ["cloudwatch"]


def test_trim_fails_when_a_kept_service_or_shared_file_is_missing(tmp_path):
    vendor = _fake_vendor(tmp_path)
    shutil.rmtree(vendor / "botocore" / "data" / "sso-oidc")
    r = _trim(vendor)
    assert r.returncode == 1 and "botocore/data/sso-oidc" in r.stderr
    assert (vendor / "botocore" / "data" / "s3").is_dir()  # nothing removed on failure
    (vendor / "botocore" / "data" / "sso-oidc").mkdir()
    (vendor / "botocore" / "data" / "partitions.json").unlink()
    r = _trim(vendor)
    assert r.returncode == 1 and "partitions.json" in r.stderr


def test_trim_refuses_a_malformed_list(tmp_path):
    bad = tmp_path / "services.txt"
    bad.write_text("code cloudwatch\nlogs\n")
    r = _trim(_fake_vendor(tmp_path), bad)
    assert r.returncode == 1 and f"{bad}:2: expected '<why> <service>'" in r.stderr


@pytest.mark.parametrize("name", ["build-deb.sh", "debian/rules"])
def test_the_build_runs_the_trim(name):
    text = (PACKAGING / name).read_text()
    assert "trim-botocore.py" in text and "aws-services.txt" in text
