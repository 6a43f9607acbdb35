"""Writes config/nodeagent.example.yaml from the settings dataclasses, so the
example documents every key with its default and cannot drift: each key's
comment is the comment written above the field in the source.

    python -m nodeagent.publish.example_config > config/nodeagent.example.yaml
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any

import yaml

from nodeagent import registry
from nodeagent.config import Config

HEADER = """\
# nodeagent configuration: every key with its default value.
# Default location: /etc/nodeagent/config.yaml. An absent file means these defaults.
# Any key may be left out; unknown keys are an error that names the key.
# Generated from the settings in the source: python -m nodeagent.publish.example_config
"""


def field_comments(cls: type) -> dict[str, list[str]]:
    """The comment lines directly above each field in the class body."""
    lines = inspect.getsource(cls).splitlines()
    comments: dict[str, list[str]] = {}
    pending: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        name = stripped.split(":", 1)[0]
        if ":" in stripped and name.isidentifier():
            comments[name] = pending
        pending = []
    return comments


def _scalar(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def render_dataclass(obj: Any, indent: int, out: list[str]) -> None:
    comments = field_comments(type(obj))
    pad = "  " * indent
    for f in dataclasses.fields(obj):
        if f.metadata.get("internal"):
            continue
        for line in comments.get(f.name, []):
            out.append(f"{pad}# {line}".rstrip())
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.append(f"{pad}{f.name}:")
            render_dataclass(value, indent + 1, out)
        elif f.name == "options" and isinstance(obj, type(Config().collectors)):
            out.append(f"{pad}{f.name}:")
            render_collector_options(indent + 1, out)
        else:
            out.append(f"{pad}{f.name}: {_scalar(value)}")


def render_collector_options(indent: int, out: list[str]) -> None:
    pad = "  " * indent
    for name, cls in registry.load_all().items():
        options = cls.Options()
        if not dataclasses.fields(options):
            continue
        out.append(f"{pad}{name}:")
        render_dataclass(options, indent + 1, out)


def example_config() -> str:
    out = [HEADER]
    render_dataclass(Config(), 0, out)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(example_config())
