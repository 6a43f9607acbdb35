"""DCGM profiling per MIG GPU instance (Ampere: no GPM, DCGM is the only source).

The description is an A100 node with a mixed layout; every GPU instance has
its own SM_ACTIVE value, so a value served under the wrong GPU_I_ID shows.
DCGM's GPU_I entity ids (its own numbering) differ from NVML's GPU-instance
ids on every instance here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from gpu_helpers import rig_fixture, samples  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.gpu.backend import GpuRef, MigRef
from nodeagent.gpu.dcgm import DCGM_FP64_BLANK, DCGM_INT64_BLANK, _number, connect_dcgm
from nodeagent.gpu.fake import FakeClock, FakeDcgm, FakeNvml
from nodeagent.gpu.fake_dcgm import DCGMError_NotSupported

A100_MIG = """\
name: a100-mig
profiling: dcgm
models:
  a100:
    name: NVIDIA A100-SXM4-40GB
    memory_mib: 40960
    reserved_mib: 620
    mig_capable: true
    fields:
      DCGM_FI_DEV_GPU_TEMP: 40
      DCGM_FI_PROF_GR_ENGINE_ACTIVE: 0.5
      DCGM_FI_PROF_SM_ACTIVE: 0.9
      DCGM_FI_PROF_DRAM_ACTIVE: 0.2
      DCGM_FI_PROF_PCIE_TX_BYTES: 1048576
      DCGM_FI_PROF_NVLINK_TX_BYTES: 2097152
gpus:
  - model: a100
    mig:
      - {gi_id: 1, profile: 3g.20gb, memory_mib: 19968, fields: {DCGM_FI_PROF_SM_ACTIVE: 0.31}}
      - {gi_id: 5, profile: 2g.10gb, memory_mib: 9856, fields: {DCGM_FI_PROF_SM_ACTIVE: 0.52}}
      - {gi_id: 13, profile: 1g.5gb, memory_mib: 4864, fields: {DCGM_FI_PROF_SM_ACTIVE: 0.13}}
  - model: a100
  - model: a100
    mig:
      - {gi_id: 0, profile: 7g.40gb, memory_mib: 40192, fields: {DCGM_FI_PROF_SM_ACTIVE: 0.7}}
