"""Backend choice, no driver, DCGM profiling, settings."""

from __future__ import annotations

import pynvml
import pytest
import structlog
from gpu_helpers import Rig, fixture_host, rig_fixture, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.collectors.gpu.collector import GpuCollector, GpuStatusCollector, gpu_settings
from nodeagent.collectors.gpu.sampler import Sampler
from nodeagent.config import Config, parse_config
from nodeagent.exposition import render
from nodeagent.gpu.backend import GpuRef, open_backend
from nodeagent.gpu.dcgm import connect_dcgm, open_dcgm_profiling
from nodeagent.gpu.fake import FakeClock, FakeDcgm, FakeNvml, parse_description
from nodeagent.gpu.nvml import nvml_available
from nodeagent.gpu.settings import GpuSettings
from nodeagent.host import Host, Roots
from nodeagent.instances import expected_gpus
from nodeagent.registry import CollectorContext
from nodeagent.settings import ConfigError

NO_DRIVER = not nvml_available()


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver")
def test_no_driver_reports_absence_cleanly(tmp_path) -> None:
    cfg = Config(gpu=GpuSettings(expected_gpus=8))
    host = Host(Roots(sysfs=str(tmp_path), dev=str(tmp_path)))
    gpu = GpuCollector(host, None, CollectorContext(config=cfg))
    status = GpuStatusCollector(host, None, CollectorContext(config=cfg))
    try:
        assert gpu.sampler is status.sampler  # one shared sampler
        assert render(gpu.collect()) == b""  # nothing to report is not a failure
        text = render(status.collect()).decode()
    finally:
        gpu.close()
        status.close()
    assert value(text, "nodeagent_gpus", state="expected") == "8"
    assert value(text, "nodeagent_gpus", state="present") == "0"
    assert value(text, "nodeagent_gpus", state="up") == "0"
    assert value(text, "nodeagent_gpu_backend_info", backend="none", configured="auto", profiling="none") == "1"
    assert value(text, "nodeagent_gpu_snapshot_stale") == "0"


def test_driver_missing_is_logged_once_and_retried(tmp_path) -> None:
    desc = parse_description("init_error: driver_not_loaded\nmodels: {m: {name: M, memory_mib: 1}}\n"
                             "gpus: [{model: m}]\n", "x.yaml")
    clock = FakeClock()
    fake = FakeNvml(desc, clock=clock)
    settings = GpuSettings(backend="fake", init_retry=60)
    backend = open_backend(settings)
    backend.api = fake
    sampler = Sampler(settings, fixture_host(), "n", backend=backend, clock=clock, threads=False)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            sampler.run_cycle()
            clock.advance(10)
        assert fake.calls[("nvmlInit", None)] == 1
        clock.advance(40)
        sampler.run_cycle()
        assert fake.calls[("nvmlInit", None)] == 2
    assert [e["event"] for e in logs].count("gpu_nvml_unavailable") == 1
    st = sampler.status()
    assert st.backend == "none" and st.snapshot is not None and st.snapshot.present == 0
    assert "NVMLError_DriverNotLoaded" in st.snapshot.error
    desc.init_error = None  # the driver is loaded now
    clock.advance(61)
    sampler.run_cycle()
    assert sampler.status().backend == "fake" and sampler.status().snapshot.present == 1  # type: ignore[union-attr]


def test_expected_gpus_from_config_or_instance_type(tmp_path) -> None:
    dmi = tmp_path / "devices" / "virtual" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "product_name").write_text("p4d.24xlarge\n")
    host = Host(Roots(sysfs=str(tmp_path), dev=str(tmp_path)))
    assert expected_gpus(host, None) == 8
    assert expected_gpus(host, 2) == 2
    # the table the checks read too: p6-b300 used to be in the EFA table only
    (dmi / "product_name").write_text("p6-b300.48xlarge\n")
    assert expected_gpus(host, None) == 8
    (dmi / "product_name").write_text("trn2.48xlarge\n")  # Trainium: EFA, no NVIDIA GPU
    assert expected_gpus(host, None) == 0
    (dmi / "product_name").write_text("m7i.large\n")
    assert expected_gpus(host, None) == 0
    assert expected_gpus(Host(Roots(sysfs=str(tmp_path / "none"))), None) == 0


def test_backend_info_shows_what_ran(rig) -> None:
    r = rig("p4d-8xa100-40gb")
    r.cycle()
    assert value(r.status_text(), "nodeagent_gpu_backend_info", backend="fake", configured="fake",
                 profiling="dcgm") == "1"
    r2 = rig("p5-8xh100")
    r2.cycle()
    assert value(r2.status_text(), "nodeagent_gpu_backend_info", profiling="gpm") == "1"


