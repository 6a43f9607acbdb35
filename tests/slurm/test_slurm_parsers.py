"""Slurm parsers against outputs captured from a real Slurm (one directory
per Slurm version under tests/fixtures/slurm/, written by
tests/slurm/capture_fixtures.py from the scripted scenario), plus generated
streams for what a real cluster cannot produce (10 KB values: sbatch refuses
more than 1 KB; 100k jobs). No Slurm needed."""

from __future__ import annotations

import hashlib
import math
import time
import tracemalloc
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import scenario
from slurm_helpers import samples

from nodeagent.collectors.slurm.gres import gpu_count, split_top_level
from nodeagent.collectors.slurm.labels import bounded
from nodeagent.collectors.slurm.sdiag import parse_sdiag, sdiag_families
from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.collectors.slurm.sinfo import classify_state, parse_sinfo, sinfo_families
from nodeagent.collectors.slurm.squeue import (
    ACCOUNT_WIDTH,
    OTHER,
    REASON_WIDTH,
    USER_WIDTH,
    RecordCounter,
    SqueueFormat,
    aggregate,
    normalise_reason,
    parse_squeue_stream,
    queue_families,
)
from nodeagent.collectors.slurm.sshare import parse_sshare, sshare_families

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"
VERSIONS = sorted(p for p in FIXTURES.iterdir() if (p / "VERSION").exists())


@pytest.fixture(params=VERSIONS, ids=[p.name for p in VERSIONS])
def fx(request: pytest.FixtureRequest) -> Path:
    return request.param  # type: ignore[no-any-return]


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


# ---- sinfo ---------------------------------------------------------------------


@pytest.mark.parametrize("naming", ["sckyzo", "vpenso"])
@pytest.mark.parametrize("idle", ["idle", "other"])
def test_sinfo_scenario_counts(fx: Path, naming: str, idle: str) -> None:
    settings = SlurmSettings(naming=naming, powered_down_idle=idle)  # type: ignore[arg-type]
    parsed = parse_sinfo((fx / "sinfo_scenario.txt").read_text())
    scenario.check_nodes(samples(sinfo_families(parsed, settings)), naming, idle)


def test_sinfo_power_down_steps_never_idle(fx: Path) -> None:
    """node5 (debug, the only idle node) powered down for real: idle! then
    idle% then idle~ (captured in turn). It stops being idle at once."""
    steps = sorted(fx.glob("sinfo_power_down_*.txt"))
    assert [p.name.split("_", 4)[-1] for p in steps] == [
        "pending.txt",
        "powering_down.txt",
        "powered_down.txt",
    ]
    for path in steps:
        text = path.read_text()
        s = samples(sinfo_families(parse_sinfo(text)))
        assert s["slurm_cluster_nodes_idle"][()] == 0, path.name
        assert s["slurm_partition_nodes_idle"][("debug",)] == 0
        assert s["slurm_cluster_nodes_down"][()] == 1  # node8 only, never the powered-down node
        assert s["slurm_cpus_idle_usable"][()] == 14  # node5's 8 CPUs are no longer idle capacity
        assert s["slurm_gpus_idle_usable"][()] == 6
        # slurm_cpus_idle follows sinfo %C: the I of CPUsState, each node once
        by_node = {ln.split("|")[7]: ln.split("|")[1] for ln in text.splitlines()}
        assert s["slurm_cpus_idle"][()] == sum(int(c.split("/")[1]) for c in by_node.values()) == 37
        powered_down = "powered_down" in path.name
        assert s["slurm_nodes_powering_down"][()] == (0 if powered_down else 1)
        assert s["slurm_nodes_powered_down"][()] == (2 if powered_down else 1)  # + node10


