"""node_exporter's textfile collector: metrics from the *.prom files of a directory
(paths.textfile_dir), plus node_textfile_mtime_seconds{file} for every file served and
node_textfile_scrape_error (1 when a file, or a family of it, was left out).

Files are parsed with a strict parser for the text format 0.0.4 (the rules of
client_golang's expfmt.TextParser). Whatever is wrong inside one file costs only that
file, which is left out as a whole: a name that is not UTF-8, text that is not UTF-8, a
syntax error, client-side timestamps, a duplicate series, a file over the size or series
caps, something that is not a regular file. Files are streamed line by line, never held
whole, and parsed again only when their (device, inode, size, mtime, ctime) changed: an
unchanged file, good or bad, costs one stat per scrape.

Across files, node_exporter 1.5's merge: a family that several files serve is served
once with the series of all of them (a family without HELP gets "Metric read from" and
the list of those files); a file whose family disagrees in type or help with the first
file that serves it, or repeats one of its series, loses that family only. A family the
agent serves itself (the :9100 collectors' families, node_scrape_collector_*,
node_textfile_*, process_*, nodeagent_*) is never taken from a file. Every problem is
logged once when it appears (the file and line number, never the line: a file may hold
what logs should not) and once when it is gone.

Families keep their own names, types, help and labels (a family missing a label that
other samples of it carry gets it with an empty value, as node_exporter does). Histograms
and summaries are served as their untyped component series (<name>_bucket, <name>_sum,
<name>_count, or <name>{quantile}), which Prometheus ingests the same way.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue import host_extra as cat
from nodeagent.catalogue.spec import pattern_regex
from nodeagent.collectors.host._values import go_float
from nodeagent.host import Host
from nodeagent.model import MetricFamily, MetricType
from nodeagent.registry import Collector, CollectorContext, register

log = structlog.get_logger(__name__)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = ("counter", "gauge", "untyped", "histogram", "summary")

# A line longer than this is an error (node_exporter has no limit; one runaway line
# must not be held in memory whole).
MAX_LINE_BYTES = 1024 * 1024
# A family with more label names than this is an error (every row holds a value for each).
MAX_LABEL_NAMES = 64
# Families whose whole namespace the agent serves on :9100 beside the collectors.
SERVED_PREFIXES = ("node_scrape_collector_", "node_textfile_", "process_", "nodeagent_")

Labels = tuple[tuple[str, str], ...]


def _check_bytes(value: Any) -> str | None:
    if 1 <= value <= 2**34:
        return None
    return f"must be a number of bytes from 1 to {2**34} (16 GiB), got {value!r}"


def _check_series(value: Any) -> str | None:
    if 1 <= value <= 10**8:
        return None
    return f"must be a number of series from 1 to {10**8}, got {value!r}"


@dataclass(frozen=True)
class TextfileOptions:
    # a *.prom file larger than this is left out as an error (node_exporter has no limit:
    # a runaway cron job must not take the agent over its memory limit)
    max_file_bytes: int = field(default=2 * 1024 * 1024, metadata={"check": _check_bytes})
    # a file with more series than this is left out as an error
    max_file_series: int = field(default=25_000, metadata={"check": _check_series})
    # files (in name order) beyond this many bytes in all are left out as errors; what is
    # served is held and rendered several times over: at the default caps the agent
    # peaks under 100 MB whatever the files hold
    max_total_bytes: int = field(default=4 * 1024 * 1024, metadata={"check": _check_bytes})
    # files (in name order) beyond this many series in all are left out as errors
    max_total_series: int = field(default=50_000, metadata={"check": _check_series})


class TextfileError(ValueError):
    """A file that cannot be served; `line` is 0 when no line is to blame. The message
    never quotes the file's text."""

    def __init__(self, source: str, reason: str, line: int = 0) -> None:
        self.source, self.reason, self.line = source, reason, line
        super().__init__(f"{source} line {line}: {reason}" if line else f"{source}: {reason}")


@dataclass
class TextFamily:
    """A family's metadata as a file declares it; its samples go to the _Series of their names."""

    name: str
    type: str = "untyped"
    help: str | None = None
    typed: bool = False
    sampled: bool = False


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
                raise _LineError("invalid escape sequence")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _skip_blanks(line: str, pos: int) -> int:
    n = len(line)
    while pos < n and line[pos] in " \t":
        pos += 1
    return pos


