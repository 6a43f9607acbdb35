"""node_exporter-compatible host metrics, part 2 (port 9100), and the GPU-node
extras: EFA / InfiniBand counters and the FSx for Lustre client.

Names, types, label names and help texts are node_exporter 1.5.0's, checked
against its output. Label names of each family are listed in alphabetical
order because client_golang writes them sorted; keeping the same order lets
our text be compared series by series with node_exporter's (values of a
million or more are written without client_golang's exponent form).
"""

from nodeagent.catalogue.spec import MetricSpec, counter, gauge

# ---- pressure (PSI, /proc/pressure) ------------------------------------------
NODE_PRESSURE_CPU_WAITING = counter(
    "node_pressure_cpu_waiting_seconds_total",
    "Total time in seconds that processes have waited for CPU time",
    collector="pressure",
    unit="seconds",
)
# node_exporter >= 1.7 reports the "full" line of cpu (kernel >= 5.13); 1.5 does not.
NODE_PRESSURE_CPU_STALLED = counter(
    "node_pressure_cpu_stalled_seconds_total",
    "Total time in seconds no process could make progress due to CPU congestion",
    collector="pressure",
    unit="seconds",
)
NODE_PRESSURE_IO_WAITING = counter(
    "node_pressure_io_waiting_seconds_total",
    "Total time in seconds that processes have waited due to IO congestion",
    collector="pressure",
    unit="seconds",
)
NODE_PRESSURE_IO_STALLED = counter(
    "node_pressure_io_stalled_seconds_total",
    "Total time in seconds no process could make progress due to IO congestion",
    collector="pressure",
    unit="seconds",
)
NODE_PRESSURE_MEMORY_WAITING = counter(
    "node_pressure_memory_waiting_seconds_total",
    "Total time in seconds that processes have waited for memory",
    collector="pressure",
    unit="seconds",
)
NODE_PRESSURE_MEMORY_STALLED = counter(
    "node_pressure_memory_stalled_seconds_total",
    "Total time in seconds no process could make progress due to memory congestion",
    collector="pressure",
    unit="seconds",
)

# ---- filefd ---------------------------------------------------------------------
NODE_FILEFD_ALLOCATED = gauge(
    "node_filefd_allocated", "File descriptor statistics: allocated.", collector="filefd"
)
NODE_FILEFD_MAXIMUM = gauge("node_filefd_maximum", "File descriptor statistics: maximum.", collector="filefd")

# ---- entropy --------------------------------------------------------------------
NODE_ENTROPY_AVAILABLE_BITS = gauge(
    "node_entropy_available_bits", "Bits of available entropy.", collector="entropy", unit="bits"
)
NODE_ENTROPY_POOL_SIZE_BITS = gauge(
    "node_entropy_pool_size_bits", "Bits of entropy pool.", collector="entropy", unit="bits"
)

# ---- arp --------------------------------------------------------------------------
NODE_ARP_ENTRIES = gauge("node_arp_entries", "ARP entries by device", collector="arp", labels=("device",))

# ---- softnet ------------------------------------------------------------------------
NODE_SOFTNET_PROCESSED = counter(
    "node_softnet_processed_total", "Number of processed packets", collector="softnet", labels=("cpu",)
)
NODE_SOFTNET_DROPPED = counter(
    "node_softnet_dropped_total", "Number of dropped packets", collector="softnet", labels=("cpu",)
)
NODE_SOFTNET_TIMES_SQUEEZED = counter(
    "node_softnet_times_squeezed_total",
    "Number of times processing packets ran out of quota",
    collector="softnet",
    labels=("cpu",),
)

# ---- schedstat -------------------------------------------------------------------------
NODE_SCHEDSTAT_RUNNING = counter(
    "node_schedstat_running_seconds_total",
    "Number of seconds CPU spent running a process.",
    collector="schedstat",
    labels=("cpu",),
    unit="seconds",
)
NODE_SCHEDSTAT_WAITING = counter(
    "node_schedstat_waiting_seconds_total",
    "Number of seconds spent by processing waiting for this CPU.",
    collector="schedstat",
    labels=("cpu",),
    unit="seconds",
)
NODE_SCHEDSTAT_TIMESLICES = counter(
    "node_schedstat_timeslices_total",
    "Number of timeslices executed by CPU.",
    collector="schedstat",
    labels=("cpu",),
)

