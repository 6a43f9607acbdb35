"""The fake models what real drivers do: slow starts and process queries,
UNKNOWN then GPU_IS_LOST after a fall off the bus, per-field errors, v1 and
v2 memory, MIG mode changes, XIDs in MIG instances, and pynvml's
NVMLLibraryMismatchError."""

from __future__ import annotations

import threading
import time
from typing import Any

import pynvml
import pytest

from nodeagent.gpu.fake import FakeClock, FakeNvml, parse_description
from nodeagent.settings import ConfigError

NOT_IN_INSTANCE = 0xFFFFFFFF
MODEL = "models: {h: {name: H, memory_mib: 1000, reserved_mib: 100, mig_capable: true, nvlinks: 18}}\n"


def _fake(extra: str = "", gpus: str = "gpus: [{model: h, processes: [{pid: 1, used_mib: 300}]}]\n",
          clock: FakeClock | None = None) -> FakeNvml:  # fmt: skip
    return FakeNvml(parse_description(MODEL + gpus + extra, "t.yaml"), clock=clock or FakeClock())


def _open(name: str, clock: FakeClock, events: bool = True) -> tuple[FakeNvml, Any]:
    fake = FakeNvml.from_name(name, clock=clock, events=events)
    fake.nvmlInit()
    return fake, fake.nvmlDeviceGetHandleByIndex(0)


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    return thread, out


# ---- a slow start and slow process queries ----------------------------------------
def test_slow_init_blocks_until_released() -> None:
    fake = _fake("init_seconds: 8\n")
    thread, _ = _in_thread(fake.nvmlInit)
    assert fake.hang_entered.wait(2)
    thread.join(0.2)
    assert thread.is_alive()  # 8 s without persistence mode
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.release_hangs()
    thread.join(2)
    assert not thread.is_alive() and fake.nvmlDeviceGetCount() == 1
    assert fake.calls[("nvmlInit", None)] == 1


def test_slow_init_ends_when_the_injected_clock_has_passed_its_time() -> None:
    clock = FakeClock()
    fake = _fake("init_seconds: 8\n", clock=clock)
    thread, _ = _in_thread(fake.nvmlInit)
    assert fake.hang_entered.wait(2)
    clock.advance(5)
    thread.join(0.1)
    assert thread.is_alive()
    clock.advance(3)
    thread.join(2)
    assert not thread.is_alive()
    started = time.monotonic()
    fake.nvmlInit()  # the driver is up now: the next client does not wait
    assert time.monotonic() - started < 0.5


def test_slow_process_query_blocks_until_released() -> None:
    fake = _fake("process_query_seconds: 30\n")
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    thread, out = _in_thread(lambda: fake.nvmlDeviceGetComputeRunningProcesses(h))
    assert fake.hang_entered.wait(2)
    thread.join(0.1)
    assert thread.is_alive()
    fake.release_hangs()
    thread.join(2)
    assert [p.pid for p in out[0]] == [1]


def test_process_query_raises_library_mismatch_not_an_nvml_error() -> None:
    fake = _fake("process_query_error: library_mismatch\n")
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLLibraryMismatchError) as err:
        fake.nvmlDeviceGetComputeRunningProcesses(h)
    assert not isinstance(err.value, pynvml.NVMLError)
    assert "nvmlDeviceGetComputeRunningProcesses_v2" in str(err.value)
    assert fake.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU) == 0  # the rest answers


def test_fail_next_raises_any_exception_once() -> None:
    fake, h = _open("p4d-8xa100-40gb", FakeClock(), events=False)
    fake.fail_next(0, "nvmlDeviceGetComputeRunningProcesses", pynvml.NVMLLibraryMismatchError)
    with pytest.raises(pynvml.NVMLLibraryMismatchError):
        fake.nvmlDeviceGetComputeRunningProcesses(h)
    assert [p.pid for p in fake.nvmlDeviceGetComputeRunningProcesses(h)] == [30101]


# ---- a fall off the bus ----------------------------------------------------------------
def test_fall_off_bus_answers_unknown_then_gpu_is_lost() -> None:
    clock = FakeClock()
    fake = FakeNvml.from_name("p5-8xh100", clock=clock)
    fake.nvmlInit()
    h5 = fake.nvmlDeviceGetHandleByIndex(5)
    events = fake.nvmlEventSetCreate()
    fake.nvmlDeviceRegisterEvents(h5, pynvml.nvmlEventTypeXidCriticalError, events)
    clock.advance(60)
    for call in (lambda: fake.nvmlDeviceGetPowerUsage(h5),
                 lambda: fake.nvmlDeviceGetFieldValues(h5, [pynvml.NVML_FI_DEV_MEMORY_TEMP]),
                 lambda: fake.nvmlDeviceGetHandleByIndex(5)):  # fmt: skip
        with pytest.raises(pynvml.NVMLError_Unknown) as err:
            call()
        assert err.value.value == pynvml.NVML_ERROR_UNKNOWN == 999
    data = fake.nvmlEventSetWait_v2(events, 0)
    assert data.eventData == 79 and data.gpuInstanceId == NOT_IN_INSTANCE
    line = fake.kernel_log()[-1]
    assert "NVRM: Xid (PCI:0000:a8:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus." in line
    clock.advance(10)
    with pytest.raises(pynvml.NVMLError_GpuIsLost) as err:
        fake.nvmlDeviceGetPowerUsage(h5)
    assert err.value.value == pynvml.NVML_ERROR_GPU_IS_LOST == 15
    fake.nvmlDeviceGetPowerUsage(fake.nvmlDeviceGetHandleByIndex(4))  # the others answer


