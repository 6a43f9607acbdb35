"""node_exporter's hwmon collector: sensors from /sys/class/hwmon/hwmon*/ (and the device
directory of old drivers), named, labelled and scaled exactly as node_exporter 1.5 does:
node_hwmon_temp_celsius, node_hwmon_fan_rpm, node_hwmon_in_volts, node_hwmon_power_*_watt,
node_hwmon_chip_names, node_hwmon_sensor_label, ..."""

from __future__ import annotations

import functools
import os.path
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.catalogue import host_extra as cat
from nodeagent.collectors.host._values import go_float
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

SENSOR_TYPES = frozenset({"vrm", "beep_enable", "update_interval", "in", "cpu", "fan", "pwm", "temp",
                          "curr", "power", "energy", "humidity", "intrusion"})  # fmt: skip
_FILENAME = re.compile(r"([^0-9]+)([0-9]*)(?:_(.+))?")
_INVALID = re.compile(r"[^a-z0-9:_]")


def clean_name(name: str) -> str:
    """node_exporter's cleanMetricName: lower case, [^a-z0-9:_] -> '_', '_' trimmed."""
    return _INVALID.sub("_", name.lower()).strip("_")


@functools.lru_cache(maxsize=4096)  # the same few file names every scrape
def split_sensor_filename(filename: str) -> tuple[str, int, str] | None:
    """'temp1_crit_alarm' -> ('temp', 1, 'crit_alarm'); 'pwm1' -> ('pwm', 1, ''); None if no match."""
    match = _FILENAME.fullmatch(filename)
    if match is None:
        return None
    kind, number, prop = match.group(1), match.group(2), match.group(3) or ""
    return kind, int(number) if number else 0, prop


def chip_name(device_path: str | None, name_file: str | None, dir_name: str) -> str:
    """node_exporter's hwmonName: '<parent dir>_<device dir>' of the resolved device link
    (nvme_nvme0, platform_coretemp_0), else the cleaned name file, else the hwmonN directory."""
    if device_path:
        parent, dev = os.path.split(device_path.rstrip("/"))
        dev_name, dev_type = clean_name(dev), clean_name(os.path.basename(parent))
        if dev_type and dev_name:
            return f"{dev_type}_{dev_name}"
        if dev_name:
            return dev_name
    if name_file:
        cleaned = clean_name(name_file)
        if cleaned:
            return cleaned
    return clean_name(dir_name)


@dataclass
class Chip:
    chip: str  # the chip label
    chip_name: str | None  # human-readable name from the name file
    # sensor ('temp1', 'beep_enable0') -> element ('input', 'max', '' for the bare file) -> raw text
    sensors: dict[str, dict[str, str]] = field(default_factory=dict)


def add_sensor_file(sensors: dict[str, dict[str, str]], filename: str, text: str | None) -> None:
    """Record one file's value when its name is a known sensor type's (others are ignored)."""
    if text is None:
        return
    parts = split_sensor_filename(filename)
    if parts is None or parts[0] not in SENSOR_TYPES:
        return
    kind, number, prop = parts
    sensors.setdefault(f"{kind}{number}", {})[prop] = text.strip("\n")


def _describe(kind: str, element: str, name: str) -> tuple[str, str, float, bool]:
    """(metric name, help, scale, is_counter) for one element of a sensor of this kind."""
    if element in ("fault", "alarm"):
        return name, f"Hardware sensor {element} status ({kind})", 1.0, False
    if element == "beep":
        return name + "_enabled", "Hardware monitor sensor has beeping enabled", 1.0, False
    if kind in ("in", "cpu"):
        return name + "_volts", f"Hardware monitor for voltage ({element})", 0.001, False
    if kind == "temp" and element != "type":
        element = element or "input"
        return name + "_celsius", f"Hardware monitor for temperature ({element})", 0.001, False
    if kind == "curr":
        return name + "_amps", f"Hardware monitor for current ({element})", 0.001, False
    if kind == "energy":
        return name + "_joule_total", f"Hardware monitor for joules used so far ({element})", 1e-6, True
    if kind == "power" and element == "accuracy":
        return name, "Hardware monitor power meter accuracy, as a ratio", 1e-6, False
    if kind == "power" and element in ("average_interval", "average_interval_min", "average_interval_max"):
        return name + "_seconds", f"Hardware monitor power usage update interval ({element})", 0.001, False
    if kind == "power":
        return name + "_watt", f"Hardware monitor for power usage in watts ({element})", 1e-6, False
    if kind == "humidity":
        return (name, "Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as "
                f"a percentage) ({element})", 1e-6, False)  # fmt: skip
    if kind == "fan" and element in ("input", "min", "max", "target"):
        return name + "_rpm", f"Hardware monitor for fan revolutions per minute ({element})", 1.0, False
    return name, f"Hardware monitor {kind} element {element}", 1.0, False


def _scaled(value: float, scale: float) -> float:
    # node_exporter multiplies by 0.001 but divides by 1e6: keep the same float results
    return value / 1e6 if scale == 1e-6 else value * scale


