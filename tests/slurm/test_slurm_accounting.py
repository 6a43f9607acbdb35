"""The sshare collector against real Slurm accounting: MariaDB, slurmdbd and
a two-node Slurm 22.05 cluster (localaccounting.py) with two accounts, root
and a second user, and short jobs under each association.

What the collector exports is compared with `sshare -P` run directly in
another field order (with its header, parsed here on its own), and with what
follows from the setup without sshare: raw usage from slurmdbd's job records
(sacct: CPUs x elapsed seconds, decay off), shares from the sacctmgr
setup, the order of users' Fair Tree factors from their usage, and the
classic factor 2^-(EffectvUsage/NormShares).

Under Fair Tree (Slurm's default) sshare prints FairShare for users only, so
slurm_account_fairshare has no series there; the classic algorithm
(PriorityFlags=NO_FAIR_TREE) prints it for accounts too. LevelFS
(slurm_account_fairshare_level) is compared with `sshare -o Account,User,LevelFS`
run on its own: Fair Tree computes it, classic does not (sshare prints 0).

The parser tests at the end read outputs captured from this cluster
(tests/fixtures/slurm/<version>/sshare_accounting_*.txt, written by
capture_accounting_fixtures.py) and need no Slurm.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from localaccounting import (
    ACCOUNT_SHARES,
    USERS,
    AccountingSlurm,
    JobRecord,
    accounting_available,
    build_usage,
    new_cluster,
)
from localslurm import TEST_USER, ensure_user, slurm_available
from slurm_helpers import make_collector, pid_alive, samples

from nodeagent.collectors.slurm.sshare import SshareCollector, parse_sshare, sshare_families
from nodeagent.exposition import render

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"
CAPTURED = sorted(FIXTURES.glob("*/sshare_accounting_fair_tree.txt"))
CAPTURED_CLASSIC = sorted(FIXTURES.glob("*/sshare_accounting_classic.txt"))

# metric -> sshare column
ACCOUNT_COLUMNS = {
    "slurm_account_fairshare": "FairShare",
    "slurm_account_fairshare_norm_shares": "NormShares",
    "slurm_account_fairshare_norm_usage": "NormUsage",
    "slurm_account_fairshare_raw_shares": "RawShares",
    "slurm_account_fairshare_raw_usage_cpu_seconds": "RawUsage",
}
DIRECT_FIELDS = "Account,User,RawShares,NormShares,RawUsage,NormUsage,EffectvUsage,FairShare"
# every association: the root user in the root account comes with the cluster
ASSOCIATIONS = {("root", "root")} | {(a, u) for u, accounts, _ in USERS for a in accounts}


@pytest.fixture(scope="module")
def accounting() -> Iterator[tuple[AccountingSlurm, list[JobRecord]]]:
    why = slurm_available() or accounting_available()
    if why:
        pytest.skip(why)
    ensure_user()
    # not under pytest's 0700 tmp dir: jobs run as a second user
    base = Path(tempfile.mkdtemp(prefix="nodeagent-slurm-acct-"))
    base.chmod(0o755)
    cluster = new_cluster(base, base_port=17300)
    started = time.monotonic()
    try:
        cluster.start()
        jobs = build_usage(cluster)
        cluster.timings["setup"] = time.monotonic() - started
        yield cluster, jobs
    finally:
        stopping = time.monotonic()
        cluster.stop()
        cluster.timings["teardown"] = time.monotonic() - stopping
        print("accounting cluster timings (s):", {k: round(v, 2) for k, v in cluster.timings.items()})
        left = {name: pid for name, pid in cluster.pids.items() if pid_alive(pid)}
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"daemons still running after teardown: {left}"


def direct_sshare(cluster: AccountingSlurm) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], dict[str, str]]]:
    """`sshare -a -P` with a header, in another field order than the
    collector's: {account: row}, {(account, user): row}."""
    lines = cluster.run("sshare", "-a", "-P", "-o", DIRECT_FIELDS).stdout.splitlines()
    header = lines[0].split("|")
    assert header == DIRECT_FIELDS.split(","), header
    accounts: dict[str, dict[str, str]] = {}
    users: dict[tuple[str, str], dict[str, str]] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split("|"), strict=True))
        account = row["Account"].strip()  # indented by depth in the tree
        if row["User"]:
            users[(account, row["User"])] = row
        else:
            accounts[account] = row
    return accounts, users


def direct_levelfs(cluster: AccountingSlurm) -> dict[str, str]:
    """`sshare -a -P -o Account,User,LevelFS`: {account: LevelFS as printed}."""
    lines = cluster.run("sshare", "-a", "-P", "-o", "Account,User,LevelFS").stdout.splitlines()
    assert lines[0] == "Account|User|LevelFS", lines[0]
    levels: dict[str, str] = {}
    for line in lines[1:]:
        account, user, level = line.split("|")
        if not user:
            levels[account.strip()] = level
    assert set(levels) == {"root", *ACCOUNT_SHARES}
    return levels


