"""The fake backend behaves like NVML: handles, real pynvml errors, time."""

from __future__ import annotations

import ctypes

import pynvml
import pytest

from nodeagent.gpu.backend import handle_key
from nodeagent.gpu.fake import FakeClock, FakeNvml, load_description, parse_description, value_at
from nodeagent.gpu.settings import SHIPPED_DESCRIPTIONS
from nodeagent.settings import ConfigError


@pytest.mark.parametrize("name", SHIPPED_DESCRIPTIONS)
def test_shipped_descriptions_load(name: str) -> None:
    desc = load_description(name)
    assert desc.gpus and desc.name == name


def test_shipped_counts_and_models() -> None:
    counts = {n: (len(load_description(n).gpus), load_description(n).gpus[0].model.name)
              for n in SHIPPED_DESCRIPTIONS}
    assert counts["p5-8xh100"] == (8, "NVIDIA H100 80GB HBM3")
    assert counts["p4d-8xa100-40gb"] == (8, "NVIDIA A100-SXM4-40GB")
    assert counts["g5-1xa10g"] == (1, "NVIDIA A10G")
    assert load_description("h100-mig").gpus[0].mig


def test_behaves_like_nvml_with_real_error_classes_and_codes() -> None:
    fake = FakeNvml.from_name("p4d-8xa100-40gb", clock=FakeClock(), events=False)
    with pytest.raises(pynvml.NVMLError_Uninitialized) as err:
        fake.nvmlDeviceGetCount()
    assert err.value.value == pynvml.NVML_ERROR_UNINITIALIZED
    fake.nvmlInit()
    assert fake.nvmlDeviceGetCount() == 8
    h = fake.nvmlDeviceGetHandleByIndex(7)
    assert isinstance(h, pynvml.c_nvmlDevice_t)
    assert handle_key(h) == ctypes.cast(h, ctypes.c_void_p).value and handle_key(h) != 0
    assert fake.nvmlDeviceGetIndex(h) == 7
    assert fake.nvmlDeviceGetPciInfo(h).busId == "00000000:A0:1D.0"  # pynvml decodes char arrays
    with pytest.raises(pynvml.NVMLError_NotSupported) as err:
        fake.nvmlDeviceGetRetiredPages(h, pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
    assert err.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED == 3
    assert isinstance(err.value, pynvml.NVMLError)
    mem = fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert mem.total == 40960 * 2**20 and mem.reserved == 620 * 2**20
    values = fake.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_MEMORY_TEMP, pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT])
    assert values[0].nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED  # GPU 7 has no memory temperature
    assert values[1].nvmlReturn == pynvml.NVML_SUCCESS and values[1].value.uiVal == 12  # A100 SXM4: 12 links
    fake.set_lost(7)
    with pytest.raises(pynvml.NVMLError_GpuIsLost) as err:
        fake.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
    assert err.value.value == pynvml.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetHandleByIndex(7)
    es = fake.nvmlEventSetCreate()
    fake.nvmlDeviceRegisterEvents(fake.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlEventTypeXidCriticalError, es)
    with pytest.raises(pynvml.NVMLError_Timeout):
        fake.nvmlEventSetWait_v2(es, 0)
    fake.inject_xid(0, 48)
    data = fake.nvmlEventSetWait_v2(es, 0)
    assert isinstance(data, pynvml.c_nvmlEventData_t) and data.eventData == 48
    assert handle_key(data.device) == handle_key(fake.nvmlDeviceGetHandleByIndex(0))
    fake.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()


def test_init_errors_are_the_drivers() -> None:
    desc = parse_description("name: x\ninit_error: library_not_found\nmodels: {m: {name: M, memory_mib: 1}}\n"
                             "gpus: [{model: m}]\n", "x.yaml")
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        FakeNvml(desc).nvmlInit()
    desc.init_error = "driver_not_loaded"
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        FakeNvml(desc).nvmlInit()


