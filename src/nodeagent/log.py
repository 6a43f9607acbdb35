"""structlog set-up: JSON lines for journald, a readable console on a TTY.

Events have stable snake_case names and fields:
    log.warning("collector_failed", collector="diskstats", error="...")

Under systemd, stderr is a stream socket to journald, which stores each line
with the unit's default priority (info) unless the line starts with an
sd-daemon priority prefix (`<3>` error ... `<7>` debug; SyslogLevelPrefix=
is on by default). So when stderr is that socket (JOURNAL_STREAM names its
device and inode), every log line gets the prefix of its level, and
`journalctl -p warning` shows exactly the warnings and errors. Anything else
written to stderr there (the fatal "nodeagent: ..." line of exit 78, a usage
error, a traceback) is an error: journal_stderr() marks those lines `<3>`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# syslog priorities (sd-daemon(3)) of structlog's level names
PRIORITIES = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "warn": 4, "info": 6, "debug": 7}
ERROR_PRIORITY = 3
_HAS_PREFIX = re.compile(r"<[0-7]>")


def journal_stream(stream: Any) -> bool:
    """True when `stream` is the journald connection systemd gave the service:
    JOURNAL_STREAM=<device>:<inode> matches the stream's file descriptor."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (a StringIO, a closed stream)
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def with_priority(text: str, level: str) -> str:
    """Every line of `text` with the journal priority prefix of `level`
    (a console rendering with a traceback spans several lines)."""
    prefix = f"<{PRIORITIES.get(level, 6)}>"
    return "\n".join(prefix + line for line in text.split("\n"))


def _prefixing(renderer: Callable[..., str]) -> Callable[..., str]:
    def render(logger: Any, method_name: str, event_dict: Any) -> str:
        level = str(event_dict.get("level", method_name))
        return with_priority(renderer(logger, method_name, event_dict), level)

    return render


class _JournalErrors:
    """stderr for a process whose stderr is the journal: a line that does not
    carry a priority prefix already is an error (`<3>`). Lines may arrive in
    pieces (print() writes the text, then the newline)."""

    def __init__(self, raw: TextIO) -> None:
        self._raw = raw
        self._at_line_start = True
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            out = []
            for piece in text.splitlines(keepends=True):
                if self._at_line_start and not _HAS_PREFIX.match(piece):
                    out.append(f"<{ERROR_PRIORITY}>")
                out.append(piece)
                self._at_line_start = piece.endswith("\n")
            self._raw.write("".join(out))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self._raw, name)


def journal_stderr() -> None:
    """When stderr is the journal, mark what is written to it without a
    priority as errors, and send log lines there with their priorities from
    the start (before the config names the level). Call first in main()."""
    if journal_stream(sys.stderr) and not isinstance(sys.stderr, _JournalErrors):
        sys.stderr = _JournalErrors(sys.stderr)
        setup_logging()


def setup_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    )
    if journal_stream(stream):
        renderer = _prefixing(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
