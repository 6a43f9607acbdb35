"""The scripted cluster state the real-Slurm tests assert on, with the exact
numbers expected from it (worked out by hand below, not read back from the
collectors).

Cluster: node1-8 run a slurmd, node9-10 are CLOUD nodes (powered down, no
slurmd); every node has 8 CPUs and 4 (fake) GPUs.

    gpu    node[1-3]   J1 (2 CPUs, 2 GPUs) + array J2 1-8 (1 GPU each) running:
                       10 CPUs, 10 GPUs on 3 nodes; no node can be full
                       (at most 4 GPUs = at most 4 of these CPUs per node),
                       so all 3 are mixed. Pending: J3 -N3 gpu:4 (Resources),
                       J4 held, J5 begin later, J6 -N5 (PartitionNodeLimit),
                       J7 afterok:J3 (Dependency, second user)
    cpu    node4       J8, J9 (-c 4 each, second user) fill it: allocated;
                       J10 -c 2 pending (Resources); J11 held in cpu AND we|rd
    we|rd  node4       a partition name with the delimiter in it; H1-H5 held
                       there by the second user: hostile names, comments and
                       accounts (delimiter, newlines, quotes, braces,
                       non-ASCII, 1 KB: the most sbatch takes)
    debug  node5       idle; J14 completed, J15 failed, J16 cancelled
    maint  node[6-8]   node6 draining (J12 running, then drain), node7
                       drained, node8 down
    cloud  node[9-10]  J13 -w node9: node9 powering up (mixed#), J13
                       CONFIGURING; node10 powered down (idle~)
    all    node[1-10]  overlaps every other partition: no job of its own
"""

from __future__ import annotations

import time

from localslurm import TEST_USER, LocalSlurm

PARTITIONS = (
    "gpu Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP",
    "cpu Nodes=node4 MaxTime=INFINITE State=UP",
    "we|rd Nodes=node4 MaxTime=INFINITE State=UP",
    "debug Nodes=node5 MaxTime=INFINITE State=UP",
    "maint Nodes=node[6-8] MaxTime=INFINITE State=UP",
    "cloud Nodes=node[9-10] MaxTime=INFINITE State=UP",
    "all Nodes=node[1-10] MaxTime=INFINITE State=UP",
)

# Slurm 22.05 refuses a job name, comment or account over 1024 bytes ("Pathname
# of a file, directory or other parameter too long"): the real jobs carry the
# longest it takes; the parser's own tests feed 10 KB values.
LONG = 'x|y\n{"q"}é' * 93  # 1023 bytes of UTF-8
# (job name, comment, account) of H1-H5; sbatch gets them as argv items
HOSTILE = (
    ("a|b|c", "x|y", "acc|one"),
    ("line1\nline2", "c\nd", "acc\nnl"),
    ('{"q": "x\'y"}', "{}[]()", '"q"{b}'),
    ("jöb-名前", "ünïcödé", "grün-アカウント"),
    (LONG, LONG, "z" * 1024),
)
# what the account label of each becomes: at most 48 bytes, control
# characters replaced
HOSTILE_ACCOUNT_LABELS = ("acc|one", "acc?nl", '"q"{b}', "grün-アカウント", "z" * 48)


def new_cluster(base: object, base_port: int = 16817) -> LocalSlurm:
    from pathlib import Path

    return LocalSlurm(Path(str(base)), base_port=base_port, node_count=8, cloud_nodes=2, partitions=PARTITIONS)