def test_dcgm_profiling_maps_dcgm_gpu_ids_by_uuid() -> None:
    fake = FakeNvml.from_name("p4d-8xa100-40gb", clock=FakeClock(), events=False)
    dcgm = FakeDcgm(fake, first_gpu_id=10)  # DCGM numbers GPUs its own way: map through the UUIDs
    refs = [GpuRef(g.index, g.uuid, None) for g in fake.description.gpus]
    source = connect_dcgm(dcgm.bindings(), "localhost", 1_000_000, refs)
    values = source.sample(refs)
    assert set(values) == {(i, None) for i in range(8)}
    v = values[(3, None)]
    assert 0.0 <= v["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] <= 1.0
    assert isinstance(v["DCGM_FI_PROF_PCIE_TX_BYTES"], int)
    assert fake.calls[("dcgmGetGpuInstanceHierarchy", None)] == 0  # no MIG: nothing to map


def test_dcgm_unavailable_without_bindings_is_not_an_error(tmp_path) -> None:
    settings = GpuSettings(backend="dcgm", dcgm_bindings_paths=(str(tmp_path / "nowhere"),))
    with structlog.testing.capture_logs() as logs:
        assert open_dcgm_profiling(settings, required=True) is None
    assert logs[0]["event"] == "gpu_dcgm_unavailable" and logs[0]["log_level"] == "error"


def test_gpm_profiling_needs_two_samples_and_reports_ratios(rig) -> None:
    r = rig("p5-8xh100", job_attribution=False)
    r.cycle()
    assert value(r.text(), "DCGM_FI_PROF_SM_ACTIVE", gpu="0") is None
    r.clock.advance(5)
    r.cycle()
    v = float(value(r.text(), "DCGM_FI_PROF_SM_ACTIVE", gpu="0") or "nan")
    assert 0.02 <= v <= 0.95
    assert r.fake.calls[("nvmlGpmSampleAlloc", None)] == 16  # two per GPU, reused every cycle
    r.cycle()
    assert r.fake.calls[("nvmlGpmSampleAlloc", None)] == 16


def test_settings_from_config() -> None:
    cfg = parse_config("gpu:\n  backend: fake\n  fake_description: h100-mig\n  hostname_label: hostname\n", "a.yaml")
    assert gpu_settings(CollectorContext(config=cfg)).fake_description == "h100-mig"
    assert gpu_settings(CollectorContext()) == GpuSettings()
    for bad, key in [("backend: cuda", "gpu.backend"), ("interval: 0", "gpu.interval"),
                     ("xid_count_window_ms: 10", "gpu.xid_count_window_ms"), ("unknown: 1", "gpu.unknown"),
                     ("fake_description: nope", "gpu.fake_description")]:
        with pytest.raises(ConfigError) as err:
            parse_config(f"gpu: {{{bad}}}\n", "a.yaml")
        assert str(err.value).startswith(f"a.yaml: {key}:"), bad
    assert GpuSettings(interval=2, call_timeout=1).stale_limit() == 7
    assert GpuSettings(stale_after=30).stale_limit() == 30


def test_the_real_backend_is_the_pynvml_module() -> None:
    backend = open_backend(GpuSettings(backend="nvml"))
    assert backend.kind == "nvml" and backend.api is pynvml


def test_shared_sampler_is_released_when_both_collectors_close() -> None:
    from nodeagent.collectors.gpu import collector as mod

    cfg = Config(gpu=GpuSettings(backend="fake", fake_description="g5-1xa10g", fake_events=False))
    a = GpuCollector(Host(), None, CollectorContext(config=cfg))
    b = GpuStatusCollector(Host(), None, CollectorContext(config=cfg))
    assert a.sampler is b.sampler and len(mod._HUB) == 1
    a.close()
    assert len(mod._HUB) == 1
    b.close()
    b.close()
    assert mod._HUB == {}


def test_rig_closes_cleanly() -> None:
    r = Rig("g5-1xa10g", threads=True, interval=3600)
    assert r.sampler.wait_cycles(1, 5)
    r.close()
    assert not any(t.is_alive() for t in r.sampler._threads)


@pytest.mark.parametrize("hopper", [True, False])
def test_dcgm_bindings_found_on_the_configured_path_embedded_only_on_hopper(tmp_path, monkeypatch,
                                                                           hopper: bool) -> None:
    """A stand-in for DCGM's bindings directory: DcgmReader refuses nv-hostengine
    (not running) and accepts the embedded host engine, as on a node where
    only the DCGM libraries are installed. On Ampere and older an embedded
    engine would block users' profilers: never started there."""
    import sys

    bindings = tmp_path / "bindings" / "python3"
    bindings.mkdir(parents=True)
    (bindings / "dcgm_fields.py").write_text("DCGM_FI_PROF_SM_ACTIVE = 1002\n")
    (bindings / "dcgm_agent.py").write_text("")
    (bindings / "dcgm_structs.py").write_text("")
    (bindings / "DcgmReader.py").write_text(
        "class DcgmReader:\n"
        "    def __init__(self, hostname='localhost', fieldIds=None, updateFrequency=0, ignoreBlank=True,\n"
        "                 fieldGroupName='', entities=None):\n"
        "        self.hostname, self.fieldIds, self.m_dcgmHandle = hostname, fieldIds, None\n"
        "        self.m_gpuIdToUUId = {0: 'GPU-a'}\n"
        "    def Init(self):\n"
        "        if self.hostname is None:\n"
        "            self.m_dcgmHandle = object()\n"
        "    def GetLatestGpuValuesAsFieldIdDict(self):\n"
        "        return {0: {1002: 0.5, 1009: 123}}\n"
        "    def Shutdown(self):\n"
        "        pass\n"
    )
    modules = ("DcgmReader", "dcgm_fields", "dcgm_agent", "dcgm_structs")
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)
    settings = GpuSettings(backend="dcgm", dcgm_bindings_paths=(str(tmp_path / "missing"), str(bindings)))
    with structlog.testing.capture_logs() as logs:
        source = open_dcgm_profiling(settings, required=True, allow_embedded=hopper)
    for name in modules:
        sys.modules.pop(name, None)
    if not hopper:
        assert source is None
        assert [e.get("host") for e in logs if e["event"] == "gpu_dcgm_unavailable"] == ["localhost"]
        return
    assert source is not None and source.name == "dcgm"
    assert [e.get("host") for e in logs if e["event"] == "gpu_dcgm_unavailable"] == ["localhost"]
    assert source.sample([GpuRef(0, "GPU-a", None)]) == {
        (0, None): {"DCGM_FI_PROF_SM_ACTIVE": 0.5, "DCGM_FI_PROF_PCIE_TX_BYTES": 123}
    }


