"""exporter-toolkit web config parity: the same web.yml is given to Debian's
node_exporter (--web.config.file) and to a nodeagent exporter, and both must
answer alike: HTTP status (or a refused TLS connection) for clients without a
certificate, with one signed by the client CA and with a self-signed one, for
every client_auth_type; TLS version limits; cipher suites; response headers.
Certificate paths in the file are relative to its directory, and neither
server runs in that directory.

Debian's node_exporter 1.5.0 predates `client_allowed_sans` (its
exporter-toolkit refuses the key): that key is checked against
exporter-toolkit's documented behaviour in test_client_allowed_sans.
"""

from __future__ import annotations

import base64
import http.client
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from pkitools import Pki, make_pki
from testlib import free_port

from nodeagent.exporter import Exporter
from nodeagent.snapshot import GroupCollection
from nodeagent.supervise import Supervisor
from nodeagent.webconfig import load_web_config, ssl_context

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
needs_node_exporter = pytest.mark.skipif(NODE_EXPORTER is None, reason="prometheus-node-exporter not installed")

HEADERS = ("Strict-Transport-Security", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
           "Content-Security-Policy")
REFUSED = "refused"


@dataclass(frozen=True)
class Answer:
    status: int | str  # the HTTP status, or "refused": no HTTP answer (TLS refused, connection ended)
    headers: tuple[tuple[str, str | None], ...] = ()
    cipher: str | None = None


@dataclass(frozen=True)
class Client:
    cert: tuple[Path, Path] | None = None
    min_version: ssl.TLSVersion | None = None
    max_version: ssl.TLSVersion | None = None
    ciphers: str | None = None
    user: tuple[str, str] | None = None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("webconf"))


@pytest.fixture(scope="module")
def clients(pki: Pki) -> dict[str, Client]:
    return {
        "no cert": Client(),
        "signed by the CA": Client(pki.client("good", "DNS:prometheus.example")),
        "self-signed": Client(pki.client("stranger", "DNS:prometheus.example", signed=False)),
    }


def fetch(pki: Pki, port: int, client: Client) -> Answer:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if client.cert:
        ctx.load_cert_chain(*client.cert)
    if client.ciphers:
        ctx.set_ciphers(client.ciphers)
    with warnings.catch_warnings():  # TLS 1.0 is deprecated: that is what the test asks for
        warnings.simplefilter("ignore", DeprecationWarning)
        if client.min_version:
            ctx.minimum_version = client.min_version
        if client.max_version:
            ctx.maximum_version = client.max_version
    headers = {}
    if client.user:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(client.user).encode()).decode()
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        response.read()
        assert conn.sock is not None
        cipher = conn.sock.cipher()
        return Answer(response.status, tuple((h, response.getheader(h)) for h in HEADERS),
                      cipher[0] if cipher else None)
    except (ssl.SSLError, ConnectionError, OSError, http.client.HTTPException):
        return Answer(REFUSED)
    finally:
        conn.close()