def test_sinfo_not_responding_steps(fx: Path) -> None:
    """node2's slurmd killed (captured in turn): idle -> idle* -> down*."""
    steps = sorted(fx.glob("sinfo_no_response_*.txt"))
    assert [p.name.split("_", 4)[-1] for p in steps] == [
        "idle.txt",
        "idle_not_responding.txt",
        "down_not_responding.txt",
    ]
    expect = [  # (idle, other, down, not_responding, usable CPUs idle, sinfo's CPUs idle, other)
        (3, 0, 0, 0, 24, 24, 0),
        (2, 1, 0, 1, 16, 24, 0),  # idle* is neither idle capacity nor (yet) down; sinfo counts it idle
        (2, 0, 1, 1, 16, 16, 8),
    ]
    for path, want in zip(steps, expect, strict=True):
        s = samples(sinfo_families(parse_sinfo(path.read_text())))
        names = ("slurm_cluster_nodes_idle", "slurm_cluster_nodes_other", "slurm_cluster_nodes_down",
                 "slurm_cluster_nodes_not_responding", "slurm_cpus_idle_usable", "slurm_cpus_idle",
                 "slurm_cpus_other")  # fmt: skip
        got = tuple(s[n][()] for n in names)
        assert got == want, path.name


@pytest.mark.parametrize(
    ("state", "bucket", "not_responding", "draining"),
    [
        # strings as sinfo %T prints them (Slurm's node_state_string), not captured
        ("idle", "idle", False, False),
        ("idle~", "powered_down", False, False),
        ("down~", "powered_down", False, False),
        ("idle#", "powering_up", False, False),
        ("allocated#", "powering_up", False, False),
        ("mixed#", "powering_up", False, False),
        ("idle%", "powering_down", False, False),
        ("idle!", "powering_down", False, False),
        ("idle*", "other", True, False),
        ("down*", "down", True, False),
        ("mixed*", "mix", True, False),
        ("drained*", "drain", True, False),
        ("draining", "drain", False, True),
        ("drained", "drain", False, False),
        ("allocated", "alloc", False, False),
        ("mixed", "mix", False, False),
        ("completing", "comp", False, False),
        ("fail", "fail", False, False),
        ("failing", "fail", False, False),
        ("maint", "maint", False, False),
        ("idle$", "maint", False, False),
        ("reserved", "resv", False, False),
        ("planned", "planned", False, False),
        ("inval", "inval", False, False),
        ("unknown", "other", False, False),
        ("future", "other", False, False),
        ("reboot^", "other", False, False),
        ("idle@", "idle", False, False),
        # StateComplete style
        ("idle+cloud+powered_down", "powered_down", False, False),
        ("mixed+drain", "drain", False, True),
        ("IDLE~", "powered_down", False, False),
    ],
)
def test_classify_state(state: str, bucket: str, not_responding: bool, draining: bool) -> None:
    st = classify_state(state)
    assert (st.bucket, st.not_responding, st.draining) == (bucket, not_responding, draining)


def test_sinfo_not_responding_and_odd_lines() -> None:
    text = (
        "idle*|0/8/0/8|gpu:4|gpu:0|0|64000||n1|p\n"
        "mixed*|2/6/0/8|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|0|64000||n2|p\n"
        "mixed|2/6/0/8|gpu:a100:2,gpu:v100:2|gpu:a100:1(IDX:0),gpu:v100:2(IDX:2-3)|100|64000|b,a|n3|p|x\n"
        "this is not sinfo output\n"
        "idle|a/b/c/d|gpu:4|gpu:0|0|64000||n4|p\n"
    )
    parsed = parse_sinfo(text)
    s = samples(sinfo_families(parsed, SlurmSettings(powered_down_idle="other")))
    assert s["slurm_cluster_nodes_not_responding"][()] == 2
    assert s["slurm_cluster_nodes_idle"][()] == 0
    assert s["slurm_cluster_nodes_other"][()] == 1
    assert s["slurm_cluster_nodes_mix"][()] == 2
    assert s["slurm_nodes_mix"] == {("p", "null"): 1, ("p|x", "a,b"): 1}
    # unresponsive nodes' idle CPUs/GPUs are not idle capacity
    assert s["slurm_cpus_idle"][()] == 6
    assert s["slurm_cpus_other"][()] == 8 + 6
    assert s["slurm_gpus_total"][()] == 12
    assert s["slurm_gpus_alloc"][()] == 4
    assert s["slurm_gpus_idle"][()] == 1
    assert s["slurm_gpus_other"][()] == 4 + 3
    # a "|" in a partition name stays in the partition name (it comes last)
    assert s["slurm_partition_nodes_total"][("p|x",)] == 1
    assert s["nodeagent_slurm_malformed_records"][("sinfo",)] == 2


