"""The agent's lifecycle: build collectors, groups and exporters for a role,
serve until SIGTERM/SIGINT, reload on SIGHUP, push to sinks on their
interval, and talk to systemd (READY=1 once ports are bound, WATCHDOG=1 while
the serving threads live, RELOADING=1 ... READY=1 around a reload).

A reload never closes a port the new config still serves: the new exporters
take over the running servers of the same addresses (see exporter.py), and
only addresses the new config drops are closed. Each reload's verdict goes to
a status file that `nodeagent reload` (the unit's ExecReload) waits on."""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

import structlog
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily

from nodeagent import __version__, registry, reloadctl
from nodeagent.catalogue import agent as agent_cat
from nodeagent.config import Config, collector_options, enabled_collectors, load_config, validate_role_collectors
from nodeagent.exporter import Exporter, ListenKey, listen_addresses, listen_key
from nodeagent.exposition import render
from nodeagent.flags import FlagSettings
from nodeagent.host import Host, Roots
from nodeagent.httpserver import HTTPServer, ListenError
from nodeagent.log import setup_logging
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext
from nodeagent.roles import ROLE_CHOICES, ROLE_TABLE, ChosenRole, RoleError, choose_role, role_help
from nodeagent.settings import ConfigError, one_line
from nodeagent.sinks import Sink, build_sinks
from nodeagent.snapshot import GroupCollection
from nodeagent.supervise import Supervisor
from nodeagent.webconfig import WebConfig, load_web_config, ssl_context

log = structlog.get_logger("nodeagent.daemon")

EX_CONFIG = 78


def host_from_config(cfg: Config) -> Host:
    p = cfg.paths
    return Host(Roots(procfs=p.procfs, sysfs=p.sysfs, rootfs=p.rootfs, debugfs=p.debugfs, etc=p.etc, dev=p.dev))


def choose_config_role(cfg: Config, role_arg: str | None, host: Host) -> ChosenRole:
    """The role to run (roles.choose_role: --role, the config's role, the
    install record, cfnconfig), with the config checked against it:
    RoleError when no role is found, ConfigError naming a key that this
    role cannot honour."""
    if role_arg is not None and role_arg not in ROLE_CHOICES:
        raise RoleError(f"unknown role {role_arg!r}; expected {role_help()}")
    chosen = choose_role(role_arg, cfg.role, cfg.source, host, cfg.paths.cfnconfig)
    validate_role_collectors(cfg, chosen.role)
    return chosen


def resolve_role(cfg: Config, role_arg: str | None, host: Host) -> str:
    return choose_config_role(cfg, role_arg, host).role


def build_collectors(cfg: Config, role: str, host: Host, groups: tuple[str, ...]) -> dict[str, list[Collector]]:
    """Instantiate the role's enabled collectors, by group. Options are
    validated here too (ConfigError names the key)."""
    validate_role_collectors(cfg, role)
    known = registry.load_all()
    by_group: dict[str, list[Collector]] = {g: [] for g in groups}
    context = CollectorContext(config=cfg, role=role)
    built: list[Collector] = []
    try:
        for name in enabled_collectors(cfg, role):
            cls = known[name]
            if cls.group not in by_group:
                continue  # a default of another role's group (enabled ones were validated above)
            collector = cls(host, collector_options(cfg, name), context)
            built.append(collector)
            by_group[cls.group].append(collector)
    except BaseException:
        for c in built:
            c.close()
        raise
    return by_group


