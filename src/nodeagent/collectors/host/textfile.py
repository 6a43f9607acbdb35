"""node_exporter's textfile collector: metrics from the *.prom files of a directory
(paths.textfile_dir), plus node_textfile_mtime_seconds{file} for every file served and
node_textfile_scrape_error (1 when a file could not be read or parsed).

Files are parsed with a strict parser for the text format 0.0.4 (the rules of
client_golang's expfmt.TextParser): a file with a syntax error, client-side
timestamps, a duplicate series, or a family whose help or type disagrees with
the same family in an earlier file is left out as a whole and logged once; the
other files are still served. Families keep their own names, types, help and
labels (a family missing a label that other samples of it carry gets it with an
empty value, as node_exporter does). Histograms and summaries are served as
their untyped component series (<name>_bucket, <name>_sum, <name>_count, or
<name>{quantile}), which Prometheus ingests the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from nodeagent.catalogue import host_extra as cat
from nodeagent.collectors.host._values import go_float
from nodeagent.host import Host
from nodeagent.model import MetricFamily, MetricType
from nodeagent.registry import Collector, CollectorContext, register

log = structlog.get_logger(__name__)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = ("counter", "gauge", "untyped", "histogram", "summary")
_OWN_NAMES = frozenset({cat.NODE_TEXTFILE_MTIME_SECONDS.name, cat.NODE_TEXTFILE_SCRAPE_ERROR.name})
# a textfile larger than this is refused (node_exporter has no limit; a runaway cron job should not take the agent down)
MAX_FILE_BYTES = 64 * 1024 * 1024

Labels = tuple[tuple[str, str], ...]


@dataclass
class TextFamily:
    """One family as written in a file: samples are (sample name, labels, value)."""

    name: str
    type: str = "untyped"
    help: str | None = None
    typed: bool = False
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)


class _LineError(ValueError):
    pass


def _unescape(text: str, quote: bool) -> str:
    if "\\" not in text:
        return text
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt == "\\":
                out.append("\\")
            elif nxt == "n":
                out.append("\n")
            elif nxt == '"' and quote:
                out.append('"')
            else:
                raise _LineError(f"invalid escape sequence '\\{nxt}'")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _parse_labels(line: str, pos: int) -> tuple[Labels, int]:
    """Parse '{a="1",b="2"}' starting at line[pos] == '{'; returns labels and the position after '}'."""
    labels: list[tuple[str, str]] = []
    names: set[str] = set()
    n = len(line)
    pos += 1
    while True:
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos < n and line[pos] == "}":
            return tuple(labels), pos + 1
        match = _LABEL_NAME.match(line, pos)
        if match is None:
            raise _LineError("invalid label name")
        name = match.group(0)
        if name == "__name__":
            raise _LineError('label name "__name__" is reserved')
        if name in names:
            raise _LineError(f"duplicate label name {name!r}")
        pos = match.end()
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos >= n or line[pos] != "=":
            raise _LineError(f"expected '=' after label name {name!r}")
        pos += 1
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos >= n or line[pos] != '"':
            raise _LineError(f"expected '\"' to start the value of label {name!r}")
        start = pos + 1
        end = start
        while True:
            end = line.find('"', end)
            if end < 0:
                raise _LineError(f"unterminated value of label {name!r}")
            backslashes = 0
            k = end - 1
            while k >= start and line[k] == "\\":
                backslashes += 1
                k -= 1
            if backslashes % 2 == 0:
                break
            end += 1
        labels.append((name, _unescape(line[start:end], quote=True)))
        names.add(name)
        pos = end + 1
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos < n and line[pos] == ",":
            pos += 1
            continue
        if pos < n and line[pos] == "}":
            return tuple(labels), pos + 1
        raise _LineError("expected ',' or '}' after a label value")


def _family_for(families: dict[str, TextFamily], name: str) -> TextFamily:
    """The family a sample name belongs to (expfmt's rules: the exact name first, then the
    summary or histogram whose _sum/_count/_bucket series it is)."""
    fam = families.get(name)
    if fam is not None:
        return fam
    for suffix, kinds in (("_sum", ("summary", "histogram")), ("_count", ("summary", "histogram")),
                          ("_bucket", ("histogram",))):  # fmt: skip
        if name.endswith(suffix):
            base = families.get(name[: -len(suffix)])
            if base is not None and base.type in kinds:
                return base
    fam = families[name] = TextFamily(name)
    return fam


def parse_textfile(text: str, source: str = "textfile") -> list[TextFamily]:
    """Parse Prometheus text format 0.0.4. Raises ValueError naming the source and line."""
    families: dict[str, TextFamily] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip(" \t\r")
        if not line:
            continue
        try:
            if line[0] == "#":
                _parse_comment(families, line)
            else:
                _parse_sample(families, line)
        except _LineError as e:
            # the line itself is not quoted: a file may hold what the logs should not
            raise ValueError(f"{source} line {number}: {e}") from None
    return [fam for fam in families.values() if fam.samples]


def _parse_comment(families: dict[str, TextFamily], line: str) -> None:
    parts = line[1:].split(None, 2)
    if not parts or parts[0] not in ("HELP", "TYPE"):
        return  # an ordinary comment
    if len(parts) < 2 or not _METRIC_NAME.fullmatch(parts[1]):
        raise _LineError(f"invalid metric name in {parts[0]} comment")
    name = parts[1]
    rest = parts[2] if len(parts) > 2 else ""
    fam = families.get(name)
    if fam is None:
        fam = families[name] = TextFamily(name)
    if parts[0] == "HELP":
        if fam.help is not None:
            raise _LineError(f"second HELP line for metric name {name!r}")
        fam.help = _unescape(rest, quote=False)
        return
    kind = rest.strip().lower()
    if kind not in _TYPES:
        raise _LineError(f"unknown metric type {rest.strip()!r}")
    if fam.typed or fam.samples:
        raise _LineError(f"second TYPE line for metric name {name!r}, or TYPE reported after samples")
    fam.type = kind
    fam.typed = True


def _parse_sample(families: dict[str, TextFamily], line: str) -> None:
    match = _METRIC_NAME.match(line)
    if match is None:
        raise _LineError("invalid metric name")
    name = match.group(0)
    pos = match.end()
    n = len(line)
    while pos < n and line[pos] in " \t":
        pos += 1
    labels: Labels = ()
    if pos < n and line[pos] == "{":
        labels, pos = _parse_labels(line, pos)
    elif pos == match.end() and pos < n:
        raise _LineError(f"invalid character {line[pos]!r} after metric name")
    rest = line[pos:].split()
    if not rest:
        raise _LineError("missing value")
    if len(rest) > 2:
        raise _LineError("unexpected text after the value")
    try:
        value = go_float(rest[0])
    except ValueError:
        raise _LineError(f"invalid value {rest[0]!r}") from None
    if len(rest) == 2:
        if not rest[1].lstrip("-").isdigit():
            raise _LineError(f"invalid timestamp {rest[1]!r}")
        raise _LineError("client-side timestamps are not supported")
    fam = _family_for(families, name)
    label_names = {k for k, _ in labels}
    if fam.type == "histogram" and name == fam.name + "_bucket" and "le" not in label_names:
        raise _LineError("histogram bucket without an 'le' label")
    if fam.type == "histogram" and name == fam.name:
        raise _LineError("histogram sample without _bucket, _sum or _count suffix")
    if fam.type == "summary" and name == fam.name and "quantile" not in label_names:
        raise _LineError("summary sample without a 'quantile' label")
    fam.samples.append((name, labels, value))


# ---- merging files into exposition families ---------------------------------------------------


@dataclass(frozen=True)
class FileFamily:
    """One exposition family as a file serves it, ready to merge: label values follow
    `labelnames` (the file's union for this family, '' where a sample lacks one)."""

    type: MetricType
    help: str
    labelnames: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]
    # Prometheus series identities (an empty label value is no label), to find duplicates
    keys: frozenset[tuple[str, Labels]]