def collect(cluster: AccountingSlurm) -> dict[str, dict[tuple[str, ...], float]]:
    c = make_collector(SshareCollector, slurm_conf=str(cluster.conf), per_user=True)
    try:
        families = c.collect()
        text = render(families).decode()
        assert 'slurm_user_fairshare{account="physics",user="nodeagent-test"}' in text
        return samples(families)
    finally:
        c.close()


def check_same_as_sshare(
    s: dict[str, dict[tuple[str, ...], float]],
    accounts: dict[str, dict[str, str]],
    users: dict[tuple[str, str], dict[str, str]],
) -> None:
    """Every number the collector exports is the one sshare printed; an
    empty sshare field is no series."""
    assert set(accounts) == {"root", *ACCOUNT_SHARES}
    assert set(users) == ASSOCIATIONS
    for metric, column in ACCOUNT_COLUMNS.items():
        expected = {(a,): float(row[column]) for a, row in accounts.items() if row[column] != ""}
        assert s.get(metric, {}) == expected, metric
    assert s["slurm_user_fairshare"] == {k: float(row["FairShare"]) for k, row in users.items()}
    assert s["nodeagent_slurm_malformed_records"] == {("sshare",): 0}
    assert "nodeagent_slurm_label_overflow" not in s


def check_usage_and_shares(s: dict[str, dict[tuple[str, ...], float]], jobs: list[JobRecord]) -> None:
    """Raw usage from slurmdbd's job records, shares from the setup."""
    usage = {a: sum(j.cpus * j.elapsed for j in jobs if j.account == a) for a in ACCOUNT_SHARES}
    total = sum(usage.values())
    assert all(usage.values()), usage  # every account ran something
    raw = s["slurm_account_fairshare_raw_usage_cpu_seconds"]
    assert raw == {("root",): total, **{(a,): u for a, u in usage.items()}}
    assert s["slurm_account_fairshare_raw_shares"] == {(a,): n for a, n in ACCOUNT_SHARES.items()}
    # the root account's children: the accounts and the root user (1 share)
    all_shares = sum(ACCOUNT_SHARES.values()) + 1
    norm_shares = s["slurm_account_fairshare_norm_shares"]
    norm_usage = s["slurm_account_fairshare_norm_usage"]
    for a, n in ACCOUNT_SHARES.items():
        assert norm_shares[(a,)] == pytest.approx(n / all_shares, abs=1e-6)
        assert norm_usage[(a,)] == pytest.approx(usage[a] / total, abs=1e-6)


@pytest.mark.slurm
def test_fair_tree_fairshare_real(accounting: tuple[AccountingSlurm, list[JobRecord]]) -> None:
    cluster, jobs = accounting
    cluster.set_priority_flags("")  # Fair Tree, the default
    s = collect(cluster)
    accounts, users = direct_sshare(cluster)
    levels = direct_levelfs(cluster)
    check_same_as_sshare(s, accounts, users)
    check_usage_and_shares(s, jobs)
    # Fair Tree prints no FairShare for accounts (their LevelFS ranks users)
    assert not s.get("slurm_account_fairshare")
    # LevelFS: what sshare printed (none for the root account), for every
    # account under root; there, shares / usage among the siblings
    level = s["slurm_account_fairshare_level"]
    assert level == {(a,): float(v) for a, v in levels.items() if v != ""}
    assert set(level) == {(a,) for a in ACCOUNT_SHARES}
    norm_shares = s["slurm_account_fairshare_norm_shares"]
    norm_usage = s["slurm_account_fairshare_norm_usage"]
    for key, value in level.items():
        assert value == pytest.approx(norm_shares[key] / norm_usage[key], rel=1e-5), key
    assert level[("physics",)] > 1 > level[("chem",)]  # physics is under-served
    # users ranked by usage against shares, level by level: root's own user
    # (no usage) first, then physics (less usage per share than chem) with
    # its lighter user first, chem's user last; the factor is rank / users
    fs = s["slurm_user_fairshare"]
    order = [("root", "root"), ("physics", TEST_USER), ("physics", "root"), ("chem", TEST_USER)]
    assert [fs[k] for k in order] == [1.0, 0.75, 0.5, 0.25]