# ---- conntrack ----------------------------------------------------------------------------
NODE_NF_CONNTRACK_ENTRIES = gauge(
    "node_nf_conntrack_entries",
    "Number of currently allocated flow entries for connection tracking.",
    collector="conntrack",
)
NODE_NF_CONNTRACK_ENTRIES_LIMIT = gauge(
    "node_nf_conntrack_entries_limit", "Maximum size of connection tracking table.", collector="conntrack"
)
# (field of /proc/net/stat/nf_conntrack, spec); node_exporter 1.5 types them as gauges.
NODE_NF_CONNTRACK_STATS = (
    ("found", gauge("node_nf_conntrack_stat_found", "Number of searched entries which were successful.",
                    collector="conntrack")),
    ("invalid", gauge("node_nf_conntrack_stat_invalid", "Number of packets seen which can not be tracked.",
                      collector="conntrack")),
    ("ignore", gauge("node_nf_conntrack_stat_ignore",
                     "Number of packets seen which are already connected to a conntrack entry.",
                     collector="conntrack")),
    ("insert", gauge("node_nf_conntrack_stat_insert", "Number of entries inserted into the list.",
                     collector="conntrack")),
    ("insert_failed", gauge("node_nf_conntrack_stat_insert_failed",
                            "Number of entries for which list insertion was attempted but failed.",
                            collector="conntrack")),
    ("drop", gauge("node_nf_conntrack_stat_drop", "Number of packets dropped due to conntrack failure.",
                   collector="conntrack")),
    ("early_drop", gauge("node_nf_conntrack_stat_early_drop",
                         "Number of dropped conntrack entries to make room for new ones, if maximum table "
                         "size was reached.",
                         collector="conntrack")),
    ("search_restart", gauge("node_nf_conntrack_stat_search_restart",
                             "Number of conntrack table lookups which had to be restarted due to hashtable "
                             "resizes.",
                             collector="conntrack")),
)  # fmt: skip

# ---- time ------------------------------------------------------------------------------------
NODE_TIME_SECONDS = gauge(
    "node_time_seconds", "System time in seconds since epoch (1970).", collector="time", unit="seconds"
)
NODE_TIME_ZONE_OFFSET_SECONDS = gauge(
    "node_time_zone_offset_seconds",
    "System time zone offset in seconds.",
    collector="time",
    labels=("time_zone",),
    unit="seconds",
)
NODE_TIME_CLOCKSOURCE_AVAILABLE_INFO = gauge(
    "node_time_clocksource_available_info",
    "Available clocksources read from '/sys/devices/system/clocksource'.",
    collector="time",
    labels=("clocksource", "device"),
)
NODE_TIME_CLOCKSOURCE_CURRENT_INFO = gauge(
    "node_time_clocksource_current_info",
    "Current clocksource read from '/sys/devices/system/clocksource'.",
    collector="time",
    labels=("clocksource", "device"),
)

# ---- timex (adjtimex(2)) ------------------------------------------------------------------------
NODE_TIMEX_OFFSET_SECONDS = gauge(
    "node_timex_offset_seconds", "Time offset in between local system and reference clock.", collector="timex"
)
NODE_TIMEX_FREQUENCY_ADJUSTMENT_RATIO = gauge(
    "node_timex_frequency_adjustment_ratio", "Local clock frequency adjustment.", collector="timex"
)
NODE_TIMEX_MAXERROR_SECONDS = gauge(
    "node_timex_maxerror_seconds", "Maximum error in seconds.", collector="timex"
)
NODE_TIMEX_ESTIMATED_ERROR_SECONDS = gauge(
    "node_timex_estimated_error_seconds", "Estimated error in seconds.", collector="timex"
)
NODE_TIMEX_STATUS = gauge("node_timex_status", "Value of the status array bits.", collector="timex")
NODE_TIMEX_LOOP_TIME_CONSTANT = gauge(
    "node_timex_loop_time_constant", "Phase-locked loop time constant.", collector="timex"
)
NODE_TIMEX_TICK_SECONDS = gauge("node_timex_tick_seconds", "Seconds between clock ticks.", collector="timex")
NODE_TIMEX_PPS_FREQUENCY_HERTZ = gauge(
    "node_timex_pps_frequency_hertz", "Pulse per second frequency.", collector="timex"
)
NODE_TIMEX_PPS_JITTER_SECONDS = gauge(
    "node_timex_pps_jitter_seconds", "Pulse per second jitter.", collector="timex"
)
NODE_TIMEX_PPS_SHIFT_SECONDS = gauge(
    "node_timex_pps_shift_seconds", "Pulse per second interval duration.", collector="timex"
)
NODE_TIMEX_PPS_STABILITY_HERTZ = gauge(
    "node_timex_pps_stability_hertz",
    "Pulse per second stability, average of recent frequency changes.",
    collector="timex",
)
NODE_TIMEX_PPS_JITTER_TOTAL = counter(
    "node_timex_pps_jitter_total", "Pulse per second count of jitter limit exceeded events.", collector="timex"
)
NODE_TIMEX_PPS_CALIBRATION_TOTAL = counter(
    "node_timex_pps_calibration_total", "Pulse per second count of calibration intervals.", collector="timex"
)
NODE_TIMEX_PPS_ERROR_TOTAL = counter(
    "node_timex_pps_error_total", "Pulse per second count of calibration errors.", collector="timex"
)
NODE_TIMEX_PPS_STABILITY_EXCEEDED_TOTAL = counter(
    "node_timex_pps_stability_exceeded_total",
    "Pulse per second count of stability limit exceeded events.",
    collector="timex",
)
NODE_TIMEX_TAI_OFFSET_SECONDS = gauge(
    "node_timex_tai_offset_seconds", "International Atomic Time (TAI) offset.", collector="timex"
)
NODE_TIMEX_SYNC_STATUS = gauge(
    "node_timex_sync_status",
    "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
    collector="timex",
)

