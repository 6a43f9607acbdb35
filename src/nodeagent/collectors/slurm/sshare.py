"""Fairshare per account (and per user when slurm.per_user is on) from
sshare, where accounting is configured.

Without slurmdbd, sshare prints nothing and exits 0: nothing to report, which
is a success (no series), not a failure.

`sshare -a -n -P -o RawShares,NormShares,RawUsage,NormUsage,FairShare,LevelFS,User,Account`:
numbers first, then the user, then the account last (accounts and users
come from the accounting database, defined by administrators); account names
arrive indented by their depth in the tree, which is stripped.

Under Fair Tree (Slurm's default) sshare prints FairShare for user rows only
and LevelFS for every association (empty for the root account and for
"parent" shares, "inf" where there is no usage: exported as +Inf). The
classic algorithm (PriorityFlags=NO_FAIR_TREE) computes no LevelFS, yet sshare
prints 0 for it when asked; it prints FairShare for account rows there, and
only there, so an output with an account FairShare has its LevelFS left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.labels import bounded
from nodeagent.collectors.slurm.poller import PolledSlurmCollector
from nodeagent.model import MetricFamily
from nodeagent.registry import register

SSHARE_ARGS = ("-a", "-n", "-P", "-o", "RawShares,NormShares,RawUsage,NormUsage,FairShare,LevelFS,User,Account")
_FIELDS = ("raw_shares", "norm_shares", "raw_usage", "norm_usage", "fairshare", "level_fs")


def _number(text: str, allow_inf: bool = False) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value) or (math.isinf(value) and not (allow_inf and value > 0)):
        return None
    return value


@dataclass
class ShareResult:
    accounts: dict[str, dict[str, float]] = field(default_factory=dict)
    users: dict[tuple[str, str], float] = field(default_factory=dict)  # FairShare factor
    user_shares: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # the other columns
    malformed: int = 0
    overflow: dict[str, int] = field(default_factory=dict)


def parse_sshare(text: str, max_label_values: int = 100, per_user: bool = False) -> ShareResult:
    res = ShareResult()
    users: dict[tuple[str, str], float] = {}
    shares: dict[tuple[str, str], dict[str, float]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", len(_FIELDS) + 1)
        if len(parts) != len(_FIELDS) + 2:
            res.malformed += 1
            continue
        numbers = [_number(p) for p in parts[: len(_FIELDS) - 1]]
        numbers.append(_number(parts[len(_FIELDS) - 1], allow_inf=True))  # LevelFS: inf = no usage
        values = dict(zip(_FIELDS, numbers, strict=True))
        user = bounded(parts[-2].strip())
        account = bounded(parts[-1].strip())
        if not account:
            res.malformed += 1
            continue
        if user:
            fs = values["fairshare"]
            if per_user and fs is not None:
                users[(account, user)] = fs
                shares[(account, user)] = {k: v for k, v in values.items() if v is not None and k != "level_fs"}
            continue
        res.accounts[account] = {k: v for k, v in values.items() if v is not None}
    if any("fairshare" in v for v in res.accounts.values()):
        # classic algorithm: LevelFS is not computed, sshare prints 0 for it
        for v in res.accounts.values():
            v.pop("level_fs", None)
    # Fairshare values cannot be summed into "(other)" like job counts: a cap
    # keeps the accounts with the most usage and the (account, user) rows with
    # the lowest factor (the heaviest users), and counts what it left out.
    if len(res.accounts) > max_label_values:
        ranked = sorted(res.accounts, key=lambda a: (-res.accounts[a].get("raw_usage", 0.0), a))
        res.overflow["account"] = len(res.accounts) - max_label_values
        res.accounts = {a: res.accounts[a] for a in ranked[:max_label_values]}
    if per_user:
        if len(users) > max_label_values:
            ranked_rows = sorted(users, key=lambda k: (users[k], k))
            res.overflow["user"] = len(users) - max_label_values
            users = {k: users[k] for k in ranked_rows[:max_label_values]}
        res.users = users
        res.user_shares = {k: shares[k] for k in users}
    return res


def sshare_families(res: ShareResult, naming: str = "sckyzo") -> list[MetricFamily]:
    if not res.accounts and not res.users and not res.malformed:
        return []  # no accounting: nothing to report
    families: list[MetricFamily] = []
    for spec, key in (
        (cat.ACCOUNT_FAIRSHARE, "fairshare"),
        (cat.ACCOUNT_FAIRSHARE_LEVEL, "level_fs"),
        (cat.ACCOUNT_FAIRSHARE_NORM_SHARES, "norm_shares"),
        (cat.ACCOUNT_FAIRSHARE_NORM_USAGE, "norm_usage"),
        (cat.ACCOUNT_FAIRSHARE_RAW_SHARES, "raw_shares"),
        (cat.ACCOUNT_FAIRSHARE_RAW_USAGE, "raw_usage"),
    ):
        fam = spec.family()
        for account in sorted(res.accounts):
            value = res.accounts[account].get(key)
            if value is not None:
                fam.add((account,), value)
        families.append(fam)
    if res.users:
        fam = cat.USER_FAIRSHARE.family()
        for account, user in sorted(res.users):
            fam.add((account, user), res.users[(account, user)])
        families.append(fam)
        if naming == "sckyzo":
            for key, spec in cat.USER_FAIRSHARE_SHARES.items():
                fam = spec.family()
                column = key.removesuffix("_cpu_seconds")
                for row in sorted(res.user_shares):
                    value = res.user_shares[row].get(column)
                    if value is not None:
                        fam.add(row, value)
                families.append(fam)
    if res.overflow:
        fam = cat.LABEL_OVERFLOW.family()
        for label in sorted(res.overflow):
            fam.add((f"sshare_{label}",), res.overflow[label])
        families.append(fam)
    bad = cat.MALFORMED_RECORDS.family()
    bad.add(("sshare",), res.malformed)
    families.append(bad)
    return families


@register
class SshareCollector(PolledSlurmCollector):
    name = "sshare"
    group = "slurm"
    default_roles = ("head",)
    description = "Slurm fairshare per account (and user) from sshare; nothing without accounting."
    command = "sshare"

    def poll(self) -> list[MetricFamily]:
        out = self.runner.run(SSHARE_ARGS).stdout
        res = parse_sshare(out, self.settings.max_label_values, self.settings.per_user)
        return sshare_families(res, self.settings.naming)