def _label_value_end(line: str, start: int) -> int:
    """The index of the '"' that ends the label value starting at line[start]."""
    end = start
    while True:
        end = line.find('"', end)
        if end < 0:
            raise _LineError("unterminated value of a label")
        backslashes = 0
        k = end - 1
        while k >= start and line[k] == "\\":
            backslashes += 1
            k -= 1
        if backslashes % 2 == 0:
            return end
        end += 1


def _parse_labels(line: str, pos: int, strings: dict[Any, Any]) -> tuple[Labels, int]:
    """Parse '{a="1",b="2"}' starting at line[pos] == '{'; returns labels and the position after '}'."""
    labels: list[tuple[str, str]] = []
    names: set[str] = set()
    n = len(line)
    pos += 1
    while True:
        pos = _skip_blanks(line, pos)
        if pos < n and line[pos] == "}":
            return tuple(labels), pos + 1
        match = _LABEL_NAME.match(line, pos)
        if match is None:
            raise _LineError("invalid label name")
        name = match.group(0)
        if name == "__name__":
            raise _LineError('label name "__name__" is reserved')
        if name in names:
            raise _LineError("duplicate label name")
        pos = _skip_blanks(line, match.end())
        if pos >= n or line[pos] != "=":
            raise _LineError("expected '=' after a label name")
        pos = _skip_blanks(line, pos + 1)
        if pos >= n or line[pos] != '"':
            raise _LineError("expected '\"' to start a label value")
        end = _label_value_end(line, pos + 1)
        pair = (name, _unescape(line[pos + 1 : end], quote=True))
        labels.append(strings.setdefault(pair, pair))
        names.add(name)
        pos = _skip_blanks(line, end + 1)
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


def parse_stream(
    stream: BinaryIO, source: str, max_bytes: int | None = None, max_series: int | None = None
) -> dict[str, FileFamily]:
    """A file's exposition families by name, parsed from text format 0.0.4 a line at a time.
    Histogram and summary series become untyped families of their own names. Raises
    TextfileError naming the source and line: for a syntax error, a duplicate series, text
    that is not UTF-8, a line over MAX_LINE_BYTES, more than max_bytes in all or more than
    max_series samples."""
    families: dict[str, TextFamily] = {}
    series: dict[str, _Series] = {}
    # label pairs and names repeat across series: one copy of each, not one per series
    strings: dict[Any, Any] = {}
    size = count = 0
    for number in itertools.count(1):
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            break
        size += len(raw)
        if max_bytes is not None and size > max_bytes:
            raise TextfileError(source, f"file larger than {max_bytes} bytes", number)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise TextfileError(source, f"line longer than {MAX_LINE_BYTES} bytes", number)
        try:
            line = raw.decode("utf-8").strip(" \t\r\n")
        except UnicodeDecodeError:
            raise TextfileError(source, "not valid UTF-8", number) from None
        if not line:
            continue
        try:
            if line[0] == "#":
                _parse_comment(families, line)
                continue
            _parse_sample(families, series, line, strings)
        except _LineError as e:
            # the line itself is never quoted: a file may hold what the logs should not
            raise TextfileError(source, str(e), number) from None
        count += 1
        if max_series is not None and count > max_series:
            raise TextfileError(source, f"more than {max_series} series", number)
    return {name: s.finish() for name, s in series.items()}


def parse_textfile(text: str, source: str = "textfile") -> dict[str, FileFamily]:
    """Parse text format 0.0.4 from a string (see parse_stream)."""
    return parse_stream(io.BytesIO(text.encode("utf-8", "surrogateescape")), source)


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
            raise _LineError("second HELP line for a metric name")
        fam.help = _unescape(rest, quote=False)
        return
    kind = rest.strip().lower()
    if kind not in _TYPES:
        raise _LineError("unknown metric type")
    if fam.typed or fam.sampled:
        raise _LineError("second TYPE line for a metric name, or TYPE reported after samples")
    fam.type = kind
    fam.typed = True


