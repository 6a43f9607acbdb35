"""node_exporter-compatible host metrics (port 9100).

Names, types, help texts and label names are node_exporter 1.5's. Label names
are listed in the order node_exporter writes them (sorted), so our exposition
compares series by series against it.
"""

from nodeagent.catalogue.spec import MetricSpec, counter, gauge, untyped

# ---- loadavg ---------------------------------------------------------------
NODE_LOAD1 = gauge("node_load1", "1m load average.", collector="loadavg")
NODE_LOAD5 = gauge("node_load5", "5m load average.", collector="loadavg")
NODE_LOAD15 = gauge("node_load15", "15m load average.", collector="loadavg")

# ---- cpu (/proc/stat, /sys/devices/system/cpu) -----------------------------
CPU_SECONDS = counter(
    "node_cpu_seconds_total",
    "Seconds the CPUs spent in each mode.",
    collector="cpu",
    labels=("cpu", "mode"),
    unit="seconds",
)
CPU_GUEST_SECONDS = counter(
    "node_cpu_guest_seconds_total",
    "Seconds the CPUs spent in guests (VMs) for each mode.",
    collector="cpu",
    labels=("cpu", "mode"),
    unit="seconds",
)
CPU_ISOLATED = gauge(
    "node_cpu_isolated",
    "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.",
    collector="cpu",
    labels=("cpu",),
)
CPU_CORE_THROTTLES = counter(
    "node_cpu_core_throttles_total",
    "Number of times this CPU core has been throttled.",
    collector="cpu",
    labels=("core", "package"),
)
CPU_PACKAGE_THROTTLES = counter(
    "node_cpu_package_throttles_total",
    "Number of times this CPU package has been throttled.",
    collector="cpu",
    labels=("package",),
)

# ---- cpufreq (/sys/devices/system/cpu/cpu*/cpufreq) ------------------------
CPU_FREQUENCY = gauge(
    "node_cpu_frequency_hertz",
    "Current cpu thread frequency in hertz.",
    collector="cpufreq",
    labels=("cpu",),
    unit="hertz",
)
CPU_FREQUENCY_MIN = gauge(
    "node_cpu_frequency_min_hertz",
    "Minimum cpu thread frequency in hertz.",
    collector="cpufreq",
    labels=("cpu",),
    unit="hertz",
)
CPU_FREQUENCY_MAX = gauge(
    "node_cpu_frequency_max_hertz",
    "Maximum cpu thread frequency in hertz.",
    collector="cpufreq",
    labels=("cpu",),
    unit="hertz",
)
CPU_SCALING_FREQUENCY = gauge(
    "node_cpu_scaling_frequency_hertz",
    "Current scaled CPU thread frequency in hertz.",
    collector="cpufreq",
    labels=("cpu",),
    unit="hertz",
)
CPU_SCALING_FREQUENCY_MIN = gauge(
    "node_cpu_scaling_frequency_min_hertz",
    "Minimum scaled CPU thread frequency in hertz.",
    collector="cpufreq",
    labels=("cpu",),
    unit="hertz",
)
CPU_SCALING_FREQUENCY_MAX = gauge(
    "node_cpu_scaling_frequency_max_hertz",
    "Maximum scaled CPU thread frequency in hertz.",
    collector="cpufreq",
    labels=("cpu",),
    unit="hertz",
)

# ---- meminfo (/proc/meminfo) -----------------------------------------------
# One family per /proc/meminfo line; "Active(anon)" becomes "Active_anon".
# Lines with a kB unit are converted to bytes and get the _bytes suffix.
MEMORY_BYTES = gauge(
    "node_memory_{field}_bytes",
    "Memory information field {field}_bytes.",
    collector="meminfo",
    unit="bytes",
)
MEMORY = gauge(
    "node_memory_{field}",
    "Memory information field {field}.",
    collector="meminfo",
)

# ---- stat (/proc/stat) -----------------------------------------------------
BOOT_TIME = gauge(
    "node_boot_time_seconds", "Node boot time, in unixtime.", collector="stat", unit="seconds"
)
CONTEXT_SWITCHES = counter("node_context_switches_total", "Total number of context switches.", collector="stat")
FORKS = counter("node_forks_total", "Total number of forks.", collector="stat")
INTR = counter("node_intr_total", "Total number of interrupts serviced.", collector="stat")
PROCS_RUNNING = gauge("node_procs_running", "Number of processes in runnable state.", collector="stat")
PROCS_BLOCKED = gauge(
    "node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", collector="stat"
)

