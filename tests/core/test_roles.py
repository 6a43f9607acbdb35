"""Roles, groups, ports and metric prefixes are declared once, in
nodeagent/roles.py: the rest of the source reads them from there."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

from nodeagent import registry
from nodeagent.catalogue import CATALOGUE
from nodeagent.config import Config
from nodeagent.roles import GROUPS, NODE_TYPES, ROLE_CHOICES, ROLE_TABLE, ROLES, roles_running

SRC = Path(__file__).resolve().parents[2] / "src" / "nodeagent"
ROLES_PY = SRC / "roles.py"


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p != ROLES_PY)


def test_the_role_names_are_listed_together_only_in_roles_py():
    # the three role names side by side, in any order: a copy of the role table
    names = [f"[\"']{name}[\"']" for name in ROLES]
    pattern = re.compile("|".join(r"\s*,\s*".join(order) for order in itertools.permutations(names)))
    copies = [f"{p.relative_to(SRC)}:{m.group(0)}" for p in _sources() for m in pattern.finditer(p.read_text())]
    assert copies == []
    assert pattern.search(ROLES_PY.read_text())  # the pattern does find the table itself


def test_exporter_ports_are_numbers_only_in_roles_py():
    ports = {spec.port for spec in GROUPS.values()}
    found = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in ports:
                found.append(f"{p.relative_to(SRC)}:{node.lineno}: {node.value}")
    assert found == []


def test_config_defaults_follow_the_table():
    cfg = Config()
    for group, spec in GROUPS.items():
        assert getattr(cfg.exporters, group).listen == f":{spec.port}"


def test_every_role_and_collector_group_is_in_the_table():
    assert (*ROLES, "auto") == ROLE_CHOICES
    assert set(NODE_TYPES.values()) == set(ROLES)
    for spec in ROLE_TABLE.values():
        assert set(spec.exporters) <= set(spec.groups) <= set(GROUPS)
        assert set(spec.cloudwatch) <= set(spec.groups)
    for name, cls in registry.load_all().items():
        assert cls.group in GROUPS, name
        assert any(cls.group in spec.groups for spec in ROLE_TABLE.values()), name
        assert set(cls.default_roles) <= set(ROLES), name
        # on by default only where its group runs
        assert all(cls.group in ROLE_TABLE[r].groups for r in cls.default_roles), name


def test_default_roles_come_from_the_group_unless_a_collector_says():
    collectors = registry.load_all()
    assert roles_running("host") == ROLES
    assert roles_running("gpu") == ("compute",) and roles_running("slurm") == ("head",)
    # the one collector that differs from its group, and says so in its class
    overrides = {name: cls.default_roles for name, cls in collectors.items()
                 if cls.default_roles != roles_running(cls.group)}
    assert overrides == {"efa": ("compute",)}
    assert collectors["loadavg"].default_roles == ROLES
    assert collectors["gpu"].default_roles == ("compute",)


def test_every_served_family_carries_its_groups_prefix():
    for spec in CATALOGUE:
        if spec.group in GROUPS:
            assert spec.name.startswith(GROUPS[spec.group].metric_prefixes), (spec.group, spec.name)
