"""Per-node GPU and I/O summaries for CloudWatch, from hand-built families."""

from __future__ import annotations

import pytest

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue import gpu as g
from nodeagent.catalogue import host_extra as hx
from nodeagent.catalogue import summaries as cs
from nodeagent.collectors.gpu.sampler import Sampler
from nodeagent.gpu.backend import open_backend
from nodeagent.gpu.fake import FakeClock
from nodeagent.gpu.settings import GpuSettings
from nodeagent.host import Host, Roots
from nodeagent.model import MetricFamily
from nodeagent.publish.published import Published
from nodeagent.roles import ROLE_TABLE
from nodeagent.sinks import gpu_summary, io_summary
from nodeagent.sinks.gpu_summary import GpuSummary
from nodeagent.sinks.io_summary import IoSummary
from nodeagent.sinks.mapping import CloudWatchMapper
from nodeagent.sinks.settings import CloudWatchSettings

IDENT = ("compute", "i-0abc")
LABELS = g.gpu_labelnames(attributes=("hpc_job",))


def gpu_labels(index: int, job: str = "") -> tuple[str, ...]:
    values = {
        "gpu": str(index),
        "UUID": f"GPU-{index:08d}",
        "pci_bus_id": f"00000000:{index:02X}:00.0",
        "device": f"nvidia{index}",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "node-1",
        "DCGM_FI_DRIVER_VERSION": "550.144.03",
        "hpc_job": job,
    }
    return tuple(values[n] for n in LABELS)


def dcgm(spec: object, values: list[tuple[int, str, float]]) -> MetricFamily:
    fam = spec.family(labels=LABELS)  # type: ignore[attr-defined]
    for index, job, value in values:
        fam.add(gpu_labels(index, job), value)
    return fam


def xid(samples: dict[tuple[int, str, str], float]) -> MetricFamily:
    fam = g.XID_ERRORS_TOTAL.family()
    for (index, action, code), value in samples.items():
        fam.add((*gpu_labels(index)[:6], action, code), value)
    return fam


def per_gpu_family(spec: object, values: dict[int, float], extra: tuple[str, ...] = ()) -> MetricFamily:
    fam = spec.family()  # type: ignore[attr-defined]
    for index, value in values.items():
        fam.add((*gpu_labels(index)[:6], *extra), value)
    return fam


def families(xid_samples: dict[tuple[int, str, str], float]) -> list[MetricFamily]:
    gpus = g.GPUS.family()
    for state, value in (("expected", 8), ("present", 8), ("up", 7)):
        gpus.add((state,), value)
    idle = g.ALLOCATED_IDLE.family()
    idle.add((*gpu_labels(0)[:6], "101"), 0)
    idle.add((*gpu_labels(0)[:6], "102"), 0)
    idle.add((*gpu_labels(1)[:6], "103"), 1)
    return [
        # GPU 0 runs two jobs: dcgm-exporter repeats its samples once per job
        dcgm(g.GPU_UTIL, [(0, "101", 80), (0, "102", 80), (1, "103", 20)]),
        dcgm(g.FB_USED, [(0, "101", 1000), (0, "102", 1000), (1, "103", 3000)]),
        dcgm(g.FB_FREE, [(0, "101", 9000), (0, "102", 9000), (1, "103", 7000)]),
        dcgm(g.FB_RESERVED, [(0, "101", 0), (0, "102", 0), (1, "103", 0)]),
        dcgm(g.GPU_TEMP, [(0, "101", 60), (0, "102", 60), (1, "103", 71)]),
        dcgm(g.POWER_USAGE, [(0, "101", 300.5), (0, "102", 300.5), (1, "103", 200.25)]),
        xid(xid_samples),
        per_gpu_family(g.NODE_ACTION_XID, {0: 79, 1: 0}),
        per_gpu_family(g.GPU_UP, {0: 1, 1: 1}),
        gpus,
        idle,
        MetricFamily("node_load1", "", "gauge", (), [((), 1.0)]),  # ignored
    ]


def values(out: list[MetricFamily]) -> dict[str, float]:
    result = {}
    for fam in out:
        assert fam.labelnames == ("role", "instance_id")
        assert fam.samples[0][0] == IDENT
        result[fam.name] = fam.samples[0][1]
    return result