# ---- uname -------------------------------------------------------------------------------------
NODE_UNAME_INFO = gauge(
    "node_uname_info",
    "Labeled system information as provided by the uname system call.",
    collector="uname",
    labels=("domainname", "machine", "nodename", "release", "sysname", "version"),
)

# ---- os (os-release) ---------------------------------------------------------------------------
NODE_OS_INFO = gauge(
    "node_os_info",
    "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, "
    "name, pretty_name, variant, variant_id, version, version_codename, version_id.",
    collector="os",
    labels=("build_id", "id", "id_like", "image_id", "image_version", "name", "pretty_name", "variant",
            "variant_id", "version", "version_codename", "version_id"),
)  # fmt: skip
NODE_OS_VERSION = gauge(
    "node_os_version",
    "Metric containing the major.minor part of the OS version.",
    collector="os",
    labels=("id", "id_like", "name"),
)

# ---- hwmon -------------------------------------------------------------------------------------
# Most hwmon names come from the sensor files (node_hwmon_<type>[_<element>]<unit>); the collector
# writes the help text node_exporter writes for each, the spec holds the name pattern and labels.
NODE_HWMON_CHIP_NAMES = gauge(
    "node_hwmon_chip_names",
    "Annotation metric for human-readable chip names",
    collector="hwmon",
    labels=("chip", "chip_name"),
)
NODE_HWMON_SENSOR_LABEL = gauge(
    "node_hwmon_sensor_label",
    "Label for given chip and sensor",
    collector="hwmon",
    labels=("chip", "label", "sensor"),
)
NODE_HWMON_BEEP_ENABLED = gauge(
    "node_hwmon_beep_enabled", "Hardware beep enabled", collector="hwmon", labels=("chip", "sensor")
)
NODE_HWMON_VOLTAGE_REGULATOR_VERSION = gauge(
    "node_hwmon_voltage_regulator_version",
    "Hardware voltage regulator",
    collector="hwmon",
    labels=("chip", "sensor"),
)
NODE_HWMON_UPDATE_INTERVAL_SECONDS = gauge(
    "node_hwmon_update_interval_seconds",
    "Hardware monitor update interval",
    collector="hwmon",
    labels=("chip", "sensor"),
)
NODE_HWMON_ENERGY = counter(
    "node_hwmon_{field}_joule_total",
    "Hardware monitor for joules used so far ({field})",
    collector="hwmon",
    labels=("chip", "sensor"),
)
NODE_HWMON_SENSOR = gauge(
    "node_hwmon_{field}",
    "Hardware monitor sensor value ({field}), e.g. node_hwmon_temp_celsius, node_hwmon_fan_rpm.",
    collector="hwmon",
    labels=("chip", "sensor"),
)

# ---- textfile ----------------------------------------------------------------------------------
# The families read from *.prom files keep their own names, types, help and labels; they are
# the user's, not the catalogue's. Only the collector's own two families are declared.
NODE_TEXTFILE_MTIME_SECONDS = gauge(
    "node_textfile_mtime_seconds",
    "Unixtime mtime of textfiles successfully read.",
    collector="textfile",
    labels=("file",),
)
NODE_TEXTFILE_SCRAPE_ERROR = gauge(
    "node_textfile_scrape_error",
    "1 if there was an error opening or reading a file, 0 otherwise",
    collector="textfile",
)