def _parse_sample(families: dict[str, TextFamily], series: dict[str, _Series], line: str,
                  strings: dict[Any, Any]) -> None:  # fmt: skip
    match = _METRIC_NAME.match(line)
    if match is None:
        raise _LineError("invalid metric name")
    name = match.group(0)
    pos = _skip_blanks(line, match.end())
    n = len(line)
    labels: Labels = ()
    if pos < n and line[pos] == "{":
        labels, pos = _parse_labels(line, pos, strings)
    elif pos == match.end() and pos < n:
        raise _LineError("invalid character after the metric name")
    rest = line[pos:].split()
    if not rest:
        raise _LineError("missing value")
    if len(rest) > 2:
        raise _LineError("unexpected text after the value")
    try:
        value = go_float(rest[0])
    except ValueError:
        raise _LineError("invalid value") from None
    if len(rest) == 2:
        if not rest[1].lstrip("-").isdigit():
            raise _LineError("invalid timestamp")
        raise _LineError("client-side timestamps are not supported")
    target = series.get(name)
    if target is None:
        fam = _family_for(families, name)
        _check_kind(fam, name, labels)
        target = series[name] = _Series(fam)
    elif target.family.type in ("histogram", "summary"):
        _check_kind(target.family, name, labels)
    target.family.sampled = True
    target.add(labels, value)


def _check_kind(fam: TextFamily, name: str, labels: Labels) -> None:
    """The rules of histogram and summary samples."""
    if fam.type == "histogram":
        if name == fam.name:
            raise _LineError("histogram sample without _bucket, _sum or _count suffix")
        if name == fam.name + "_bucket" and all(k != "le" for k, _ in labels):
            raise _LineError("histogram bucket without an 'le' label")
    if fam.type == "summary" and name == fam.name and all(k != "quantile" for k, _ in labels):
        raise _LineError("summary sample without a 'quantile' label")


# ---- a file's families, ready to merge -----------------------------------------------------------


@dataclass(frozen=True)
class FileFamily:
    """One exposition family as a file serves it: label values follow `labelnames` (the
    file's union for this family, '' where a sample lacks one); help is None when the
    file gives none."""

    type: MetricType
    help: str | None
    labelnames: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]


def _label_order(names: set[str]) -> tuple[str, ...]:
    special: list[str] = [n for n in ("le", "quantile") if n in names]
    return (*sorted(names - set(special)), *special)


class _Series:
    """The samples of one sample name in one file, kept as they will be served (the
    parse holds nothing else per sample). Label values follow `labelnames`, which grows
    at its end when a sample brings a new label name: earlier rows are then shorter,
    their missing values ''."""

    __slots__ = ("family", "identities", "labelnames", "rows")

    def __init__(self, family: TextFamily) -> None:
        self.family = family
        self.labelnames: tuple[str, ...] = ()
        self.rows: list[tuple[tuple[str, ...], float]] = []
        # each row's values without trailing '': Prometheus's identity of the series
        # (an empty label is no label), to find duplicates
        self.identities: set[tuple[str, ...]] = set()

    def add(self, labels: Labels, value: float) -> None:
        names = self.labelnames
        if len(labels) == len(names) and all(k == n for (k, _), n in zip(labels, names, strict=True)):
            values = tuple(v for _, v in labels)
        else:
            new = tuple(k for k, _ in labels if k not in names)
            if new:
                if len(names) + len(new) > MAX_LABEL_NAMES:
                    raise _LineError(f"more than {MAX_LABEL_NAMES} label names for one metric")
                names = self.labelnames = names + new
            given = dict(labels)
            values = tuple(given.get(n, "") for n in names)
        end = len(values)
        while end and not values[end - 1]:
            end -= 1
        identity = values if end == len(values) else values[:end]
        if identity in self.identities:
            raise _LineError("duplicate series (the same name and labels as an earlier line)")
        self.identities.add(identity)
        self.rows.append((values, value))

    def finish(self) -> FileFamily:
        names = self.labelnames
        order = _label_order(set(names))
        rows = self.rows
        if order != names or any(len(values) != len(names) for values, _ in rows):
            index = [names.index(n) for n in order]
            rows = [(_reorder(values, index), value) for values, value in rows]
        kind: MetricType = "untyped" if self.family.type in ("histogram", "summary") else self.family.type  # type: ignore[assignment]
        return FileFamily(kind, self.family.help, order, tuple(rows))


def _reorder(values: tuple[str, ...], index: list[int]) -> tuple[str, ...]:
    width = len(values)
    return tuple(values[i] if i < width else "" for i in index)


