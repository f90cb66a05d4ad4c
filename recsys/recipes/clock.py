"""The recipes' event clock: the newest event time, robust to a few outlier timestamps.

Trending-Now's "now" and training's ``trained_until`` (serving's line between events a
model learned and new ones) followed the newest event. One imported event from the year
2100 then moved both there for good: Trending-Now compared intervals in which nothing
happened, and serving took every later real vote for one the model already had.

The rule: the clock is the newest timestamp at most ``CLOCK_MAX_LEAD_SECONDS`` ahead of
the ``CLOCK_QUORUM``-th newest. In a live stream the newest events are seconds apart, so
the clock is the newest event, exactly as before; an event far ahead of the rest is
believed once ``CLOCK_QUORUM - 1`` others have joined it (after a quiet day, the fifth
event of the new traffic moves the clock). Only the ``CLOCK_QUORUM`` newest timestamps
are kept, so the clock costs a few integers however many events it has seen. An order
statistic rather than a quantile of the last N: it needs no window size, and a quantile
of recent events lags a healthy stream by a share of N events.

With fewer than ``CLOCK_QUORUM`` events there is nothing to compare with, so the clock
is the newest event within the lead of the oldest one seen. The clock never goes back.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import numpy as np

# How many events must reach a time before the clock believes it: up to four outliers
# (a test row, a device with a broken clock) are ignored.
CLOCK_QUORUM = 5
# How far the clock may run ahead of the CLOCK_QUORUM-th newest event: a day, longer
# than Trending-Now's longest interval, so an honest stream (events seconds apart, or a
# quiet night) moves it exactly as the newest event would.
CLOCK_MAX_LEAD_SECONDS = 24 * 3600


def robust_newest(timestamps: Iterable[int] | np.ndarray) -> int | None:
    """The clock after ``timestamps`` (see the module docstring); None when empty."""
    return EventClock.of(timestamps).now


class EventClock:
    """The streaming form: ``observe`` each event time, read ``now``."""

    def __init__(self, recent: Iterable[int] = (), now: int | None = None, *,
                 max_lead_seconds: int = CLOCK_MAX_LEAD_SECONDS) -> None:
        self._recent: list[int] = []  # min-heap of the CLOCK_QUORUM newest timestamps
        self.now: int | None = now
        self.max_lead_seconds = max_lead_seconds
        self._waiting = True  # whether a kept time is ahead of the clock (until known)
        self.observe_many(recent)

    @classmethod
    def of(cls, timestamps: Iterable[int] | np.ndarray, *,
           max_lead_seconds: int = CLOCK_MAX_LEAD_SECONDS) -> EventClock:
        """The clock after all of ``timestamps`` at once (any order)."""
        stamps = (timestamps.astype(np.int64, copy=False) if isinstance(timestamps, np.ndarray)
                  else np.fromiter(timestamps, dtype=np.int64))
        if len(stamps) == 0:
            return cls(max_lead_seconds=max_lead_seconds)
        k = min(CLOCK_QUORUM, len(stamps))
        # Oldest first: while the heap fills, its minimum stays the k-th newest of all.
        return cls(np.sort(np.partition(stamps, len(stamps) - k)[-k:]).tolist(),
                   max_lead_seconds=max_lead_seconds)

    @property
    def recent(self) -> list[int]:
        """The newest timestamps kept (to save and restore the clock)."""
        return sorted(self._recent)

    def observe_many(self, timestamps: Iterable[int]) -> None:
        for timestamp in timestamps:
            self.observe(timestamp)

    def observe(self, timestamp: int) -> bool:
        """Count one event time; True when the clock moved."""
        recent = self._recent
        if len(recent) < CLOCK_QUORUM:
            heapq.heappush(recent, timestamp)
        elif timestamp > recent[0]:
            heapq.heapreplace(recent, timestamp)
        else:
            return False  # older than the CLOCK_QUORUM newest: cannot move the clock
        now = self.now
        if not self._waiting and now is not None:
            # The common case, a stream in time order: nothing kept is ahead of the
            # clock, so only this event can move it.
            if timestamp <= now:
                return False
            if timestamp <= recent[0] + self.max_lead_seconds:
                self.now = timestamp
                return True
        trusted_until = recent[0] + self.max_lead_seconds
        newest = max(t for t in recent if t <= trusted_until)
        moved = now is None or newest > now
        if moved:
            self.now = newest
        self._waiting = any(t > self.now for t in recent)  # ahead, not yet believed
        return moved