def test_fall_off_bus_by_hand_and_recovery() -> None:
    clock = FakeClock()
    fake, h = _open("g5-1xa10g", clock, events=False)
    fake.fall_off_bus(0, unknown_seconds=2)
    with pytest.raises(pynvml.NVMLError_Unknown):
        fake.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
    clock.advance(2)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
    fake.set_lost(0, False)
    assert fake.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU) > 0


# ---- per-field errors ------------------------------------------------------------------
def test_one_field_answers_an_error_inside_a_successful_call() -> None:
    clock = FakeClock()
    fake, h = _open("p5-8xh100", clock, events=False)
    ids = [pynvml.NVML_FI_DEV_PERF_POLICY_POWER, pynvml.NVML_FI_DEV_MEMORY_TEMP]
    fake.fail_field(0, "DCGM_FI_DEV_POWER_VIOLATION", pynvml.NVML_ERROR_UNKNOWN, seconds=5)
    power, temp = fake.nvmlDeviceGetFieldValues(h, ids)
    assert power.nvmlReturn == pynvml.NVML_ERROR_UNKNOWN and temp.nvmlReturn == pynvml.NVML_SUCCESS
    assert fake.nvmlDeviceGetFieldValues(fake.nvmlDeviceGetHandleByIndex(1), ids)[0].nvmlReturn == 0  # GPU 0 only
    clock.advance(5)
    assert fake.nvmlDeviceGetFieldValues(h, ids)[0].nvmlReturn == pynvml.NVML_SUCCESS


def test_field_errors_from_the_description_and_the_timeline() -> None:
    clock = FakeClock()
    text = ("gpus: [{model: h, field_errors: {DCGM_FI_DEV_ECC_SBE_VOL_TOTAL: not_supported}}]\n"
            "events: [{at: 10, gpu: 0, field_error: NVML_FI_DEV_PCIE_REPLAY_COUNTER, error: no_data}]\n")  # fmt: skip
    fake = _fake(gpus=text, clock=clock)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    ids = [pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL, pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER]
    assert [v.nvmlReturn for v in fake.nvmlDeviceGetFieldValues(h, ids)] == [pynvml.NVML_ERROR_NOT_SUPPORTED, 0]
    clock.advance(10)
    returns = [v.nvmlReturn for v in fake.nvmlDeviceGetFieldValues(h, ids)]
    assert returns == [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_DATA]


# ---- memory v1 and v2 --------------------------------------------------------------------
def test_memory_v2_used_excludes_reserved_and_v1_includes_it() -> None:
    fake = _fake()
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    v2 = fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    v1 = fake.nvmlDeviceGetMemoryInfo(h)
    mib = 2**20
    assert (v2.total, v2.reserved, v2.used, v2.free) == (1000 * mib, 100 * mib, 300 * mib, 600 * mib)
    assert (v1.total, v1.used, v1.free) == (1000 * mib, 400 * mib, 600 * mib)  # used = total - free
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        fake.nvmlDeviceGetMemoryInfo(h, version=0x1000018)


@pytest.mark.parametrize("extra", ['driver_version: "470.256.02"\n', "memory_info_v2: false\n"])
def test_memory_v2_is_missing_before_r510(extra: str) -> None:
    fake = _fake(extra)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert fake.nvmlDeviceGetMemoryInfo(h).used == 400 * 2**20


