"""One spool per role: a node whose role changes never publishes what it
spooled in the old role under the new one; that data waits for the old role
to come back (bounded: 14 days, that role's cap). An earlier version's flat
spool is moved into per-role directories by the datums' Role dimension."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from cwtools import minute
from faultproxy import FaultProxy

from nodeagent.catalogue import slurm as sl
from nodeagent.config import parse_config
from nodeagent.host import Host
from nodeagent.sinks import build_sinks
from nodeagent.sinks.mapping import MAX_AGE_SECONDS, Datum
from nodeagent.sinks.role_spool import role_spool_dir
from nodeagent.sinks.spool import Spool, decode

NOW = 1_800_000_000.0


def datums(role: str | None, n: int, ts: float = NOW) -> list[Datum]:
    dims = (("Role", role), ("InstanceId", "i-1")) if role else (("Partition", "p"),)
    return [Datum("CPU_IDLE", dims, float(i), "Percent", 60, ts) for i in range(n)]


def flat_spool(base: Path, *publishes: list[Datum]) -> list[str]:
    """An earlier version's spool: segments straight in base. Their names."""
    spool = Spool(base, 1 << 20, fsync=False).acquire()
    for p in publishes:
        spool.append(p)
    spool.release()
    return sorted(p.name for p in base.glob("*.seg"))


def seg_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.seg"))


def test_each_role_has_its_own_directory(tmp_path: Path) -> None:
    assert role_spool_dir(str(tmp_path), "head") == str(tmp_path / "head")
    assert role_spool_dir(str(tmp_path), "login") == str(tmp_path / "login")
    with pytest.raises(ValueError, match="unknown role"):
        role_spool_dir(str(tmp_path), "../etc")


def test_flat_spool_is_moved_to_the_role_that_wrote_it(tmp_path: Path) -> None:
    names = flat_spool(tmp_path, datums("head", 3), datums("login", 2), datums("head", 4))
    with structlog.testing.capture_logs() as logs:
        assert role_spool_dir(str(tmp_path), "login", now=NOW) == str(tmp_path / "login")
    assert seg_names(tmp_path) == []
    assert seg_names(tmp_path / "head") == [names[0], names[2]]
    assert seg_names(tmp_path / "login") == [names[1]]
    migrated = next(e for e in logs if e["event"] == "spool_migrated")
    assert migrated["datums_by_role"] == {"head": 7, "login": 2}
    # the head data waits for the head role, and says so
    kept = next(e for e in logs if e["event"] == "spool_kept_for_other_roles")
    assert kept["datums_by_role"] == {"head": 7}
    # read back as spools, in order, whole
    head = Spool(tmp_path / "head", 1 << 20).acquire()
    datums_out, _, corrupt = head.peek(100)
    assert corrupt == 0 and [d.value for d in datums_out] == [0, 1, 2, 0, 1, 2, 3]
    head.release()


def test_flat_cursor_follows_its_segment(tmp_path: Path) -> None:
    names = flat_spool(tmp_path, datums("head", 5), datums("head", 5))
    (tmp_path / "cursor").write_text(f"{names[0]} 3\n")
    role_spool_dir(str(tmp_path), "head", now=NOW)
    assert not (tmp_path / "cursor").exists()
    assert (tmp_path / "head" / "cursor").read_text() == f"{names[0]} 3\n"
    head = Spool(tmp_path / "head", 1 << 20).acquire()
    assert head.datums == 7  # the 3 already accepted are not sent again
    head.release()


def test_segment_of_no_single_role_is_deleted_not_sent(tmp_path: Path) -> None:
    names = flat_spool(tmp_path, datums(None, 2), datums("head", 1) + datums("login", 1), datums("head", 1))
    with structlog.testing.capture_logs() as logs:
        role_spool_dir(str(tmp_path), "login", now=NOW)
    assert seg_names(tmp_path) == [] and seg_names(tmp_path / "head") == [names[2]]
    assert not (tmp_path / "login").exists() or seg_names(tmp_path / "login") == []
    err = next(e for e in logs if e["event"] == "spool_segments_unassigned")
    assert err["datums"] == 4 and err["log_level"] == "error"


def test_flat_spool_in_use_is_left_for_later(tmp_path: Path) -> None:
    names = flat_spool(tmp_path, datums("head", 2))
    held = Spool(tmp_path, 1 << 20).acquire()  # an older agent still running on it
    try:
        with structlog.testing.capture_logs() as logs:
            role_spool_dir(str(tmp_path), "head", now=NOW)
        assert seg_names(tmp_path) == names
        assert any(e["event"] == "spool_migration_deferred" for e in logs)
    finally:
        held.release()
    role_spool_dir(str(tmp_path), "head", now=NOW)
    assert seg_names(tmp_path / "head") == names


