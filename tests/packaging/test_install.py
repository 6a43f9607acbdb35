"""`nodeagent install` / `nodeagent uninstall` (nodeagent.install), run into
a temporary root. Without systemd running, the real `systemctl --root`
enables units; the live path (daemon-reload, start, restart) is checked with
a recording fake systemctl."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from pkgtools import REPO, SYSTEMD

from nodeagent.install import (
    LEGACY_MANIFEST,
    MANIFEST,
    WRITTEN_MARK,
    default_config_text,
    install,
    main,
    uninstall,
)

SYSTEMCTL = shutil.which("systemctl") or "/usr/bin/systemctl"
needs_systemctl = pytest.mark.skipif(not os.path.exists(SYSTEMCTL), reason="systemctl not installed")
GOOD_CONFIG = "log:\n  level: debug\n"


def tree(root: Path) -> dict[str, str]:
    """Every file and link under root with its content hash or target."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return out


def run_install(root: Path, role: str = "compute", config: Path | None = None, **kw: object) -> tuple[int, str]:
    out = io.StringIO()
    kw.setdefault("systemctl", SYSTEMCTL)
    kw.setdefault("systemd_running", False)
    kw.setdefault("exec_path", "/usr/bin/nodeagent")
    rc = install(role, str(config) if config else None, root=str(root), out=out, **kw)  # type: ignore[arg-type]
    return rc, out.getvalue()


def run_uninstall(root: Path, **kw: object) -> tuple[int, str]:
    out = io.StringIO()
    kw.setdefault("systemctl", SYSTEMCTL)
    kw.setdefault("systemd_running", False)
    rc = uninstall(root=str(root), out=out, **kw)  # type: ignore[arg-type]
    return rc, out.getvalue()


def packaged_root(root: Path) -> Path:
    """A root where the .deb is installed: units in /usr/lib/systemd/system."""
    units = root / "usr/lib/systemd/system"
    for name in ("nodeagent@.service", "nodeagent@compute.service.d/role.conf", "nodeagent@head.service.d/role.conf"):
        (units / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SYSTEMD / name, units / name)
    return root


@needs_systemctl
def test_pip_install_writes_units_and_enables(tmp_path: Path) -> None:
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    root = tmp_path / "root"
    rc, out = run_install(root, "compute", config, exec_path="/opt/venv/bin/nodeagent")
    assert rc == 0, out
    unit = root / "etc/systemd/system/nodeagent@.service"
    text = unit.read_text()
    assert "ExecStart=/opt/venv/bin/nodeagent --role %i " in text
    assert (root / "etc/systemd/system/nodeagent@compute.service.d/role.conf").is_file()
    link = root / "etc/systemd/system/multi-user.target.wants/nodeagent@compute.service"
    assert link.is_symlink() and os.readlink(link) == "/etc/systemd/system/nodeagent@.service"
    assert (root / "etc/nodeagent/config.yaml").read_text() == GOOD_CONFIG
    assert "not started" in out


@needs_systemctl
def test_install_twice_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    root = tmp_path / "root"
    assert run_install(root, "head", config)[0] == 0
    first = tree(root)
    rc, out = run_install(root, "head", config)
    assert rc == 0
    assert tree(root) == first
    assert "wrote" not in out


@needs_systemctl
def test_packaged_units_are_used_not_copied(tmp_path: Path) -> None:
    root = packaged_root(tmp_path / "root")
    rc, out = run_install(root, "login")
    assert rc == 0, out
    assert not (root / "etc/systemd/system/nodeagent@.service").exists()
    link = root / "etc/systemd/system/multi-user.target.wants/nodeagent@login.service"
    assert os.readlink(link) == "/usr/lib/systemd/system/nodeagent@.service"
    # the unit names /etc/nodeagent/config.yaml: the defaults file is written
    assert (root / "etc/nodeagent/config.yaml").read_text() == default_config_text()
    assert "wrote /etc/nodeagent/config.yaml" in out


@needs_systemctl
def test_defaults_file_written_by_install_goes_with_uninstall(tmp_path: Path) -> None:
    root = packaged_root(tmp_path / "root")
    before = tree(root)
    assert run_install(root, "compute")[0] == 0
    assert json.loads((root / MANIFEST).read_text())["config"] == {"created": True}
    assert run_uninstall(root)[0] == 0
    assert tree(root) == before


def test_defaults_file_is_valid_and_all_comments() -> None:
    from nodeagent.config import parse_config

    text = default_config_text()
    parse_config(text, "data/config.yaml")
    assert all(not line or line.startswith("#") for line in text.splitlines())
    # the .deb ships the same file as its default, not in /etc
    install_list = (REPO / "packaging/debian/nodeagent.install").read_text()
    assert "src/nodeagent/data/config.yaml usr/share/nodeagent/" in install_list
    assert " etc/" not in install_list


