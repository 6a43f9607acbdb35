"""NVIDIA XID errors in the kernel log since boot.

The NVIDIA driver logs every XID as a kernel message:

    NVRM: Xid (PCI:0000:53:00): 79, pid=1234, name=python, GPU has fallen off the bus.

Sources, in order: /dev/kmsg (the kernel's ring buffer, records
`prio,seq,usec,flags;message` plus ` KEY=value` continuation lines), read
without blocking; when it cannot be read, or when its first record is not
record 0 (the ring buffer wrapped and the oldest messages are gone) and
systemd runs, also `journalctl -k -b -o cat` (the journal keeps the whole
boot). The parser accepts all three layouts (kmsg, journalctl's bare
messages, dmesg's `[  12.345678] ...`), so it is a pure function of text.

Which XIDs are node-fatal is the GPU collector's classification
(collectors/gpu/xid_catalogue.py, after NVIDIA's XID catalogue): e.g. 48, 64,
74, 79, 95, 119, 120 need node action; 13, 31, 43, 63, 92, 94 and the other
application-level ones do not, and draining on them would over-drain
healthy nodes. A node-fatal XID stays in the log until reboot:
the check keeps failing until the node is rebooted (or replaced), which is
the action these XIDs call for.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from nodeagent.collectors.gpu.xid_catalogue import classify, xid_message
from nodeagent.host import CommandError, Host

# The driver's format (NVIDIA/open-gpu-kernel-modules kernel_rc.c):
#   NVRM: Xid (PCI:0000:53:00): 79, pid=1234, name=python, GPU has fallen off the bus.
#   NVRM: Xid (PCI:0000:01:00 GPU-I:05): 94, pid=7194, Contained: ...   (MIG)
# and, from older drivers, the address without "PCI:".
_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-9A-Fa-f])?)"
    r"(?: GPU-I:(?P<gi>\d+))?(?: GPU-CI:\d+)?\): (?P<xid>\d+)(?:,\s*(?P<rest>.*))?"
)
_KMSG_PREFIX = re.compile(r"^(?P<prio>\d+),(?P<seq>\d+),(?P<usec>\d+),[^;]*;")
_PID_NAME = re.compile(r"^(?:pid=[^,]*,\s*)?(?:name=[^,]*,\s*)?")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_MAX_TEXT = 160
KMSG_MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class XidEvent:
    xid: int
    pci: str  # as the driver prints it: 0000:53:00
    text: str  # the driver's description, bounded and printable
    gi: int | None = None  # the MIG GPU instance, when the driver names one
    usec: int | None = None  # kmsg records: microseconds since boot (CLOCK_MONOTONIC)


def node_fatal_meaning(xid: int) -> str:
    """What a node-fatal XID means, for the verdict and the drain reason."""
    return xid_message(xid)


@dataclass
class XidSummary:
    # XID -> times seen
    counts: Counter[int] = field(default_factory=Counter)
    # XID -> PCI addresses it was seen on, in order of appearance
    devices: dict[int, list[str]] = field(default_factory=dict)
    # XID -> first description seen
    texts: dict[int, str] = field(default_factory=dict)

    @property
    def node_fatal(self) -> list[int]:
        return sorted(x for x in self.counts if classify(x) == "node")

    @property
    def other(self) -> list[int]:
        return sorted(x for x in self.counts if classify(x) != "node")


def _clean(text: str) -> str:
    return _UNPRINTABLE.sub("?", text.strip())[:_MAX_TEXT]


def parse_xids(text: str) -> list[XidEvent]:
    """Every XID message in kernel log text (kmsg records, journalctl -o cat
    or dmesg lines), in order. Continuation lines of kmsg records (leading
    space) are ignored."""
    events: list[XidEvent] = []
    for line in text.splitlines():
        if not line or line[0] == " ":
            continue
        m = _XID.search(line)
        if m is None:
            continue
        rest = _PID_NAME.sub("", m.group("rest") or "")
        prefix = _KMSG_PREFIX.match(line)
        gi = m.group("gi")
        events.append(XidEvent(int(m.group("xid")), m.group("pci").lower(), _clean(rest),
                               None if gi is None else int(gi),
                               int(prefix.group("usec")) if prefix else None))
    return events


def kmsg_first_seq(text: str) -> int | None:
    """The sequence number of the first /dev/kmsg record in text (0 when the
    ring buffer still holds the whole boot), or None when text is not kmsg."""
    for line in text.splitlines():
        if not line or line[0] == " ":
            continue
        m = _KMSG_PREFIX.match(line)
        return int(m.group("seq")) if m else None
    return None


def summarize(events: list[XidEvent]) -> XidSummary:
    s = XidSummary()
    for e in events:
        s.counts[e.xid] += 1
        seen = s.devices.setdefault(e.xid, [])
        if e.pci not in seen:
            seen.append(e.pci)
        s.texts.setdefault(e.xid, e.text)
    return s


@dataclass(frozen=True)
class KernelLog:
    text: str
    sources: tuple[str, ...]  # what was read, for the verdict
    # why a source could not be read (empty when all were)
    problems: tuple[str, ...] = ()
    complete: bool = True  # False: the ring buffer wrapped and no journal filled the gap


def read_kernel_log(host: Host, journalctl: str, systemd_running: bool, timeout: float = 10.0) -> KernelLog:
    """The kernel log since boot, from /dev/kmsg and, where that is not
    enough and systemd runs, the journal."""
    sources: list[str] = []
    problems: list[str] = []
    texts: list[str] = []
    kmsg = host.dev("kmsg")
    complete = False
    try:
        data = host.read_records(kmsg, KMSG_MAX_BYTES)
    except OSError as e:
        problems.append(f"{kmsg}: {e.strerror or e}")
    else:
        text = data.decode("utf-8", errors="replace")
        texts.append(text)
        sources.append(str(kmsg))
        first = kmsg_first_seq(text)
        # a plain file (tests, an exported log) has no sequence numbers: taken as whole
        complete = first is None or first == 0
    if not complete and systemd_running:
        try:
            result = host.run([journalctl, "-k", "-b", "-o", "cat", "--no-pager", "-q"], timeout=timeout)
        except CommandError as e:
            problems.append(str(e))
        else:
            # journald imported the ring buffer from the start of the boot: the
            # journal alone is the whole log (reading both would count twice)
            texts = [result.stdout]
            sources.append("journalctl -k -b")
            complete = True
    return KernelLog("\n".join(texts), tuple(sources), tuple(problems), complete)
