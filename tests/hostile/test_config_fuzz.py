"""Config fuzzer: valid configs, mutated (bytes flipped, inserted and cut,
values swapped for other types and huge numbers, deep nesting, aliases,
duplicate keys, tags, odd unicode and encodings). The loader returns a Config
or raises ConfigError with one line under 1 KB naming the file, never
anything else, and fast; an accepted config also builds an agent.

Hypothesis runs derandomized (a fixed seed, no example database), so CI
runs the same cases every time; the case count and time are printed
(`pytest -s`)."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeagent.config import load_config
from nodeagent.daemon import Agent, host_from_config, resolve_role
from nodeagent.roles import RoleError
from nodeagent.settings import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "nodeagent.example.yaml"

BASES = [
    # the shape of a real compute node's config, with the fake GPU backend
    """role: compute
hostname: node-1
log: {level: info, format: json}
exporters:
  host: {listen: '127.0.0.1:9100', min_interval: 1.0}
  gpu: {listen: '[::1]:9400', enabled: true}
collectors:
  enable: [loadavg, meminfo, textfile]
  disable: [hwmon]
  timeout: 5.0
  options:
    filesystem: {mount_timeout: 1.0, total_timeout: 2.5, fs_types_exclude: '^(tmpfs|proc)$'}
    netdev: {device_exclude: '^lo$'}
gpu:
  backend: fake
  fake_description: p5-8xh100
  interval: 5.0
  call_timeout: 5.0
  max_hung_calls: 2
  xid_count_window_ms: 300000
  idle_threshold: 5.0
  expected_gpus: 8
""",
    # head node: Slurm and CloudWatch settings
    """role: head
paths: {textfile_dir: /var/lib/nodeagent/textfile, state_dir: /var/lib/nodeagent}
slurm:
  bin_dir: /opt/slurm/bin
  interval: 60
  command_timeout: 10
  per_user: true
  max_label_values: 100
cloudwatch:
  enabled: true
  roles: [head, login]
  namespace: ParallelCluster/demo
  interval: 60
  spool_max_bytes: 268435456
  max_attempts: 4
  read_timeout: 15.0
  high_resolution: [CPU_IDLE]
  disk_mountpoints: [/, /home]
""",
    # anchors and a merge key, as people write them
    """exporters:
  host: &h {listen: ':9100', min_interval: 2.0}
  gpu:
    <<: *h
    listen: ':9400'
  slurm: {enabled: false}
