"""Exporters served in-process on 127.0.0.1 for the hostile HTTP tests."""

import ssl
import subprocess
import time

import pytest

from nodeagent.exporter import Exporter
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector
from nodeagent.snapshot import GroupCollection
from nodeagent.supervise import Supervisor
from nodeagent.webconfig import TLSServerConfig, WebConfig, ssl_context


class One(Collector):
    name = "one"
    group = "host"
    default_roles = ("compute",)
    description = "one sample"
    delay = 0.0  # seconds each collection takes
    calls = 0

    def collect(self):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        fam = MetricFamily("node_one", "One.", "gauge", ("x",))
        fam.add(("y",), 1)
        return [fam]


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "tls.key", d / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


@pytest.fixture
def client_tls(cert):
    return ssl.create_default_context(cafile=str(cert[0]))


@pytest.fixture
def serve(cert):
    """serve(tls=False, users=None, min_interval=1.0, delay=0.0, max_requests=40) -> Exporter"""
    made = []

    def make(tls=False, users=None, min_interval=1.0, delay=0.0, max_requests=40):
        collector = One(Host(), None)
        collector.delay = delay
        group = GroupCollection("host", Supervisor("host", [collector], timeout=10), min_interval=min_interval)
        tls_cfg = TLSServerConfig(cert_file=str(cert[0]), key_file=str(cert[1])) if tls else None
        web = WebConfig(tls_server_config=tls_cfg, basic_auth_users=users or {})
        ctx = ssl_context(tls_cfg, "web.yml") if tls_cfg else None
        e = Exporter("host", "127.0.0.1:0", group, web, ctx, max_requests=max_requests)
        e.start()
        made.append(e)
        return e

    yield make
    for e in made:
        e.stop()
        e.collection.close()
