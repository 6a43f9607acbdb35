"""Which Slurm job owns each GPU.

Natively: NVML lists each GPU's compute processes; a process's job id is in
its cgroup path (/proc/<pid>/cgroup):

    cgroup v1: 11:devices:/slurm/uid_1000/job_4242/step_0/task_0
               (also /slurm_<nodename>/... with several slurmd per host)
    cgroup v2: 0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0

and, failing that, SLURM_JOB_ID in /proc/<pid>/environ. Also dcgm-exporter's
--hpc-job-mapping-dir format: a directory of files named after the gpu label
(`0`, or `0.<GPU_I_ID>` for MIG) holding one job id per line.

Job ids become label values, so they are bounded: at most 64 characters of
[A-Za-z0-9_.:+-]; anything else is dropped with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import structlog

from nodeagent.host import Host

log = structlog.get_logger(__name__)

_V1 = re.compile(r"/slurm(?:_[^/]+)?/uid_\d+/job_(\d+)(?:/|$)")
_V2 = re.compile(r"/slurmstepd\.scope/job_(\d+)(?:/|$)")
_JOB_ID = re.compile(r"[A-Za-z0-9_.:+\-]{1,64}\Z")


def valid_job_id(text: str) -> bool:
    return _JOB_ID.match(text) is not None


def parse_cgroup_job(text: str) -> str | None:
    """The Slurm job id in a /proc/<pid>/cgroup file (v1 or v2), or None."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2]
        m = _V2.search(path) or _V1.search(path)
        if m:
            return m.group(1)
    return None


def parse_environ_job(data: bytes) -> str | None:
    """SLURM_JOB_ID from a /proc/<pid>/environ (NUL-separated), or None."""
    for entry in data.split(b"\0"):
        if entry.startswith(b"SLURM_JOB_ID="):
            value = entry[len(b"SLURM_JOB_ID=") :].decode("ascii", "replace").strip()
            return value if valid_job_id(value) else None
    return None


def parse_mapping_file(text: str) -> tuple[list[str], list[str]]:
    """(job ids, rejected lines) of one mapping file."""
    jobs: list[str] = []
    rejected: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if valid_job_id(line):
            if line not in jobs:
                jobs.append(line)
        else:
            rejected.append(line[:80])
    return jobs, rejected


class JobResolver:
    """PID -> job id through Host, with a cache of the PIDs seen last cycle."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._cache: dict[int, str | None] = {}
        self._seen: set[int] = set()

    def begin_cycle(self) -> None:
        self._cache = {pid: job for pid, job in self._cache.items() if pid in self._seen}
        self._seen = set()

    def job_of(self, pid: int) -> str | None:
        self._seen.add(pid)
        if pid in self._cache:
            return self._cache[pid]
        job: str | None = None
        text = self.host.read_optional(self.host.proc(str(pid), "cgroup"))
        if text is not None:
            job = parse_cgroup_job(text)
        if job is None:
            try:
                job = parse_environ_job(self.host.read_bytes(self.host.proc(str(pid), "environ")))
            except OSError:
                job = None
        self._cache[pid] = job
        return job


class MappingDir:
    """dcgm-exporter's --hpc-job-mapping-dir, read once per sampling cycle."""

    def __init__(self, host: Host, path: str) -> None:
        self.host = host
        self.path = path
        self._warned: set[str] = set()
        self._missing_logged = False

    def read(self) -> dict[str, list[str]]:
        """gpu label (`0` or `0.<GPU_I_ID>`) -> job ids."""
        directory = self.host.rooted(self.path)
        if not self.host.exists(directory):
            if not self._missing_logged:
                log.warning("gpu_job_mapping_dir_missing", path=self.path)
                self._missing_logged = True
            return {}
        self._missing_logged = False
        out: dict[str, list[str]] = {}
        for name in self.host.listdir(directory):
            if not re.fullmatch(r"\d+(?:\.\d+)?", name):
                continue
            text = self.host.read_optional(directory / name)
            if text is None:
                continue
            jobs, rejected = parse_mapping_file(text)
            for bad in rejected:
                key = f"{name}:{bad}"
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("gpu_job_id_rejected", file=name, value=bad)
            if jobs:
                out[name] = jobs
        return out


def bounded(jobs: Iterable[str], limit: int, gpu: str, warned: set[str]) -> tuple[str, ...]:
    """Sorted unique job ids, at most `limit` (the rest dropped with one warning per GPU)."""
    unique = sorted(set(jobs), key=lambda j: (len(j), j))
    if len(unique) > limit:
        if gpu not in warned:
            warned.add(gpu)
            log.warning("gpu_jobs_truncated", gpu=gpu, jobs=len(unique), limit=limit)
        unique = unique[:limit]
    return tuple(unique)
