"""The .deb under a real systemd: a Debian 12 root booted with systemd as
PID 1 (systemd-nspawn, no network but loopback; nspawn.py), the package
installed there offline with dpkg and enabled with `nodeagent install --role
compute`. What only the service manager shows: Type=notify readiness, that
`systemctl reload` waits for the daemon's verdict and fails when the config
was rejected, that scrapes through reloads never fail, journald priorities
per log level, exit 78 without a restart loop, the watchdog, the timex
collector inside the unit's system call filter, and an upgrade with no
terminal.

Slow: the root is made once with debootstrap (about 1-2 minutes, cached in
out/chroot-cache/), the .deb is built once per session (30-45 s), then
booting takes about 2 s and the tests about 40 s. Needs root,
systemd-nspawn (package systemd-container) and debootstrap: scripts/dev.sh
test installs them, so on CI a missing tool is a failure, not a skip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from nspawn import Container, missing_tools
from pkgtools import CLEAN_ENV, REPO

from nodeagent import __version__ as VERSION

pytestmark = [
    pytest.mark.slow,
    pytest.mark.systemd,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd-nspawn)"),
    # the first run builds the root and the .deb in the first test's set-up
    pytest.mark.timeout(900),
]

UNIT = "nodeagent@compute.service"
CONFIG = "/etc/nodeagent/config.yaml"
METRICS = "http://127.0.0.1:9100/metrics"
# a valid change that shows in the scrape: no node_load1
NO_LOADAVG = "collectors:\n  disable: [loadavg]\n"
BROKEN = "collectors: [\n"
# what the package installs as /etc/nodeagent/config.yaml (all comments)
DEFAULTS = (REPO / "src/nodeagent/data/config.yaml").read_text()
# syslog priority of each structlog level (sd-daemon(3))
PRIORITY = {"error": 3, "warning": 4, "info": 6, "debug": 7}


@pytest.fixture(scope="module")
def box(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """The booted root with this checkout's .deb installed and the compute
    instance enabled and started; powered off and removed afterwards."""
    missing = missing_tools()
    assert not missing, f"missing {missing}: install systemd-container and debootstrap (scripts/dev.sh test does)"
    c = Container(tmp_path_factory.mktemp("nspawn"))
    try:
        c.start()
        shutil.copy(deb, c.root / "root" / deb.name)
        c.run("sh", "-c", f"dpkg -i /root/{deb.name} </dev/null", timeout=300)
        c.run("nodeagent", "install", "--role", "compute", timeout=120)
        assert c.run("cat", CONFIG).stdout == DEFAULTS
        yield c
    finally:
        c.stop()


def show(box: Container, *props: str) -> dict[str, str]:
    out = box.run("systemctl", "show", UNIT, *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def scrape(box: Container, url: str = METRICS) -> str:
    return box.run("curl", "-sS", "--fail", "--max-time", "10", url).stdout


def reload(box: Container, config: str) -> subprocess.CompletedProcess[str]:
    box.write(CONFIG, config)
    return box.run("systemctl", "reload", UNIT, check=False, timeout=120)


def restore(box: Container) -> None:
    """The package's default config, served by a running unit."""
    box.write(CONFIG, DEFAULTS)
    if box.run("systemctl", "is-active", UNIT, check=False).stdout.strip() == "active":
        assert reload(box, DEFAULTS).returncode == 0
    else:
        box.run("systemctl", "reset-failed", UNIT, check=False)
        box.run("systemctl", "start", UNIT, timeout=120)