def hwmon_families(chips: Iterable[Chip]) -> list[MetricFamily]:
    """Build node_exporter's hwmon families from the chips' raw sensor values. Values that do
    not parse as numbers are skipped, as node_exporter does."""
    families: dict[str, MetricFamily] = {}
    seen: set[tuple[str, str, str]] = set()

    def emit(name: str, help_text: str, counter: bool, chip: str, sensor: str, value: float) -> None:
        if (name, chip, sensor) in seen:
            return
        seen.add((name, chip, sensor))
        fam = families.get(name)
        if fam is None:
            field_ = name[len("node_hwmon_"):]
            if counter:
                fam = cat.NODE_HWMON_ENERGY.family(field=field_[: -len("_joule_total")])
            else:
                fam = cat.NODE_HWMON_SENSOR.family(field=field_)
            fam.help = help_text
            families[name] = fam
        fam.add((chip, sensor), value)

    chip_names = cat.NODE_HWMON_CHIP_NAMES.family()
    labels = cat.NODE_HWMON_SENSOR_LABEL.family()
    fixed = {
        "beep_enable": cat.NODE_HWMON_BEEP_ENABLED.family(),
        "vrm": cat.NODE_HWMON_VOLTAGE_REGULATOR_VERSION.family(),
        "update_interval": cat.NODE_HWMON_UPDATE_INTERVAL_SECONDS.family(),
    }
    for chip in chips:
        if chip.chip_name:
            chip_names.add((chip.chip, chip.chip_name), 1)
        for sensor in sorted(chip.sensors):
            data = chip.sensors[sensor]
            parts = split_sensor_filename(sensor)
            kind = parts[0] if parts else sensor
            if "label" in data:
                labels.add((chip.chip, data["label"], sensor), 1)
            if kind == "beep_enable":
                fixed[kind].add((chip.chip, sensor), 1.0 if data.get("") == "1" else 0.0)
                continue
            if kind in ("vrm", "update_interval"):
                try:
                    value = go_float(data.get("", ""))
                except ValueError:
                    continue
                fixed[kind].add((chip.chip, sensor), value * 0.001 if kind == "update_interval" else value)
                continue
            prefix = "node_hwmon_" + kind
            for element in sorted(data):
                if element == "label":
                    continue
                try:
                    value = go_float(data[element])
                except ValueError:
                    continue
                if element == "input":
                    name = prefix + "_input" if "" in data else prefix
                elif element:
                    name = prefix + "_" + clean_name(element)
                else:
                    name = prefix
                metric, help_text, scale, counter = _describe(kind, element, name)
                emit(metric, help_text, counter, chip.chip, sensor, _scaled(value, scale))
    out = [chip_names, labels, *fixed.values()]
    out.extend(families[name] for name in sorted(families))
    return out


@register
class HwmonCollector(Collector):
    name = "hwmon"
    group = "host"
    description = "Hardware sensors (temperatures, fans, voltages, power) from /sys/class/hwmon (node_hwmon_*)."

    def _chip(self, class_dir: str, entry: str) -> Chip | None:
        host = self.host
        entry_path = host.sys("class", "hwmon", entry)
        target = host.readlink(entry_path)
        real_dir = os.path.normpath(os.path.join(class_dir, target)) if target else str(entry_path)
        names = host.listdir(entry_path)
        if not names:
            return None  # not a directory (or empty)
        device_link = host.readlink(entry_path / "device")
        device_path = os.path.normpath(os.path.join(real_dir, device_link)) if device_link else None
        name_text = host.read_optional(entry_path / "name") if "name" in names else None
        chip = Chip(chip_name(device_path, name_text, os.path.basename(real_dir)), None)
        if name_text is not None:
            chip.chip_name = clean_name(name_text) or None
        self._read_sensors(chip, entry_path, names)
        if "device" in names:
            # drivers of the old sysfs layout keep the sensor files in the device directory
            device_dir = entry_path / "device"
            self._read_sensors(chip, device_dir, host.listdir(device_dir))
        return chip

    def _read_sensors(self, chip: Chip, directory: Path, names: list[str]) -> None:
        wanted = []
        for filename in names:
            parts = split_sensor_filename(filename)
            if parts is not None and parts[0] in SENSOR_TYPES:
                if parts[2] == "label":
                    # labels keep their inner and outer spaces, as node_exporter serves them
                    add_sensor_file(chip.sensors, filename, self.host.read_optional(directory / filename))
                else:
                    wanted.append(filename)
        for filename, text in self.host.read_attrs(directory, wanted).items():
            add_sensor_file(chip.sensors, filename, text)

    def collect(self) -> list[MetricFamily]:
        class_dir = str(self.host.sys("class", "hwmon"))
        chips = []
        for entry in self.host.listdir(self.host.sys("class", "hwmon")):
            chip = self._chip(class_dir, entry)
            if chip is not None:
                chips.append(chip)
        if not chips:
            return []  # no /sys/class/hwmon (virtual machines often have none)
        return hwmon_families(sorted(chips, key=lambda c: c.chip))
