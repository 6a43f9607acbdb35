"""dcgm-exporter's counters file: which fields to serve, as what, with which help.

The format (dcgm-exporter `etc/default-counters.csv`):

    # Format
    # If line starts with a '#' it is considered a comment
    # DCGM FIELD, Prometheus metric type, help message
    DCGM_FI_DEV_SM_CLOCK,  gauge, SM clock frequency (in MHz).
    DCGM_FI_DRIVER_VERSION, label, Driver Version

Rows are CSV (a help text with commas is quoted), fields are trimmed, and
each row must have exactly three fields. A malformed row is an error that
names the file and line; a field name nodeagent does not know is not an
error here: the caller skips it with one warning, so a user's existing file
works as it is.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from nodeagent.inputs import InputError, read_text

CounterType = Literal["gauge", "counter", "label"]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
DEFAULT_COUNTERS = "default-counters.csv"


class CountersFileError(ValueError):
    """A malformed counters file: names the file and the line."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}: line {line}: {message}" if line else f"{source}: {message}")
        self.source = source
        self.line = line
        self.message = message


@dataclass(frozen=True)
class CounterRow:
    name: str
    type: CounterType
    help: str
    line: int


def parse_counters(text: str, source: str = "counters") -> list[CounterRow]:
    """Rows of a counters file, in file order; the first of duplicate names wins."""
    rows: list[CounterRow] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        try:
            fields = next(csv.reader([raw], skipinitialspace=True, strict=True))
        except csv.Error as e:
            raise CountersFileError(source, lineno, f"not valid CSV: {e}") from None
        fields = [f.strip() for f in fields]
        if len(fields) != 3:
            raise CountersFileError(
                source,
                lineno,
                f"expected 3 fields (NAME, type, help), got {len(fields)}: {raw.strip()[:120]!r}",
            )
        name, type_text, help_text = fields
        if not _NAME.match(name):
            raise CountersFileError(source, lineno, f"invalid field name {name!r}")
        type_: CounterType
        if type_text.lower() == "gauge":
            type_ = "gauge"
        elif type_text.lower() == "counter":
            type_ = "counter"
        elif type_text.lower() == "label":
            type_ = "label"
        else:
            raise CountersFileError(
                source, lineno, f"{name}: type must be gauge, counter or label, got {type_text!r}"
            )
        if name in seen:
            continue
        seen.add(name)
        rows.append(CounterRow(name, type_, help_text, lineno))
    return rows


def load_counters_file(path: str) -> list[CounterRow]:
    """Parse a counters file from disk; unreadable files are errors naming the path."""
    try:
        text = read_text(path)
    except InputError as e:
        raise CountersFileError(path, 0, str(e)) from None
    return parse_counters(text, path)


def default_counters() -> list[CounterRow]:
    """nodeagent's default set, shipped as a dcgm-exporter counters file."""
    ref = resources.files("nodeagent").joinpath("data").joinpath("gpu").joinpath(DEFAULT_COUNTERS)
    text = ref.read_text(encoding="utf-8")
    return parse_counters(text, DEFAULT_COUNTERS)
