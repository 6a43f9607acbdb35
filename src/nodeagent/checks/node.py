"""Node-local health: what makes a node fit or unfit for jobs.

compute: GPU count as expected for the instance type, NVIDIA driver loaded,
no node-fatal XID since boot, EFA devices as expected; every role: Lustre
mounts answering. These are the checks `--slurm-health` runs, and every
failure here is node-fatal (the node is drained); situations that only
deserve a look (more GPUs than expected, no EFA attached at all, kernel log
unreadable) are warnings.

GPUs are counted from the driver's own list (procfs driver/nvidia/gpus/), or,
while the driver is not loaded, from NVIDIA display/3D controllers on the PCI
bus (sysfs), so no NVML call is needed and a wedged GPU cannot hang the
check. EFA devices are RDMA devices (sysfs class/infiniband) bound to the efa
driver; the EFA functions on the PCI bus (Amazon, device 0xefaN) tell a
driver problem from an interface that was never attached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodeagent.checks.instances import resolve_instance_type
from nodeagent.checks.kernel_log import node_fatal_meaning, read_kernel_log, summarize
from nodeagent.checks.kernel_log import parse_xids as parse_xid_events
from nodeagent.checks.options import CheckOptions
from nodeagent.checks.result import CheckRow, fail, ok, skip, timed, warn
from nodeagent.collectors.host.efa import is_efa
from nodeagent.collectors.host.filesystem import parse_mounts
from nodeagent.config import Config
from nodeagent.host import Host, StatTimeout
from nodeagent.instances import expected_efa, expected_gpus

NVIDIA_VENDOR = "0x10de"
# PCI classes of GPUs: VGA controller (0x0300xx) and 3D controller (0x0302xx);
# NVSwitches (0x0680xx, bridge) are left out
GPU_CLASSES = ("0x0300", "0x0302")
AMAZON_VENDOR = "0x1d0f"
EFA_DEVICE_ID = re.compile(r"^0xefa[0-9a-f]$")
_DRIVER_VERSION = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class NodeFacts:
    instance_type: str | None
    instance_source: str
    systemd_running: bool

    def itype(self) -> str:
        return self.instance_type or "unknown instance type"


def systemd_running(host: Host) -> bool:
    return host.exists(host.rooted("/run/systemd/system"))


def node_facts(cfg: Config, host: Host) -> NodeFacts:
    cw = cfg.cloudwatch
    itype, source = resolve_instance_type(host, cw.imds_endpoint if cw.imds else None, cw.imds_timeout)
    return NodeFacts(itype, source, systemd_running(host))


def parse_driver_version(text: str) -> str | None:
    """The version from procfs driver/nvidia/version ("NVRM version: NVIDIA
    UNIX x86_64 Kernel Module  550.144.03  ..." or the open module's
    "... Open Kernel Module for x86_64  550.144.03 ...")."""
    m = _DRIVER_VERSION.search(text)
    return m.group(1) if m else None


def pci_devices(host: Host) -> list[dict[str, str | None]]:
    base = host.sys("bus", "pci", "devices")
    return [host.read_attrs(base / name, ("vendor", "device", "class")) for name in host.listdir(base)]


def count_pci_gpus(devices: list[dict[str, str | None]]) -> int:
    return sum(
        1 for d in devices if d["vendor"] == NVIDIA_VENDOR and (d["class"] or "").startswith(GPU_CLASSES)
    )


def count_pci_efa(devices: list[dict[str, str | None]]) -> int:
    return sum(1 for d in devices if d["vendor"] == AMAZON_VENDOR and EFA_DEVICE_ID.match(d["device"] or ""))


def driver_loaded(host: Host) -> str | None:
    """The driver's version text when the nvidia module is loaded, else None."""
    return host.read_optional(host.proc("driver", "nvidia", "version"))


