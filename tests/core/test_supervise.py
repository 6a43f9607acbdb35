"""The supervisor turns failures and hangs into collector_success 0 and never
lets one collector break or stall the others."""

import threading
import time

from nodeagent.exposition import render
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector
from nodeagent.snapshot import GroupCollection
from nodeagent.supervise import Supervisor


class Good(Collector):
    name = "good"
    group = "host"
    default_roles = ("compute",)
    description = "always works"

    def __init__(self) -> None:
        super().__init__(Host(), None)
        self.calls = 0

    def collect(self):
        self.calls += 1
        fam = MetricFamily("node_good", "h", "gauge")
        fam.add((), self.calls)
        return [fam]


class Broken(Good):
    name = "broken"

    def collect(self):
        raise ValueError("/proc/broken: line 3: expected 4 fields")


class Hangs(Good):
    name = "hangs"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def collect(self):
        self.calls += 1
        self.release.wait(30)
        return []


def test_failure_and_hang_are_isolated():
    good, broken, hangs = Good(), Broken(), Hangs()
    sup = Supervisor("host", [good, broken, hangs], timeout=0.3)
    try:
        started = time.monotonic()
        results = {r.name: r for r in sup.run_all()}
        assert time.monotonic() - started < 1.0
        assert results["good"].success and results["good"].series == 1
        assert not results["broken"].success
        assert "ValueError: /proc/broken: line 3" in results["broken"].error
        assert not results["hangs"].success and "timed out after 0.3s" in results["hangs"].error
        text = render(sup.meta_families(list(results.values()))).decode()
        assert 'node_scrape_collector_success{collector="good"} 1' in text
        assert 'node_scrape_collector_success{collector="broken"} 0' in text
        assert 'node_scrape_collector_success{collector="hangs"} 0' in text

        # still stuck: not started a second time, reported at once
        started = time.monotonic()
        results = {r.name: r for r in sup.run_all()}
        assert time.monotonic() - started < 0.25
        assert hangs.calls == 1 and "still running" in results["hangs"].error
        assert results["good"].success

        hangs.release.set()
        time.sleep(0.05)
        results = {r.name: r for r in sup.run_all()}
        assert results["hangs"].success and hangs.calls == 2
    finally:
        hangs.release.set()
        sup.close()


def test_non_host_groups_use_nodeagent_meta_names():
    sup = Supervisor("gpu", [Good()], timeout=1)
    text = render(sup.meta_families(sup.run_all())).decode()
    assert 'nodeagent_collector_success{collector="good"} 1' in text
    sup.close()


def test_failures_log_on_change_of_state_only(capsys):
    from nodeagent.log import setup_logging

    setup_logging("info", "json")
    sup = Supervisor("host", [Broken()], timeout=1)
    for _ in range(3):
        sup.run_all()
    sup.close()
    err = capsys.readouterr().err
    assert err.count("collector_failed") == 1


def test_concurrent_scrapes_share_one_collection_and_min_interval_holds():
    good = Good()
    slow_release = threading.Event()

    class Slow(Good):
        name = "slow"

        def collect(self):
            self.calls += 1
            slow_release.wait(0.2)
            return []

    slow = Slow()
    group = GroupCollection("host", Supervisor("host", [good, slow], timeout=2), min_interval=5.0)
    snaps = []
    threads = [threading.Thread(target=lambda: snaps.append(group.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert good.calls == 1 and slow.calls == 1
    assert len({id(s) for s in snaps}) == 1
    # a burst within min_interval gets the same snapshot
    for _ in range(20):
        group.get()
    assert good.calls == 1
    # max_age=0 forces a new collection
    group.get(max_age=0)
    assert good.calls == 2
    group.close()


def test_command_timeout_kills_the_whole_process_group():
    """A wrapper whose child holds the output pipe open must not outlive the timeout."""
    import subprocess as sp

    import pytest

    from nodeagent.host import CommandTimeout

    marker = "sleep 31.4159"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"timed out after 0\.5s"):
        Host().run(["bash", "-c", f"{marker} & {marker}"], timeout=0.5)
    assert time.monotonic() - started < 3
    time.sleep(0.1)
    assert sp.run(["pgrep", "-f", marker], capture_output=True).returncode == 1  # nothing left running