class NodeExporter:
    """Debian's node_exporter on 127.0.0.1 with a web config; stopped by PID."""

    def __init__(self, web_config: Path, cwd: Path) -> None:
        assert NODE_EXPORTER is not None
        self.port = free_port()
        self.proc = subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}", f"--web.config.file={web_config}",
             "--collector.disable-defaults", "--collector.loadavg"],
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node_exporter exited: {self.proc.communicate()[1][-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def both(pki: Pki, name: str, text: str, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """The ports of a nodeagent exporter and a node_exporter serving this web config."""
    path = pki.dir / f"web-{name}.yml"
    path.write_text(text)
    web = load_web_config(str(path))
    tls = ssl_context(web.tls_server_config, str(path)) if web.tls_server_config else None
    ours = Exporter("host", "127.0.0.1:0", GroupCollection("host", Supervisor("host", [], 1), 1), web, tls)
    ours.start()
    theirs = NodeExporter(path, cwd=tmp_path)
    try:
        yield ours.port, theirs.port
    finally:
        theirs.stop()
        ours.stop()
        ours.collection.close()


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


@needs_node_exporter
def test_client_auth_types_answer_as_node_exporter(pki: Pki, clients: dict[str, Client], tmp_path: Path) -> None:
    expected = {  # Go's crypto/tls, for the record: only the two Verify* modes check the CA
        "NoClientCert": (200, 200, 200),
        "RequestClientCert": (200, 200, 200),
        "RequireAnyClientCert": (REFUSED, 200, 200),
        "VerifyClientCertIfGiven": (200, 200, REFUSED),
        "RequireAndVerifyClientCert": (REFUSED, 200, REFUSED),
    }
    for mode, want in expected.items():
        ca = "  client_ca_file: ca.crt\n" if mode != "NoClientCert" else ""
        with both(pki, mode, f"{TLS}  client_auth_type: {mode}\n{ca}", tmp_path) as (ours, theirs):
            got_ours = tuple(fetch(pki, ours, c).status for c in clients.values())
            got_theirs = tuple(fetch(pki, theirs, c).status for c in clients.values())
        assert got_theirs == want, (mode, "node_exporter", got_theirs)
        assert got_ours == got_theirs, (mode, dict(zip(clients, got_ours)), dict(zip(clients, got_theirs)))


@needs_node_exporter
def test_tls_version_limits_answer_as_node_exporter(pki: Pki, tmp_path: Path) -> None:
    tls12_only = Client(max_version=ssl.TLSVersion.TLSv1_2)
    tls13_only = Client(min_version=ssl.TLSVersion.TLSv1_3)
    tls10_only = Client(min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1,
                        ciphers="DEFAULT:@SECLEVEL=0")
    cases = {
        "min13": (f"{TLS}  min_version: TLS13\n", {"1.2": (tls12_only, REFUSED), "1.3": (tls13_only, 200)}),
        "max12": (f"{TLS}  max_version: TLS12\n", {"1.2": (tls12_only, 200), "1.3": (tls13_only, REFUSED)}),
        "default": (TLS, {"1.0": (tls10_only, REFUSED), "1.2": (tls12_only, 200)}),
        "min10": (f"{TLS}  min_version: TLS10\n", {"1.0": (tls10_only, 200)}),
    }
    for name, (text, by_client) in cases.items():
        with both(pki, name, text, tmp_path) as (ours, theirs):
            for version, (client, want) in by_client.items():
                got_ours, got_theirs = fetch(pki, ours, client).status, fetch(pki, theirs, client).status
                assert got_theirs == want, (name, version, "node_exporter", got_theirs)
                assert got_ours == got_theirs, (name, version, got_ours, got_theirs)


@needs_node_exporter
def test_cipher_suites_answer_as_node_exporter(pki: Pki, tmp_path: Path) -> None:
    # http2: false, else Go's HTTP/2 server refuses to start without an AES-128-GCM suite listed
    # (nodeagent serves HTTP/1.1 only and has no such rule)
    text = (f"{TLS}  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n"
            "http_server_config:\n  http2: false\n")
    offers = {
        "other": ("ECDHE-RSA-AES128-GCM-SHA256", Answer(REFUSED)),
        "listed": ("ECDHE-RSA-AES256-GCM-SHA384", None),
        "both": ("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384", None),
    }
    with both(pki, "ciphers", text, tmp_path) as (ours, theirs):
        for offer, (ciphers, want) in offers.items():
            client = Client(ciphers=ciphers)
            got_ours, got_theirs = fetch(pki, ours, client), fetch(pki, theirs, client)
            if want is not None:
                assert got_theirs == want, (offer, got_theirs)
            else:
                assert got_theirs.cipher == "ECDHE-RSA-AES256-GCM-SHA384", (offer, got_theirs)
            assert (got_ours.status, got_ours.cipher) == (got_theirs.status, got_theirs.cipher), offer


@needs_node_exporter
def test_headers_and_http2_answer_as_node_exporter(pki: Pki, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    text = (f"{TLS}http_server_config:\n  http2: false\n  headers:\n"
            "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
            "    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
            "    Content-Security-Policy: default-src 'self'\n"
            f"basic_auth_users:\n  prom: '{hashed}'\n")
    with both(pki, "headers", text, tmp_path) as (ours, theirs):
        for client in (Client(user=("prom", "pw")), Client(user=("prom", "wrong")), Client()):
            got_ours, got_theirs = fetch(pki, ours, client), fetch(pki, theirs, client)
            assert got_theirs.status in (200, 401)
            assert got_ours.status == got_theirs.status
            assert got_ours.headers == got_theirs.headers
            assert dict(got_ours.headers)["X-Frame-Options"] == "deny"


@needs_node_exporter
@pytest.mark.parametrize("text, message", [
    ("http_server_config:\n  headers:\n    Server: x\n", "can not be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options"),
    (f"{TLS}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "unknown cipher suite"),
    (f"{TLS}  client_ca_file: ca.crt\n", "client_auth_type does not ask"),
    (f"{TLS}  min_version: TLS14\n", "min_version"),
])
def test_both_refuse_the_same_bad_files(pki: Pki, tmp_path: Path, text: str, message: str) -> None:
    from nodeagent.settings import ConfigError

    path = pki.dir / "web-bad.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        web = load_web_config(str(path))
        if web.tls_server_config:
            ssl_context(web.tls_server_config, str(path))
    with pytest.raises(RuntimeError, match="node_exporter exited"):
        NodeExporter(path, tmp_path).stop()


def test_client_allowed_sans(pki: Pki, tmp_path: Path) -> None:
    """exporter-toolkit 0.10+: the client certificate must carry one of the
    listed SANs (DNS, e-mail, IP in Go's text form, URI), compared exactly;
    a client without a certificate is refused."""
    allowed = pki.client("allowed", "DNS:prometheus.example")
    by_ip = pki.client("by-ip", "IP:10.0.0.7,IP:fd00::7")
    by_uri = pki.client("by-uri", "URI:spiffe://cluster/prometheus")
    wrong = pki.client("wrong-san", "DNS:other.example")
    stranger = pki.client("stranger-san", "DNS:prometheus.example", signed=False)
    cases = {
        "RequireAndVerifyClientCert": {allowed: 200, by_ip: 200, by_uri: 200, wrong: REFUSED, stranger: REFUSED,
                                       None: REFUSED},
        "RequireAnyClientCert": {allowed: 200, wrong: REFUSED, stranger: 200},
        "VerifyClientCertIfGiven": {allowed: 200, wrong: REFUSED, None: REFUSED},
    }
    for mode, by_cert in cases.items():
        path = pki.dir / f"web-san-{mode}.yml"
        path.write_text(f"{TLS}  client_auth_type: {mode}\n  client_ca_file: ca.crt\n"
                        "  client_allowed_sans: [prometheus.example, 10.0.0.7, fd00::7, spiffe://cluster/prometheus]\n")
        web = load_web_config(str(path))
        assert web.tls_server_config is not None
        ours = Exporter("host", "127.0.0.1:0", GroupCollection("host", Supervisor("host", [], 1), 1), web,
                        ssl_context(web.tls_server_config, str(path)))
        ours.start()
        try:
            for cert, want in by_cert.items():
                assert fetch(pki, ours.port, Client(cert)).status == want, (mode, cert)
        finally:
            ours.stop()
            ours.collection.close()


def test_relative_paths_are_from_the_web_config_directory(pki: Pki, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = pki.dir / "web-relative.yml"
    path.write_text(f"{TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ./ca.crt\n")
    tls = load_web_config(str(path)).tls_server_config
    assert tls is not None
    assert (tls.cert_file, tls.key_file, tls.client_ca_file) == (
        str(pki.dir / "server.crt"), str(pki.dir / "server.key"), f"{pki.dir}/./ca.crt")
    absolute = pki.dir / "web-absolute.yml"
    absolute.write_text(f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n")
    tls = load_web_config(str(absolute)).tls_server_config
    assert tls is not None and tls.cert_file == str(pki.server_cert)


def test_a_tls_section_without_certificate_settings_is_plain_http(pki: Pki) -> None:
    """exporter-toolkit: no cert, key or client settings means no TLS."""
    path = pki.dir / "web-empty-tls.yml"
    path.write_text("tls_server_config:\n  min_version: TLS13\n")
    assert load_web_config(str(path)).tls_server_config is None
    path.write_text("tls_server_config:\n  cert_file: server.crt\n")
    from nodeagent.settings import ConfigError

    with pytest.raises(ConfigError, match="key_file: missing"):
        load_web_config(str(path))