@pytest.mark.slurm
def test_classic_fairshare_real(accounting: tuple[AccountingSlurm, list[JobRecord]]) -> None:
    cluster, jobs = accounting
    cluster.set_priority_flags("NO_FAIR_TREE")
    try:
        s = collect(cluster)
        accounts, users = direct_sshare(cluster)
        levels = direct_levelfs(cluster)
    finally:
        cluster.set_priority_flags("")
    check_same_as_sshare(s, accounts, users)
    check_usage_and_shares(s, jobs)
    # the classic factor of every association: 2^-(EffectvUsage / NormShares)
    for row in [*accounts.values(), *users.values()]:
        if float(row["NormShares"]) > 0:
            expected = 2 ** -(float(row["EffectvUsage"]) / float(row["NormShares"]))
            assert float(row["FairShare"]) == pytest.approx(expected, abs=2e-6), row
    fs = s["slurm_account_fairshare"]
    assert set(fs) == {("root",), *((a,) for a in ACCOUNT_SHARES)}
    assert fs[("physics",)] > fs[("chem",)]  # less usage per share
    # classic computes no LevelFS: sshare prints nothing or 0 for it, and
    # the collector exports no series
    assert all(v == "" or float(v) == 0 for v in levels.values()), levels
    assert not s.get("slurm_account_fairshare_level")


# ---- parser tests on captured output (no Slurm needed) ---------------------------------


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.parent.name)
def test_sshare_captured_fair_tree(path: Path) -> None:
    res = parse_sshare(path.read_text(), per_user=True)
    assert res.malformed == 0 and not res.overflow
    assert set(res.accounts) == {"root", *ACCOUNT_SHARES}
    assert set(res.users) == ASSOCIATIONS
    root = res.accounts["root"]
    # the root line has no RawShares, NormUsage or FairShare: left out
    assert set(root) == {"norm_shares", "raw_usage"}
    assert root["raw_usage"] == sum(res.accounts[a]["raw_usage"] for a in ACCOUNT_SHARES) > 0
    for a, n in ACCOUNT_SHARES.items():
        assert res.accounts[a]["raw_shares"] == n
        assert "fairshare" not in res.accounts[a]
    assert sorted(res.users.values()) == [0.25, 0.5, 0.75, 1.0]
    for a in ACCOUNT_SHARES:
        v = res.accounts[a]
        assert v["level_fs"] == pytest.approx(v["norm_shares"] / v["norm_usage"], rel=1e-5), a
    s = samples(sshare_families(res))
    assert "slurm_account_fairshare" not in s or not s["slurm_account_fairshare"]
    assert s["slurm_account_fairshare_level"] == {(a,): res.accounts[a]["level_fs"] for a in ACCOUNT_SHARES}
    assert s["slurm_user_fairshare"] == res.users


@pytest.mark.parametrize("path", CAPTURED_CLASSIC, ids=lambda p: p.parent.name)
def test_sshare_captured_classic(path: Path) -> None:
    res = parse_sshare(path.read_text(), per_user=True)
    assert res.malformed == 0 and not res.overflow
    assert set(res.accounts) == {"root", *ACCOUNT_SHARES}
    assert set(res.users) == ASSOCIATIONS
    for account, values in res.accounts.items():
        assert 0 < values["fairshare"] <= 1, account
    assert res.accounts["root"]["fairshare"] == 0.5  # 2^-(1/1)
    for a in ACCOUNT_SHARES:
        v = res.accounts[a]
        # accounts directly under root: effective usage is the normalised one
        assert v["fairshare"] == pytest.approx(2 ** -(v["norm_usage"] / v["norm_shares"]), abs=2e-6)
    assert not any("level_fs" in v for v in res.accounts.values())  # not computed: left out
    s = samples(sshare_families(res))
    assert s["slurm_account_fairshare"] == {(a,): v["fairshare"] for a, v in res.accounts.items()}
    assert not s.get("slurm_account_fairshare_level")


def test_captured_fixtures_exist() -> None:
    """The parser tests above must not pass by having nothing to read."""
    assert CAPTURED and CAPTURED_CLASSIC


@pytest.mark.parametrize("naming", ["sckyzo", "vpenso"])
def test_fairshare_names_as_the_exporters_declare(
    accounting: tuple[AccountingSlurm, list[JobRecord]], naming: str
) -> None:
    """The fairshare families each exporter's source declares (sshare), served
    with their exact name, type and labels on a cluster with slurmdbd: under
    Fair Tree, and under the classic algorithm for slurm_account_fairshare
    (Fair Tree gives accounts no FairShare factor; sshare prints none)."""
    from test_slurm_naming import REFERENCE, SSHARE_SOURCES

    from nodeagent.exposition import render

    cluster, _ = accounting
    families = []
    for flags in ("", "NO_FAIR_TREE"):
        cluster.set_priority_flags(flags)
        c = make_collector(SshareCollector, slurm_conf=str(cluster.conf), per_user=True, naming=naming)
        try:
            families += c.collect()
        finally:
            c.close()
            cluster.set_priority_flags("")
    got = {f.name: (f.type, f.labelnames) for f in families if f.samples}
    text = render(families).decode()
    for name, want in REFERENCE[naming].items():
        if want.source in SSHARE_SOURCES:
            assert got.get(name) == (want.type, want.labels), name
            assert f"# TYPE {name} {want.type}" in text
    if naming == "vpenso":
        assert not any(n.startswith("slurm_user_fairshare_") for n in got)

