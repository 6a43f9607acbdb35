"""Hostile HTTP clients at the socket level: bodies on GET, malformed and
oversized heads, pipelining, content negotiation, the request limit, idle,
slow and stalled (TLS) connections, and basic auth refusals."""

import base64
import contextlib
import gzip
import http.client
import socket
import statistics
import threading
import time

import bcrypt
import pytest
from rawhttp import Conn, connect, get, request, timed_scrape

import nodeagent.httpserver as httpserver
from nodeagent import __version__
from nodeagent.exporter import accepts_gzip
from nodeagent.webconfig import BasicAuth


def bcrypt_hash(password: bytes, rounds: int = 4) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=rounds)).decode().replace("$2b$", "$2y$")


def _auth(user: bytes, password: bytes) -> str:
    return "Authorization: Basic " + base64.b64encode(user + b":" + password).decode() + "\r\n"


# ---- HTTP/1.1 framing ----


def test_a_body_on_get_is_consumed_not_read_as_the_next_request(serve):
    e = serve()
    c = Conn(e.port)
    smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled
           + get("/metrics", close=False))
    first, second = c.reply(), c.reply()
    assert (first.status, first.body) == (200, b"ok\n")
    assert second.status == 200 and b'node_one{x="y"} 1' in second.body  # not the 404 of the body
    c.close()


@pytest.mark.parametrize("head, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),  # HTTP/0.9
    (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),  # header without a colon
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # space before the colon
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),  # obsolete line folding
    (b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (httpserver.MAX_HEAD + 10) + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * (httpserver.MAX_HEADERS + 1) + b"\r\n", 431),
])
def test_malformed_requests_get_a_status_line_and_the_connection_ends(serve, head, status):
    e = serve()
    c = Conn(e.port)
    c.send(head)
    reply = c.reply()
    assert reply.status_line.startswith(b"HTTP/1.1 %d " % status), reply.status_line
    assert reply.headers["connection"] == "close"
    assert reply.headers["content-type"].startswith("text/plain")
    assert c.closed()
    c.close()


def test_pipelined_requests_are_answered_in_order(serve):
    e = serve()
    c = Conn(e.port)
    c.send(get("/healthz", close=False) + get("/nope", close=False) + b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
           + get("/", close=True))
    assert c.reply().status == 200
    assert c.reply().status == 404
    head = c.reply(head_only=True)
    assert head.status == 200 and int(head.headers["content-length"]) > 0
    assert c.reply().body.startswith(b"<html>")
    assert c.closed()
    c.close()


def test_leading_empty_lines_and_bare_newlines_are_accepted(serve):
    e = serve()
    assert request(e.port, b"\r\nGET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n").status == 200


def test_http_1_0_closes_unless_asked_to_keep_alive(serve):
    e = serve()
    c = Conn(e.port)
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert c.reply().headers["connection"] == "close" and c.closed()
    c.close()
    c = Conn(e.port)
    c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert c.reply().headers["connection"] == "keep-alive"
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert c.reply().status == 200
    c.close()