# ---- MIG mode changes ----------------------------------------------------------------------
def test_turning_mig_off_and_on_changes_what_is_supported() -> None:
    clock = FakeClock()
    fake, _ = _open("h100-mig", clock)
    h1 = fake.nvmlDeviceGetHandleByIndex(1)
    mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(h1, 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetUtilizationRates(h1)
    assert [p.gpuInstanceId for p in fake.nvmlDeviceGetComputeRunningProcesses(h1)] == [0]
    clock.advance(120)  # the scripted {at: 120, gpu: 1, mig: false}
    assert fake.nvmlDeviceGetMigMode(h1) == [pynvml.NVML_DEVICE_MIG_DISABLE] * 2
    assert 0 <= fake.nvmlDeviceGetUtilizationRates(h1).gpu <= 100
    assert fake.nvmlDeviceGetEncoderUtilization(h1)[0] == 0
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetMigDeviceHandleByIndex(h1, 0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetMemoryInfo(mig)  # a stale MIG handle
    assert [(p.gpuInstanceId, p.computeInstanceId) for p in fake.nvmlDeviceGetComputeRunningProcesses(h1)] == [
        (NOT_IN_INSTANCE, NOT_IN_INSTANCE)
    ]
    fake.set_mig_mode(1, True)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetDecoderUtilization(h1)
    assert fake.nvmlDeviceGetGpuInstanceId(fake.nvmlDeviceGetMigDeviceHandleByIndex(h1, 0)) == 0


def test_xid_in_a_mig_instance_names_it() -> None:
    clock = FakeClock()
    fake, h = _open("h100-mig", clock)
    events = fake.nvmlEventSetCreate()
    fake.nvmlDeviceRegisterEvents(h, pynvml.nvmlEventTypeXidCriticalError, events)
    clock.advance(30)  # the scripted {at: 30, gpu: 0, gi: 2, xid: 94}
    data = fake.nvmlEventSetWait_v2(events, 0)
    assert (data.eventData, data.gpuInstanceId, data.computeInstanceId) == (94, 2, 0)
    assert "NVRM: Xid (PCI:0000:53:00 GPU-I:02 GPU-CI:00): 94," in fake.kernel_log()[0]
    fake.inject_xid(0, 13)
    data = fake.nvmlEventSetWait_v2(events, 0)
    assert (data.eventData, data.gpuInstanceId, data.computeInstanceId) == (13, NOT_IN_INSTANCE, NOT_IN_INSTANCE)


def test_an_xid_the_event_path_misses_is_in_the_kernel_log_only() -> None:
    fake, h = _open("g5-1xa10g", FakeClock(), events=False)
    events = fake.nvmlEventSetCreate()
    fake.nvmlDeviceRegisterEvents(h, pynvml.nvmlEventTypeXidCriticalError, events)
    fake.inject_xid(0, 119, kmsg_only=True)
    with pytest.raises(pynvml.NVMLError_Timeout):
        fake.nvmlEventSetWait_v2(events, 0)
    [line] = fake.kernel_log()
    assert line.startswith("4,1,") and "NVRM: Xid (PCI:0000:00:1e): 119, " in line


def test_every_call_is_counted_per_gpu() -> None:
    fake, h = _open("p5-8xh100", FakeClock(), events=False)
    fake.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_MEMORY_TEMP, pynvml.NVML_FI_DEV_PERF_POLICY_POWER])
    fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    fake.nvmlDeviceGetComputeRunningProcesses(h)
    assert fake.calls[("nvmlDeviceGetFieldValues", 0)] == 1
    assert sum(n for (_call, gpu), n in fake.calls.items() if gpu == 0) == 3


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("gpus: [{model: h, fields: {DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL: 1}}]\n",
         "gpus[0].fields.DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"),
        ("gpus: [{model: h, field_errors: {DCGM_FI_DEV_GPU_TEMP: unknown}}]\n",
         "gpus[0].field_errors.DCGM_FI_DEV_GPU_TEMP"),
        ("gpus: [{model: h, field_errors: {DCGM_FI_DEV_POWER_VIOLATION: oops}}]\n",
         "gpus[0].field_errors.DCGM_FI_DEV_POWER_VIOLATION"),
        ("gpus: [{model: h}]\nevents: [{at: 1, gpu: 0, gi: 3, xid: 94}]\n", "events[0].gi"),
        ("gpus: [{model: h}]\nevents: [{at: 1, gpu: 0, recovery_action: 9}]\n", "events[0].recovery_action"),
        ("gpus: [{model: h}]\nprocess_query_error: oops\n", "process_query_error"),
    ],
)
def test_description_mistakes_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_description(MODEL + text, "mine.yaml")
    assert str(err.value).startswith(f"mine.yaml: {key}:")


def test_mig_mode_needs_a_mig_capable_model() -> None:
    text = "models: {a: {name: A10G, memory_mib: 1}}\ngpus: [{model: a}]\nevents: [{at: 1, gpu: 0, mig: true}]\n"
    with pytest.raises(ConfigError, match=r"events\[0\]\.mig: model a is not MIG capable"):
        parse_description(text, "mine.yaml")


def test_power_field_values_match_the_power_usage_query() -> None:
    # nvmlDeviceGetPowerUsage: 1 s average on Ampere (except GA100) and newer,
    # instantaneous on GA100 and older; the two field values carry each
    for name, average in (("p5-8xh100", True), ("p4d-8xa100-40gb", False)):
        fake = FakeNvml.from_name(name, clock=FakeClock(), events=False)
        fake.nvmlInit()
        h = fake.nvmlDeviceGetHandleByIndex(0)
        avg, inst = fake.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_POWER_AVERAGE,
                                                      pynvml.NVML_FI_DEV_POWER_INSTANT])
        assert inst.nvmlReturn == pynvml.NVML_SUCCESS
        assert inst.value.uiVal == fake.nvmlDeviceGetPowerUsage(h)
        assert (avg.nvmlReturn == pynvml.NVML_SUCCESS) is average