@pytest.mark.parametrize(
    ("spec", "count"),
    [
        ("gpu:4", 4),
        ("gpu:a100:8(S:0-1)", 8),
        ("gpu:a100:4,gpu:v100:2", 6),
        ("gpu:a100:3(IDX:0-1,3),gpu:v100:0(IDX:N/A)", 3),
        ("gpu:0", 0),
        ("(null)", 0),
        ("N/A", 0),
        ("", 0),
        ("gres:gpu:2", 2),
        ("gres/gpu:2", 2),
        ("gres/gpu:a100=2", 2),
        ("gres:gpu", 1),
        ("gres:gpu:a100", 1),
        ("gpu:1K", 1024),
        ("nvme:1,gpu:2", 2),
        ("mps:100", 0),
    ],
)
def test_gpu_count(spec: str, count: int) -> None:
    assert gpu_count(spec) == count


def test_gpu_count_unreadable_raises() -> None:
    with pytest.raises(ValueError):
        gpu_count("gpu:a100:lots")
    assert split_top_level("a(1,2),b") == ["a(1,2)", "b"]


# ---- squeue ----------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_squeue_scenario_counts_any_chunking(fx: Path, chunk: int) -> None:
    data = (fx / "squeue_scenario.out").read_bytes()
    partitions = (fx / "sinfo_partitions.txt").read_text().split()
    res = parse_squeue_stream(chunks(data, chunk), SqueueFormat(), partitions=partitions)
    s = samples(queue_families(res, SlurmSettings(naming="vpenso")))
    scenario.check_queue(s, "vpenso")
    assert "slurm_user_jobs_running" not in s  # per-user series are opt-in


@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_squeue_scenario_sckyzo_labels(fx: Path, chunk: int) -> None:
    """SckyzO's slurm_queue_* per user and partition (and reason), from the
    output with the user field that naming asks squeue for."""
    data = (fx / "squeue_scenario_user.out").read_bytes()
    partitions = (fx / "sinfo_partitions.txt").read_text().split()
    settings = SlurmSettings()
    fmt = SqueueFormat.for_settings(settings)
    assert fmt.user and not fmt.owners
    s = samples(queue_families(parse_squeue_stream(chunks(data, chunk), fmt, partitions=partitions), settings))
    scenario.check_queue(s, "sckyzo")
    assert "slurm_user_jobs_running" not in s


def test_squeue_owners_hostile_accounts(fx: Path) -> None:
    """The captured output holds the real hostile jobs: accounts with `|`, a
    newline, quotes and braces, non-ASCII, 1 KB; job names and comments are
    not in it at all."""
    data = (fx / "squeue_scenario_owners.out").read_bytes()
    assert b"line1" not in data and b"x|y" not in data and "ünïcödé".encode() not in data
    fmt = SqueueFormat(owners=True)
    res = parse_squeue_stream(chunks(data, 5), fmt)
    s = samples(queue_families(res, SlurmSettings(per_user=True, per_account=True, naming="vpenso")))
    assert s["slurm_queue_pending"][()] == scenario.EXPECTED_QUEUE["slurm_queue_pending"]
    assert s["slurm_queue_running"][()] == scenario.EXPECTED_QUEUE["slurm_queue_running"]
    scenario.check_owners(s)
    assert s["nodeagent_slurm_malformed_records"][("squeue",)] == 0


def _record(reason: str, state: str, cpus: int, partition: str, user: str = "", account: str = "",
            gres: tuple[str, str, str] = ("N/A", "N/A", "N/A"), nodes: int = 1, tasks: int = 1,
            owners: bool = False) -> bytes:  # fmt: skip
    """One record as squeue prints it: the free-text fields cut to their
    width in bytes and padded with spaces (how 22.05 prints -O Field:N)."""

    def fixed(text: str, width: int) -> bytes:
        return text.encode()[:width].ljust(width, b" ")

    out = fixed(reason, REASON_WIDTH)
    if owners:
        out += fixed(user, USER_WIDTH) + fixed(account, ACCOUNT_WIDTH)
    out += f"{state}|{cpus}|".encode()
    if owners:
        out += f"{nodes}|{tasks}|{gres[0]}|{gres[1]}|{gres[2]}|".encode()
    return out + partition.encode() + b"\n"