@dataclass
class Agent:
    cfg: Config
    role: str
    host: Host
    groups: dict[str, GroupCollection] = field(default_factory=dict)
    exporters: list[Exporter] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)
    # per served group: its web config and TLS context, loaded while building so
    # that a bad certificate rejects a reload before anything is stopped
    web: dict[str, tuple[WebConfig | None, ssl.SSLContext | None]] = field(default_factory=dict)

    @classmethod
    def build(cls, cfg: Config, role: str, with_sinks: bool = True) -> Agent:
        host = host_from_config(cfg)
        spec = ROLE_TABLE[role]
        agent = cls(cfg, role, host)
        try:
            by_group = build_collectors(cfg, role, host, spec.groups)
            for group, collectors in by_group.items():
                exporter_cfg = getattr(cfg.exporters, group)
                supervisor = Supervisor(group, collectors, cfg.collectors.timeout)
                agent.groups[group] = GroupCollection(
                    group, supervisor, exporter_cfg.min_interval, extra=_build_info(role)
                )
            for group in spec.exporters:
                path = getattr(cfg.exporters, group).web_config
                try:
                    web = load_web_config(path) if path else None
                    tls = ssl_context(web.tls_server_config, path or "") if web and web.tls_server_config else None
                except ConfigError as e:  # the web config's own error, under the key that names it
                    raise ConfigError(cfg.source, f"exporters.{group}.web_config", str(e)) from None
                agent.web[group] = (web, tls)
            if with_sinks:
                agent.sinks = build_sinks(cfg, role, host)
        except BaseException:
            agent.close()
            raise
        return agent

    def served(self) -> list[str]:
        """The groups this agent serves over HTTP: enabled, with collectors."""
        return [group for group in ROLE_TABLE[self.role].exporters
                if getattr(self.cfg.exporters, group).enabled and self.groups[group].supervisor.collectors]

    def listen_keys(self) -> set[ListenKey]:
        return {listen_key(a) for g in self.served() for a in listen_addresses(getattr(self.cfg.exporters, g).listen)}

    def start_exporters(self, previous: list[Exporter] | None = None) -> set[HTTPServer]:
        """Serve. Running servers of `previous` (a reload's old exporters) on
        an address this config also serves are taken over, and returned; the
        caller stops the rest. Every new socket is bound before anything
        changes for scrapers: a ListenError leaves `previous` as it was."""
        available = {key: server for e in previous or [] for key, server in e.servers.items() if server.alive()}
        own = _own_metrics_registry()
        taken: set[HTTPServer] = set()
        try:
            for group in self.served():
                ecfg = getattr(self.cfg.exporters, group)
                web, tls = self.web[group]
                keys = [listen_key(a) for a in listen_addresses(ecfg.listen)]
                adopt = {k: available.pop(k) for k in keys if k in available}
                # The agent's own process metrics live in their own registry and
                # are served beside the host metrics, as node_exporter does, with
                # the sinks' health (spool depth, datums sent and dropped).
                extra = (lambda: generate_latest(own) + self.sink_metrics()) if group == "host" else None
                self.exporters.append(Exporter(group, ecfg.addresses, self.groups[group], web, tls, extra,
                                               ecfg.metrics_path, adopt=adopt))
                taken.update(adopt.values())
            for exporter in self.exporters:
                exporter.start()
        except BaseException:
            self.stop_exporters(keep=taken)
            raise
        return taken

    def stop_exporters(self, keep: set[HTTPServer] | None = None) -> None:
        for e in self.exporters:
            e.stop(keep or set())
        self.exporters.clear()

    def sink_metrics(self) -> bytes:
        families: list[MetricFamily] = []
        for sink in self.sinks:
            try:
                families.extend(sink.own_metrics())
            except Exception as e:
                log.warning("sink_metrics_failed", sink=type(sink).__name__, error=str(e))
        return render(families)

    def publish(self, now: float) -> None:
        if not self.sinks:
            return
        families: list[MetricFamily] = []
        for group in ROLE_TABLE[self.role].cloudwatch:
            if group in self.groups and self.groups[group].supervisor.collectors:
                try:
                    families.extend(self.groups[group].get().families)
                except Exception as e:  # publish what the other groups have
                    log.error("publish_collect_failed", group=group, error=f"{type(e).__name__}: {e}")
        for sink in self.sinks:
            try:
                sink.publish(families, now)
            except Exception as e:  # a sink never takes the daemon down
                log.error("sink_publish_failed", sink=type(sink).__name__, error=f"{type(e).__name__}: {e}")

    def alive(self) -> bool:
        return all(e.alive() for e in self.exporters)

    def close(self) -> None:
        self.stop_exporters()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:
                log.warning("sink_close_failed", sink=type(sink).__name__, error=str(e))
        for g in self.groups.values():
            g.close()


def _build_info(role: str) -> Callable[[], list[MetricFamily]]:
    def families() -> list[MetricFamily]:
        fam = agent_cat.AGENT_BUILD_INFO.family()
        fam.add((__version__, role), 1)
        return [fam]

    return families


