"""The exporter-toolkit web configuration file (web-config.yml), the way every
Prometheus exporter takes TLS, basic auth and response header settings, with
exporter-toolkit's meaning for each key:

    tls_server_config:
      cert_file: tls.crt            # relative paths: from this file's directory
      key_file: tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional, Go's names
      client_ca_file: ca.crt                         # optional
      client_allowed_sans: [prometheus.example.org]  # optional
      min_version: TLS12                             # optional, TLS10..TLS13
      max_version: TLS13                             # optional
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]  # optional, TLS 1.2
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash, never a clear password

Client certificates follow Go's crypto/tls: NoClientCert does not ask for one;
RequestClientCert asks, RequireAnyClientCert requires one, and neither
verifies it; VerifyClientCertIfGiven verifies one when given;
RequireAndVerifyClientCert requires a verified one (against client_ca_file,
else the system's CAs, as Go does). `client_allowed_sans` then admits only a
certificate with one of those subject alternative names (DNS, e-mail, IP or
URI, compared as text).

`http2` is accepted and has no effect: nodeagent serves HTTP/1.1 only (it
offers no `h2` in TLS), which every Prometheus scraper speaks.
`curve_preferences` and `prefer_server_cipher_suites` are accepted and checked,
not applied: OpenSSL's own key exchange groups are used, and Go ignores the
latter too.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import hmac
import ipaddress
import os
import ssl
import threading
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import bcrypt

from nodeagent.httpserver import ServerContext
from nodeagent.inputs import InputError, load_yaml, read_text, require_regular_file
from nodeagent.settings import ConfigError, load_dataclass, shown

TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's names of the cipher suites it accepts in a web config (crypto/tls
# CipherSuites()), as OpenSSL names them. TLS 1.3 suites are not configurable
# in Go (they are accepted and ignored) nor here: None.
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")

# The response headers exporter-toolkit lets a web config set, with the values
# allowed where they form a closed set (None: any value).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}


def _check_ciphers(value: tuple[str, ...]) -> str | None:
    unknown = [v for v in value if v not in CIPHER_SUITES]
    return f"unknown cipher suite {shown(unknown[0])} (Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)" \
        if unknown else None


def _check_curves(value: tuple[str, ...]) -> str | None:
    unknown = [v for v in value if v not in CURVES]
    return f"unknown curve {shown(unknown[0])} (one of {', '.join(CURVES)})" if unknown else None


def _check_headers(value: dict[str, str]) -> str | None:
    for name, text in value.items():
        if name not in ALLOWED_HEADERS:
            return f"HTTP header {shown(name)} can not be configured (allowed: {', '.join(ALLOWED_HEADERS)})"
        allowed = ALLOWED_HEADERS[name]
        if allowed is not None and text not in allowed:
            return f"invalid value for {name}: expected one of {', '.join(allowed)}, got {shown(text)}"
        if any(c in text for c in "\r\n\0"):
            return f"the value of {name} must be one line"
    return None


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str = ""
    key_file: str = ""
    # "" is NoClientCert; RequireClientCert is exporter-toolkit's old name of RequireAnyClientCert
    client_auth_type: Literal[
        "", "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "RequireClientCert",
        "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
    ] = ""
    client_ca_file: str | None = None
    client_allowed_sans: tuple[str, ...] | None = None
    cipher_suites: tuple[str, ...] = field(default=(), metadata={"check": _check_ciphers})
    curve_preferences: tuple[str, ...] = field(default=(), metadata={"check": _check_curves})
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True)
class HTTPServerConfig:
    http2: bool = True  # accepted, no effect: HTTP/1.1 only
    headers: dict[str, str] = field(default_factory=dict, metadata={"check": _check_headers})


@dataclass(frozen=True)
class WebConfig:
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = field(default_factory=dict)
    http_server_config: HTTPServerConfig = HTTPServerConfig()


def _join(directory: str, path: str | None) -> str | None:
    """A path from the web config: relative ones are relative to its directory."""
    if not path or os.path.isabs(path):
        return path
    return os.path.join(directory, path)


def load_web_config(path: str) -> WebConfig:
    try:
        data = load_yaml(read_text(path)) or {}
    except InputError as e:
        raise ConfigError(path, e.key, str(e)) from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", "the top level must be a mapping")
    cfg = load_dataclass(WebConfig, data, path)
    for user, hashed in cfg.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(path, f"basic_auth_users.{user}", "must be a bcrypt hash ($2y$...)")
    tls = cfg.tls_server_config
    if tls is None:
        return cfg
    if not (tls.cert_file or tls.key_file or tls.client_auth_type or tls.client_ca_file):
        # exporter-toolkit: a TLS section without certificate or client settings is plain HTTP
        return WebConfig(None, cfg.basic_auth_users, cfg.http_server_config)
    for key in ("cert_file", "key_file"):
        if not getattr(tls, key):
            raise ConfigError(path, f"tls_server_config.{key}", "missing (cert_file and key_file are both required)")
    if tls.client_ca_file and tls.client_auth_type in ("", "NoClientCert"):
        raise ConfigError(path, "tls_server_config.client_ca_file",
                          "a client CA is set but client_auth_type does not ask for client certificates")
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        raise ConfigError(path, "tls_server_config.min_version",
                          f"{tls.min_version} is above max_version {tls.max_version}: no TLS version is left")
    directory = os.path.dirname(path)
    tls = replace(tls, cert_file=_join(directory, tls.cert_file) or "", key_file=_join(directory, tls.key_file) or "",
                  client_ca_file=_join(directory, tls.client_ca_file))
    return WebConfig(tls, cfg.basic_auth_users, cfg.http_server_config)


def ssl_context(tls: TLSServerConfig, source: str) -> ServerContext:
    """The server TLS context for these settings; ConfigError names the key
    of a file that cannot be read or a setting OpenSSL refuses."""
    ctx = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: given only when the file asks
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = TLS_VERSIONS[tls.min_version]
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    _set_ciphers(ctx, tls, source)
    contents = [repr(tls).encode()]
    for key in ("cert_file", "key_file", "client_ca_file"):
        file = getattr(tls, key)
        try:
            if file:  # OpenSSL opens it by path: a FIFO there would block
                require_regular_file(file)
                with open(file, "rb") as f:
                    contents.append(f.read())
        except (InputError, OSError) as e:
            raise ConfigError(source, f"tls_server_config.{key}", f"{file}: {e}") from None
    # equal settings and files: a reload keeps this context and its connections
    ctx.fingerprint = hashlib.sha256(b"\0".join(contents)).digest()
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(source, "tls_server_config", f"cannot load certificate or key: {e}") from None
    _set_client_auth(ctx, tls, source)
    return ctx


def _set_ciphers(ctx: ssl.SSLContext, tls: TLSServerConfig, source: str) -> None:
    # OpenSSL 3 refuses TLS 1.0 and 1.1 at its default security level; a web
    # config that asks for them gets them, as Go's server gives them
    legacy = ":@SECLEVEL=0" if TLS_VERSIONS[tls.min_version] < ssl.TLSVersion.TLSv1_2 else ""
    names = [name for s in tls.cipher_suites if (name := CIPHER_SUITES[s])]
    try:
        if names:
            ctx.set_ciphers(":".join(names) + legacy)
        elif tls.cipher_suites:
            # only TLS 1.3 suites listed: Go then has no suite for TLS 1.2 and below
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        elif legacy:
            ctx.set_ciphers("DEFAULT" + legacy)
    except ssl.SSLError as e:
        raise ConfigError(source, "tls_server_config.cipher_suites", f"refused by OpenSSL: {e}") from None


def _set_client_auth(ctx: ServerContext, tls: TLSServerConfig, source: str) -> None:
    mode = tls.client_auth_type or "NoClientCert"
    if mode == "NoClientCert":
        return
    if mode in ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert"):
        try:
            accept_any_client_certificate(ctx, required=mode != "RequestClientCert")
        except OSError as e:
            raise ConfigError(source, "tls_server_config.client_auth_type",
                              f"{mode} (a client certificate taken unverified) is not available here: {e}") from None
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED if mode == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
        if not tls.client_ca_file:  # Go verifies against the system's CAs then
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    if tls.client_allowed_sans is not None:
        ctx.peer_check = _SANCheck(frozenset(tls.client_allowed_sans))


class _SANCheck:
    """A client certificate must carry one of the allowed subject alternative
    names, compared as exporter-toolkit does: DNS names, e-mail addresses,
    IP addresses in Go's text form and URIs, exactly. No certificate, no entry."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    def __call__(self, sslobj: ssl.SSLObject) -> bool:
        cert = sslobj.getpeercert() if sslobj is not None else None
        if not cert:
            return False
        return any(value in self.allowed for value in san_values(cert))