def test_squeue_hostile_10kb_values_cannot_shift_fields() -> None:
    evil = ("|\n\"'{}[]()é名\x00\x1b" * 1000)[:10240]
    records = [
        _record("Resources", "PD", 4, "gpu", evil, evil, owners=True),
        _record(evil, "PD", 1, "gpu", "bob", "acct\n|x", owners=True),
        _record("None", "R", 2, "gpu,we|rd", evil + "x", "a", ("gres:gpu:2", "N/A", "N/A"), 2, 2, True),
        _record("None", "R", 3, "cpu", "bob", "a", ("N/A", "gres/gpu:a100=3", "gres:gpu:1"), 1, 4, True),
    ]
    data = b"".join(records)
    for size in (1, 3, 1000, len(data)):
        res = parse_squeue_stream(chunks(data, size), SqueueFormat(owners=True), max_label_values=100)
        assert res.malformed == 0
        assert res.states["pending"] == 2 and res.states["running"] == 2
        assert res.partition_states["we|rd"]["running"] == 1
        assert res.partition_states["gpu"]["running"] == 1  # a running job is in one partition
        assert res.cpus_pending == 5 and res.cpus_running == 5
        cut = evil.encode()[:USER_WIDTH].decode("utf-8", "replace")
        cut_user = "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in cut)
        assert bounded(cut_user) in res.users
        label = bounded(cut_user)
        assert res.users[label]["jobs_pending"] == 1
        assert res.users[label]["jobs_running"] == 1  # the same 64 bytes: same label
        assert res.users[label]["gpus_running"] == 4  # gres:gpu:2 per node x 2 nodes
        assert res.users["bob"]["gpus_running"] == 3 + 4  # per job 3 + per task 1 x 4 tasks
        assert all(len(label.encode()) <= 3 * USER_WIDTH for label in res.users)
        assert all("\n" not in label for label in res.users)
        # a reason cut at "," "(" ":" and bounded by its width
        assert len(res.reasons) == 2


def test_normalise_reason() -> None:
    assert normalise_reason(b"ReqNodeNotAvail, UnavailableNodes:node[1-3]   ") == "ReqNodeNotAvail"
    assert normalise_reason(b"Job's account not permitted to use this partition (gpu allows") == (
        "Job's account not permitted to use this partition"
    )
    assert normalise_reason(b"        ") == "(none)"
    assert normalise_reason(b"a\nb") == "a?b"


def test_squeue_label_cap_folds_into_other() -> None:
    records = []
    for i in range(10):
        records += [_record("Priority", "PD", 1, "p", f"user{i}", f"acct{i}", owners=True)] * (i + 1)
    res = parse_squeue_stream([b"".join(records)], SqueueFormat(owners=True), max_label_values=3)
    # the 3 users with most jobs keep their label; 7 users fold into (other)
    assert set(res.users) == {"user9", "user8", "user7", OTHER}
    assert res.users[OTHER]["jobs_pending"] == sum(range(1, 8))
    assert res.overflow == {"reason": 0, "user": 7, "account": 7}
    s = samples(queue_families(res, SlurmSettings(per_user=True, per_account=False)))
    assert s["nodeagent_slurm_label_overflow"][("user",)] == 7
    assert "slurm_account_jobs_pending" not in s


def test_squeue_incomplete_or_garbage_output_fails() -> None:
    counter = RecordCounter(SqueueFormat().fixed_width)
    counter.feed(b"squeue: error: something went wrong\n")
    with pytest.raises(ValueError, match="incomplete record"):
        counter.finish()
    # records in the fixed frame but not in the format are counted, not trusted
    junk = b"x" * REASON_WIDTH + b"not|a|record\n"
    res = aggregate(Counter({junk: 3}), SqueueFormat())
    assert res.malformed == 3 and res.jobs == 0


