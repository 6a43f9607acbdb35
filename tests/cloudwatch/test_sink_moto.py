"""The CloudWatch sink against a real moto_server, through the fault proxy.

moto enforces none of CloudWatch's limits, so the limits are asserted on the
requests the proxy saw; what arrived is read back from moto with
get_metric_statistics / list_metrics (moto's get_metric_data ignores the
namespace)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from cwtools import (
    KEY_ID,
    SECRET,
    host_families,
    minute,
    own,
    seq_catalogue,
    seq_family,
    statistics,
    wait_for,
)
from faultproxy import FaultProxy

from nodeagent.catalogue import slurm as sl
from nodeagent.model import MetricFamily
from nodeagent.sinks import cloudwatch as cwmod
from nodeagent.sinks.cloudwatch import CloudWatchSink

NS = "ParallelCluster/testcluster"
MakeSink = Callable[..., CloudWatchSink]


def slurm_families(scale: int = 1) -> list[MetricFamily]:
    out = []
    for key, value in (("idle", 5), ("alloc", 3), ("down", 1), ("powered_down", 20), ("total", 29)):
        f = sl.CLUSTER_NODES[key].family()
        f.add((), value * scale)
        out.append(f)
    for key, values in (("idle", {"gpu": 4, "cpu": 1}), ("total", {"gpu": 20, "cpu": 9})):
        f = sl.PARTITION_NODES[key].family()
        for part, v in values.items():
            f.add((part,), v * scale)
        out.append(f)
    # SckyzO's labels (the default naming): CloudWatch sums them away
    f = sl.QUEUE["pending"].family()
    f.add(("root", "gpu", "Resources"), 5 * scale)
    f.add(("bob", "cpu,gpu", "Priority"), 2 * scale)
    out.append(f)
    f = sl.QUEUE["running"].family()
    f.add(("root", "gpu"), 2 * scale)
    out.append(f)
    f = sl.QUEUE["total"].family()
    f.add((), 9 * scale)
    out.append(f)
    f = sl.PARTITION_JOBS["pending"].family()
    f.add(("gpu",), 6 * scale)
    f.add(("cpu",), 1 * scale)
    out.append(f)
    f = sl.QUEUE_PENDING_REASON.family()  # not for CloudWatch
    f.add(("Resources",), 4)
    out.append(f)
    return out


def listed(cw: Any, namespace: str = NS) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    out = set()
    for page in cw.get_paginator("list_metrics").paginate(Namespace=namespace):
        for m in page["Metrics"]:
            out.add((m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m.get("Dimensions", [])))))
    return out


def test_head_role_reaches_cloudwatch_with_names_dimensions_units(
    make_sink: MakeSink, proxy: FaultProxy, cw: Any
) -> None:
    sink = make_sink("head")
    t0 = minute(time.time()) - 600
    sink.publish([*slurm_families(), *host_families(idle=1000, user=100)], t0)
    # 60 s later on 2 CPUs: +90 idle and +30 user seconds in all -> 75 % idle
    sink.publish([*slurm_families(2), *host_families(idle=1045, user=115, mem_avail=8e9)], t0 + 60)
    sink.flush(10)
    assert sink.spool.datums == 0

    metrics = listed(cw)
    head = (("InstanceId", "testhost"), ("Role", "head"))
    expected = {
        ("NodesIdle", ()),
        ("NodesAllocated", ()),
        ("NodesDown", ()),
        ("NodesPoweredDown", ()),
        ("NodesTotal", ()),
        ("NodesIdle", (("Partition", "cpu"),)),
        ("NodesIdle", (("Partition", "gpu"),)),
        ("NodesTotal", (("Partition", "gpu"),)),
        ("JobsPending", ()),
        ("JobsRunning", ()),
        ("JobsTotal", ()),
        ("JobsPending", (("Partition", "gpu"),)),
        ("CPU_IDLE", head),
        ("CPU_IDLE", (("Role", "head"),)),
        ("CPU_USED", head),
        ("CPU_IOWAIT", head),
        ("MEM_USED_PERCENT", head),
        ("MEM_USED_PERCENT", (("Role", "head"),)),
        ("MEM_AVAILABLE", head),
        ("DISK_USED_PERCENT", (*head[:1], ("Mountpoint", "/"), head[1])),
        ("DISK_USED_PERCENT", (("Mountpoint", "/"), ("Role", "head"))),
    }
    assert expected <= metrics, expected - metrics
    # only what the catalogue maps: no Prometheus names, no pending reasons, no load, no /run
    assert not any(name.startswith(("slurm_", "node_")) for name, _ in metrics)
    assert ("DISK_USED_PERCENT", (*head[:1], ("Mountpoint", "/run"), head[1])) not in metrics

    points = statistics(cw, NS, "NodesIdle", {}, t0, t0 + 120, unit="Count")
    assert [(p["Timestamp"].timestamp(), p["Maximum"]) for p in points] == [(t0, 5.0), (t0 + 60, 10.0)]
    points = statistics(cw, NS, "NodesIdle", {"Partition": "gpu"}, t0, t0 + 120, unit="Count")
    assert [p["Maximum"] for p in points] == [4.0, 8.0]
    points = statistics(cw, NS, "JobsPending", {"Partition": "cpu"}, t0, t0 + 120, unit="Count")
    assert [p["Maximum"] for p in points] == [1.0, 2.0]
    dims = {"Role": "head", "InstanceId": "testhost"}
    points = statistics(cw, NS, "CPU_IDLE", dims, t0, t0 + 120, unit="Percent")
    assert [(p["Timestamp"].timestamp(), p["Maximum"]) for p in points] == [(t0 + 60, 75.0)]
    points = statistics(cw, NS, "CPU_USED", dims, t0, t0 + 120, unit="Percent")
    assert [p["Maximum"] for p in points] == [25.0]
    points = statistics(cw, NS, "MEM_USED_PERCENT", {"Role": "head"}, t0, t0 + 120, unit="Percent")
    assert [p["Maximum"] for p in points] == [75.0, 50.0]
    points = statistics(cw, NS, "MEM_AVAILABLE", dims, t0, t0 + 120, unit="Bytes")
    assert [p["Maximum"] for p in points] == [4e9, 8e9]
    points = statistics(cw, NS, "DISK_USED_PERCENT", {**dims, "Mountpoint": "/"}, t0, t0 + 120, unit="Percent")
    assert [round(p["Maximum"], 4) for p in points] == [round(100 * 60 / 95, 4)] * 2
    # the wrong unit finds nothing: the unit was stored
    assert statistics(cw, NS, "NodesIdle", {}, t0, t0 + 120, unit="Percent") == []

    m = own(sink)
    sent = m["nodeagent_cloudwatch_datums_sent_total"][()]
    assert sent == m["nodeagent_cloudwatch_datums_published_total"][()] > 40
    assert m["nodeagent_cloudwatch_spool_datums"][()] == 0
    assert m["nodeagent_cloudwatch_up"][()] == 1
    assert m["nodeagent_cloudwatch_last_success_timestamp_seconds"][()] > time.time() - 30
    assert m["nodeagent_cloudwatch_datums_dropped_total"] == {}


def test_login_role_publishes_host_summary_only(make_sink: MakeSink, proxy: FaultProxy, cw: Any) -> None:
    sink = make_sink("login")
    t0 = minute(time.time()) - 300
    sink.publish([*slurm_families(), *host_families(idle=10, user=10)], t0)
    sink.publish([*slurm_families(), *host_families(idle=20, user=20)], t0 + 60)
    sink.flush(10)
    names = {n for n, _ in listed(cw)}
    assert names == {
        "CPU_IDLE",
        "CPU_USED",
        "CPU_IOWAIT",
        "MEM_USED_PERCENT",
        "MEM_AVAILABLE",
        "DISK_USED_PERCENT",
        "SPOOL_OLDEST_AGE",
    }
    points = statistics(cw, NS, "CPU_IDLE", {"Role": "login"}, t0, t0 + 120)
    assert [p["Maximum"] for p in points] == [50.0]


def test_requests_within_count_size_and_dimension_limits(make_sink: MakeSink, proxy: FaultProxy) -> None:
    labels = ("node",)
    sink = make_sink("head", catalogue=seq_catalogue(labels))
    t0 = minute(time.time()) - 120
    sink.publish([seq_family([((f"n{i}",), float(i)) for i in range(2500)], labels)], t0)
    sink.flush(10)
    puts = proxy.put_records()
    assert len(puts) == math.ceil(2500 / 1000) == 3
    assert [len(r.datums) for r in puts] == [1000, 1000, 500]
    for r in puts:
        assert r.raw_bytes <= 1_000_000 and r.max_dimensions <= 30
        assert r.gzip and r.wire_bytes < r.raw_bytes  # compressed on the wire (> 10 KB)
        assert r.namespace == NS
    assert [d[3] for r in puts for d in r.datums] == [float(i) for i in range(2500)]
    m = own(sink)
    assert m["nodeagent_cloudwatch_requests_total"][()] == 3
    assert m["nodeagent_cloudwatch_request_bytes_total"][("before_compression",)] == sum(r.raw_bytes for r in puts)
    assert m["nodeagent_cloudwatch_request_bytes_total"][("sent",)] == sum(r.wire_bytes for r in puts)


def test_big_datums_are_split_by_size(make_sink: MakeSink, proxy: FaultProxy) -> None:
    labels = tuple(f"l{i}" for i in range(30))
    sink = make_sink("head", catalogue=seq_catalogue(labels), compress=False)
    t0 = minute(time.time()) - 120
    n = 150  # 30 dimensions x 1024 characters: ~32 KB per datum
    samples = [(tuple(f"{i}-{j}-".ljust(1024, "x") for j in range(30)), float(i)) for i in range(n)]
    sink.publish([seq_family(samples, labels)], t0)
    sink.flush(15)
    puts = proxy.put_records()
    assert len(puts) > 1
    assert all(r.raw_bytes <= 1_000_000 for r in puts)
    assert all(r.max_dimensions == 30 for r in puts)
    assert sum(len(r.datums) for r in puts) == n
    assert all(r.mode == "pass" and r.status == 200 for r in puts)


@pytest.mark.parametrize("protocol", ["default", "query"])
def test_size_guard_behind_the_estimate(
    make_sink: MakeSink, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """If packing ever under-estimated, the before-call hook stops the request
    and it is split; also with the query protocol of older botocore, whose
    body is still a dict of form fields at before-call."""
    if protocol == "query":
        import botocore.model

        monkeypatch.setattr(botocore.model.ServiceModel, "resolved_protocol", property(lambda self: "query"))
    monkeypatch.setattr(cwmod, "pack", lambda datums, *a, **kw: [list(datums)])  # a packer ignoring bytes
    labels = tuple(f"l{i}" for i in range(10))
    sink = make_sink("head", catalogue=seq_catalogue(labels), max_request_bytes=50_000)
    samples = [(tuple(f"{i}-{j}-".ljust(400, "y") for j in range(10)), float(i)) for i in range(100)]
    sink.publish([seq_family(samples, labels)], minute(time.time()) - 60)
    sink.flush(15)
    puts = proxy.put_records()
    assert puts and all(r.raw_bytes <= 50_000 for r in puts)
    assert sorted(d[3] for r in puts for d in r.datums) == [float(i) for i in range(100)]
    assert sink.spool.datums == 0
    if protocol == "query":
        assert sink._protocol == "query"  # the client really spoke the query protocol
    m = own(sink)
    assert m["nodeagent_cloudwatch_request_bytes_total"][("before_compression",)] == sum(r.raw_bytes for r in puts)


def test_values_cloudwatch_refuses_are_dropped_and_counted(make_sink: MakeSink, proxy: FaultProxy) -> None:
    labels = ("k",)
    sink = make_sink("head", catalogue=seq_catalogue(labels))
    bad = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "huge": 1e200, "tiny": 1e-200}
    samples = [((k,), v) for k, v in bad.items()] + [(("zero",), 0.0), (("ok",), 42.0), (("",), 1.0)]
    sink.publish([seq_family(samples, labels)], minute(time.time()) - 60)
    sink.flush(10)
    sent = [(d[1], d[3]) for r in proxy.delivered() for d in r.datums]
    assert sorted(sent) == [((("K", "ok"),), 42.0), ((("K", "zero"),), 0.0)]
    dropped = own(sink)["nodeagent_cloudwatch_datums_dropped_total"]
    assert dropped == {("nan",): 1, ("infinite",): 2, ("out_of_range",): 2, ("invalid_dimension",): 1}


def test_too_old_spooled_data_is_dropped_when_sent(make_sink: MakeSink, proxy: FaultProxy) -> None:
    sink = make_sink("head", catalogue=seq_catalogue())
    now = time.time()
    sink.publish([seq_family([((), 1.0)])], now - 15 * 86400)
    sink.publish([seq_family([((), 2.0)])], now + 3 * 3600)
    sink.publish([seq_family([((), 3.0)])], minute(now) - 13 * 86400)
    sink.flush(10)
    assert [d[3] for r in proxy.delivered() for d in r.datums] == [3.0]
    dropped = own(sink)["nodeagent_cloudwatch_datums_dropped_total"]
    assert dropped == {("too_old",): 1, ("too_new",): 1}
    assert sink.spool.datums == 0


def test_high_resolution_is_a_per_metric_option(make_sink: MakeSink, proxy: FaultProxy) -> None:
    sink = make_sink("head", high_resolution=("NodesIdle",))
    sink.publish(slurm_families(), minute(time.time()) - 60)
    sink.flush(10)
    res = {(d[0], d[1]): d[5] for r in proxy.delivered() for d in r.datums}
    assert res[("NodesIdle", ())] == 1 and res[("NodesIdle", (("Partition", "gpu"),))] == 1
    assert res[("NodesTotal", ())] == 60


@pytest.mark.parametrize(
    "mode,code",
    [
        ("throttle", "Throttling"),
        ("error500", "InternalServiceError"),
        ("expired", "ExpiredToken"),
        ("drop", "ConnectionClosedError"),
        ("dark", "ReadTimeoutError"),
    ],
)
def test_outage_spools_then_replays_in_order_with_original_timestamps(
    make_sink: MakeSink, proxy: FaultProxy, cw: Any, mode: str, code: str
) -> None:
    sink = make_sink("head", catalogue=seq_catalogue())
    proxy.set_mode(mode)
    t0 = minute(time.time()) - 1200
    for i in range(4):
        sink.publish([seq_family([((), float(i + 1))])], t0 + 60 * i)
    wait_for(lambda: own(sink)["nodeagent_cloudwatch_api_errors_total"].get((code,), 0) >= 1, what=code)
    assert proxy.delivered() == []
    m = own(sink)
    assert m["nodeagent_cloudwatch_up"][()] == 0
    assert m["nodeagent_cloudwatch_spool_datums"][()] == 4
    assert m["nodeagent_cloudwatch_spool_oldest_age_seconds"][()] >= 1200 - 5
    assert set(m["nodeagent_cloudwatch_api_errors_total"]) == {(code,)}

    proxy.set_mode("pass")
    sink.flush(10)
    assert sink.spool.datums == 0
    delivered = [(d[2], d[3]) for r in proxy.delivered() for d in r.datums]
    assert delivered == [(t0 + 60 * i, float(i + 1)) for i in range(4)]  # in order, original timestamps
    points = statistics(cw, NS, "Seq", {}, t0, t0 + 240, unit="Count")
    assert [(p["Timestamp"].timestamp(), p["Maximum"]) for p in points] == delivered
    m = own(sink)
    assert m["nodeagent_cloudwatch_up"][()] == 1
    assert m["nodeagent_cloudwatch_datums_sent_total"][()] == 4


def test_outage_of_a_while_recovers_by_itself(make_sink: MakeSink, proxy: FaultProxy) -> None:
    sink = make_sink("head", catalogue=seq_catalogue())
    t0 = minute(time.time()) - 600
    proxy.set_mode("dark", for_seconds=1.5)
    for i in range(3):
        sink.publish([seq_family([((), float(i))])], t0 + 60 * i)
        time.sleep(0.3)
    # no flush: the sender's own retry schedule brings the data in
    wait_for(lambda: sink.spool.datums == 0 and len(proxy.delivered()) > 0, timeout=15, what="replay")
    assert sorted({d[3] for r in proxy.delivered() for d in r.datums}) == [0.0, 1.0, 2.0]


def test_botocore_retries_within_a_call(make_sink: MakeSink, proxy: FaultProxy, tmp_path: Any) -> None:
    """Throttling and 5xx inside botocore's attempts never reach the spool logic."""
    for mode in ("standard", "adaptive"):
        proxy.reset()
        sink = make_sink("head", catalogue=seq_catalogue(), max_attempts=3, retry_mode=mode, spool=tmp_path / mode)
        faults = ["throttle", "error500"] if mode == "standard" else ["throttle"]
        for fault in faults:
            proxy.fail_next(1, fault)
        sink.publish([seq_family([((), 7.0)])], minute(time.time()) - 60)
        sink.flush(10)
        puts = proxy.put_records()
        assert [r.mode for r in puts] == [*faults, "pass"], mode
        assert own(sink)["nodeagent_cloudwatch_api_errors_total"] == {}
        sink.close()


