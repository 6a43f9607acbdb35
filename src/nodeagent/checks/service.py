"""Is the agent itself running: the systemd unit, and each exporter answering
on its listen address with the families it must serve.

An exporter listening on all interfaces (":9100", "0.0.0.0:9100", "[::]:9100")
is asked on loopback. Endpoints with TLS are asked over https without
verifying the certificate (loopback, liveness only: nothing secret is sent);
with basic auth the answer 401 proves the server runs but not its content.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable
from functools import partial

from nodeagent import registry
from nodeagent.checks.options import CheckOptions
from nodeagent.checks.result import CheckRow, fail, ok, skip, timed, warn
from nodeagent.config import Config, enabled_collectors
from nodeagent.exporter import parse_listen
from nodeagent.host import CommandError, Host
from nodeagent.roles import ROLE_TABLE

# (collector, family): the family an exporter must serve when that collector is enabled
PRIMARY_FAMILY = {
    "host": ("loadavg", "node_load1"),
    "gpu": ("gpu_status", "nodeagent_gpus"),
    "slurm": ("sinfo", "slurm_nodes_total"),
}
# served whenever the group has a collector (the supervisor's meta series)
META_FAMILY = {
    "host": "node_scrape_collector_success",
    "gpu": "nodeagent_collector_success",
    "slurm": "nodeagent_collector_success",
}
_MAX_BODY = 64 << 20
_CLIENT_CERT_MODES = ("RequireAnyClientCert", "RequireClientCert", "RequireAndVerifyClientCert")


def unit_name(role: str) -> str:
    from nodeagent.install import instance

    return instance(role)


def check_unit(role: str, host: Host, options: CheckOptions, systemd_running: bool) -> CheckRow:
    unit = unit_name(role)
    name = f"unit {unit}"
    if not systemd_running:
        return skip(name, "systemd is not running here (no /run/systemd/system)")
    try:
        result = host.run([options.systemctl, "is-active", unit], timeout=options.command_timeout, check=False)
    except CommandError as e:
        return fail(name, f"cannot ask systemd: {e}", f"is {options.systemctl} installed?")
    state = result.stdout.strip() or f"exit status {result.returncode}"
    if state == "active":
        return ok(name, "active")
    if state == "failed":
        return fail(name, "failed", f"`journalctl -u {unit} -n 50`, fix the cause, then `systemctl restart {unit}`")
    return fail(name, state, f"`systemctl enable --now {unit}` (or `nodeagent install --role {role}`)")


def loopback_url(listen: str, tls: bool, path: str = "/metrics") -> str:
    host, port = parse_listen(listen)
    if host in ("", "0.0.0.0"):  # noqa: S104 - a listen address, not a bind
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}{path}"


def exposed_families(body: str) -> set[str]:
    """Family and sample names in an exposition-format body."""
    names: set[str] = set()
    for line in body.splitlines():
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            parts = line.split(None, 3)
            if len(parts) >= 3:
                names.add(parts[2])
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def expected_families(group: str, collectors: Iterable[str]) -> list[str]:
    wanted = [META_FAMILY[group]]
    collector, family = PRIMARY_FAMILY[group]
    if collector in collectors:
        wanted.insert(0, family)
    return wanted


def _fetch(url: str, tls: bool, timeout: float) -> tuple[int, str]:
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})  # noqa: S310 (built from config)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status), resp.read(_MAX_BODY).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as e:
        return int(e.code), ""


def check_endpoint(cfg: Config, role: str, group: str, options: CheckOptions, listen: str) -> CheckRow:
    ecfg = getattr(cfg.exporters, group)
    name = f"endpoint {group} {listen}"
    if not ecfg.enabled:
        return skip(name, f"exporters.{group}.enabled is false")
    known = registry.load_all()
    collectors = [n for n in enabled_collectors(cfg, role) if known[n].group == group]
    if not collectors:
        return skip(name, f"no {group} collector enabled: the agent serves no {group} endpoint")
    tls = False
    if ecfg.web_config:
        from nodeagent.webconfig import load_web_config

        web = load_web_config(ecfg.web_config)
        if web.tls_server_config is not None:
            tls = True
            if web.tls_server_config.client_auth_type in _CLIENT_CERT_MODES:
                return skip(name, "TLS with client certificates: not checked (nodeagent check has no client cert)")
    url = loopback_url(listen, tls, ecfg.metrics_path)
    start_hint = f"`systemctl start {unit_name(role)}`"
    try:
        status, body = _fetch(url, tls, options.http_timeout)
    except (OSError, urllib.error.URLError) as e:
        reason = getattr(e, "reason", e)
        return fail(name, f"not answering at {url}: {reason}", start_hint)
    if status == 401:
        return warn(name, f"{url} answers 401 (basic auth): its families are not verified",
                    "check it with Prometheus' credentials")
    if status != 200:
        return fail(name, f"{url} answered HTTP {status}", f"`journalctl -u {unit_name(role)}`")
    present = exposed_families(body)
    wanted = expected_families(group, collectors)
    missing = [f for f in wanted if f not in present]
    if missing:
        return fail(name, f"{url} answers without {', '.join(missing)}",
                    f"see the collector rows below and `nodeagent --role {role} --once`")
    return ok(name, f"{url} serves {', '.join(wanted)} ({len(present)} names)")


def service_checks(cfg: Config, role: str, host: Host, options: CheckOptions, systemd_running: bool) -> list[CheckRow]:
    unit = unit_name(role)
    rows = [timed(f"unit {unit}", lambda: check_unit(role, host, options, systemd_running))]
    for group in ROLE_TABLE[role].exporters:
        for listen in getattr(cfg.exporters, group).addresses:
            rows.append(timed(f"endpoint {group} {listen}", partial(check_endpoint, cfg, role, group, options, listen)))
    return rows