def test_squeue_memory_flat_in_job_count() -> None:
    """Peak memory of parsing 20k vs 200k generated jobs (same mix): the
    stream is counted chunk by chunk, so it does not grow with the jobs."""

    def stream(n: int) -> object:
        block = b"".join(
            _record(("Resources", "Priority", "None")[i % 3], ("PD", "PD", "R")[i % 3], 1 + i % 4, "p")
            for i in range(1000)
        )
        for _ in range(n // 1000):
            yield block

    peaks = []
    for n in (20_000, 200_000):
        tracemalloc.start()
        res = parse_squeue_stream(stream(n), SqueueFormat())  # type: ignore[arg-type]
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert res.jobs == n
    assert peaks[1] < peaks[0] * 1.5, peaks


# ---- sdiag, sshare ------------------------------------------------------------------


def test_sdiag_captured(fx: Path) -> None:
    res = parse_sdiag((fx / "sdiag.txt").read_text())
    s = samples(sdiag_families(res))
    for key in ("threads", "queue_size", "dbd_queue_size", "last_cycle", "mean_cycle", "backfill_last_cycle",
                "backfilled_jobs_since_start_total", "backfilled_jobs_since_cycle_total",
                "backfilled_heterogeneous_total", "jobs_submitted", "jobs_started"):  # fmt: skip
        assert f"slurm_scheduler_{key}" in s, key
    # a young slurmctld without a backfill cycle yet prints no cycles per
    # minute and no backfill means: left out, not reported as 0
    assert "slurm_scheduler_cycle_per_minute" not in s
    assert "slurm_scheduler_backfill_mean_cycle" not in s
    assert s["slurm_scheduler_threads"][()] >= 1
    # the scenario submitted 28 jobs (8 of them one array) before the capture
    assert s["slurm_scheduler_jobs_submitted"][()] >= 21
    assert s["slurm_rpc_stats"][("REQUEST_SUBMIT_BATCH_JOB",)] >= 21
    assert ("REQUEST_JOB_INFO",) in s["slurm_rpc_stats_avg_time"]


def test_sdiag_backfill_section_not_confused_with_main() -> None:
    text = (
        "Server thread count:  5\nAgent queue size:     2\nDBD Agent queue size: 7\n\n"
        "Main schedule statistics (microseconds):\n\tLast cycle:   100\n\tMean cycle:   200\n"
        "\tCycles per minute: 3\n"
        "Backfilling stats\n\tTotal backfilled jobs (since last slurm start): 4\n\tLast cycle: 1000\n"
        "\tMean cycle: 2000\n\tDepth Mean: 9\n"
    )
    v = parse_sdiag(text).values
    assert (v["last_cycle"], v["mean_cycle"], v["backfill_last_cycle"], v["backfill_mean_cycle"]) == (
        100, 200, 1000, 2000,
    )  # fmt: skip
    assert v["cycle_per_minute"] == 3
    assert (v["threads"], v["queue_size"], v["dbd_queue_size"], v["backfill_depth_mean"]) == (5, 2, 7, 9)


def test_sshare_without_accounting_is_nothing_to_report(fx: Path) -> None:
    text = (fx / "sshare_no_accounting.txt").read_text()
    assert sshare_families(parse_sshare(text)) == []


def test_sshare_parsable_lines() -> None:
    """Lines in sshare -P's layout (hand-written: this machine has no slurmdbd
    to capture them from)."""
    text = (
        "|1.000000|1000|1.000000||||root\n"
        "1|0.500000|600|0.600000|0.400000|0.000000||  physics\n"
        "1|0.500000|400|0.400000|0.600000|0.000000||  chem|istry\n"
        "1|0.250000|300|0.300000|0.350000|0.000000|alice|  physics\n"
        "parent|0.500000|100|0.100000|0.800000|0.000000|bob|  chem|istry\n"
        "garbage\n"
    )
    res = parse_sshare(text, per_user=True)
    s = samples(sshare_families(res))
    assert s["slurm_account_fairshare"] == {("physics",): 0.4, ("chem|istry",): 0.6}
    assert s["slurm_account_fairshare_raw_usage_cpu_seconds"][("root",)] == 1000
    assert s["slurm_user_fairshare"] == {("physics", "alice"): 0.35, ("chem|istry", "bob"): 0.8}
    assert s["nodeagent_slurm_malformed_records"][("sshare",)] == 1
    capped = parse_sshare(text, max_label_values=1, per_user=True)
    assert list(capped.accounts) == ["root"] and capped.overflow == {"account": 2, "user": 1}  # most usage
    # classic lines (an account FairShare): LevelFS is not computed there
    assert not s.get("slurm_account_fairshare_level")


def test_sshare_fair_tree_level_fs() -> None:
    """Fair Tree lines: no account FairShare, LevelFS per account; "inf"
    (shares, no usage) is +Inf, empty ("parent" shares) or NaN is no series."""
    text = (
        "|0.000000|1000|||||root\n"
        "1|0.250000|0|0.000000||inf||  idle\n"
        "3|0.750000|1000|1.000000||0.750000||  busy\n"
        "parent|0.750000|0|0.000000||||  sub\n"
        "1|0.250000|5|0.000000||nan||  odd\n"
        "1|1.000000|1000|1.000000|0.500000|1.000000|alice|  busy\n"
    )
    s = samples(sshare_families(parse_sshare(text)))
    assert s["slurm_account_fairshare_level"] == {("idle",): math.inf, ("busy",): 0.75}
    assert not s.get("slurm_account_fairshare")
    assert s["nodeagent_slurm_malformed_records"][("sshare",)] == 0


def test_squeue_garbage_without_newlines_fails_fast() -> None:
    """Megabytes without a newline: refused quickly, memory bounded."""
    counter = RecordCounter(SqueueFormat().fixed_width)
    started = time.monotonic()
    with pytest.raises(ValueError, match="no record boundary"):
        for _ in range(40):
            counter.feed(b"x" * 65536)
    assert time.monotonic() - started < 1.0
    # lines of an error message frame as records, but none decodes
    counter = RecordCounter(SqueueFormat().fixed_width)
    counter.feed(b"squeue: error: slurm_load_jobs: Unable to contact slurm controller\n" * 1000)
    res = aggregate(counter.finish(), SqueueFormat())
    assert (res.jobs, res.malformed) == (0, 1000)


def test_sshare_cap_keeps_the_heaviest_accounts_and_users() -> None:
    """Fairshare cannot be summed into "(other)": the cap keeps the accounts
    with the most usage and the user rows with the lowest factor, and counts
    what it left out."""
    lines = [f"1|0.1|{usage}|0.1|0.5|0||  acct{usage}" for usage in (10, 500, 30, 900)]
    lines += [f"1|0.1|0|0.1|{fs}|0|user{i}|  acct900" for i, fs in enumerate((0.9, 0.1, 0.5))]
    res = parse_sshare("\n".join(lines) + "\n", max_label_values=2, per_user=True)
    assert sorted(res.accounts) == ["acct500", "acct900"]
    assert sorted(res.users) == [("acct900", "user1"), ("acct900", "user2")]
    assert res.overflow == {"account": 2, "user": 1}


# ---- bounded label values ----------------------------------------------------------


def test_bounded_keeps_short_values_and_hashes_long_ones() -> None:
    assert bounded("physics") == "physics"
    assert bounded("x" * 48) == "x" * 48
    a, b = "a" * 50 + "-alpha-1", "a" * 50 + "-beta-22"  # 58 bytes each, the first 50 shared
    la, lb = bounded(a), bounded(b)
    assert la != lb and len(la.encode()) == len(lb.encode()) == 48
    assert la.startswith("a" * 39 + "~") and la == bounded(a)  # stable
    assert la[-8:] == hashlib.sha256(a.encode()).hexdigest()[:8]


def test_bounded_cuts_on_a_character_boundary() -> None:
    for text in ("ä" * 30, "名" * 20, "a" + "名" * 20, "aa" + "🚀" * 15):
        label = bounded(text)
        assert "\ufffd" not in label
        assert len(label.encode()) <= 48
        head, _, digest = label.rpartition("~")
        assert text.startswith(head) and len(digest) == 8
        assert 39 - 3 <= len(head.encode()) <= 39  # at most one character short of the room


def test_squeue_accounts_sharing_a_prefix_stay_apart() -> None:
    """Two 60-byte accounts that share their first 52 bytes, and two 60-byte
    multi-byte ones that differ in their last character: four series."""
    accounts = ["proj-" + "x" * 47 + "-alpha-1", "proj-" + "x" * 47 + "-beta-22", "ü" * 30, "ü" * 29 + "ö"]
    assert all(len(a.encode()) == 60 for a in accounts)
    records = [_record("Priority", "PD", 1, "p", "u", a, owners=True) for a in accounts for _ in range(2)]
    res = parse_squeue_stream([b"".join(records)], SqueueFormat(owners=True))
    assert res.malformed == 0
    assert sorted(res.accounts) == sorted(bounded(a) for a in accounts)
    assert len(res.accounts) == 4 and all(c["jobs_pending"] == 2 for c in res.accounts.values())
