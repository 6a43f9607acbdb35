"""A small HTTP/1.1 server that holds against slow, idle and flooding clients.

One event-loop thread per server owns every connection: it accepts, does the
TLS handshake (non-blocking, with a deadline), reads request heads with a
deadline, and writes responses. Only a complete request reaches the handler,
so an idle or slow client costs a socket and a coroutine, never a thread or a
request slot.

The handler runs in the loop and must not block: it answers at once (a
cached payload, a remembered credential) or hands back Work, which runs in a
pool of at most `max_requests` threads (a collection, a bcrypt check). Work
with a key is shared: requests that need the same thing while it runs wait
for that one run and take no slot, so a thousand concurrent scrapes cost one
collection. Work that finds the pool full gets a fast 503, as node_exporter's
`--web.max-requests` does, never a silent close.

A server keeps its listening socket across a reload: `reconfigure` swaps the
handler and TLS context in place, so a scraper never meets a closed port.

The standard library's asyncio does the socket, TLS and back-pressure work; the
HTTP parsing is strict and small: GET and HEAD, bodies consumed (up to a cap)
or the connection closed, a 400 status line for anything malformed.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import email.utils
import errno
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

import structlog

log = structlog.get_logger("nodeagent.httpserver")

# node_exporter's --web.max-requests default: requests being handled at once
MAX_REQUESTS = 40
# open connections per server; beyond it the oldest connection without a
# request in progress is closed, so a flood of idle sockets cannot lock out a scraper
MAX_CONNECTIONS = 2048
LISTEN_BACKLOG = 1024
# connections accepted per loop wake-up: a flood of new connections waits in
# the kernel's backlog and comes in one per turn of the loop, so requests on
# open (kept-alive) connections, a Prometheus server's, are served in between
# rather than after a batch of accepts and TLS handshakes (~1.5 ms of CPU each)
ACCEPTS_PER_WAKEUP = 1
HEAD_TIMEOUT = 10.0  # seconds to send a whole request head, from connect or from its first byte
IDLE_TIMEOUT = 120.0  # a kept-alive connection waiting for its next request
HANDSHAKE_TIMEOUT = 10.0  # TLS
WRITE_TIMEOUT = 30.0  # a client that does not read its response
MAX_HEAD = 16 * 1024  # bytes in a request head (request line and headers)
MAX_HEADERS = 100
MAX_BODY = 64 * 1024  # a request body beyond this is refused (413) and the connection closed

# asyncio's TLS (Python 3.11 and later) gives each connection a 256 KiB read
# buffer up front: a thousand TLS connections would hold 256 MB for request
# heads of a few hundred bytes. 32 KiB holds two full TLS records.
if hasattr(asyncio.sslproto.SSLProtocol, "max_size"):
    asyncio.sslproto.SSLProtocol.max_size = 32 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")


@dataclass
class Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "

    @property
    def path(self) -> str:
        """The path of the target, percent-decoded, without the query."""
        return unquote(urlsplit(self.target).path)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for t in self.headers.get(name, "").split(",") if t.strip()}


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False  # end the connection after this response


T = TypeVar("T")


@dataclass
class Work(Generic[T]):
    """What a request needs done off the loop: `run` in a worker thread, then
    `finish` (in the loop, must not block) makes the response from its result.
    Requests whose Work has the same key, while one runs, share that run."""

    run: Callable[[], T]
    finish: Callable[[T], Response]
    key: Hashable | None = None


Handler = Callable[[Request], "Response | Work[Any]"]


class BadRequest(Exception):
    """A request that cannot be answered on this connection: the response says
    why and the connection ends after it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def text_response(status: int, text: str, headers: dict[str, str] | None = None, close: bool = False) -> Response:
    return Response(status, (text + "\n").encode(), headers=headers or {}, close=close)