def test_other_methods_are_refused(serve):
    e = serve()
    reply = request(e.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab")
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"


def test_server_header_names_only_the_product(serve):
    e = serve()
    reply = request(e.port, get("/healthz"))
    assert reply.headers["server"] == f"nodeagent/{__version__}"
    assert "date" in reply.headers


# ---- content negotiation ----


@pytest.mark.parametrize("header, gz", [
    (None, False), ("gzip", True), ("GZIP", True), ("x-gzip", True), ("gzip;q=0", False), ("gzip; q=0.000", False),
    ("gzip;q=0.5", True), ("*", True), ("*;q=0", False), ("gzip;q=0, *", False), ("identity", False),
    ("deflate, br", False), ("br, *;q=0.1", True), ("gzip;q=abc", False), ("gzip;q=2", False),
    ("identity;q=1, gzip;q=0.001", True),
])
def test_accept_encoding_q_values(header, gz):
    assert accepts_gzip(header) is gz


def test_gzip_is_sent_only_when_accepted(serve):
    e = serve()
    plain = request(e.port, get(extra="Accept-Encoding: gzip;q=0\r\n"))
    assert "content-encoding" not in plain.headers and b"node_one" in plain.body
    packed = request(e.port, get(extra="Accept-Encoding: *\r\n"))
    assert packed.headers["content-encoding"] == "gzip" and gzip.decompress(packed.body) == plain.body
    assert packed.headers["vary"] == "Accept-Encoding"


# ---- keep-alive latency ----


def test_kept_alive_responses_are_not_delayed_by_nagle(serve):
    """Nagle plus delayed ACK holds a kept-alive response ~40 ms."""
    e = serve()
    c = Conn(e.port)
    times = []
    for _ in range(30):
        started = time.perf_counter()
        c.send(get(close=False))
        assert c.reply().status == 200
        times.append(time.perf_counter() - started)
    c.close()
    assert statistics.median(times) < 0.02, times


def test_tls_responses_are_not_delayed_by_nagle(serve, client_tls):
    """TLS 1.3 sends session tickets after the handshake: with Nagle on, the
    first response waits for their ACK (~40 ms) on every new connection."""
    e = serve(tls=True)
    times = []
    for _ in range(10):
        # http.client (blocking socket) sends its request the way that meets
        # the tickets in flight; the non-blocking raw client often does not
        c = http.client.HTTPSConnection("127.0.0.1", e.port, timeout=5, context=client_tls)
        c.connect()
        started = time.perf_counter()
        c.request("GET", "/metrics")
        assert c.getresponse().status == 200
        times.append(time.perf_counter() - started)
        c.close()
    assert statistics.median(times) < 0.02, times


# ---- the request limit ----


def test_work_beyond_the_limit_gets_a_fast_503(serve):
    """Password checks each take a worker; the one that finds none free is told
    so at once, while a remembered credential is still served."""
    e = serve(users={"prom": bcrypt_hash(b"pw", rounds=12)}, min_interval=60, max_requests=2)
    good = _auth(b"prom", b"pw")
    assert request(e.port, get(extra=good)).status == 200  # checked once, then remembered
    held = [Conn(e.port) for _ in range(2)]
    for i, c in enumerate(held):
        c.send(get(extra=_auth(b"prom", b"wrong%d" % i)))
    time.sleep(0.05)
    started = time.perf_counter()
    reply = request(e.port, get(extra=_auth(b"prom", b"wrong")))
    assert reply.status == 503 and time.perf_counter() - started < 0.2
    assert b"Limit of concurrent requests reached (2)" in reply.body
    started = time.perf_counter()
    assert request(e.port, get(extra=good)).status == 200
    assert time.perf_counter() - started < 0.2
    for c in held:
        assert c.reply().status == 401
        c.close()


def test_concurrent_scrapes_share_one_collection_and_no_worker(serve):
    """Scrapes arriving during a collection wait for that one and
    take no worker: none is refused, even with two workers."""
    e = serve(min_interval=0, delay=0.5, max_requests=2)
    collector = e.collection.supervisor.collectors[0]
    before = collector.calls
    conns = [Conn(e.port) for _ in range(60)]
    for i, c in enumerate(conns):
        c.send(get(["/metrics", "/healthz"][i % 2], extra="Accept-Encoding: gzip\r\n" if i % 3 == 0 else ""))
    replies = [c.reply() for c in conns]
    assert [r.status for r in replies] == [200] * 60
    assert collector.calls - before <= 2
    for c in conns:
        c.close()


# ---- idle, slow and stalled clients ----


def test_idle_connections_do_not_block_a_scrape(serve):
    e = serve()
    idle = [connect(e.port) for _ in range(100)]
    try:
        for _ in range(5):
            status, took = timed_scrape(e.port)
            assert status == 200 and took < 1.0
    finally:
        for s in idle:
            s.close()


def test_a_flood_of_idle_connections_evicts_the_oldest(serve):
    e = serve()
    for server in e.servers.values():
        server.max_connections = 20
    idle = [connect(e.port) for _ in range(40)]
    try:
        status, _ = timed_scrape(e.port)
        assert status == 200
        time.sleep(0.2)
        closed = []
        for s in idle:
            s.settimeout(0.05)
            try:
                closed.append(s.recv(1) == b"")
            except ConnectionResetError:
                closed.append(True)
            except TimeoutError:
                closed.append(False)
        assert closed == [True] * 21 + [False] * 19  # the scrape's connection came in as the 41st
    finally:
        for s in idle:
            s.close()


def _slowloris(port, n, stop, period=0.5):
    conns = []
    for _ in range(n):
        s = connect(port)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        conns.append(s)
    while not stop.is_set():
        for s in conns:
            with contextlib.suppress(OSError):
                s.sendall(b"X")
        stop.wait(period)
    for s in conns:
        s.close()


def test_a_slowloris_does_not_block_a_scrape(serve):
    e = serve()
    stop = threading.Event()
    t = threading.Thread(target=_slowloris, args=(e.port, 60, stop))
    t.start()
    try:
        time.sleep(0.5)
        for _ in range(20):
            status, took = timed_scrape(e.port)
            assert status == 200 and took < 1.0
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()


def test_a_slow_request_head_is_cut_off_at_the_deadline(serve, monkeypatch):
    monkeypatch.setattr(httpserver, "HEAD_TIMEOUT", 1.0)
    e = serve()
    c = Conn(e.port)
    c.send(b"GET /metrics HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(4):  # a byte every 0.4 s keeps it trickling, never completing
        time.sleep(0.4)
        try:
            c.send(b"X")
        except OSError:
            break
    assert c.closed(within=2.0)
    assert time.monotonic() - started < 3.0
    c.close()


def test_a_stalled_tls_handshake_does_not_block_a_scrape(serve, client_tls, monkeypatch):
    monkeypatch.setattr(httpserver, "HANDSHAKE_TIMEOUT", 1.0)
    e = serve(tls=True)
    stalled = [connect(e.port) for _ in range(50)]  # TCP only, no ClientHello
    half = connect(e.port)
    half.sendall(b"\x16\x03\x01\x00\xa0\x01")  # the start of a ClientHello, then nothing
    try:
        for _ in range(5):
            status, took = timed_scrape(e.port, client_tls)
            assert status == 200 and took < 1.0
        half.settimeout(3)
        assert half.recv(1) == b"", "a stalled handshake is closed at its deadline"
    finally:
        for s in [*stalled, half]:
            s.close()


def test_tls_idle_and_slow_clients_do_not_block_a_scrape(serve, client_tls):
    e = serve(tls=True)
    idle = [connect(e.port, client_tls) for _ in range(45)]  # handshake done, no request
    stop = threading.Event()
    t = threading.Thread(target=lambda: _slowloris_tls(e.port, client_tls, 20, stop))
    t.start()
    try:
        time.sleep(0.5)
        for _ in range(5):
            status, took = timed_scrape(e.port, client_tls)
            assert status == 200 and took < 1.0
    finally:
        stop.set()
        t.join()
        for s in idle:
            s.close()


def _slowloris_tls(port, ctx, n, stop):
    conns = [connect(port, ctx) for _ in range(n)]
    for s in conns:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
    while not stop.wait(0.3):
        for s in conns:
            with contextlib.suppress(OSError):
                s.sendall(b"X")
    for s in conns:
        s.close()


# ---- /healthz ----


def test_healthz_fails_when_a_scrape_would(serve, monkeypatch):
    e = serve(min_interval=0)
    assert request(e.port, get("/healthz")).status == 200

    def broken(self):
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(type(e.collection), "_collect", broken)
    health = request(e.port, get("/healthz"))
    metrics = request(e.port, get("/metrics"))
    assert health.status == metrics.status == 500
    assert b"OverflowError" in health.body


def test_healthz_needs_the_credentials_metrics_needs(serve):
    e = serve(users={"prom": bcrypt_hash(b"pw")})
    assert request(e.port, get("/healthz")).status == 401
    auth = "Authorization: Basic " + base64.b64encode(b"prom:pw").decode() + "\r\n"
    assert request(e.port, get("/healthz", extra=auth)).status == 200


# ---- basic auth ----


def test_refusals_are_alike_for_unknown_users_wrong_and_overlong_passwords(serve):
    good = b"p" * 72
    e = serve(users={"prom": bcrypt_hash(good)})
    for user, password in [(b"nobody", b"x"), (b"prom", b"wrong"), (b"prom", good + b"extra"),
                           (b"nobody", b"y" * 200), (b"prom", b"\xff\xfe"), (b"", b"")]:
        reply = request(e.port, get(extra=_auth(user, password)))
        assert reply.status == 401, (user, password)
        assert reply.headers["www-authenticate"].startswith("Basic")
        assert reply.body == b"Unauthorized\n"
    for header in ("Basic !!!", "Bearer x", "Basic " + base64.b64encode(b"no-colon").decode()):
        assert request(e.port, get(extra=f"Authorization: {header}\r\n")).status == 401
    assert request(e.port, get(extra=_auth(b"prom", good))).status == 200
    assert request(e.port, get(extra=_auth(b"prom", good))).status == 200  # the remembered credential


def test_refusals_cost_the_same():
    """Unknown user, wrong password and over-long password each cost one bcrypt
    check of the configured cost (no early return tells them apart)."""
    auth = BasicAuth({"prom": bcrypt_hash(b"pw", rounds=8)})

    def cost(user, password):
        # the fastest of several: bcrypt is fixed CPU work, anything above it
        # is the machine being busy elsewhere
        times = []
        for _ in range(7):
            started = time.perf_counter()
            assert not auth.check(user, password)
            times.append(time.perf_counter() - started)
        return min(times)

    wrong = cost(b"prom", b"guess")
    for other in (cost(b"nobody", b"guess"), cost(b"prom", b"x" * 100), cost(b"nobody", b"x" * 100)):
        assert 0.6 < other / wrong < 1.6, (other, wrong)


def test_unknown_users_are_refused_even_with_a_real_password():
    auth = BasicAuth({"prom": bcrypt_hash(b"pw")})
    assert not auth.check("someone", "pw")
    assert auth.check("prom", "pw")


def test_the_listen_backlog_holds_a_burst_of_connects(serve):
    e = serve()
    socks = []
    try:
        for _ in range(300):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", e.port))
            socks.append(s)
        status, _ = timed_scrape(e.port)
        assert status == 200
    finally:
        for s in socks:
            s.close()