@needs_systemctl
def test_uninstall_writes_todays_defaults_not_a_copy(tmp_path: Path) -> None:
    """Over the defaults file postinst wrote, install keeps no backup: uninstall
    writes the defaults of the version installed then (an upgrade may have
    changed them), not an older copy."""
    root = packaged_root(tmp_path / "root")
    (root / "etc/nodeagent").mkdir(parents=True)
    (root / "etc/nodeagent/config.yaml").write_text(default_config_text())
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    assert run_install(root, "compute", config)[0] == 0
    assert not (root / "etc/nodeagent/config.yaml.pre-install").exists()
    assert json.loads((root / MANIFEST).read_text())["config"] == {"defaults": True}
    rc, out = run_uninstall(root)
    assert rc == 0, out
    assert (root / "etc/nodeagent/config.yaml").read_text() == default_config_text()
    assert sorted(p.name for p in (root / "etc/nodeagent").iterdir()) == ["config.yaml"]


@needs_systemctl
def test_uninstall_keep_config_leaves_the_config_and_restores_nothing(tmp_path: Path) -> None:
    """The package's removal: an earlier default kept as the backup must not
    come back over the operator's config; the purge removes both."""
    root = packaged_root(tmp_path / "root")
    (root / "etc/nodeagent").mkdir(parents=True)
    (root / "etc/nodeagent/config.yaml").write_text("# an earlier package's default\n")
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    assert run_install(root, "compute", config)[0] == 0
    rc, out = run_uninstall(root, keep_config=True)
    assert rc == 0, out
    assert (root / "etc/nodeagent/config.yaml").read_text() == GOOD_CONFIG
    assert (root / "etc/nodeagent/config.yaml.pre-install").is_file()  # for the purge
    assert not (root / MANIFEST).exists()
    assert not list((root / "etc/systemd/system").rglob("nodeagent@*"))
    assert "kept /etc/nodeagent/config.yaml" in out


@needs_systemctl
def test_switching_role_disables_the_other(tmp_path: Path) -> None:
    root = packaged_root(tmp_path / "root")
    assert run_install(root, "compute")[0] == 0
    rc, out = run_install(root, "head")
    assert rc == 0
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["nodeagent@head.service"]
    assert "disabled nodeagent@compute.service" in out


@needs_systemctl
def test_uninstall_restores_the_tree(tmp_path: Path) -> None:
    root = packaged_root(tmp_path / "root")
    (root / "etc/nodeagent").mkdir(parents=True)
    (root / "etc/nodeagent/config.yaml").write_text("# the package's conffile\n")
    before = tree(root)
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    assert run_install(root, "compute", config)[0] == 0
    assert (root / "etc/nodeagent/config.yaml").read_text() == GOOD_CONFIG
    # a second install with another config keeps the original backup
    config.write_text(GOOD_CONFIG + "collectors:\n  timeout: 3\n")
    assert run_install(root, "compute", config)[0] == 0
    rc, out = run_uninstall(root)
    assert rc == 0, out
    assert tree(root) == before


@needs_systemctl
def test_uninstall_removes_what_a_pip_install_wrote(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    assert run_install(root, "compute", config)[0] == 0
    assert run_uninstall(root)[0] == 0
    assert tree(root) == {}


@needs_systemctl
def test_units_not_written_by_install_are_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    own = root / "etc/systemd/system/nodeagent@.service"
    own.parent.mkdir(parents=True)
    own.write_text((SYSTEMD / "nodeagent@.service").read_text().replace("MemoryMax=1G", "MemoryMax=2G"))
    assert run_install(root, "login")[0] == 0
    assert "MemoryMax=2G" in own.read_text()
    assert run_uninstall(root)[0] == 0
    assert own.is_file()


def test_bad_config_changes_nothing_and_exits_78(tmp_path: Path) -> None:
    root = packaged_root(tmp_path / "root")
    before = tree(root)
    config = tmp_path / "bad.yaml"
    config.write_text("collectors:\n  timeout: -1\n")
    rc, out = run_install(root, "compute", config)
    assert rc == 78
    assert "bad.yaml" in out and "collectors.timeout" in out
    assert tree(root) == before


def test_existing_bad_config_exits_78(tmp_path: Path) -> None:
    root = packaged_root(tmp_path / "root")
    (root / "etc/nodeagent").mkdir(parents=True)
    (root / "etc/nodeagent/config.yaml").write_text("nonsense: [\n")
    rc, out = run_install(root, "compute")
    assert rc == 78, out


def test_unknown_role(tmp_path: Path) -> None:
    assert run_install(tmp_path, "gpu")[0] == 64


def test_role_auto_reads_cfnconfig(tmp_path: Path) -> None:
    root = packaged_root(tmp_path / "root")
    cfn = root / "etc/parallelcluster/cfnconfig"
    cfn.parent.mkdir(parents=True)
    cfn.write_text("stack_name=demo\ncfn_node_type=LoginNode\n")
    fake = tmp_path / "systemctl"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    rc, out = run_install(root, "auto", systemctl=str(fake))
    assert rc == 0, out
    assert "nodeagent@login.service" in out


def test_missing_systemctl_fails_clearly(tmp_path: Path) -> None:
    root = packaged_root(tmp_path / "root")
    rc, out = run_install(root, "login", systemctl=str(tmp_path / "no-systemctl"))
    assert rc == 1
    assert "not found" in out


@pytest.fixture
def live_systemctl(tmp_path: Path) -> tuple[Path, Path]:
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n[ "$FAIL_ON" != "" ] && [ "$1" = "$FAIL_ON" ] && exit 1\nexit 0\n'
    )
    fake.chmod(0o755)
    return fake, calls


