"""Trending-Now: the polls whose interactions grow fastest right now.

Personalize's Trending-Now compares consecutive intervals of ``trend_discovery_frequency``
(30 minutes, 1 hour, 3 hours or 1 day) and ranks items by how fast their interactions
grow; new items and streamed events count without retraining; with no interactions in the
last two intervals it serves popular items instead; metadata never changes its scores.

Intervals are aligned to the frequency on the epoch clock (a 3-hour interval starts at
00:00, 03:00, ... UTC). At time ``now`` the *latest complete* interval is the one before
the interval holding ``now``; trends are re-evaluated each time an interval completes,
like Personalize's discovery frequency, so a burst shows up at the first boundary after
it starts and streamed events count as soon as their interval is complete.

Growth measure: ``(c_now - c_prev) / sqrt(c_prev + GROWTH_PRIOR)``. If a poll's
interactions were steady, ``c_now`` would scatter around ``c_prev`` with a Poisson spread
of ``sqrt(c_prev)``, so this is the rise in "standard deviations of noise": 20 -> 60 (a
rise of 40 over a spread of ~5, score 8.0) beats 1 -> 3 (2 over ~2.4, score 0.8) although
both triple. A plain ratio would rank 1 -> 3 equal and 0 -> 1 infinite; ``GROWTH_PRIOR``
keeps a poll's first few events from looking like an explosion. Only polls that grew
(score > 0) are trending; fewer than ``n`` may come back, and the feed mixer backfills.

**A user counts once per poll per interval.** Personalize counts every interaction, so
one account voting on one poll 150 times (well under the mutation rate limit) put it at
the top of everyone's trending list (a client's probe: growth 67 against 4.9 for the
next poll). Here a poll's count in an interval is the number of users who interacted
with it then; a burst of many users still shows as before.

Memory stays bounded: one counter per poll for each of the last ``RETAINED_INTERVALS``
intervals, the (user, poll) pairs already counted in those intervals (a set of 8-byte
hashes: ~70 bytes a pair in memory, 8 on disk, saved with the model; so memory grows
with the distinct voters of the last four intervals, ~70 MB per million pairs), plus
each poll's total (for the popular fallback). Fitting hashes each event of the kept
intervals in Python: 1M such events take ~1.3 s instead of 0.3 s. The fallback therefore
ranks by all interactions counted, not by unique users like Popularity-Count: unique
users need per-user state, which this recipe does not keep on purpose.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Self

import numpy as np

from recsys.errors import HunchError
from recsys.events import Impression, Interaction
from recsys.recipes.base import CatalogRows, ScoredItem, TrainingData
from recsys.recipes.clock import EventClock
from recsys.recipes.popularity_count import (
    InvalidRecipeParameter,
    ModelNotFitted,
    Ranking,
    _grow,
    _ItemIndex,
    select_top,
)

# Personalize's allowed trend discovery frequencies, in seconds.
TREND_DISCOVERY_FREQUENCIES: dict[str, int] = {
    "30 minutes": 30 * 60,
    "1 hour": 60 * 60,
    "3 hours": 3 * 60 * 60,
    "1 day": 24 * 60 * 60,
}
DEFAULT_TREND_DISCOVERY_FREQUENCY = "3 hours"  # Personalize's default
# Pseudo-count added to the previous interval: below about five events a rise is mostly
# noise, so a poll going 0 -> 2 should not outrank one going 10 -> 25.
GROWTH_PRIOR = 5.0
# Intervals kept: the one in progress, the latest complete one, the one before it, and
# one more so that events arriving a little late still land in their own interval.
RETAINED_INTERVALS = 4

TrendingReason = Literal["trending", "popular-fallback"]
_MODEL_FILE = "trending.npz"
_PARAMS_FILE = "params.json"


class InvalidTrendDiscoveryFrequency(HunchError):
    """``trend_discovery_frequency`` is not one of Personalize's four values."""


class TrendingWindowExpired(HunchError):
    """``now`` asks about intervals older than the counters kept."""


class TrendingList(NamedTuple):
    """Ranked polls and why they are there ("trending" or "popular-fallback")."""

    items: list[ScoredItem]
    reason: TrendingReason