def series_identities(fam: FileFamily) -> Iterable[tuple[tuple[str, str], ...]]:
    """Prometheus's identity of each series (an empty label value is no label)."""
    names = fam.labelnames
    for values, _ in fam.samples:
        yield tuple((k, v) for k, v in zip(names, values, strict=False) if v)


def merge_file_families(parts: list[FileFamily], name: str, help_text: str) -> MetricFamily:
    """One exposition family from the files that serve it (usually one)."""
    first = parts[0]
    if len(parts) == 1:
        return MetricFamily(name, help_text, first.type, first.labelnames, list(first.samples))
    labelnames = _label_order({n for part in parts for n in part.labelnames})
    fam = MetricFamily(name, help_text, first.type, labelnames)
    for part in parts:
        if part.labelnames == labelnames:
            fam.samples.extend(part.samples)
            continue
        index = [part.labelnames.index(n) if n in part.labelnames else -1 for n in labelnames]
        for values, value in part.samples:
            fam.samples.append((tuple(values[i] if i >= 0 else "" for i in index), value))
    return fam


# ---- what the agent serves itself ----------------------------------------------------------------


def served_families(collectors: Iterable[str]) -> Callable[[str], str | None]:
    """A function telling, for a family name, what in the agent serves it on :9100 (None
    when nothing does): the catalogue's families of the given host collectors, and the
    families of SERVED_PREFIXES."""
    enabled = set(collectors)
    exact: dict[str, str] = {}
    patterns: list[tuple[re.Pattern[str], str]] = []
    for spec in CATALOGUE:
        if spec.group != "host" or spec.collector not in enabled:
            continue
        if spec.is_pattern:
            patterns.append((pattern_regex(spec.name), spec.collector))
        else:
            exact[spec.name] = spec.collector

    def served_by(name: str) -> str | None:
        if name.startswith(SERVED_PREFIXES):
            return "the agent"
        who = exact.get(name)
        if who is not None:
            return f"the {who} collector"
        for regex, collector in patterns:
            if regex.fullmatch(name):
                return f"the {collector} collector"
        return None

    return served_by


def _host_collectors(context: CollectorContext | None) -> list[str]:
    """The other collectors this agent runs on :9100, from the config and role."""
    from nodeagent import registry
    from nodeagent.config import Config, enabled_collectors

    config = getattr(context, "config", None)
    role = getattr(context, "role", "compute")
    known = registry.load_all()
    names = enabled_collectors(config if isinstance(config, Config) else Config(), role)
    return [n for n in names if n != "textfile" and n in known and known[n].group == "host"]


# ---- the collector -------------------------------------------------------------------------------


@dataclass
class _FileState:
    """What one file gave at its last parse, and the status it had then."""

    key: tuple[int, ...]
    mtime: float
    size: int
    series: int = 0
    families: dict[str, FileFamily] | None = None  # None when failed, or dropped over the total caps
    error: TextfileError | None = None


def _file_key(st: os.stat_result) -> tuple[int, ...]:
    # ctime too: it changes on every write and chmod, and cannot be set back as mtime can
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _shown(directory: str, filename: str) -> str:
    """A file name as logs may carry it (undecodable bytes as \\xNN escapes)."""
    return os.path.join(directory, os.fsencode(filename).decode("utf-8", "backslashreplace"))


# a problem as logged: (file, metric or "") -> (error, line)
Problems = dict[tuple[str, str], tuple[str, int]]