def test_gpu_summary_by_hand() -> None:
    s = GpuSummary(*IDENT)
    first = values(s.derive(families({(0, "node", "79"): 1})))
    assert first == {
        cs.GPU_UTIL_MEAN.name: 50.0,  # (80 + 20) / 2: GPU 0 counted once despite two jobs
        cs.GPU_UTIL_MAX.name: 80.0,
        cs.GPU_MEMORY_USED.name: 4000 * 1024 * 1024,
        cs.GPU_MEMORY_USED_PERCENT.name: 20.0,  # 4000 / (4000 + 16000)
        cs.GPU_TEMP_MAX.name: 71.0,
        cs.GPU_POWER.name: 500.75,
        cs.GPU_NODE_ACTION.name: 1.0,
        cs.GPU_LOST.name: 1.0,  # 8 expected, 7 up
        cs.GPU_ALLOCATED_IDLE.name: 1.0,  # GPU 1 only; GPU 0's two jobs count once, and it is busy
    }  # no XID datum on the first publish: an increase needs two readings
    second = values(s.derive(families({(0, "node", "79"): 2, (1, "app", "13"): 1})))
    assert second[cs.GPU_XID_ERRORS.name] == 2.0  # 79 once more, and a first 13
    third = values(s.derive(families({(0, "node", "79"): 1, (1, "app", "13"): 1})))
    assert third[cs.GPU_XID_ERRORS.name] == 1.0  # 79 went back from 2 to 1: a reset, counts 1
    # a series that disappears (a lost GPU's) is not a reset of the others
    fourth = values(s.derive(families({(1, "app", "13"): 1})))
    assert fourth[cs.GPU_XID_ERRORS.name] == 0.0


def test_gpu_summary_counts_device_wide_fields_once_per_mig_gpu() -> None:
    """The h100-mig fake: the collector repeats power, temperature and GPU
    utilisation on every GPU instance's series; framebuffer is per instance."""
    clock = FakeClock(0.0)
    settings = GpuSettings(backend="fake", fake_description="h100-mig", fake_events=False)
    backend = open_backend(settings, clock=clock)
    sampler = Sampler(settings, Host(Roots()), "node-1", backend=backend, clock=clock, threads=False)
    try:
        snapshot = sampler.run_cycle()
    finally:
        sampler.close()
    assert snapshot is not None
    fams = {f.name: f for f in snapshot.families}

    def by_uuid(spec: object) -> dict[str, float]:
        fam = fams[spec.name]  # type: ignore[attr-defined]
        uuid = fam.labelnames.index("UUID")
        return {labels[uuid]: value for labels, value in fam.samples}

    power = by_uuid(g.POWER_USAGE)
    assert len(fams[g.POWER_USAGE.name].samples) > len(power) == 2  # repeated per GPU instance
    used = fams[g.FB_USED.name]
    assert len({labels[used.labelnames.index("GPU_I_ID")] for labels, _ in used.samples}) > 2
    out = values(GpuSummary(*IDENT).derive(snapshot.families))
    assert out[cs.GPU_POWER.name] == pytest.approx(sum(power.values()), abs=1e-3)  # 586 W, not 1516 W
    assert out[cs.GPU_TEMP_MAX.name] == max(by_uuid(g.GPU_TEMP).values())
    # per-instance framebuffer: every instance counts
    assert out[cs.GPU_MEMORY_USED.name] == sum(v for _, v in used.samples) * gpu_summary.MIB


def test_gpu_summary_mig_utilisation_is_per_gpu() -> None:
    """A device-wide field repeated per MIG instance weighs each GPU once in the mean."""
    labels = g.gpu_labelnames(mig=True)
    util = g.GPU_UTIL.family(labels=labels)
    for index, instances, value in ((0, ("1", "2", "5"), 90.0), (1, ("0",), 10.0)):
        for gi in instances:
            ids = {"gpu": str(index), "UUID": f"GPU-{index}", "GPU_I_ID": gi}
            util.add(tuple(ids.get(n, "x") for n in labels), value)
    out = values(GpuSummary(*IDENT).derive([util]))
    assert out[cs.GPU_UTIL_MEAN.name] == 50.0  # (90 + 10) / 2, not (3 * 90 + 10) / 4


def test_gpu_summary_without_gpus_and_without_inventory() -> None:
    s = GpuSummary(*IDENT)
    assert s.derive([MetricFamily("node_load1", "", "gauge", (), [((), 1.0)])]) == []
    up = per_gpu_family(g.GPU_UP, {0: 1, 1: 0, 2: 0})
    out = values(s.derive([up]))
    assert out == {cs.GPU_LOST.name: 2.0, cs.GPU_ALLOCATED_IDLE.name: 0.0}
    out = values(s.derive([up]))
    assert out[cs.GPU_XID_ERRORS.name] == 0.0  # GPUs present and no XID series: zero XIDs


