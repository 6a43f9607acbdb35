"""The HTTP exporter: one server per group (:9100 host, :9400 gpu, :9341 slurm).

Each server has its own data (never prometheus_client's global REGISTRY):
/metrics serves the group's shared snapshot (gzip when the scraper asks),
/ is a landing page, /healthz answers "ok". TLS and basic auth come from an
exporter-toolkit web-config.yml. Credentials are never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import html
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from nodeagent import __version__
from nodeagent.exposition import CONTENT_TYPE
from nodeagent.snapshot import GroupCollection, Snapshot
from nodeagent.webconfig import BasicAuth, WebConfig

log = structlog.get_logger("nodeagent.exporter")


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    return (host or "0.0.0.0"), int(port)  # noqa: S104 - all interfaces by default, like node_exporter


# Connections served at once, like node_exporter's --web.max-requests=40: more
# are closed at once instead of each taking a thread (a slow-client flood).
MAX_CONNECTIONS = 40


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.exporter: Exporter | None = None
        self.stopped = False
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.stopped or not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def _release(self, request: socket.socket) -> None:
        with self._open_lock:
            if request not in self._open:
                return
            self._open.discard(request)
        self._slots.release()

    def finish_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        # The TLS handshake happens here, in the request's own thread, so a
        # client that connects and stalls cannot block the accept loop.
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(10)
            request.do_handshake()
        super().finish_request(request, client_address)

    def close_connections(self) -> None:
        """End kept-alive connections too, so that after a reload no scraper
        is still answered by the old configuration."""
        self.stopped = True
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("http_request_failed", client=str(client_address))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a client may idle mid-request
    protocol_version = "HTTP/1.1"
    server_version = f"nodeagent/{__version__}"

    def log_message(self, format: str, *args: object) -> None:
        """Access logs are noise at one scrape per 15 s per Prometheus; errors are logged elsewhere."""

    def do_GET(self) -> None:
        exporter = self.server.exporter
        assert exporter is not None
        if not exporter.authorised(self.headers.get("Authorization")):
            self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Basic realm="nodeagent"'})
            return
        path = self.path.split("?", 1)[0]
        if path == exporter.metrics_path:
            self._metrics(exporter)
        elif path == "/":
            self._send(200, exporter.landing_page(), "text/html; charset=utf-8")
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"Not found\n", "text/plain; charset=utf-8")

    def _metrics(self, exporter: Exporter) -> None:
        gzip_ok = "gzip" in self.headers.get("Accept-Encoding", "")
        try:
            payload = exporter.payload(gzip_ok)
        except Exception as e:  # a scrape must never take the server down
            log.error("scrape_failed", group=exporter.group, error=f"{type(e).__name__}: {e}")
            self._send(500, f"collection failed: {type(e).__name__}\n".encode(), "text/plain; charset=utf-8")
            return
        headers = {"Content-Encoding": "gzip"} if gzip_ok else {}
        self._send(200, payload, CONTENT_TYPE, headers)

    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper went away


class Exporter:
    def __init__(
        self,
        group: str,
        listen: str,
        collection: GroupCollection,
        web: WebConfig | None = None,
        tls: ssl.SSLContext | None = None,
        extra: Callable[[], bytes] | None = None,
        metrics_path: str = "/metrics",
    ) -> None:
        self.group = group
        self.listen = listen
        self.collection = collection
        self.metrics_path = metrics_path
        self._extra = extra
        self._payload: tuple[Snapshot, bytes, bytes | None] | None = None
        self._payload_lock = threading.Lock()
        self._auth = BasicAuth(web.basic_auth_users if web else {})
        self.tls = tls is not None
        self._server = _Server(parse_listen(listen), tls)
        self._server.exporter = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def authorised(self, header: str | None) -> bool:
        if not self._auth.enabled:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return self._auth.check(user, password)

    def payload(self, gzipped: bool) -> bytes:
        """The body of /metrics: the group's shared snapshot plus the extra
        text (the agent's own metrics), both made once per collection."""
        snapshot = self.collection.get()
        if self._extra is None:
            return snapshot.gzipped() if gzipped else snapshot.body
        with self._payload_lock:
            if self._payload is None or self._payload[0] is not snapshot:
                self._payload = (snapshot, snapshot.body + self._extra(), None)
            snap, body, packed = self._payload
            if not gzipped:
                return body
            if packed is None:
                packed = gzip.compress(body, compresslevel=5)
                self._payload = (snap, body, packed)
            return packed

    def landing_page(self) -> bytes:
        title = html.escape(f"nodeagent {__version__}: {self.group} metrics")
        return (
            f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
            f'<ul><li><a href="{self.metrics_path}">{self.metrics_path}</a></li>'
            '<li><a href="/healthz">/healthz</a></li></ul></body></html>\n'
        ).encode()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name=f"http-{self.group}", daemon=True,
        )
        self._thread.start()
        log.info("exporter_listening", group=self.group, listen=self.listen, port=self.port, tls=self.tls)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._server.close_connections()
        self._server.shutdown()
        self._server.server_close()