def journal(box: Container, *args: str) -> list[dict[str, str]]:
    """nodeagent's own journal entries of the unit (not systemd's about it)."""
    out = box.run("journalctl", "--no-pager", "-o", "json", "-u", UNIT, "SYSLOG_IDENTIFIER=nodeagent",
                  *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def event(entry: dict[str, str]) -> dict[str, str] | None:
    """The JSON log line in a journal entry; None for a plain stderr line."""
    try:
        parsed = json.loads(entry["MESSAGE"])
    except (TypeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def test_starts_as_a_notify_service_and_serves(box: Container) -> None:
    """`systemctl start` (run by `nodeagent install`) returned, so READY=1
    came: a Type=notify unit that never sent it would still be
    "activating"; the daemon runs as its own user and serves :9100."""
    props = show(box, "Type", "ActiveState", "SubState", "MainPID", "NRestarts", "UnitFileState")
    assert props["Type"] == "notify"
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
    assert props["UnitFileState"] == "enabled"
    assert props["NRestarts"] == "0"
    user = box.run("ps", "-o", "user=", "-p", props["MainPID"]).stdout.strip()
    assert user == "nodeagent"
    body = scrape(box)
    assert re.search(r"^node_load1 ", body, re.M)
    assert 'node_scrape_collector_success{collector="cpu"} 1' in body
    assert "nodeagent_gpus" in scrape(box, "http://127.0.0.1:9400/metrics")


def timed_reload(box: Container, config: str) -> tuple[float, float]:
    """`systemctl reload` with `config`: when it was called and when it
    returned (the container's clock is the host's)."""
    box.write(CONFIG, config)
    called = time.time()
    r = box.run("sh", "-c", f"systemctl reload {UNIT}; rc=$?; date +%s.%6N; exit $rc", timeout=120)
    return called, float(r.stdout.split()[-1])


def logged_at(box: Container, name: str, after: float) -> float:
    """When the daemon logged its first `name` event after `after` (its own
    timestamp: journald may store the line a little later)."""
    deadline = time.monotonic() + 5
    while True:
        for e in journal(box, "--since", f"@{after - 1:.6f}"):
            ev = event(e) or {}
            if ev.get("event") == name:
                at = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")).timestamp()
                if at >= after:
                    return at
        assert time.monotonic() < deadline, f"no {name} logged"
        time.sleep(0.1)


def test_reload_returns_once_the_new_config_serves(box: Container) -> None:
    """`systemctl reload` returns after the daemon logged config_reloaded
    (a bare SIGHUP would return before), the scrape right after it already
    has the change, and the same process serves on."""
    pid = show(box, "MainPID")["MainPID"]
    try:
        for config, with_load1 in ((NO_LOADAVG, False), (DEFAULTS, True)):
            called, returned = timed_reload(box, config)
            assert bool(re.search(r"^node_load1 ", scrape(box), re.M)) == with_load1
            assert called <= logged_at(box, "config_reloaded", called) <= returned
        assert show(box, "MainPID", "ActiveState") == {"MainPID": pid, "ActiveState": "active"}
    finally:
        restore(box)


def test_reload_of_a_broken_config_fails_and_keeps_serving(box: Container) -> None:
    """`systemctl reload` fails; the unit stays active, the same process
    serves with the config it had (not the defaults), and the rejection is
    in the journal at priority err."""
    try:
        assert reload(box, NO_LOADAVG).returncode == 0
        pid = show(box, "MainPID")["MainPID"]
        since = box.run("date", "+@%s.%6N").stdout.strip()
        r = reload(box, BROKEN)
        assert r.returncode != 0, r.stdout + r.stderr
        assert show(box, "MainPID", "ActiveState") == {"MainPID": pid, "ActiveState": "active"}
        body = scrape(box)
        assert "node_cpu_seconds_total" in body
        assert not re.search(r"^node_load1 ", body, re.M)  # still the config before the broken one
        rejected = [e for e in journal(box, "-p", "err", "--since", since)
                    if (event(e) or {}).get("event") == "reload_rejected"]
        assert len(rejected) == 1, rejected
        assert rejected[0]["PRIORITY"] == "3"
        assert CONFIG in rejected[0]["MESSAGE"]
    finally:
        restore(box)


SCRAPER = """
ok=0 failed=0
while [ ! -e /run/scraper-stop ]; do
    if curl -s -o /dev/null --fail --max-time 5 {url}; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
    sleep 0.01
done
echo "$ok $failed"
"""


def test_twenty_reloads_drop_no_scrape(box: Container) -> None:
    """curl in a loop (10 ms apart) through 20 reloads, each changing the
    config and so building a new agent: not one scrape fails (each would be
    a connection refused, a reset or an error status)."""
    box.run("rm", "-f", "/run/scraper-stop")
    scraper = box.spawn("sh", "-c", SCRAPER.format(url=METRICS))
    durations = []
    try:
        time.sleep(0.5)
        for i in range(20):
            t0 = time.monotonic()
            r = reload(box, NO_LOADAVG if i % 2 == 0 else DEFAULTS)
            durations.append(time.monotonic() - t0)
            assert r.returncode == 0, r.stderr
        time.sleep(0.5)
    finally:
        box.run("touch", "/run/scraper-stop")
        out, err = scraper.communicate(timeout=30)
        restore(box)
    assert re.fullmatch(r"\d+ \d+\n", out), f"scraper: {out!r} {err!r}"
    ok, failed = (int(n) for n in out.split())
    durations.sort()
    print(f"20 reloads: {ok} scrapes succeeded, {failed} failed; reload took {durations[10]:.2f} s "
          f"(median), {durations[-1]:.2f} s (max)")
    assert failed == 0, f"{failed} of {ok + failed} scrapes failed"
    assert ok >= 100, f"only {ok} scrapes: the loop did not run through the reloads"


def test_journal_priority_follows_the_log_level(box: Container) -> None:
    """Every JSON log line of the daemon carries its level's priority; lines
    that are not log events (the reload command's verdict on stderr) are
    errors. So `journalctl -p warning` shows exactly the warnings and
    errors: the reload_rejected of the tests above, none of the info lines
    (config_reloaded, started)."""
    try:
        assert reload(box, NO_LOADAVG).returncode == 0
        assert reload(box, BROKEN).returncode != 0
    finally:
        restore(box)
    entries = journal(box)
    levels: dict[str, int] = {}
    for e in entries:
        ev = event(e)
        expected = PRIORITY[ev["level"]] if ev is not None else 3
        assert int(e["PRIORITY"]) == expected, e["MESSAGE"]
        if ev is not None:
            levels[ev["level"]] = levels.get(ev["level"], 0) + 1
    assert levels.get("info", 0) >= 2 and levels.get("error", 0) >= 1, levels
    warnings = {e["__CURSOR"] for e in journal(box, "-p", "warning")}
    assert warnings == {e["__CURSOR"] for e in entries if int(e["PRIORITY"]) <= 4}
    events = {(event(e) or {}).get("event") for e in journal(box, "-p", "warning")}
    assert "reload_rejected" in events
    assert "config_reloaded" not in events


def test_a_bad_config_at_start_exits_78_and_is_not_restarted(box: Container) -> None:
    """Exit 78 (EX_CONFIG), the reason in the journal at priority err, and
    RestartPreventExitStatus=78: still failed, with no restart, after
    RestartSec has passed."""
    try:
        box.write(CONFIG, BROKEN)
        r = box.run("systemctl", "restart", UNIT, check=False, timeout=120)
        assert r.returncode != 0
        props = show(box, "ActiveState", "Result", "ExecMainStatus", "ExecMainPID", "NRestarts", "RestartUSec")
        assert (props["ActiveState"], props["Result"], props["ExecMainStatus"]) == ("failed", "exit-code", "78"), \
            props
        errors = journal(box, "-p", "err", f"_PID={props['ExecMainPID']}")
        assert any(CONFIG in e["MESSAGE"] for e in errors), errors
        assert all(e["PRIORITY"] == "3" for e in errors)
        restart_sec = float(props["RestartUSec"].rstrip("s") or 0)  # systemd prints "5s"
        time.sleep(restart_sec + 1)
        assert show(box, "ActiveState", "NRestarts") == {"ActiveState": "failed", "NRestarts": "0"}
    finally:
        restore(box)
    assert show(box, "ActiveState")["ActiveState"] == "active"


def test_a_hung_daemon_is_killed_by_the_watchdog_and_restarted(box: Container) -> None:
    """A stopped process sends no WATCHDOG=1: systemd kills it (SIGABRT)
    and starts it again after RestartSec. WatchdogSec is cut to 2 s by a
    runtime drop-in, for speed."""
    dropin = f"/run/systemd/system/{UNIT}.d/watchdog.conf"
    box.write(dropin, "[Service]\nWatchdogSec=2\n")
    try:
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "restart", UNIT, timeout=120)
        pid = show(box, "MainPID")["MainPID"]
        box.run("kill", "-STOP", pid)
        deadline = time.monotonic() + 30
        while show(box, "NRestarts")["NRestarts"] == "0":
            assert time.monotonic() < deadline, show(box, "ActiveState", "SubState", "Result")
            time.sleep(0.5)
        box.run("systemctl", "start", UNIT, timeout=120)  # waits for the restart job's READY=1
        props = show(box, "ActiveState", "MainPID", "NRestarts")
        assert props["ActiveState"] == "active" and props["MainPID"] != pid and props["NRestarts"] == "1", props
        manager = box.run("journalctl", "--no-pager", "-u", UNIT, "_PID=1", "-o", "cat").stdout
        assert "Watchdog timeout" in manager
        assert "Failed with result 'watchdog'" in manager
    finally:
        box.run("rm", dropin)
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "restart", UNIT, timeout=120)


