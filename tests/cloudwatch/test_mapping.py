"""Families -> datums through the catalogue, value checks, request packing."""

from __future__ import annotations

import math
import random
import string

import pytest

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue import sinks as cat
from nodeagent.catalogue.spec import Catalogue, CloudWatchSpec, MetricSpec
from nodeagent.model import MetricFamily
from nodeagent.sinks.counters import increase, total_increase
from nodeagent.sinks.mapping import (
    MAX_AGE_SECONDS,
    CloudWatchMapper,
    Datum,
    clean_dimension_value,
    datum_problem,
    datum_size,
    dimension_name,
    pack,
    request_overhead,
    value_problem,
)
from nodeagent.sinks.settings import MAX_REQUEST_BYTES


def test_catalogue_names_the_host_summary_for_cloudwatch() -> None:
    names = {s.cloudwatch.name: s for s in CATALOGUE if s.cloudwatch is not None}
    for cw_name in ("CPU_IDLE", "CPU_USED", "CPU_IOWAIT", "MEM_USED_PERCENT", "MEM_AVAILABLE", "DISK_USED_PERCENT"):
        assert cw_name in names
        spec = names[cw_name]
        assert spec.cloudwatch is not None
        assert set(spec.cloudwatch.dimensions) <= set(spec.labels)
        # wherever the sink runs (head and login by default; compute when enabled there)
        assert spec.cloudwatch.roles == ("compute", "head", "login")
    assert names["CPU_IDLE"].cloudwatch.unit == "Percent"  # type: ignore[union-attr]
    assert names["MEM_AVAILABLE"].cloudwatch.unit == "Bytes"  # type: ignore[union-attr]