# ---- filesystem (/proc/1/mounts + statfs) ----------------------------------
_FS_LABELS = ("device", "fstype", "mountpoint")
FILESYSTEM_SIZE = gauge(
    "node_filesystem_size_bytes",
    "Filesystem size in bytes.",
    collector="filesystem",
    labels=_FS_LABELS,
    unit="bytes",
)
FILESYSTEM_FREE = gauge(
    "node_filesystem_free_bytes",
    "Filesystem free space in bytes.",
    collector="filesystem",
    labels=_FS_LABELS,
    unit="bytes",
)
FILESYSTEM_AVAIL = gauge(
    "node_filesystem_avail_bytes",
    "Filesystem space available to non-root users in bytes.",
    collector="filesystem",
    labels=_FS_LABELS,
    unit="bytes",
)
FILESYSTEM_FILES = gauge(
    "node_filesystem_files", "Filesystem total file nodes.", collector="filesystem", labels=_FS_LABELS
)
FILESYSTEM_FILES_FREE = gauge(
    "node_filesystem_files_free",
    "Filesystem total free file nodes.",
    collector="filesystem",
    labels=_FS_LABELS,
)
FILESYSTEM_READONLY = gauge(
    "node_filesystem_readonly", "Filesystem read-only status.", collector="filesystem", labels=_FS_LABELS
)
FILESYSTEM_DEVICE_ERROR = gauge(
    "node_filesystem_device_error",
    "Whether an error occurred while getting statistics for the given device.",
    collector="filesystem",
    labels=_FS_LABELS,
)

# ---- diskstats (/proc/diskstats, udev data) --------------------------------
_DISK = ("device",)
DISK_READS_COMPLETED = counter(
    "node_disk_reads_completed_total",
    "The total number of reads completed successfully.",
    collector="diskstats",
    labels=_DISK,
)
DISK_READS_MERGED = counter(
    "node_disk_reads_merged_total", "The total number of reads merged.", collector="diskstats", labels=_DISK
)
DISK_READ_BYTES = counter(
    "node_disk_read_bytes_total",
    "The total number of bytes read successfully.",
    collector="diskstats",
    labels=_DISK,
    unit="bytes",
)
DISK_READ_TIME = counter(
    "node_disk_read_time_seconds_total",
    "The total number of seconds spent by all reads.",
    collector="diskstats",
    labels=_DISK,
    unit="seconds",
)
DISK_WRITES_COMPLETED = counter(
    "node_disk_writes_completed_total",
    "The total number of writes completed successfully.",
    collector="diskstats",
    labels=_DISK,
)
DISK_WRITES_MERGED = counter(
    "node_disk_writes_merged_total", "The number of writes merged.", collector="diskstats", labels=_DISK
)
DISK_WRITTEN_BYTES = counter(
    "node_disk_written_bytes_total",
    "The total number of bytes written successfully.",
    collector="diskstats",
    labels=_DISK,
    unit="bytes",
)
DISK_WRITE_TIME = counter(
    "node_disk_write_time_seconds_total",
    "This is the total number of seconds spent by all writes.",
    collector="diskstats",
    labels=_DISK,
    unit="seconds",
)
DISK_IO_NOW = gauge(
    "node_disk_io_now", "The number of I/Os currently in progress.", collector="diskstats", labels=_DISK
)
DISK_IO_TIME = counter(
    "node_disk_io_time_seconds_total",
    "Total seconds spent doing I/Os.",
    collector="diskstats",
    labels=_DISK,
    unit="seconds",
)
DISK_IO_TIME_WEIGHTED = counter(
    "node_disk_io_time_weighted_seconds_total",
    "The weighted # of seconds spent doing I/Os.",
    collector="diskstats",
    labels=_DISK,
    unit="seconds",
)
DISK_DISCARDS_COMPLETED = counter(
    "node_disk_discards_completed_total",
    "The total number of discards completed successfully.",
    collector="diskstats",
    labels=_DISK,
)
DISK_DISCARDS_MERGED = counter(
    "node_disk_discards_merged_total",
    "The total number of discards merged.",
    collector="diskstats",
    labels=_DISK,
)
DISK_DISCARDED_SECTORS = counter(
    "node_disk_discarded_sectors_total",
    "The total number of sectors discarded successfully.",
    collector="diskstats",
    labels=_DISK,
)
DISK_DISCARD_TIME = counter(
    "node_disk_discard_time_seconds_total",
    "This is the total number of seconds spent by all discards.",
    collector="diskstats",
    labels=_DISK,
    unit="seconds",
)
DISK_FLUSH_REQUESTS = counter(
    "node_disk_flush_requests_total",
    "The total number of flush requests completed successfully",
    collector="diskstats",
    labels=_DISK,
)
DISK_FLUSH_REQUESTS_TIME = counter(
    "node_disk_flush_requests_time_seconds_total",
    "This is the total number of seconds spent by all flush requests.",
    collector="diskstats",
    labels=_DISK,
    unit="seconds",
)
# The /proc/diskstats columns after major, minor and name, in order.
DISK_STAT_SPECS = (
    DISK_READS_COMPLETED,
    DISK_READS_MERGED,
    DISK_READ_BYTES,
    DISK_READ_TIME,
    DISK_WRITES_COMPLETED,
    DISK_WRITES_MERGED,
    DISK_WRITTEN_BYTES,
    DISK_WRITE_TIME,
    DISK_IO_NOW,
    DISK_IO_TIME,
    DISK_IO_TIME_WEIGHTED,
    DISK_DISCARDS_COMPLETED,
    DISK_DISCARDS_MERGED,
    DISK_DISCARDED_SECTORS,
    DISK_DISCARD_TIME,
    DISK_FLUSH_REQUESTS,
    DISK_FLUSH_REQUESTS_TIME,
)
DISK_INFO = gauge(
    "node_disk_info",
    "Info of /sys/block/<block_device>.",
    collector="diskstats",
    labels=("device", "major", "minor", "model", "path", "revision", "serial", "wwn"),
)
DISK_FILESYSTEM_INFO = gauge(
    "node_disk_filesystem_info",
    "Info about disk filesystem.",
    collector="diskstats",
    labels=("device", "type", "usage", "uuid", "version"),
)
DISK_DEVICE_MAPPER_INFO = gauge(
    "node_disk_device_mapper_info",
    "Info about disk device mapper.",
    collector="diskstats",
    labels=("device", "lv_layer", "lv_name", "name", "uuid", "vg_name"),
)
DISK_ATA_WRITE_CACHE = gauge(
    "node_disk_ata_write_cache", "ATA disk has a write cache.", collector="diskstats", labels=_DISK
)
DISK_ATA_WRITE_CACHE_ENABLED = gauge(
    "node_disk_ata_write_cache_enabled",
    "ATA disk has its write cache enabled.",
    collector="diskstats",
    labels=_DISK,
)
DISK_ATA_ROTATION_RATE = gauge(
    "node_disk_ata_rotation_rate_rpm",
    "ATA disk rotation rate in RPMs (0 for SSDs).",
    collector="diskstats",
    labels=_DISK,
)

