"""An exporter's `listen` is one address or a list of them (node_exporter's
repeated --web.listen-address), served on a configurable metrics path."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from testlib import free_port

from nodeagent.config import parse_config
from nodeagent.daemon import Agent
from nodeagent.settings import ConfigError


def test_one_address_or_a_list():
    cfg = parse_config("exporters: {host: {listen: ['127.0.0.1:9100', '[::1]:9100']}}", "c.yaml")
    assert cfg.exporters.host.addresses == ("127.0.0.1:9100", "[::1]:9100")
    assert parse_config("", "c.yaml").exporters.host.addresses == (":9100",)


@pytest.mark.parametrize(("listen", "message"), [
    ("[]", "exporters.host.listen: an empty list listens nowhere"),
    ("[':1', ':1']", "exporters.host.listen: the same address is listed twice"),
    ("[':1', 'x']", "exporters.host.listen: [1]: listen address must look like HOST:PORT"),
    ("[':1', 5]", "exporters.host.listen: expected str or list"),
])
def test_bad_lists_are_named(listen, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(f"exporters: {{host: {{listen: {listen}}}}}", "c.yaml")


@pytest.mark.parametrize("path", ["metrics", "/", "/healthz", "/a b"])
def test_bad_metrics_paths(path):
    with pytest.raises(ConfigError, match=r"exporters\.host\.metrics_path: must be a URL path"):
        parse_config(f"exporters: {{host: {{metrics_path: '{path}'}}}}", "c.yaml")


def test_every_address_serves_the_metrics_path():
    ports = [free_port(), free_port()]
    cfg = parse_config(
        "collectors: {disable_defaults: true, enable: [loadavg]}\ncloudwatch: {enabled: false}\n"
        f"exporters: {{host: {{listen: ['127.0.0.1:{ports[0]}', '127.0.0.1:{ports[1]}'], metrics_path: /node}}}}",
        "c.yaml")
    agent = Agent.build(cfg, "login", with_sinks=False)
    try:
        agent.start_exporters()
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/node", timeout=10) as resp:
                assert b"node_load1 " in resp.read()
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert e.value.code == 404
    finally:
        agent.close()