def parse_head(lines: list[bytes]) -> Request:
    """The request line and header lines (line endings removed) as a Request;
    BadRequest for anything RFC 9112 calls malformed."""
    parts = lines[0].split(b" ")
    if len(parts) != 3:  # HTTP/0.9 ("GET /"), stray spaces, garbage
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not target or _BAD_TARGET.search(target):
        raise BadRequest(400, "malformed request line")
    m = _VERSION.fullmatch(version)
    if m is None:
        raise BadRequest(400, "malformed request line")
    if m.group(1) != b"1":
        raise BadRequest(505, "HTTP version not supported")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # no colon, a space before it (also obsolete line folding), or control bytes
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest(400, "malformed header line")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise BadRequest(400, "malformed header value")
        key = name.decode("ascii").lower()
        text = value.decode("latin-1")
        if key in headers:
            if key in ("host", "content-length") and headers[key] != text:
                raise BadRequest(400, f"conflicting {key} headers")
            if key not in ("host", "content-length"):
                text = f"{headers[key]}, {text}"
        headers[key] = text
    request = Request(method.decode("ascii"), target.decode("ascii"), (1, int(m.group(2))), headers)
    if request.version >= (1, 1) and "host" not in headers:
        raise BadRequest(400, "missing Host header")
    return request


def body_length(request: Request) -> int:
    """Bytes of request body to consume before the next request."""
    if "transfer-encoding" in request.headers:
        # chunked bodies are not read; refusing keeps the connection in step
        raise BadRequest(501, "Transfer-Encoding in a request is not supported")
    value = request.headers.get("content-length")
    if value is None:
        return 0
    if not value.isdigit() or not value.isascii():
        raise BadRequest(400, "malformed Content-Length")
    length = int(value)
    if length > MAX_BODY:
        raise BadRequest(413, "request body too large")
    return length


def keep_alive(request: Request) -> bool:
    connection = request.tokens("connection")
    if request.version >= (1, 1):
        return "close" not in connection
    return "keep-alive" in connection


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (as Go programs such
    as node_exporter do at start), so a scrape fleet's connections fit; the new
    soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


# hosts that mean "every address": Go's net.Listen("tcp", ...) listens on IPv6
# and IPv4 at once for each of them (one AF_INET6 socket, IPV6_V6ONLY off)
WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 - all interfaces on purpose