def test_every_cloudwatch_mapping_in_the_catalogue_is_valid() -> None:
    """Whoever adds a CloudWatch mapping (Slurm specs too): dimensions are labels, <= 30, a real unit."""
    units = {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
    for spec in CATALOGUE:
        cw = spec.cloudwatch
        if cw is None:
            continue
        assert set(cw.dimensions) <= set(spec.labels), spec.name
        assert len(cw.dimensions) <= 29, spec.name  # room for the rollup-free form
        assert cw.unit in units, (spec.name, cw.unit)
        assert 1 <= len(cw.name) <= 255 and cw.name.isascii(), spec.name
        assert cw.storage_resolution in (1, 60), spec.name


def test_dimension_names_and_values() -> None:
    assert dimension_name("partition") == "Partition"
    assert dimension_name("instance_id") == "InstanceId"
    assert dimension_name("mountpoint") == "Mountpoint"
    assert clean_dimension_value("gpu") == "gpu"
    assert clean_dimension_value("gpü\nx") == "gp__x"
    assert clean_dimension_value("x" * 2000) == "x" * 1024
    assert clean_dimension_value("") is None
    assert clean_dimension_value("   ") is None


@pytest.mark.parametrize(
    "value,problem",
    [
        (0.0, None),
        (-0.0, None),
        (1.0, None),
        (-42.5, None),
        (8.515920e-109, None),
        (1.174271e108, None),
        (-1.174271e108, None),
        (float("nan"), "nan"),
        (float("inf"), "infinite"),
        (float("-inf"), "infinite"),
        (1e-200, "out_of_range"),
        (-1e-110, "out_of_range"),
        (1e109, "out_of_range"),
        (-1e300, "out_of_range"),
    ],
)
def test_value_range(value: float, problem: str | None) -> None:
    assert value_problem(value) == problem


def test_timestamps_window() -> None:
    now = 1_700_000_000.0
    d = Datum("X", (), 1.0, "Count", 60, now)
    assert datum_problem(d, now) is None
    assert datum_problem(d._replace(timestamp=now - 13 * 86400), now) is None
    assert datum_problem(d._replace(timestamp=now - MAX_AGE_SECONDS - 1), now) == "too_old"
    assert datum_problem(d._replace(timestamp=now - 15 * 86400), now) == "too_old"
    assert datum_problem(d._replace(timestamp=now + 3600), now) is None
    assert datum_problem(d._replace(timestamp=now + 2 * 3600), now) == "too_new"
    many = tuple((f"D{i}", "v") for i in range(31))
    assert datum_problem(d._replace(dims=many), now) == "too_many_dimensions"
    assert datum_problem(d._replace(dims=many[:30]), now) is None
    assert datum_problem(d._replace(name=""), now) == "invalid_name"


def _catalogue() -> tuple[Catalogue, dict[str, MetricSpec]]:
    c = Catalogue()
    specs = {
        "nodes": c.add(
            MetricSpec("t_nodes_idle", "gauge", "h", "t", (), cloudwatch=CloudWatchSpec("NodesIdle", unit="Count"))
        ),
        "part": c.add(
            MetricSpec(
                "t_partition_jobs_pending",
                "gauge",
                "h",
                "t",
                ("partition", "reason"),
                cloudwatch=CloudWatchSpec("JobsPending", unit="Count", dimensions=("partition",)),
            )
        ),
        "counter": c.add(
            MetricSpec(
                "t_backfilled_jobs_total",
                "counter",
                "h",
                "t",
                (),
                cloudwatch=CloudWatchSpec("BackfilledJobs", unit="Count"),
            )
        ),
        "hires": c.add(
            MetricSpec("t_fast", "gauge", "h", "t", (), cloudwatch=CloudWatchSpec("Fast", storage_resolution=1))
        ),
        "computeonly": c.add(
            MetricSpec(
                "t_gpu_temp",
                "gauge",
                "h",
                "t",
                (),
                cloudwatch=CloudWatchSpec("GpuTemp", roles=("compute",)),
            )
        ),
        "pattern": c.add(
            MetricSpec(
                "t_nodes_{field}", "gauge", "h", "t", (), cloudwatch=CloudWatchSpec("Nodes_{field}", unit="Count")
            )
        ),
        "plain": c.add(MetricSpec("t_not_for_cloudwatch", "gauge", "h", "t", ())),
        "host": c.add(
            MetricSpec(
                "t_cpu_idle",
                "gauge",
                "h",
                "t",
                ("role", "instance_id"),
                cloudwatch=CloudWatchSpec("CPU_IDLE", unit="Percent", dimensions=("role", "instance_id")),
            )
        ),
    }
    return c, specs


def fam(spec: MetricSpec, samples: list[tuple[tuple[str, ...], float]], **fields: str) -> MetricFamily:
    f = spec.family(None, **fields)
    for labels, value in samples:
        f.add(labels, value)
    return f


def test_mapper_dimensions_units_roles_and_sums() -> None:
    c, s = _catalogue()
    m = CloudWatchMapper("head", catalogue=c)
    families = [
        fam(s["nodes"], [((), 7)]),
        fam(
            s["part"],
            [(("gpu", "Resources"), 3), (("gpu", "Priority"), 2), (("cpu", "Resources"), 1)],
        ),
        fam(s["computeonly"], [((), 55)]),
        fam(s["plain"], [((), 1)]),
        fam(s["hires"], [((), 1.5)]),
        fam(s["pattern"], [((), 4)], field="powered_down"),
        fam(s["host"], [(("head", "i-0123"), 97.5)]),
    ]
    datums, dropped = m.map(families, 1000.0)
    got = {(d.name, d.dims): d for d in datums}
    assert not dropped
    assert got[("NodesIdle", ())].value == 7 and got[("NodesIdle", ())].unit == "Count"
    # labels that are not dimensions (reason) are summed
    assert got[("JobsPending", (("Partition", "gpu"),))].value == 5
    assert got[("JobsPending", (("Partition", "cpu"),))].value == 1
    assert ("GpuTemp", ()) not in got  # compute role only
    assert all(d.name != "t_not_for_cloudwatch" for d in datums)
    assert got[("Fast", ())].resolution == 1
    assert got[("NodesIdle", ())].resolution == 60
    assert got[("Nodes_powered_down", ())].value == 4
    # the host summary goes out per instance and rolled up per role
    assert got[("CPU_IDLE", (("Role", "head"), ("InstanceId", "i-0123")))].value == 97.5
    assert got[("CPU_IDLE", (("Role", "head"),))].value == 97.5
    assert all(d.timestamp == 1000.0 for d in datums)
    assert len(datums) == 7


def test_mapper_rollup_off_and_high_resolution_setting() -> None:
    c, s = _catalogue()
    m = CloudWatchMapper("head", high_resolution=("NodesIdle",), rollup_dimension=None, catalogue=c)
    datums, _ = m.map([fam(s["host"], [(("head", "i-1"), 1.0)]), fam(s["nodes"], [((), 1)])], 1.0)
    assert [d.dims for d in datums if d.name == "CPU_IDLE"] == [(("Role", "head"), ("InstanceId", "i-1"))]
    assert [d.resolution for d in datums if d.name == "NodesIdle"] == [1]


def test_mapper_counters_publish_increase() -> None:
    c, s = _catalogue()
    m = CloudWatchMapper("head", catalogue=c)
    values = []
    for v in (100.0, 130.0, 130.0, 5.0, 12.0):  # 5.0: the counter was reset
        datums, _ = m.map([fam(s["counter"], [((), v)])], 0.0)
        values.append([d.value for d in datums])
    assert values == [[], [30.0], [0.0], [5.0], [7.0]]


def test_counter_increase_rule() -> None:
    """One rule for the mapper and the GPU and I/O summaries (sinks/counters.py)."""
    assert increase(100.0, 130.0) == 30.0
    assert increase(130.0, 130.0) == 0.0
    assert increase(130.0, 5.0) == 5.0  # went back: a reset, counts from zero
    assert increase(None, 7.0) is None  # a new series only records its reading
    assert increase(None, 7.0, new_from_zero=True) == 7.0  # event counters (XIDs) start at zero
    previous = {"a": 10.0, "b": 50.0, "gone": 99.0}
    current = {"a": 15.0, "b": 2.0, "new": 4.0}
    assert total_increase(previous, current) == 5.0 + 2.0
    assert total_increase(previous, current, new_from_zero=True) == 5.0 + 2.0 + 4.0


def test_mapper_drops_and_counts_bad_values() -> None:
    c, s = _catalogue()
    m = CloudWatchMapper("head", catalogue=c)
    families = [
        fam(
            s["part"],
            [
                (("a", "r"), float("nan")),
                (("b", "r"), float("inf")),
                (("c", "r"), 1e300),
                (("d", "r"), 1e-300),
                (("", "r"), 1.0),
                (("ok", "r"), 2.0),
            ],
        ),
        fam(s["host"], [(("head", "i-1"), float("nan"))]),
    ]
    datums, dropped = m.map(families, 0.0)
    assert [(d.name, d.dims, d.value) for d in datums] == [("JobsPending", (("Partition", "ok"),), 2.0)]
    # the NaN host datum counts twice: per instance and its rollup
    assert dropped == {"nan": 3, "infinite": 1, "out_of_range": 2, "invalid_dimension": 1}


def test_mapper_real_catalogue_host_summary_spec() -> None:
    m = CloudWatchMapper("login")
    f = cat.HOST_DISK_USED.family()
    f.add(("login", "i-9", "/"), 42.0)
    datums, _ = m.map([f], 5.0)
    assert {d.dims for d in datums} == {
        (("Role", "login"), ("InstanceId", "i-9"), ("Mountpoint", "/")),
        (("Role", "login"), ("Mountpoint", "/")),
    }
    assert CloudWatchMapper("gpu-less-role").map([f], 5.0)[0] == []


# ---- packing -----------------------------------------------------------------------
def _datums(n: int, dims: int = 2, value_len: int = 8, seed: int = 1) -> list[Datum]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        d = tuple(
            (f"Dim{j}", (f"{i}.{j}." + rnd.choice(string.ascii_letters) * value_len)[:value_len]) for j in range(dims)
        )
        out.append(Datum(f"Metric{i % 17}", d, rnd.random() * 1e6, "Count", 60, 1_700_000_000.0 + i))
    return out


def test_pack_by_count() -> None:
    for n in (1, 999, 1000, 1001, 2500, 5000):
        requests = pack(_datums(n), "ParallelCluster/x")
        assert len(requests) == math.ceil(n / 1000)
        assert all(len(r) <= 1000 for r in requests)
        assert [d for r in requests for d in r] == _datums(n)  # order kept


def test_pack_by_size() -> None:
    big = _datums(1500, dims=30, value_len=1024)
    requests = pack(big, "ParallelCluster/x")
    overhead = request_overhead("ParallelCluster/x")
    assert len(requests) > 2
    for r in requests:
        assert overhead + sum(datum_size(d) for d in r) <= MAX_REQUEST_BYTES
    assert [d for r in requests for d in r] == big


def _serialized_sizes(datums: list[Datum], namespace: str) -> dict[str, int]:
    """The body botocore would send, in each protocol it may use for PutMetricData."""
    from datetime import datetime, timezone

    import botocore.session
    from botocore.serialize import create_serializer

    model = botocore.session.get_session().get_service_model("cloudwatch")
    op = model.operation_model("PutMetricData")
    params = {
        "Namespace": namespace,
        "MetricData": [
            {
                "MetricName": d.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in d.dims],
                "Timestamp": datetime.fromtimestamp(d.timestamp, tz=timezone.utc),
                "Value": d.value,
                "Unit": d.unit,
                "StorageResolution": d.resolution,
            }
            for d in datums
        ],
    }
    sizes = {}
    for protocol in model.metadata.get("protocols", [model.metadata["protocol"]]):
        try:
            body = create_serializer(protocol).serialize_to_request(params, op)["body"]
        except Exception:  # a protocol this botocore cannot serialize
            continue
        if isinstance(body, dict):  # the query serializer leaves the form to urlencode
            from urllib.parse import urlencode

            body = urlencode(body, doseq=True)
        sizes[protocol] = len(body.encode() if isinstance(body, str) else body)
    return sizes


@pytest.mark.parametrize("value_len,dims", [(8, 2), (1024, 30), (40, 5), (8, 0)])
def test_size_bound_holds_for_every_protocol(value_len: int, dims: int) -> None:
    datums = _datums(200, dims=dims, value_len=value_len, seed=value_len)
    # hostile characters: escaping makes JSON and URL encodings grow
    datums.append(Datum('Weird"\\name', (("Dim", '"\\<>&%\t\x01'),), -1.5e-100, "Count", 1, 0.0))
    ns = "ParallelCluster/x"
    sizes = _serialized_sizes(datums, ns)
    assert {"json", "query"} <= set(sizes), sizes
    for protocol, size in sizes.items():
        bound = request_overhead(ns) + sum(datum_size(d, protocol) for d in datums)
        assert size <= bound, (protocol, size, bound)
        # and not absurdly pessimistic
        assert bound < 2 * size, (protocol, size, bound)
    # the default (query) bound covers every protocol
    query_bound = request_overhead(ns) + sum(datum_size(d) for d in datums)
    assert max(sizes.values()) <= query_bound