@register
class TextfileCollector(Collector):
    name = "textfile"
    group = "host"
    description = "Metrics from *.prom files in paths.textfile_dir (node_exporter's textfile collector)."
    Options = TextfileOptions

    def __init__(self, host: Host, options: Any, context: CollectorContext | None = None) -> None:
        super().__init__(host, options, context)
        self.limits = options if isinstance(options, TextfileOptions) else TextfileOptions()
        self.served_by = served_families(_host_collectors(context))
        # path -> its last parse: files rarely change, parsing is the cost
        self._files: dict[str, _FileState] = {}
        # the problems logged at the last scrape, to log each once
        self._logged: Problems = {}
        # the last merge: the files it was made of (path, key), its families and problems
        self._merged: tuple[tuple[tuple[str, tuple[int, ...]], ...], list[MetricFamily], Problems] | None = None
        self.parses = 0  # files parsed so far (read by tests: unchanged files are not parsed again)

    def directory(self) -> str:
        config = getattr(self.context, "config", None)
        paths = getattr(config, "paths", None)
        textfile_dir = getattr(paths, "textfile_dir", None)
        if textfile_dir:
            return str(textfile_dir)
        from nodeagent.config import PathsConfig

        return PathsConfig().textfile_dir

    def _load(self, path: str, size_left: int) -> _FileState:
        """The file's state: from its last parse while (device, inode, size, mtime, ctime)
        are unchanged, else parsed now (unless over the bytes left to the scrape).
        Failures are remembered the same way."""
        try:
            st = self.host.stat(Path(path))
        except OSError as e:
            return _FileState((), 0.0, 0, error=TextfileError(path, f"cannot read: {e.strerror or e}"))
        key = _file_key(st)
        cached = self._files.get(path)
        if cached is not None and cached.key == key:
            return cached
        state = self._files[path] = _FileState(key, st.st_mtime, st.st_size)
        if not stat.S_ISREG(st.st_mode):
            state.error = TextfileError(path, "not a regular file")
        elif st.st_size > self.limits.max_file_bytes:
            state.error = TextfileError(path, f"file larger than max_file_bytes ({self.limits.max_file_bytes})")
        elif st.st_size <= size_left:
            self._parse(path, state)
        return state

    def _parse(self, path: str, state: _FileState) -> None:
        self.parses += 1
        state.families, state.error = None, None
        try:
            with self.host.open_regular(Path(path)) as (f, st):
                # what was read is what the key names, even if the file changed since the stat
                state.key, state.mtime, state.size = _file_key(st), st.st_mtime, st.st_size
                state.families = parse_stream(f, path, self.limits.max_file_bytes, self.limits.max_file_series)
            state.series = sum(len(fam.samples) for fam in state.families.values())
        except TextfileError as e:
            state.error = e
        except OSError as e:
            state.error = TextfileError(path, f"cannot read: {e.strerror or e}")

    def _over_total(self, state: _FileState, size_left: int, series_left: int) -> str | None:
        if state.size > size_left:
            return f"over max_total_bytes ({self.limits.max_total_bytes}) with the files before it"
        if state.series > series_left:
            return f"over max_total_series ({self.limits.max_total_series}) with the files before it"
        return None

    def _admit(self, path: str, size_left: int, series_left: int, problems: Problems) -> _FileState | None:
        """The file's state when it is served in this scrape; else None, and why in `problems`."""
        state = self._load(path, size_left)
        fits = self._over_total(state, size_left, series_left) is None
        if state.error is None and state.families is None and fits:
            self._parse(path, state)  # left out over the totals before, or never read: fits now
        if state.error is not None:
            problems[(path, "")] = (state.error.reason, state.error.line)
            return None
        over = self._over_total(state, size_left, series_left)
        if over:
            state.families = None  # not held while it is not served; its key, size and series are
            problems[(path, "")] = (over, 0)
            return None
        return state

    def collect(self) -> list[MetricFamily]:
        directory = self.directory()
        problems: Problems = {}
        try:
            if not self.host.exists(Path(directory)):
                raise FileNotFoundError("no such directory")
            if not self.host.is_dir(Path(directory)):
                raise NotADirectoryError("not a directory")
            names = self.host.listdir(Path(directory))
        except OSError as e:
            names = []
            problems[(directory, "")] = (f"cannot read directory: {e.strerror or e}", 0)
        accepted: list[tuple[str, _FileState]] = []
        mtimes: dict[str, float] = {}
        size_left, series_left = self.limits.max_total_bytes, self.limits.max_total_series
        present: set[str] = {directory}
        for filename in names:
            if not filename.endswith(".prom"):
                continue
            if not _is_utf8(filename):  # no label value nor log line can carry it as it is
                problems[(_shown(directory, filename), "")] = ("file name is not valid UTF-8", 0)
                continue
            path = os.path.join(directory, filename)
            present.add(path)
            state = self._admit(path, size_left, series_left, problems)
            if state is None or state.families is None:
                continue
            size_left -= state.size
            series_left -= state.series
            accepted.append((path, state))
            mtimes[path] = float(int(state.mtime))
        for stale in set(self._files) - present:
            del self._files[stale]
        result = self._merge(accepted, problems)
        self._log(problems, present)
        mtime_fam = cat.NODE_TEXTFILE_MTIME_SECONDS.family()
        for path in sorted(mtimes):
            mtime_fam.add((path,), mtimes[path])
        result.extend((mtime_fam, cat.NODE_TEXTFILE_SCRAPE_ERROR.single(1.0 if problems else 0.0)))
        return result

    def _merge(self, accepted: list[tuple[str, _FileState]], problems: Problems) -> list[MetricFamily]:
        """The merged families, made again only when a file served changed (the families
        are shared with every scrape, which never modifies them)."""
        key = tuple((path, state.key) for path, state in accepted)
        if self._merged is None or self._merged[0] != key:
            merge_problems: Problems = {}
            families = _Merge(self.served_by, accepted).families(merge_problems)
            self._merged = (key, families, merge_problems)
        problems.update(self._merged[2])
        return list(self._merged[1])

    def _log(self, problems: Problems, present: set[str]) -> None:
        """Log what is new or changed since the last scrape, and what is gone from files still there."""
        for (path, metric), (error, line) in problems.items():
            if self._logged.get((path, metric)) == (error, line):
                continue
            if metric:
                log.warning("textfile_metric_dropped", file=path, metric=metric, error=error)
            elif line:
                log.warning("textfile_failed", file=path, line=line, error=error)
            else:
                log.warning("textfile_failed", file=path, error=error)
        for path, metric in sorted(self._logged.keys() - problems.keys()):
            if path in present:
                log.info("textfile_recovered", file=path, **({"metric": metric} if metric else {}))
        self._logged = problems


