"""The HTTP exporter: /metrics (gzip), landing page, health, TLS, basic auth."""

import base64
import gzip
import ssl
import subprocess
import urllib.error
import urllib.request

import bcrypt
import pytest

from nodeagent.exporter import Exporter
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector
from nodeagent.settings import ConfigError
from nodeagent.snapshot import GroupCollection
from nodeagent.supervise import Supervisor
from nodeagent.webconfig import WebConfig, load_web_config, ssl_context


class One(Collector):
    name = "one"
    group = "host"
    default_roles = ("compute",)
    description = "one sample"

    def collect(self):
        fam = MetricFamily("node_one", "One.", "gauge", ("x",))
        fam.add(("y",), 1)
        return [fam]


@pytest.fixture
def exporter_factory():
    made = []

    def make(web: WebConfig | None = None):
        group = GroupCollection("host", Supervisor("host", [One(Host(), None)], timeout=2), min_interval=1)
        tls = ssl_context(web.tls_server_config, "web.yml") if web and web.tls_server_config else None
        e = Exporter("host", "127.0.0.1:0", group, web, tls)
        e.start()
        made.append(e)
        return e

    yield make
    for e in made:
        e.stop()
        e.collection.close()


def get(url, headers=None, context=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5, context=context) as r:
        return r.status, dict(r.headers), r.read()


def test_metrics_plain_and_gzip(exporter_factory):
    e = exporter_factory()
    base = f"http://127.0.0.1:{e.port}"
    status, headers, body = get(base + "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b'node_one{x="y"} 1\n' in body
    assert b'node_scrape_collector_success{collector="one"} 1' in body
    status, headers, zbody = get(base + "/metrics", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zbody) == body
    assert b'href="/metrics"' in get(base + "/")[2]
    assert get(base + "/healthz")[2] == b"ok\n"
    with pytest.raises(urllib.error.HTTPError) as err:
        get(base + "/nope")
    assert err.value.code == 404


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")


def test_basic_auth(exporter_factory, capsys):
    e = exporter_factory(WebConfig(basic_auth_users={"prom": _hash("s3cret-value")}))
    url = f"http://127.0.0.1:{e.port}/metrics"
    for header in (None, "Basic " + base64.b64encode(b"prom:wrong").decode(), "Basic !!!", "Bearer x"):
        with pytest.raises(urllib.error.HTTPError) as err:
            get(url, {"Authorization": header} if header else {})
        assert err.value.code == 401
        assert err.value.headers["WWW-Authenticate"].startswith("Basic")
    good = "Basic " + base64.b64encode(b"prom:s3cret-value").decode()
    assert get(url, {"Authorization": good})[0] == 200
    assert get(url, {"Authorization": good})[0] == 200  # cached path
    captured = capsys.readouterr()
    assert "s3cret-value" not in captured.out + captured.err


def test_tls(exporter_factory, tmp_path):
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    web_file = tmp_path / "web.yml"
    web_file.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                        f"basic_auth_users:\n  prom: '{_hash('pw')}'\n")
    e = exporter_factory(load_web_config(str(web_file)))
    ctx = ssl.create_default_context(cafile=str(cert))
    auth = {"Authorization": "Basic " + base64.b64encode(b"prom:pw").decode()}
    status, _, body = get(f"https://127.0.0.1:{e.port}/metrics", auth, context=ctx)
    assert status == 200 and b"node_one" in body
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        get(f"http://127.0.0.1:{e.port}/metrics", auth)


def test_web_config_errors(tmp_path):
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users:\n  prom: plaintext\n")
    with pytest.raises(ConfigError, match="basic_auth_users.prom: must be a bcrypt hash"):
        load_web_config(str(bad))
    bad.write_text("tls_server_config:\n  cert_file: /x\n")
    with pytest.raises(ConfigError, match="cert_file and key_file are both required"):
        load_web_config(str(bad))
    bad.write_text("tls_server_confg: {}\n")
    with pytest.raises(ConfigError, match="tls_server_confg: unknown key"):
        load_web_config(str(bad))


def test_client_certificates_need_a_ca(tmp_path):
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config:\n  cert_file: /x.crt\n  key_file: /x.key\n"
                   "  client_auth_type: RequireAndVerifyClientCert\n")
    with pytest.raises(ConfigError, match="client_ca_file: client_auth_type RequireAndVerifyClientCert needs the CA"):
        load_web_config(str(bad))


def test_unknown_users_cost_as_much_as_known_ones():
    """No timing difference tells which user names exist."""
    import time

    from nodeagent.webconfig import BasicAuth

    auth = BasicAuth({"prom": bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=10)).decode()})
    started = time.perf_counter()
    assert not auth.check("nobody", "guess")
    unknown = time.perf_counter() - started
    started = time.perf_counter()
    assert not auth.check("prom", "guess")
    known = time.perf_counter() - started
    assert unknown > known / 4, (unknown, known)
