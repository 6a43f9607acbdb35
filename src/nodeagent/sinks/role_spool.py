"""One CloudWatch spool per role: `<spool base>/<role>/`.

A node whose role changes (a login node made head, a head node re-run as
login) must not publish what it spooled in the old role under the new one:
the new role's sink sends from its own directory only. What another role
left behind stays where it is and goes out when the node runs in that role
again, with its original timestamps. It does not grow meanwhile (nothing
writes it) and is bounded by that role's `spool_max_bytes`; segments older
than CloudWatch accepts (14 days) are deleted at the next start of any role,
as they could only be dropped as too old.

Earlier versions kept one flat spool in `<spool base>/`. Its segments are
moved into the directory of the role that wrote them, read from their datums'
`Role` dimension (every publish carries the sink's own SPOOL_OLDEST_AGE and
per-node summaries, which have it); a segment without exactly one known role
cannot be assigned and is deleted, with an error naming the count.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from nodeagent.roles import ROLE_TABLE
from nodeagent.sinks.mapping import MAX_AGE_SECONDS, dimension_name
from nodeagent.sinks.spool import CURSOR_NAME, LOCK_NAME, SEGMENT_NAME, SpoolCorrupt, decode

log = structlog.get_logger(__name__)

ROLE_DIMENSION = dimension_name("role")


def role_spool_dir(base: str, role: str, now: float | None = None) -> str:
    """The spool directory of `role` under `base`, after moving an earlier
    version's flat spool into per-role directories and deleting what other
    roles left that CloudWatch would refuse as too old."""
    if role not in ROLE_TABLE:
        raise ValueError(f"unknown role {role!r}")
    root = Path(base)
    now = time.time() if now is None else now
    with contextlib.suppress(OSError):  # an unusable base: the spool itself reports it
        migrate_flat_spool(root)
        _prune_other_roles(root, role, now)
    return str(root / role)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[bool]:
    """flock the spool's lock file without waiting; yields False when another
    process holds it (that spool is in use: leave it alone)."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _segments(directory: Path) -> list[tuple[int, int, int, Path]]:
    """(seq, timestamp ms, datums, path) of the segment files, oldest first."""
    found = []
    for entry in os.scandir(directory):
        m = SEGMENT_NAME.match(entry.name)
        if m is not None and entry.is_file(follow_symlinks=False):
            found.append((int(m[1]), int(m[2]), int(m[3]), Path(entry.path)))
    return sorted(found)


def segment_role(path: Path) -> str | None:
    """The one role whose datums a segment holds, else None."""
    try:
        datums = decode(path.read_bytes())
    except (OSError, SpoolCorrupt):
        return None
    roles = {v for d in datums for k, v in d.dims if k == ROLE_DIMENSION}
    if len(roles) != 1:
        return None
    (role,) = roles
    return role if role in ROLE_TABLE else None


def migrate_flat_spool(base: Path) -> None:
    """Move the segments of an earlier version's flat spool in `base` into
    `base/<role>/`, with the saved cursor of the oldest one."""
    if not base.is_dir():
        return
    flat = _segments(base)
    if not flat:
        return
    with _locked(base) as ours:
        if not ours:
            log.warning("spool_migration_deferred", dir=str(base), reason="the flat spool is in use by another process")
            return
        cursor = _read_cursor_name(base)
        moved: dict[str, int] = {}
        unassigned = 0
        for _, _, count, path in flat:
            role = segment_role(path)
            if role is None or (base / role / path.name).exists():  # never overwrite the role's own segment
                unassigned += count
                path.unlink()
                continue
            target = base / role
            target.mkdir(mode=0o700, exist_ok=True)
            os.rename(path, target / path.name)
            moved[role] = moved.get(role, 0) + count
            if cursor == path.name and not (target / CURSOR_NAME).exists():
                os.rename(base / CURSOR_NAME, target / CURSOR_NAME)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(base / CURSOR_NAME)
        _fsync_dir(base)
    if moved:
        log.info("spool_migrated", dir=str(base), datums_by_role=moved)
    if unassigned:
        log.error("spool_segments_unassigned", dir=str(base), datums=unassigned,
                  reason="no single role in the segment's datums: deleted, not sent under another role")  # fmt: skip


def _prune_other_roles(base: Path, role: str, now: float) -> None:
    """Delete other roles' segments older than CloudWatch accepts, and say
    what those roles still have waiting."""
    waiting: dict[str, int] = {}
    for other in ROLE_TABLE:
        directory = base / other
        if other == role or not directory.is_dir():
            continue
        with _locked(directory) as ours:
            if not ours:
                continue  # that role's agent runs on this machine and owns it
            expired = 0
            for _, ts_ms, count, path in _segments(directory):
                if now - ts_ms / 1000.0 > MAX_AGE_SECONDS:
                    expired += count
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                else:
                    waiting[other] = waiting.get(other, 0) + count
            if expired:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / CURSOR_NAME)
                log.warning("spool_expired", dir=str(directory), role=other, datums=expired,
                            reason="older than CloudWatch accepts (14 days)")  # fmt: skip
    if waiting:
        log.info("spool_kept_for_other_roles", dir=str(base), datums_by_role=waiting,
                 note="sent when this node runs in that role again")  # fmt: skip


def _read_cursor_name(directory: Path) -> str | None:
    try:
        with open(directory / CURSOR_NAME, encoding="ascii") as f:
            return f.read(100).split()[0]
    except (OSError, ValueError, IndexError):
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