class _Merge:
    """The files' families merged as node_exporter 1.5 merges them (files in name order):
    a family of a later file joins the first file's when type and help agree and no series
    repeats; otherwise that file's family is left out, as is a family the agent serves."""

    def __init__(self, served_by: Callable[[str], str | None], accepted: list[tuple[str, _FileState]]) -> None:
        self.served_by = served_by
        self.accepted = [(path, state.families or {}) for path, state in accepted]
        self.files_of: dict[str, list[str]] = {}
        for path, families in self.accepted:
            for name in families:
                self.files_of.setdefault(name, []).append(path)
        self.parts: dict[str, list[tuple[str, FileFamily]]] = {}
        self.helps: dict[str, str] = {}
        self.identities: dict[str, set[tuple[tuple[str, str], ...]]] = {}

    def families(self, problems: Problems) -> list[MetricFamily]:
        for path, families in self.accepted:
            for name, fam in families.items():
                problem = self._clash(name, fam)
                if problem:
                    problems[(path, name)] = (problem, 0)
                elif name in self.parts:
                    self.parts[name].append((path, fam))
                else:
                    self.parts[name] = [(path, fam)]
                    self.helps[name] = self._help(name, fam)
        return [
            merge_file_families([fam for _, fam in self.parts[name]], name, self.helps[name])
            for name in sorted(self.parts)
        ]

    def _help(self, name: str, fam: FileFamily) -> str:
        # node_exporter 1.5: a family without HELP is "read from" every file that has it
        return fam.help if fam.help is not None else "Metric read from " + ", ".join(self.files_of[name])

    def _clash(self, name: str, fam: FileFamily) -> str | None:
        """Why `fam` cannot join what the earlier files serve, or None."""
        served_by = self.served_by(name)
        if served_by is not None:
            return f"metric {name} is served by {served_by}; a textfile cannot redefine it"
        parts = self.parts.get(name)
        if parts is None:
            return None
        first_path, first = parts[0]
        if first.type != fam.type:
            return f"metric {name} has type {fam.type} here but {first.type} in {first_path}"
        if self._help(name, fam) != self.helps[name]:
            return f"metric {name} has another help text here than in {first_path}"
        seen = self.identities.get(name)
        if seen is None:  # the first time a family is met in a second file
            seen = self.identities[name] = set(series_identities(first))
        mine = set(series_identities(fam))
        if not seen.isdisjoint(mine):
            return f"metric {name} repeats a series served from an earlier file"
        seen |= mine
        return None


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir keeps undecodable bytes as lone surrogates
        return False
    return True
