"""Number parsing shared by the host collectors, with Go's strictness: the
files node_exporter reads are parsed with strconv, which rejects what
Python's int()/float() forgive (inner whitespace, '_' digit separators)."""

from __future__ import annotations


def go_float(text: str) -> float:
    """strconv.ParseFloat(text, 64) for decimal input: raises ValueError on
    whitespace or '_' that Python's float() would accept."""
    if not text or "_" in text or text[0].isspace() or text[-1].isspace():
        raise ValueError(f"invalid number {text!r}")
    return float(text)


def go_uint(text: str) -> int:
    """strconv.ParseUint(text, 10, 64)."""
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"invalid unsigned integer {text!r}")
    value = int(text)
    if value >= 1 << 64:
        raise ValueError(f"unsigned integer out of range {text!r}")
    return value


def read_uint(text: str, source: str) -> int:
    """A sysfs/procfs file holding one unsigned integer (and a newline)."""
    try:
        return go_uint(text.strip())
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
