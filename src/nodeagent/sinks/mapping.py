"""From metric families to CloudWatch datums, through the catalogue.

A family is published when its catalogue spec carries a CloudWatchSpec whose
roles include the sink's role. Rules:

* dimensions are the spec's `dimensions` label names in PascalCase
  (partition -> Partition, instance_id -> InstanceId); labels that are not
  dimensions are summed over (slurm_queue_pending_reason{reason} with no
  dimensions is the number of pending jobs);
* counters are published as their increase since the previous publish (a
  counter reset counts from zero, like Prometheus' increase()); the first
  publish of a counter only records its value (counters.py);
* a spec is stored at 1-second resolution when its CloudWatchSpec says so or
  its CloudWatch or Prometheus name is in `high_resolution`
  (`storage_resolution`); with a rollup dimension (`instance_id` by default),
  a spec that has it is also published without it (`rollup_index`);
* a pattern spec's CloudWatch name may use the same `{field}` placeholder;
* values CloudWatch refuses (NaN, infinities, magnitudes outside
  8.515920e-109 .. 1.174271e+108 other than 0) are dropped and counted, as are
  datums too old (14 days) or too far ahead (2 hours) when they are sent;
* dimension values keep printable ASCII only (anything else becomes "_",
  CloudWatch accepts nothing else) and at most 1024 characters; an empty value
  drops the datum (reason invalid_dimension).

Request packing (`pack`) keeps every request within CloudWatch's limits:
at most 1000 datums and 1 MB, using for each datum an upper bound of its size
in any of the encodings botocore may use for PutMetricData (query, JSON, CBOR).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple
from urllib.parse import quote

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue.spec import Catalogue, CloudWatchSpec, MetricSpec
from nodeagent.model import MetricFamily
from nodeagent.sinks.counters import increase
from nodeagent.sinks.settings import MAX_DATUMS_PER_REQUEST, MAX_DIMENSIONS, MAX_REQUEST_BYTES

# CloudWatch's accepted value range (magnitude), besides 0.
MIN_MAGNITUDE = 8.515920e-109
MAX_MAGNITUDE = 1.174271e108
# CloudWatch accepts timestamps up to two weeks old and two hours ahead; keep a margin
# for clock skew and time in flight.
MAX_AGE_SECONDS = 14 * 86400 - 600
MAX_AHEAD_SECONDS = 2 * 3600 - 300
MAX_DIMENSION_VALUE = 1024
MAX_NAME = 255


class Datum(NamedTuple):
    name: str
    dims: tuple[tuple[str, str], ...]
    value: float
    unit: str
    resolution: int  # 60 (standard) or 1 (high resolution)
    timestamp: float  # Unix seconds


def dimension_name(label: str) -> str:
    """partition -> Partition, instance_id -> InstanceId."""
    return "".join(part[:1].upper() + part[1:] for part in label.split("_") if part)


_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


def clean_dimension_value(value: str) -> str | None:
    """A dimension value CloudWatch accepts, or None when there is none."""
    cleaned = _NOT_PRINTABLE_ASCII.sub("_", value)[:MAX_DIMENSION_VALUE]
    return cleaned if cleaned.strip() else None


def value_problem(value: float) -> str | None:
    """The drop reason for a value CloudWatch refuses, or None."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "infinite"
    if value != 0 and not MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE:
        return "out_of_range"
    return None


def datum_problem(d: Datum, now: float) -> str | None:
    """The drop reason for a datum CloudWatch would refuse at time `now`, or None."""
    problem = value_problem(d.value)
    if problem:
        return problem
    if not 1 <= len(d.name) <= MAX_NAME:
        return "invalid_name"
    if len(d.dims) > MAX_DIMENSIONS:
        return "too_many_dimensions"
    for k, v in d.dims:
        if not 1 <= len(k) <= MAX_NAME or k.startswith(":") or not 1 <= len(v) <= MAX_DIMENSION_VALUE:
            return "invalid_dimension"
    if now - d.timestamp > MAX_AGE_SECONDS:
        return "too_old"
    if d.timestamp - now > MAX_AHEAD_SECONDS:
        return "too_new"
    return None


