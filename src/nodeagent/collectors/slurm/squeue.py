"""Jobs from squeue: by state, pending reason and partition; per user and
account when enabled; with slurm.naming: sckyzo, SckyzO's slurm_queue_* per
user and partition (pending jobs per reason too), slurm_cores_* and the
slurm_jobs_* totals. Parsed as a stream and aggregated as it is read.

The format is chosen so that nothing a user controls can shift a field:

    squeue -h -a -r [-t all] -O Reason:40[,UserName:64][,Account:256],
        StateCompact:|,NumCPUs:|[,NumNodes:|,NumTasks:|,tres-per-node:|,
        tres-per-job:|,tres-per-task:|],Partition:0

- Job names and comments are never requested.
- The fields a user can fill with anything come first, in fixed widths:
  squeue cuts and pads them to exactly that many bytes, so a `|`, a newline,
  quotes or 10 KB of text inside them stay inside their bytes. The account is
  free text (`sbatch --account` is not checked without accounting
  enforcement), and the pending reason can quote it ("Job's account not
  permitted to use this partition (... not <account>)"). User names up to 64
  bytes and accounts up to 256 bytes are read whole (squeue itself cuts
  longer ones); a label keeps at most 48 bytes of them and ends a longer
  value in a hash of the whole (labels.bounded), so two users or accounts
  never share a series.
- The rest are fields Slurm itself produces or validates (state, numbers,
  GRES requests), separated by `|`, and the partition list (admin-defined
  names) comes last, so a `|` in a partition name cannot shift a field either.
  No value after the fixed part can hold a newline.

So every record is: FIXED bytes, then anything but a newline, then a newline.
Records are cut out of each chunk by one regular expression and counted as
raw bytes (identical jobs make identical records); only the distinct records
are decoded at the end. Memory is one read chunk plus one entry per distinct
record, whatever the number of jobs.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.gres import gpu_count
from nodeagent.collectors.slurm.labels import bounded
from nodeagent.collectors.slurm.poller import PolledSlurmCollector
from nodeagent.collectors.slurm.runner import SlurmRunner
from nodeagent.collectors.slurm.settings import SlurmSettings
from nodeagent.host import CommandError, Host
from nodeagent.model import MetricFamily
from nodeagent.registry import CollectorContext, register

log = structlog.get_logger("nodeagent.slurm.squeue")

REASON_WIDTH = 40
USER_WIDTH = 64
ACCOUNT_WIDTH = 256
# longer than any record squeue prints for this format (the partition list is
# the only field without a width); more without a record boundary is garbage
MAX_RECORD = 1 << 20
OTHER = "(other)"
NONE = "(none)"

# squeue's compact job states -> family keys (slurm_queue_<key>)
STATES = {
    "PD": "pending",
    "R": "running",
    "S": "suspended",
    "CA": "cancelled",
    "CG": "completing",
    "CD": "completed",
    "CF": "configuring",
    "F": "failed",
    "TO": "timeout",
    "PR": "preempted",
    "NF": "node_fail",
}
# compact states of the job states both exporters name
EXPORTER_STATES = frozenset(k for k, v in STATES.items() if v in cat.EXPORTER_JOB_STATES)
# states of jobs that are over (not in slurm_queue_total)
FINISHED = frozenset({"CA", "CD", "F", "TO", "PR", "NF", "BF", "DL", "OOM", "RV"})


@dataclass(frozen=True)
class SqueueFormat:
    """Which fields are requested, and where each one sits in a record."""

    owners: bool = False  # user, account and GPUs (per-user / per-account series)
    user: bool = False  # the user alone (SckyzO's slurm_queue_* labels)

    @classmethod
    def for_settings(cls, settings: SlurmSettings) -> SqueueFormat:
        return cls(owners=settings.per_user or settings.per_account, user=settings.naming == "sckyzo")

    @property
    def has_user(self) -> bool:
        return self.owners or self.user

    @property
    def fixed_width(self) -> int:
        return REASON_WIDTH + (USER_WIDTH if self.has_user else 0) + (ACCOUNT_WIDTH if self.owners else 0)

    @property
    def delimited(self) -> int:
        """Number of `|`-terminated fields before the partition."""
        return 7 if self.owners else 2

    def option(self) -> str:
        fields = [f"Reason:{REASON_WIDTH}"]
        if self.has_user:
            fields.append(f"UserName:{USER_WIDTH}")
        if self.owners:
            fields.append(f"Account:{ACCOUNT_WIDTH}")
        fields += ["StateCompact:|", "NumCPUs:|"]
        if self.owners:
            fields += ["NumNodes:|", "NumTasks:|", "tres-per-node:|", "tres-per-job:|", "tres-per-task:|"]
        fields.append("Partition:0")
        return ",".join(fields)

    def args(self, finished_jobs: bool = True) -> list[str]:
        args = ["-h", "-a", "-r"]
        if finished_jobs:
            args += ["-t", "all"]
        return [*args, "-O", self.option()]


class RecordCounter:
    """Counts raw records of a stream as chunks arrive (feed), keeping only
    the incomplete tail of the last chunk between calls."""

    def __init__(self, fixed_width: int) -> None:
        self.counts: Counter[bytes] = Counter()
        self.records = 0
        self._tail = b""
        self._pattern = re.compile(rb"(?s).{%d}[^\n]*\n" % fixed_width)

    def feed(self, chunk: bytes) -> None:
        buf = self._tail + chunk if self._tail else chunk
        # only up to the last newline: a record cannot end later, and the
        # search never rescans a long tail (no quadratic time on garbage)
        end = buf.rfind(b"\n") + 1
        found = self._pattern.findall(buf, 0, end) if end else []
        if found:
            self.counts.update(found)
            self.records += len(found)
            buf = buf[sum(map(len, found)) :]
        if len(buf) > MAX_RECORD:
            raise ValueError(f"squeue output has no record boundary in {len(buf)} bytes: not the requested format")
        self._tail = buf

    def finish(self) -> Counter[bytes]:
        if self._tail.strip():
            raise ValueError(
                f"squeue output ends in an incomplete record ({len(self._tail)} bytes): "
                "the output is not in the requested fixed format"
            )
        return self.counts


def _clean(raw: bytes) -> str:
    """A label value from a fixed-width field: padding removed, control
    characters replaced, never empty."""
    text = raw.decode("utf-8", errors="replace").strip()
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        text = "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in text)
    if not text or text == "(null)":
        return NONE
    return text


def normalise_reason(raw: bytes) -> str:
    """`ReqNodeNotAvail, UnavailableNodes:node[1-3]` -> `ReqNodeNotAvail`."""
    text = _clean(raw)
    for sep in (",", "(", ":"):
        head = text.split(sep, 1)[0].strip()
        if head:
            text = head
    return text


@dataclass(frozen=True)
class Job:
    state: str  # compact state
    cpus: int
    partitions: tuple[str, ...]
    reason: str
    user: str = NONE
    account: str = NONE
    gpus: int = 0


def decode_record(record: bytes, fmt: SqueueFormat) -> Job:
    """One raw record -> Job; ValueError when it is not in the format."""
    fixed = fmt.fixed_width
    if len(record) < fixed + 1 or not record.endswith(b"\n"):
        raise ValueError("short record")
    reason = normalise_reason(record[:REASON_WIDTH])
    user = account = NONE
    if fmt.has_user:
        user = bounded(_clean(record[REASON_WIDTH : REASON_WIDTH + USER_WIDTH]))
    if fmt.owners:
        account = bounded(_clean(record[REASON_WIDTH + USER_WIDTH : fixed]))
    rest = record[fixed:-1].decode("utf-8", errors="replace").split("|", fmt.delimited)
    if len(rest) != fmt.delimited + 1:
        raise ValueError("wrong number of fields")
    state = rest[0].strip()
    if not state or not state.isalpha() or not state.isupper() or len(state) > 3:
        raise ValueError(f"bad state {state!r}")
    cpus = int(rest[1])
    gpus = 0
    if fmt.owners:
        nodes = int(rest[2]) if rest[2].strip().isdigit() else 1
        tasks = int(rest[3]) if rest[3].strip().isdigit() else 1
        gpus = gpu_count(rest[4]) * nodes + gpu_count(rest[5]) + gpu_count(rest[6]) * tasks
    partitions = tuple(p.strip() for p in rest[-1].split(",") if p.strip()) or (NONE,)
    return Job(state, cpus, partitions, reason, user, account, gpus)


def _cap(totals: Counter[str], limit: int) -> tuple[dict[str, str], int]:
    """Keep the `limit` values with most jobs (ties by name); map the rest to
    OTHER. Returns the mapping and how many values were folded."""
    if len(totals) <= limit:
        return {v: v for v in totals}, 0
    ranked = sorted(totals, key=lambda v: (-totals[v], v))
    keep = set(ranked[:limit])
    return {v: (v if v in keep else OTHER) for v in totals}, len(totals) - limit


@dataclass
class QueueResult:
    states: Counter[str] = field(default_factory=Counter)  # family key -> jobs
    reasons: Counter[str] = field(default_factory=Counter)
    partition_states: dict[str, Counter[str]] = field(default_factory=dict)
    partition_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    cpus_pending: int = 0
    cpus_running: int = 0
    users: dict[str, Counter[str]] = field(default_factory=dict)
    accounts: dict[str, Counter[str]] = field(default_factory=dict)
    # SckyzO's view: (state key, user, partition list as squeue prints it,
    # reason or "") -> [jobs, CPUs]; every job in exactly one entry
    by_user: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    overflow: dict[str, int] = field(default_factory=dict)
    jobs: int = 0
    malformed: int = 0


def _state_keys(state: str, reason: str) -> list[str]:
    keys = [STATES.get(state, "other")]
    if state == "PD" and reason == "Dependency":
        keys.append("pending_dependency")
    if state not in FINISHED:
        keys.append("total")
    return keys


def aggregate(
    counts: Counter[bytes],
    fmt: SqueueFormat,
    max_label_values: int = 100,
    partitions: Iterable[str] = (),
) -> QueueResult:
    """Distinct records with their multiplicity -> the queue's numbers."""
    res = QueueResult()
    jobs: list[tuple[Job, int]] = []
    for record, n in counts.items():
        try:
            jobs.append((decode_record(record, fmt), n))
        except ValueError:
            res.malformed += n
    reason_totals: Counter[str] = Counter()
    user_totals: Counter[str] = Counter()
    account_totals: Counter[str] = Counter()
    for job, n in jobs:
        if job.state == "PD":
            reason_totals[job.reason] += n
        user_totals[job.user] += n
        account_totals[job.account] += n
    reason_map, res.overflow["reason"] = _cap(reason_totals, max_label_values)
    user_map: dict[str, str] = {}
    account_map: dict[str, str] = {}
    if fmt.has_user:
        user_map, res.overflow["user"] = _cap(user_totals, max_label_values)
    if fmt.owners:
        account_map, res.overflow["account"] = _cap(account_totals, max_label_values)
    for name in partitions:
        res.partition_states.setdefault(name, Counter())
    for job, n in jobs:
        res.jobs += n
        keys = _state_keys(job.state, job.reason)
        for key in keys:
            res.states[key] += n
        pending = job.state == "PD"
        reason = reason_map.get(job.reason, OTHER)
        if pending:
            res.reasons[reason] += n
            res.cpus_pending += job.cpus * n
        elif job.state == "R":
            res.cpus_running += job.cpus * n
        if fmt.has_user and job.state in EXPORTER_STATES:
            view = (
                STATES[job.state],
                user_map.get(job.user, OTHER),
                ",".join(job.partitions),
                reason if pending else "",
            )
            entry = res.by_user.setdefault(view, [0, 0])
            entry[0] += n
            entry[1] += job.cpus * n
        for part in job.partitions:
            pc = res.partition_states.setdefault(part, Counter())
            for key in keys:
                pc[key] += n
            if pending:
                res.partition_reasons[(part, reason)] += n
        if fmt.owners:
            for owner_map, value, table in (
                (user_map, job.user, res.users),
                (account_map, job.account, res.accounts),
            ):
                label = owner_map.get(value, OTHER)
                c = table.setdefault(label, Counter())
                if job.state == "PD":
                    c["jobs_pending"] += n
                elif job.state == "R":
                    c["jobs_running"] += n
                    c["cpus_running"] += job.cpus * n
                    c["gpus_running"] += job.gpus * n
                elif job.state == "S":
                    c["jobs_suspended"] += n
    return res


