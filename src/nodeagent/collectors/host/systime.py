"""node_exporter's time collector: node_time_seconds, node_time_zone_offset_seconds{time_zone}
and the clocksources from /sys/devices/system/clocksource/clocksource<N>/."""

from __future__ import annotations

import time

from nodeagent.catalogue import host_extra as cat
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register


def parse_clocksources(available: str, current: str) -> tuple[list[str], str]:
    """available_clocksource ('tsc kvm-clock acpi_pm ') and current_clocksource ('tsc')."""
    return available.split(), current.strip()


def zone_offset(now: float) -> tuple[str, int]:
    """The local time zone's abbreviation and UTC offset in seconds at `now`."""
    local = time.localtime(now)
    return local.tm_zone, local.tm_gmtoff


@register
class TimeCollector(Collector):
    name = "time"
    group = "host"
    description = "System time, time zone offset and clocksources (node_time_*)."

    def collect(self) -> list[MetricFamily]:
        now = self.host.time()
        seconds = cat.NODE_TIME_SECONDS.single(now)
        zone_name, offset = zone_offset(now)
        zone = cat.NODE_TIME_ZONE_OFFSET_SECONDS.family()
        zone.add((zone_name,), offset)
        available = cat.NODE_TIME_CLOCKSOURCE_AVAILABLE_INFO.family()
        current = cat.NODE_TIME_CLOCKSOURCE_CURRENT_INFO.family()
        base = self.host.sys("devices", "system", "clocksource")
        for entry in self.host.listdir(base):
            device = entry[len("clocksource"):]
            if not entry.startswith("clocksource") or not device.isdigit():
                continue
            avail_text = self.host.read_optional(base / entry / "available_clocksource")
            current_text = self.host.read_optional(base / entry / "current_clocksource")
            if avail_text is None or current_text is None:
                continue
            sources, active = parse_clocksources(avail_text, current_text)
            for source in sorted(sources):
                available.add((source, device), 1)
            if active:
                current.add((active, device), 1)
        return [seconds, zone, available, current]
