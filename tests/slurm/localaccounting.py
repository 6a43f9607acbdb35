"""A real Slurm cluster with accounting: MariaDB, slurmdbd and a LocalSlurm
(munged, slurmctld, slurmd) reporting to it, all under one base directory.

`AccountingSlurm` extends LocalSlurm without changing it: its slurm.conf is
LocalSlurm's with accounting_storage/slurmdbd instead of none, and MariaDB
and slurmdbd start (and the cluster is added to the database) between munged
and slurmctld. Needs Debian's mariadb-server-core, mariadb-client-core and
slurmdbd (which brings slurm-wlm-mysql-plugin), as well as what LocalSlurm
needs, and root.

Fairshare usage, as slurmctld 22.05 does it: a running job's usage is
added in the priority decay pass (every PriorityCalcPeriod, one minute at
the least, and once when slurmctld starts); what is left when a job ends is
added at its end, but only with AccountingStorageEnforce=limits (set here);
finished jobs are skipped by the decay pass. The FairShare factors are
recomputed in the decay pass only: `settle_usage()` restarts slurmctld (state
and usage saved and recovered) and waits for that first pass, rather than up
to a minute for the next. PriorityDecayHalfLife=0 with
PriorityUsageResetPeriod=NONE turns decay off, so raw usage is the plain sum
of CPU-seconds (CPUs x elapsed seconds, as sacct reports them) and does not
move between two reads.

Listening: MariaDB on 127.0.0.1 only; slurmctld, slurmd and slurmdbd
on all addresses, like LocalSlurm's (22.05 has no bind-address option;
CommunicationParameters=NoInAddrAny, binding to the host name's address, was
not tried).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from localslurm import TEST_USER, LocalSlurm

MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = "/usr/bin/mariadb-install-db"
MARIADB = "/usr/bin/mariadb"
SLURMDBD = "/usr/sbin/slurmdbd"

# small InnoDB files: the defaults would write ~100 MB per test run
MARIADB_TUNING = ("--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M", "--skip-name-resolve")

SLURMDBD_CONF = """\
AuthType=auth/munge
AuthInfo=socket={base}/munge/munge.sock
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
PidFile={base}/run/slurmdbd.pid
LogFile={base}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=root
StorageLoc=slurm_acct_db
"""

ACCOUNTING_CONF = """\
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd_port}
AccountingStoragePass={base}/munge/munge.sock
AccountingStorageEnforce=associations,limits
PriorityDecayHalfLife=0
PriorityUsageResetPeriod=NONE
PriorityCalcPeriod=1"""


def accounting_available() -> str | None:
    """None when MariaDB and slurmdbd are installed, else why not."""
    for path in (MARIADBD, MARIADB_INSTALL_DB, MARIADB, SLURMDBD):
        if not os.access(path, os.X_OK):
            return f"{path} not installed (Debian mariadb-server-core, mariadb-client-core, slurmdbd)"
    return None


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"slurm.conf template changed: {old!r} found {text.count(old)} times")
    return text.replace(old, new)


@dataclass
class AccountingSlurm(LocalSlurm):
    """A LocalSlurm whose slurmctld reports to a slurmdbd backed by MariaDB.

    Ports, all from base_port: slurmctld +0, slurmd +1, MariaDB +6,
    slurmdbd +7, the nodes' slurmd +11 and up (LocalSlurm would put them at
    +101, outside this cluster's range)."""

    timings: dict[str, float] = field(default_factory=dict)
    priority_flags: str = ""
    _acct_procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def db_port(self) -> int:
        return self.base_port + 6

    @property
    def dbd_port(self) -> int:
        return self.base_port + 7

    @property
    def node_port_lo(self) -> int:
        return self.base_port + 11

    @property
    def db_socket(self) -> Path:
        return self.base / "run" / "mariadb.sock"

    # ---- configuration ----------------------------------------------------------
    def write_config(self) -> None:
        super().write_config()
        b = self.base
        text = self.conf.read_text()
        text = _replace_once(
            text,
            "AccountingStorageType=accounting_storage/none\n",
            ACCOUNTING_CONF.format(base=b, dbd_port=self.dbd_port) + "\n",
        )
        old_ports = f"Port=[{self.base_port + 101}-{self.base_port + 100 + self.node_count}]"
        new_ports = f"Port=[{self.node_port_lo}-{self.node_port_lo + self.node_count - 1}]"
        text = _replace_once(text, old_ports, new_ports)
        self.conf.write_text(text)
        dbd_conf = b / "etc" / "slurmdbd.conf"
        # slurmdbd refuses a config file others can read (it may hold a password)
        fd = os.open(dbd_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(SLURMDBD_CONF.format(base=b, dbd_port=self.dbd_port, db_port=self.db_port))
        os.chmod(dbd_conf, 0o600)

    # ---- lifecycle ------------------------------------------------------------------
    def _spawn_acct(self, name: str, argv: list[str]) -> None:
        log = open(self.base / "log" / f"{name}.stdout", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        finally:
            log.close()
        self._acct_procs[name] = proc
        self.pids[name] = proc.pid

    def alive(self, name: str) -> bool:
        proc = self._acct_procs.get(name)
        if proc is not None:
            return proc.poll() is None
        return super().alive(name)

    def start_slurmctld(self, timeout: float = 30.0) -> None:
        # LocalSlurm.start() calls this once munged is up: the database,
        # slurmdbd and the cluster's accounts must exist before slurmctld
        if "slurmdbd" not in self._acct_procs:
            self.start_accounting(timeout)
        started = time.monotonic()
        super().start_slurmctld(timeout)
        self.timings["slurmctld"] = time.monotonic() - started

    def start_accounting(self, timeout: float = 30.0) -> None:
        b = self.base
        data = b / "mariadb"
        started = time.monotonic()
        if not data.exists():
            with open(b / "log" / "mariadb-install-db.log", "wb") as log:
                subprocess.run(
                    [
                        MARIADB_INSTALL_DB,
                        "--no-defaults",
                        f"--datadir={data}",
                        "--user=root",
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db",
                        *MARIADB_TUNING,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    check=True,
                    timeout=60,
                )
        self.timings["mariadb_install_db"] = time.monotonic() - started
        started = time.monotonic()
        self._spawn_acct(
            "mariadbd",
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--bind-address=127.0.0.1",
                f"--port={self.db_port}",
                f"--socket={self.db_socket}",
                f"--pid-file={b / 'run' / 'mariadb.pid'}",
                f"--log-error={b / 'log' / 'mariadb.err'}",
                *MARIADB_TUNING,
            ],
        )
        self._wait(self._db_answers, "MariaDB answering", timeout, "mariadbd")
        self.timings["mariadbd"] = time.monotonic() - started
        started = time.monotonic()
        self._spawn_acct("slurmdbd", [SLURMDBD, "-D"])
        self._wait(self._dbd_listening, "slurmdbd listening", timeout, "slurmdbd")
        self.timings["slurmdbd"] = time.monotonic() - started
        started = time.monotonic()
        self.sacctmgr("add", "cluster", self.cluster)
        self.timings["sacctmgr_add_cluster"] = time.monotonic() - started

    def _db_answers(self) -> bool:
        r = subprocess.run(
            [MARIADB, "--no-defaults", "-h", "127.0.0.1", "-P", str(self.db_port), "-u", "root", "-e", "SELECT 1"],
            capture_output=True,
            timeout=10,
        )
        return r.returncode == 0

    def _dbd_listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.dbd_port), timeout=1):
            return True
        return False

    def sacctmgr(self, *args: str) -> str:
        """sacctmgr -i (no confirmation prompt); fails on a non-zero exit."""
        r = self.run("sacctmgr", "-i", *args, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"sacctmgr {' '.join(args)}: rc {r.returncode}: {(r.stderr or r.stdout).strip()[:300]}")
        return r.stdout

    @property
    def decay_file(self) -> Path:
        """Written by slurmctld at the end of each priority decay pass."""
        return self.base / "state" / "priority_last_decay_ran"

    def restart_slurmctld(self, timeout: float = 30.0) -> None:
        """Stop slurmctld (SIGTERM: job state and usage are saved), start it
        again and wait until its first priority decay pass has finished (the
        nodes may still be re-registering)."""
        self._terminate(self._procs["slurmctld"], timeout)
        before = self.decay_file.stat().st_mtime_ns if self.decay_file.exists() else 0
        started = time.monotonic()
        super().start_slurmctld(timeout)

        def decayed() -> bool:
            return self.decay_file.exists() and self.decay_file.stat().st_mtime_ns > before

        self._wait(decayed, "the first priority decay pass", timeout, "slurmctld")
        self.timings["slurmctld_restart"] = time.monotonic() - started

    def settle_usage(self, timeout: float = 30.0) -> None:
        """Have slurmctld recompute fairshare from the usage so far (see the
        module docstring)."""
        self.restart_slurmctld(timeout)

    def set_priority_flags(self, flags: str, timeout: float = 30.0) -> None:
        """Set slurm.conf's PriorityFlags ("" for none: Fair Tree, the
        default; "NO_FAIR_TREE" for the classic algorithm) and restart
        slurmctld if that changed them."""
        if flags == self.priority_flags:
            return
        lines = [ln for ln in self.conf.read_text().splitlines() if not ln.startswith("PriorityFlags=")]
        if flags:
            lines.insert(1, f"PriorityFlags={flags}")
        self.conf.write_text("\n".join(lines) + "\n")
        self.priority_flags = flags
        self.restart_slurmctld(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """LocalSlurm's teardown (jobs, slurmctld, slurmd, munged), then
        slurmdbd and MariaDB: each waited for by PID, SIGKILL after timeout."""
        try:
            super().stop(timeout)
        finally:
            for name in ("slurmdbd", "mariadbd"):
                proc = self._acct_procs.pop(name, None)
                if proc is not None:
                    self._terminate(proc, timeout)
            for proc in self._acct_procs.values():
                self._terminate(proc, timeout)
            self._acct_procs.clear()


# ---- the accounting scenario ---------------------------------------------------------
# accounts and their shares (sacctmgr's fairshare=); the cluster's root
# account and the root user in it come with `sacctmgr add cluster`
ACCOUNT_SHARES = {"physics": 3, "chem": 1}
# (user, accounts, default account); TEST_USER is a second, non-root user
USERS = (("root", ("physics",), None), (TEST_USER, ("chem", "physics"), "chem"))
# (user, account, CPUs, seconds), chosen so that the Fair Tree order holds
# however long `sleep` takes on a loaded machine: in physics root's job uses
# 8 CPU-seconds or more, the second user's 1 CPU for as long as its sleep;
# chem's job at least 16 CPU-seconds on a third of physics' shares
JOBS = (
    ("root", "physics", 8, 1),
    (TEST_USER, "chem", 8, 2),
    (TEST_USER, "physics", 1, 1),
)


@dataclass(frozen=True)
class JobRecord:
    """One finished job as slurmdbd recorded it (sacct)."""

    job_id: int
    user: str
    account: str
    cpus: int
    elapsed: int
    state: str


def build_usage(cluster: AccountingSlurm, timeout: float = 30.0) -> list[JobRecord]:
    """Accounts, users, and short jobs under each of them; returns the jobs
    as sacct reports them once all have finished, and slurmctld has
    recomputed fairshare with their usage."""
    for account, shares in ACCOUNT_SHARES.items():
        cluster.sacctmgr("add", "account", account, f"fairshare={shares}")
    for user, accounts, default in USERS:
        args = ["add", "user", user, f"account={','.join(accounts)}"]
        if default:
            args.append(f"defaultaccount={default}")
        cluster.sacctmgr(*args)
    ids = []
    for user, account, cpus, seconds in JOBS:
        ids.append(
            cluster.sbatch(
                "-A",
                account,
                "-c",
                str(cpus),
                "-p",
                "batch",
                user=None if user == "root" else user,
                wrap=f"sleep {seconds}",
            )
        )

    def finished() -> list[JobRecord] | None:
        out = cluster.run(
            "sacct",
            "-a",
            "-X",
            "-n",
            "-P",
            "-j",
            ",".join(map(str, ids)),
            "-o",
            "JobID,User,Account,AllocCPUS,ElapsedRaw,State",
        ).stdout
        jobs = []
        for line in out.splitlines():
            job_id, user, account, cpus, elapsed, state = line.split("|")
            jobs.append(JobRecord(int(job_id), user, account, int(cpus), int(elapsed), state))
        if len(jobs) == len(ids) and all(j.state == "COMPLETED" for j in jobs):
            return jobs
        return None

    records: list[JobRecord] = []

    def done() -> bool:
        if cluster.run("squeue", "-h", "-o", "%A").stdout.strip():
            return False
        found = finished()
        if found is not None:
            records[:] = found
        return found is not None

    started = time.monotonic()
    cluster._wait(done, "the jobs finished and recorded by slurmdbd", timeout, "slurmctld")
    cluster.timings["jobs"] = time.monotonic() - started
    cluster.settle_usage(timeout)
    return records


def new_cluster(base: Path, base_port: int = 17300) -> AccountingSlurm:
    """Two nodes of 16 CPUs (all the jobs run at once) in one partition, `batch`."""
    return AccountingSlurm(
        base,
        base_port=base_port,
        cluster="acct",
        node_count=2,
        cpus=16,
        partitions=("batch Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP",),
    )