def test_gpu_summary_inputs_are_catalogue_names() -> None:
    for name in gpu_summary.INPUTS:
        assert CATALOGUE.lookup(name) is not None, name
    for name in io_summary.SOURCES:
        assert CATALOGUE.lookup(name) is not None, name
    for spec in (*cs.GPU_SUMMARY_SPECS, *cs.IO_SUMMARY_SPECS):
        assert spec.cloudwatch is not None and spec.cloudwatch.dimensions == spec.labels


def counter(name: str, labelname: str, samples: dict[str, float]) -> MetricFamily:
    return MetricFamily(name, "", "counter", (labelname,), [((k,), v) for k, v in samples.items()])


def test_io_summary_by_hand() -> None:
    s = IoSummary(*IDENT)
    rx, tx = io_summary.NET_RX, io_summary.NET_TX
    read, write = hx.NODEAGENT_LUSTRE_READ_BYTES.name, hx.NODEAGENT_LUSTRE_WRITE_BYTES.name

    def publish(t: float, eth0: float, eth1: float | None, fsx: float) -> dict[str, float]:
        net = {"lo": 10 * t, "eth0": eth0} | ({"eth1": eth1} if eth1 is not None else {})
        fams = [counter(rx, "device", net), counter(tx, "device", {"eth0": 2 * eth0}),
                counter(read, "fs", {"fsx": fsx}), counter(write, "fs", {"fsx": 0})]
        return values(s.derive(fams, t))

    assert publish(100.0, 1000, None, 100) == {}
    assert publish(110.0, 6000, 50, 1100) == {
        cs.NETWORK_RX.name: 500.0,  # (6000 - 1000) / 10 s; lo left out, eth1 new
        cs.NETWORK_TX.name: 1000.0,
        cs.LUSTRE_READ.name: 100.0,
        cs.LUSTRE_WRITE.name: 0.0,
    }
    out = publish(120.0, 500, 150, 1100)  # eth0 reset: counts from zero
    assert out[cs.NETWORK_RX.name] == pytest.approx((500 + 100) / 10)


def test_summaries_map_to_cloudwatch_with_role_rollup() -> None:
    s = GpuSummary(*IDENT)
    mapper = CloudWatchMapper("compute", (), "instance_id")
    datums, dropped = mapper.map(s.derive(families({})), 1_700_000_000.0)
    assert not dropped
    util = sorted(d.dims for d in datums if d.name == "GPU_UTIL_MEAN")
    assert util == [(("Role", "compute"),), (("Role", "compute"), ("InstanceId", "i-0abc"))]
    # the head role does not publish compute summaries
    assert CloudWatchMapper("head", (), "instance_id").map(s.derive(families({})), 0.0)[0] == []


@pytest.mark.parametrize("rollup", [True, False])
def test_published_view_matches_what_the_mapper_sends(rollup: bool) -> None:
    """Dashboards and alarms read Published; the sink sends what the mapper
    makes: same names, dimensions, resolution and rollup for every spec."""
    settings = CloudWatchSettings(
        roles=("head", "login", "compute"), role_rollup=rollup, high_resolution=("NodesIdle", cs.GPU_POWER.name)
    )
    published = Published(settings, "demo")
    mappers = {r: CloudWatchMapper(r, settings.high_resolution, "instance_id" if rollup else None) for r in ROLE_TABLE}
    checked = 0
    for spec in {m.spec.name: m.spec for m in published}.values():
        if spec.is_pattern:
            continue
        expected = {(m.name, m.dimension_set, m.storage_resolution) for m in published if m.spec is spec}
        fam = spec.family()
        fam.add(tuple("x" for _ in fam.labelnames), 1.0)
        for role in next(m.roles for m in published if m.spec is spec):
            datums, dropped = mappers[role].map([fam], 1_700_000_000.0)
            assert not dropped
            assert {(d.name, frozenset(k for k, _ in d.dims), d.resolution) for d in datums} == expected, spec.name
            checked += 1
    assert checked > 40
    resolutions = {m.name: m.storage_resolution for m in published}
    assert resolutions["NodesIdle"] == 1 and resolutions[cs.GPU_POWER.cloudwatch.name] == 1  # type: ignore[union-attr]