def test_live_systemd_reloads_enables_and_restarts_on_change(
    tmp_path: Path, live_systemctl: tuple[Path, Path]
) -> None:
    fake, calls = live_systemctl
    root = tmp_path / "root"
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    kw = {"systemctl": str(fake), "systemd_running": True}
    assert run_install(root, "compute", config, **kw)[0] == 0
    assert calls.read_text().splitlines() == [
        "daemon-reload", "enable nodeagent@compute.service", "restart nodeagent@compute.service"
    ]
    calls.unlink()
    assert run_install(root, "compute", config, **kw)[0] == 0
    # nothing changed: no reload, no restart; start is a no-op when running
    assert calls.read_text().splitlines() == ["enable nodeagent@compute.service", "start nodeagent@compute.service"]
    calls.unlink()
    config.write_text(GOOD_CONFIG + "collectors:\n  timeout: 3\n")
    assert run_install(root, "compute", config, **kw)[0] == 0
    assert calls.read_text().splitlines() == [
        "daemon-reload", "enable nodeagent@compute.service", "restart nodeagent@compute.service"
    ]


def test_live_systemctl_failure_is_reported(
    tmp_path: Path, live_systemctl: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = live_systemctl
    monkeypatch.setenv("FAIL_ON", "enable")
    rc, out = run_install(packaged_root(tmp_path / "root"), "head", systemctl=str(fake), systemd_running=True)
    assert rc == 1
    assert "enable nodeagent@head.service" in out and "failed" in out


def test_manifest_records_what_install_did(tmp_path: Path, live_systemctl: tuple[Path, Path]) -> None:
    fake, _ = live_systemctl
    root = tmp_path / "root"
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    assert run_install(root, "head", config, systemctl=str(fake))[0] == 0
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["role"] == "head"
    assert manifest["config"] == {"created": True}
    assert "etc/systemd/system/nodeagent@.service" in manifest["units"]


def test_manifest_is_not_where_the_service_user_writes() -> None:
    """root acts on the record at uninstall: it must not live in the unit's
    writable state directory (StateDirectory=, ReadWritePaths=, ...) nor the
    service user's home."""
    unit = (SYSTEMD / "nodeagent@.service").read_text()
    writable = {"/var/lib/nodeagent"}  # the user's home (useradd --home-dir)
    bases = {"StateDirectory": "/var/lib", "CacheDirectory": "/var/cache", "LogsDirectory": "/var/log",
             "RuntimeDirectory": "/run", "ConfigurationDirectory": "/etc"}
    for line in unit.splitlines():
        key, _, value = line.partition("=")
        if key in bases:
            writable.update(f"{bases[key]}/{v}" for v in value.split())
        elif key == "ReadWritePaths":
            writable.update(v.lstrip("-") for v in value.split())
    manifest = "/" + MANIFEST
    for d in writable:
        assert not manifest.startswith(d.rstrip("/") + "/"), (manifest, d)


@pytest.mark.parametrize("where", [MANIFEST, LEGACY_MANIFEST])
def test_uninstall_acts_only_on_its_own_paths(tmp_path: Path, live_systemctl: tuple[Path, Path], where: str) -> None:
    """A record naming other paths (a service user rewriting it) moves and
    removes nothing outside the config and the units install writes."""
    fake, _ = live_systemctl
    root = packaged_root(tmp_path / "root")
    victim = tmp_path / "victim"
    victim.write_text(WRITTEN_MARK + "precious\n")  # even with install's mark
    (root / "etc/nodeagent").mkdir(parents=True)
    inside = root / "etc/important.conf"
    inside.write_text(WRITTEN_MARK + "keep me\n")
    (root / "etc/nodeagent/config.yaml").write_text(GOOD_CONFIG)
    record = root / where
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({
        "config": {"backup": "../victim"},
        "units": ["../victim", "etc/important.conf", "etc/systemd/system/../../important.conf"],
        "role": "compute",
    }))
    before = tree(root)
    rc, out = run_uninstall(root, systemctl=str(fake))
    assert rc == 0, out
    assert victim.read_text() == WRITTEN_MARK + "precious\n"
    assert inside.read_text() == WRITTEN_MARK + "keep me\n"
    assert (root / "etc/nodeagent/config.yaml").read_text() == GOOD_CONFIG
    del before[where]
    assert tree(root) == before  # only the record went