# ---- efa: AWS Elastic Fabric Adapter (names of AWS's EFA node exporter) --------------------------
NODE_AMAZONEFA_INFO = gauge(
    "node_amazonefa_info",
    "Non-numeric data from /sys/class/infiniband/<device>, value is always 1.",
    collector="efa",
    labels=("device",),
)
# lifespan is the counter cache period of the driver (ms), not a count: a gauge.
NODE_AMAZONEFA_LIFESPAN = gauge(
    "node_amazonefa_lifespan", "Lifespan of the port", collector="efa", labels=("device", "port")
)
NODE_AMAZONEFA_COUNTER = counter(
    "node_amazonefa_{field}",
    "EFA hardware counter {field} (ports/<port>/hw_counters/{field})",
    collector="efa",
    labels=("device", "port"),
)

# ---- efa: node_exporter's infiniband collector families ------------------------------------------
_IB_LABELS = ("device", "port")
NODE_INFINIBAND_INFO = gauge(
    "node_infiniband_info",
    "Non-numeric data from /sys/class/infiniband/<device>, value is always 1.",
    collector="efa",
    labels=("board_id", "device", "firmware_version", "hca_type"),
)
NODE_INFINIBAND_STATE_ID = gauge(
    "node_infiniband_state_id",
    "State of the InfiniBand port (0: no change, 1: down, 2: init, 3: armed, 4: active, 5: act defer)",
    collector="efa",
    labels=_IB_LABELS,
)
NODE_INFINIBAND_PHYSICAL_STATE_ID = gauge(
    "node_infiniband_physical_state_id",
    "Physical state of the InfiniBand port (0: no change, 1: sleep, 2: polling, 3: disable, 4: shift, "
    "5: link up, 6: link error recover, 7: phytest)",
    collector="efa",
    labels=_IB_LABELS,
)
NODE_INFINIBAND_RATE_BYTES_PER_SECOND = gauge(
    "node_infiniband_rate_bytes_per_second", "Maximum signal transfer rate", collector="efa", labels=_IB_LABELS
)


def _ib(name: str, help: str) -> MetricSpec:
    return counter(f"node_infiniband_{name}", help, collector="efa", labels=_IB_LABELS)


