"""One GPU's trouble stays with that GPU; NOT_SUPPORTED is asked once."""

from __future__ import annotations

import pynvml
from gpu_helpers import rig_fixture, samples, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.exposition import render
from nodeagent.supervise import Supervisor


def _per_gpu(text: str, name: str) -> dict[str, str]:
    return {labels["gpu"]: v for labels, v in samples(text, name)}


def test_lost_gpu_leaves_the_others_intact(rig) -> None:
    r = rig("p5-8xh100", events=True)
    r.cycle()
    r.clock.advance(10)
    r.cycle()
    before = r.text()
    r.clock.advance(55)  # t=65: XID 79 and GPU 5 fallen off the bus
    r.cycle()
    after = r.text()
    families = [line.split()[2] for line in before.splitlines() if line.startswith("# TYPE DCGM_FI_")]
    for name in families:
        gpus_after = set(_per_gpu(after, name))
        if name == "DCGM_FI_DEV_XID_ERRORS":
            assert gpus_after == {str(i) for i in range(8)}  # XIDs come from events: known even when lost
            continue
        assert gpus_after == set(_per_gpu(before, name)) - {"5"}, name
    assert _per_gpu(after, "nodeagent_gpu_up") == {str(i): "0" if i == 5 else "1" for i in range(8)}
    assert value(after, "nodeagent_gpu_healthy", gpu="5") == "0"
    assert value(after, "DCGM_FI_DEV_XID_ERRORS", gpu="5", err_code="79") == "79"
    status = r.status_text()
    assert value(status, "nodeagent_gpus", state="present") == "8"
    assert value(status, "nodeagent_gpus", state="up") == "7"
    assert value(status, "nodeagent_gpus", state="expected") == "8"  # p5.48xlarge
    # a lost GPU is not a collector failure
    sup = Supervisor("gpu", [r.gpu, r.status], timeout=2)
    results = sup.run_all()
    assert all(res.success for res in results)
    meta = render(sup.meta_families(results)).decode()
    assert 'nodeagent_collector_success{collector="gpu"} 1' in meta
    sup.close()


def test_lost_gpu_comes_back_when_nvml_answers_again(rig) -> None:
    r = rig("g5-1xa10g")
    r.cycle()
    r.fake.set_lost(0)
    r.cycle()
    assert value(r.text(), "nodeagent_gpu_up") == "0"
    assert value(r.text(), "DCGM_FI_DEV_GPU_TEMP") is None
    r.fake.set_lost(0, False)
    r.cycle()
    assert value(r.text(), "nodeagent_gpu_up") == "1"
    assert value(r.text(), "DCGM_FI_DEV_GPU_TEMP") is not None


def test_gpu_lost_at_discovery_is_reported_and_rediscovered(rig) -> None:
    r = rig("p4d-8xa100-40gb", start=False)
    r.fake.set_lost(3)
    r.sampler.start()  # threads are off: start() does nothing
    r.cycle()
    text = r.text()
    assert _per_gpu(text, "nodeagent_gpu_up")["3"] == "0"
    assert value(text, "nodeagent_gpu_up", gpu="3", UUID="") == "0"
    assert len(_per_gpu(text, "DCGM_FI_DEV_GPU_TEMP")) == 7
    r.fake.set_lost(3, False)
    r.cycle()
    text = r.text()
    assert _per_gpu(text, "nodeagent_gpu_up")["3"] == "1"
    assert len(_per_gpu(text, "DCGM_FI_DEV_GPU_TEMP")) == 8
    assert value(text, "DCGM_FI_DEV_GPU_TEMP", gpu="3", pci_bus_id="00000000:20:1D.0") is not None


def test_not_supported_is_remembered_per_gpu_and_never_retried(rig) -> None:
    r = rig("p4d-8xa100-40gb")
    r.fake.fail_next(3, "nvmlDeviceGetTemperature", pynvml.NVMLError_NotSupported)
    for _ in range(4):
        r.cycle()
        r.clock.advance(5)
    calls = r.fake.calls
    for gpu in set(range(8)) - {3}:
        # supported calls happen every cycle; one batched field-value call per GPU per cycle
        assert calls[("nvmlDeviceGetTemperature", gpu)] == 4
        assert calls[("nvmlDeviceGetFieldValues", gpu)] == 4
    for gpu in range(8):
        # retired pages: NOT_SUPPORTED on every A100 (row remapping instead), remembered
        # per field, so they leave the batch after the first cycle
        assert {"DCGM_FI_DEV_RETIRED_SBE", "DCGM_FI_DEV_RETIRED_PENDING"} <= r.sampler.source.unsupported(gpu, None)
    # a whole call answered NOT_SUPPORTED once is not made again
    assert calls[("nvmlDeviceGetTemperature", 3)] == 1
    # GPU 7 alone lacks memory temperature: one field of the batched field-value
    # call; it is dropped from the request, the other fields still come
    text = r.text()
    assert set(_per_gpu(text, "DCGM_FI_DEV_MEMORY_TEMP")) == {str(i) for i in range(7)}
    assert set(_per_gpu(text, "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL")) == {str(i) for i in range(8)}
    assert "DCGM_FI_DEV_MEMORY_TEMP" in r.sampler.source.unsupported(7, None)
    assert "DCGM_FI_DEV_MEMORY_TEMP" not in r.sampler.source.unsupported(6, None)


def test_transient_error_skips_one_field_for_one_cycle(rig) -> None:
    r = rig("p5-8xh100")
    r.cycle()
    r.fake.fail_next(2, "nvmlDeviceGetMemoryInfo", pynvml.NVMLError_Unknown)
    r.fake.fail_next(4, "nvmlDeviceGetTemperature", pynvml.NVMLError_Timeout)
    r.cycle()
    text = r.text()
    assert set(_per_gpu(text, "DCGM_FI_DEV_FB_USED")) == {str(i) for i in range(8)} - {"2"}
    assert set(_per_gpu(text, "DCGM_FI_DEV_GPU_TEMP")) == {str(i) for i in range(8)} - {"4"}
    assert _per_gpu(text, "nodeagent_gpu_up") == {str(i): "1" for i in range(8)}
    r.cycle()  # not remembered: asked again and answered
    text = r.text()
    assert len(_per_gpu(text, "DCGM_FI_DEV_FB_USED")) == 8
    assert len(_per_gpu(text, "DCGM_FI_DEV_GPU_TEMP")) == 8


def test_gpu_is_lost_in_the_middle_of_a_cycle(rig) -> None:
    r = rig("p5-8xh100")
    r.cycle()
    r.fake.fail_next(6, "nvmlDeviceGetUtilizationRates", pynvml.NVMLError_GpuIsLost)
    r.cycle()
    text = r.text()
    assert _per_gpu(text, "nodeagent_gpu_up")["6"] == "0"
    assert "6" not in _per_gpu(text, "DCGM_FI_DEV_SM_CLOCK")
    assert len(_per_gpu(text, "DCGM_FI_DEV_SM_CLOCK")) == 7
