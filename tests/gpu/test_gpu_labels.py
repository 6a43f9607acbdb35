"""Label order: dcgm-exporter's, exactly."""

from __future__ import annotations

from gpu_helpers import Rig, label_names, rig_fixture, samples  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue import gpu as cat
from nodeagent.config import Config
from nodeagent.gpu.counters import parse_counters
from nodeagent.gpu.settings import GpuSettings
from nodeagent.host import Host
from nodeagent.registry import CollectorContext

CLASSIC = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")


def test_classic_label_order_on_every_dcgm_sample(rig) -> None:
    r = rig("p5-8xh100", job_attribution=False)
    r.cycle()
    r.clock.advance(5)
    r.cycle()  # GPM profiling needs two samples
    text = r.text()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE DCGM_FI_")}
    assert len(names) > 40
    for name in names:
        expected = CLASSIC + (("err_code", "err_msg") if name == "DCGM_FI_DEV_XID_ERRORS" else ())
        assert set(label_names(text, name)) == {expected}, name
    labels, value = samples(text, "DCGM_FI_DEV_GPU_TEMP")[0]
    assert labels == {
        "gpu": "0",
        "UUID": "GPU-4e34e69c-49a3-5fe9-aefd-4330ca812640",
        "pci_bus_id": "00000000:53:00.0",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "node-1",
        "DCGM_FI_DRIVER_VERSION": "570.133.20",
    }
    assert value.isdigit()


def test_emitted_labels_match_the_catalogue_for_the_default_config(rig) -> None:
    r = rig("p5-8xh100", job_attribution=False)
    r.cycle()
    for fam in r.gpu.collect():
        spec = CATALOGUE.lookup(fam.name)
        assert spec is not None and spec.type == fam.type, fam.name
        assert fam.labelnames == spec.labels, fam.name
        assert spec.group == "gpu"


def test_extra_labels_sorted_after_label_fields(rig) -> None:
    r = rig("p5-8xh100", events=False)
    r.fake.inject_xid(0, 94)
    r.cycle()
    text = r.text()
    # label fields (sorted, upper case) then exporter labels then attributes, each sorted
    assert label_names(text, "DCGM_FI_DEV_XID_ERRORS")[0] == (*CLASSIC, "err_code", "err_msg", "hpc_job")
    assert label_names(text, "DCGM_EXP_XID_ERRORS_COUNT")[0] == (*CLASSIC, "window_size_in_ms", "xid", "hpc_job")
    # no clock event in the window: dcgm-exporter writes the series without clock_event
    assert label_names(text, "DCGM_EXP_CLOCK_EVENTS_COUNT")[0] == (*CLASSIC, "window_size_in_ms", "hpc_job")
    assert label_names(text, "DCGM_FI_DEV_SM_CLOCK")[0] == (*CLASSIC, "hpc_job")
    xid = [s for s in samples(text, "DCGM_FI_DEV_XID_ERRORS") if s[0]["gpu"] == "0"]
    assert xid == [({**xid[0][0], "err_code": "94", "err_msg": "Contained ECC error", "hpc_job": "4242"}, "94")]


def test_hostname_switch_and_configured_hostname() -> None:
    cfg = Config(hostname="gpu-node-17", gpu=GpuSettings(backend="fake", fake_description="g5-1xa10g",
                                                          hostname_label="hostname", fake_events=False))
    from nodeagent.collectors.gpu.collector import GpuCollector

    collector = GpuCollector(Host(), None, CollectorContext(config=cfg))
    try:
        fams = {f.name: f for f in collector.collect()}
    finally:
        collector.close()
    temp = fams["DCGM_FI_DEV_GPU_TEMP"]
    assert temp.labelnames == ("gpu", "UUID", "pci_bus_id", "device", "modelName", "hostname",
                               "DCGM_FI_DRIVER_VERSION")
    assert temp.samples[0][0][5] == "gpu-node-17"
    assert fams["nodeagent_gpu_up"].samples[0][0][5] == "gpu-node-17"


def test_label_values_from_nvml_are_escaped(tmp_path) -> None:
    desc = tmp_path / "odd.yaml"
    desc.write_text(
        'name: odd\nmodels:\n  m: {name: "Weird \\"GPU\\"\\nModel", memory_mib: 1024}\n'
        "gpus:\n  - {model: m}\n"
    )
    r = Rig(str(desc), counters=parse_counters("DCGM_FI_DEV_FB_TOTAL, gauge, t\n"))
    try:
        r.cycle()
        line = next(x for x in r.text().splitlines() if x.startswith("DCGM_FI_DEV_FB_TOTAL{"))
    finally:
        r.close()
    assert 'modelName="Weird \\"GPU\\"\\nModel"' in line and line.endswith("} 1024")


def test_labelnames_helper_orders_like_dcgm_exporter() -> None:
    assert cat.gpu_labelnames(mig=True, label_fields=("DCGM_FI_DRIVER_VERSION", "DCGM_FI_DEV_BRAND"),
                              attributes=("hpc_job", "err_code")) == (
        "gpu", "UUID", "pci_bus_id", "device", "modelName", "GPU_I_PROFILE", "GPU_I_ID", "Hostname",
        "DCGM_FI_DEV_BRAND", "DCGM_FI_DRIVER_VERSION", "err_code", "hpc_job")