def test_refused_datum_is_isolated_and_the_rest_sent(make_sink: MakeSink, proxy: FaultProxy) -> None:
    labels = ("p",)
    sink = make_sink("head", catalogue=seq_catalogue(labels))
    proxy.poison = "poison"
    samples = [((f"p{i}",), float(i)) for i in range(20)]
    samples.insert(13, (("poison",), 99.0))
    sink.publish([seq_family(samples, labels)], minute(time.time()) - 60)
    sink.flush(10)
    sent = sorted(d[3] for r in proxy.delivered() for d in r.datums)
    assert sent == [float(i) for i in range(20)]
    m = own(sink)
    assert m["nodeagent_cloudwatch_datums_dropped_total"] == {("rejected",): 1}
    assert m["nodeagent_cloudwatch_api_errors_total"][("InvalidParameterValue",)] >= 1
    assert m["nodeagent_cloudwatch_up"][()] == 1
    assert sink.spool.datums == 0


def test_spool_cap_drops_oldest_and_counts(make_sink: MakeSink, proxy: FaultProxy) -> None:
    labels = ("n",)
    sink = make_sink("head", catalogue=seq_catalogue(labels), spool_max_bytes=3000)
    proxy.set_mode("error500")
    t0 = minute(time.time()) - 3600
    for k in range(30):
        sink.publish([seq_family([((f"n{i}",), k * 1000.123 + i * 7.77) for i in range(20)], labels)], t0 + 60 * k)
    m = own(sink)
    dropped = m["nodeagent_cloudwatch_datums_dropped_total"].get(("spool_full",), 0)
    assert dropped > 0 and m["nodeagent_cloudwatch_spool_bytes"][()] <= 3000
    proxy.set_mode("pass")
    sink.flush(10)
    m = own(sink)
    dropped = m["nodeagent_cloudwatch_datums_dropped_total"][("spool_full",)]
    delivered = [d[2] for r in proxy.delivered() for d in r.datums]
    # every datum is either delivered or counted as dropped, exactly once
    assert len(delivered) + dropped == 30 * 20 == m["nodeagent_cloudwatch_datums_published_total"][()]
    # the oldest went (a send in flight when its data was evicted may still have
    # delivered it: then it is not counted as dropped); the newest is all there
    assert delivered == sorted(delivered)
    assert {t0 + 60 * k for k in range(20, 30)} <= set(delivered)


