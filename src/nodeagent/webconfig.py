"""The exporter-toolkit web configuration file (web-config.yml), the way every
Prometheus exporter takes TLS and basic auth settings:

    tls_server_config:
      cert_file: /etc/nodeagent/tls.crt
      key_file: /etc/nodeagent/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: /etc/nodeagent/ca.crt          # optional
      min_version: TLS12                             # optional
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash, never a clear password
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import ssl
import threading
from dataclasses import dataclass, field
from typing import Literal

import bcrypt

from nodeagent.inputs import InputError, load_yaml, read_text, require_regular_file
from nodeagent.settings import ConfigError, load_dataclass


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str = ""
    key_file: str = ""
    client_auth_type: Literal[
        "NoClientCert", "RequestClientCert", "RequireAnyClientCert",
        "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    client_ca_file: str | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"


@dataclass(frozen=True)
class WebConfig:
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = field(default_factory=dict)
    # accepted for compatibility with exporter-toolkit files; not used
    http_server_config: dict[str, object] = field(default_factory=dict)


def load_web_config(path: str) -> WebConfig:
    try:
        data = load_yaml(read_text(path)) or {}
    except InputError as e:
        raise ConfigError(path, e.key, str(e)) from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", "the top level must be a mapping")
    cfg = load_dataclass(WebConfig, data, path)
    tls = cfg.tls_server_config
    if tls is not None and (not tls.cert_file or not tls.key_file):
        raise ConfigError(path, "tls_server_config", "cert_file and key_file are both required")
    if tls is not None and tls.client_auth_type != "NoClientCert" and not tls.client_ca_file:
        raise ConfigError(path, "tls_server_config.client_ca_file",
                          f"client_auth_type {tls.client_auth_type} needs the CA that signs client certificates")
    for user, hashed in cfg.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(path, f"basic_auth_users.{user}", "must be a bcrypt hash ($2y$...)")
    return cfg


def ssl_context(tls: TLSServerConfig, source: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }[tls.min_version]
    for key in ("cert_file", "key_file", "client_ca_file"):
        file = getattr(tls, key)
        try:
            if file:  # OpenSSL opens it by path: a FIFO there would block
                require_regular_file(file)
        except InputError as e:
            raise ConfigError(source, f"tls_server_config.{key}", f"{file}: {e}") from None
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(source, "tls_server_config", f"cannot load certificate or key: {e}") from None
    if tls.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif tls.client_auth_type in ("RequestClientCert", "VerifyClientCertIfGiven"):
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


# bcrypt reads at most 72 bytes of a password; the bcrypt library refuses longer ones
BCRYPT_MAX_PASSWORD = 72


def _cost(hashed: bytes) -> int:
    try:
        return int(hashed.split(b"$")[2])
    except (IndexError, ValueError):
        return 0


def parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """User and password from an `Authorization: Basic ...` header, as bytes;
    None when the header is absent or not Basic credentials."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


class BasicAuth:
    """Checks user/password against bcrypt hashes. bcrypt is slow on purpose
    (~100 ms), so a successful check is remembered by a keyed digest of the
    credentials, like exporter-toolkit's cache; the clear password is never stored.

    Every refusal costs the same: an unknown user or a password over bcrypt's
    72 bytes is checked against a configured hash (the costliest), the result
    thrown away, so neither the answer (401) nor its timing tells them apart
    from a wrong password."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u.encode(): h.encode() for u, h in users.items()}
        self._decoy = max(self._users.values(), key=_cost) if self._users else b""
        self._key = os.urandom(32)
        self._good: set[bytes] = set()
        self._lock = threading.Lock()
        # bcrypt costs ~70 ms of CPU: a flood of wrong passwords waits here
        self._checks = threading.BoundedSemaphore(2)

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def _digest(self, user: bytes, password: bytes) -> bytes:
        return hmac.new(self._key, user + b"\0" + password, hashlib.sha256).digest()

    def cached(self, user: str | bytes, password: str | bytes) -> bool:
        """True when these credentials passed a check before (no bcrypt: microseconds)."""
        digest = self._digest(_bytes(user), _bytes(password))
        with self._lock:
            return digest in self._good

    def check(self, user: str | bytes, password: str | bytes) -> bool:
        user, password = _bytes(user), _bytes(password)
        if self.cached(user, password):
            return True
        hashed = self._users.get(user)
        valid = hashed is not None and len(password) <= BCRYPT_MAX_PASSWORD
        try:
            with self._checks:
                ok = bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed if hashed and valid else self._decoy)
        except ValueError:  # a malformed hash in the web config
            return False
        if ok and valid:
            with self._lock:
                if len(self._good) > 1000:
                    self._good.clear()
                self._good.add(self._digest(user, password))
        return bool(ok and valid)


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