def test_other_roles_data_expires_after_14_days(tmp_path: Path) -> None:
    old, fresh = NOW - MAX_AGE_SECONDS - 60, NOW - 3600
    spool = Spool(tmp_path / "head", 1 << 20, fsync=False).acquire()
    spool.append(datums("head", 2, ts=old))
    spool.append(datums("head", 3, ts=fresh))
    spool.release()
    (tmp_path / "head" / "cursor").write_text(f"{seg_names(tmp_path / 'head')[0]} 1\n")
    with structlog.testing.capture_logs() as logs:
        role_spool_dir(str(tmp_path), "login", now=NOW)
    (left,) = seg_names(tmp_path / "head")
    assert [d.timestamp for d in decode((tmp_path / "head" / left).read_bytes())] == [fresh] * 3
    assert not (tmp_path / "head" / "cursor").exists()
    assert next(e for e in logs if e["event"] == "spool_expired")["datums"] == 2


def test_a_running_roles_spool_is_not_touched(tmp_path: Path) -> None:
    """Two agents of different roles on one machine: neither prunes the other's."""
    spool = Spool(tmp_path / "head", 1 << 20, fsync=False).acquire()  # the head agent, running
    spool.append(datums("head", 2, ts=NOW - MAX_AGE_SECONDS - 60))
    try:
        role_spool_dir(str(tmp_path), "login", now=NOW)
        assert len(seg_names(tmp_path / "head")) == 1
    finally:
        spool.release()


# ---- through the sink, against CloudWatch (moto behind the fault proxy) -------------------------


def _config(tmp_path: Path, proxy: FaultProxy) -> Any:
    return parse_config(
        f"""
hostname: node-1
paths:
  cfnconfig: {tmp_path / "cfnconfig"}
  state_dir: {tmp_path / "state"}
cloudwatch:
  cluster_name: rolecluster
  region: us-east-1
  endpoint_url: {proxy.url}
  max_attempts: 1
  connect_timeout: 0.5
  read_timeout: 0.5
  retry_max_delay: 0.2
  imds: false
""",
        "test.yaml",
    )


def _nodes_idle(value: float) -> list[Any]:
    fam = sl.CLUSTER_NODES["idle"].family()
    fam.add((), value)
    return [fam]


def _delivered(proxy: FaultProxy) -> list[tuple[str, dict[str, str], float, float]]:
    return [(d[0], dict(d[1]), d[2], d[3]) for rec in proxy.delivered() for d in rec.datums]


def test_role_change_never_sends_the_old_roles_data(
    tmp_path: Path, proxy: FaultProxy, aws_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, proxy)
    start = minute(time.time()) - 3600
    # 1. head, CloudWatch failing: Slurm data and the head's own datums are spooled
    proxy.set_mode("error500")
    (head,) = build_sinks(cfg, "head", Host())
    for i in range(3):
        head.publish(_nodes_idle(10.0 + i), start + 60 * i)
    head.flush(2)
    head.close()
    assert proxy.delivered() == []
    head_dir = tmp_path / "state" / "spool" / "head"
    spooled = seg_names(head_dir)
    assert len(spooled) == 3

    # 2. the node restarts as login, CloudWatch back: only login data goes out
    proxy.set_mode("pass")
    (login,) = build_sinks(cfg, "login", Host())
    for i in range(2):
        login.publish([], start + 600 + 60 * i)
    login.flush(10)
    login.close()
    sent = _delivered(proxy)
    assert sent, "the login sink sent nothing"
    assert all(dims.get("Role") == "login" for _, dims, _, _ in sent), sent
    assert not [d for d in sent if d[0] == "NodesIdle"]
    assert {ts for _, _, ts, _ in sent} == {start + 600, start + 660}
    # the head data is kept, untouched, for when the node is head again
    assert seg_names(head_dir) == spooled

    # 3. head again: its backlog goes out, in order, at its own timestamps
    proxy.reset()
    (head,) = build_sinks(cfg, "head", Host())
    head.flush(10)
    head.close()
    sent = _delivered(proxy)
    assert [(ts, v) for name, _, ts, v in sent if name == "NodesIdle"] == [
        (start, 10.0), (start + 60, 11.0), (start + 120, 12.0)]  # fmt: skip
    assert all(dims.get("Role", "head") == "head" for _, dims, _, _ in sent)
    assert seg_names(head_dir) == []