def _label_order(names: set[str]) -> tuple[str, ...]:
    special: list[str] = [n for n in ("le", "quantile") if n in names]
    return (*sorted(names - set(special)), *special)


def file_families(families: list[TextFamily], path: str) -> dict[str, FileFamily]:
    """A file's families as exposition families by name. Histogram and summary series become
    untyped families of their own names. A series that appears twice is an error."""
    grouped: dict[str, tuple[MetricType, str, list[tuple[Labels, float]]]] = {}
    for fam in families:
        help_text = fam.help if fam.help is not None else f"Metric read from {path}"
        kind: MetricType = "untyped" if fam.type in ("histogram", "summary") else fam.type  # type: ignore[assignment]
        for sample_name, labels, value in fam.samples:
            entry = grouped.get(sample_name)
            if entry is None:
                entry = grouped[sample_name] = (kind, help_text, [])
            entry[2].append((labels, value))
    out: dict[str, FileFamily] = {}
    for name, (kind, help_text, samples) in grouped.items():
        labelnames = _label_order({k for labels, _ in samples for k, _ in labels})
        rows = []
        keys: set[tuple[str, Labels]] = set()
        for labels, value in samples:
            key = (name, tuple(sorted(pair for pair in labels if pair[1])))
            if key in keys:
                shown = ",".join(f'{k}="{v}"' for k, v in key[1])
                raise ValueError(f"{path}: duplicate series {name}{{{shown}}}")
            keys.add(key)
            as_dict = dict(labels)
            rows.append((tuple(as_dict.get(k, "") for k in labelnames), value))
        out[name] = FileFamily(kind, help_text, labelnames, tuple(rows), frozenset(keys))
    return out


