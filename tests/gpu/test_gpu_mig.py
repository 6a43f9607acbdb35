"""MIG: per GPU-instance series with GPU_I_PROFILE and GPU_I_ID."""

from __future__ import annotations

from gpu_helpers import PROC, Rig, label_names, rig_fixture, samples  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.host import Host, Roots

MIG_ORDER = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "GPU_I_PROFILE", "GPU_I_ID", "Hostname",
             "DCGM_FI_DRIVER_VERSION", "hpc_job")


def _mig_rig(rig) -> Rig:  # type: ignore[no-untyped-def]
    r = rig("h100-mig")
    r.cycle()
    r.clock.advance(5)
    r.cycle()
    return r


def test_instances_carry_gpu_i_labels_in_dcgm_exporter_order(rig) -> None:
    text = _mig_rig(rig).text()
    # hpc_job only on the instances that run a job
    assert set(label_names(text, "DCGM_FI_DEV_FB_USED")) == {MIG_ORDER, MIG_ORDER[:-1]}
    instances = [(labels["gpu"], labels["GPU_I_PROFILE"], labels["GPU_I_ID"])
                 for labels, _ in samples(text, "DCGM_FI_DEV_FB_USED")]
    assert instances == [("0", "3g.40gb", "2"), ("0", "2g.20gb", "3"), ("0", "1g.10gb", "9"), ("1", "7g.80gb", "0")]


def test_framebuffer_and_profiling_are_per_instance_device_fields_repeat(rig) -> None:
    text = _mig_rig(rig).text()
    fb = {labels["GPU_I_ID"]: v for labels, v in samples(text, "DCGM_FI_DEV_FB_USED") if labels["gpu"] == "0"}
    assert fb == {"2": "30112", "3": "12288", "9": "0"}
    total = {labels["GPU_I_ID"]: v for labels, v in samples(text, "DCGM_FI_DEV_FB_TOTAL") if labels["gpu"] == "0"}
    assert total == {"2": "40448", "3": "20096", "9": "9856"}
    gr = {labels["GPU_I_ID"]: v for labels, v in samples(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
          if labels["gpu"] == "0"}
    assert gr["9"] == "0.000000" and len(set(gr.values())) == 3  # GPM per instance
    temps = {v for labels, v in samples(text, "DCGM_FI_DEV_GPU_TEMP") if labels["gpu"] == "0"}
    assert len(temps) == 1  # the GPU's temperature, once per instance
    assert not samples(text, "DCGM_FI_DEV_GPU_UTIL")  # not available with MIG


def test_jobs_per_instance_from_processes_and_mapping_files(rig, tmp_path) -> None:
    (tmp_path / "map").mkdir()
    (tmp_path / "map" / "0.9").write_text("7777\n")
    host = Host(Roots(procfs=str(PROC), sysfs=str(tmp_path / "sys"), rootfs=str(tmp_path), dev=str(tmp_path)))
    r = rig("h100-mig", host=host, hpc_job_mapping_dir="/map")
    r.cycle()
    jobs = {(labels["gpu"], labels["GPU_I_ID"]): labels["hpc_job"]
            for labels, _ in samples(r.text(), "DCGM_FI_DEV_FB_USED")}
    assert jobs == {("0", "2"): "6001", ("0", "3"): "6002", ("0", "9"): "7777", ("1", "0"): "6003"}


def test_mixed_node_leaves_the_mig_labels_off_whole_gpus(tmp_path) -> None:
    desc = tmp_path / "mixed.yaml"
    desc.write_text(
        "name: mixed\nmodels:\n  h100: {name: NVIDIA H100 80GB HBM3, memory_mib: 81559, mig_capable: true,\n"
        "    fields: {DCGM_FI_DEV_GPU_TEMP: 40}}\n"
        "gpus:\n  - model: h100\n    mig: [{gi_id: 1, profile: 4g.40gb, memory_mib: 40448}]\n  - model: h100\n"
    )
    r = Rig(str(desc))
    try:
        r.cycle()
        text = r.text()
    finally:
        r.close()
    temp = samples(text, "DCGM_FI_DEV_GPU_TEMP")
    got = [(lb["gpu"], lb.get("GPU_I_PROFILE"), lb.get("GPU_I_ID")) for lb, _ in temp]
    # dcgm-exporter writes GPU_I_PROFILE and GPU_I_ID only on MIG instance series
    # (internal/pkg/rendermetrics/render_metrics.go), never as empty labels
    assert got == [("0", "4g.40gb", "1"), ("1", None, None)]
    assert 'GPU_I_ID=""' not in text and 'hpc_job=""' not in text


def test_mig_layout_is_discovered_without_extra_calls_each_cycle(rig) -> None:
    r = _mig_rig(rig)
    for _ in range(3):
        r.cycle()
    assert r.fake.calls[("nvmlDeviceGetMigDeviceHandleByIndex", 0)] == 7  # once, at start


def test_fields_dcgm_does_not_report_per_instance_are_not_invented(rig) -> None:
    text = _mig_rig(rig).text()
    # NVML answers NOT_SUPPORTED for utilisation in MIG mode; remapped rows,
    # PCIe and NVLink traffic are the whole board's: none of them on instance series
    for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL",
                 "DCGM_FI_DEV_DEC_UTIL", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "DCGM_FI_PROF_PCIE_TX_BYTES",
                 "DCGM_FI_PROF_NVLINK_RX_BYTES"):
        assert not samples(text, name), name
    # device-wide readings repeat on every instance; profiling is each instance's own
    assert len(samples(text, "DCGM_FI_DEV_GPU_TEMP")) == 4
    sm = {lb["GPU_I_ID"]: v for lb, v in samples(text, "DCGM_FI_PROF_SM_ACTIVE") if lb["gpu"] == "0"}
    assert set(sm) == {"2", "3", "9"}


def test_leaving_mig_mode_brings_the_whole_gpu_fields_back(rig) -> None:
    r = _mig_rig(rig)
    assert not [lb for lb, _ in samples(r.text(), "DCGM_FI_DEV_GPU_UTIL") if lb["gpu"] == "1"]
    r.fake.set_mig_mode(1, False)
    r.clock.advance(61)  # the MIG layout is looked at again every minute
    r.cycle()
    r.clock.advance(5)
    r.cycle()
    text = r.text()
    # utilisation was NOT_SUPPORTED under MIG: asked again once MIG mode changed
    util = [lb for lb, _ in samples(text, "DCGM_FI_DEV_GPU_UTIL") if lb["gpu"] == "1"]
    assert len(util) == 1 and "GPU_I_ID" not in util[0]