def _wait(cond: object, what: str, cluster: LocalSlurm, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        if not cluster.alive("slurmctld"):
            raise RuntimeError(f"slurmctld died while waiting for {what}")
        time.sleep(0.1)
    raise TimeoutError(f"scenario: timed out waiting for {what}: {cluster.node_states()} {job_states(cluster)}")


def job_states(cluster: LocalSlurm) -> dict[str, tuple[str, str]]:
    """Job id ("12", or "12_3" for an array task) -> (state, reason)."""
    out = cluster.run("squeue", "-h", "-t", "all", "-r", "-o", "%i|%T|%r").stdout
    states: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        jobid, state, reason = line.split("|", 2)
        states[jobid] = (state, reason)
    return states


def build(cluster: LocalSlurm) -> dict[str, int]:
    """Submit the job mix and set node states; returns the job ids by name."""
    u = TEST_USER
    sb = cluster.sbatch
    ids: dict[str, int] = {}
    ids["J1"] = sb("-p", "gpu", "--gres=gpu:2", "-c", "2")
    ids["J2"] = sb("-p", "gpu", "--array=1-8", "--gres=gpu:1")
    ids["J12"] = sb("-p", "maint", "-w", "node6", "-c", "1")
    ids["J8"] = sb("-p", "cpu", "-c", "4", user=u)
    ids["J9"] = sb("-p", "cpu", "-c", "4", user=u)
    ids["J14"] = sb("-p", "debug", wrap="true")
    ids["J15"] = sb("-p", "debug", wrap="false", user=u)
    ids["J13"] = sb("-p", "cloud", "-w", "node9")
    # wait for the running ones before queueing what must stay pending
    running = ("J1", "J12", "J8", "J9")

    def state(st: dict[str, tuple[str, str]], name: str) -> str:
        return st.get(str(ids[name]), ("", ""))[0]

    def started() -> bool:
        st = job_states(cluster)
        tasks = [k for k, v in st.items() if k.startswith(f"{ids['J2']}_") and v[0] == "RUNNING"]
        ok = all(state(st, name) == "RUNNING" for name in running) and len(tasks) == 8
        done = state(st, "J14") == "COMPLETED" and state(st, "J15") == "FAILED"
        return ok and done and state(st, "J13") == "CONFIGURING"

    _wait(started, "the running jobs", cluster)
    ids["J3"] = sb("-p", "gpu", "-N", "3", "--gres=gpu:4")
    ids["J4"] = sb("-p", "gpu", "--hold")
    ids["J5"] = sb("-p", "gpu", "--begin=now+3600")
    ids["J6"] = sb("-p", "gpu", "-N", "5")
    ids["J7"] = sb("-p", "gpu", f"--dependency=afterok:{ids['J3']}", user=u)
    ids["J10"] = sb("-p", "cpu", "-c", "2", user=u)
    ids["J11"] = sb("-p", "cpu,we|rd", "--hold", user=u)
    for i, (name, comment, account) in enumerate(HOSTILE, 1):
        ids[f"H{i}"] = sb(
            "-p", "we|rd", "--hold", f"--job-name={name}", f"--comment={comment}", f"--account={account}", user=u
        )
    ids["J16"] = sb("-p", "debug", "--hold")
    cluster.run("scancel", str(ids["J16"]))
    cluster.scontrol("update", "nodename=node6", "state=drain", "reason=scenario")
    cluster.scontrol("update", "nodename=node7", "state=drain", "reason=scenario")
    cluster.scontrol("update", "nodename=node8", "state=down", "reason=scenario")
    expected_reasons = {
        "J3": "Resources",
        "J4": "JobHeldUser",
        "J5": "BeginTime",
        "J6": "PartitionNodeLimit",
        "J7": "Dependency",
        "J10": "Resources",
        "J11": "JobHeldUser",
    }

    def settled() -> bool:
        st = job_states(cluster)
        nodes = cluster.node_states()
        if state(st, "J16") != "CANCELLED":
            return False
        for name, reason in expected_reasons.items():
            if st.get(str(ids[name])) != ("PENDING", reason):
                return False
        return bool(
            nodes
            == {
                "node1": "mixed",
                "node2": "mixed",
                "node3": "mixed",
                "node4": "allocated",
                "node5": "idle",
                "node6": "draining",
                "node7": "drained",
                "node8": "down",
                "node9": "mixed#",
                "node10": "idle~",
            }
        )

    _wait(settled, "the pending reasons and node states", cluster)
    return ids


# ---- expected numbers ------------------------------------------------------

EXPECTED_NODES = {
    "slurm_nodes_mix": 3,
    "slurm_nodes_alloc": 1,
    "slurm_nodes_idle": 1,
    "slurm_nodes_drain": 2,
    "slurm_nodes_draining": 1,
    "slurm_nodes_down": 1,
    "slurm_nodes_powering_up": 1,
    "slurm_nodes_powered_down": 1,
    "slurm_nodes_powering_down": 0,
    "slurm_nodes_not_responding": 0,
    "slurm_nodes_comp": 0,
    "slurm_nodes_fail": 0,
    "slurm_nodes_maint": 0,
    "slurm_nodes_other": 0,
    "slurm_nodes_total": 10,
    "slurm_cpus_alloc": 20,
    "slurm_cpus_idle": 22,
    "slurm_cpus_other": 38,
    "slurm_cpus_total": 80,
    "slurm_gpus_alloc": 10,
    "slurm_gpus_idle": 10,
    "slurm_gpus_other": 20,
    "slurm_gpus_total": 40,
    "slurm_gpus_utilization": 0.25,
}

# partition -> {family suffix: value}; families slurm_partition_nodes_<k>,
# slurm_partition_{cpus,gpus}_<k>
_ALL: dict[str, float] = {
    "nodes_mix": 3, "nodes_alloc": 1, "nodes_idle": 1, "nodes_drain": 2, "nodes_draining": 1,
    "nodes_down": 1, "nodes_powering_up": 1, "nodes_powered_down": 1, "nodes_total": 10,
    "cpus_allocated": 20, "cpus_idle": 22, "cpus_other": 38, "cpus_total": 80,
    "gpus_allocated": 10, "gpus_idle": 10, "gpus_other": 20, "gpus_total": 40,
}  # fmt: skip
EXPECTED_PARTITIONS: dict[str, dict[str, float]] = {
    "gpu": {
        "nodes_mix": 3, "nodes_idle": 0, "nodes_total": 3,
        "cpus_allocated": 10, "cpus_idle": 14, "cpus_other": 0, "cpus_total": 24,
        "gpus_allocated": 10, "gpus_idle": 2, "gpus_other": 0, "gpus_total": 12,
    },
    "cpu": {
        "nodes_alloc": 1, "nodes_total": 1,
        "cpus_allocated": 8, "cpus_idle": 0, "cpus_other": 0, "cpus_total": 8,
        "gpus_allocated": 0, "gpus_idle": 4, "gpus_other": 0, "gpus_total": 4,
    },
    "we|rd": {
        "nodes_alloc": 1, "nodes_total": 1,
        "cpus_allocated": 8, "cpus_idle": 0, "cpus_other": 0, "cpus_total": 8,
        "gpus_allocated": 0, "gpus_idle": 4, "gpus_other": 0, "gpus_total": 4,
    },
    "debug": {
        "nodes_idle": 1, "nodes_total": 1,
        "cpus_allocated": 0, "cpus_idle": 8, "cpus_other": 0, "cpus_total": 8,
        "gpus_allocated": 0, "gpus_idle": 4, "gpus_other": 0, "gpus_total": 4,
    },
    "maint": {
        "nodes_drain": 2, "nodes_draining": 1, "nodes_down": 1, "nodes_idle": 0, "nodes_total": 3,
        "cpus_allocated": 1, "cpus_idle": 0, "cpus_other": 23, "cpus_total": 24,
        "gpus_allocated": 0, "gpus_idle": 0, "gpus_other": 12, "gpus_total": 12,
    },
    "cloud": {
        "nodes_powering_up": 1, "nodes_powered_down": 1, "nodes_idle": 0, "nodes_down": 0, "nodes_total": 2,
        "cpus_allocated": 1, "cpus_idle": 0, "cpus_other": 15, "cpus_total": 16,
        "gpus_allocated": 0, "gpus_idle": 0, "gpus_other": 8, "gpus_total": 8,
    },
    "all": _ALL,
}  # fmt: skip

EXPECTED_QUEUE = {
    "slurm_queue_running": 12,
    "slurm_queue_pending": 12,
    "slurm_queue_pending_dependency": 1,
    "slurm_queue_configuring": 1,
    "slurm_queue_completed": 1,
    "slurm_queue_failed": 1,
    "slurm_queue_cancelled": 1,
    "slurm_queue_suspended": 0,
    "slurm_queue_completing": 0,
    "slurm_queue_other": 0,
    "slurm_queue_total": 25,
    "slurm_queue_cpus_pending": 19,
    "slurm_queue_cpus_running": 19,
}
EXPECTED_REASONS = {"Resources": 2, "JobHeldUser": 7, "BeginTime": 1, "PartitionNodeLimit": 1, "Dependency": 1}
# partition -> {state: jobs}; a job pending in cpu AND we|rd counts in both
EXPECTED_PARTITION_JOBS = {
    "gpu": {"running": 9, "pending": 5, "pending_dependency": 1, "total": 14},
    "cpu": {"running": 2, "pending": 2, "total": 4},
    "we|rd": {"running": 0, "pending": 6, "total": 6},
    "debug": {"completed": 1, "failed": 1, "cancelled": 1, "total": 0},
    "maint": {"running": 1, "total": 1},
    "cloud": {"configuring": 1, "total": 1},
    "all": {"running": 0, "pending": 0, "total": 0},
}
EXPECTED_PARTITION_REASONS = {
    ("gpu", "Resources"): 1,
    ("gpu", "JobHeldUser"): 1,
    ("gpu", "BeginTime"): 1,
    ("gpu", "PartitionNodeLimit"): 1,
    ("gpu", "Dependency"): 1,
    ("cpu", "Resources"): 1,
    ("cpu", "JobHeldUser"): 1,
    ("we|rd", "JobHeldUser"): 6,
}
EXPECTED_USERS = {
    "root": {"jobs_running": 10, "jobs_pending": 4, "cpus_running": 11, "gpus_running": 10},
    TEST_USER: {"jobs_running": 2, "jobs_pending": 8, "cpus_running": 8, "gpus_running": 0},
}
# every job without --account has none (no accounting database)
EXPECTED_ACCOUNTS = {
    "(none)": {"jobs_running": 12, "jobs_pending": 7},
    **{label: {"jobs_running": 0, "jobs_pending": 1} for label in HOSTILE_ACCOUNT_LABELS},
}


# ---- checks shared by the live tests and the captured-output tests ------------

Samples = dict[str, dict[tuple[str, ...], float]]
NODE_STATE_FAMILIES = tuple(
    f"slurm_nodes_{k}"
    for k in ("alloc", "comp", "down", "drain", "err", "fail", "idle", "inval", "maint", "mix", "resv",
              "planned", "other", "powered_down", "powering_up", "powering_down")
)  # fmt: skip


def check_nodes(s: Samples) -> None:
    for name, expected in EXPECTED_NODES.items():
        assert s[name][()] == expected, (name, s[name][()], expected)
    for part, values in EXPECTED_PARTITIONS.items():
        for key, expected in values.items():
            got = s[f"slurm_partition_{key}"][(part,)]
            assert got == expected, (part, key, got, expected)
    # every node is in exactly one state: the state families add up
    assert sum(s[n][()] for n in NODE_STATE_FAMILIES) == s["slurm_nodes_total"][()]
    assert s["nodeagent_slurm_malformed_records"][("sinfo",)] == 0


def check_queue(s: Samples) -> None:
    for name, expected in EXPECTED_QUEUE.items():
        assert s[name][()] == expected, (name, s[name][()], expected)
    assert s["slurm_queue_pending_reason"] == {(r,): n for r, n in EXPECTED_REASONS.items()}
    for part, states in EXPECTED_PARTITION_JOBS.items():
        for state, expected in states.items():
            got = s[f"slurm_partition_jobs_{state}"][(part,)]
            assert got == expected, (part, state, got, expected)
    assert s["slurm_partition_jobs_pending_reason"] == dict(EXPECTED_PARTITION_REASONS)
    assert s["nodeagent_slurm_malformed_records"][("squeue",)] == 0


def check_owners(s: Samples) -> None:
    for user, values in EXPECTED_USERS.items():
        for key, expected in values.items():
            assert s[f"slurm_user_{key}"][(user,)] == expected, (user, key)
    for account, values in EXPECTED_ACCOUNTS.items():
        for key, expected in values.items():
            assert s[f"slurm_account_{key}"][(account,)] == expected, (account, key)
    assert set(s["slurm_account_jobs_pending"]) == {(a,) for a in EXPECTED_ACCOUNTS}
