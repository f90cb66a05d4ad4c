"""Trend-frequency tuning: which of Trending-Now's four discovery frequencies suits the data
(roadmap stage 5, issue 7).

Why a backtest: the right frequency depends on how long trends last in this app, which
only the data knows. The interactions are replayed in time order through one fresh
:class:`TrendingNow` per frequency (``observe``, as a live server gets them). On one grid
of cut-offs shared by all four (every ``CUTOFF_STEP`` after a warm-up), each model's list
at that moment, the one its slot would be showing, is scored against **one fixed
target**: what happens over the next ``TARGET_HORIZON``, the same window for every
frequency. (Scoring each frequency over its own interval would compare four different
targets; a longer interval makes an easier or harder target, not a better list.)

What the list is scored against: the *surge* of each poll in that window, i.e. its
interactions above what its usual share of the app's traffic predicts. A poll's usual
share is its share of all interactions over the ``BASELINE_SECONDS`` before the cut-off
(or since its first interaction, if younger); expected = share x all interactions in the
window; surge = interactions - expected, where positive. This is what "trending" means to
a product owner: polls drawing more than they normally do. Raw counts would not do: they
reward listing polls that are merely popular (a new poll in its first hours, or any poll
at the evening peak of the diurnal cycle), which the popular slot already serves. Only
polls that had an interaction before the cut-off count: no list can show a poll that does
not exist yet. A user counts once per poll in the target window, and once per
``TARGET_HORIZON``-long step of the baseline (:func:`previous_events`), as Trending-Now
counts a user once per poll per interval: counted raw, one account's 150 votes on one
poll were the window's largest surge, the very thing the model is built not to list. Precision@10 counts the list's polls among the window's 10 largest surges;
NDCG@10 grades each poll by its surge. Cut-offs where a list had to fall back to popular
polls (nothing in its last two intervals) count as cut-offs with no data, and score as
served.

The recommendation: among frequencies whose share of cut-offs with no data stays at or
below ``MAX_EMPTY_SHARE`` (above it the slot mostly serves the popular fallback, not
trends), the best mean NDCG@10, precision@10 breaking ties. A paired-by-day comparison
stands beside it: each frequency's scores are averaged per day over the same cut-offs.

Why this recovers the timescale of trends: Trending-Now ranks growth between its last
two complete intervals. A burst that jumps and relaxes with time constant T is caught by
an interval much shorter than T only on few events (noise decides), and by one much
longer only late, when its list still shows what surged hours ago. On demo data at the
default burst share (3 %) the backtest picks "1 hour" for bursts with T = 1 hour and
"3 hours" for T = 3 hours, on every seed tried (tests/recsys/test_analysis_trend_tuning.py
runs three). A 1-day timescale is not expected to be recovered on two weeks of demo data:
new polls draw most of their votes in their first hours, which dominates daily lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.analysis.stats import PairedComparison, paired_comparison, with_holm
from recsys.errors import HunchError
from recsys.events import Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.trending_now import TREND_DISCOVERY_FREQUENCIES, TrendingNow

TOP_K = 10  # the trending slot shows one poll per block; 10 covers two pages of feed
# The first days only fill the counters (a 1-day frequency needs two complete days).
WARMUP_SECONDS = 2 * 86_400
DAY = 86_400
METRICS = ("ndcg_at_10", "precision_at_10")
# Above this share of boundaries with nothing in the last two intervals, a frequency
# mostly serves the popular fallback; one boundary in five is already a visibly stale
# trending slot, so such a frequency is not recommended whatever its scores.
MAX_EMPTY_SHARE = 0.2
# How far back a poll's usual share of traffic is measured: longer than the two days a
# 1-day list looks at, so the baseline is not just the data the longest list ranks on,
# and short enough to follow a poll's slow ageing.
BASELINE_SECONDS = 3 * DAY
MIN_INTERACTIONS = 100
# Trending counts a user once per poll per interval, so a handful of accounts can only
# make a handful of "trends": what the backtest would recommend from them is their
# habits, not the app's. Below this many distinct users it refuses.
MIN_USERS = 20
# One target for every frequency: the surge over the next hour after each cut-off. The
# frequencies are compared on what the slot shows at the same moments against the same
# future; an hour is a feed session or two, and the ranking of frequencies did not move
# with a 3-hour target on demo data (1- and 3-hour bursts, three seeds each).
TARGET_HORIZON = 3_600
# The backtest looks at the data's last weeks only (see _recent_window).
MAX_BACKTEST_DAYS = 60
# Cut-offs every 30 minutes, the shortest frequency: every list any frequency discovers
# is scored at least once, and a longer frequency's list is scored as it ages.
CUTOFF_STEP = 1_800


class TrendTuningError(HunchError):
    """The data cannot support the backtest (too short a window, too few events)."""


@dataclass
class FrequencyScore:
    frequency: str
    cutoffs: int
    ndcg_at_10: float
    precision_at_10: float
    empty_share: float  # share of boundaries with no data in the last two intervals
    per_day: dict[str, list[float]] = field(repr=False, default_factory=dict)


@dataclass
class TrendTuningResult:
    scores: list[FrequencyScore]
    recommended: str
    comparisons: list[PairedComparison]
    days: int
    eligible: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "recommended": self.recommended, "days": self.days,
            "rule": (f"best NDCG@10 (precision@10 breaks ties) among frequencies with at most "
                     f"{MAX_EMPTY_SHARE:.0%} of boundaries without data"),
            "target": (f"the same for every frequency: each poll's surge over the "
                       f"{TARGET_HORIZON // 60} minutes after each cut-off (every "
                       f"{CUTOFF_STEP // 60} minutes), i.e. its interactions above its usual "
                       "share of all interactions over the previous "
                       f"{BASELINE_SECONDS // DAY} days, a user counted once per poll per "
                       f"{TARGET_HORIZON // 60} minutes"),
            "eligible": list(self.eligible),
            "table": [{"frequency": s.frequency, "cutoffs": s.cutoffs,
                       "ndcg_at_10": s.ndcg_at_10, "precision_at_10": s.precision_at_10,
                       "empty_interval_share": s.empty_share} for s in self.scores],
            "comparisons": [c.to_json() for c in self.comparisons],
        }


NO_EARLIER_EVENT = np.iinfo(np.int64).min


def previous_events(ts: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """For each event, the time of the same (user, poll) pair's previous event
    (:data:`NO_EARLIER_EVENT` for its first). ``ts`` sorted; ``pairs`` codes each
    event's (user, poll). An event is its pair's first in a window starting at ``t0``
    exactly when its previous event is before ``t0``: a window counts each user once
    per poll, as Trending-Now's interval does."""
    order = np.argsort(pairs, kind="stable")  # by pair, each in time order
    grouped, times = pairs[order], ts[order]
    previous = np.full(len(ts), NO_EARLIER_EVENT, np.int64)
    same = np.flatnonzero(grouped[1:] == grouped[:-1]) + 1
    previous[order[same]] = times[same - 1]
    return previous