def merge_file_families(parts: list[FileFamily], name: str) -> MetricFamily:
    """One exposition family from the files that serve it (usually one)."""
    first = parts[0]
    if len(parts) == 1:
        return MetricFamily(name, first.help, first.type, first.labelnames, list(first.samples))
    labelnames = _label_order({n for part in parts for n in part.labelnames})
    fam = MetricFamily(name, first.help, first.type, labelnames)
    for part in parts:
        if part.labelnames == labelnames:
            fam.samples.extend(part.samples)
            continue
        index = [part.labelnames.index(n) if n in part.labelnames else -1 for n in labelnames]
        for values, value in part.samples:
            fam.samples.append((tuple(values[i] if i >= 0 else "" for i in index), value))
    return fam


@register
class TextfileCollector(Collector):
    name = "textfile"
    group = "host"
    default_roles = ("compute", "head", "login")
    description = "Metrics from *.prom files in paths.textfile_dir (node_exporter's textfile collector)."

    def __init__(self, host: Host, options: Any, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        # path -> (text, its families): files rarely change, parsing is the cost
        self._parsed: dict[str, tuple[str, dict[str, FileFamily]]] = {}
        # path (or the directory) -> the error last logged for it, to log each error once
        self._errors: dict[str, str] = {}

    def directory(self) -> str:
        config = getattr(self.context, "config", None)
        paths = getattr(config, "paths", None)
        textfile_dir = getattr(paths, "textfile_dir", None)
        if textfile_dir:
            return str(textfile_dir)
        from nodeagent.config import PathsConfig

        return PathsConfig().textfile_dir

    def _failed(self, key: str, message: str) -> None:
        if self._errors.get(key) != message:
            self._errors[key] = message
            log.warning("textfile_failed", file=key, error=message)

    def _ok(self, key: str) -> None:
        if self._errors.pop(key, None) is not None:
            log.info("textfile_recovered", file=key)

    def _parse(self, path: str) -> dict[str, FileFamily]:
        """The file's families; parsed again only when its text changed (the result is
        shared between scrapes and never modified)."""
        text = self.host.read_regular_text(Path(path), MAX_FILE_BYTES)
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == text:
            return cached[1]
        families = file_families(parse_textfile(text, path), path)
        self._parsed[path] = (text, families)
        return families

    def collect(self) -> list[MetricFamily]:
        directory = self.directory()
        dir_path = Path(directory)
        errored = False
        merged: dict[str, list[FileFamily]] = {}
        owner: dict[str, str] = {}  # family name -> first file that served it
        mtimes: dict[str, float] = {}
        try:
            if not self.host.exists(dir_path):
                raise FileNotFoundError(f"textfile directory {directory} does not exist")
            names = self.host.listdir(dir_path)
            self._ok(directory)
        except OSError as e:
            errored = True
            names = []
            self._failed(directory, f"cannot read directory: {e}")
        present = set()
        for filename in names:
            if not filename.endswith(".prom"):
                continue
            path = str(dir_path / filename)
            present.add(path)
            try:
                families = self._parse(path)
                self._check(path, families, merged, owner)
                mtime = float(int(self.host.mtime(Path(path))))
            except (OSError, ValueError) as e:
                errored = True
                self._failed(path, str(e))
                continue
            self._ok(path)
            for name, fam in families.items():
                parts = merged.get(name)
                if parts is None:
                    merged[name] = [fam]
                    owner[name] = path
                else:
                    parts.append(fam)
            mtimes[path] = mtime
        for stale in set(self._parsed) - present:
            del self._parsed[stale]
        for stale in [k for k in self._errors if k != directory and k not in present]:
            del self._errors[stale]
        result = [merge_file_families(merged[name], name) for name in sorted(merged)]
        mtime_fam = cat.NODE_TEXTFILE_MTIME_SECONDS.family()
        for path in sorted(mtimes):
            mtime_fam.add((path,), mtimes[path])
        error_fam = cat.NODE_TEXTFILE_SCRAPE_ERROR.family()
        error_fam.add_unlabelled(1.0 if errored else 0.0)
        result.extend((mtime_fam, error_fam))
        return result

    @staticmethod
    def _check(
        path: str, families: dict[str, FileFamily], merged: dict[str, list[FileFamily]], owner: dict[str, str]
    ) -> None:
        """Reject a file that clashes with what earlier files (or the collector) serve."""
        for name, fam in families.items():
            if name in _OWN_NAMES:
                raise ValueError(f"{path}: metric {name} is the textfile collector's own")
            parts = merged.get(name)
            if parts is None:
                continue
            first = parts[0]
            if first.type != fam.type or first.help != fam.help:
                raise ValueError(
                    f"{path}: metric {name} has type {fam.type} and help {fam.help!r} but {owner[name]} "
                    f"has type {first.type} and help {first.help!r}"
                )
            for part in parts:
                if not part.keys.isdisjoint(fam.keys):
                    name_, labels = min(part.keys & fam.keys)
                    shown = ",".join(f'{k}="{v}"' for k, v in labels)
                    raise ValueError(f"{path}: duplicate series {name_}{{{shown}}}")
