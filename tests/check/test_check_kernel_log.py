"""XIDs from the kernel log: the pure parser on the three layouts the log
comes in, the classification (node-fatal or not), and the reader on a
record device, a plain file and the real /dev/kmsg."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from check_helpers import CHECK_FIXTURES, P5

from nodeagent.checks.kernel_log import (
    kmsg_first_seq,
    node_fatal_meaning,
    parse_xids,
    read_kernel_log,
    summarize,
)
from nodeagent.collectors.gpu.xid_catalogue import NODE_ACTION_XIDS
from nodeagent.host import Host, Roots

KMSG = (
    "6,0,0,-;Linux version 6.8.0-1021-aws\n"
    "4,5120,86402118377,-;NVRM: Xid (PCI:0000:64:00): 94, pid=48211, name=python3, Contained: SM (0x1). RST: No\n"
    " SUBSYSTEM=pci\n"
    " DEVICE=+pci:0000:64:00.0\n"
    "4,6003,99120334990,-;NVRM: Xid (PCI:0000:53:00): 79, pid='<unknown>', name=<unknown>, "
    "GPU has fallen off the bus.\n"
    "3,6004,99120335011,-;NVRM: GPU 0000:53:00.0: GPU has fallen off the bus.\n"
)
JOURNAL = (
    "NVRM: Xid (PCI:0000:b3:00): 48, pid=1234, name=train, An uncorrectable double bit error (DBE) has been "
    "detected on GPU in the framebuffer at partition 1, subpartition 0.\n"
    "NVRM: Xid (PCI:0000:B3:00): 63, pid=1234, name=train, Row Remapper: New row marked for remapping\n"
)
DMESG = (
    "[   12.345678] nvidia: loading out-of-tree module taints kernel.\n"
    "[86402.118377] NVRM: Xid (PCI:0000:64:00): 13, Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0)\n"
    "[99120.334990] NVRM: Xid (0000:1e:00): 74, NVLink: fatal error detected on link 3\n"
)


def test_kmsg_records_give_xid_pci_and_text():
    events = parse_xids(KMSG)
    assert [(e.xid, e.pci) for e in events] == [(94, "0000:64:00"), (79, "0000:53:00")]
    # pid and process name are not part of the description
    assert events[1].text == "GPU has fallen off the bus."
    assert events[0].text.startswith("Contained: SM")
    assert kmsg_first_seq(KMSG) == 0
    assert kmsg_first_seq("6,1234,5,-;later\n") == 1234  # the ring buffer wrapped


def test_journal_and_dmesg_layouts():
    events = parse_xids(JOURNAL)
    assert [(e.xid, e.pci) for e in events] == [(48, "0000:b3:00"), (63, "0000:b3:00")]  # PCI lower-cased
    assert kmsg_first_seq(JOURNAL) is None
    events = parse_xids(DMESG)
    # older drivers print the address without "PCI:"
    assert [(e.xid, e.pci) for e in events] == [(13, "0000:64:00"), (74, "0000:1e:00")]


def test_node_fatal_set_is_the_gpu_collectors():
    # NVIDIA's XID catalogue: reset/reboot/NVLink workflows, GSP errors on H100 included
    assert {48, 64, 74, 79, 95, 119, 120}.issubset(NODE_ACTION_XIDS)
    assert not {13, 31, 43, 63, 92, 94}.intersection(NODE_ACTION_XIDS)
    assert node_fatal_meaning(79) == "GPU has fallen off the bus"
    assert node_fatal_meaning(119) == "GSP RPC Timeout"
    s = summarize(parse_xids(KMSG + JOURNAL + DMESG + KMSG))
    assert s.node_fatal == [48, 74, 79]
    assert s.other == [13, 63, 94]  # application level: no node action
    assert s.counts[79] == 2 and s.devices[79] == ["0000:53:00"]
    assert s.devices[48] == ["0000:b3:00"]


def test_hostile_text_is_bounded_and_printable():
    line = "NVRM: Xid (PCI:0000:53:00): 79, pid=1, name=x, " + "\x1b[31mA" * 500 + "\n"
    (event,) = parse_xids(line)
    assert len(event.text) <= 160 and event.text.isprintable()
    assert parse_xids("NVRM: Xid (PCI:0000:53:00): notanumber\nrandom text\n") == []


def test_reader_plain_file_from_dev_root():
    host = Host(Roots(dev=str(CHECK_FIXTURES / "dev-xid79")))
    log = read_kernel_log(host, "/nonexistent/journalctl", systemd_running=False)
    assert log.sources == (str(CHECK_FIXTURES / "dev-xid79" / "kmsg"),) and log.complete
    assert summarize(parse_xids(log.text)).node_fatal == [79]
    assert summarize(parse_xids(read_kernel_log(Host(Roots(dev=str(P5 / "dev"))), "", False).text)).node_fatal == []


def test_reader_missing_kmsg_is_a_problem_not_a_crash(tmp_path):
    log = read_kernel_log(Host(Roots(dev=str(tmp_path))), str(tmp_path / "journalctl"), systemd_running=True)
    assert log.sources == () and len(log.problems) == 2  # no kmsg, and no journalctl binary either


def test_wrapped_ring_buffer_falls_back_to_the_journal(tmp_path):
    (tmp_path / "kmsg").write_text("6,900,1,-;NVRM: Xid (PCI:0000:53:00): 79, x\n")
    journal = tmp_path / "journalctl"
    journal.write_text(
        f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\nprintf 'NVRM: Xid (PCI:0000:53:00): 79, x\\nboot\\n'\n"
    )
    journal.chmod(0o755)
    host = Host(Roots(dev=str(tmp_path)))
    log = read_kernel_log(host, str(journal), systemd_running=False)
    assert not log.complete and log.sources == (str(tmp_path / "kmsg"),)  # no systemd: no journal
    log = read_kernel_log(host, str(journal), systemd_running=True)
    assert log.complete and log.sources[-1] == "journalctl -k -b"
    assert (tmp_path / "args").read_text().split() == ["-k", "-b", "-o", "cat", "--no-pager", "-q"]
    # the journal replaces the ring buffer's text: each XID is counted once
    assert summarize(parse_xids(log.text)).counts[79] == 1


def test_read_records_does_not_block_on_a_record_device(tmp_path):
    """A FIFO behaves like /dev/kmsg once caught up: a non-blocking read
    raises EAGAIN while a writer holds it open."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer_ready = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with open(fifo, "w") as f:
            f.write("6,0,0,-;first\n")
            f.flush()
            writer_ready.set()
            release.wait(10)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    # opening the read end non-blocking lets the writer's open() proceed
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert writer_ready.wait(10)
        data = Host.read_records(fifo, 1 << 20)
    finally:
        release.set()
        os.close(fd)
        t.join(10)
    assert data == b"6,0,0,-;first\n"


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg not readable here")
def test_real_dev_kmsg_reads_to_the_end_without_blocking():
    data = Host.read_records(Path("/dev/kmsg"), 64 << 20)
    assert kmsg_first_seq(data.decode("utf-8", "replace")) is not None


def test_mig_instance_and_kmsg_time_are_parsed():
    text = (
        "4,1227,5000123,-;NVRM: Xid (PCI:0000:01:00 GPU-I:05): 94, pid=7194, Contained: CE User Channel (0x9).\n"
        "NVRM: Xid (PCI:0000:00:16): 119, pid=36055, name=dcgm-exporter, Timeout after 6s of waiting for RPC "
        "response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL) (0x90cc0301 0xc).\n"
    )
    first, second = parse_xids(text)
    assert (first.xid, first.pci, first.gi, first.usec) == (94, "0000:01:00", 5, 5000123)
    assert (second.xid, second.pci, second.gi, second.usec) == (119, "0000:00:16", None, None)
