"""Node-local checks against fixture roots: the healthy p5.48xlarge, then
one fault at a time (an XID 79 in the kernel log, the driver missing, a GPU
gone, EFA devices short or unbound, a hung or broken Lustre mount), and how
the instance type and the expected counts are found."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
from check_helpers import CHECK_FIXTURES, P5, copy_tree, make_config

from nodeagent.checks.instances import resolve_instance_type
from nodeagent.checks.node import (
    check_efa,
    check_gpu_count,
    check_lustre,
    node_checks,
    node_facts,
    parse_driver_version,
    pci_devices,
)
from nodeagent.checks.options import CheckOptions
from nodeagent.daemon import host_from_config
from nodeagent.host import Host, Roots, StatTimeout
from nodeagent.instances import INSTANCE_SHAPES


def run(tmp_path: Path, **paths: Path | str) -> dict[str, object]:
    base = {"procfs": P5 / "proc", "sysfs": P5 / "sys", "rootfs": P5 / "root", "dev": P5 / "dev"}
    base.update(paths)
    cfg, _ = make_config(tmp_path, paths={k: str(v) for k, v in base.items()})
    rows = node_checks(cfg, "compute", host_from_config(cfg), CheckOptions())
    return {r.check: r for r in rows}


def test_healthy_p5(tmp_path):
    rows = run(tmp_path)
    assert list(rows) == ["gpu count", "gpu driver", "gpu xid", "efa devices", "lustre"]
    assert all(r.status == "ok" for r in rows.values()), rows
    assert rows["gpu count"].detail == "8 of 8 GPUs seen by the driver (p5.48xlarge)"
    assert rows["gpu driver"].detail == "NVIDIA driver 550.144.03 loaded"
    # the fixture's XIDs 94 and 63 are application-level: reported, not fatal
    assert "no node-fatal XID since boot" in rows["gpu xid"].detail and "63 x1, 94 x2" in rows["gpu xid"].detail
    assert rows["efa devices"].detail == "32 of 32 EFA devices (p5.48xlarge)"
    assert rows["lustre"].detail.startswith("1 Lustre mounts answering: /fsx (")


def test_xid_79_is_node_fatal(tmp_path):
    rows = run(tmp_path, dev=CHECK_FIXTURES / "dev-xid79")
    xid = rows["gpu xid"]
    assert xid.status == "fail" and xid.fatal and not xid.ok
    assert xid.detail.startswith("XID 79 (GPU has fallen off the bus) x1 on 0000:53:00 since boot")
    assert "application-level XIDs 63 x1, 94 x2" in xid.detail
    assert xid.finding == "XID 79 GPU has fallen off the bus on 0000:53:00"
    assert "reboot" in xid.hint
    assert all(r.ok for name, r in rows.items() if name != "gpu xid")


def test_driver_missing_is_node_fatal_and_gpus_are_counted_on_the_pci_bus(tmp_path):
    sysfs = copy_tree(P5 / "sys", tmp_path / "sys")
    for i, cls in enumerate(["0x030200"] * 8 + ["0x068000"] * 4):  # 8 H100s, 4 NVSwitches
        dev = sysfs / "bus" / "pci" / "devices" / f"0000:{0x53 + i:02x}:00.0"
        dev.mkdir(parents=True)
        (dev / "vendor").write_text("0x10de\n")
        (dev / "device").write_text("0x2330\n")
        (dev / "class").write_text(cls + "\n")
    rows = run(tmp_path, procfs=CHECK_FIXTURES / "proc-no-driver", sysfs=sysfs)
    driver = rows["gpu driver"]
    assert driver.status == "fail" and driver.fatal and driver.finding == "NVIDIA driver not loaded"
    assert "8 NVIDIA GPUs on the PCI bus" in driver.detail and "modprobe nvidia" in driver.hint
    # the count comes from the PCI bus while the driver is away: NVSwitches are not GPUs
    assert rows["gpu count"].status == "ok"
    assert rows["gpu count"].detail == "8 of 8 GPUs on the PCI bus (driver not loaded) (p5.48xlarge)"


def test_gpu_missing_is_node_fatal(tmp_path):
    proc = copy_tree(P5 / "proc", tmp_path / "proc")
    shutil.rmtree(proc / "driver" / "nvidia" / "gpus" / "0000:ca:00.0")
    count = run(tmp_path, procfs=proc)["gpu count"]
    assert count.status == "fail" and count.fatal and count.finding == "7 of 8 GPUs"
    assert count.detail == "7 of 8 GPUs seen by the driver (p5.48xlarge)"


def test_expected_gpus_from_config_wins(tmp_path):
    cfg, _ = make_config(tmp_path, gpu={"expected_gpus": 4},
                         paths={"procfs": str(P5 / "proc"), "sysfs": str(P5 / "sys"), "dev": str(P5 / "dev"),
                                "rootfs": str(P5 / "root")})
    rows = {r.check: r for r in node_checks(cfg, "compute", host_from_config(cfg), CheckOptions())}
    assert rows["gpu count"].status == "warn"
    assert rows["gpu count"].detail == "8 GPUs seen by the driver, 4 expected (gpu.expected_gpus)"


def test_unknown_instance_without_gpus_skips(tmp_path):
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    rows = run(tmp_path, procfs=CHECK_FIXTURES / "proc-no-driver", sysfs=sysfs)
    assert rows["gpu count"].status == rows["gpu driver"].status == rows["efa devices"].status == "skip"
    assert "set gpu.expected_gpus" in rows["gpu count"].detail


def _efa_sysfs(tmp_path: Path, bound: int, attached: int, itype: str = "p5.48xlarge") -> Host:
    sysfs = tmp_path / "sys"
    (sysfs / "devices/virtual/dmi/id").mkdir(parents=True)
    (sysfs / "devices/virtual/dmi/id/product_name").write_text(itype + "\n")
    for i in range(bound):
        dev = sysfs / "class" / "infiniband" / f"rdmap{i}s27" / "device"
        dev.mkdir(parents=True)
        os.symlink("../../../../bus/pci/drivers/efa", dev / "driver")
    mlx = sysfs / "class" / "infiniband" / "mlx5_0" / "device"  # not EFA: never counted
    mlx.mkdir(parents=True)
    os.symlink("../../../../bus/pci/drivers/mlx5_core", mlx / "driver")
    for i in range(attached):
        pci = sysfs / "bus" / "pci" / "devices" / f"0000:{0x10 + i:02x}:00.0"
        pci.mkdir(parents=True)
        (pci / "vendor").write_text("0x1d0f\n")
        (pci / "device").write_text("0xefa1\n")
        (pci / "class").write_text("0x020000\n")
    ena = sysfs / "bus" / "pci" / "devices" / "0000:05:00.0"  # ENA: Amazon, but not EFA
    ena.mkdir(parents=True)
    (ena / "vendor").write_text("0x1d0f\n")
    (ena / "device").write_text("0xec20\n")
    return Host(Roots(sysfs=str(sysfs), procfs=str(tmp_path / "noproc")))


@pytest.mark.parametrize(
    ("bound", "attached", "itype", "status", "detail"),
    [
        (32, 32, "p5.48xlarge", "ok", "32 of 32 EFA devices (p5.48xlarge)"),
        (31, 31, "p5.48xlarge", "fail", "31 of 32 EFA devices (p5.48xlarge)"),
        (30, 32, "p5.48xlarge", "fail", "30 of 32 attached EFA devices are usable (no RDMA device for the others)"),
        (0, 0, "p5.48xlarge", "warn", "no EFA devices; p5.48xlarge supports 32"),
        (4, 4, "p4d.24xlarge", "ok", "4 of 4 EFA devices (p4d.24xlarge)"),
        (16, 16, "p5en.48xlarge", "ok", "16 of 16 EFA devices (p5en.48xlarge)"),
        (0, 0, "g5.2xlarge", "skip", "no EFA devices; none expected (g5.2xlarge)"),
        (2, 2, "m7i.large", "ok", "2 EFA devices (m7i.large: no expected count known)"),
    ],
)
def test_efa(tmp_path, bound, attached, itype, status, detail):
    host = _efa_sysfs(tmp_path, bound, attached, itype)
    cfg, _ = make_config(tmp_path)
    row = check_efa(host, node_facts(cfg, host), pci_devices(host))
    assert (row.status, row.detail) == (status, detail)
    assert row.fatal == (status == "fail")


def test_the_shape_table_covers_the_issue_types():
    for itype in ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge",
                  "g5.48xlarge", "g6.48xlarge", "g6e.48xlarge"):
        assert INSTANCE_SHAPES[itype].gpus == 8 and INSTANCE_SHAPES[itype].efa >= 1
    assert INSTANCE_SHAPES["p5.48xlarge"].efa == 32 and INSTANCE_SHAPES["p5en.48xlarge"].efa == 16
    assert INSTANCE_SHAPES["p4d.24xlarge"].efa == 4 and INSTANCE_SHAPES["g6e.48xlarge"].efa == 4


def _p6_b300_host(tmp_path: Path) -> Host:
    """A p6-b300.48xlarge with its driver, 8 GPUs and 16 bound EFA devices.
    The type used to be in the EFA table only: the GPU check expected none."""
    host = _efa_sysfs(tmp_path, 16, 16, "p6-b300.48xlarge")
    gpus = tmp_path / "proc" / "driver" / "nvidia" / "gpus"
    for i in range(8):
        (gpus / f"0000:{0x10 + i:02x}:00.0").mkdir(parents=True)
    (tmp_path / "proc" / "driver" / "nvidia" / "version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build\n")
    return Host(Roots(sysfs=host.roots.sysfs, procfs=str(tmp_path / "proc")))


def test_gpu_and_efa_checks_read_one_table(tmp_path):
    host = _p6_b300_host(tmp_path)
    cfg, _ = make_config(tmp_path)
    facts = node_facts(cfg, host)
    pci = pci_devices(host)
    assert check_gpu_count(cfg, host, facts, pci).detail == "8 of 8 GPUs seen by the driver (p6-b300.48xlarge)"
    assert check_efa(host, facts, pci).detail == "16 of 16 EFA devices (p6-b300.48xlarge)"


class _StuckHost(Host):
    def statvfs(self, mountpoint: str, timeout: float) -> os.statvfs_result:
        raise StatTimeout(f"statfs of {mountpoint} timed out after {timeout:g}s")


def test_lustre_hung_or_broken_is_node_fatal(tmp_path):
    roots = Roots(procfs=str(P5 / "proc"), rootfs=str(P5 / "root"))
    row = check_lustre(CheckOptions(lustre_timeout=0.5), _StuckHost(roots))
    assert row.status == "fail" and row.fatal and row.finding == "Lustre /fsx hung"
    assert row.detail == "Lustre /fsx not answering: statfs of /fsx timed out after 0.5s"
    # the mount point is gone under the root: statfs fails
    row = check_lustre(CheckOptions(), Host(Roots(procfs=str(P5 / "proc"), rootfs=str(tmp_path))))
    assert row.status == "fail" and row.fatal and row.finding == "Lustre /fsx failing"
    assert "No such file or directory" in row.detail


def test_lustre_absent_and_other_roles(tmp_path):
    proc = tmp_path / "proc" / "1"
    proc.mkdir(parents=True)
    (proc / "mounts").write_text("/dev/root / ext4 rw 0 0\n")
    assert check_lustre(CheckOptions(), Host(Roots(procfs=str(tmp_path / "proc")))).status == "skip"
    cfg, _ = make_config(tmp_path, paths={"procfs": str(P5 / "proc"), "rootfs": str(P5 / "root")})
    # head and login nodes mount FSx too; the GPU checks are compute only
    assert [r.check for r in node_checks(cfg, "head", host_from_config(cfg), CheckOptions())] == ["lustre"]


def test_driver_version_texts():
    proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
    assert parse_driver_version(proprietary) == "535.183.01"
    assert parse_driver_version((P5 / "proc/driver/nvidia/version").read_text()) == "550.144.03"
    assert parse_driver_version("garbage") is None


class _Imds(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        body = b"token-123"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        token = self.headers.get("X-aws-ec2-metadata-token")
        ok = self.path == "/latest/meta-data/instance-type" and token == "token-123"
        body = b"p4d.24xlarge" if ok else b""
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_instance_type_from_dmi_else_instance_metadata(tmp_path):
    sysfs = tmp_path / "sys" / "devices/virtual/dmi/id"
    sysfs.mkdir(parents=True)
    (sysfs / "product_name").write_text("HVM domU\n")  # a Xen instance: not an instance type
    host = Host(Roots(sysfs=str(tmp_path / "sys")))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Imds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        assert resolve_instance_type(host, endpoint, 1.0) == ("p4d.24xlarge", "imds")
        assert resolve_instance_type(host, None, 1.0) == ("HVM domU", "dmi")
        assert resolve_instance_type(Host(Roots(sysfs=str(P5 / "sys"))), endpoint, 1.0) == ("p5.48xlarge", "dmi")
    finally:
        server.shutdown()
        server.server_close()


def test_every_lustre_mount_is_reported(tmp_path):
    proc = tmp_path / "proc" / "1"
    proc.mkdir(parents=True)
    (proc / "mounts").write_text(
        "10.0.0.5@tcp:/a /fsx lustre rw 0 0\n"
        "10.0.0.6@tcp:/b /scratch lustre rw 0 0\n"
        "10.0.0.7@tcp:/c /home lustre rw 0 0\n"
    )
    root = tmp_path / "root"
    (root / "fsx").mkdir(parents=True)

    class _Host(Host):
        def statvfs(self, mountpoint: str, timeout: float) -> os.statvfs_result:
            if mountpoint == "/scratch":
                raise StatTimeout(f"statfs of {mountpoint} timed out after {timeout:g}s")
            return super().statvfs(mountpoint, timeout)

    row = check_lustre(CheckOptions(lustre_timeout=1), _Host(Roots(procfs=str(tmp_path / "proc"), rootfs=str(root))))
    assert row.status == "fail" and row.fatal
    assert row.finding == "Lustre /home failing, Lustre /scratch hung"
    assert "Lustre /scratch not answering" in row.detail and "answering: /fsx (" in row.detail