def surge(ts: np.ndarray, polls: np.ndarray, first_seen: np.ndarray, cutoff: int,
          horizon: int, baseline: int = BASELINE_SECONDS,
          previous: np.ndarray | None = None) -> np.ndarray:
    """Each poll's interactions in ``[cutoff, cutoff + horizon)`` above what its share of
    all interactions over the ``baseline`` before ``cutoff`` predicts (0 where not above,
    and for polls first seen at or after ``cutoff``). ``ts`` must be sorted.

    With ``previous`` (:func:`previous_events`) a user counts once per poll: once in
    the target window, and once per ``horizon``-long step of the baseline (its share is
    then measured on the target's scale); without it every event counts."""
    n = len(first_seen)
    at, end = np.searchsorted(ts, [cutoff, cutoff + horizon], side="left")
    lo = int(np.searchsorted(ts, cutoff - baseline, side="left"))
    if previous is None:
        fresh = np.ones(end - at, bool)
        counted = np.ones(at - lo, bool)
    else:
        fresh = previous[at:end] < cutoff
        # In the baseline, a pair counts once per horizon-long step, aligned on the epoch.
        counted = previous[lo:at] < ts[lo:at] // horizon * horizon
    upcoming = np.bincount(polls[at:end][fresh], minlength=n).astype(float)
    since = np.maximum(cutoff - baseline, first_seen)
    recent = np.bincount(polls[lo:at][counted], minlength=n).astype(float)
    # All (counted) interactions in the app while each poll existed within the baseline.
    running = np.r_[0, np.cumsum(counted)]
    traffic = running[-1] - running[np.searchsorted(ts, since, side="left").clip(lo, at) - lo]
    share = np.divide(recent, traffic, out=np.zeros(n), where=traffic > 0)
    excess = upcoming - share * upcoming.sum()
    return np.where((first_seen < cutoff) & (excess > 0), excess, 0.0)