def test_spool_survives_a_restart(make_sink: MakeSink, proxy: FaultProxy, cw: Any) -> None:
    first = make_sink("head", catalogue=seq_catalogue())
    proxy.set_mode("error500")
    t0 = minute(time.time()) - 900
    for i in range(3):
        first.publish([seq_family([((), float(i + 10))])], t0 + 60 * i)
    first.close()
    proxy.set_mode("pass")
    second = make_sink("head", catalogue=seq_catalogue())  # same spool directory
    assert second.spool.datums == 3
    second.flush(10)
    points = statistics(cw, NS, "Seq", {}, t0, t0 + 180)
    assert [p["Maximum"] for p in points] == [10.0, 11.0, 12.0]


def test_reload_overlap_shares_the_spool(make_sink: MakeSink, proxy: FaultProxy) -> None:
    """The daemon builds the new sink before closing the old one (SIGHUP)."""
    old = make_sink("head", catalogue=seq_catalogue())
    new = make_sink("head", catalogue=seq_catalogue())
    assert old.spool is new.spool
    old.close()
    new.publish([seq_family([((), 5.0)])], minute(time.time()) - 60)
    new.flush(10)
    assert [d[3] for r in proxy.delivered() for d in r.datums] == [5.0]


def test_cluster_name_found_later_in_cfnconfig(make_sink: MakeSink, proxy: FaultProxy, tmp_path: Any) -> None:
    sink = make_sink("head", catalogue=seq_catalogue(), cluster_name=None)
    sink.publish([seq_family([((), 1.0)])], minute(time.time()) - 60)
    wait_for(lambda: ("NoClusterName",) in own(sink)["nodeagent_cloudwatch_api_errors_total"])
    assert sink.spool.datums == 1 and proxy.put_records() == []
    (tmp_path / "no-cfnconfig").write_text("stack_name=latecluster\ncfn_region=us-east-1\n")
    sink.flush(5)
    (rec,) = proxy.delivered()
    assert rec.namespace == "ParallelCluster/latecluster"


