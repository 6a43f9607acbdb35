"""A dark CloudWatch outage: requests time out instead of failing.

The proxy's `late` mode is the worst case: every request reaches moto and is
stored, but no answer comes back (a slow service, or a black-holed network
whose retransmitted requests get through once it heals). Before the fix each
timed-out request was sent again by botocore (max_attempts copies), and the
sink's next attempt re-packed the whole backlog, so every datum of an outage
was stored once per attempt made while it waited. Now a request that got no
answer is not retried blindly: the sink probes (ListMetrics stores nothing)
until CloudWatch answers, then sends the same request once more."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
from cwtools import minute, own, seq_catalogue, seq_family, wait_for
from faultproxy import FaultProxy, Recorded

from nodeagent.sinks.cloudwatch import CloudWatchSink

MakeSink = Callable[..., CloudWatchSink]
LABELS = ("p",)
PER_PUBLISH = 10


def key(d: tuple) -> tuple:
    return (d[0], d[1], int(d[2]))


def publish(sink: CloudWatchSink, t0: float, i: int) -> None:
    samples = [((f"p{j}",), float(i)) for j in range(PER_PUBLISH)]
    sink.publish([seq_family(samples, LABELS)], t0 + 60 * i)


@pytest.mark.parametrize("mode", ["late", "dark"])
def test_dark_outage_costs_at_most_the_request_in_flight(make_sink: MakeSink, proxy: FaultProxy, mode: str) -> None:
    # botocore's default attempts: a read timeout must not be retried inside the call
    sink = make_sink("head", catalogue=seq_catalogue(LABELS), max_attempts=4, read_timeout=1.0)
    t0 = minute(time.time()) - 3 * 3600
    n = 0
    for _ in range(3):
        publish(sink, t0, n)
        n += 1
    sink.flush(5)
    before = len(proxy.put_records())
    proxy.set_mode(mode)
    for _ in range(10):  # several retry delays and probes long
        publish(sink, t0, n)
        n += 1
        time.sleep(0.15)
    wait_for(lambda: len(proxy.put_records()) > before, what="a request during the outage")
    wait_for(lambda: any(r.action == "ListMetrics" for r in proxy.records), what="a probe during the outage")
    proxy.set_mode("pass")
    for _ in range(3):
        publish(sink, t0, n)
        n += 1
    sink.flush(10)
    assert sink.spool.datums == 0

    puts = proxy.put_records()
    unanswered = [r for r in puts if r.mode == mode]
    # one request went out during the outage, once: no botocore retry, then only probes
    assert len(unanswered) == 1
    probes = [r for r in proxy.records if r.action == "ListMetrics"]
    assert [r.mode for r in probes][-1] == "pass" and mode in {r.mode for r in probes}
    assert not any(r.signed for r in probes) and all(r.signed for r in puts)  # a probe needs no permission
    # and it was sent again as it was, not merged with what was spooled since
    after = puts[puts.index(unanswered[0]) + 1]
    assert after.mode == "pass" and after.datums == unanswered[0].datums

    stored = Counter(key(d) for r in proxy.stored() for d in r.datums)
    generated = n * PER_PUBLISH
    assert len(stored) == generated  # nothing lost
    duplicates = sum(stored.values()) - generated
    print(f"{mode}: generated {generated} datums, stored {sum(stored.values())}, duplicates {duplicates}")
    dup_keys = {k for k, c in stored.items() if c > 1}
    if mode == "late":
        assert dup_keys == {key(d) for d in unanswered[0].datums}  # that request's datums, twice
        assert max(stored.values()) == 2
    else:
        assert duplicates == 0  # a black hole stored nothing


def held_payloads(records: list[Recorded]) -> list[list[float]]:
    return [sorted({d[3] for d in r.datums}) for r in records]


def test_a_request_without_answer_is_resent_unchanged(make_sink: MakeSink, proxy: FaultProxy) -> None:
    """The backlog that grows behind a timed-out request waits for later requests."""
    sink = make_sink("head", catalogue=seq_catalogue(LABELS), read_timeout=1.0)
    t0 = minute(time.time()) - 3600
    proxy.fail_next(1, "drop")  # connection closed after the request: no answer
    publish(sink, t0, 0)
    wait_for(lambda: len(proxy.put_records()) == 1, what="the first request")
    for i in range(1, 4):
        publish(sink, t0, i)
    sink.flush(10)
    assert held_payloads(proxy.put_records()) == [[0.0], [0.0], [1.0, 2.0, 3.0]]
    assert own(sink)["nodeagent_cloudwatch_api_errors_total"] == {("ConnectionClosedError",): 1}


def test_botocore_still_retries_what_was_not_sent(make_sink: MakeSink, proxy: FaultProxy) -> None:
    """Throttling and 5xx are answers: botocore's retries go on as before."""
    sink = make_sink("head", catalogue=seq_catalogue(LABELS), max_attempts=3)
    proxy.fail_next(1, "throttle")
    proxy.fail_next(1, "error500")
    publish(sink, minute(time.time()) - 60, 0)
    sink.flush(10)
    assert [r.mode for r in proxy.put_records()] == ["throttle", "error500", "pass"]
    assert not [r for r in proxy.records if r.action == "ListMetrics"]  # no probe needed


def test_backlog_at_start_is_sent_after_cloudwatch_answers(make_sink: MakeSink, proxy: FaultProxy, tmp_path) -> None:
    """A process killed with a request in flight: its successor asks first, so a
    still dark CloudWatch does not get (and store) the backlog again."""
    spool = tmp_path / "spool"
    first = make_sink("head", catalogue=seq_catalogue(LABELS), spool=spool, read_timeout=1.0)
    proxy.set_mode("late")
    t0 = minute(time.time()) - 3600
    for i in range(3):
        publish(first, t0, i)
    wait_for(lambda: len(proxy.put_records()) == 1, what="the request in flight")
    first.close()
    second = make_sink("head", catalogue=seq_catalogue(LABELS), spool=spool, read_timeout=1.0)
    wait_for(lambda: sum(r.action == "ListMetrics" for r in proxy.records) >= 2, what="probes of the second sink")
    assert len(proxy.put_records()) == 1  # nothing sent into the dark
    proxy.set_mode("pass")
    second.flush(10)
    assert second.spool.datums == 0
    stored = Counter(key(d) for r in proxy.stored() for d in r.datums)
    assert len(stored) == 3 * PER_PUBLISH
    assert sum(stored.values()) - len(stored) <= len(proxy.put_records()[0].datums)


def test_spool_memory_only_gauge(make_sink: MakeSink, proxy: FaultProxy, tmp_path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")  # root ignores permissions; a file stops mkdir
    sink = make_sink("head", catalogue=seq_catalogue(LABELS), spool=blocker / "spool")
    assert own(sink)["nodeagent_cloudwatch_spool_memory_only"] == {(): 1.0}
    proxy.set_mode("error500")
    publish(sink, minute(time.time()) - 60, 0)
    blocker.unlink()  # the directory can be made now; the first publish still waits in memory
    publish(sink, minute(time.time()) - 60, 1)
    assert own(sink)["nodeagent_cloudwatch_spool_memory_only"] == {(): 1.0}
    proxy.set_mode("pass")
    sink.flush(10)
    assert sink.spool.datums == 0
    assert own(sink)["nodeagent_cloudwatch_spool_memory_only"] == {(): 0.0}
