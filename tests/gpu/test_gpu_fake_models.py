"""The shipped descriptions report what the driver reports on those GPUs
(public `nvidia-smi -q` outputs cited in the YAML files), in DCGM's units."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest

from nodeagent.gpu.fake import FakeClock, FakeNvml

ALL_LINKS = 0xFFFFFFFF
# what the sampler asks for in one nvmlDeviceGetFieldValues per GPU per cycle
SAMPLER_FIELDS: list[Any] = [
    pynvml.NVML_FI_DEV_MEMORY_TEMP,
    pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
    pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER,
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
    pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL,
    pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL,
    pynvml.NVML_FI_DEV_RETIRED_SBE,
    pynvml.NVML_FI_DEV_RETIRED_DBE,
    pynvml.NVML_FI_DEV_RETIRED_PENDING,
    pynvml.NVML_FI_DEV_REMAPPED_COR,
    pynvml.NVML_FI_DEV_REMAPPED_UNC,
    pynvml.NVML_FI_DEV_REMAPPED_FAILURE,
    pynvml.NVML_FI_DEV_PERF_POLICY_POWER,
    pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL,
    pynvml.NVML_FI_DEV_PERF_POLICY_SYNC_BOOST,
    pynvml.NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT,
    pynvml.NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION,
    pynvml.NVML_FI_DEV_PERF_POLICY_RELIABILITY,
    pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION,
    (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS),
    (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ALL_LINKS),
]
RETIRED = {pynvml.NVML_FI_DEV_RETIRED_SBE, pynvml.NVML_FI_DEV_RETIRED_DBE, pynvml.NVML_FI_DEV_RETIRED_PENDING}
NVLINK = {
    pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
}


def _open(name: str, clock: FakeClock | None = None, events: bool = False) -> tuple[FakeNvml, Any]:
    fake = FakeNvml.from_name(name, clock=clock or FakeClock(), events=events)
    fake.nvmlInit()
    return fake, fake.nvmlDeviceGetHandleByIndex(0)


def _returns(fake: FakeNvml, handle: Any) -> dict[int, int]:
    values = fake.nvmlDeviceGetFieldValues(handle, SAMPLER_FIELDS)
    return {values[i].fieldId: values[i].nvmlReturn for i in range(len(SAMPLER_FIELDS))}


def _not_supported(fake: FakeNvml, handle: Any) -> set[int]:
    return {fid for fid, ret in _returns(fake, handle).items() if ret == pynvml.NVML_ERROR_NOT_SUPPORTED}


@pytest.mark.parametrize("name", ["p5-8xh100", "p4d-8xa100-40gb"])
def test_a100_and_h100_report_encoder_utilisation_zero(name: str) -> None:
    fake, h = _open(name)
    assert fake.nvmlDeviceGetEncoderUtilization(h)[0] == 0
    assert fake.nvmlDeviceGetDecoderUtilization(h)[0] == 0


@pytest.mark.parametrize("name", ["p5-8xh100", "p4d-8xa100-40gb", "g5-1xa10g"])
def test_ampere_and_hopper_remap_rows_and_retire_no_pages(name: str) -> None:
    fake, h = _open(name)
    assert fake.nvmlDeviceGetRemappedRows(h) == (0, 0, 0, 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetRetiredPages(h, pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetRetiredPagesPendingStatus(h)
    assert _not_supported(fake, h) >= RETIRED
    remapped = {pynvml.NVML_FI_DEV_REMAPPED_COR, pynvml.NVML_FI_DEV_REMAPPED_UNC, pynvml.NVML_FI_DEV_REMAPPED_FAILURE}
    assert not remapped & _not_supported(fake, h)


def test_h100_answers_every_sampler_field_but_retired_pages() -> None:
    fake, h = _open("p5-8xh100")
    assert _not_supported(fake, h) == RETIRED
    assert all(ret == pynvml.NVML_SUCCESS for fid, ret in _returns(fake, h).items() if fid not in RETIRED)


def test_a10g_has_ecc_but_no_nvlink_memory_temperature_mig_or_gpm() -> None:
    fake, h = _open("g5-1xa10g")
    missing = _not_supported(fake, h)
    assert missing == RETIRED | NVLINK | {pynvml.NVML_FI_DEV_MEMORY_TEMP, pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION}
    assert fake.nvmlDeviceGetTotalEccErrors(h, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC) == 0
    assert fake.nvmlDeviceGetEncoderUtilization(h)[0] >= 0  # NVENC: supported
    assert fake.nvmlGpmQueryDeviceSupport(h).isSupportedDevice == 0
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetMigMode(h)


def test_a100_has_nvlink_but_no_gpm_and_no_recovery_action_on_r535() -> None:
    fake, h = _open("p4d-8xa100-40gb")
    assert fake.nvmlGpmQueryDeviceSupport(h).isSupportedDevice == 0
    missing = _not_supported(fake, h)
    assert not NVLINK & missing
    assert pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION in missing  # R565 and newer
    assert fake.nvmlDeviceGetMigMode(h) == [0, 0]


def test_field_values_carry_ids_scopes_types_and_timestamps() -> None:
    clock = FakeClock(5000.0)
    fake, h = _open("p5-8xh100", clock)
    values = fake.nvmlDeviceGetFieldValues(h, SAMPLER_FIELDS)
    by_id = {values[i].fieldId: values[i] for i in range(len(SAMPLER_FIELDS))}
    assert by_id[pynvml.NVML_FI_DEV_MEMORY_TEMP].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
    assert 36 <= by_id[pynvml.NVML_FI_DEV_MEMORY_TEMP].value.uiVal <= 52
    energy = by_id[pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION]
    assert energy.valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    assert energy.value.ullVal == fake.nvmlDeviceGetTotalEnergyConsumption(h)  # mJ, both ways
    assert by_id[pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX].scopeId == ALL_LINKS
    assert by_id[pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL].scopeId == 0
    assert {values[i].timestamp for i in range(len(SAMPLER_FIELDS))} == {5_000_000_000}  # µs


def test_violations_are_nanoseconds_in_field_values_and_violation_status() -> None:
    clock = FakeClock()
    fake, h = _open("p5-8xh100", clock)
    clock.advance(10)
    [fv] = fake.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_PERF_POLICY_POWER])
    assert fv.valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    assert fv.value.ullVal == 120_000_000  # 12 ms of power capping per second, for 10 s
    assert fake.nvmlDeviceGetViolationStatus(h, pynvml.NVML_PERF_POLICY_POWER).violationTime == fv.value.ullVal


def test_nvlink_throughput_is_cumulative_kib_over_all_links() -> None:
    clock = FakeClock()
    fake, h = _open("p5-8xh100", clock)
    request = [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS),
               (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ALL_LINKS)]  # fmt: skip

    def total() -> int:
        tx, rx = fake.nvmlDeviceGetFieldValues(h, request)
        assert tx.nvmlReturn == rx.nvmlReturn == pynvml.NVML_SUCCESS
        return int(tx.value.ullVal + rx.value.ullVal)

    first = total()
    assert first == 912_345_678
    clock.advance(2)
    assert total() - first == 2 * 25_000_000  # KiB/s, TX + RX
    link0, link18 = fake.nvmlDeviceGetFieldValues(
        h, [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0), (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 18)]
    )
    assert link0.value.ullVal == (456_000_000 + 2 * 12_600_000) // 18  # one of 18 links
    assert link18.nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT  # H100 has links 0..17


def test_recovery_action_changes_with_xid_154_on_r570() -> None:
    clock = FakeClock()
    fake = FakeNvml.from_name("p5-8xh100", clock=clock)
    fake.nvmlInit()
    h1 = fake.nvmlDeviceGetHandleByIndex(1)
    events = fake.nvmlEventSetCreate()
    fake.nvmlDeviceRegisterEvents(h1, pynvml.nvmlEventTypeXidCriticalError, events)

    def action() -> int:
        [fv] = fake.nvmlDeviceGetFieldValues(h1, [pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION])
        assert fv.nvmlReturn == pynvml.NVML_SUCCESS and fv.valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
        return int(fv.value.uiVal)

    assert action() == pynvml.NVML_GPU_RECOVERY_ACTION_NONE
    clock.advance(70)
    assert action() == pynvml.NVML_GPU_RECOVERY_ACTION_GPU_RESET
    assert fake.nvmlEventSetWait_v2(events, 0).eventData == 154


def test_mig_parent_reports_no_utilisation_and_instances_their_memory() -> None:
    fake, h = _open("h100-mig")
    for call in (fake.nvmlDeviceGetUtilizationRates, fake.nvmlDeviceGetEncoderUtilization,
                 fake.nvmlDeviceGetDecoderUtilization):  # fmt: skip
        with pytest.raises(pynvml.NVMLError_NotSupported):
            call(h)
    mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    assert fake.nvmlDeviceGetGpuInstanceId(mig) == 2
    mem = fake.nvmlDeviceGetMemoryInfo(mig, version=pynvml.nvmlMemory_v2)
    assert mem.total == 40448 * 2**20 and mem.used == 30112 * 2**20  # the process in instance 2
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetUtilizationRates(mig)
    # device-level field values are not per instance: every entry NOT_SUPPORTED
    values = fake.nvmlDeviceGetFieldValues(mig, SAMPLER_FIELDS)
    assert {values[i].nvmlReturn for i in range(len(SAMPLER_FIELDS))} == {pynvml.NVML_ERROR_NOT_SUPPORTED}
    assert fake.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_MEMORY_TEMP])[0].nvmlReturn == pynvml.NVML_SUCCESS


def test_gpm_per_gpu_instance_on_hopper() -> None:
    fake, h = _open("h100-mig")
    samples = [fake.nvmlGpmSampleAlloc() for _ in range(2)]
    for sample in samples:
        fake.nvmlGpmMigSampleGet(h, 9, sample)
    request = pynvml.c_nvmlGpmMetricsGet_t()
    request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
    request.numMetrics = 1
    request.sample1, request.sample2 = samples
    request.metrics[0].metricId = pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL
    result = fake.nvmlGpmMetricsGet(request)
    assert result.metrics[0].nvmlReturn == pynvml.NVML_SUCCESS and result.metrics[0].value == 0.0  # instance 9 idles
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlGpmMigSampleGet(h, 5, samples[0])
