"""`nodeagent install --role ROLE [--config FILE]` and `nodeagent uninstall`.

install writes what a node needs to run the agent under systemd and enables
it, idempotently (a second run with the same arguments changes nothing):

- the config: FILE is validated, then copied to /etc/nodeagent/config.yaml
  (a file it replaces is kept as config.yaml.pre-install); without --config
  the config already there is validated, and where there is none the
  defaults file (data/config.yaml, all comments) is written, as the unit
  names that path. The file is the operator's: the .deb ships its defaults in
  /usr/share/nodeagent/config.yaml, not as a dpkg conffile, so a package
  upgrade never prompts about it;
- the units: the .deb ships nodeagent@.service and its per-role drop-ins in
  /usr/lib/systemd/system; where no such unit exists (a pip install) they are
  written to /etc/systemd/system from the copies in the package, with
  ExecStart pointing at this installation's `nodeagent`;
- enablement: nodeagent@ROLE.service is enabled (and started, or restarted when
  its config or unit changed, when systemd runs), and the other roles'
  instances are disabled: a node runs one role.

What install did is recorded in /etc/nodeagent/.install.json (root's: the
service user writes /var/lib/nodeagent, so nothing root acts on lives
there), so that uninstall reverses it: it disables and stops every instance,
removes the units install wrote (those carrying its mark) and restores (or
removes) the config; with keep_config (the .deb's prerm) the config is left
as it is, as dpkg keeps configuration on removal: the purge removes it.
uninstall only ever touches the fixed paths below; the record says which of
them to act on, never which paths. A record an earlier version kept in
/var/lib/nodeagent is read once, as cautiously, then removed.

`root` points every path at another tree (tests, image builds); systemd is
then driven with `systemctl --root`, which enables without starting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from nodeagent.inputs import InputError, read_text
from nodeagent.roles import INSTALL_RECORD, ROLE_CHOICES, ROLES, role_help

UNIT_TEMPLATE = "nodeagent@.service"
# unit files in the package's data directory, relative to data/systemd
UNIT_FILES = (
    UNIT_TEMPLATE,
    "nodeagent@compute.service.d/role.conf",
    "nodeagent@head.service.d/role.conf",
)
# where systemd looks for system units, most specific first
UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
LOCAL_UNIT_DIR = "etc/systemd/system"
CONFIG_FILE = "etc/nodeagent/config.yaml"
CONFIG_BACKUP = "etc/nodeagent/config.yaml.pre-install"
MANIFEST = INSTALL_RECORD.lstrip("/")  # what `check` reads for the role
# where earlier versions kept it: a directory the service user owns
LEGACY_MANIFEST = "var/lib/nodeagent/install.json"
PACKAGED_EXEC = "/usr/bin/nodeagent"
WRITTEN_MARK = "# Written by `nodeagent install`; `nodeagent uninstall` removes it.\n"
SERVICE_USER = "nodeagent"

EX_OK = 0
EX_FAILED = 1
EX_USAGE = 64
EX_CONFIG = 78  # the daemon's exit status for a bad config (RestartPreventExitStatus=)

COMMAND_TIMEOUT = 90.0


class InstallError(Exception):
    pass


def instance(role: str) -> str:
    return f"nodeagent@{role}.service"


def default_config_text() -> str:
    """The defaults file: every setting commented out, so the code's defaults
    apply (the .deb's /usr/share/nodeagent/config.yaml is the same file)."""
    return (resources.files("nodeagent") / "data" / "config.yaml").read_text(encoding="utf-8")


def packaged_unit_text(name: str, exec_path: str = PACKAGED_EXEC) -> str:
    """A unit file from the package's data, marked as written by install,
    with ExecStart and ExecReload pointing at exec_path."""
    node = resources.files("nodeagent") / "data" / "systemd"
    for part in name.split("/"):
        node = node / part
    text = node.read_text(encoding="utf-8")
    if exec_path != PACKAGED_EXEC:
        for key in ("ExecStart", "ExecReload"):
            text = text.replace(f"{key}={PACKAGED_EXEC} ", f"{key}={exec_path} ")
    return WRITTEN_MARK + text


def default_exec_path() -> str:
    """The `nodeagent` of this installation: next to the interpreter (a
    virtualenv or /usr/local), else the first on PATH, else the .deb's."""
    beside = Path(sys.executable).with_name("nodeagent")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nodeagent") or PACKAGED_EXEC


@dataclass
class _Session:
    root: Path
    systemctl: str
    systemd_running: bool
    out: TextIO
    verb: str = "install"
    changed: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)

    # ---- paths and files ------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def show(self, p: Path) -> str:
        return "/" + str(p.relative_to(self.root))

    def say(self, message: str) -> None:
        self.out.write(f"nodeagent {self.verb}: {message}\n")

    def write_if_changed(self, p: Path, text: str, mode: int = 0o644) -> bool:
        try:
            if p.read_text(encoding="utf-8") == text:
                return False
        except FileNotFoundError:
            pass
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                os.fchmod(f.fileno(), mode)  # the file mkstemp made, never a path
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.changed = True
        return True

    def load_manifest(self) -> None:
        try:
            data = json.loads(self.path(MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = _read_legacy_manifest(self.path(LEGACY_MANIFEST))
        except (OSError, ValueError) as e:
            raise InstallError(f"cannot read {self.show(self.path(MANIFEST))}: {e}") from None
        data = data if isinstance(data, dict) else {}
        if not isinstance(data.get("config", {}), dict):
            data["config"] = {}
        if not isinstance(data.get("units", []), list):
            data["units"] = []
        self.manifest = data

    def save_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=2, sort_keys=True) + "\n"
        # not `changed`: the manifest is bookkeeping, not something the service reads
        saved = self.changed
        self.write_if_changed(self.path(MANIFEST), text)
        self.changed = saved
        self.remove_legacy_manifest()

    def remove_legacy_manifest(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(LEGACY_MANIFEST).unlink()  # a link is removed, not followed

    # ---- systemd ----------------------------------------------------------
    def systemctl_run(self, *args: str) -> None:
        if not os.path.isfile(self.systemctl):
            raise InstallError(f"{self.systemctl} not found: is this a systemd machine?")
        argv = [self.systemctl]
        if not self.systemd_running:
            argv.append(f"--root={self.root}")
        argv.extend(args)
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise InstallError(f"`{' '.join(argv)}` did not finish in {COMMAND_TIMEOUT:.0f} s") from None
        if r.returncode != 0:
            detail = (r.stderr or r.stdout).strip().splitlines()
            raise InstallError(f"`{' '.join(argv)}` failed (exit {r.returncode}): {' '.join(detail[-3:])}")

    def disable(self, name: str) -> None:
        if self.systemd_running:
            self.systemctl_run("disable", "--now", name)
        else:
            self.systemctl_run("disable", name)

    def enabled_instances(self) -> list[str]:
        """nodeagent@*.service instances enabled in /etc/systemd/system (any target)."""
        found: set[str] = set()
        base = self.path(LOCAL_UNIT_DIR)
        if base.is_dir():
            for wants in base.glob("*.wants"):
                for link in wants.glob("nodeagent@*.service"):
                    found.add(link.name)
        return sorted(found)

    def packaged_unit(self) -> Path | None:
        for d in UNIT_DIRS[1:]:
            p = self.path(d) / UNIT_TEMPLATE
            if p.is_file():
                return p
        return None


def _read_legacy_manifest(p: Path) -> dict[str, Any]:
    """An earlier version's record, from a directory the service user can
    write: only a small regular file owned by us (root), opened without
    following a link or blocking on a FIFO; anything else is ignored."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > 65536:
            return {}
        try:
            data = json.loads(f.read(65536))
        except (OSError, ValueError):
            return {}
    return data if isinstance(data, dict) else {}


def _is_ours(p: Path) -> bool:
    try:
        with p.open(encoding="utf-8") as f:
            return f.readline() == WRITTEN_MARK
    except OSError:
        return False


def _systemd_running(root: Path) -> bool:
    return root == Path("/") and os.path.isdir("/run/systemd/system")


def _resolve_role(role: str, root: Path) -> str:
    if role == "auto":
        from nodeagent.host import Host, Roots
        from nodeagent.roles import RoleError, detect_role

        try:
            return detect_role(Host(Roots(rootfs=str(root))), "/etc/parallelcluster/cfnconfig")
        except RoleError as e:
            raise InstallError(str(e)) from None
    if role not in ROLES:
        raise InstallError(f"unknown role {role!r}; expected {role_help()}")
    return role


def _validate_config(text: str, source: str, role: str) -> str | None:
    """None when the config is valid for the role, else the message naming
    file and key."""
    from nodeagent.config import parse_config, validate_role_collectors
    from nodeagent.settings import ConfigError

    try:
        validate_role_collectors(parse_config(text, source), role)
    except ConfigError as e:
        return str(e)
    return None


def _ensure_user(s: _Session, useradd: str) -> None:
    """The unit runs as `nodeagent`; the .deb creates the user, a pip install
    gets it here. Only on the real root: a tree under `root` is left alone."""
    if s.root != Path("/"):
        return
    try:
        pwd.getpwnam(SERVICE_USER)
        return
    except KeyError:
        pass
    argv = [useradd, "--system", "--user-group", "--home-dir", "/var/lib/nodeagent", "--no-create-home",
            "--shell", "/usr/sbin/nologin", "--comment", "nodeagent monitoring agent", SERVICE_USER]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InstallError(f"cannot create the {SERVICE_USER} user: {e}") from None
    if r.returncode != 0:
        raise InstallError(f"cannot create the {SERVICE_USER} user: {r.stderr.strip()}")
    s.say(f"created system user {SERVICE_USER}")


def _install_config(s: _Session, config_path: str | None, role: str) -> None:
    target = s.path(CONFIG_FILE)
    if config_path is None:
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            # the unit passes --config with this path: it must exist
            s.write_if_changed(target, default_config_text())
            s.manifest.setdefault("config", {}).setdefault("created", True)
            s.say(f"wrote {s.show(target)} (all comments: the role's defaults apply)")
            return
        error = _validate_config(text, s.show(target), role)
        if error:
            raise _ConfigInvalid(error)
        s.say(f"{s.show(target)} is valid")
        return
    try:
        text = read_text(config_path)  # a regular file of UTF-8 text, never a FIFO or a device
    except InputError as e:
        raise _ConfigInvalid(f"{config_path}: {e}") from None
    error = _validate_config(text, os.path.abspath(config_path), role)
    if error:
        raise _ConfigInvalid(error)
    cfg_state = s.manifest.setdefault("config", {})
    if not cfg_state:
        # first time install touches the config: remember how to undo it
        if target.exists():
            current = target.read_text(encoding="utf-8")
            if current == text:
                cfg_state["unchanged"] = True
            elif current == default_config_text():
                # the defaults file (the .deb's postinst wrote it): uninstall
                # writes the defaults of the version installed then, never a
                # copy of an older one
                cfg_state["defaults"] = True
            else:
                backup = s.path(CONFIG_BACKUP)
                shutil.copy2(target, backup)
                cfg_state["backup"] = CONFIG_BACKUP
                s.say(f"kept the previous config as {s.show(backup)}")
        else:
            cfg_state["created"] = True
    if s.write_if_changed(target, text):
        s.say(f"wrote {s.show(target)} from {config_path}")
    else:
        s.say(f"{s.show(target)} already matches {config_path}")


def _install_units(s: _Session, exec_path: str) -> None:
    local = s.path(LOCAL_UNIT_DIR) / UNIT_TEMPLATE
    written: list[str] = s.manifest.setdefault("units", [])
    if local.is_file() and not _is_ours(local):
        s.say(f"using {s.show(local)} (not written by install: left as it is)")
        return
    packaged = s.packaged_unit()
    if packaged is not None:
        # the .deb's units; copies install wrote earlier would shadow them
        for name in UNIT_FILES:
            p = s.path(LOCAL_UNIT_DIR) / name
            if p.is_file() and _is_ours(p):
                _remove_ours(s, p)
        s.say(f"using {s.show(packaged)}")
        return
    for name in UNIT_FILES:
        p = s.path(LOCAL_UNIT_DIR) / name
        if s.write_if_changed(p, packaged_unit_text(name, exec_path)):
            s.say(f"wrote {s.show(p)}")
        rel = f"{LOCAL_UNIT_DIR}/{name}"
        if rel not in written:
            written.append(rel)


def _remove_ours(s: _Session, p: Path) -> None:
    """Remove a unit file install wrote, and its drop-in directory once empty."""
    p.unlink()
    s.changed = True
    s.say(f"removed {s.show(p)}")
    if p.parent != s.path(LOCAL_UNIT_DIR):
        with contextlib.suppress(OSError):
            p.parent.rmdir()


class _ConfigInvalid(Exception):
    pass


def install(
    role: str,
    config_path: str | None = None,
    *,
    root: str = "/",
    systemctl: str = "/usr/bin/systemctl",
    systemd_running: bool | None = None,
    start: bool = True,
    exec_path: str | None = None,
    useradd: str = "/usr/sbin/useradd",
    out: TextIO | None = None,
) -> int:
    """Install and enable nodeagent@ROLE.service. Returns an exit status:
    0 done, 1 a step failed, 64 bad role, 78 the config is invalid (nothing
    was changed then)."""
    r = Path(root).resolve()
    s = _Session(
        root=r,
        systemctl=systemctl,
        systemd_running=_systemd_running(r) if systemd_running is None else systemd_running,
        out=out or sys.stdout,
    )
    try:
        role = _resolve_role(role, r)
    except InstallError as e:
        s.say(str(e))
        return EX_USAGE
    try:
        s.load_manifest()
        _install_config(s, config_path, role)
        _ensure_user(s, useradd)
        _install_units(s, exec_path or default_exec_path())
        s.manifest["role"] = role
        s.save_manifest()
        if s.changed and s.systemd_running:
            s.systemctl_run("daemon-reload")
        for other in s.enabled_instances():
            if other != instance(role):
                s.disable(other)
                s.say(f"disabled {other} (a node runs one role)")
        s.systemctl_run("enable", instance(role))
        if not s.systemd_running:
            s.say(f"enabled {instance(role)}; systemd is not running here, so it was not started")
        elif not start:
            s.say(f"enabled {instance(role)}")
        elif s.changed:
            s.systemctl_run("restart", instance(role))
            s.say(f"enabled and (re)started {instance(role)}")
        else:
            s.systemctl_run("start", instance(role))
            s.say(f"{instance(role)} enabled and running; nothing changed")
    except _ConfigInvalid as e:
        s.say(f"invalid config, nothing changed: {e}")
        return EX_CONFIG
    except (InstallError, OSError) as e:
        s.say(f"failed: {e}")
        return EX_FAILED
    return EX_OK


def uninstall(
    *,
    root: str = "/",
    systemctl: str = "/usr/bin/systemctl",
    systemd_running: bool | None = None,
    keep_config: bool = False,
    out: TextIO | None = None,
) -> int:
    """Reverse install: disable and stop every nodeagent@ instance, remove the
    units install wrote and restore the config it replaced (with keep_config,
    leave the config and its backup as they are). 0 done, 1 failed."""
    r = Path(root).resolve()
    s = _Session(
        root=r,
        systemctl=systemctl,
        systemd_running=_systemd_running(r) if systemd_running is None else systemd_running,
        out=out or sys.stdout,
        verb="uninstall",
    )
    try:
        s.load_manifest()
        have_systemctl = os.path.isfile(systemctl)
        for name in s.enabled_instances():
            if have_systemctl:
                s.disable(name)
            else:
                # no systemd at all (a container): the links are all there is
                for link in s.path(LOCAL_UNIT_DIR).glob(f"*.wants/{name}"):
                    link.unlink()
            s.say(f"disabled {name}")
        # the unit files install can write, wherever the record says: only
        # those carrying install's mark are removed
        for name in UNIT_FILES:
            p = s.path(LOCAL_UNIT_DIR) / name
            if p.is_file() and _is_ours(p):
                _remove_ours(s, p)
        cfg_state = s.manifest.get("config", {})
        target = s.path(CONFIG_FILE)
        if keep_config:
            # the package's removal: configuration stays until the purge, and
            # nothing older (a backup of an earlier default) comes back
            if target.is_file():
                s.say(f"kept {s.show(target)}")
        elif cfg_state.get("backup") == CONFIG_BACKUP:
            backup = s.path(CONFIG_BACKUP)
            if backup.is_file():
                os.replace(backup, target)
                s.say(f"restored {s.show(target)} from {s.show(backup)}")
        elif cfg_state.get("defaults") is True:
            s.write_if_changed(target, default_config_text())
            s.say(f"wrote the defaults to {s.show(target)}")
        elif cfg_state.get("created") is True and target.is_file():
            target.unlink()
            s.say(f"removed {s.show(target)}")
        with contextlib.suppress(FileNotFoundError):
            s.path(MANIFEST).unlink()
        s.remove_legacy_manifest()
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # when install made it and left nothing else there
        if s.changed and s.systemd_running:
            s.systemctl_run("daemon-reload")
    except (InstallError, OSError) as e:
        s.say(f"failed: {e}")
        return EX_FAILED
    return EX_OK


def main(argv: Sequence[str] | None = None) -> int:
    """`python3 -m nodeagent.install uninstall`: what the .deb's prerm runs,
    independent of the CLI."""
    parser = argparse.ArgumentParser(prog="python3 -m nodeagent.install")
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install")
    p_install.add_argument("--role", required=True, choices=ROLE_CHOICES)
    p_install.add_argument("--config", default=None)
    p_install.add_argument("--no-start", action="store_true")
    p_uninstall = sub.add_parser("uninstall")
    p_uninstall.add_argument("--keep-config", action="store_true",
                             help="leave /etc/nodeagent/config.yaml as it is (the package's removal)")
    args = parser.parse_args(argv)
    if args.command == "install":
        return install(args.role, args.config, start=not args.no_start)
    if args.keep_config:
        return uninstall(keep_config=True)
    return uninstall()


if __name__ == "__main__":
    raise SystemExit(main())