def _graded_ndcg(ranked: Sequence[int], gains: np.ndarray, k: int) -> float:
    ideal = np.sort(gains[gains > 0])[::-1][:k]
    if len(ideal) == 0:
        return 0.0
    discounts = 1.0 / np.log(np.arange(2, k + 2))
    dcg = sum(gains[i] * discounts[r] for r, i in enumerate(ranked[:k]))
    return float(dcg / (ideal * discounts[:len(ideal)]).sum())


def backtest(events: Sequence[Interaction], frequencies: Sequence[str], *,
             top_k: int = TOP_K, warmup: int = WARMUP_SECONDS, horizon: int = TARGET_HORIZON,
             step: int = CUTOFF_STEP, baseline: int = BASELINE_SECONDS) -> list[FrequencyScore]:
    """Replay ``events`` (time-ordered) through one model per frequency and, at every
    cut-off of one shared grid, score each model's list against the same target: the
    surge over ``[cutoff, cutoff + horizon)``."""
    models = {f: TrendingNow(f).fit(TrainingData([])) for f in frequencies}
    poll_index: dict[str, int] = {}
    pair_index: dict[tuple[str, str], int] = {}
    ts = np.fromiter((e.timestamp for e in events), np.int64, len(events))
    polls = np.fromiter((poll_index.setdefault(e.item_id, len(poll_index)) for e in events),
                        np.int64, len(events))
    pairs = np.fromiter((pair_index.setdefault((e.user_id, e.item_id), len(pair_index))
                         for e in events), np.int64, len(events))
    first_seen = np.full(len(poll_index), np.iinfo(np.int64).max)
    np.minimum.at(first_seen, polls, ts)
    # The target counts what the model counts: a user once per poll (per window).
    previous = previous_events(ts, pairs)
    start, end = int(ts.min()), int(ts.max())
    # Whole days of warm-up so that every frequency's intervals line up with the grid.
    first = (start + warmup) // DAY * DAY + DAY
    boundaries = list(range(first, end - horizon + 1, step))
    if not boundaries:
        raise TrendTuningError(
            f"the data spans {(end - start) / DAY:.1f} days; the backtest needs at least "
            f"{(first - start + horizon) / DAY:.1f} days (warm-up, then one target window)")
    ndcg: dict[str, list[float]] = {f: [] for f in frequencies}
    precision: dict[str, list[float]] = {f: [] for f in frequencies}
    empty = dict.fromkeys(frequencies, 0)
    day_of = []
    position = 0
    for b in boundaries:
        stop = int(np.searchsorted(ts, b, side="left"))
        if stop > position:
            for model in models.values():
                model.observe(events[position:stop])
            position = stop
        gains = surge(ts, polls, first_seen, b, horizon, baseline, previous)
        best = np.argsort(-gains, kind="stable")[:top_k]
        relevant = set(best[gains[best] > 0].tolist())
        for f, model in models.items():
            ranked = model.rank(top_k, now=b)
            if ranked.reason != "trending":
                empty[f] += 1
            idx = [poll_index[s.item_id] for s in ranked.items if s.item_id in poll_index]
            precision[f].append(sum(1 for i in idx if i in relevant) / top_k)
            ndcg[f].append(_graded_ndcg(idx, gains, top_k))
        day_of.append((b - start) // DAY)
    days = np.array(day_of)
    scores = []
    for f in frequencies:
        per_day: dict[str, list[float]] = {"day": [float(d) for d in sorted(set(day_of))]}
        for name, values in (("ndcg_at_10", ndcg[f]), ("precision_at_10", precision[f])):
            v = np.array(values)
            per_day[name] = [float(v[days == d].mean()) for d in sorted(set(day_of))]
        scores.append(FrequencyScore(f, len(boundaries), float(np.mean(ndcg[f])),
                                     float(np.mean(precision[f])),
                                     empty[f] / len(boundaries), per_day))
    return scores


def _recent_window(events: list[Interaction], say: Callable[[str], None]
                   ) -> list[Interaction]:
    """The events of the last :data:`MAX_BACKTEST_DAYS` before the data's robust "now"
    (recipes/clock.py: a few stray future timestamps do not move it). The backtest
    walks every cut-off from the first event to the last: one stray row dated 1970 or
    2100 made it walk decades of empty windows (still running after 90 s, memory
    growing), and trends are a matter of recent weeks anyway."""
    if not events:
        return events
    from recsys.recipes.clock import EventClock

    now = EventClock.of(np.array([e.timestamp for e in events], np.int64)).now
    if now is None:
        return events
    start = now - MAX_BACKTEST_DAYS * DAY
    kept = [e for e in events if start <= e.timestamp <= now]
    if len(kept) < len(events):
        say(f"left out {len(events) - len(kept):,} interactions outside the "
            f"{MAX_BACKTEST_DAYS} days before the data's newest time")
    return kept


def tune_trending(events: Sequence[Interaction], *,
                  frequencies: Sequence[str] = tuple(TREND_DISCOVERY_FREQUENCIES),
                  top_k: int = TOP_K, warmup: int = WARMUP_SECONDS,
                  horizon: int = TARGET_HORIZON, step: int = CUTOFF_STEP,
                  baseline: int = BASELINE_SECONDS,
                  progress: Callable[[str], None] | None = None) -> TrendTuningResult:
    """Backtest every frequency and recommend one (see the module docstring's rule)."""
    say = progress or (lambda _m: None)
    events = _recent_window(sorted(events, key=lambda e: e.timestamp), say)
    if len(events) < MIN_INTERACTIONS:
        raise TrendTuningError(f"only {len(events)} interactions; the backtest needs at "
                               f"least {MIN_INTERACTIONS} spread over several days")
    users = len({e.user_id for e in events})
    if users < MIN_USERS:
        raise TrendTuningError(f"the interactions come from only {users} user(s); the "
                               f"backtest needs at least {MIN_USERS}, or what it recommends "
                               "is a few people's habits, not the app's trends")
    say(f"backtesting trend discovery every {', '.join(frequencies)} on one target")
    scores = backtest(events, frequencies, top_k=top_k, warmup=warmup, horizon=horizon,
                      step=step, baseline=baseline)
    eligible = [s for s in scores if s.empty_share <= MAX_EMPTY_SHARE]
    if not eligible:
        raise TrendTuningError(
            f"every frequency had more than {MAX_EMPTY_SHARE:.0%} of intervals without "
            "interactions; the data is too sparse to tune trending (collect more events)")
    best = max(eligible, key=lambda s: (s.ndcg_at_10, s.precision_at_10))
    comparisons = []
    for s in scores:
        if s is best:
            continue
        # The same cut-offs for every frequency: days pair exactly.
        comparisons.append(paired_comparison(
            "ndcg_at_10 (per day)", best.frequency, s.frequency,
            np.array(best.per_day["ndcg_at_10"]), np.array(s.per_day["ndcg_at_10"])))
    days = math.ceil((events[-1].timestamp - events[0].timestamp) / DAY)
    return TrendTuningResult(scores, best.frequency, with_holm(comparisons), days,
                             [s.frequency for s in eligible])


def summary_rows(result: TrendTuningResult) -> list[dict[str, Any]]:
    return result.to_json()["table"]
