"""The HTTP exporter: one per group (:9100 host, :9400 gpu, :9341 slurm), on
one or more listen addresses, each its own server.

Each exporter has its own data (never prometheus_client's global REGISTRY):
/metrics serves the group's shared snapshot (gzip when the scraper accepts
it), / is a landing page, /healthz answers 200 "ok" only when a scrape of
/metrics on that port would succeed. TLS and basic auth come from an
exporter-toolkit web-config.yml, with its `http_server_config.headers` on
every answer. Credentials are never logged. The serving itself (deadlines,
the request limit, HTTP parsing) is in httpserver.

A reload builds new exporters; one whose address the old config served
already takes that server over (`adopt`): the listening socket stays open and
only the handler and TLS context change, so no scrape meets a closed port.
"""

from __future__ import annotations

import gzip
import html
import re
import ssl
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import structlog

from nodeagent import __version__
from nodeagent.exposition import CONTENT_TYPE
from nodeagent.httpserver import (
    MAX_CONNECTIONS,
    MAX_REQUESTS,
    WILDCARD_HOSTS,
    HTTPServer,
    Request,
    Response,
    Work,
    text_response,
)
from nodeagent.settings import split_listen
from nodeagent.snapshot import GroupCollection, Snapshot
from nodeagent.webconfig import BasicAuth, WebConfig, parse_basic

__all__ = ["MAX_CONNECTIONS", "MAX_REQUESTS", "Exporter", "ListenKey", "accepts_gzip", "listen_addresses",
           "listen_key", "parse_listen"]

log = structlog.get_logger("nodeagent.exporter")

SERVER_HEADER = f"nodeagent/{__version__}"
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
_UNAUTHORISED = {"WWW-Authenticate": 'Basic realm="nodeagent"'}


def _same(response: Response) -> Response:
    return response


def parse_listen(listen: str) -> tuple[str, int]:
    """(host, port) of HOST:PORT; the host is "" for `:PORT` (every address,
    IPv4 and IPv6, like node_exporter)."""
    return split_listen(listen)


def listen_addresses(listen: str | Sequence[str]) -> tuple[str, ...]:
    """A `listen` setting, one address or a list of them, as a tuple."""
    return (listen,) if isinstance(listen, str) else tuple(listen)


ListenKey = tuple[str, int]


