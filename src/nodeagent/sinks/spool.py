"""The CloudWatch spool: every publish is written to disk before it is sent.

One publish = one segment file `<seq>-<timestamp ms>-<datums>.seg` holding the
datums as zlib-compressed JSON. A segment is written to a hidden `.part` file,
fsync'd and renamed, so a segment on disk is always whole (a kill -9 during
the write leaves only a `.part`, removed at the next start: that publish never
returned). The sender reads from the oldest segment, keeps a cursor inside it,
and deletes a segment once CloudWatch accepted all its datums. A cursor inside
a segment (a request ended in the middle of it) is saved in the file `cursor`,
so a restart does not resend what CloudWatch already accepted; only a request
in flight at a kill -9 (sent, its answer not yet seen) is sent again: delivery
is at-least-once, in order, with the original timestamps.

The spool is bounded: when a new segment would pass `max_bytes`, the oldest
segments are deleted and their datums returned to the caller to be counted
(reason spool_full). A lock file (flock) keeps a second process off the same
spool; within one process the same spool object is shared (a config reload
builds the new sink before closing the old one).

If the directory cannot be written (disk full, read-only, missing at boot),
segments are kept in memory, still bounded, and the error is logged; they are
lost only if the process dies before they are sent. Each publish tries the
disk again (and, until it got it, the lock). `memory_only` is true while that
is so, or while segments kept in memory then still wait to be sent (the sink
serves it as nodeagent_cloudwatch_spool_memory_only).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from nodeagent.sinks.mapping import Datum

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1
SEGMENT_NAME = re.compile(r"^(\d{12})-(\d{1,16})-(\d{1,9})\.seg$")
LOCK_NAME = "lock"
CURSOR_NAME = "cursor"


class SpoolLocked(RuntimeError):
    """Another process holds this spool."""


class SpoolCorrupt(ValueError):
    pass


@dataclass
class Segment:
    seq: int
    ts_ms: int  # timestamp of its datums (the publish's), milliseconds
    count: int  # datums in the segment
    size: int  # bytes (compressed)
    path: Path | None  # None: kept in memory (the directory could not be written)
    blob: bytes | None = None


def encode(datums: Sequence[Datum]) -> bytes:
    rows = [[d.name, [list(p) for p in d.dims], d.value, d.unit, d.resolution, d.timestamp] for d in datums]
    text = json.dumps({"v": FORMAT_VERSION, "d": rows}, separators=(",", ":"), allow_nan=False)
    return zlib.compress(text.encode("utf-8"), 6)


def decode(blob: bytes) -> list[Datum]:
    try:
        doc = json.loads(zlib.decompress(blob))
        if doc.get("v") != FORMAT_VERSION:
            raise SpoolCorrupt(f"unknown segment format {doc.get('v')!r}")
        return [
            Datum(str(n), tuple((str(k), str(v)) for k, v in dims), float(val), str(u), int(r), float(ts))
            for n, dims, val, u, r, ts in doc["d"]
        ]
    except (zlib.error, ValueError, TypeError, KeyError, AttributeError) as e:
        raise SpoolCorrupt(str(e)) from e


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock = threading.RLock()
        self._segments: list[Segment] = []  # oldest first
        self._cursor = 0  # datums of the oldest segment already accepted
        self._inflight: set[int] = set()
        # segments evicted while being sent: seq -> [datums, datums done]
        self._evicted: dict[int, list[int]] = {}
        self._bytes = 0
        self._next_seq = 1
        self._lock_fd: int | None = None
        self._disk_ok = True
        self._cursor_saved = False
        self._refs = 0
        self._released = False
        self._open()

    # ---- opening ---------------------------------------------------------------
    def _open(self) -> None:
        """Lock the directory and load its segments. When the directory cannot
        be used the spool stays in memory and append() calls this again."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            if self._disk_ok:
                log.error("spool_unwritable", dir=str(self.directory), error=str(e))
            self._disk_ok = False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolLocked(f"spool {self.directory} is in use by another process") from None
        self._lock_fd = fd
        found: list[Segment] = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".part"):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)  # a write that never finished: that publish never returned
                continue
            m = SEGMENT_NAME.match(entry.name)
            if m is None:
                continue
            try:
                size = entry.stat().st_size
            except OSError:
                continue
            found.append(Segment(int(m[1]), int(m[2]), int(m[3]), size, Path(entry.path)))
        found.sort(key=lambda s: s.seq)
        if found and not self._segments:
            self._cursor = self._load_cursor(found[0])
        last_file_seq = found[-1].seq if found else 0
        if self._next_seq > 1:
            # opened late: the segments this process already numbered (in
            # memory, perhaps being sent) stay first and those found follow,
            # renumbered in memory only; their files keep lower numbers than
            # the files written from now on, so a restart reads them in order
            for seg in found:
                seg.seq = self._next_seq
                self._next_seq += 1
        self._segments.extend(found)
        self._bytes += sum(s.size for s in found)
        self._next_seq = max(self._next_seq, last_file_seq + 1)
        if found:
            log.info(
                "spool_loaded",
                dir=str(self.directory),
                segments=len(found),
                datums=sum(s.count for s in found) - self._cursor,
                bytes=sum(s.size for s in found),
            )

    def _load_cursor(self, head: Segment) -> int:
        """The saved cursor when it points into `head` (the oldest segment
        found), else 0. A cursor saved for a segment deleted since is stale."""
        self._cursor_saved = True  # whatever is there goes once it no longer applies
        try:
            with open(self.directory / CURSOR_NAME, encoding="ascii") as f:
                name, index = f.read(100).split()
            done = int(index)
        except FileNotFoundError:
            self._cursor_saved = False
            return 0
        except (OSError, ValueError):
            done = 0
            name = ""
        if head.path is None or name != head.path.name or not 0 < done < head.count:
            self._drop_cursor()
            return 0
        return done

    def _save_cursor(self) -> None:
        """Remember how far into the oldest segment CloudWatch accepted. Not
        fsync'd: a cursor lost in a power cut only means resending (the file is
        written after the datums were accepted, so it is never ahead)."""
        head = self._segments[0]
        if head.path is None or self._lock_fd is None:
            return
        tmp = self.directory / f".{CURSOR_NAME}.part"
        try:
            with open(tmp, "w", encoding="ascii") as f:
                f.write(f"{head.path.name} {self._cursor}\n")
            os.replace(tmp, self.directory / CURSOR_NAME)
            self._cursor_saved = True
        except OSError as e:
            log.warning("spool_cursor_not_saved", dir=str(self.directory), error=str(e))

    def _drop_cursor(self) -> None:
        if self._cursor_saved:
            self._cursor_saved = False
            with contextlib.suppress(OSError):
                os.unlink(self.directory / CURSOR_NAME)

    def acquire(self) -> Spool:
        with self._lock:
            self._refs += 1
        return self

    def release(self) -> bool:
        """Drop one user; the last one unlocks. True when it was the last."""
        with self._lock:
            self._refs -= 1
            if self._refs > 0:
                return False
            self._released = True
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
            return True

    # ---- state -----------------------------------------------------------------
    @property
    def datums(self) -> int:
        with self._lock:
            return sum(s.count for s in self._segments) - self._cursor

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def segments(self) -> int:
        return len(self._segments)

    def oldest_timestamp(self) -> float | None:
        with self._lock:
            return self._segments[0].ts_ms / 1000.0 if self._segments else None

    def empty(self) -> bool:
        with self._lock:
            return not self._segments

    @property
    def memory_only(self) -> bool:
        """True while a kill -9 would lose spooled data: the directory could not
        be used or the last segment could not be written, or segments kept in
        memory then are still waiting."""
        with self._lock:
            return not self._disk_ok or any(seg.path is None for seg in self._segments)

    # ---- writing -----------------------------------------------------------------
    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write(self, seq: int, ts_ms: int, count: int, blob: bytes) -> Path:
        final = self.directory / f"{seq:012d}-{ts_ms}-{count}.seg"
        tmp = self.directory / f".{seq:012d}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # a full disk must not keep half segments
            raise
        if self.fsync:
            self._fsync_dir()
        return final

    def append(self, datums: Sequence[Datum]) -> int:
        """Spool one publish. Returns how many datums were dropped (the caller
        counts them): older ones evicted to stay within max_bytes, or this
        publish's own when it alone is larger than max_bytes (then nothing
        else is evicted)."""
        if not datums:
            return 0
        blob = encode(datums)
        ts_ms = max(0, int(min(d.timestamp for d in datums) * 1000))
        if len(blob) > self.max_bytes:
            # refused alone: evicting the older data for it would lose both
            log.error("spool_segment_too_large", bytes=len(blob), max_bytes=self.max_bytes)
            return len(datums)
        with self._lock:
            if self._lock_fd is None and not self._released:
                with contextlib.suppress(SpoolLocked, OSError):  # still unusable: stay in memory
                    self._open()
            dropped = self._make_room(len(blob))
            seq = self._next_seq
            self._next_seq += 1
            path: Path | None = None
            if self._lock_fd is not None:
                try:
                    path = self._write(seq, ts_ms, len(datums), blob)
                    if not self._disk_ok:
                        log.info("spool_writable_again", dir=str(self.directory))
                    self._disk_ok = True
                except OSError as e:
                    if self._disk_ok:
                        log.error("spool_write_failed", dir=str(self.directory), error=str(e))
                    self._disk_ok = False
            self._segments.append(Segment(seq, ts_ms, len(datums), len(blob), path, None if path is not None else blob))
            self._bytes += len(blob)
        return dropped

    def _make_room(self, incoming: int) -> int:
        dropped = 0
        while self._segments and self._bytes + incoming > self.max_bytes:
            victim = self._segments[0]  # always the oldest
            if victim.seq in self._inflight:
                # being sent right now: what the send does not deliver is counted
                # when the sender lets go (release_inflight)
                self._evicted[victim.seq] = [victim.count, self._cursor]
            else:
                dropped += victim.count - self._cursor
            self._remove(victim)
        return dropped

    def _remove(self, seg: Segment) -> None:
        if seg is self._segments[0]:
            self._cursor = 0
            self._drop_cursor()
        self._segments.remove(seg)
        self._bytes -= seg.size
        self._inflight.discard(seg.seq)
        if seg.path is not None:
            try:
                os.unlink(seg.path)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.error("spool_delete_failed", path=str(seg.path), error=str(e))

    # ---- reading -----------------------------------------------------------------
    def peek(self, max_datums: int) -> tuple[list[Datum], list[tuple[int, int]], int]:
        """Up to max_datums datums from the oldest on, with each one's position
        (segment seq, index), plus the number of datums in corrupt segments
        that were dropped on the way (the caller counts them)."""
        datums: list[Datum] = []
        positions: list[tuple[int, int]] = []
        corrupt = 0
        with self._lock:
            for seg in list(self._segments):
                if len(datums) >= max_datums:
                    break
                start = self._cursor if seg is self._segments[0] else 0
                try:
                    blob = seg.blob if seg.blob is not None else _read(seg.path)
                    rows = decode(blob)
                except (OSError, SpoolCorrupt) as e:
                    log.error("spool_segment_corrupt", seq=seg.seq, error=str(e))
                    corrupt += seg.count - start
                    self._remove(seg)
                    continue
                take = rows[start : start + max_datums - len(datums)]
                datums.extend(take)
                positions.extend((seg.seq, start + i) for i in range(len(take)))
                self._inflight.add(seg.seq)
        return datums, positions, corrupt

    def ack(self, position: tuple[int, int]) -> None:
        """Everything up to and including position is done (sent or dropped)."""
        seq, index = position
        with self._lock:
            for evicted_seq, counts in self._evicted.items():
                if evicted_seq < seq:
                    counts[1] = counts[0]
                elif evicted_seq == seq:
                    counts[1] = max(counts[1], index + 1)
            while self._segments and self._segments[0].seq < seq:
                self._remove(self._segments[0])
            if self._segments and self._segments[0].seq == seq:
                head = self._segments[0]
                if index + 1 >= head.count:
                    self._remove(head)
                elif index + 1 > self._cursor:
                    self._cursor = index + 1
                    self._save_cursor()

    def release_inflight(self) -> int:
        """The sender is done with what it peeked. Returns how many datums of
        segments evicted meanwhile (spool cap) were not delivered: the caller
        counts them as dropped."""
        with self._lock:
            lost = sum(count - done for count, done in self._evicted.values())
            self._evicted.clear()
            self._inflight.clear()
            return lost


def _read(path: Path | None) -> bytes:
    if path is None:
        raise SpoolCorrupt("segment has neither file nor data")
    with open(path, "rb") as f:
        return f.read()


# One Spool object per directory per process.
_OPEN: dict[str, Spool] = {}
_OPEN_LOCK = threading.Lock()


def open_spool(directory: str, max_bytes: int, fsync: bool = True) -> Spool:
    """The process' Spool for directory (shared, reference counted); raises
    SpoolLocked when another process holds it."""
    key = os.path.realpath(directory)
    with _OPEN_LOCK:
        spool = _OPEN.get(key)
        if spool is None:
            spool = Spool(directory, max_bytes, fsync)
            _OPEN[key] = spool
        spool.max_bytes = max_bytes
        spool.fsync = fsync
        return spool.acquire()


def close_spool(spool: Spool) -> None:
    with _OPEN_LOCK:
        if spool.release():
            for key, value in list(_OPEN.items()):
                if value is spool:
                    del _OPEN[key]