class _AddressSpaceLimit:
    """process_virtual_memory_max_bytes, which node_exporter serves for itself
    and Node Exporter Full graphs, but prometheus_client's ProcessCollector lacks."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        limit = float(2**64 - 1) if soft == resource.RLIM_INFINITY else float(soft)
        yield GaugeMetricFamily(
            "process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", value=limit
        )


def _own_metrics_registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=reg)
    reg.register(_AddressSpaceLimit())
    return reg


def sd_notify(message: str) -> bool:
    """Send a message to systemd's notify socket, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode())
        return True
    except OSError as e:
        log.warning("sd_notify_failed", error=str(e))
        return False


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1e6 / 2


class _PreparedReload:
    """A reload being prepared on its own thread: reading the config and
    building the new agent may block (a slow name lookup, a hung network
    filesystem), and neither SIGTERM nor the watchdog pings may wait for it.
    The main loop swaps the agents once it is done; a stopping daemon
    abandons it, and whatever it built is closed."""

    def __init__(self, daemon: Daemon, keeping: str) -> None:
        self._daemon = daemon
        self._keeping = keeping
        self._lock = threading.Lock()
        self._abandoned = False
        self.result: tuple[Agent, Config, str] | None = None
        self.error = ""  # why it was rejected
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        built: tuple[Agent, Config, str] | None = None
        try:
            cfg, role = self._daemon.load()
            built = (Agent.build(cfg, role), cfg, role)
        except (ConfigError, RoleError) as e:
            self.error = str(e)
            log.error("reload_rejected", error=self.error, keeping=self._keeping)
        except Exception as e:  # a bad reload never takes the running agent down
            self.error = one_line(f"{type(e).__name__}: {e}", 500)
            log.error("reload_rejected", error=self.error, keeping=self._keeping)
        finally:
            with self._lock:
                abandoned = self._abandoned
                if not abandoned:
                    self.result = built
            self.done.set()
            self._daemon.wake()
        if abandoned and built is not None:
            built[0].close()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            built, self.result = self.result, None
        if built is not None:
            built[0].close()