def test_namespace_setting(make_sink: MakeSink, proxy: FaultProxy) -> None:
    sink = make_sink("head", catalogue=seq_catalogue(), namespace="Custom/Thing")
    sink.publish([seq_family([((), 1.0)])], minute(time.time()) - 60)
    sink.flush(5)
    assert [r.namespace for r in proxy.delivered()] == ["Custom/Thing"]


def test_credentials_never_logged(make_sink: MakeSink, proxy: FaultProxy, capfd: Any) -> None:
    with structlog.testing.capture_logs() as events:
        sink = make_sink("head", catalogue=seq_catalogue())
        proxy.set_mode("expired")
        sink.publish([seq_family([((), 1.0)])], minute(time.time()) - 60)
        wait_for(lambda: own(sink)["nodeagent_cloudwatch_api_errors_total"] != {})
        proxy.set_mode("pass")
        sink.flush(5)
        sink.close()
    assert any(e["event"] == "cloudwatch_unreachable" for e in events)
    assert any(e["event"] == "cloudwatch_recovered" for e in events)
    text = repr(events) + "".join(capfd.readouterr())
    assert SECRET not in text and KEY_ID not in text
    assert SECRET not in repr(sink.own_metrics())


def test_namespace_cloudwatch_would_refuse_keeps_data_spooled(make_sink: MakeSink, proxy: FaultProxy) -> None:
    sink = make_sink("head", catalogue=seq_catalogue(), cluster_name="clüster")
    sink.publish([seq_family([((), 1.0)])], minute(time.time()) - 60)
    wait_for(lambda: ("InvalidNamespace",) in own(sink)["nodeagent_cloudwatch_api_errors_total"])
    assert proxy.put_records() == [] and sink.spool.datums == 1


