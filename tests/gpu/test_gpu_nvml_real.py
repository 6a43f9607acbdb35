"""Against a real NVIDIA driver (marker `nvml`; skipped where nvmlInit fails).

Run on a GPU node:  python -m pytest -m nvml tests/gpu -v -s
They check what the fake cannot: that the real pynvml answers the calls the
sampler makes, in the units and formats the fake imitates, and that the
values agree with nvidia-smi.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pynvml
import pytest
from gpu_helpers import fixture_host, samples
from prometheus_client.parser import text_string_to_metric_families

from nodeagent.collectors.gpu.sampler import Sampler
from nodeagent.exposition import render
from nodeagent.gpu.backend import open_backend
from nodeagent.gpu.nvml import nvml_available
from nodeagent.gpu.settings import GpuSettings

pytestmark = [
    pytest.mark.nvml,
    pytest.mark.skipif(not nvml_available(), reason="no NVIDIA driver here (nvmlInit failed)"),
]


@pytest.fixture
def real_sampler():  # type: ignore[no-untyped-def]
    settings = GpuSettings(backend="nvml", process_metrics=True)
    sampler = Sampler(settings, fixture_host(), "gpu-test", backend=open_backend(settings), threads=False)
    yield sampler
    sampler.close()


def _cycles(sampler: Sampler, n: int = 2, gap: float = 1.0):  # type: ignore[no-untyped-def]
    snap = None
    for i in range(n):
        if i:
            time.sleep(gap)
        snap = sampler.run_cycle()
    assert snap is not None
    return snap


def test_every_gpu_is_sampled_with_identity_and_core_fields(real_sampler) -> None:
    snap = _cycles(real_sampler)
    pynvml.nvmlInit()
    try:
        count = pynvml.nvmlDeviceGetCount()
        driver = pynvml.nvmlSystemGetDriverVersion()
    finally:
        pynvml.nvmlShutdown()
    assert snap.present == count and count > 0
    text = render(snap.families).decode()
    for gpu in snap.gpus:
        assert gpu.up, gpu.reason
        assert gpu.uuid.startswith("GPU-")
        assert re.fullmatch(r"[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-9A-F]", gpu.pci_bus_id), gpu.pci_bus_id
        for field in ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED",
                      "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"):
            assert field in gpu.values or gpu.mig, (gpu.index, field)
    labels, _ = samples(text, "DCGM_FI_DEV_GPU_TEMP")[0]
    assert labels["DCGM_FI_DRIVER_VERSION"] == (driver.decode() if isinstance(driver, bytes) else driver)
    assert list(text_string_to_metric_families(text))
    print(f"\nreal NVML: {count} GPU(s) {snap.gpus[0].model}, driver {labels['DCGM_FI_DRIVER_VERSION']}, "
          f"{len(snap.families)} families, cycle {snap.duration * 1000:.2f} ms, "
          f"NVML {snap.nvml_seconds * 1000:.2f} ms in {snap.nvml_calls} calls")


def test_units_agree_with_nvidia_smi(real_sampler) -> None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("nvidia-smi not installed")
    snap = _cycles(real_sampler, 1)
    out = subprocess.run(
        [smi, "--query-gpu=index,uuid,pci.bus_id,name,memory.total,power.limit", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    by_index = {g.index: g for g in snap.gpus}
    for line in out.strip().splitlines():
        index, uuid, bus, name, total, limit = (x.strip() for x in line.split(","))
        gpu = by_index[int(index)]
        assert gpu.uuid == uuid and gpu.model == name
        assert gpu.pci_bus_id.upper() == bus.upper()
        if "DCGM_FI_DEV_FB_TOTAL" in gpu.values:
            assert abs(int(gpu.values["DCGM_FI_DEV_FB_TOTAL"]) - int(float(total))) <= 1
        if "DCGM_FI_DEV_POWER_MGMT_LIMIT" in gpu.values and limit not in ("[N/A]", "N/A"):
            assert abs(float(gpu.values["DCGM_FI_DEV_POWER_MGMT_LIMIT"]) - float(limit)) < 1.0


def test_unsupported_fields_are_asked_once(real_sampler) -> None:
    _cycles(real_sampler, 1)
    remembered = {k: set(v) for k, v in real_sampler._unsupported.items()}
    calls_first = real_sampler.total_calls
    _cycles(real_sampler, 1)
    calls_second = real_sampler.total_calls - calls_first
    _cycles(real_sampler, 1)
    calls_third = real_sampler.total_calls - calls_first - calls_second
    assert {k: set(v) for k, v in real_sampler._unsupported.items()} == remembered
    assert calls_third <= calls_second  # nothing unsupported is retried


def test_xid_events_can_be_registered(real_sampler) -> None:
    _cycles(real_sampler, 1)
    # NVML event sets need root on some drivers; the sampler must cope either way
    assert real_sampler._event_set is not None or real_sampler.status().snapshot is not None


def test_hopper_and_newer_have_profiling(real_sampler) -> None:
    snap = _cycles(real_sampler, 2)
    hopper = [g for g in snap.gpus if re.search(r"H100|H200|H800|GH200|B200|B100", g.model)]
    if not hopper:
        pytest.skip("no Hopper or newer GPU")
    assert snap.profiling in ("gpm", "dcgm")
    for gpu in hopper:
        if not gpu.mig:
            assert "DCGM_FI_PROF_SM_ACTIVE" in gpu.values, gpu.index