# ---- netdev (/proc/net/dev) ------------------------------------------------
# /proc/net/dev columns (receive then transmit), in file order, as node_exporter
# names them; receive_nohandler comes from sysfs statistics/rx_nohandler, the
# one counter node_exporter's default netlink source adds.
NETDEV_FIELDS = (
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
)


def _netdev_counter(field: str) -> MetricSpec:
    return counter(
        f"node_network_{field}_total",
        f"Network device statistic {field}.",
        collector="netdev",
        labels=("device",),
        unit="bytes" if field.endswith("_bytes") else "",
    )


NETDEV_SPECS = tuple(_netdev_counter(f) for f in NETDEV_FIELDS)
NETDEV_RECEIVE_NOHANDLER = _netdev_counter("receive_nohandler")

# ---- netclass (/sys/class/net/<iface>) -------------------------------------
NETWORK_UP = gauge(
    "node_network_up",
    "Value is 1 if operstate is 'up', 0 otherwise.",
    collector="netclass",
    labels=("device",),
)
NETWORK_INFO = gauge(
    "node_network_info",
    "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
    collector="netclass",
    labels=("address", "broadcast", "device", "duplex", "ifalias", "operstate"),
)
# (metric suffix, sysfs attribute, is counter), in node_exporter's order.
NETCLASS_PROPERTIES = (
    ("address_assign_type", "addr_assign_type", False),
    ("carrier", "carrier", False),
    ("carrier_changes_total", "carrier_changes", True),
    ("carrier_up_changes_total", "carrier_up_count", True),
    ("carrier_down_changes_total", "carrier_down_count", True),
    ("device_id", "dev_id", False),
    ("dormant", "dormant", False),
    ("flags", "flags", False),
    ("iface_id", "ifindex", False),
    ("iface_link", "iflink", False),
    ("iface_link_mode", "link_mode", False),
    ("mtu_bytes", "mtu", False),
    ("name_assign_type", "name_assign_type", False),
    ("net_dev_group", "netdev_group", False),
    ("speed_bytes", "speed", False),
    ("transmit_queue_length", "tx_queue_len", False),
    ("protocol_type", "type", False),
)
NETCLASS_SPECS = {
    name: (counter if is_counter else gauge)(
        f"node_network_{name}",
        f"Network device property: {name}",
        collector="netclass",
        labels=("device",),
        unit="bytes" if name.endswith("_bytes") else "",
    )
    for name, _attr, is_counter in NETCLASS_PROPERTIES
}

# ---- netstat (/proc/net/netstat, snmp, snmp6) ------------------------------
NETSTAT = untyped("node_netstat_{field}", "Statistic {stat}.", collector="netstat")

# ---- sockstat (/proc/net/sockstat, sockstat6) ------------------------------
SOCKSTAT_SOCKETS_USED = gauge(
    "node_sockstat_sockets_used", "Number of IPv4 sockets in use.", collector="sockstat"
)
SOCKSTAT = gauge(
    "node_sockstat_{field}", "Number of {protocol} sockets in state {state}.", collector="sockstat"
)

# ---- vmstat (/proc/vmstat) -------------------------------------------------
VMSTAT = untyped("node_vmstat_{field}", "/proc/vmstat information field {field}.", collector="vmstat")
