"""The HTTP exporter: /metrics (gzip), landing page, health, TLS, basic auth."""

import base64
import gzip
import socket
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
    with pytest.raises(ConfigError, match=r"basic_auth_users\.prom: must be a bcrypt hash"):
        load_web_config(str(bad))
    bad.write_text("tls_server_config:\n  cert_file: /x\n")
    with pytest.raises(ConfigError, match="cert_file and key_file are both required"):
        load_web_config(str(bad))
    bad.write_text("tls_server_confg: {}\n")
    with pytest.raises(ConfigError, match="tls_server_confg: unknown key"):
        load_web_config(str(bad))


def test_client_certificate_settings_follow_go(tmp_path):
    """As exporter-toolkit: a client CA needs a client_auth_type that asks for
    certificates; a verifying type without a CA uses the system's CAs."""
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {cert}\n")
    with pytest.raises(ConfigError, match="client_ca_file: a client CA is set but client_auth_type does not ask"):
        load_web_config(str(web))
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                   "  client_auth_type: RequireAndVerifyClientCert\n")
    tls = load_web_config(str(web)).tls_server_config
    ctx = ssl_context(tls, str(web))
    assert ctx.verify_mode == ssl.CERT_REQUIRED


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


def _group():
    return GroupCollection("host", Supervisor("host", [One(Host(), None)], timeout=2), min_interval=1)


def _raw_exchange(port: int, request: bytes, family=socket.AF_INET, host="127.0.0.1") -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, port))
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_head_answers_like_get_without_a_body(exporter_factory):
    e = exporter_factory()
    # HEAD then GET on one connection: the HEAD answer has no body, or the GET would be read as one
    head = b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    get_ = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = _raw_exchange(e.port, head + get_)
    first, _, rest = reply.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK") and rest.startswith(b"HTTP/1.1 200 OK")
    second, _, body = rest.partition(b"\r\n\r\n")

    def headers(block: bytes) -> dict[bytes, bytes]:
        return {k.lower(): v for k, _, v in (line.partition(b": ") for line in block.split(b"\r\n")[1:])}

    h_head, h_get = headers(first), headers(second)
    assert h_head[b"content-length"] == h_get[b"content-length"] == str(len(body)).encode()
    assert h_head[b"content-type"] == h_get[b"content-type"]
    assert b'node_one{x="y"} 1' in body


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host", ["", "0.0.0.0", "[::]"])
def test_wildcard_listen_addresses_take_ipv4_and_ipv6(host):
    """`:9100`, `0.0.0.0:9100` and `[::]:9100` listen on both families at once,
    as node_exporter (Go's net.Listen) does."""
    from testlib import free_port

    port = free_port()
    e = Exporter("host", f"{host}:{port}", _group())
    e.start()
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert _raw_exchange(port, request).startswith(b"HTTP/1.1 200 ")
        if _ipv6_loopback():
            assert _raw_exchange(port, request, socket.AF_INET6, "::1").startswith(b"HTTP/1.1 200 ")
            assert next(iter(e.servers.values())).family == socket.AF_INET6
    finally:
        e.stop()
        e.collection.close()


def test_wildcard_listens_on_ipv4_where_ipv6_is_missing(monkeypatch):
    import errno

    from nodeagent import httpserver

    real = httpserver._bound

    def no_ipv6(family, address, backlog, dual_stack=False):
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, address, backlog, dual_stack)

    monkeypatch.setattr(httpserver, "_bound", no_ipv6)
    e = Exporter("host", ":0", _group())
    e.start()
    try:
        server = next(iter(e.servers.values()))
        assert server.family == socket.AF_INET
        assert _raw_exchange(e.port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    finally:
        e.stop()
        e.collection.close()


def test_several_listen_addresses_each_serve():
    from testlib import free_port

    ports = [free_port(), free_port()]
    e = Exporter("host", [f"127.0.0.1:{p}" for p in ports] + [f"127.0.0.1:{ports[0]}"], _group())
    e.start()
    try:
        assert e.ports == ports  # the repeated address is one socket
        for port in ports:
            assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        e.stop()
        e.collection.close()


def test_listen_errors_name_the_address_and_free_what_was_bound():
    from testlib import free_port

    from nodeagent.httpserver import ListenError

    free = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(ListenError) as err:
            Exporter("host", [f"127.0.0.1:{free}", f"127.0.0.1:{taken}"], _group())
    assert str(err.value) == f"[Errno 98] cannot listen on 127.0.0.1:{taken}: Address already in use"
    with socket.socket() as again:  # the first address was bound, then closed
        again.bind(("127.0.0.1", free))


def test_web_config_headers_are_on_every_answer(exporter_factory, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                   f"basic_auth_users:\n  prom: '{_hash('pw')}'\n")
    e = exporter_factory(load_web_config(str(web)))
    good = {"Authorization": "Basic " + base64.b64encode(b"prom:pw").decode()}
    for path, headers, status in (("/metrics", good, 200), ("/nope", good, 404), ("/metrics", {}, 401)):
        try:
            got, answer, _ = get(f"http://127.0.0.1:{e.port}{path}", headers)
        except urllib.error.HTTPError as err:
            got, answer = err.code, dict(err.headers)
        assert got == status and answer["X-Frame-Options"] == "deny", (path, answer)
