"""Field values as DCGM serves them, read through the sampler from the fake driver."""

from __future__ import annotations

from collections import Counter

import pynvml
from gpu_helpers import rig_fixture, samples, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.gpu.counters import parse_counters


def test_violation_times_are_nanoseconds_as_nvml_reports_them(rig) -> None:
    r = rig("p5-8xh100")
    r.cycle()
    h = r.fake.nvmlDeviceGetHandleByIndex(0)
    (fv,) = r.fake.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_PERF_POLICY_POWER])
    served = value(r.text(), "DCGM_FI_DEV_POWER_VIOLATION", gpu="0")
    assert served is not None and int(served) == fv.value.ullVal  # unscaled (was divided by 1000)


def test_nvlink_bandwidth_total_is_dcgms_rate_not_the_counter(rig) -> None:
    r = rig("p5-8xh100")
    r.cycle()
    assert value(r.text(), "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", gpu="0") == "0"  # first sample
    r.clock.advance(10)
    r.cycle()
    # p5-8xh100: TX 12,600,000 + RX 12,400,000 KiB/s; DCGM divides KiB/s by 1000
    assert value(r.text(), "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", gpu="0") == "25000"


def test_fb_used_leaves_out_reserved_memory_whatever_the_counters_file_lists(rig) -> None:
    rows = parse_counters("DCGM_FI_DEV_FB_USED, gauge, used\nDCGM_FI_DEV_FB_FREE, gauge, free\n")
    r = rig("p5-8xh100", counters=rows)
    r.cycle()
    text = r.text()
    h = r.fake.nvmlDeviceGetHandleByIndex(0)
    mem = r.fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert value(text, "DCGM_FI_DEV_FB_USED", gpu="0") == str(mem.used // (1 << 20))
    v1 = r.fake.nvmlDeviceGetMemoryInfo(h)
    assert v1.used > mem.used  # v1's "used" counts the reserved memory


def test_one_field_value_call_per_gpu_per_cycle_and_the_rest_of_the_ledger(rig) -> None:
    r = rig("p5-8xh100")
    for _ in range(3):  # t = 0, 5, 10
        r.cycle()
        r.clock.advance(5)
    before = Counter(r.fake.calls)
    cycles = 12  # t = 15 ... 70: every cadence comes round
    for _ in range(cycles):
        r.cycle()
        r.clock.advance(5)
    calls = Counter({(name, gpu): n - before[(name, gpu)] for (name, gpu), n in r.fake.calls.items()})
    per_cycle = {name: n / cycles for (name, gpu), n in calls.items() if gpu == 3 and n}
    # what one H100 costs per cycle: ECC, retired pages, violations, remapped rows,
    # energy, PCIe replays, NVLink, memory temperature, power and the recovery
    # action all come from the one field-value call; encoder and decoder every
    # 30 s (dcgm-exporter's collect interval), the process list every 15 s, the
    # power limit, vGPU licence and MIG layout every minute
    assert per_cycle == {
        "nvmlDeviceGetClockInfo": 2, "nvmlDeviceGetTemperature": 1, "nvmlDeviceGetUtilizationRates": 1,
        "nvmlDeviceGetMemoryInfo": 1, "nvmlDeviceGetFieldValues": 1, "nvmlDeviceGetCurrentClocksEventReasons": 1,
        "nvmlGpmSampleGet": 1,
        "nvmlDeviceGetEncoderUtilization": 2 / 12, "nvmlDeviceGetDecoderUtilization": 2 / 12,
        "nvmlDeviceGetComputeRunningProcesses": 4 / 12,
        "nvmlDeviceGetPowerManagementLimit": 1 / 12, "nvmlDeviceGetGridLicensableFeatures": 1 / 12,
        "nvmlDeviceGetMigMode": 1 / 12,  # an administrator may change the MIG layout: looked at every minute
    }
    # GPM's metrics call names no GPU: one per GPU per cycle as well
    assert calls[("nvmlGpmMetricsGet", None)] == 8 * cycles
    total = sum(n for (_name, gpu), n in calls.items() if gpu is not None or _name == "nvmlGpmMetricsGet")
    assert total / cycles / 8 <= 10  # issue 9's target: at most 10 NVML calls per GPU per cycle
