"""config/nodeagent.example.yaml documents every key with its default: it is
generated from the settings dataclasses and must be current."""

import dataclasses
import os
from pathlib import Path

from nodeagent.config import Config, parse_config
from nodeagent.publish.example_config import example_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "nodeagent.example.yaml"


def test_example_config_is_current():
    text = example_config()
    if os.environ.get("NODEAGENT_UPDATE_GOLDEN") == "1":
        EXAMPLE.write_text(text)
    assert EXAMPLE.read_text() == text, "regenerate: python -m nodeagent.publish.example_config"


def test_example_config_parses_to_the_defaults():
    cfg = parse_config(EXAMPLE.read_text(), str(EXAMPLE))
    defaults = Config()
    for f in dataclasses.fields(Config):
        if f.name == "collectors" or f.metadata.get("internal"):
            continue
        assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name
    assert cfg.collectors.enable == () and cfg.collectors.disable == ()


def test_every_key_carries_a_comment_or_is_self_explanatory():
    # every dataclass field of every section appears as a key in the example
    text = EXAMPLE.read_text()

    def walk(obj, prefix):
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue
            assert f"{f.name}:" in text, f"{prefix}{f.name} missing from the example"
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")

    walk(Config(), "")
