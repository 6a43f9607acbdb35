"""The Slurm collectors' command running and background polling, with fake
Slurm commands (shell scripts in a bin dir): binary lookup, environment,
timeouts that kill, failures that make collect() raise, logging on change of
state only, one collection per interval whatever the number of scrapes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from slurm_helpers import make_collector, make_collectors, pid_alive, samples

from nodeagent.collectors.slurm.poller import SlurmUnavailable
from nodeagent.collectors.slurm.runner import SlurmRunner, command_env
from nodeagent.collectors.slurm.sdiag import SdiagCollector
from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.collectors.slurm.sinfo import SINFO_FORMAT, SinfoCollector
from nodeagent.collectors.slurm.squeue import SqueueCollector
from nodeagent.collectors.slurm.sshare import SshareCollector
from nodeagent.config import parse_config
from nodeagent.host import CommandError, Host
from nodeagent.settings import ConfigError
from nodeagent.supervise import Supervisor

FakeBin = Callable[[str, str], Path]

# one running job of 2 CPUs in partition gpu, as squeue -O prints it (with
# the user field slurm.naming: sckyzo asks for)
SQUEUE_OK = 'printf "%-40s%-64sR|2|gpu\\n" None root\n'
SINFO_PARTITIONS = "echo gpu\n"


def test_binary_from_bin_dir_then_path(fake_bin: FakeBin, tmp_path: Path) -> None:
    bin_dir = fake_bin("sdiag", "exit 0\n")
    runner = SlurmRunner(Host(), SlurmSettings(bin_dir=str(bin_dir)), "sdiag")
    assert runner.binary() == str(bin_dir / "sdiag")
    # not in bin_dir: found on PATH, as an absolute path
    runner = SlurmRunner(Host(), SlurmSettings(bin_dir=str(tmp_path / "nowhere")), "sh")
    assert os.path.isabs(runner.binary()) and runner.binary().endswith("/sh")
    runner = SlurmRunner(Host(), SlurmSettings(bin_dir=str(tmp_path)), "no-such-slurm-command")
    with pytest.raises(CommandError, match="not found"):
        runner.binary()


def test_environment_passes_slurm_conf_and_drops_format_variables() -> None:
    base = {"PATH": "/usr/bin", "SQUEUE_FORMAT": "%j", "SQUEUE_USERS": "bob", "SINFO_PARTITION": "x",
            "SLURM_CONF": "/etc/slurm/slurm.conf", "SLURM_TIME_FORMAT": "relative", "HOME": "/root"}  # fmt: skip
    env = command_env(SlurmSettings(slurm_conf="/opt/slurm/etc/slurm.conf"), base)
    assert env["SLURM_CONF"] == "/opt/slurm/etc/slurm.conf"
    assert "SQUEUE_FORMAT" not in env and "SQUEUE_USERS" not in env and "SINFO_PARTITION" not in env
    assert env["SLURM_TIME_FORMAT"] == "standard" and env["LC_ALL"] == "C"
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    # without slurm_conf, the agent's own SLURM_CONF is kept
    assert command_env(SlurmSettings(), base)["SLURM_CONF"] == "/etc/slurm/slurm.conf"
    assert "SLURM_CONF" not in command_env(SlurmSettings(), {"PATH": "/usr/bin"})


def test_command_sees_slurm_conf(fake_bin: FakeBin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "env.txt"
    monkeypatch.setenv("SQUEUE_FORMAT", "%j")
    bin_dir = fake_bin("sinfo", f'echo "conf=$SLURM_CONF fmt=${{SQUEUE_FORMAT:-unset}} args=$*" > {out}\n')
    c = make_collector(SinfoCollector, bin_dir=str(bin_dir), slurm_conf="/x/slurm.conf")
    c.run_once()
    text = out.read_text()
    assert "conf=/x/slurm.conf fmt=unset" in text
    assert f"args=-h -a -N -O {SINFO_FORMAT}" in text
    assert "--json" not in text
    c.close()


def test_squeue_argv_fixed_format_never_json(fake_bin: FakeBin, tmp_path: Path) -> None:
    out = tmp_path / "args.txt"
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin("squeue", f'echo "$*" >> {out}\n' + SQUEUE_OK)
    for per_user in (False, True):
        c = make_collector(SqueueCollector, bin_dir=str(bin_dir), per_user=per_user)
        c.run_once()
        if per_user:  # the fake's record lacks the user and account fields: refused, not miscounted
            with pytest.raises(SlurmUnavailable, match="incomplete record"):
                c.collect()
        else:
            assert samples(c.collect())["slurm_queue_running"] == {("root", "gpu"): 1}
        c.close()
    lines = out.read_text().splitlines()
    assert lines[0] == "-h -a -r -t all -O Reason:40,UserName:64,StateCompact:|,NumCPUs:|,Partition:0"
    assert lines[1].startswith("-h -a -r -t all -O Reason:40,UserName:64,Account:256,StateCompact:|")
    assert all("json" not in line for line in lines)


def test_hung_squeue_is_killed_at_the_timeout(fake_bin: FakeBin, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin("squeue", f"echo $$ > {pidfile}\nexec sleep 600\n")
    c = make_collector(SqueueCollector, bin_dir=str(bin_dir), command_timeout=1.0)
    started = time.monotonic()
    c.run_once()
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3.0
    pid = int(pidfile.read_text())
    assert not pid_alive(pid), "the hung squeue was not killed"
    with pytest.raises(SlurmUnavailable, match="timed out after 1s"):
        c.collect()
    c.close()


def test_hung_wrapper_whose_child_holds_the_pipe(fake_bin: FakeBin, tmp_path: Path) -> None:
    """A wrapper script that leaves a child holding stdout open: the read
    still ends at the timeout (the child is not ours to kill: the command's
    own process is killed; this test stops the child it made)."""
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin("squeue", f"sleep 600 &\necho $! > {tmp_path}/child\necho $$ > {tmp_path}/pid\nwait\n")
    c = make_collector(SqueueCollector, bin_dir=str(bin_dir), command_timeout=1.0)
    started = time.monotonic()
    c.run_once()
    assert time.monotonic() - started < 3.0
    assert not pid_alive(int((tmp_path / "pid").read_text()))
    with pytest.raises(SlurmUnavailable, match="timed out"):
        c.collect()
    child = int((tmp_path / "child").read_text())
    if pid_alive(child):
        os.kill(child, signal.SIGKILL)
    c.close()


@pytest.mark.parametrize(
    ("cls", "name"),
    [(SqueueCollector, "squeue"), (SinfoCollector, "sinfo"), (SdiagCollector, "sdiag"), (SshareCollector, "sshare")],
)
def test_nonzero_exit_with_garbage_fails(fake_bin: FakeBin, cls: type, name: str) -> None:
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin(name, "echo '{\"garbage\": [1,2'\necho 'slurm_load_jobs error: Unable to contact' >&2\nexit 3\n")
    c = make_collector(cls, bin_dir=str(bin_dir))
    with structlog.testing.capture_logs() as logs:
        c.run_once()
    with pytest.raises(SlurmUnavailable, match="exited with 3: slurm_load_jobs error"):
        c.collect()
    assert [e["event"] for e in logs] == ["slurm_collection_failed"]
    c.close()


@pytest.mark.parametrize(("cls", "name"), [(SqueueCollector, "squeue"), (SinfoCollector, "sinfo")])
def test_garbage_with_exit_zero_fails(fake_bin: FakeBin, cls: type, name: str) -> None:
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin(name, "echo 'PARTITION AVAIL TIMELIMIT'\necho 'gpu* up infinite 3 mix node[1-3]'\n")
    c = make_collector(cls, bin_dir=str(bin_dir))
    c.run_once()
    with pytest.raises(SlurmUnavailable):
        c.collect()
    c.close()


def test_logged_on_change_of_state_only(fake_bin: FakeBin, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin("squeue", f"if [ -e {flag} ]; then echo down >&2; exit 1; fi\n" + SQUEUE_OK)
    c = make_collector(SqueueCollector, bin_dir=str(bin_dir))
    with structlog.testing.capture_logs() as logs:
        c.run_once()
        flag.touch()
        for _ in range(3):
            c.run_once()
        flag.unlink()
        c.run_once()
        c.run_once()
    assert [e["event"] for e in logs] == ["slurm_collection_failed", "slurm_collection_recovered"]
    assert logs[0]["collector"] == "squeue" and "down" in logs[0]["error"]
    assert samples(c.collect())["slurm_jobs_running"][()] == 1
    c.close()


def test_one_collection_per_interval_whatever_the_scrapes(fake_bin: FakeBin, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin("squeue", f"echo x >> {calls}\n" + SQUEUE_OK)
    c = make_collector(SqueueCollector, bin_dir=str(bin_dir), interval=3600.0)
    for _ in range(100):
        s = samples(c.collect())
        assert s["slurm_jobs_running"][()] == 1
    assert len(calls.read_text().splitlines()) == 1
    c.close()
    calls.unlink()
    # the background loop does run every interval
    c = make_collector(SqueueCollector, bin_dir=str(bin_dir), interval=0.25)
    c.collect()
    time.sleep(1.2)
    c.close()
    assert 3 <= len(calls.read_text().splitlines()) <= 7


def test_scrape_stays_fast_while_a_command_hangs(fake_bin: FakeBin, tmp_path: Path) -> None:
    flag = tmp_path / "hang"
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin("squeue", f"if [ -e {flag} ]; then exec sleep 600; fi\n" + SQUEUE_OK)
    c = make_collector(SqueueCollector, bin_dir=str(bin_dir), interval=0.1, command_timeout=1.5)
    assert samples(c.collect())["slurm_jobs_running"][()] == 1
    flag.touch()
    time.sleep(0.3)  # a poll is now stuck in squeue
    for _ in range(5):  # the last good snapshot, at once
        started = time.monotonic()
        assert samples(c.collect())["slurm_jobs_running"][()] == 1
        assert time.monotonic() - started < 0.05
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # after the timeout: failure, at once too
        started = time.monotonic()
        try:
            c.collect()
        except SlurmUnavailable as e:
            assert "timed out" in str(e)
            assert time.monotonic() - started < 0.05
            break
        time.sleep(0.1)
    else:
        pytest.fail("the hung squeue never made collect() fail")
    started = time.monotonic()
    c.close()  # kills the squeue still running
    assert time.monotonic() - started < 2.5


def test_supervisor_success_zero_for_the_failing_collector_only(fake_bin: FakeBin) -> None:
    fake_bin("sinfo", "echo 'idle|0/8/0/8|gpu:4|gpu:0|0|16000||node1|gpu'\n")
    fake_bin("squeue", "exec sleep 600\n")
    bin_dir = fake_bin("sdiag", "echo 'Server thread count: 3'\n")
    collectors = [make_collector(cls, bin_dir=str(bin_dir), command_timeout=1.0, first_collection_wait=3.0)
                  for cls in (SinfoCollector, SqueueCollector, SdiagCollector)]  # fmt: skip
    sup = Supervisor("slurm", collectors, timeout=5.0)
    started = time.monotonic()
    results = {r.name: r for r in sup.run_all()}
    assert time.monotonic() - started < 3.0
    assert results["sinfo"].success and results["sdiag"].success
    assert not results["squeue"].success and "timed out" in (results["squeue"].error or "")
    meta = samples(sup.meta_families(list(results.values())))
    assert meta["nodeagent_collector_success"] == {("sinfo",): 1.0, ("squeue",): 0.0, ("sdiag",): 1.0}
    # the next scrapes answer from the snapshots, fast
    started = time.monotonic()
    for _ in range(10):
        sup.run_all()
    assert time.monotonic() - started < 0.5
    sup.close()


def test_sshare_without_accounting_succeeds_with_nothing(fake_bin: FakeBin) -> None:
    bin_dir = fake_bin("sshare", "exit 0\n")
    c = make_collector(SshareCollector, bin_dir=str(bin_dir))
    names = {f.name for f in c.collect()}
    assert names == {"nodeagent_slurm_command_duration_seconds", "nodeagent_slurm_collection_timestamp_seconds"}
    c.close()


def test_first_scrape_waits_a_bounded_time(fake_bin: FakeBin) -> None:
    fake_bin("sinfo", SINFO_PARTITIONS)
    bin_dir = fake_bin("squeue", "exec sleep 600\n")
    c = make_collector(SqueueCollector, bin_dir=str(bin_dir), first_collection_wait=0.3, command_timeout=5)
    started = time.monotonic()
    with pytest.raises(SlurmUnavailable, match="no collection finished yet"):
        c.collect()
    assert time.monotonic() - started < 1.0
    c.close()


ALL_SLURM = (SinfoCollector, SqueueCollector, SdiagCollector, SshareCollector)


def _hang_all(fake_bin: FakeBin) -> Path:
    for name in ("sinfo", "squeue", "sdiag"):
        fake_bin(name, "exec sleep 600\n")
    return fake_bin("sshare", "exec sleep 600\n")


def test_first_waits_overlap_in_one_scrape(fake_bin: FakeBin) -> None:
    """Every command hangs: the supervisor calls the four collectors one
    after another, and their first-collection waits share one deadline, so
    the first scrape takes one wait, not four."""
    bin_dir = _hang_all(fake_bin)
    collectors = make_collectors(ALL_SLURM, bin_dir=str(bin_dir), first_collection_wait=1.0, command_timeout=30)
    sup = Supervisor("slurm", collectors, timeout=5.0)
    try:
        started = time.monotonic()
        results = sup.run_all()
        elapsed = time.monotonic() - started
        assert 0.9 < elapsed < 1.5, f"first scrape took {elapsed:.2f}s"
        assert [r.success for r in results] == [False] * 4
        assert all("no collection finished yet" in (r.error or "") for r in results)
        # the four commands ran side by side from the start
        assert all(c._thread is not None and c._thread.is_alive() for c in collectors)
        # and stop kills them at once (sinfo, sdiag and sshare too, not only squeue)
        started = time.monotonic()
        sup.close()
        assert time.monotonic() - started < 0.5
        assert not any(c._thread.is_alive() for c in collectors)
    finally:
        sup.close()


def test_pollers_start_together(fake_bin: FakeBin) -> None:
    """The first collect() of any one starts them all: the others' first
    collections are under way before the supervisor reaches them."""
    fake_bin("sshare", "exec sleep 600\n")
    fake_bin("sinfo", SINFO_PARTITIONS)  # squeue lists the partitions first
    fake_bin("squeue", "exit 0\n")
    bin_dir = fake_bin("sdiag", "echo 'Server thread count: 3'\n")
    collectors = make_collectors((SshareCollector, SqueueCollector, SdiagCollector), bin_dir=str(bin_dir),
                                 first_collection_wait=1.0, command_timeout=30)  # fmt: skip
    try:
        with pytest.raises(SlurmUnavailable):
            collectors[0].collect()  # the hung sshare: waits the whole second
        started = time.monotonic()
        for c in collectors[1:]:
            c.collect()  # already collected during sinfo's wait: no wait
        assert time.monotonic() - started < 0.2
    finally:
        for c in collectors:
            c.close()


def test_first_wait_capped_below_collectors_timeout(fake_bin: FakeBin) -> None:
    """first_collection_wait above collectors.timeout would make the first
    scrape overrun it: the wait is capped at 80 % of the timeout."""
    bin_dir = _hang_all(fake_bin)
    collectors = make_collectors(ALL_SLURM, timeout=1.0, bin_dir=str(bin_dir), first_collection_wait=30.0,
                                 command_timeout=60)  # fmt: skip
    sup = Supervisor("slurm", collectors, timeout=1.0)
    try:
        started = time.monotonic()
        results = sup.run_all()
        elapsed = time.monotonic() - started
        assert 0.7 < elapsed < 1.0, f"first scrape took {elapsed:.2f}s"
        assert all("no collection finished yet" in (r.error or "") for r in results)
    finally:
        sup.close()


def test_slurm_section_of_the_config_file() -> None:
    cfg = parse_config(
        "slurm:\n  bin_dir: /opt/slurm/bin\n  slurm_conf: /opt/slurm/etc/slurm.conf\n  command_timeout: 5\n"
        "  interval: 30\n  per_user: true\n  max_label_values: 20\n",
        "test.yaml",
    )
    assert cfg.slurm == SlurmSettings(
        bin_dir="/opt/slurm/bin", slurm_conf="/opt/slurm/etc/slurm.conf", command_timeout=5.0, interval=30.0,
        per_user=True, max_label_values=20,
    )  # fmt: skip
    assert SlurmSettings().bin_dir == "/opt/slurm/bin" and SlurmSettings().command_timeout == 10.0
    assert SlurmSettings().interval == 60.0 and not SlurmSettings().per_user
    for bad, key in (
        ("bin_dir: opt/slurm", "slurm.bin_dir"),
        ("command_timeout: 0", "slurm.command_timeout"),
        ("max_label_values: 0", "slurm.max_label_values"),
        ("slurm_conf: slurm.conf", "slurm.slurm_conf"),
        ("colour: blue", "slurm.colour"),
    ):
        with pytest.raises(ConfigError) as e:
            parse_config(f"slurm:\n  {bad}\n", "test.yaml")
        assert e.value.key == key