def _sckyzo_queue(res: QueueResult) -> list[MetricFamily]:
    """SckyzO's slurm_queue_* and slurm_cores_* per user and partition (and
    reason), and its slurm_jobs_* totals."""
    families: list[MetricFamily] = []
    for key in cat.EXPORTER_JOB_STATES:
        jobs, cores = cat.QUEUE[key].family(), cat.CORES[key].family()
        for (state, user, partitions, reason), (n, cpus) in sorted(res.by_user.items()):
            if state == key:
                labels = (user, partitions, reason) if key == "pending" else (user, partitions)
                jobs.add(labels, n)
                cores.add(labels, cpus)
        families += [jobs, cores]
        total = cat.JOBS[key].family()
        total.add_unlabelled(res.states.get(key, 0))
        families.append(total)
    for spec, value in ((cat.JOBS_CORES_RUNNING, res.cpus_running), (cat.JOBS_CORES_PENDING, res.cpus_pending)):
        fam = spec.family()
        fam.add_unlabelled(value)
        families.append(fam)
    return families


def queue_families(res: QueueResult, settings: SlurmSettings) -> list[MetricFamily]:
    families: list[MetricFamily] = []
    sckyzo = settings.naming == "sckyzo"
    if sckyzo:
        families += _sckyzo_queue(res)
    for key, spec in cat.QUEUE.items():
        exporter = key in cat.EXPORTER_JOB_STATES
        if exporter and sckyzo:
            continue
        fam = spec.family(labels=()) if exporter else spec.family()
        fam.add_unlabelled(res.states.get(key, 0))
        families.append(fam)
    fam = cat.QUEUE_PENDING_REASON.family()
    for reason in sorted(res.reasons):
        fam.add((reason,), res.reasons[reason])
    families.append(fam)
    for spec, value in ((cat.QUEUE_CPUS_PENDING, res.cpus_pending), (cat.QUEUE_CPUS_RUNNING, res.cpus_running)):
        fam = spec.family()
        fam.add_unlabelled(value)
        families.append(fam)
    names = sorted(res.partition_states)
    for key, spec in cat.PARTITION_JOBS.items():
        fam = spec.family()
        for name in names:
            fam.add((name,), res.partition_states[name].get(key, 0))
        families.append(fam)
    fam = cat.PARTITION_JOBS_PENDING_REASON.family()
    for part, reason in sorted(res.partition_reasons):
        fam.add((part, reason), res.partition_reasons[(part, reason)])
    families.append(fam)
    for enabled, specs, table in (
        (settings.per_user, cat.USER, res.users),
        (settings.per_account, cat.ACCOUNT, res.accounts),
    ):
        if not enabled:
            continue
        for key, spec in specs.items():
            fam = spec.family()
            for owner in sorted(table):
                fam.add((owner,), table[owner].get(key, 0))
            families.append(fam)
    fam = cat.LABEL_OVERFLOW.family()
    for label in sorted(res.overflow):
        fam.add((label,), res.overflow[label])
    families.append(fam)
    bad = cat.MALFORMED_RECORDS.family()
    bad.add(("squeue",), res.malformed)
    families.append(bad)
    return families