def _pair_key(user_id: str, item_id: str) -> int:
    """A (user, poll) pair as 8 bytes, the same in every process (``hash()`` of a str is
    not), so the pairs counted survive a save and a load."""
    digest = hashlib.blake2b(f"{user_id}\x00{item_id}".encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def growth_scores(current: np.ndarray, previous: np.ndarray,
                  prior: float = GROWTH_PRIOR) -> np.ndarray:
    """Smoothed growth ``(c_now - c_prev) / sqrt(c_prev + prior)`` (see the module doc)."""
    current = current.astype(np.float64)
    previous = previous.astype(np.float64)
    return (current - previous) / np.sqrt(previous + prior)


class TrendingNow:
    """Polls ranked by the growth of their interactions between the last two intervals."""

    name: ClassVar[str] = "trending-now"

    def __init__(self, trend_discovery_frequency: str = DEFAULT_TREND_DISCOVERY_FREQUENCY,
                 growth_prior: float = GROWTH_PRIOR) -> None:
        if trend_discovery_frequency not in TREND_DISCOVERY_FREQUENCIES:
            choices = ", ".join(f'"{c}"' for c in TREND_DISCOVERY_FREQUENCIES)
            raise InvalidTrendDiscoveryFrequency(
                f"trend_discovery_frequency must be one of {choices}; "
                f"got {trend_discovery_frequency!r}"
            )
        try:
            growth_prior = float(growth_prior)
        except (TypeError, ValueError):
            growth_prior = -1.0
        if not growth_prior > 0:
            raise InvalidRecipeParameter(f"growth_prior must be a positive number, got {growth_prior!r}")
        self.trend_discovery_frequency = trend_discovery_frequency
        self.growth_prior = growth_prior
        self.interval_seconds = TREND_DISCOVERY_FREQUENCIES[trend_discovery_frequency]
        self._fitted = False

    # -- learning -----------------------------------------------------------------

    def _reset(self, item_ids: Iterable[str]) -> None:
        self._items = _ItemIndex(item_ids)
        self._catalog_rows = CatalogRows()  # this index mapped onto the request's catalog
        self._cap = max(len(self._items), 64)
        self._totals = np.zeros(self._cap, dtype=np.int64)
        self._buckets: dict[int, np.ndarray] = {}
        # Per kept interval, the (user, poll) pairs it counted (see the module doc).
        self._counted_pairs: dict[int, set[int]] = {}
        # "Now" when no time is given: the newest event time, robust to a few outliers
        # (see recipes/clock.py); _newest_ts is its reading.
        self._clock = EventClock()
        self._newest_ts: int | None = None
        # Growth scores are cached per (interval, versions of the two intervals compared,
        # catalog size): streamed events mostly land in the interval in progress, which
        # the scores do not read, so the cache survives a steady stream of events.
        self._bucket_version: dict[int, int] = {}
        self._growth_cache: tuple[tuple[int, int, int, int], np.ndarray] | None = None
        self._ranking = Ranking()  # of the growth scores, or of the popular fallback's
        self._counted = 0  # interactions counted: the fallback's scores move with it
        self._fitted = True

    def _oldest_kept(self) -> int | None:
        if self._newest_ts is None:
            return None
        return self._newest_ts // self.interval_seconds - RETAINED_INTERVALS + 1

    def _ensure_capacity(self) -> None:
        if len(self._items) <= self._cap:
            return
        self._cap = max(len(self._items), 2 * self._cap)
        self._totals = _grow(self._totals, self._cap)
        for b, counts in self._buckets.items():
            self._buckets[b] = _grow(counts, self._cap)

    def _evict(self) -> None:
        oldest = self._oldest_kept()
        for b in [b for b in self._buckets if b < oldest]:
            del self._buckets[b]
            self._bucket_version.pop(b, None)
            self._counted_pairs.pop(b, None)

    def fit(self, data: TrainingData) -> Self:
        self._reset(data.items)
        events = data.interactions
        idx = np.fromiter((self._items.add(e.item_id) for e in events), dtype=np.int64,
                          count=len(events))
        ts = np.fromiter((e.timestamp for e in events), dtype=np.int64, count=len(events))
        self._ensure_capacity()
        if len(events):
            self._totals[: len(self._items)] += np.bincount(idx, minlength=len(self._items))
            self._clock = EventClock.of(ts)
            self._newest_ts = self._clock.now
            buckets = ts // self.interval_seconds
            # Only intervals that hold events: a stray event decades ahead made this a
            # loop over every interval in between.
            kept = np.flatnonzero(buckets >= self._oldest_kept())
            for b in np.unique(buckets[kept]).tolist():
                pairs: set[int] = set()
                first: list[int] = []  # each user's first event on a poll in the interval
                for j in kept[buckets[kept] == b].tolist():
                    key = _pair_key(events[j].user_id, events[j].item_id)
                    if key not in pairs:
                        pairs.add(key)
                        first.append(j)
                counts = np.zeros(self._cap, dtype=np.int64)
                counts[: len(self._items)] = np.bincount(idx[first],
                                                         minlength=len(self._items))
                self._buckets[b] = counts
                self._counted_pairs[b] = pairs
        return self

    def observe(self, events: Iterable[Interaction | Impression]) -> None:
        """Count streamed interactions at once (impressions are not interactions)."""
        self._require_fitted()
        for event in events:
            if not isinstance(event, Interaction):
                continue
            i = self._items.add(event.item_id)
            if i >= self._cap:
                self._ensure_capacity()
            self._totals[i] += 1
            self._counted += 1
            before = self._newest_ts
            if self._clock.observe(event.timestamp):
                self._newest_ts = self._clock.now
                if before is None or (before // self.interval_seconds
                                      != self._newest_ts // self.interval_seconds):
                    self._evict()
            b = event.timestamp // self.interval_seconds
            if b >= self._oldest_kept():
                pairs = self._counted_pairs.setdefault(b, set())
                key = _pair_key(event.user_id, event.item_id)
                if key in pairs:  # this user already counts for this poll here
                    continue
                pairs.add(key)
                counts = self._buckets.get(b)
                if counts is None:
                    counts = self._buckets[b] = np.zeros(self._cap, dtype=np.int64)
                counts[i] += 1
                self._bucket_version[b] = self._bucket_version.get(b, 0) + 1

    def add_items(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Register new polls; their metadata is ignored (it never changes scores)."""
        self._require_fitted()
        for item_id in items:
            self._items.add(item_id)
        self._ensure_capacity()

    # -- serving ------------------------------------------------------------------

    def interval_counts(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-poll interactions in the latest complete interval and the one before."""
        self._require_fitted()
        current = self._check_window(now)
        size = len(self._items)
        empty = np.zeros(size, dtype=np.int64)
        latest = self._buckets.get(current - 1)
        before = self._buckets.get(current - 2)
        return (empty if latest is None else latest[:size],
                empty if before is None else before[:size])

    def _check_window(self, now: float) -> int:
        """The index of the interval holding ``now``, if its two predecessors are kept."""
        current = math.floor(now / self.interval_seconds)
        oldest = self._oldest_kept()
        if oldest is not None and current - 2 < oldest:
            raise TrendingWindowExpired(
                f"now={now} asks about intervals older than the last {RETAINED_INTERVALS} "
                f"kept ({self.trend_discovery_frequency} each, up to the newest event at "
                f"{self._newest_ts}); to score the past, feed events in time order with "
                "observe() and ask as you go"
            )
        return current

    def _growth(self, now: float) -> np.ndarray | None:
        """Growth of every poll (``-inf`` where it did not grow) as of ``now``; None when
        nothing happened in the last two complete intervals."""
        current = self._check_window(now)
        key = (current, self._bucket_version.get(current - 1, 0),
               self._bucket_version.get(current - 2, 0), len(self._items))
        if self._growth_cache is not None and self._growth_cache[0] == key:
            return self._growth_cache[1]
        latest, before = self.interval_counts(now)
        if not (latest.any() or before.any()):
            scores = None
        else:
            growth = growth_scores(latest, before, self.growth_prior)
            scores = np.where(growth > 0, growth, -np.inf)
        self._growth_cache = (key, scores)
        return scores

    def rank(
        self,
        n: int = 25,
        *,
        now: float | None = None,
        exclude: Collection[str] = (),
        allow: Callable[[str], bool] | None = None,
    ) -> TrendingList:
        """Trending polls with the reason; popular polls when nothing happened lately."""
        self._require_fitted()
        if now is None:
            now = self._newest_ts if self._newest_ts is not None else 0
        scores = self._growth(now)
        if scores is not None:
            assert self._growth_cache is not None  # the key the scores were made under
            ranking = self._ranking.of(scores, ("trending", self._growth_cache[0]))
            items = select_top(scores, self._items.ids, self._items.index, n, exclude, allow,
                               rows=self._catalog_rows, ranking=ranking)
            return TrendingList(items, "trending")
        totals = self._totals[: len(self._items)]
        total = totals.sum()
        scores = np.where(totals > 0, totals / max(total, 1), -np.inf)
        # Its scores are a function of the totals: they move with every event counted.
        ranking = self._ranking.of(scores, ("fallback", self._counted, len(totals)))
        items = select_top(scores, self._items.ids, self._items.index, n, exclude, allow,
                           rows=self._catalog_rows, ranking=ranking)
        return TrendingList(items, "popular-fallback")

    def recommend(
        self,
        user_id: str | None,
        n: int = 25,
        *,
        now: float | None = None,
        exclude: Collection[str] = (),
        allow: Callable[[str], bool] | None = None,
    ) -> list[ScoredItem]:
        """Trending polls (the same for everyone); see :meth:`rank` for the reason."""
        return self.rank(n, now=now, exclude=exclude, allow=allow).items

    # -- persistence --------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {"trend_discovery_frequency": self.trend_discovery_frequency,
                "growth_prior": self.growth_prior}

    def save(self, directory: Path) -> None:
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        size = len(self._items)
        bucket_ids = sorted(self._buckets)
        pair_buckets = sorted(self._counted_pairs)
        np.savez(
            directory / _MODEL_FILE,
            item_ids=np.array(self._items.ids, dtype=str),
            totals=self._totals[:size],
            bucket_ids=np.array(bucket_ids, dtype=np.int64),
            bucket_counts=np.array([self._buckets[b][:size] for b in bucket_ids],
                                   dtype=np.int64).reshape(len(bucket_ids), size),
            newest_ts=np.array([-1 if self._newest_ts is None else self._newest_ts]),
            clock_recent=np.array(self._clock.recent, dtype=np.int64),
            pair_bucket_ids=np.array(pair_buckets, dtype=np.int64),
            pair_counts=np.array([len(self._counted_pairs[b]) for b in pair_buckets],
                                 dtype=np.int64),
            pair_keys=np.array([k for b in pair_buckets for k in sorted(self._counted_pairs[b])],
                               dtype=np.int64),
        )
        (directory / _PARAMS_FILE).write_text(json.dumps(self.params(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        model = cls(**json.loads((directory / _PARAMS_FILE).read_text()))
        with np.load(directory / _MODEL_FILE, allow_pickle=False) as npz:
            model._reset(npz["item_ids"].tolist())
            size = len(model._items)
            model._totals[:size] = npz["totals"]
            for b, counts in zip(npz["bucket_ids"].tolist(), npz["bucket_counts"]):
                model._buckets[b] = _grow(np.zeros(0, dtype=np.int64), model._cap)
                model._buckets[b][:size] = counts
            newest = int(npz["newest_ts"][0])
            model._newest_ts = None if newest < 0 else newest
            # Versions saved before the clock kept its recent times know only the newest.
            recent = (npz["clock_recent"].tolist() if "clock_recent" in npz.files
                      else [] if model._newest_ts is None else [model._newest_ts])
            model._clock = EventClock(recent, now=model._newest_ts)
            if "pair_keys" in npz.files:  # versions before 2026-12-05 kept no pairs
                keys = npz["pair_keys"].tolist()
                start = 0
                for b, n in zip(npz["pair_bucket_ids"].tolist(), npz["pair_counts"].tolist()):
                    model._counted_pairs[b] = set(keys[start:start + n])
                    start += n
        return model

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise ModelNotFitted(
                f"{self.name}: call fit(training_data) or {type(self).__name__}.load(dir) first"
            )


def burst_detection(
    interactions: Iterable[Interaction],
    bursts: Iterable[Mapping[str, Any]],
    model: TrendingNow,
    *,
    top: int = 10,
    within_intervals: int = 1,
) -> tuple[int, int]:
    """How many planted bursts a fresh ``model`` puts in its top ``top`` in time.

    ``bursts`` are ``{"item_id", "onset"}`` records (demo data's ground_truth.json).
    Interactions are replayed in time order through ``observe``, as a live server would
    receive them, and the model is asked at each interval boundary. A burst counts as
    found when its poll is in the top ``top`` at one of the first ``within_intervals``
    boundaries at which the interval holding its onset has completed. Returns
    ``(found, total)``.
    """
    width = model.interval_seconds
    checks: dict[int, list[str]] = {}  # boundary time -> polls whose burst it may find
    for burst in bursts:
        first = (int(burst["onset"]) // width + 1) * width
        for k in range(within_intervals):
            checks.setdefault(first + k * width, []).append(str(burst["item_id"]))
    total = len({p for polls in checks.values() for p in polls})
    if not model._fitted:
        model.fit(TrainingData([]))
    found: set[str] = set()
    pending = sorted(checks)

    def ask(boundary: int) -> None:
        ranked = {s.item_id for s in model.recommend(None, top, now=boundary)}
        found.update(p for p in checks[boundary] if p in ranked)

    for event in sorted(interactions, key=lambda e: e.timestamp):
        while pending and event.timestamp >= pending[0]:
            ask(pending.pop(0))
        model.observe([event])
    for boundary in pending:
        ask(boundary)
    return len(found), total