# (directory, file under ports/<port>/<directory>, spec, multiplier). port_rcv_data and
# port_xmit_data count 32-bit words (octets / 4), which node_exporter multiplies by 4.
NODE_INFINIBAND_COUNTERS = (
    ("counters", "excessive_buffer_overrun_errors", _ib("excessive_buffer_overrun_errors_total",
        "Number of times that OverrunErrors consecutive flow control update periods occurred, each having "
        "at least one overrun error."), 1),
    ("counters", "link_downed", _ib("link_downed_total",
        "Number of times the link failed to recover from an error state and went down"), 1),
    ("counters", "link_error_recovery", _ib("link_error_recovery_total",
        "Number of times the link successfully recovered from an error state"), 1),
    ("counters", "local_link_integrity_errors", _ib("local_link_integrity_errors_total",
        "Number of times that the count of local physical errors exceeded the threshold specified by "
        "LocalPhyErrors."), 1),
    ("counters", "multicast_rcv_packets", _ib("multicast_packets_received_total",
        "Number of multicast packets received (including errors)"), 1),
    ("counters", "multicast_xmit_packets", _ib("multicast_packets_transmitted_total",
        "Number of multicast packets transmitted (including errors)"), 1),
    ("counters", "port_rcv_constraint_errors", _ib("port_constraint_errors_received_total",
        "Number of packets received on the switch physical port that are discarded"), 1),
    ("counters", "port_xmit_constraint_errors", _ib("port_constraint_errors_transmitted_total",
        "Number of packets not transmitted from the switch physical port"), 1),
    ("counters", "port_rcv_data", _ib("port_data_received_bytes_total",
        "Number of data octets received on all links"), 4),
    ("counters", "port_xmit_data", _ib("port_data_transmitted_bytes_total",
        "Number of data octets transmitted on all links"), 4),
    ("counters", "port_rcv_discards", _ib("port_discards_received_total",
        "Number of inbound packets discarded by the port because the port is down or congested"), 1),
    ("counters", "port_xmit_discards", _ib("port_discards_transmitted_total",
        "Number of outbound packets discarded by the port because the port is down or congested"), 1),
    ("counters", "port_rcv_errors", _ib("port_errors_received_total",
        "Number of packets containing an error that were received on this port"), 1),
    ("counters", "port_rcv_packets", _ib("port_packets_received_total",
        "Number of packets received on all VLs by this port (including errors)"), 1),
    ("counters", "port_xmit_packets", _ib("port_packets_transmitted_total",
        "Number of packets transmitted on all VLs from this port (including errors)"), 1),
    ("counters", "port_rcv_remote_physical_errors", _ib("port_receive_remote_physical_errors_total",
        "Number of packets marked with the EBP (End of Bad Packet) delimiter received on the port."), 1),
    ("counters", "port_rcv_switch_relay_errors", _ib("port_receive_switch_relay_errors_total",
        "Number of packets that could not be forwarded by the switch."), 1),
    ("counters", "port_xmit_wait", _ib("port_transmit_wait_total",
        "Number of ticks during which the port had data to transmit but no data was sent during the entire "
        "tick"), 1),
    ("counters", "symbol_error", _ib("symbol_error_total",
        "Number of minor link errors detected on one or more physical lanes."), 1),
    ("counters", "unicast_rcv_packets", _ib("unicast_packets_received_total",
        "Number of unicast packets received (including errors)"), 1),
    ("counters", "unicast_xmit_packets", _ib("unicast_packets_transmitted_total",
        "Number of unicast packets transmitted (including errors)"), 1),
    ("counters", "VL15_dropped", _ib("vl15_dropped_total",
        "Number of incoming VL15 packets dropped due to resource limitations."), 1),
    # 64-bit counters of kernels before 4.5
    ("counters_ext", "port_multicast_rcv_packets", _ib("legacy_multicast_packets_received_total",
        "Number of multicast packets received"), 1),
    ("counters_ext", "port_multicast_xmit_packets", _ib("legacy_multicast_packets_transmitted_total",
        "Number of multicast packets transmitted"), 1),
    ("counters_ext", "port_rcv_data_64", _ib("legacy_data_received_bytes_total",
        "Number of data octets received on all links"), 4),
    ("counters_ext", "port_rcv_packets_64", _ib("legacy_packets_received_total",
        "Number of data packets received on all links"), 1),
    ("counters_ext", "port_unicast_rcv_packets", _ib("legacy_unicast_packets_received_total",
        "Number of unicast packets received"), 1),
    ("counters_ext", "port_unicast_xmit_packets", _ib("legacy_unicast_packets_transmitted_total",
        "Number of unicast packets transmitted"), 1),
    ("counters_ext", "port_xmit_data_64", _ib("legacy_data_transmitted_bytes_total",
        "Number of data octets transmitted on all links"), 4),
    ("counters_ext", "port_xmit_packets_64", _ib("legacy_packets_transmitted_total",
        "Number of data packets received on all links"), 1),
)  # fmt: skip

# ---- lustre: FSx for Lustre client (llite stats) ---------------------------------------------------
# node_exporter has no Lustre collector; HPE's lustre_exporter names differ (lustre_read_bytes_total
# with component/target labels), so these are nodeagent's own, one series per file system name.
NODEAGENT_LUSTRE_READ_BYTES = counter(
    "nodeagent_lustre_read_bytes_total",
    "Bytes read by this Lustre client (llite stats read_bytes sum), per file system.",
    collector="lustre",
    labels=("fs",),
    unit="bytes",
)
NODEAGENT_LUSTRE_WRITE_BYTES = counter(
    "nodeagent_lustre_write_bytes_total",
    "Bytes written by this Lustre client (llite stats write_bytes sum), per file system.",
    collector="lustre",
    labels=("fs",),
    unit="bytes",
)
NODEAGENT_LUSTRE_READ_SAMPLES = counter(
    "nodeagent_lustre_read_samples_total",
    "Read calls of this Lustre client (llite stats read_bytes samples), per file system.",
    collector="lustre",
    labels=("fs",),
)
NODEAGENT_LUSTRE_WRITE_SAMPLES = counter(
    "nodeagent_lustre_write_samples_total",
    "Write calls of this Lustre client (llite stats write_bytes samples), per file system.",
    collector="lustre",
    labels=("fs",),
)
NODEAGENT_LUSTRE_OPERATIONS = counter(
    "nodeagent_lustre_operations_total",
    "Operations of this Lustre client by type (llite stats samples: open, close, getattr, ...).",
    collector="lustre",
    labels=("fs", "operation"),
)
NODEAGENT_LUSTRE_OPERATION_TIME = counter(
    "nodeagent_lustre_operation_time_seconds_total",
    "Time spent in Lustre client operations by type (llite stats [usecs] sum), per file system.",
    collector="lustre",
    labels=("fs", "operation"),
    unit="seconds",
)
