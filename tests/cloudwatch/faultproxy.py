"""A fault-injecting HTTP proxy between the CloudWatch sink and moto_server.

It is a real HTTP server on 127.0.0.1. Every request is recorded (bytes on
the wire, bytes before compression, datums, dimensions, timestamps), then,
depending on the mode:

  pass      forward to moto and relay its answer
  throttle  400 Throttling (what CloudWatch answers over its rate)
  error500  500 InternalServiceError
  drop      read the request, close the connection without an answer
  dark      read the request, answer nothing until the mode changes (the
            client's read timeout fires), then close: a black hole
  late      forward to moto (the request IS stored), then answer nothing
            until the mode changes, then close: CloudWatch did the work but
            the answer never came back (a slow service, or a black-holed
            network whose retransmitted requests arrive once it heals)
  expired   400 ExpiredToken (expired session credentials)

The mode applies to every action (the sink's reachability probes too);
`fail_next(n, mode)` applies a mode to the next n PutMetricData requests only; `poison`
makes requests that carry a given dimension value fail with 400
InvalidParameterValue, as CloudWatch does for content it refuses.

moto_server (5.2) decompresses a gzip body twice for JSON-protocol requests
and answers 500, so the proxy forwards the decompressed body: the sink still
sends gzip on the wire, which the proxy records and checks.
"""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODES = ("pass", "throttle", "error500", "drop", "dark", "late", "expired")


@dataclass
class Recorded:
    """One request as the proxy saw it."""

    mode: str  # what the proxy did with it
    action: str
    wire_bytes: int
    raw_bytes: int  # after gunzip
    gzip: bool
    signed: bool = True  # carried an Authorization header
    namespace: str | None = None
    # (name, ((dim, value), ...), timestamp, value, unit, storage resolution)
    datums: list[tuple[str, tuple[tuple[str, str], ...], float, float, str, int]] = field(default_factory=list)
    status: int = 0

    @property
    def max_dimensions(self) -> int:
        return max((len(d[1]) for d in self.datums), default=0)


def _parse_json_datums(doc: dict[str, Any]) -> tuple[str | None, list[Any]]:
    out = []
    for m in doc.get("MetricData", []):
        dims = tuple((d["Name"], d["Value"]) for d in m.get("Dimensions", []))
        ts = m.get("Timestamp")
        out.append(
            (
                m["MetricName"],
                dims,
                float(ts) if ts is not None else 0.0,
                float(m["Value"]),
                m.get("Unit", ""),
                int(m.get("StorageResolution", 60)),
            )
        )
    return doc.get("Namespace"), out


def _parse_query_datums(body: bytes) -> tuple[str | None, list[Any]]:
    from datetime import datetime

    q = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    out = []
    i = 1
    while f"MetricData.member.{i}.MetricName" in q:
        p = f"MetricData.member.{i}."
        dims = []
        j = 1
        while f"{p}Dimensions.member.{j}.Name" in q:
            dims.append((q[f"{p}Dimensions.member.{j}.Name"], q[f"{p}Dimensions.member.{j}.Value"]))
            j += 1
        ts = q.get(p + "Timestamp")
        out.append(
            (
                q[p + "MetricName"],
                tuple(dims),
                datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() if ts else 0.0,
                float(q[p + "Value"]),
                q.get(p + "Unit", ""),
                int(q.get(p + "StorageResolution", 60)),
            )
        )
        i += 1
    return q.get("Namespace"), out


