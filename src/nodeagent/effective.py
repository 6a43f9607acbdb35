"""`nodeagent collectors`: the effective collector set of a config and role,
with where each setting came from (default, config or flag)."""

from __future__ import annotations

from typing import Any, TextIO

from nodeagent import registry
from nodeagent.config import Config, enabled_collectors, origin
from nodeagent.roles import GROUPS
from nodeagent.settings import split_listen


def _setting(cfg: Config, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _enabled_origin(cfg: Config, name: str, role: str | None) -> str:
    if f"collector:{name}" in cfg.flag_keys:
        return "flag"
    if f"collector:{name}" in cfg.file_keys:
        return "config"
    is_default = role is not None and role in registry.get(name).default_roles
    if is_default and cfg.collectors.disable_defaults and "collectors.disable_defaults" in cfg.file_keys:
        return "config"
    return "default"


def collector_rows(cfg: Config, role: str | None) -> list[dict[str, Any]]:
    """One row per collector. enabled is None when the role is unknown."""
    enabled = set(enabled_collectors(cfg, role)) if role else None
    rows = []
    for name, cls in registry.load_all().items():
        group = cls.group
        listen_key = f"exporters.{group}.listen"
        addresses = _setting(cfg, f"exporters.{group}").addresses
        interval_key = GROUPS[group].interval_key
        row: dict[str, Any] = {
            "name": name,
            "group": group,
            "enabled": None if enabled is None else name in enabled,
            "enabled_source": _enabled_origin(cfg, name, role),
            "port": split_listen(addresses[0])[1],
            "listen": list(addresses),
            "listen_source": origin(cfg, listen_key),
            "interval_seconds": _setting(cfg, interval_key),
            "interval_key": interval_key,
            "interval_source": origin(cfg, interval_key),
            "default_roles": list(cls.default_roles),
            "description": cls.description,
        }
        flag = cfg.flag_keys.get(f"collector:{name}")
        if flag:
            row["enabled_flag"] = flag
        rows.append(row)
    return rows


def _with_source(value: str, source: str) -> str:
    return f"{value} ({source})"


def print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    table = []
    for r in rows:
        on = "?" if r["enabled"] is None else ("yes" if r["enabled"] else "no")
        table.append((
            r["name"], r["group"], _with_source(on, r["enabled_source"]),
            _with_source(",".join(r["listen"]), r["listen_source"]),
            _with_source(f"{r['interval_seconds']:g}s", r["interval_source"]),
            ",".join(r["default_roles"]) or "-", r["description"],
        ))
    header = ("NAME", "GROUP", "ENABLED", "LISTEN", "INTERVAL", "DEFAULT IN", "DESCRIPTION")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header) - 1)]
    for row in [header, *table]:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1] + "\n")