def test_values_follow_the_injected_clock() -> None:
    clock = FakeClock()
    fake = FakeNvml.from_name("p5-8xh100", clock=clock, events=False)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    e0 = fake.nvmlDeviceGetTotalEnergyConsumption(h)
    clock.advance(10)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(h) - e0 == 4_500_000  # rate 450000 mJ/s
    powers = set()
    for _ in range(10):
        clock.advance(9)
        powers.add(fake.nvmlDeviceGetPowerUsage(h))
    assert len(powers) > 5 and all(118_500 <= p <= 642_250 for p in powers)
    # the same time gives the same value: golden files are exact
    assert value_at({"min": 1, "max": 2}, 5.0, "f", 0) == value_at({"min": 1, "max": 2}, 5.0, "f", 0)


def test_scripted_events_happen_at_their_time() -> None:
    clock = FakeClock()
    fake = FakeNvml.from_name("p5-8xh100", clock=clock)
    fake.nvmlInit()
    h5 = fake.nvmlDeviceGetHandleByIndex(5)
    clock.advance(59)
    fake.nvmlDeviceGetTemperature(h5, pynvml.NVML_TEMPERATURE_GPU)
    clock.advance(1)  # GPU 5 falls off the bus: UNKNOWN for 10 s, then GPU_IS_LOST
    with pytest.raises(pynvml.NVMLError_Unknown):
        fake.nvmlDeviceGetTemperature(h5, pynvml.NVML_TEMPERATURE_GPU)
    clock.advance(10)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetTemperature(h5, pynvml.NVML_TEMPERATURE_GPU)
    h6 = fake.nvmlDeviceGetHandleByIndex(6)
    clock.advance(20)
    fake.release_hangs()  # the scripted 15 s hang at t=90 would block for real otherwise
    fake.nvmlDeviceGetClockInfo(h6, pynvml.NVML_CLOCK_SM)
    assert fake.hang_entered.is_set()


def test_calls_are_counted_per_function_and_gpu() -> None:
    fake = FakeNvml.from_name("g5-1xa10g", clock=FakeClock(), events=False)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    for _ in range(3):
        fake.nvmlDeviceGetPowerUsage(h)
    assert fake.calls[("nvmlDeviceGetPowerUsage", 0)] == 3


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("gpus: [{model: m}]\n", "gpus[0].model"),
        ("models: {m: {name: M}}\ngpus: [{model: m}]\n", "models.m"),
        ("models: {m: {name: M, memory_mib: 1, fields: {DCGM_FI_DEV_TYPO: 1}}}\ngpus: [{model: m}]\n",
         "models.m.fields.DCGM_FI_DEV_TYPO"),
        ("models: {m: {name: M, memory_mib: 1, fields: {DCGM_FI_DEV_GPU_TEMP: {low: 1}}}}\ngpus: [{model: m}]\n",
         "models.m.fields.DCGM_FI_DEV_GPU_TEMP"),
        ("models: {m: {name: M, memory_mib: 1}}\ngpus: [{model: m}]\nevents: [{at: 1, gpu: 3, xid: 79}]\n",
         "events[0].gpu"),
        ("models: {m: {name: M, memory_mib: 1}}\ngpus: [{model: m}]\nevents: [{at: 1, gpu: 0, hang: nvmlNope}]\n",
         "events[0].hang"),
        ("models: {m: {name: M, memory_mib: 1}}\ngpus: [{model: m, mig: [{gi_id: 1, profile: x, memory_mib: 1}]}]\n",
         "gpus[0].mig"),
    ],
)
def test_description_mistakes_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_description(text, "mine.yaml")
    assert str(err.value).startswith(f"mine.yaml: {key}:")


def test_description_by_path(tmp_path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("models: {m: {name: Lab GPU, memory_mib: 4096}}\ngpus: [{model: m}, {model: m}]\n")
    desc = load_description(str(path))
    assert desc.name == "lab" and len(desc.gpus) == 2
    with pytest.raises(ConfigError, match="cannot read"):
        load_description(str(tmp_path / "missing.yaml"))