def test_legacy_manifest_is_migrated(tmp_path: Path, live_systemctl: tuple[Path, Path]) -> None:
    """A record an earlier version kept in /var/lib/nodeagent still undoes its install."""
    fake, _ = live_systemctl
    root = packaged_root(tmp_path / "root")
    (root / "etc/nodeagent").mkdir(parents=True)
    (root / "etc/nodeagent/config.yaml").write_text("# the package's conffile\n")
    before = tree(root)
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)
    assert run_install(root, "compute", config, systemctl=str(fake))[0] == 0
    # as the earlier version left it
    (root / LEGACY_MANIFEST).parent.mkdir(parents=True)
    (root / MANIFEST).rename(root / LEGACY_MANIFEST)
    assert run_install(root, "compute", config, systemctl=str(fake))[0] == 0
    assert not (root / LEGACY_MANIFEST).exists()
    assert json.loads((root / MANIFEST).read_text())["config"] == {"backup": "etc/nodeagent/config.yaml.pre-install"}
    (root / MANIFEST).rename(root / LEGACY_MANIFEST)
    assert run_uninstall(root, systemctl=str(fake))[0] == 0
    assert tree(root) == before


def test_legacy_manifest_through_a_link_is_ignored(tmp_path: Path, live_systemctl: tuple[Path, Path]) -> None:
    fake, _ = live_systemctl
    root = packaged_root(tmp_path / "root")
    (root / "etc/nodeagent").mkdir(parents=True)
    (root / "etc/nodeagent/config.yaml").write_text(GOOD_CONFIG)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"config": {"created": True}}))
    (root / LEGACY_MANIFEST).parent.mkdir(parents=True)
    (root / LEGACY_MANIFEST).symlink_to(elsewhere)
    assert run_uninstall(root, systemctl=str(fake))[0] == 0
    assert (root / "etc/nodeagent/config.yaml").read_text() == GOOD_CONFIG  # not "created" by install
    assert elsewhere.is_file() and not (root / LEGACY_MANIFEST).is_symlink()


def test_files_are_never_chmodded_by_path(
    tmp_path: Path, live_systemctl: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Modes are set on the open file (fchmod): a path could be swapped for a link."""
    fake, _ = live_systemctl
    config = tmp_path / "in.yaml"
    config.write_text(GOOD_CONFIG)

    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"chmod by path: {args}")

    monkeypatch.setattr(os, "chmod", no_chmod)
    rc, out = run_install(tmp_path / "root", "compute", config, systemctl=str(fake))
    assert rc == 0, out
    assert (tmp_path / "root" / MANIFEST).stat().st_mode & 0o777 == 0o644


def test_module_main_for_maintainer_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        main(["install"])  # --role is required
    seen: list[object] = []
    monkeypatch.setattr("nodeagent.install.uninstall", lambda **kw: seen.append(kw) or 0)
    assert main(["uninstall"]) == 0 and seen == [{}]
    assert main(["uninstall", "--keep-config"]) == 0 and seen == [{}, {"keep_config": True}]


def test_prerm_calls_the_module() -> None:
    prerm = (REPO / "packaging/debian/nodeagent.prerm").read_text()
    assert "from nodeagent.install import main" in prerm and 'main(["uninstall", "--keep-config"])' in prerm


def test_postrm_purge_removes_the_install_record() -> None:
    postrm = (REPO / "packaging/debian/nodeagent.postrm").read_text()
    assert f"/{MANIFEST}" in postrm and "rm -rf /var/lib/nodeagent" in postrm  # the record, the legacy one
