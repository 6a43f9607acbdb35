"""node_exporter's diskstats collector (Linux, 1.5).

Per block device in /proc/diskstats (partitions, loop and ram devices left
out by node_exporter's default pattern): reads/writes completed and merged,
bytes (512-byte sectors), time (ms -> s), I/Os in progress, busy and
weighted time, and on kernels that have them the discard (4.18+) and flush
(5.5+) columns. From udev's database (/run/udev/data/b<major>:<minor>):
node_disk_info{model,serial,wwn,path,...}, node_disk_filesystem_info,
node_disk_device_mapper_info (LVM, e.g. ParallelCluster's /scratch on the
instance store) and, for ATA disks, write cache and rotation rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.catalogue import host as cat
from nodeagent.collectors.host._common import DeviceFilter, line_error
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, CollectorContext, register

DEFAULT_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
SECTOR_BYTES = 512.0
MS = 0.001
# scale per /proc/diskstats column after major, minor, name (see cat.DISK_STAT_SPECS)
SCALE = (1.0, 1.0, SECTOR_BYTES, MS, 1.0, 1.0, SECTOR_BYTES, MS, 1.0, MS, MS, 1.0, 1.0, 1.0, MS, 1.0, MS)
MIN_FIELDS = 14  # kernels before 4.18: major, minor, name and 11 counters


@dataclass(frozen=True)
class DiskstatsOptions:
    # regular expression (searched) of device names to leave out; "" leaves none out
    device_exclude: str = field(default=DEFAULT_DEVICE_EXCLUDE, metadata={"regex": True})
    # regular expression of device names to keep (besides device_exclude); "" keeps all
    device_include: str = field(default="", metadata={"regex": True})
    # udev's device database on the watched system (node_exporter's --path.udev.data)
    udev_data_path: str = "/run/udev/data"


def parse_diskstats(text: str, source: str = "diskstats") -> list[tuple[str, str, str, list[float]]]:
    """/proc/diskstats as (major, minor, device, counters) with counters scaled
    to node_exporter's units (bytes, seconds); as many counters as the kernel
    prints (11, 15 or 17). Lines with fewer than 14 fields are skipped, as
    procfs does; a non-numeric counter is an error."""
    disks = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) < MIN_FIELDS:
            continue
        try:
            major = str(int(parts[0]))
            minor = str(int(parts[1]))
            counters = [int(v) * s for v, s in zip(parts[3:20], SCALE, strict=False)]
        except ValueError:
            raise line_error(source, lineno, line, "non-numeric diskstats field") from None
        disks.append((major, minor, parts[2], counters))
    return disks


def parse_udev_properties(text: str) -> dict[str, str]:
    """The device properties (E:KEY=VALUE lines) of a udev database file."""
    props = {}
    for line in text.splitlines():
        if line.startswith("E:"):
            key, sep, value = line[2:].partition("=")
            if sep:
                props[key] = value
    return props


ATA_PROPERTIES = (
    ("ID_ATA_WRITE_CACHE", cat.DISK_ATA_WRITE_CACHE),
    ("ID_ATA_WRITE_CACHE_ENABLED", cat.DISK_ATA_WRITE_CACHE_ENABLED),
    ("ID_ATA_ROTATION_RATE_RPM", cat.DISK_ATA_ROTATION_RATE),
)


@register
class DiskstatsCollector(Collector):
    name = "diskstats"
    group = "host"
    description = "Block device I/O statistics from /proc/diskstats and udev device info."
    Options = DiskstatsOptions

    def __init__(self, host: Host, options: DiskstatsOptions, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self._filter = DeviceFilter(options.device_exclude, options.device_include)
        self._udev_dir = host.rooted(options.udev_data_path)

    def _udev(self, major: str, minor: str) -> dict[str, str]:
        try:
            data = self.host.read_bytes(self._udev_dir / f"b{major}:{minor}")
        except OSError:
            return {}
        return parse_udev_properties(data.decode("utf-8", "replace"))

    def collect(self) -> list[MetricFamily]:
        path = self.host.proc("diskstats")
        disks = parse_diskstats(self.host.read_text(path), str(path))
        stat_families = [spec.family() for spec in cat.DISK_STAT_SPECS]
        adders = [fam.samples.append for fam in stat_families]
        info = cat.DISK_INFO.family()
        fs_info = cat.DISK_FILESYSTEM_INFO.family()
        dm_info = cat.DISK_DEVICE_MAPPER_INFO.family()
        ata = [spec.family() for _, spec in ATA_PROPERTIES]
        for major, minor, device, counters in disks:
            if self._filter.ignored(device):
                continue
            labels = (device,)
            for add, value in zip(adders, counters, strict=False):
                add((labels, value))
            props = self._udev(major, minor)
            get = props.get
            # the serial printed on the disk label, else udev's short serial
            serial = get("SCSI_IDENT_SERIAL") or get("ID_SERIAL_SHORT", "")
            info.add(
                (device, major, minor, get("ID_MODEL", ""), get("ID_PATH", ""), get("ID_REVISION", ""),
                 serial, get("ID_WWN", "")),
                1.0,
            )
            fstype = get("ID_FS_TYPE")
            if fstype:
                fs_info.add(
                    (device, fstype, get("ID_FS_USAGE", ""), get("ID_FS_UUID", ""), get("ID_FS_VERSION", "")),
                    1.0,
                )
            dm_name = get("DM_NAME")
            if dm_name:
                dm_info.add(
                    (device, get("DM_LV_LAYER", ""), get("DM_LV_NAME", ""), dm_name, get("DM_UUID", ""),
                     get("DM_VG_NAME", "")),
                    1.0,
                )
            if get("ID_ATA"):
                for (prop, _), fam in zip(ATA_PROPERTIES, ata, strict=False):
                    raw = get(prop)
                    if raw is None:
                        continue
                    try:
                        fam.add(labels, float(raw))
                    except ValueError:
                        continue
        return [*stat_families, info, fs_info, dm_info, *ata]