class FaultProxy:
    def __init__(self, upstream: str, port: int = 0) -> None:
        u = urlsplit(upstream)
        self.upstream_host = u.hostname or "127.0.0.1"
        self.upstream_port = u.port or 80
        self.mode = "pass"
        self.poison: str | None = None
        self._next: list[str] = []
        self.records: list[Recorded] = []
        self._lock = threading.Lock()
        self._revert: threading.Timer | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                proxy._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="faultproxy", daemon=True)

    # ---- control -----------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.set_mode("pass")
        self.server.shutdown()
        self.server.server_close()

    def set_mode(self, mode: str, for_seconds: float | None = None) -> None:
        """Switch mode; with for_seconds, go back to pass afterwards (an outage of a while)."""
        assert mode in MODES, mode
        with self._lock:
            if self._revert is not None:
                self._revert.cancel()
                self._revert = None
            self.mode = mode
            if for_seconds is not None:
                self._revert = threading.Timer(for_seconds, self.set_mode, ("pass",))
                self._revert.daemon = True
                self._revert.start()

    def fail_next(self, n: int, mode: str) -> None:
        assert mode in MODES, mode
        with self._lock:
            self._next.extend([mode] * n)

    def reset(self) -> None:
        with self._lock:
            self.records.clear()
            self._next.clear()
            self.poison = None
        self.set_mode("pass")

    # ---- views ---------------------------------------------------------------
    def put_records(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.records if r.action == "PutMetricData"]

    def delivered(self) -> list[Recorded]:
        """PutMetricData requests moto accepted and answered to the client."""
        return [r for r in self.put_records() if r.mode == "pass" and r.status == 200]

    def stored(self) -> list[Recorded]:
        """PutMetricData requests moto accepted, answered or not (`late`)."""
        return [r for r in self.put_records() if r.mode in ("pass", "late") and r.status == 200]

    # ---- the work ------------------------------------------------------------------
    def _choose(self, rec: Recorded) -> str:
        with self._lock:
            if rec.action != "PutMetricData":
                return self.mode
            if self._next:
                return self._next.pop(0)
            if self.poison is not None and any(v == self.poison for d in rec.datums for _, v in d[1]):
                return "poison"
            return self.mode

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        gz = h.headers.get("Content-Encoding", "") == "gzip"
        raw = gzip.decompress(body) if gz else body
        ctype = h.headers.get("Content-Type", "")
        target = h.headers.get("X-Amz-Target", "")
        action = target.rsplit(".", 1)[-1] if target else ""
        rec = Recorded(
            mode="",
            action=action,
            wire_bytes=len(body),
            raw_bytes=len(raw),
            gzip=gz,
            signed="Authorization" in h.headers,
        )
        if "json" in ctype:
            doc = json.loads(raw or b"{}")
            if action == "PutMetricData":
                rec.namespace, rec.datums = _parse_json_datums(doc)
        elif "x-www-form-urlencoded" in ctype:
            q = parse_qs(raw.decode())
            rec.action = action = q.get("Action", [""])[0]
            if action == "PutMetricData":
                rec.namespace, rec.datums = _parse_query_datums(raw)
        elif "cbor" in ctype:
            raise AssertionError("the proxy cannot decode CBOR requests; botocore changed protocol")
        mode = self._choose(rec)
        rec.mode = mode
        with self._lock:
            self.records.append(rec)
        if mode == "pass":
            self._forward(h, raw, rec)
        elif mode == "throttle":
            self._error(h, rec, 400, "Throttling", "Sender", "Rate exceeded")
        elif mode == "error500":
            self._error(h, rec, 500, "InternalServiceError", "Receiver", "Internal failure")
        elif mode == "expired":
            self._error(h, rec, 400, "ExpiredToken", "Sender", "The security token included in the request is expired")
        elif mode == "poison":
            self._error(h, rec, 400, "InvalidParameterValue", "Sender", "The value poison is not valid")
        elif mode in ("dark", "late"):
            if mode == "late":
                self._forward(h, raw, rec, answer=False)
            deadline = time.monotonic() + 30
            while self.mode == mode and time.monotonic() < deadline:
                time.sleep(0.02)
            h.close_connection = True
        else:  # drop
            h.close_connection = True

    def _error(self, h: BaseHTTPRequestHandler, rec: Recorded, status: int, code: str, fault: str, msg: str) -> None:
        payload = json.dumps({"__type": f"com.amazonaws.cloudwatch#{code}", "message": msg}).encode()
        rec.status = status
        h.send_response(status)
        h.send_header("Content-Type", "application/x-amz-json-1.0")
        h.send_header("x-amzn-query-error", f"{code};{fault}")
        h.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _forward(self, h: BaseHTTPRequestHandler, raw: bytes, rec: Recorded, answer: bool = True) -> None:
        headers = {
            k: v
            for k, v in h.headers.items()
            if k.lower() not in ("content-encoding", "content-length", "host", "connection")
        }
        headers["Content-Length"] = str(len(raw))
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            conn.request(h.command, h.path, body=raw, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            rec.status = resp.status
            if not answer:
                return
            h.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        finally:
            conn.close()


def main() -> None:  # pragma: no cover - manual use
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("upstream")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    p = FaultProxy(args.upstream, args.port).start()
    print(p.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        p.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