def test_gpm_samples_are_kept_when_sampling_fails(rig) -> None:
    r = rig("p5-8xh100", job_attribution=False)
    r.cycle()
    r.fake.fail_next(2, "nvmlGpmSampleGet", pynvml.NVMLError_Unknown, count=10)
    for _ in range(10):
        r.clock.advance(5)
        r.cycle()
    live = r.fake.calls[("nvmlGpmSampleAlloc", None)] - r.fake.calls[("nvmlGpmSampleFree", None)]
    assert live == 16  # still two per GPU: the failing GPU's are reused, not dropped
    for _ in range(2):  # the errors stop: two samples later GPU 2 has profiling again
        r.clock.advance(5)
        r.cycle()
    assert value(r.text(), "DCGM_FI_PROF_SM_ACTIVE", gpu="2") is not None
    assert r.fake.calls[("nvmlGpmSampleAlloc", None)] == 16


def test_node_without_a_driver_is_reported_every_cycle_and_never_stale() -> None:
    desc = parse_description("init_error: library_not_found\nmodels: {m: {name: M, memory_mib: 1}}\n"
                             "gpus: [{model: m}]\n", "x.yaml")
    clock = FakeClock()
    fake = FakeNvml(desc, clock=clock)
    settings = GpuSettings(backend="fake", interval=5, init_retry=60)  # stale after 20 s
    backend = open_backend(settings)
    backend.api = fake
    sampler = Sampler(settings, fixture_host(), "n", backend=backend, clock=clock, threads=False)
    gpu = GpuCollector(Host(), None, sampler=sampler)
    status = GpuStatusCollector(Host(), None, sampler=sampler)
    for _ in range(26):  # 130 s: two init retries
        sampler.run_cycle()
        st = sampler.status()
        assert not st.stale, st.reason
        assert st.snapshot is not None and "NVMLError_LibraryNotFound" in st.snapshot.error
        gpu.collect()  # success: nothing to report
        text = render(status.collect()).decode()
        assert value(text, "nodeagent_gpu_snapshot_stale") == "0"
        assert value(text, "nodeagent_gpus", state="present") == "0"
        assert value(text, "nodeagent_gpu_backend_info", backend="none") == "1"
        clock.advance(5)
    assert fake.calls[("nvmlInit", None)] == 3  # still retried only every init_retry