class ListenError(OSError):
    """A listening socket that could not be made: the message names the
    address as configured and the port."""

    def __init__(self, listen: str, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(error.errno, f"cannot listen on {listen}: {reason}")
        self.listen = listen


def listen_socket(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """Bound and listening now, so that the port is known and a port in use is
    an error here, not in the serving thread.

    A wildcard host (`:9100`, `0.0.0.0:9100`, `[::]:9100`) gets one IPv6
    socket that takes IPv4 too (dual stack), as node_exporter's does; IPv4
    only where the kernel has no IPv6. A name listens on its first IPv4
    address, else its first address, as Go does."""
    if host in WILDCARD_HOSTS:
        try:
            return _bound(socket.AF_INET6, ("::", port), backlog, dual_stack=True)
        except OSError as e:
            if e.errno not in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EADDRNOTAVAIL):
                raise
        return _bound(socket.AF_INET, ("0.0.0.0", port), backlog)  # noqa: S104
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
    return _bound(family, address, backlog)


def _bound(family: int, address: Any, backlog: int, dual_stack: bool = False) -> socket.socket:
    # proto given: asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Busy(Exception):
    """Every worker is taken."""


class ServerContext(ssl.SSLContext):
    """A server TLS context with what serving needs besides OpenSSL's settings.

    `fingerprint`: equal fingerprints mean the same settings and the same
    certificate, key and CA files, so a reload keeps the context (and the
    connections made with it). `peer_check`: run on each connection after the
    handshake; False ends the connection, as a failed handshake would."""

    fingerprint: bytes = b""
    peer_check: Callable[[ssl.SSLObject], bool] | None = None


def same_tls(a: ssl.SSLContext | None, b: ssl.SSLContext | None) -> bool:
    if a is None or b is None or a is b:
        return a is b
    fa, fb = getattr(a, "fingerprint", b""), getattr(b, "fingerprint", b"")
    return bool(fa) and fa == fb


def format_listen(host: str, port: int) -> str:
    """HOST:PORT as a listen address is written: [::1]:9100 for IPv6, :9100 for all."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Conn:
    """One connection's state: busy while a request is being read out, handled
    or answered; `tls`, the context it was accepted with."""

    __slots__ = ("busy", "timer", "tls", "transport")

    def __init__(self, transport: asyncio.WriteTransport, tls: ssl.SSLContext | None) -> None:
        self.transport = transport
        self.tls = tls
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None

    def deadline(self, loop: asyncio.AbstractEventLoop, seconds: float | None) -> None:
        """Abort the connection after `seconds` (None: no deadline); aborting
        ends any read or drain in progress, so one timer covers every step."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if seconds is not None:
            self.timer = loop.call_later(seconds, self.transport.abort)


# seconds without accepting after the process ran out of descriptors or buffers
# (asyncio's own server waits as long): the socket stays readable, retrying at
# once would spin
ACCEPT_RETRY_DELAY = 1.0


class HTTPServer:
    """One listening socket and the loop thread that serves it.

    The listening socket lives as long as the server: `reconfigure` swaps the
    handler and the TLS context of a running server (a reload whose address
    did not change), and connections arriving meanwhile wait in the kernel's
    queue, so none is refused."""

    def __init__(
        self,
        name: str,
        address: tuple[str, int],
        handler: Handler,
        tls: ssl.SSLContext | None = None,
        server_header: str = "",
        max_requests: int = MAX_REQUESTS,
        listen: str | None = None,
    ) -> None:
        self.name = name
        self.listen = listen if listen is not None else format_listen(*address)
        self._handler = handler
        self._tls = tls
        self._server_header = server_header
        self.max_requests = max_requests
        # a quarter of the open-file limit per server, room for the rest of the agent
        self.max_connections = min(MAX_CONNECTIONS, max(64, raise_fd_limit() // 4))
        try:
            self._sock = listen_socket(*address)
        except OSError as e:
            raise ListenError(self.listen, e) from None
        self.port = int(self._sock.getsockname()[1])
        self.family = self._sock.family
        self._pool = ThreadPoolExecutor(max_requests, thread_name_prefix=f"http-{name}")
        self._in_flight = 0  # runs of Work in the pool; touched only by the loop thread
        self._running: set[asyncio.Future[Any]] = set()  # the same runs, for a reload to wait on
        self._shared: dict[Hashable, asyncio.Future[Any]] = {}
        self._conns: dict[_Conn, None] = {}  # oldest first
        self._tasks: set[asyncio.Task[None]] = set()  # every connection's, TLS handshakes included
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tls(self) -> ssl.SSLContext | None:
        return self._tls

    # ---- lifecycle (called from other threads) ----

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"http-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def reconfigure(self, handler: Handler, tls: ssl.SSLContext | None, drain: float = 5.0) -> None:
        """Answer with `handler` and accept with `tls` from now on, on the same
        listening socket. Kept-alive connections go on, answered by the new
        handler; those made with a TLS context that changed end after their
        request in progress. Returns once the work the old handler started is
        done (at most `drain` seconds), so that what it uses can be closed."""
        loop = self._loop
        if loop is None or not self.alive():
            raise RuntimeError(f"{self.listen} is not being served")
        future = asyncio.run_coroutine_threadsafe(self._reconfigure(handler, tls, drain), loop)
        future.result(drain + 5.0)

    def stop(self) -> None:
        """Close the listening socket and every connection; returns once the
        port is free. Calling it again does nothing."""
        self._stopping = True
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(event.set)
            self._thread.join(5)
        self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- the loop thread ----

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_error)
        try:
            loop.run_until_complete(self._serve(loop))
        except Exception as e:  # the watchdog sees the thread gone; say why
            log.error("http_server_failed", server=self.name, listen=self.listen, error=f"{type(e).__name__}: {e}")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stop_event = asyncio.Event()
        # our own accept loop rather than asyncio's server: the TLS context is
        # read at each accept, so a reload can change it on the same socket
        loop.add_reader(self._sock.fileno(), self._accept)
        self._ready.set()
        if self._stopping:
            self._stop_event.set()
        await self._stop_event.wait()
        loop.remove_reader(self._sock.fileno())
        self._sock.close()  # the port is free from here
        for conn in list(self._conns):
            conn.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:  # handshakes in progress too
            task.cancel()
        if tasks:  # they end at their next step; a stop (SIGTERM, reload) must not wait long
            await asyncio.wait(tasks, timeout=0.5)

    def _accept(self) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:  # EMFILE, ENFILE, ENOBUFS, ENOMEM
                log.debug("http_accept_failed", server=self.name, error=f"{type(e).__name__}: {e}")
                loop.remove_reader(self._sock.fileno())
                loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting)
                return
            task = loop.create_task(self._accepted(sock, self._tls))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume_accepting(self) -> None:
        if not self._stopping and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _reconfigure(self, handler: Handler, tls: ssl.SSLContext | None, drain: float) -> None:
        self._handler = handler
        self._shared.clear()  # a new request must not join a run of the old handler
        if not same_tls(self._tls, tls):
            self._tls = tls
            for conn in list(self._conns):
                if not conn.busy:  # idle: close it now; a busy one closes after its response
                    conn.transport.close()
        running = list(self._running)
        if running:
            await asyncio.wait(running, timeout=drain)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # failed handshakes, resets, out of descriptors: the client's problem or
        # a passing one; logging each at warning would let a flood fill the journal
        exc = context.get("exception")
        log.debug("http_connection_error", server=self.name, message=str(context.get("message", "")),
                  error=type(exc).__name__ if exc else None)

    async def _accepted(self, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        """A new connection: the TLS handshake (bounded), then its requests."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_HEAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None,
            )
        except Exception:  # a failed or slow handshake, a reset: asyncio closed the transport
            sock.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._connection(loop, reader, writer, tls)

    async def _connection(
        self, loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter, tls: ssl.SSLContext | None,
    ) -> None:
        conn = _Conn(writer.transport, tls)
        self._conns[conn] = None
        raw = writer.get_extra_info("socket")
        if raw is not None:
            # no Nagle: a response written after unacknowledged data (a TLS 1.3
            # session ticket, the previous kept-alive response) would wait ~40 ms
            # for the client's delayed ACK
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._make_room()
        try:
            check = getattr(tls, "peer_check", None)
            if check is not None and not check(writer.get_extra_info("ssl_object")):
                writer.transport.abort()  # as a failed handshake: no HTTP answer
                return
            await self._serve_connection(loop, reader, writer, conn)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            writer.transport.abort()
        except Exception as e:  # a bug here must cost one connection, not the server
            log.warning("http_internal_error", server=self.name, error=f"{type(e).__name__}: {e}")
            writer.transport.abort()
        finally:
            conn.deadline(loop, None)
            self._conns.pop(conn, None)
            if not writer.transport.is_closing():
                writer.close()

    def _make_room(self) -> None:
        """Over the ceiling, close the oldest connection with no request in progress."""
        while len(self._conns) > self.max_connections:
            oldest = next((c for c in self._conns if not c.busy), None)
            if oldest is None:
                return
            del self._conns[oldest]  # now: its task leaves only at its next step
            oldest.transport.abort()

    async def _serve_connection(
        self, loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter, conn: _Conn,
    ) -> None:
        first_wait = HEAD_TIMEOUT  # a new connection sends its request at once
        while not self._stopping:
            conn.busy = False
            conn.deadline(loop, first_wait)
            first = await reader.read(1)
            if not first:
                return  # closed by the client, or the deadline passed
            conn.busy = True
            conn.deadline(loop, HEAD_TIMEOUT)
            try:
                lines = await self._read_head(reader, first)
                if lines is None:
                    return
                request = parse_head(lines)
                length = body_length(request)
                if length:
                    if "100-continue" in request.tokens("expect"):
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await reader.readexactly(length)
            except BadRequest as e:
                await self._refuse(loop, reader, writer, conn, e)
                return
            conn.deadline(loop, None)
            response = await self._handle(loop, request)
            # a connection made with a TLS context that a reload replaced ends here
            current = conn.tls is self._tls
            keep = keep_alive(request) and not response.close and not self._stopping and current
            conn.deadline(loop, WRITE_TIMEOUT)
            writer.write(self._encode(response, request, keep))
            await writer.drain()
            if not keep:
                return
            first_wait = IDLE_TIMEOUT

    async def _read_head(self, reader: asyncio.StreamReader, first: bytes) -> list[bytes] | None:
        """The head's lines without line endings (CRLF or bare LF); None when
        the client went away mid-head. Empty lines before the request line are
        skipped (RFC 9112 2.2)."""
        lines: list[bytes] = []
        size = 0
        pending = first
        while True:
            if pending.endswith(b"\n"):
                line, pending = pending, b""
            else:
                try:
                    line = pending + await reader.readline()
                except ValueError:  # a line longer than the reader's limit
                    raise BadRequest(431, "request head too large") from None
                pending = b""
            if not line.endswith(b"\n"):
                return None
            size += len(line)
            if size > MAX_HEAD or len(lines) > MAX_HEADERS:
                raise BadRequest(431, "request head too large")
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if line:
                lines.append(line)
            elif lines:
                return lines

    async def _handle(self, loop: asyncio.AbstractEventLoop, request: Request) -> Response:
        try:
            answer = self._handler(request)
            if isinstance(answer, Response):
                return answer
            result = await self._run_work(loop, answer)
            return answer.finish(result)
        except _Busy:
            return text_response(503, f"Limit of concurrent requests reached ({self.max_requests}), try again later.")
        except Exception as e:
            log.warning("http_handler_failed", server=self.name, error=f"{type(e).__name__}: {e}")
            return text_response(500, "internal error")

    async def _run_work(self, loop: asyncio.AbstractEventLoop, work: Work[Any]) -> Any:
        future = self._shared.get(work.key) if work.key is not None else None
        if future is None:
            if self._in_flight >= self.max_requests:
                raise _Busy
            self._in_flight += 1
            future = loop.run_in_executor(self._pool, work.run)
            future.add_done_callback(lambda _: self._done(work.key, future))
            self._running.add(future)
            future.add_done_callback(self._running.discard)
            if work.key is not None:
                self._shared[work.key] = future
        # shielded: a waiter that goes away must not cancel the run others share
        return await asyncio.shield(future)

    def _done(self, key: Hashable | None, future: asyncio.Future[Any]) -> None:
        self._in_flight -= 1
        if key is not None and self._shared.get(key) is future:
            del self._shared[key]

    async def _refuse(
        self, loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter, conn: _Conn, error: BadRequest,
    ) -> None:
        """Answer a request that cannot be served with its status, then close
        the connection. Unread input is drained briefly first: closing a socket
        with unread data sends a reset that can destroy the answer in flight."""
        response = text_response(error.status, str(error), close=True)
        conn.deadline(loop, 1.0)
        writer.write(self._encode(response, None, keep=False))
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
            drained = 0
            while drained < 4 * MAX_BODY:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                drained += len(chunk)

    def _encode(self, response: Response, request: Request | None, keep: bool) -> bytes:
        reason = HTTPStatus(response.status).phrase
        lines = [f"HTTP/1.1 {response.status} {reason}", f"Date: {http_date()}"]
        if self._server_header:
            lines.append(f"Server: {self._server_header}")
        lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Content-Length: {len(response.body)}")
        lines.extend(f"{k}: {v}" for k, v in response.headers.items())
        if not keep:
            lines.append("Connection: close")
        elif request is not None and request.version < (1, 1):
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if request is not None and request.method == "HEAD":
            return head
        return head + response.body