# ---- the checks -------------------------------------------------------------------
def check_gpu_count(cfg: Config, host: Host, facts: NodeFacts, pci: list[dict[str, str | None]]) -> CheckRow:
    name = "gpu count"
    expected = expected_gpus(host, cfg.gpu.expected_gpus, facts.instance_type or "")
    source = "gpu.expected_gpus" if cfg.gpu.expected_gpus is not None else facts.itype()
    if driver_loaded(host) is not None:
        present = len(host.listdir(host.proc("driver", "nvidia", "gpus")))
        seen = "seen by the driver"
    else:
        present = count_pci_gpus(pci)
        seen = "on the PCI bus (driver not loaded)"
    if expected == 0:
        if present:
            return warn(name, f"{present} GPUs {seen}, none expected ({source})",
                        "set gpu.expected_gpus so a missing GPU is noticed")
        return skip(name, f"no GPUs expected ({source}); set gpu.expected_gpus on GPU nodes of unknown types")
    if present < expected:
        return fail(
            name,
            f"{present} of {expected} GPUs {seen} ({source})",
            "a GPU is missing: `nvidia-smi -L`, `dmesg | grep -i nvrm`; reboot, and replace the instance if it stays",
            fatal=True,
            finding=f"{present} of {expected} GPUs",
        )
    if present > expected:
        return warn(name, f"{present} GPUs {seen}, {expected} expected ({source})",
                    "set gpu.expected_gpus to this node's GPU count")
    return ok(name, f"{present} of {expected} GPUs {seen} ({source})")


def check_driver(cfg: Config, host: Host, facts: NodeFacts, pci: list[dict[str, str | None]]) -> CheckRow:
    name = "gpu driver"
    text = driver_loaded(host)
    if text is not None:
        version = parse_driver_version(text)
        return ok(name, f"NVIDIA driver {version or '(unknown version)'} loaded")
    expected = expected_gpus(host, cfg.gpu.expected_gpus, facts.instance_type or "")
    on_bus = count_pci_gpus(pci)
    if expected == 0 and on_bus == 0:
        return skip(name, "no GPUs expected or present: no driver needed")
    return fail(
        name,
        f"NVIDIA driver not loaded ({host.proc('driver', 'nvidia', 'version')} missing; "
        f"{on_bus} NVIDIA GPUs on the PCI bus)",
        "`modprobe nvidia` and `dmesg | grep -i nvrm`: the driver must match the running kernel (DKMS)",
        fatal=True,
        finding="NVIDIA driver not loaded",
    )


def check_xid(options: CheckOptions, host: Host, facts: NodeFacts) -> CheckRow:
    name = "gpu xid"
    log = read_kernel_log(host, options.journalctl, facts.systemd_running, options.command_timeout)
    if not log.sources:
        return warn(name, f"cannot read the kernel log ({'; '.join(log.problems)}): XIDs not checked",
                    "run `nodeagent check` as root (the kernel log needs CAP_SYSLOG)")
    summary = summarize(parse_xid_events(log.text))
    source = " + ".join(log.sources)
    others = ", ".join(f"{x} x{summary.counts[x]}" for x in summary.other)
    fatal = summary.node_fatal
    if fatal:
        parts = []
        for x in fatal:
            devices = ", ".join(summary.devices[x][:4])
            parts.append(f"XID {x} ({node_fatal_meaning(x)}) x{summary.counts[x]} on {devices}")
        first = fatal[0]
        finding = f"XID {first} {node_fatal_meaning(first)} on {summary.devices[first][0]}"
        detail = "; ".join(parts) + f" since boot ({source})"
        if others:
            detail += f"; also application-level XIDs {others}"
        return fail(
            name,
            detail,
            "node-fatal XID: drain the node and reboot it; replace the instance if it comes back",
            fatal=True,
            finding=finding,
        )
    gap = "" if log.complete else " (the ring buffer wrapped: the start of the boot is not covered)"
    if others:
        return ok(name, f"no node-fatal XID since boot ({source}){gap}; application-level XIDs: {others}")
    return ok(name, f"no XID since boot ({source}){gap}")