def test_timex_reads_the_clock_inside_the_sandbox(box: Container) -> None:
    """The unit allows adjtimex and clock_adjtime in its system call filter
    (the container allows them too): the timex collector succeeds. Refused
    by a filter (EPERM, as nspawn's default filter does), the collector
    reports success 0 and no node_timex_* series."""
    body = scrape(box)
    assert 'node_scrape_collector_success{collector="timex"} 1' in body
    assert re.search(r"^node_timex_sync_status ", body, re.M)
    refused = box.run("systemd-run", "--quiet", "--wait", "--pipe", "--property=SystemCallErrorNumber=EPERM",
                      "--property=SystemCallFilter=~adjtimex clock_adjtime", "--",
                      "nodeagent", "--role", "compute", "--config", CONFIG, "--once", timeout=120).stdout
    assert 'node_scrape_collector_success{collector="timex"} 0' in refused
    assert not re.search(r"^node_timex_", refused, re.M)
    assert 'node_scrape_collector_success{collector="cpu"} 1' in refused


def repack(deb: Path, out: Path, version: str) -> None:
    """`deb` with another version and a changed packaged default."""
    tree = out.parent / "repack"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True, env=CLEAN_ENV)
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M))
    with open(tree / "usr/share/nodeagent/config.yaml", "a") as f:
        f.write(f"# a default changed in {version}\n")
    files = sorted(p for p in tree.rglob("*") if p.is_file() and "DEBIAN" not in p.relative_to(tree).parts)
    md5 = subprocess.run(["md5sum", *(str(p.relative_to(tree)) for p in files)], cwd=tree, capture_output=True,
                         text=True, check=True, env=CLEAN_ENV).stdout
    (tree / "DEBIAN" / "md5sums").write_text(md5)
    subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "-b", str(tree), str(out)], check=True,
                   capture_output=True, env=CLEAN_ENV)
    shutil.rmtree(tree)