log: {level: debug}
""",
    EXAMPLE.read_text(),
]

# Values that stand in for any value: wrong types, numbers beyond use,
# strings no setting expects.
HOSTILE_SCALARS = [
    None, True, False, 0, -1, 1, 2**31, 2**63, 2**64, 10**30, -(10**30),
    0.0, -0.0, 1e-300, 1e39, 1e308, -1e308, math.inf, -math.inf, math.nan,
    "", " ", "x" * 5000, "\x00", "a\nb", "\u2028", "\ufeff", "é", "🙂" * 50, "\udcff".encode("utf-8", "surrogatepass"),
    "[::1:39196", ":99999", "::1:80", "[zz]:1", "host:", ":", "a b:1", "localhost:-1", ":٣", "no-such.invalid:1",
    # at and near the bounds: accepted somewhere, so that the agent gets built with them
    1e-9, 0.001, 0.1, 64, 100, 600, 1000, 3600, 65535, 86400, 604800000, 2**40,
    "(unclosed", "*", "../../etc/passwd", "/dev/zero", "/proc/self/fd/0", "~", "2024-13-45", "0x10", "1_000", ".inf",
]


def _keys(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _keys(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _keys(v, (*prefix, i))


def _parsed(text: str) -> Any:
    return yaml.safe_load(text)


PARSED = [_parsed(b) for b in BASES]
PATHS = [list(_keys(p))[1:] for p in PARSED]


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        return {k: (_set(v, rest, value) if k == head else v) for k, v in data.items()}
    if isinstance(data, list):
        return [(_set(v, rest, value) if i == head else v) for i, v in enumerate(data)]
    return data  # an earlier swap replaced what held this path


def _dump(data: Any, flow: bool) -> bytes:
    # safe_dump can only write what it can represent: bytes become !!binary
    return yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True, width=1 << 20).encode()


@st.composite
def hostile_values(draw: st.DrawFn) -> Any:
    leaf = st.one_of(
        st.sampled_from(HOSTILE_SCALARS),
        st.integers(),
        st.floats(),
        st.text(max_size=40),
        st.binary(max_size=20),
    )
    return draw(st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers(), st.booleans()), inner, max_size=4),
    ), max_leaves=8))


def _deep(depth: int, open_: str, close: str) -> str:
    return open_ * depth + close * depth


def _bomb(width: int, levels: int) -> str:
    parts = ["&b0 [" + ", ".join(["lol"] * width) + "]"]
    parts += [f"&b{i} [" + ", ".join([f"*b{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@st.composite
def snippets(draw: st.DrawFn, base: str) -> str:
    """A YAML construct to splice into a config: what parsers choke on."""
    top_keys = [line.split(":")[0] for line in base.splitlines() if line and line[0].isalpha() and ":" in line]
    key = draw(st.sampled_from([*top_keys, "role", "log", "gpu", "exporters"]))
    depth = draw(st.sampled_from([1, 10, 63, 64, 65, 200, 5000]))
    kind = draw(st.sampled_from([
        "deep-list", "deep-map", "bomb", "self-alias", "duplicate", "tag", "anchor", "documents", "directive",
        "tab", "long-line", "nul", "control", "merge", "complex-key", "unknown-alias", "bad-indent",
    ]))
    if kind == "deep-list":
        return f"{key}: {_deep(depth, '[', ']')}\n"
    if kind == "deep-map":
        return f"{key}: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if kind == "bomb":
        return f"{key}: {_bomb(draw(st.integers(2, 12)), draw(st.integers(2, 10)))}\n"
    if kind == "self-alias":
        return f"{key}: &s [1, *s]\n"
    if kind == "duplicate":
        return f"{key}: x\n{key}: y\n"
    if kind == "tag":
        tag = draw(st.sampled_from(["!!binary", "!!python/object/apply:os.system", "!!set", "!!omap", "!!timestamp",
                                    "!!float", "!!int", "!custom", "!!str", "!!map", "!!seq", "!!null", "!!bool"]))
        return f"{key}: {tag} {draw(st.sampled_from(['x', '1', '[1]', '{a: 1}', '2001-02-30', 'AAAA', ''])) }\n"
    if kind == "anchor":
        return f"{key}: &a1 {{level: info}}\nother: *a1\n"
    if kind == "documents":
        return "---\nrole: compute\n---\nrole: head\n"
    if kind == "directive":
        return "%YAML 1.1\n%TAG ! tag:x,2000:\n---\n"
    if kind == "tab":
        return f"{key}:\n\t- 1\n"
    if kind == "long-line":
        return f"{key}: " + "x" * draw(st.sampled_from([1000, 100_000])) + "\n"
    if kind == "nul":
        return f"{key}: a\x00b\n"
    if kind == "control":
        return f"{key}: \"\\x07\\u2028\\e\\0\"\n"
    if kind == "merge":
        return f"{key}: {{<<: [*nope]}}\n"
    if kind == "complex-key":
        return "? [a, b]\n: 1\n"
    if kind == "unknown-alias":
        return f"{key}: *missing\n"
    return f"{key}:\n  a: 1\n b: 2\n"


_SETTINGS = settings(
    derandomize=True,  # a fixed seed: the same cases in every run
    database=None,
    deadline=None,  # each case is timed below, with room for a loaded CI machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class _Fuzz:
    """One file per case in a private directory; counts cases and times them."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nodeagent-fuzz-"))
        self.path = self.dir / "config.yaml"
        self.times: list[float] = []
        self.accepted = 0

    def check(self, data: bytes) -> None:
        self.path.write_bytes(data)
        started = time.perf_counter()
        try:
            cfg = load_config(str(self.path))
        except ConfigError as e:
            message = str(e)
            assert "\n" not in message and "\r" not in message, message
            assert len(message) < 1024, len(message)
            assert str(self.path) in message, message
        else:
            self.accepted += 1
            self._build(cfg)
        elapsed = time.perf_counter() - started
        self.times.append(elapsed)
        assert elapsed < 2.0, f"{elapsed:.1f} s for one case"

    @staticmethod
    def _build(cfg: Any) -> None:
        """What the daemon does next with an accepted config, short of
        binding ports: the role, the collectors, the web config."""
        try:
            role = resolve_role(cfg, "compute" if cfg.role in (None, "auto") else None, host_from_config(cfg))
            agent = Agent.build(cfg, role, with_sinks=False)
        except (ConfigError, RoleError) as e:
            assert "\n" not in str(e) and len(str(e)) < 1024
            return
        agent.close()

    def report(self, name: str, minimum: int) -> None:
        total = sum(self.times)
        print(f"\nconfig fuzz {name}: {len(self.times)} cases ({self.accepted} accepted) in {total:.2f} s, "
              f"slowest {max(self.times):.3f} s")
        for p in self.dir.iterdir():
            p.unlink()
        os.rmdir(self.dir)
        assert len(self.times) >= minimum, f"only {len(self.times)} cases ran"