def check_efa(host: Host, facts: NodeFacts, pci: list[dict[str, str | None]]) -> CheckRow:
    name = "efa devices"
    base = host.sys("class", "infiniband")
    bound = [d for d in host.listdir(base) if is_efa(d, host.readlink(base / d / "device" / "driver"))]
    attached = count_pci_efa(pci)
    expected = expected_efa(facts.instance_type)
    have = len(bound)
    if attached > have:
        return fail(
            name,
            f"{have} of {attached} attached EFA devices are usable (no RDMA device for the others)",
            "the efa driver is missing or failed: `modprobe efa`, `dmesg | grep -i efa`; rerun the EFA installer",
            fatal=True,
            finding=f"{have} of {attached} EFA devices",
        )
    if expected is None:
        if have == 0 and attached == 0:
            return skip(name, f"no EFA devices; none expected ({facts.itype()})")
        return ok(name, f"{have} EFA devices ({facts.itype()}: no expected count known)")
    if have == 0 and attached == 0:
        return warn(
            name,
            f"no EFA devices; {facts.instance_type} supports {expected}",
            "enable EFA for this queue (ComputeResources: Efa: Enabled: true) if its jobs need it",
        )
    if have < expected:
        return fail(
            name,
            f"{have} of {expected} EFA devices ({facts.instance_type})",
            "an EFA interface is missing: `fi_info -p efa`, `ls /sys/class/infiniband`; "
            "replace the instance if a reboot does not bring it back",
            fatal=True,
            finding=f"{have} of {expected} EFA devices",
        )
    return ok(name, f"{have} of {expected} EFA devices ({facts.instance_type})")


def lustre_mountpoints(host: Host) -> list[str]:
    for path in (host.proc("1", "mounts"), host.proc("mounts")):
        text = host.read_optional(path)
        if text is not None:
            return sorted({m.mountpoint for m in parse_mounts(text, str(path)) if m.fstype == "lustre"})
    return []


def check_lustre(options: CheckOptions, host: Host) -> CheckRow:
    name = "lustre"
    mounts = lustre_mountpoints(host)
    if not mounts:
        return skip(name, "no Lustre mounts")
    answering: list[str] = []
    broken: list[tuple[str, str, str]] = []  # (finding, detail, hint)
    for mp in mounts:
        try:
            st = host.statvfs(mp, options.lustre_timeout)
        except StatTimeout as e:
            broken.append((f"Lustre {mp} hung", f"Lustre {mp} not answering: {e}",
                           "check the file system (FSx console) and the path to it: `lctl ping` the MGS, "
                           "security group port 988; jobs touching it hang"))
            continue
        except OSError as e:
            broken.append((f"Lustre {mp} failing", f"Lustre {mp}: statfs failed: {e.strerror or e}",
                           "remount it (`umount -l`, `mount -a`) and check `dmesg | grep -i lustre`"))
            continue
        used = 100.0 * (1 - st.f_bavail / st.f_blocks) if st.f_blocks else 0.0
        answering.append(f"{mp} ({used:.0f}% used)")
    if broken:
        detail = "; ".join(b[1] for b in broken)
        if answering:
            detail += f"; answering: {', '.join(answering)}"
        return fail(name, detail, broken[0][2], fatal=True, finding=", ".join(b[0] for b in broken))
    return ok(name, f"{len(answering)} Lustre mounts answering: {', '.join(answering)}")


def node_checks(cfg: Config, role: str, host: Host, options: CheckOptions) -> list[CheckRow]:
    """The node-local checks of a role, in a fixed order."""
    rows: list[CheckRow] = []
    if role == "compute":
        facts = node_facts(cfg, host)
        pci = pci_devices(host)
        rows.append(timed("gpu count", lambda: check_gpu_count(cfg, host, facts, pci)))
        rows.append(timed("gpu driver", lambda: check_driver(cfg, host, facts, pci)))
        rows.append(timed("gpu xid", lambda: check_xid(options, host, facts)))
        rows.append(timed("efa devices", lambda: check_efa(host, facts, pci)))
    rows.append(timed("lustre", lambda: check_lustre(options, host)))
    return rows