class Daemon:
    def __init__(self, config_path: str | None, role_arg: str | None, log_level: str | None = None,
                 flags: FlagSettings | None = None) -> None:
        self.config_path = config_path
        self.role_arg = role_arg
        self.flags = flags  # node_exporter's and dcgm-exporter's flags: over the file on every reload
        self.log_level = log_level  # from the command line: wins over the config on reload
        # Signal handlers only set these flags and write a byte to a pipe that
        # the main loop waits on: a handler that took a lock (threading.Event)
        # deadlocks when the signal lands while the main thread holds that lock.
        self._stop_requested = False
        self._reload_requested = False
        # (the pipe lives as long as the process: a reload thread abandoned at
        # stop may still write to it)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.agent: Agent | None = None
        self._status = reloadctl.ReloadStatus(os.getpid())

    def load(self) -> tuple[Config, str]:
        cfg = load_config(self.config_path, self.flags)
        role = resolve_role(cfg, self.role_arg, host_from_config(cfg))
        return cfg, role

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_requested = True
        self.wake()

    def wake(self) -> None:
        """End the main loop's wait (from a signal handler or any thread)."""
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(self._wake_w, b"\0")

    def _sleep(self, timeout: float) -> None:
        """Wait for a wake-up or the timeout, then empty the pipe."""
        select.select([self._wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def run(self, cfg: Config, role: str) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        # A signal may be delivered to any thread, and Python runs its handler
        # only once the main thread runs again: the byte written here ends the
        # main loop's wait, so the handler runs at once rather than after it.
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self.agent = Agent.build(cfg, role)
        try:
            self.agent.start_exporters()
        except OSError as e:  # ListenError: the message names the address and port
            log.error("listen_failed", error=str(e), listen=getattr(e, "listen", None))
            self.agent.close()
            return 1
        log.info("agent_started", version=__version__, role=role, config=cfg.source,
                 collectors=sum(len(g.supervisor.collectors) for g in self.agent.groups.values()))
        self._status = reloadctl.ReloadStatus(os.getpid())
        self._write_status()
        sd_notify(f"READY=1\nSTATUS=serving role {role}")
        watchdog = watchdog_interval()
        next_publish = time.monotonic() + min(5.0, cfg.cloudwatch.interval)
        next_watchdog = time.monotonic()
        reload: _PreparedReload | None = None
        while not self._stop_requested:
            now = time.monotonic()
            if reload is not None and reload.done.is_set():
                error = reload.error
                if reload.result is not None:
                    error = self._swap(*reload.result) or ""
                    next_publish = now + min(5.0, self.agent.cfg.cloudwatch.interval)
                self._reload_finished(error)
                reload = None
            if reload is None and self._reload_requested:
                # SIGHUPs that arrive while one is prepared make one more reload after it
                self._reload_requested = False
                self._reload_started()
                reload = _PreparedReload(self, self.agent.cfg.source)
            if self.agent.sinks and now >= next_publish:
                self.agent.publish(time.time())
                next_publish = now + self.agent.cfg.cloudwatch.interval
            if watchdog is not None and now >= next_watchdog:
                if self.agent.alive():
                    sd_notify("WATCHDOG=1")
                else:
                    log.error("watchdog_withheld", reason="an exporter thread died")
                next_watchdog = now + watchdog
            wait_until = [next_publish] if self.agent.sinks else []
            if watchdog is not None:
                wait_until.append(next_watchdog)
            timeout = max(0.05, min(wait_until) - time.monotonic()) if wait_until else 3600.0
            self._sleep(timeout)
        sd_notify("STOPPING=1")
        log.info("agent_stopping")
        if reload is not None:
            reload.abandon()
        if self.agent.sinks:
            for sink in self.agent.sinks:
                try:
                    sink.flush(1.0)
                except Exception as e:
                    log.warning("sink_flush_failed", error=str(e))
        self.agent.close()
        self._remove_status()
        log.info("agent_stopped")
        return 0

    # ---- reloads ----

    def _reload_started(self) -> None:
        self._status.started += 1
        self._write_status()
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}\nSTATUS=reloading")

    def _reload_finished(self, error: str) -> None:
        """Record the verdict (for `nodeagent reload`) and tell systemd the
        reload is over, whichever way it went."""
        assert self.agent is not None
        self._status.finished += 1
        self._status.result = "rejected" if error else "applied"
        self._status.error = error
        self._write_status()
        serving = f"serving role {self.agent.role}"
        sd_notify(f"READY=1\nSTATUS={serving}" + (f" (last reload rejected: {one_line(error, 200)})" if error else ""))

    def _write_status(self) -> None:
        path = reloadctl.status_path()
        if path is None:
            return
        try:
            reloadctl.write_status(path, self._status)
        except OSError as e:  # `nodeagent reload` then reports no verdict; serving goes on
            log.warning("reload_status_failed", path=path, error=e.strerror or str(e))

    def _remove_status(self) -> None:
        path = reloadctl.status_path()
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _swap(self, new: Agent, cfg: Config, role: str) -> str | None:
        """Serve from the agent a reload built; None, or why it was rejected
        (a port that cannot be bound: the old agent goes on)."""
        assert self.agent is not None
        old = self.agent
        # an address that changed host but kept its port (127.0.0.1:9100 to
        # :9100) needs the old socket closed first: the one case with a window
        displaced = self._free_ports_for(old, new)
        try:
            taken = new.start_exporters(previous=old.exporters)
        except Exception as e:
            error = str(e) if isinstance(e, ListenError) else one_line(f"{type(e).__name__}: {e}", 500)
            log.error("reload_rejected", error=error, keeping=old.cfg.source)
            new.close()
            # a ListenError changed nothing, unless an old socket was closed to
            # free its port; anything else may have left a server half handed
            # over: serve the old config again on fresh sockets
            if displaced or not isinstance(e, ListenError):
                old.stop_exporters()
                try:
                    old.start_exporters()
                except OSError as e2:
                    # the watchdog pings stop (no exporter alive): systemd restarts us
                    log.error("exporters_down", error=str(e2))
            return error
        old.stop_exporters(keep=taken)
        old.close()
        self.agent = new
        if self.log_level is None:
            setup_logging(cfg.log.level, cfg.log.format)
        log.info("config_reloaded", config=cfg.source, role=role, kept=len(taken))
        return None

    @staticmethod
    def _free_ports_for(old: Agent, new: Agent) -> bool:
        """Stop the old servers whose port a different address of the new
        config needs; whether there were any."""
        wanted = new.listen_keys()
        ports = {port for _, port in wanted if port}
        displaced = False
        for exporter in old.exporters:
            for key, server in exporter.servers.items():
                if key not in wanted and server.port in ports:
                    server.stop()
                    displaced = True
        return displaced