def parse_squeue_stream(
    chunks: Iterable[bytes],
    fmt: SqueueFormat,
    max_label_values: int = 100,
    partitions: Iterable[str] = (),
) -> QueueResult:
    """For tests and the benchmark: the same path as the collector's."""
    counter = RecordCounter(fmt.fixed_width)
    for chunk in chunks:
        counter.feed(chunk)
    return aggregate(counter.finish(), fmt, max_label_values, partitions)


PARTITIONS_ARGS = ("-h", "-a", "-O", "PartitionName:0")


@register
class SqueueCollector(PolledSlurmCollector):
    name = "squeue"
    group = "slurm"
    default_roles = ("head",)
    description = (
        "Slurm jobs by state, pending reason and partition (per user/account when enabled), "
        "streamed from squeue's fixed-width output, polled every slurm.interval."
    )
    command = "squeue"

    def __init__(self, host: Host, options: Any, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._sinfo = SlurmRunner(host, self.settings, "sinfo")

    def poll(self) -> list[MetricFamily]:
        settings = self.settings
        fmt = SqueueFormat.for_settings(settings)
        counter = RecordCounter(fmt.fixed_width)
        self.runner.stream(fmt.args(settings.finished_jobs), counter.feed)
        counts = counter.finish()
        # every partition gets its series, with zeros where no job is
        partitions = self._partitions()
        res = aggregate(counts, fmt, settings.max_label_values, partitions)
        if res.malformed and not res.jobs:
            raise ValueError(f"squeue: none of {res.malformed} records is in the requested format")
        return queue_families(res, settings)

    def _partitions(self) -> list[str]:
        """Every partition, so that empty ones get zero series. Without it the
        job counts are still right: a failure here costs only the zeros."""
        try:
            out = self._sinfo.run(PARTITIONS_ARGS).stdout
        except CommandError as e:
            log.info("slurm_partitions_unavailable", error=str(e)[:300])
            return []
        return sorted({line.strip() for line in out.splitlines() if line.strip()})

    def close(self) -> None:
        super().close()
        self._sinfo.close()