# ---- size bound ---------------------------------------------------------------
# The query protocol (botocore before 2025) has the longest keys:
# "MetricData.member.1000.Dimensions.member.30.Value=". The JSON protocol's keys
# are short; its bound also covers CBOR (smithy-rpc-v2-cbor), whose strings are
# raw UTF-8 with a 1-3 byte header and whose numbers take 9-10 bytes.
_MEMBER = len("MetricData.member.1000.") + 1  # + "&"
_QUERY_FIXED = (
    _MEMBER * 6
    + len("Dimensions=")  # botocore writes an empty list as "...Dimensions="
    + len("MetricName=")
    + len("Timestamp=")
    + 40  # an ISO 8601 timestamp with microseconds, URL-encoded
    + len("Value=")
    + 25  # repr of a float
    + len("Unit=")
    + len("StorageResolution=")
    + 2
)
_QUERY_DIM = 2 * _MEMBER + len("Dimensions.member.30.Name=") + len("Dimensions.member.30.Value=")
_JSON_FIXED = (
    len('{"MetricName":,"Dimensions":[],"Timestamp":,"Value":,"Unit":,"StorageResolution":},')
    + 25  # timestamp: epoch seconds as a float
    + 25  # value
    + 2
    + 8  # slack: CBOR's string headers (up to 3 bytes) beyond JSON's 2 quotes
)
_JSON_DIM = len('{"Name":,"Value":},') + 4
REQUEST_OVERHEAD = 512  # Action, Version, the JSON braces; the namespace is added per request
_COST_CACHE: dict[str, tuple[int, int]] = {}


def _costs(s: str) -> tuple[int, int]:
    """Bytes of s URL-encoded (query) and JSON-escaped with quotes."""
    cost = _COST_CACHE.get(s)
    if cost is None:
        cost = (len(quote(s, safe="-_.~")), len(json.dumps(s)))
        if len(s) <= 128 and len(_COST_CACHE) < 50_000:
            _COST_CACHE[s] = cost
    return cost


def string_cost(s: str, protocol: str = "query") -> int:
    q, j = _costs(s)
    return max(q, j) if protocol == "query" else j


def datum_size(d: Datum, protocol: str = "query") -> int:
    """An upper bound of the datum's size in a PutMetricData request body sent
    with `protocol` (botocore's resolved protocol; "query" is the largest)."""
    if protocol == "query":
        size = _QUERY_FIXED + string_cost(d.name) + string_cost(d.unit)
        for k, v in d.dims:
            size += _QUERY_DIM + string_cost(k) + string_cost(v)
        return size
    size = _JSON_FIXED + _costs(d.name)[1] + _costs(d.unit)[1]
    for k, v in d.dims:
        size += _JSON_DIM + _costs(k)[1] + _costs(v)[1]
    return size


def request_overhead(namespace: str) -> int:
    return REQUEST_OVERHEAD + string_cost(namespace)


def pack(
    datums: Sequence[Datum],
    namespace: str,
    max_datums: int = MAX_DATUMS_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
    protocol: str = "query",
) -> list[list[Datum]]:
    """Split datums, in order, into requests within the count and size limits."""
    budget = max_bytes - request_overhead(namespace)
    requests: list[list[Datum]] = []
    current: list[Datum] = []
    used = 0
    for d in datums:
        size = datum_size(d, protocol)
        if current and (len(current) >= max_datums or used + size > budget):
            requests.append(current)
            current, used = [], 0
        current.append(d)
        used += size
    if current:
        requests.append(current)
    return requests


# ---- families -> datums ---------------------------------------------------------
ROLLUP_LABEL = "instance_id"


def storage_resolution(cw: CloudWatchSpec, high_resolution: AbstractSet[str], *names: str) -> int:
    """1 (high resolution) when the spec asks for it or one of `names` (its
    CloudWatch and Prometheus names) is in `high_resolution`, else 60."""
    return 1 if cw.storage_resolution == 1 or any(n in high_resolution for n in names) else 60


