"""Socket-level HTTP for the hostile tests: what a client sends, byte for
byte, and the responses read back by their Content-Length."""

import socket
import ssl
import time


class Reply:
    def __init__(self, status_line: bytes, headers: dict[str, str], body: bytes) -> None:
        self.status_line = status_line
        self.status = int(status_line.split(b" ")[1])
        self.headers = headers
        self.body = body


def connect(port: int, tls: ssl.SSLContext | None = None, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        s = tls.wrap_socket(s, server_hostname="127.0.0.1")
    return s


class Conn:
    """One connection with a read buffer, so that pipelined replies are read one by one."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, timeout: float = 5.0) -> None:
        self.sock = connect(port, tls, timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def reply(self, head_only: bool = False) -> Reply:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before a full reply: {self.buf[:200]!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not self._fill():
                raise ConnectionError("closed mid-body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return Reply(status_line, headers, body)

    def closed(self, within: float = 3.0) -> bool:
        """Whether the server ends the connection (EOF or reset) within `within` seconds."""
        self.sock.settimeout(within)
        try:
            while self._fill():
                pass
            return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def request(port: int, data: bytes, tls: ssl.SSLContext | None = None) -> Reply:
    c = Conn(port, tls)
    try:
        c.send(data)
        return c.reply()
    finally:
        c.close()


def get(path: str = "/metrics", extra: str = "", close: bool = True) -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}{conn}\r\n".encode()


def timed_scrape(port: int, tls: ssl.SSLContext | None = None) -> tuple[int, float]:
    started = time.perf_counter()
    reply = request(port, get(), tls)
    return reply.status, time.perf_counter() - started