"""

PER_INSTANCE = {("0", "1"): "0.310000", ("0", "5"): "0.520000", ("0", "13"): "0.130000", ("2", "0"): "0.700000"}


@pytest.fixture
def a100_mig(tmp_path: Path) -> str:
    path = tmp_path / "a100-mig.yaml"
    path.write_text(A100_MIG)
    return str(path)


def _by_instance(text: str, name: str) -> dict[tuple[str, str | None], str]:
    return {(lb["gpu"], lb.get("GPU_I_ID")): v for lb, v in samples(text, name)}


def _refs(fake: FakeNvml) -> list[GpuRef]:
    return [GpuRef(g.index, g.uuid, None, [MigRef(m.gi_id, m.profile, None) for m in g.mig])
            for g in fake.description.gpus]


def test_dcgm_gpu_instance_ids_are_not_nvml_ones(a100_mig: str) -> None:
    """The premise of the mapping: DCGM numbers instances gpuId * 7 + index."""
    fake = FakeNvml.from_name(a100_mig, clock=FakeClock(), events=False)
    pairs = {(i.gpu, i.gi): i.entity_id for i in fake.dcgm.instances()}
    assert pairs == {(0, 13): 0, (0, 5): 1, (0, 1): 2, (2, 0): 14}


def test_profiling_is_served_per_gpu_instance_under_nvml_ids(rig, a100_mig: str) -> None:
    r = rig(a100_mig)
    r.cycle()
    text = r.text()
    sm = _by_instance(text, "DCGM_FI_PROF_SM_ACTIVE")
    assert sm == {**PER_INSTANCE, ("1", None): "0.900000"}
    profiles = {(lb["gpu"], lb.get("GPU_I_ID")): lb.get("GPU_I_PROFILE")
                for lb, _ in samples(text, "DCGM_FI_PROF_SM_ACTIVE")}
    assert profiles == {("0", "1"): "3g.20gb", ("0", "5"): "2g.10gb", ("0", "13"): "1g.5gb", ("1", None): None,
                        ("2", "0"): "7g.40gb"}
    # GPU-instance-level fields of DCGM come per instance too
    assert set(_by_instance(text, "DCGM_FI_PROF_DRAM_ACTIVE")) == set(sm)
    # PCIe and NVLink bytes are GPU-level in DCGM: an instance would only echo its GPU's
    for name in ("DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_NVLINK_TX_BYTES"):
        got = _by_instance(text, name)
        assert set(got) <= {("1", None)}, name
    assert _by_instance(text, "DCGM_FI_PROF_PCIE_TX_BYTES") == {("1", None): "1048576"}
    for _ in range(3):
        r.clock.advance(5)
        r.cycle()
    # the hierarchy is read once; one connection for all GPUs, one for the MIG entities
    assert r.fake.calls[("dcgmGetGpuInstanceHierarchy", None)] == 1
    assert r.fake.calls[("dcgmConnect", None)] == 2


def test_blank_values_are_left_out(rig, a100_mig: str) -> None:
    r = rig(a100_mig)
    r.cycle()
    r.fake.dcgm.blanks.add((0, 5, "DCGM_FI_PROF_SM_ACTIVE"))
    r.fake.dcgm.blanks.add((1, None, "DCGM_FI_PROF_SM_ACTIVE"))
    r.clock.advance(5)
    r.cycle()
    text = r.text()
    assert _by_instance(text, "DCGM_FI_PROF_SM_ACTIVE") == {k: v for k, v in PER_INSTANCE.items() if k != ("0", "5")}
    assert ("0", "5") in _by_instance(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")  # only the blank field goes


def test_older_bindings_read_entities_through_the_v2_samples_api(a100_mig: str) -> None:
    """DcgmReader before DCGM 3.3.1 has no GetLatestEntityValuesAsFieldIdDict:
    the values come from samples.GetLatest_v2, whose blanks nodeagent drops."""
    fake = FakeNvml.from_name(a100_mig, clock=FakeClock(), events=False)
    dcgm = FakeDcgm(fake, entity_dicts=False)
    dcgm.blanks.add((2, 0, "DCGM_FI_PROF_DRAM_ACTIVE"))
    refs = _refs(fake)
    source = connect_dcgm(dcgm.bindings(), "localhost", 1_000_000, refs)
    values = source.sample(refs)
    assert not hasattr(source.reader, "GetLatestEntityValuesAsFieldIdDict")
    assert fake.calls[("dcgmGetLatestValues_v2", None)] == 1
    assert {k: v["DCGM_FI_PROF_SM_ACTIVE"] for k, v in values.items()} == {
        (0, 1): 0.31, (0, 5): 0.52, (0, 13): 0.13, (1, None): 0.9, (2, 0): 0.7}
    assert "DCGM_FI_PROF_DRAM_ACTIVE" not in values[(2, 0)]
    assert values[(0, 1)]["DCGM_FI_PROF_DRAM_ACTIVE"] == 0.2
    assert "DCGM_FI_PROF_PCIE_TX_BYTES" not in values[(0, 1)]
    source.close()


def test_blank_sentinels_are_not_served() -> None:
    """What a reader keeps when blanks are not filtered (dcgmvalue.py sentinels)."""
    assert _number("DCGM_FI_PROF_SM_ACTIVE", DCGM_FP64_BLANK + 2.0) is None
    assert _number("DCGM_FI_PROF_PCIE_TX_BYTES", DCGM_INT64_BLANK + 2) is None
    assert _number("DCGM_FI_PROF_SM_ACTIVE", None) is None
    assert _number("DCGM_FI_PROF_SM_ACTIVE", 0.25) == 0.25
    assert _number("DCGM_FI_PROF_PCIE_TX_BYTES", 12.0) == 12


def test_hierarchy_failure_falls_back_to_whole_gpus_with_one_warning(a100_mig: str) -> None:
    clock = FakeClock()
    fake = FakeNvml.from_name(a100_mig, clock=clock, events=False)
    fake.dcgm.hierarchy_error = DCGMError_NotSupported()
    refs = _refs(fake)
    with structlog.testing.capture_logs() as logs:
        source = connect_dcgm(fake.dcgm.bindings(), "localhost", 1_000_000, refs, clock=clock)
        for _ in range(3):
            values = source.sample(refs)
            assert set(values) == {(0, None), (1, None), (2, None)}
            clock.advance(61)  # the lookup is tried again every minute
    assert fake.calls[("dcgmGetGpuInstanceHierarchy", None)] == 3
    warnings = [e for e in logs if e["event"] == "gpu_dcgm_mig_hierarchy_failed"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    fake.dcgm.hierarchy_error = None  # DCGM answers again: per instance from the next lookup on
    clock.advance(61)
    values = source.sample(refs)
    assert set(values) == {(0, 1), (0, 5), (0, 13), (1, None), (2, 0)}
    source.close()


def test_instances_dcgm_refuses_to_watch_fall_back_to_whole_gpus(a100_mig: str, monkeypatch) -> None:
    """An instance that went away between the lookup and the watch: the
    group cannot be made (DCGM_ST_BADPARAM); whole GPUs, one warning."""
    clock = FakeClock()
    fake = FakeNvml.from_name(a100_mig, clock=clock, events=False)
    monkeypatch.setattr(fake.dcgm, "exists", lambda group, entity: group == 1)
    refs = _refs(fake)
    with structlog.testing.capture_logs() as logs:
        source = connect_dcgm(fake.dcgm.bindings(), "localhost", 1_000_000, refs, clock=clock)
        assert set(source.sample(refs)) == {(0, None), (1, None), (2, None)}
        clock.advance(61)
        assert set(source.sample(refs)) == {(0, None), (1, None), (2, None)}
    assert [e["event"] for e in logs].count("gpu_dcgm_mig_hierarchy_failed") == 1
    assert len(fake.dcgm.live) == 1
    source.close()
    assert not fake.dcgm.live


def test_a_mig_layout_change_is_read_from_dcgm_again(rig, a100_mig: str) -> None:
    r = rig(a100_mig)
    r.cycle()
    r.fake.set_mig_mode(2, False)
    r.clock.advance(61)  # the sampler looks at the MIG layout again every minute
    r.cycle()
    sm = _by_instance(r.text(), "DCGM_FI_PROF_SM_ACTIVE")
    assert sm == {**{k: v for k, v in PER_INSTANCE.items() if k[0] == "0"}, ("1", None): "0.900000",
                  ("2", None): "0.900000"}
    assert r.fake.calls[("dcgmGetGpuInstanceHierarchy", None)] == 2
    r.fake.set_mig_mode(0, False)
    r.clock.advance(61)
    r.cycle()  # no MIG left: back to DCGM's group of all GPUs, no lookup needed
    assert set(_by_instance(r.text(), "DCGM_FI_PROF_SM_ACTIVE")) == {("0", None), ("1", None), ("2", None)}
    assert r.fake.calls[("dcgmGetGpuInstanceHierarchy", None)] == 2
    assert r.fake.calls[("dcgmConnect", None)] == 4
    assert len(r.fake.dcgm.live) == 1  # each replaced reader was disconnected