def san_values(cert: dict[str, Any]) -> list[str]:
    values: list[str] = []
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "email", "URI"):
            values.append(value)
        elif kind == "IP Address":
            try:
                ip = ipaddress.ip_address(value.strip())
            except ValueError:
                continue
            mapped = getattr(ip, "ipv4_mapped", None)
            values.append(str(mapped or ip))  # Go prints an IPv4-mapped address as IPv4
    return values


# ---- client certificates taken without verification ----
#
# Python's ssl module verifies every client certificate it asks for; Go's
# RequestClientCert and RequireAnyClientCert ask and take any. OpenSSL does
# that with a verify callback that accepts, which the ssl module does not
# expose: it is set here on the context's SSL_CTX, through the libssl the ssl
# module itself uses. The SSL_CTX pointer is the first field of the context
# object (CPython's PySSLContext, 3.10 to 3.13); it is checked against what
# the ssl module reports (verify mode, options) before anything is set, and a
# mismatch refuses the setting rather than guess.

_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_ACCEPT_ANY = _VERIFY_CALLBACK(lambda ok, store: 1)  # lives as long as the process
_libssl_lock = threading.Lock()
_libssl: Any = None


def _load_libssl() -> Any:
    global _libssl
    with _libssl_lock:
        if _libssl is None:
            path = next((line.split()[-1] for line in _maps() if os.path.basename(line.split()[-1]).startswith(
                "libssl.so")), None)
            if path is None:
                raise OSError("the ssl module's libssl is not a shared library in this process")
            lib = ctypes.CDLL(path)
            lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
            lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
            lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
            lib.SSL_CTX_get_options.restype = ctypes.c_uint64
            lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
            lib.SSL_CTX_set_verify.restype = None
            _libssl = lib
        return _libssl


def _maps() -> list[str]:
    with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
        return [line for line in f if "/" in line]


def accept_any_client_certificate(ctx: ssl.SSLContext, required: bool) -> None:
    """Ask for a client certificate and take any (required: refuse a client
    without one). OSError when this Python's ssl module cannot be set so."""
    ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    lib = _load_libssl()
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    expected = _SSL_VERIFY_PEER | (_SSL_VERIFY_FAIL_IF_NO_PEER_CERT if required else 0)
    if not pointer or lib.SSL_CTX_get_verify_mode(pointer) != expected \
            or lib.SSL_CTX_get_options(pointer) != ctx.options:
        raise OSError("the ssl module's context does not have the expected layout")
    lib.SSL_CTX_set_verify(pointer, expected, _ACCEPT_ANY)


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
