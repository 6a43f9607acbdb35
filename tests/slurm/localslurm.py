"""A real Slurm cluster on one host: munged, slurmctld and several slurmd
("virtual nodes"), everything under one base directory, bound to 127.0.0.1.

Used by the Slurm tests (one cluster per test session) and by
bench/bench_squeue.py. Needs Debian's slurm-wlm (slurmctld, slurmd,
slurm-client) and munge, and root (slurmd runs jobs as their users).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SLURMCTLD = "/usr/sbin/slurmctld"
SLURMD = "/usr/sbin/slurmd"
MUNGED = "/usr/sbin/munged"
BIN_DIR = "/usr/bin"
TEST_USER = "nodeagent-test"

SLURM_CONF = """\
ClusterName={cluster}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={base}/munge/munge.sock
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool/%n
SlurmctldPidFile={base}/run/slurmctld.pid
SlurmdPidFile={base}/run/slurmd-%n.pid
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd-%n.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
PriorityType=priority/multifactor
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MaxJobCount=50000
MaxArraySize=20001
MinJobAge=300
GresTypes=gpu
{extra}
NodeName={nodes} NodeHostname=localhost NodeAddr=127.0.0.1 Port=[{node_port_lo}-{node_port_hi}] \
CPUs={cpus} RealMemory=16000 Gres=gpu:{gpus} State=UNKNOWN
{cloud}
{partitions}
"""
# ParallelCluster-style power saving: cloud nodes start powered down (idle~);
# resuming one "boots" nothing (no slurmd answers), so it stays powering up
# (alloc#/mixed#) until ResumeTimeout, and its job stays CONFIGURING.
POWER_SAVE = """\
SuspendProgram={base}/etc/suspend.sh
ResumeProgram=/bin/true
SuspendTime=3600
SuspendTimeout=1
ResumeTimeout=3600
SlurmctldParameters=power_save_interval=1,power_save_min_interval=0
PrivateData=cloud
"""


@dataclass
class LocalSlurm:
    """One cluster. `partitions` are slurm.conf PartitionName lines (without
    the keyword); `extra` is appended to the global section."""

    base: Path
    base_port: int = 16817
    cluster: str = "test"
    node_count: int = 4
    cpus: int = 8
    gpus: int = 4
    partitions: Sequence[str] = (
        "gpu Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP",
        "cpu Nodes=node4 MaxTime=INFINITE State=UP",
    )
    extra: str = ""
    # nodes after the regular ones, State=CLOUD, no slurmd: start powered down
    cloud_nodes: int = 0
    power_save: bool = False
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ---- paths and environment --------------------------------------------
    @property
    def conf(self) -> Path:
        return self.base / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        return env

    @property
    def node_names(self) -> list[str]:
        """Nodes that run a slurmd (not the cloud ones)."""
        return [f"node{i}" for i in range(1, self.node_count + 1)]

    @property
    def cloud_names(self) -> list[str]:
        first = self.node_count + 1
        return [f"node{i}" for i in range(first, first + self.cloud_nodes)]

    def bin(self, name: str) -> str:
        return os.path.join(BIN_DIR, name)

    # ---- lifecycle ----------------------------------------------------------
    def write_config(self) -> None:
        b = self.base
        for sub in ("etc", "state", "spool", "log", "run", "munge", "dev", "jobs"):
            (b / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(b / "munge", 0o755)
        os.chmod(b / "jobs", 0o1777)
        os.chmod(b, 0o755)
        key = b / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            os.chmod(key, 0o400)
        for i in range(self.gpus):
            dev = b / "dev" / f"nvidia{i}"
            if not dev.is_symlink():
                dev.symlink_to("/dev/null")
        gres = f"AutoDetect=off\nName=gpu File={b}/dev/nvidia[0-{self.gpus - 1}]\n"
        (b / "etc" / "gres.conf").write_text(gres)
        cloud = ""
        if self.cloud_nodes:
            lo = self.node_count + 1
            hi = self.node_count + self.cloud_nodes
            cloud = (
                f"NodeName=node[{lo}-{hi}] NodeHostname=localhost NodeAddr=127.0.0.1 "
                f"Port={self.base_port + 99} CPUs={self.cpus} RealMemory=16000 Gres=gpu:{self.gpus} State=CLOUD"
            )
        # powering a node down stops its slurmd, as stopping the instance would
        suspend = b / "etc" / "suspend.sh"
        suspend.write_text(
            "#!/bin/sh\n"
            f'for n in $({self.bin("scontrol")} show hostnames "$1"); do\n'
            f'  f="{b}/run/slurmd-$n.pid"; [ -f "$f" ] && kill "$(cat "$f")"\n'
            "done\nexit 0\n"
        )
        suspend.chmod(0o755)
        power = POWER_SAVE.format(base=b) if self.power_save or self.cloud_nodes else ""
        extra = power + self.extra
        text = SLURM_CONF.format(
            cluster=self.cluster,
            base=b,
            ctld_port=self.base_port,
            slurmd_port=self.base_port + 1,
            nodes=f"node[1-{self.node_count}]",
            node_port_lo=self.base_port + 101,
            node_port_hi=self.base_port + 100 + self.node_count,
            cpus=self.cpus,
            gpus=self.gpus,
            extra=extra,
            cloud=cloud,
            partitions="\n".join(f"PartitionName={p}" for p in self.partitions),
        )
        self.conf.write_text(text)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.base / "log" / f"{name}.stdout", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        finally:
            log.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        b = self.base
        self._spawn(
            "munged",
            [
                MUNGED,
                "-F",
                "--force",
                f"--socket={b}/munge/munge.sock",
                f"--key-file={b}/munge/munge.key",
                f"--log-file={b}/log/munged.log",
                f"--pid-file={b}/run/munged.pid",
                f"--seed-file={b}/munge/munged.seed",
            ],
        )
        self._wait(lambda: (b / "munge" / "munge.sock").exists(), "munged socket", timeout, "munged")
        self.start_slurmctld(timeout)
        for node in self.node_names:
            self._spawn(f"slurmd-{node}", [SLURMD, "-D", "-f", str(self.conf), "-N", node])
        self.wait_nodes_idle(timeout)

    def start_slurmctld(self, timeout: float = 30.0) -> None:
        self._spawn("slurmctld", [SLURMCTLD, "-D", "-i", "-f", str(self.conf)])
        self._wait(self._ping, "slurmctld answering", timeout, "slurmctld")

    def _ping(self) -> bool:
        r = subprocess.run([self.bin("scontrol"), "ping"], env=self.env, capture_output=True, text=True, timeout=10)
        return "is UP" in r.stdout

    def _wait(self, cond: object, what: str, timeout: float, daemon: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(cond) and cond():
                return
            if daemon is not None and not self.alive(daemon):
                raise RuntimeError(f"{daemon} exited while waiting for {what}; see {self.base}/log")
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")

    def node_states(self) -> dict[str, str]:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T").stdout
        states: dict[str, str] = {}
        for line in out.splitlines():
            name, state = line.split()
            states[name] = state
        return states

    def wait_nodes_idle(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            states = self.node_states()
            return all(states.get(n) == "idle" for n in self.node_names) and all(
                states.get(n) == "idle~" for n in self.cloud_names
            )

        self._wait(ready, "all nodes idle", timeout, "slurmctld")

    # ---- clients --------------------------------------------------------------
    def run(
        self, cmd: str, *args: str, user: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin(cmd), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            user=user,
            cwd=self.base / "jobs",
        )

    def sbatch(self, *args: str, user: str | None = None, wrap: str = "sleep 600") -> int:
        r = self.run(
            "sbatch",
            "--parsable",
            "-o",
            "/dev/null",
            f"--chdir={self.base / 'jobs'}",
            *args,
            "--wrap",
            wrap,
            user=user,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(a[:40] for a in args)!r}: {r.stderr.strip()[:300]}")
        return int(r.stdout.strip().split(";")[0])

    def scontrol(self, *args: str) -> str:
        return self.run("scontrol", *args).stdout

    def cancel_all(self, timeout: float = 30.0) -> None:
        """Cancel every job of every user and wait until none is left active."""
        with contextlib.suppress(subprocess.SubprocessError):
            ids = self.run("squeue", "-h", "-t", "all", "-o", "%A", timeout=20).stdout.split()
            for i in range(0, len(ids), 2000):
                self.run("scancel", *ids[i : i + 2000], check=False, timeout=60)

        def drained() -> bool:
            try:
                states = self.run("squeue", "-h", "-o", "%T", timeout=20).stdout.split()
            except subprocess.SubprocessError:
                return True
            return not states

        with contextlib.suppress(TimeoutError, RuntimeError):
            self._wait(drained, "all jobs gone", timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Cancel jobs, shut down, wait on every PID; SIGKILL after timeout."""
        for proc in self._procs.values():  # a paused daemon would ignore the shutdown
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
        if self.alive("slurmctld"):
            self.cancel_all()
            with contextlib.suppress(subprocess.SubprocessError):
                self.run("scontrol", "shutdown", check=False, timeout=10)
        for name in [n for n in self._procs if n != "munged"] + ["munged"]:
            proc = self._procs.get(name)
            if proc is None:
                continue
            self._terminate(proc, timeout if name != "munged" else 5.0)
        self._procs.clear()
        self._kill_stray_stepd()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one daemon as a crash would (and, with SIGKILL, the helper
        processes it forked: slurmctld's slurmscriptd)."""
        proc = self._procs[name]
        children = _children(proc.pid) if sig == signal.SIGKILL else []
        proc.send_signal(sig)
        proc.wait(timeout=10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def pause(self, name: str) -> None:
        """SIGSTOP a daemon: a hung slurmctld, whose clients wait for ever."""
        self._procs[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self._procs[name].send_signal(signal.SIGCONT)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)

    def _kill_stray_stepd(self) -> None:
        """Processes our daemons left behind (slurmscriptd of a killed
        slurmctld, slurmstepd, job scripts): found by this cluster's
        SLURM_CONF in their environment, which no one else's carries."""
        marker = f"SLURM_CONF={self.conf}".encode()
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            try:
                env = (pid_dir / "environ").read_bytes()
            except OSError:
                continue
            if marker in env.split(b"\0"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_dir.name), signal.SIGKILL)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            out.append(int(stat.parent.name))
    return out


def ensure_user(name: str = TEST_USER) -> None:
    """A second, non-root user to own jobs (created if missing)."""
    if subprocess.run(["id", name], capture_output=True).returncode == 0:
        return
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)


def slurm_available() -> str | None:
    """None when a local cluster can run here, else why not."""
    for path in (SLURMCTLD, SLURMD, MUNGED, os.path.join(BIN_DIR, "squeue")):
        if not os.access(path, os.X_OK):
            return f"{path} not installed (Debian slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root"
    return None
