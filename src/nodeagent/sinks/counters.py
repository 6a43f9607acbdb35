"""Counter increases between two readings: the one rule the CloudWatch mapper
and the GPU and I/O summaries share.

* A reading at or above the previous one increased by the difference.
* A reading below the previous one is a reset (the agent restarted its
  counting, a driver reload, a remount): the counter started again from zero,
  so the increase is the reading itself, as in Prometheus' increase().
* A series without a previous reading has no known increase, because it may
  have counted long before it was first seen (bytes since boot): it only
  records its reading. Counters that come into existence with their first
  event (XID errors: no series until the first one) pass `new_from_zero`, and
  a new series then counts from zero.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def increase(previous: float | None, value: float, *, new_from_zero: bool = False) -> float | None:
    """The increase of one series from `previous` (None: not seen before) to
    `value`; None when it is unknown (a new series without new_from_zero)."""
    if previous is None:
        return value if new_from_zero else None
    return value - previous if value >= previous else value


def total_increase(
    previous: Mapping[K, float], current: Mapping[K, float], *, new_from_zero: bool = False
) -> float:
    """The summed increase of the series in `current` (series that disappeared
    count nothing)."""
    total = 0.0
    for key, value in current.items():
        step = increase(previous.get(key), value, new_from_zero=new_from_zero)
        if step is not None:
            total += step
    return total
