"""The merge rule (settings.section_default): a section left out, empty or
given in part keeps that section's own defaults, for every exporter, every
section of the config and every collector's options."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from nodeagent import registry
from nodeagent.config import Config, ExporterConfig, parse_config
from nodeagent.roles import GROUPS
from nodeagent.settings import load_dataclass

# one value per ExporterConfig key, each unlike its default
GIVEN: dict[str, Any] = {"listen": "127.0.0.1:19999", "enabled": False, "min_interval": 2.5, "metrics_path": "/m"}


def test_every_key_of_the_exporter_section_is_covered():
    assert set(GIVEN) | {"web_config"} == {f.name for f in dataclasses.fields(ExporterConfig)}


@pytest.mark.parametrize("group", sorted(GROUPS))
@pytest.mark.parametrize("key", sorted(GIVEN))
def test_one_key_of_an_exporter_keeps_that_exporters_other_defaults(group, key):
    cfg = parse_config(yaml.safe_dump({"exporters": {group: {key: GIVEN[key]}}}), "x.yaml")
    own_default = getattr(Config().exporters, group)
    assert own_default.listen == f":{GROUPS[group].port}"
    assert getattr(cfg.exporters, group) == dataclasses.replace(own_default, **{key: GIVEN[key]})
    for other in GROUPS:  # the exporters not named are untouched
        if other != group:
            assert getattr(cfg.exporters, other) == getattr(Config().exporters, other)


def test_the_partial_gpu_section_of_the_issue_stays_on_9400():
    cfg = parse_config("exporters: {gpu: {min_interval: 2}}", "x.yaml")
    assert cfg.exporters.gpu.listen == ":9400" and cfg.exporters.gpu.min_interval == 2.0
    assert cfg.exporters.host.listen == ":9100"


def _sections(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.append((prefix + f.name, value))
            out.extend(_sections(value, f"{prefix}{f.name}."))
    return out


SECTIONS = _sections(Config())
# sections with a true/false key, and that key
FLAGGED = [(path, default, f.name) for path, default in SECTIONS for f in dataclasses.fields(default)
           if isinstance(getattr(default, f.name), bool)]
FLAGGED = list({path: (path, default, key) for path, default, key in FLAGGED}.values())  # one key per section


def _nest(path: str, value: Any) -> dict[str, Any]:
    data: Any = value
    for part in reversed(path.split(".")):
        data = {part: data}
    return data  # type: ignore[no-any-return]


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize(("path", "default"), SECTIONS, ids=[p for p, _ in SECTIONS])
@pytest.mark.parametrize("given", [{}, None])
def test_an_empty_section_is_the_sections_default(path, default, given):
    cfg = parse_config(yaml.safe_dump(_nest(path, given)), "x.yaml")
    assert _get(cfg, path) == default


@pytest.mark.parametrize(("path", "default", "key"), FLAGGED, ids=[p for p, _, _ in FLAGGED])
def test_a_section_given_in_part_keeps_its_other_keys(path, default, key):
    """Each section with a true/false key: flip that one key, the rest stays."""
    cfg = parse_config(yaml.safe_dump(_nest(f"{path}.{key}", not getattr(default, key))), "x.yaml")
    assert _get(cfg, path) == dataclasses.replace(default, **{key: not getattr(default, key)})


@pytest.mark.parametrize("name", sorted(n for n, c in registry.load_all().items() if dataclasses.fields(c.Options)))
def test_collector_options_given_empty_are_the_collectors_defaults(name):
    options = registry.get(name).Options
    assert load_dataclass(options, {}, "x.yaml") == options()
    cfg = parse_config(yaml.safe_dump({"collectors": {"options": {name: {}}}}), "x.yaml")
    assert cfg.collectors.options[name] == {}