def test_upgrade_with_no_terminal_keeps_the_config_and_restarts(box: Container, deb: Path,
                                                                tmp_path: Path) -> None:
    """dpkg -i of a newer build with a changed default, reading /dev/null:
    no prompt, the operator's file unchanged, the running instance
    restarted on the new version and serving with that file."""
    version = f"{VERSION}+systemdtest1"
    newer = tmp_path / "newer.deb"
    repack(deb, newer, version)
    shutil.copy(newer, box.root / "root" / "newer.deb")
    operator = NO_LOADAVG + "# the operator's\n"
    try:
        assert reload(box, operator).returncode == 0
        pid = show(box, "MainPID")["MainPID"]
        box.run("sh", "-c", "dpkg -i /root/newer.deb </dev/null", timeout=300)
        status = box.run("dpkg-query", "-W", "-f=${Status} ${Version}", "nodeagent").stdout
        assert status == f"install ok installed {version}"
        assert (box.root / CONFIG.lstrip("/")).read_text() == operator
        assert box.run("cat", "/usr/share/nodeagent/config.yaml").stdout.endswith(
            f"# a default changed in {version}\n")
        props = show(box, "MainPID", "ActiveState")
        assert props["ActiveState"] == "active" and props["MainPID"] != pid, props
        assert not re.search(r"^node_load1 ", scrape(box), re.M)
    finally:
        restore(box)
