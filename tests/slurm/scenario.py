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

Licenses fluent:10 (J12 holds 3) and matlab:2; reservation `maint_window`
on node[6-8] (active, IGNORE_JOBS: it changes no node state).
"""

from __future__ import annotations

import time

from localslurm import TEST_USER, LocalSlurm

from nodeagent.catalogue.slurm import EXPORTER_JOB_STATES
from nodeagent.collectors.slurm.labels import bounded

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
# what the account label of each becomes: control characters replaced, and
# at most 48 bytes: squeue gives the first 256 bytes of the 1 KB one, whose
# label keeps 39 of them and a hash of all 256
HOSTILE_ACCOUNT_LABELS = ("acc|one", "acc?nl", '"q"{b}', "grün-アカウント", bounded("z" * 256))


def new_cluster(base: object, base_port: int = 16817) -> LocalSlurm:
    from pathlib import Path

    return LocalSlurm(
        Path(str(base)),
        base_port=base_port,
        node_count=8,
        cloud_nodes=2,
        partitions=PARTITIONS,
        extra="Licenses=fluent:10,matlab:2\n",
    )


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
    ids["J12"] = sb("-p", "maint", "-w", "node6", "-c", "1", "-L", "fluent:3")
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
    cluster.scontrol(
        "create", "reservation", "reservationname=maint_window", "starttime=now", "duration=infinite",
        "nodes=node[6-8]", "users=root", "flags=ignore_jobs",
    )  # fmt: skip
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

# cluster-wide node counts, each node once (slurm_cluster_nodes_<key>, and
# vpenso's slurm_nodes_<key>)
EXPECTED_NODES = {
    "mix": 3, "alloc": 1, "idle": 1, "drain": 2, "draining": 1, "down": 1, "powering_up": 1,
    "powered_down": 1, "powering_down": 0, "not_responding": 0, "comp": 0, "fail": 0, "maint": 0,
    "other": 0, "total": 10,
}  # fmt: skip
# CPUs and GPUs cluster-wide: as sinfo %C counts them (slurm.powered_down_idle:
# idle, the default) the idle CPUs of node9 (mixed#, 7) and node10 (idle~, 8)
# are idle, and so are the free GPUs of every node with no CPU counted other
# (node3 2, node4 4, node5 4, node9 4, node10 4); usable: neither
EXPECTED_CPUS = {
    "slurm_cpus_alloc": 20, "slurm_cpus_total": 80, "slurm_gpus_alloc": 10, "slurm_gpus_total": 40,
    "slurm_gpus_utilization": 0.25, "slurm_cpus_idle_usable": 22, "slurm_gpus_idle_usable": 10,
}  # fmt: skip
EXPECTED_IDLE = {
    "idle": {"slurm_cpus_idle": 37, "slurm_cpus_other": 23, "slurm_gpus_idle": 18, "slurm_gpus_other": 12},
    "other": {"slurm_cpus_idle": 22, "slurm_cpus_other": 38, "slurm_gpus_idle": 10, "slurm_gpus_other": 20},
}

# partition -> {family suffix: value}; families slurm_partition_nodes_<k>,
# slurm_partition_{cpus,gpus}_<k>; the idle/other split of cloud and all
# depends on slurm.powered_down_idle (PARTITION_IDLE)
_ALL: dict[str, float] = {
    "nodes_mix": 3, "nodes_alloc": 1, "nodes_idle": 1, "nodes_drain": 2, "nodes_draining": 1,
    "nodes_down": 1, "nodes_powering_up": 1, "nodes_powered_down": 1, "nodes_total": 10,
    "cpus_allocated": 20, "cpus_idle_usable": 22, "cpus_total": 80,
    "gpus_allocated": 10, "gpus_idle_usable": 10, "gpus_total": 40,
}  # fmt: skip
EXPECTED_PARTITIONS: dict[str, dict[str, float]] = {
    "gpu": {
        "nodes_mix": 3, "nodes_idle": 0, "nodes_total": 3,
        "cpus_allocated": 10, "cpus_idle": 14, "cpus_idle_usable": 14, "cpus_other": 0, "cpus_total": 24,
        "gpus_allocated": 10, "gpus_idle": 2, "gpus_idle_usable": 2, "gpus_other": 0, "gpus_total": 12,
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
        "cpus_allocated": 1, "cpus_idle_usable": 0, "cpus_total": 16,
        "gpus_allocated": 0, "gpus_idle_usable": 0, "gpus_total": 8,
    },
    "all": _ALL,
}  # fmt: skip
PARTITION_IDLE = {
    "idle": {
        "cloud": {"cpus_idle": 15, "cpus_other": 0, "gpus_idle": 8, "gpus_other": 0},
        "all": {"cpus_idle": 37, "cpus_other": 23, "gpus_idle": 18, "gpus_other": 12},
    },
    "other": {
        "cloud": {"cpus_idle": 0, "cpus_other": 15, "gpus_idle": 0, "gpus_other": 8},
        "all": {"cpus_idle": 22, "cpus_other": 38, "gpus_idle": 10, "gpus_other": 20},
    },
}
# SckyzO's slurm_nodes_<state>{partition, active_feature_set}: the nodes of
# each partition in the exporters' states (power states are counted apart)
EXPECTED_NODE_SETS = {
    ("gpu", "null"): {"mix": 3},
    ("cpu", "null"): {"alloc": 1},
    ("we|rd", "null"): {"alloc": 1},
    ("debug", "null"): {"idle": 1},
    ("maint", "null"): {"drain": 2, "down": 1},
    ("cloud", "null"): {},
    ("all", "null"): {"mix": 3, "alloc": 1, "idle": 1, "drain": 2, "down": 1},
}
EXPECTED_LICENSES = {"fluent": (10, 3, 7, 0), "matlab": (2, 0, 2, 0)}  # total, used, free, reserved
EXPECTED_RESERVATION_NODES = {"drain": 2, "down": 1, "alloc": 0, "idle": 0, "mix": 0, "healthy": 0}

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
NODE_STATES = ("alloc", "comp", "down", "drain", "err", "fail", "idle", "inval", "maint", "mix", "resv",
               "planned", "other", "powered_down", "powering_up", "powering_down")  # fmt: skip
NODE_STATE_FAMILIES = tuple(f"slurm_cluster_nodes_{k}" for k in NODE_STATES)


def check_nodes(s: Samples, naming: str = "sckyzo", powered_down_idle: str = "idle") -> None:
    for key, expected in EXPECTED_NODES.items():
        got = s[f"slurm_cluster_nodes_{key}"][()]
        assert got == expected, (key, got, expected)
        if naming == "vpenso" or key in ("draining", "not_responding", "total", "powered_down", "powering_up",
                                         "powering_down"):  # fmt: skip
            assert s[f"slurm_nodes_{key}"][()] == expected, key
    for name, want in {**EXPECTED_CPUS, **EXPECTED_IDLE[powered_down_idle]}.items():
        assert s[name][()] == want, (name, s[name][()], want)
    for part, values in EXPECTED_PARTITIONS.items():
        for key, want in {**values, **PARTITION_IDLE[powered_down_idle].get(part, {})}.items():
            got = s[f"slurm_partition_{key}"][(part,)]
            assert got == want, (part, key, got, want)
    # every node is in exactly one state: the state families add up
    assert sum(s[n][()] for n in NODE_STATE_FAMILIES) == s["slurm_cluster_nodes_total"][()]
    if naming == "sckyzo":
        for (part, features), counts in EXPECTED_NODE_SETS.items():
            for state in NODE_STATES[:13]:
                got = s[f"slurm_nodes_{state}"][(part, features)]
                assert got == counts.get(state, 0), (part, features, state, got)
        assert {k for k in s["slurm_nodes_idle"]} == set(EXPECTED_NODE_SETS)
    assert s["nodeagent_slurm_malformed_records"][("sinfo",)] == 0


def check_queue(s: Samples, naming: str = "sckyzo") -> None:
    for name, expected in EXPECTED_QUEUE.items():
        # sckyzo: slurm_queue_<state> per user and partition; each job in one series
        assert sum(s[name].values()) == expected, (name, s[name], expected)
        if naming == "vpenso" or name.removeprefix("slurm_queue_") not in EXPORTER_JOB_STATES:
            assert s[name][()] == expected, (name, s[name][()], expected)
    if naming == "sckyzo":
        for name, expected in EXPECTED_QUEUE.items():
            state = name.removeprefix("slurm_queue_")
            if f"slurm_jobs_{state}" in s:
                assert s[f"slurm_jobs_{state}"][()] == expected, state
        assert s["slurm_jobs_cores_running"][()] == EXPECTED_QUEUE["slurm_queue_cpus_running"]
        assert s["slurm_jobs_cores_pending"][()] == EXPECTED_QUEUE["slurm_queue_cpus_pending"]
        for user, values in EXPECTED_USERS.items():
            running = sum(v for (u, _), v in s["slurm_queue_running"].items() if u == user)
            pending = sum(v for (u, _, _), v in s["slurm_queue_pending"].items() if u == user)
            assert (running, pending) == (values["jobs_running"], values["jobs_pending"]), user
        # a job pending in two partitions is one series, under squeue's list
        assert s["slurm_queue_pending"][(TEST_USER, "cpu,we|rd", "JobHeldUser")] == 1
        assert s["slurm_cores_running"][("root", "gpu")] == 10
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