def rollup_index(dimensions: Sequence[str], rollup_label: str | None) -> int | None:
    """Where `rollup_label` is among a spec's dimension labels: the rollup
    series leaves that one out. None: the spec has no rollup series."""
    if rollup_label is None or rollup_label not in dimensions:
        return None
    return dimensions.index(rollup_label)


class _Target(NamedTuple):
    spec: MetricSpec
    cw: CloudWatchSpec
    name: str  # the CloudWatch metric name, placeholders filled


def _pattern_fields(pattern: str, name: str) -> dict[str, str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[A-Za-z0-9_:]+)", re.escape(pattern))
    m = re.fullmatch(regex, name)
    return m.groupdict() if m else {}


class CloudWatchMapper:
    """Maps a role's families to datums. Keeps the state counters need."""

    def __init__(
        self,
        role: str,
        high_resolution: Iterable[str] = (),
        rollup_dimension: str | None = ROLLUP_LABEL,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.role = role
        self.catalogue = catalogue if catalogue is not None else CATALOGUE
        self.high_resolution = frozenset(high_resolution)
        self.rollup_dimension = rollup_dimension
        self._targets: dict[str, _Target | None] = {}
        self._last_counter: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _target(self, family_name: str) -> _Target | None:
        if family_name in self._targets:
            return self._targets[family_name]
        target: _Target | None = None
        spec = self.catalogue.lookup(family_name)
        if spec is not None and spec.cloudwatch is not None and self.role in spec.cloudwatch.roles:
            cw = spec.cloudwatch
            name = cw.name
            if "{" in name and spec.is_pattern:
                name = name.format(**_pattern_fields(spec.name, family_name))
            target = _Target(spec, cw, name)
        if len(self._targets) < 100_000:
            self._targets[family_name] = target
        return target

    def map(self, families: Iterable[MetricFamily], timestamp: float) -> tuple[list[Datum], Counter[str]]:
        """Datums for the families that go to CloudWatch, and drops by reason."""
        datums: list[Datum] = []
        dropped: Counter[str] = Counter()
        for fam in families:
            target = self._target(fam.name)
            if target is None or not fam.samples:
                continue
            cw = target.cw
            try:
                idx = [fam.labelnames.index(label) for label in cw.dimensions]
            except ValueError:
                dropped["invalid_dimension"] += len(fam.samples)
                continue
            dim_names = [dimension_name(label) for label in cw.dimensions]
            # several samples that differ only in labels which are not dimensions are summed
            sums: dict[tuple[str, ...], float] = {}
            for labelvalues, value in fam.samples:
                key = tuple(labelvalues[i] for i in idx)
                sums[key] = sums.get(key, 0.0) + value
            resolution = storage_resolution(cw, self.high_resolution, target.name, fam.name)
            rollup_at = rollup_index(cw.dimensions, self.rollup_dimension)
            for key, value in sums.items():
                dims: list[tuple[str, str]] = []
                for dname, raw in zip(dim_names, key, strict=True):
                    cleaned = clean_dimension_value(raw)
                    if cleaned is None:
                        break
                    dims.append((dname, cleaned))
                else:
                    all_dims = tuple(dims)
                    if target.spec.type == "counter":
                        state_key = (target.name, all_dims)
                        step = increase(self._last_counter.get(state_key), value)
                        self._last_counter[state_key] = value
                        if step is None:
                            continue
                        value = step
                    problem = value_problem(value)
                    if problem:
                        dropped[problem] += 1 + (rollup_at is not None)
                        continue
                    datums.append(Datum(target.name, all_dims, value, cw.unit, resolution, timestamp))
                    if rollup_at is not None:
                        rolled = all_dims[:rollup_at] + all_dims[rollup_at + 1 :]
                        datums.append(Datum(target.name, rolled, value, cw.unit, resolution, timestamp))
                    continue
                dropped["invalid_dimension"] += 1
        return datums, dropped
