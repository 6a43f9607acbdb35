"""The on-disk spool: order, restart, cap, corruption, locking."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nodeagent.sinks.mapping import Datum
from nodeagent.sinks.spool import Spool, SpoolLocked, close_spool, decode, encode, open_spool


def batch(start: int, n: int, ts: float | None = None) -> list[Datum]:
    return [
        Datum("M", (("Partition", f"p{i % 3}"),), float(i), "Count", 60, ts if ts is not None else 1000.0 + i)
        for i in range(start, start + n)
    ]


def drain(spool: Spool, step: int = 7) -> list[float]:
    out: list[float] = []
    while not spool.empty():
        datums, positions, corrupt = spool.peek(step)
        assert corrupt == 0
        out.extend(d.value for d in datums)
        spool.ack(positions[-1])
        spool.release_inflight()
    return out


def test_encode_roundtrip() -> None:
    b = [*batch(0, 5), Datum("Weird ü", (), -1.5e-100, "Percent", 1, 1.25)]
    assert decode(encode(b)) == b


def test_order_cursor_and_restart(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20).acquire()
    s.append(batch(0, 10))
    s.append(batch(10, 10))
    s.append(batch(20, 5))
    assert s.datums == 25 and s.segments == 3
    datums, positions, _ = s.peek(12)
    assert [d.value for d in datums] == list(range(12))
    s.ack(positions[7])  # accepted up to value 7 only
    s.release_inflight()
    assert s.datums == 17 and s.segments == 3
    s.release()
    # a new process (as after a kill -9): the cursor inside the first segment
    # was saved, so values 0-7, already accepted, are not sent again
    s2 = Spool(tmp_path, 1 << 20).acquire()
    assert s2.datums == 17
    assert drain(s2) == [float(i) for i in range(8, 25)]
    assert s2.datums == 0 and s2.size_bytes == 0
    assert not list(tmp_path.glob("*.seg"))
    assert not (tmp_path / "cursor").exists()  # dropped with its segment
    s2.release()


def test_saved_cursor_applies_to_its_own_segment_only(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20).acquire()
    s.append(batch(0, 10))
    _, positions, _ = s.peek(10)
    s.ack(positions[3])
    s.release_inflight()
    s.release()
    saved = (tmp_path / "cursor").read_text()
    # the segment went away (sent by a process whose delete did not happen, or
    # removed by hand) and another one is first now: the cursor is stale
    for seg in tmp_path.glob("*.seg"):
        seg.unlink()
    s2 = Spool(tmp_path, 1 << 20).acquire()
    s2.append(batch(100, 10))
    s2.release()
    (tmp_path / "cursor").write_text(saved)
    s3 = Spool(tmp_path, 1 << 20).acquire()
    assert s3.datums == 10
    assert drain(s3) == [float(i) for i in range(100, 110)]
    s3.release()
    # a cursor file that does not parse is ignored
    s4 = Spool(tmp_path, 1 << 20).acquire()
    s4.append(batch(0, 4))
    s4.release()
    (tmp_path / "cursor").write_bytes(b"\xff\x00 garbage")
    s5 = Spool(tmp_path, 1 << 20).acquire()
    assert drain(s5) == [0.0, 1.0, 2.0, 3.0]
    s5.release()


def test_file_names_carry_time_and_count(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20).acquire()
    s.append(batch(0, 3, ts=1_700_000_000.5))
    (name,) = [p.name for p in tmp_path.glob("*.seg")]
    assert name == "000000000001-1700000000500-3.seg"
    assert s.oldest_timestamp() == 1_700_000_000.5
    s.release()


def test_partial_write_is_discarded_on_start(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20).acquire()
    s.append(batch(0, 3))
    s.release()
    (tmp_path / ".000000000002.part").write_bytes(b"half a segm")
    s2 = Spool(tmp_path, 1 << 20).acquire()
    assert s2.datums == 3
    assert not list(tmp_path.glob("*.part"))
    s2.append(batch(3, 1))
    assert drain(s2) == [0.0, 1.0, 2.0, 3.0]
    s2.release()


def test_cap_drops_oldest_and_counts(tmp_path: Path) -> None:
    s = Spool(tmp_path, 6000).acquire()
    dropped = 0
    for k in range(40):
        # random-ish values so that zlib cannot shrink segments to nothing
        dropped += s.append(
            [Datum("M", (("I", str(k * 100 + i)),), (k * 7919 + i) * 1.000123, "Count", 60, 1.0) for i in range(20)]
        )
    assert s.size_bytes <= 6000
    assert dropped > 0
    assert dropped + s.datums == 40 * 20  # nothing vanishes silently
    # what is left is the newest data, in order
    left = drain(s, step=1000)
    assert left == sorted(left)
    assert left[-1] == pytest.approx((39 * 7919 + 19) * 1.000123)
    s.release()


def test_cap_counts_only_unsent_part_of_head(tmp_path: Path) -> None:
    s = Spool(tmp_path, 10_000).acquire()
    s.append(batch(0, 10))
    _datums, positions, _ = s.peek(4)
    s.ack(positions[-1])
    s.release_inflight()
    new = batch(10, 1)
    s.max_bytes = len(encode(new))  # room for the new segment alone: everything older goes
    assert s.append(new) == 6  # the 6 unsent of the head
    assert drain(s) == [10.0]
    s.release()


def test_oversized_publish_is_refused_without_evicting(tmp_path: Path) -> None:
    s = Spool(tmp_path, 10_000).acquire()
    s.append(batch(0, 10))
    s.append(batch(10, 10))
    big = [Datum("M", (("I", f"{i}-{i * 7919}"),), i * 1.000123, "Count", 60, 1.0) for i in range(2000)]
    assert len(encode(big)) > s.max_bytes
    assert s.append(big) == 2000  # refused and counted, alone
    assert s.datums == 20 and s.segments == 2
    assert drain(s) == [float(i) for i in range(20)]
    s.release()


def test_corrupt_segment_is_dropped_and_counted(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20).acquire()
    s.append(batch(0, 4))
    s.append(batch(4, 4))
    s.release()
    first = sorted(tmp_path.glob("*.seg"))[0]
    first.write_bytes(b"garbage")
    s2 = Spool(tmp_path, 1 << 20).acquire()
    datums, _positions, corrupt = s2.peek(100)
    assert corrupt == 4
    assert [d.value for d in datums] == [4.0, 5.0, 6.0, 7.0]
    s2.release()


def test_another_process_holding_the_spool(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from nodeagent.sinks.spool import Spool
                s = Spool({str(tmp_path)!r}, 1 << 20)
                print("locked", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(SpoolLocked):
            Spool(tmp_path, 1 << 20)
    finally:
        holder.kill()
        holder.wait(5)
    Spool(tmp_path, 1 << 20).acquire().release()  # the kernel released the dead holder's lock


def test_one_spool_per_directory_in_a_process(tmp_path: Path) -> None:
    a = open_spool(str(tmp_path), 1 << 20)
    b = open_spool(str(tmp_path / "."), 2 << 20)
    assert a is b and a.max_bytes == 2 << 20
    close_spool(a)
    a.append(batch(0, 1))  # still open for the second user
    close_spool(b)
    c = open_spool(str(tmp_path), 1 << 20)
    assert c is not a and c.datums == 1
    close_spool(c)


def test_unwritable_directory_keeps_data_in_memory(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permissions: make the path a file instead of a directory
        target = tmp_path / "file"
        target.write_text("x")
        s = Spool(target / "spool", 1 << 20).acquire()
    else:  # pragma: no cover
        tmp_path.chmod(0o500)
        s = Spool(tmp_path / "spool", 1 << 20).acquire()
    s.append(batch(0, 3))
    assert s.datums == 3
    assert drain(s) == [0.0, 1.0, 2.0]
    s.release()


def test_directory_missing_at_start_is_used_once_it_exists(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory yet")  # root ignores permissions; a file stops mkdir
    s = Spool(state / "spool", 1 << 20).acquire()
    assert s.memory_only
    s.append(batch(0, 3))  # kept in memory
    state.unlink()
    s.append(batch(3, 2))  # the directory can be made now: locked and written to
    assert len(list((state / "spool").glob("*.seg"))) == 1
    assert s.memory_only  # the first publish still waits in memory only
    with pytest.raises(SpoolLocked):
        Spool(state / "spool", 1 << 20)
    assert drain(s) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert not s.memory_only
    s.release()


def test_late_open_keeps_an_earlier_runs_segments_in_order(tmp_path: Path) -> None:
    spool_dir, aside = tmp_path / "spool", tmp_path / "aside"
    earlier = Spool(spool_dir, 1 << 20).acquire()
    earlier.append(batch(0, 2))
    earlier.append(batch(2, 2))
    earlier.release()
    spool_dir.rename(aside)
    spool_dir.write_text("x")  # unusable at start (not mounted yet, say)
    s = Spool(spool_dir, 1 << 20).acquire()
    s.append(batch(10, 1))  # in memory
    spool_dir.unlink()
    aside.rename(spool_dir)
    s.append(batch(20, 1))  # opens the directory and finds the earlier run's segments
    datums, _positions, _ = s.peek(100)
    s.release_inflight()
    assert [d.value for d in datums] == [10.0, 0.0, 1.0, 2.0, 3.0, 20.0]
    s.release()
    # a restart reads the files in order: the earlier run's, then the one written after the late open
    s2 = Spool(spool_dir, 1 << 20).acquire()
    assert drain(s2) == [0.0, 1.0, 2.0, 3.0, 20.0]
    s2.release()


def test_failed_write_leaves_no_part_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Spool(tmp_path, 1 << 20).acquire()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    assert not s.memory_only
    monkeypatch.setattr(os, "fsync", disk_full)
    s.append(batch(0, 3))  # kept in memory
    assert s.memory_only
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob("*.seg"))
    monkeypatch.undo()
    s.append(batch(3, 1))  # room again
    assert len(list(tmp_path.glob("*.seg"))) == 1
    assert drain(s) == [0.0, 1.0, 2.0, 3.0]
    assert not s.memory_only
    s.release()


def test_eviction_of_segments_being_sent_is_counted_once(tmp_path: Path) -> None:
    s = Spool(tmp_path, 10_000).acquire()
    s.append(batch(0, 10))
    s.append(batch(10, 10))
    _datums, positions, _ = s.peek(15)  # the sender holds all of the first segment and 5 of the second
    s.max_bytes = len(encode(batch(20, 1)))  # room for the new segment alone
    assert s.append(batch(20, 1)) == 0  # the in-flight segments it evicts are not counted yet
    assert s.segments == 1
    s.ack(positions[11])  # the send delivered 12 of the 15 it had
    assert s.release_inflight() == 20 - 12  # the rest of the evicted segments is lost, counted now
    assert drain(s) == [20.0]
    # a failed send: everything evicted from it counts
    s.max_bytes = 10_000
    s.append(batch(30, 4))
    s.peek(4)
    s.max_bytes = len(encode(batch(40, 1)))
    assert s.append(batch(40, 1)) == 0
    assert s.release_inflight() == 4
    s.release()