@pytest.mark.slow
def test_byte_mutations():
    fuzz = _Fuzz()

    @settings(_SETTINGS, max_examples=250)
    @given(st.data())
    def case(data: st.DataObject) -> None:
        text = bytearray(BASES[data.draw(st.integers(0, len(BASES) - 2))].encode())  # the example is slow to mutate
        for _ in range(data.draw(st.integers(1, 8))):
            op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "repeat"]))
            pos = data.draw(st.integers(0, max(len(text) - 1, 0)))
            if op == "flip":
                text[pos] ^= 1 << data.draw(st.integers(0, 7))
            elif op == "set":
                text[pos] = data.draw(st.integers(0, 255))
            elif op == "insert":
                text[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
            elif op == "delete":
                del text[pos:pos + data.draw(st.integers(1, 40))]
            elif op == "truncate":
                del text[pos:]
            else:
                text[pos:pos] = text[pos:pos + data.draw(st.integers(1, 200))] * data.draw(st.integers(2, 50))
            if not text:
                break
        fuzz.check(bytes(text))

    case()
    fuzz.report("byte mutations", 250)


@pytest.mark.slow
def test_value_swaps():
    fuzz = _Fuzz()

    @settings(_SETTINGS, max_examples=250)
    @given(st.data())
    def case(data: st.DataObject) -> None:
        base = data.draw(st.integers(0, len(BASES) - 1))
        parsed = PARSED[base]
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(PATHS[base]))
            parsed = _set(parsed, path, data.draw(hostile_values()))
        fuzz.check(_dump(parsed, flow=data.draw(st.booleans())))

    case()
    fuzz.report("value swaps", 250)


@pytest.mark.slow
def test_yaml_constructs_and_encodings():
    fuzz = _Fuzz()

    @settings(_SETTINGS, max_examples=200)
    @given(st.data())
    def case(data: st.DataObject) -> None:
        base = BASES[data.draw(st.integers(0, len(BASES) - 2))]
        lines = base.splitlines(keepends=True)
        at = data.draw(st.integers(0, len(lines)))
        lines.insert(at, data.draw(snippets(base)))
        text = "".join(lines)
        encoding = data.draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "latin-1"]))
        fuzz.check(text.encode(encoding, errors="replace"))

    case()
    fuzz.report("YAML constructs and encodings", 200)