def test_older_botocore_without_request_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.config

    real = botocore.config.Config

    def old_config(*args: Any, **kwargs: Any) -> Any:
        if "request_min_compression_size_bytes" in kwargs or "disable_request_compression" in kwargs:
            raise TypeError("Got unexpected keyword argument 'request_min_compression_size_bytes'")
        return real(*args, **kwargs)

    from nodeagent.sinks.settings import CloudWatchSettings

    monkeypatch.setattr(botocore.config, "Config", old_config)
    config = cwmod.botocore_config(CloudWatchSettings(retry_mode="adaptive", max_attempts=7))
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    monkeypatch.setattr(botocore.config, "Config", real)
    config = cwmod.botocore_config(CloudWatchSettings(compress_min_bytes=2048))
    assert config.request_min_compression_size_bytes == 2048 and config.disable_request_compression is False


def test_max_attempts_counts_the_first_attempt(make_sink: MakeSink, proxy: FaultProxy) -> None:
    sink = make_sink("head", catalogue=seq_catalogue(), max_attempts=2)
    proxy.fail_next(2, "error500")
    sink.publish([seq_family([((), 3.0)])], minute(time.time()) - 60)
    wait_for(lambda: own(sink)["nodeagent_cloudwatch_api_errors_total"] != {}, what="a failed call")
    assert own(sink)["nodeagent_cloudwatch_api_errors_total"] == {("InternalServiceError",): 1}
    assert [r.mode for r in proxy.put_records()][:2] == ["error500", "error500"]
    sink.flush(10)
    assert [r.mode for r in proxy.put_records()] == ["error500", "error500", "pass"]


def test_spool_age_at_each_publish_reaches_cloudwatch(make_sink: MakeSink, proxy: FaultProxy, cw: Any) -> None:
    sink = make_sink("head")
    proxy.set_mode("error500")
    t0 = minute(time.time()) - 600
    for i in range(3):
        sink.publish(slurm_families(), t0 + 60 * i)
    proxy.set_mode("pass")
    sink.flush(10)
    dims = {"Role": "head", "InstanceId": "testhost"}
    points = statistics(cw, NS, "SPOOL_OLDEST_AGE", dims, t0, t0 + 180, unit="Seconds")
    assert [(p["Timestamp"].timestamp(), p["Maximum"]) for p in points] == [
        (t0, 0.0),
        (t0 + 60, 60.0),
        (t0 + 120, 120.0),
    ]
