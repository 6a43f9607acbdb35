"""node_exporter's timex collector: the kernel clock discipline from adjtimex(2), read only."""

from __future__ import annotations

import errno

from nodeagent.catalogue import host_extra as cat
from nodeagent.catalogue.spec import MetricSpec
from nodeagent.model import MetricFamily
from nodeagent.registry import Collector, register

TIME_ERROR = 5  # adjtimex state: clock not synchronized
STA_NANO = 0x2000  # status bit: offset and jitter are in nanoseconds, not microseconds
PPM16FRAC = 1000000.0 * 65536.0  # freq, ppsfreq and stabil are ppm with a 16-bit fraction


def timex_values(tx: dict[str, int]) -> list[tuple[MetricSpec, float]]:
    """struct timex fields (and "state") -> (spec, value) as node_exporter 1.5 derives them."""
    divisor = 1e9 if tx["status"] & STA_NANO else 1e6
    return [
        (cat.NODE_TIMEX_SYNC_STATUS, 0.0 if tx["state"] == TIME_ERROR else 1.0),
        (cat.NODE_TIMEX_OFFSET_SECONDS, tx["offset"] / divisor),
        (cat.NODE_TIMEX_FREQUENCY_ADJUSTMENT_RATIO, 1 + tx["freq"] / PPM16FRAC),
        (cat.NODE_TIMEX_MAXERROR_SECONDS, tx["maxerror"] / 1e6),
        (cat.NODE_TIMEX_ESTIMATED_ERROR_SECONDS, tx["esterror"] / 1e6),
        (cat.NODE_TIMEX_STATUS, tx["status"]),
        (cat.NODE_TIMEX_LOOP_TIME_CONSTANT, tx["constant"]),
        (cat.NODE_TIMEX_TICK_SECONDS, tx["tick"] / 1e6),
        (cat.NODE_TIMEX_PPS_FREQUENCY_HERTZ, tx["ppsfreq"] / PPM16FRAC),
        (cat.NODE_TIMEX_PPS_JITTER_SECONDS, tx["jitter"] / divisor),
        (cat.NODE_TIMEX_PPS_SHIFT_SECONDS, tx["shift"]),
        (cat.NODE_TIMEX_PPS_STABILITY_HERTZ, tx["stabil"] / PPM16FRAC),
        (cat.NODE_TIMEX_PPS_JITTER_TOTAL, tx["jitcnt"]),
        (cat.NODE_TIMEX_PPS_CALIBRATION_TOTAL, tx["calcnt"]),
        (cat.NODE_TIMEX_PPS_ERROR_TOTAL, tx["errcnt"]),
        (cat.NODE_TIMEX_PPS_STABILITY_EXCEEDED_TOTAL, tx["stbcnt"]),
        (cat.NODE_TIMEX_TAI_OFFSET_SECONDS, tx["tai"]),
    ]


class TimexRefused(RuntimeError):
    """adjtimex(2) was refused: the collector fails rather than report nothing."""


@register
class TimexCollector(Collector):
    name = "timex"
    group = "host"
    description = "Clock synchronisation state from adjtimex(2), read only (node_timex_*)."

    def collect(self) -> list[MetricFamily]:
        try:
            tx = self.host.adjtimex()
        except OSError as e:
            # A refused adjtimex (a seccomp filter such as a container's, or a
            # unit's SystemCallFilter without adjtimex) is a failure, as in
            # node_exporter: success 0 and no series, so dashboards do not read
            # "no node_timex_* series" as a healthy clock.
            if e.errno in (errno.EPERM, errno.EACCES):
                raise TimexRefused(
                    f"adjtimex(2) refused ({errno.errorcode[e.errno]}): a system call filter blocks it; "
                    "allow adjtimex and clock_adjtime (SystemCallFilter=adjtimex clock_adjtime)"
                ) from e
            raise
        return [spec.single(value) for spec, value in timex_values(tx)]