def listen_key(listen: str) -> ListenKey:
    """What identifies a listening socket across a reload: `:9100`,
    `0.0.0.0:9100` and `[::]:9100` all make the same one."""
    host, port = parse_listen(listen)
    return ("*" if host in WILDCARD_HOSTS else host), port


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header accepts gzip (RFC 9110 12.5.3): by
    name or by `*`, with a q-value above 0; a malformed q-value counts as 0."""
    if not header:
        return False
    named: float | None = None
    wildcard: float | None = None
    for item in header.split(","):
        coding, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.fullmatch(value) else 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            named = q
        elif coding == "*":
            wildcard = q
    q_gzip = named if named is not None else wildcard
    return q_gzip is not None and q_gzip > 0


class Exporter:
    def __init__(
        self,
        group: str,
        listen: str | Sequence[str],
        collection: GroupCollection,
        web: WebConfig | None = None,
        tls: ssl.SSLContext | None = None,
        extra: Callable[[], bytes] | None = None,
        metrics_path: str = "/metrics",
        max_requests: int = MAX_REQUESTS,
        adopt: Mapping[ListenKey, HTTPServer] | None = None,
    ) -> None:
        """Binds every address now (ListenError names the one that fails),
        except those in `adopt`: running servers this exporter takes over at
        start()."""
        self.group = group
        self.listen = listen_addresses(listen)
        self.collection = collection
        self.metrics_path = metrics_path
        self._extra = extra
        self._payload: tuple[Snapshot, bytes, bytes | None] | None = None
        self._payload_lock = threading.Lock()
        self._auth = BasicAuth(web.basic_auth_users if web else {})
        self._headers = dict(web.http_server_config.headers) if web else {}
        self._tls = tls
        self.tls = tls is not None
        self.servers: dict[ListenKey, HTTPServer] = {}
        self._adopted: set[HTTPServer] = set()
        try:
            for address in self.listen:
                key = listen_key(address)
                if key in self.servers:  # the same socket listed twice
                    continue
                server = (adopt or {}).get(key)
                if server is not None:
                    self._adopted.add(server)
                else:
                    server = HTTPServer(group, parse_listen(address), self._handle, tls, server_header=SERVER_HEADER,
                                        max_requests=max_requests, listen=address)
                self.servers[key] = server
        except BaseException:
            self.stop(keep=self._adopted)
            raise

    @property
    def port(self) -> int:
        """The port of the first address."""
        return next(iter(self.servers.values())).port

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers.values()]

    # ---- requests (in the server's loop: nothing here may block) ----

    def _handle(self, request: Request) -> Response | Work[Any]:
        answer = self._answer(request)
        if not self._headers:
            return answer
        if isinstance(answer, Response):
            return self._with_headers(answer)
        finish = answer.finish
        return Work(answer.run, lambda result: self._with_headers(finish(result)), answer.key)

    def _with_headers(self, response: Response) -> Response:
        """The web config's headers, on every answer of this exporter (401 and
        404 included), as exporter-toolkit sets them."""
        return replace(response, headers={**self._headers, **response.headers})

    def _answer(self, request: Request) -> Response | Work[Any]:
        if request.method not in ("GET", "HEAD"):
            return text_response(405, "Method not allowed", {"Allow": "GET, HEAD"})
        if self._auth.enabled:
            credentials = parse_basic(request.header("authorization"))
            if credentials is None:
                return text_response(401, "Unauthorized", _UNAUTHORISED)
            if not self._auth.cached(*credentials):
                # a bcrypt check (~70 ms), each its own: never shared
                return Work(partial(self._checked, request, credentials), _same)
        return self._route(request)

    def _route(self, request: Request) -> Response | Work[Any]:
        path = request.path
        if path in (self.metrics_path, "/healthz"):
            health = path == "/healthz"
            gzipped = not health and accepts_gzip(request.header("accept-encoding"))
            finish = partial(self._metrics_response, health, gzipped)
            body = self.ready_payload(gzipped)
            if body is not None:
                return finish(body)
            # one collection for every scrape that arrives while it runs
            return Work(partial(self._payload_or_error, gzipped), finish, key=("payload", gzipped))
        if path == "/":
            return Response(200, self.landing_page(), "text/html; charset=utf-8")
        return text_response(404, "Not found")

    def _checked(self, request: Request, credentials: tuple[bytes, bytes]) -> Response:
        """In a worker: the password check, then the request as usual."""
        if not self._auth.check(*credentials):
            return text_response(401, "Unauthorized", _UNAUTHORISED)
        answer = self._route(request)
        if isinstance(answer, Response):
            return answer
        return answer.finish(answer.run())

    def _payload_or_error(self, gzipped: bool) -> bytes | Exception:
        try:
            return self.payload(gzipped)
        except Exception as e:  # a scrape must never take the server down
            log.error("scrape_failed", group=self.group, error=f"{type(e).__name__}: {e}")
            return e

    def _metrics_response(self, health: bool, gzipped: bool, body: bytes | Exception) -> Response:
        if isinstance(body, Exception):
            # /healthz takes the same path as /metrics: 200 there means a scrape would succeed
            return text_response(500, f"collection failed: {type(body).__name__}")
        if health:
            return text_response(200, "ok")
        headers = {"Vary": "Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return Response(200, body, CONTENT_TYPE, headers)

    # ---- the payload ----

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

    def ready_payload(self, gzipped: bool) -> bytes | None:
        """What payload() would return if it is made already, else None:
        never collects, compresses or waits for a lock held by one who does."""
        snapshot = self.collection.fresh()
        if snapshot is None:
            return None
        if self._extra is None:
            return snapshot.gzipped_if_ready() if gzipped else snapshot.body
        made = self._payload  # replaced whole under the lock, read whole here
        if made is None or made[0] is not snapshot:
            return None
        return made[2] if gzipped else made[1]

    def landing_page(self) -> bytes:
        title = html.escape(f"nodeagent {__version__}: {self.group} metrics")
        return (
            f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
            f'<ul><li><a href="{self.metrics_path}">{self.metrics_path}</a></li>'
            '<li><a href="/healthz">/healthz</a></li></ul></body></html>\n'
        ).encode()

    # ---- lifecycle ----

    def start(self) -> None:
        """Serve: new servers start; adopted ones switch to this exporter
        (returning once the work their old exporter started is done)."""
        for server in self.servers.values():
            if server in self._adopted:
                server.reconfigure(self._handle, self._tls)
                log.debug("exporter_kept", group=self.group, listen=server.listen, port=server.port, tls=self.tls)
            else:
                server.start()
                log.info("exporter_listening", group=self.group, listen=server.listen, port=server.port, tls=self.tls)

    def alive(self) -> bool:
        return all(s.alive() for s in self.servers.values())

    def stop(self, keep: Collection[HTTPServer] = ()) -> None:
        """Close every server but those in `keep` (handed over to a reload's
        exporter), kept-alive connections included."""
        for server in self.servers.values():
            if server not in keep:
                server.stop()
