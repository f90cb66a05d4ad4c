"""Trend-frequency tuning: which of Trending-Now's four discovery frequencies suits the data
(roadmap stage 5, issue 7).

Why a backtest: the right frequency depends on how long trends last in this app, which
only the data knows. For each frequency the interactions are replayed in time order
through a fresh :class:`TrendingNow` (``observe``, as a live server gets them), and at
every interval boundary after a warm-up the trending list is compared with what happens
while it is served (until the next discovery, one interval).

What the list is scored against: the *surge* of each poll in that window, i.e. its
interactions above what its usual share of the app's traffic predicts. A poll's usual
share is its share of all interactions over the ``BASELINE_SECONDS`` before the cut-off
(or since its first interaction, if younger); expected = share x all interactions in the
window; surge = interactions - expected, where positive. This is what "trending" means to
a product owner: polls drawing more than they normally do. Raw counts would not do: they
reward listing polls that are merely popular (a new poll in its first hours, or any poll
at the evening peak of the diurnal cycle), which the popular slot already serves, and
they favour the shortest interval whatever the trends look like. Only polls that had an
interaction before the cut-off count: no list can show a poll that does not exist yet.
Precision@10 counts the list's polls among the window's 10 largest surges; NDCG@10 grades
each poll by its surge. Boundaries where the list had to fall back to popular polls
(nothing in the last two intervals) count as intervals with no data, and score as served.

The recommendation: among frequencies whose share of boundaries with no data stays at or
below ``MAX_EMPTY_SHARE`` (above it the slot mostly serves the popular fallback, not
trends), the best mean NDCG@10, precision@10 breaking ties. A paired-by-day comparison
stands beside it: each frequency's scores are averaged per day (a day holds whole
intervals of every frequency), so the frequencies are compared on the same days.

Why this recovers the timescale of trends: Trending-Now ranks growth between the last two
intervals, so it lists a poll for the one interval after its rise and drops it as soon as
its interactions fall (growth turns negative). A trend that jumps and then relaxes with
time constant T keeps surging for about T: an interval much shorter than T drops it while
it is still hot, and one much longer lists it when it is mostly over (and dilutes its rise
with a long interval's noise). On demo data whose bursts decay with T = 1 hour the
backtest picks "1 hour", with T = 3 hours "3 hours" (tests/recsys/test_analysis_trend_tuning.py,
and the default 2,000 users x 14 days with a burst share of 0.1). A 1-day timescale is not
recovered on 14 days of demo data ("3 hours" wins, "1 day" has the lowest NDCG@10): new
polls draw most of their votes in their first hours, so every daily list is filled with
yesterday's new polls, which no longer surge; daily trends need data where trends last
days and outgrow a new poll's first day.
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
            "target": ("each poll's surge in the interval the list is served for: its "
                       "interactions above its usual share of all interactions over the "
                       f"previous {BASELINE_SECONDS // DAY} days"),
            "eligible": list(self.eligible),
            "table": [{"frequency": s.frequency, "cutoffs": s.cutoffs,
                       "ndcg_at_10": s.ndcg_at_10, "precision_at_10": s.precision_at_10,
                       "empty_interval_share": s.empty_share} for s in self.scores],
            "comparisons": [c.to_json() for c in self.comparisons],
        }


def surge(ts: np.ndarray, polls: np.ndarray, first_seen: np.ndarray, cutoff: int,
          horizon: int, baseline: int = BASELINE_SECONDS) -> np.ndarray:
    """Each poll's interactions in ``[cutoff, cutoff + horizon)`` above what its share of
    all interactions over the ``baseline`` before ``cutoff`` predicts (0 where not above,
    and for polls first seen at or after ``cutoff``). ``ts`` must be sorted."""
    n = len(first_seen)
    at, end = np.searchsorted(ts, [cutoff, cutoff + horizon], side="left")
    upcoming = np.bincount(polls[at:end], minlength=n).astype(float)
    since = np.maximum(cutoff - baseline, first_seen)
    lo = int(np.searchsorted(ts, cutoff - baseline, side="left"))
    recent = np.bincount(polls[lo:at], minlength=n).astype(float)
    # All interactions in the app while each poll existed within the baseline window.
    traffic = at - np.searchsorted(ts, since, side="left")
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


def backtest_frequency(events: Sequence[Interaction], frequency: str, *, top_k: int = TOP_K,
                       warmup: int = WARMUP_SECONDS, horizon: int | None = None,
                       step: int | None = None,
                       baseline: int = BASELINE_SECONDS) -> FrequencyScore:
    """Replay ``events`` (time-ordered) and score the list at every interval boundary."""
    model = TrendingNow(frequency).fit(TrainingData([]))
    width = model.interval_seconds
    poll_index: dict[str, int] = {}
    ts = np.fromiter((e.timestamp for e in events), np.int64, len(events))
    polls = np.fromiter((poll_index.setdefault(e.item_id, len(poll_index)) for e in events),
                        np.int64, len(events))
    first_seen = np.full(len(poll_index), np.iinfo(np.int64).max)
    np.minimum.at(first_seen, polls, ts)
    start, end = int(ts.min()), int(ts.max())
    horizon = horizon or width
    step = step or width
    first = (start + warmup) // DAY * DAY + DAY
    boundaries = list(range(first, end - horizon + 1, step))
    if not boundaries:
        raise TrendTuningError(
            f"the data spans {(end - start) / DAY:.1f} days; a {frequency} backtest needs at "
            f"least {(first - start + horizon) / DAY:.1f} days (warm-up, then one interval)")
    ndcg, precision, empty, day_of = [], [], 0, []
    position = 0
    for b in boundaries:
        stop = int(np.searchsorted(ts, b, side="left"))
        if stop > position:
            model.observe(events[position:stop])
            position = stop
        ranked = model.rank(top_k, now=b)
        if ranked.reason != "trending":
            empty += 1
        gains = surge(ts, polls, first_seen, b, horizon, baseline)
        best = np.argsort(-gains, kind="stable")[:top_k]
        relevant = set(best[gains[best] > 0].tolist())
        idx = [poll_index[s.item_id] for s in ranked.items if s.item_id in poll_index]
        precision.append(sum(1 for i in idx if i in relevant) / top_k)
        ndcg.append(_graded_ndcg(idx, gains, top_k))
        day_of.append((b - start) // DAY)
    per_day: dict[str, list[float]] = {}
    days = np.array(day_of)
    for name, values in (("ndcg_at_10", ndcg), ("precision_at_10", precision)):
        v = np.array(values)
        per_day[name] = [float(v[days == d].mean()) for d in sorted(set(day_of))]
    per_day["day"] = [float(d) for d in sorted(set(day_of))]
    return FrequencyScore(frequency, len(boundaries), float(np.mean(ndcg)),
                          float(np.mean(precision)), empty / len(boundaries), per_day)


def tune_trending(events: Sequence[Interaction], *,
                  frequencies: Sequence[str] = tuple(TREND_DISCOVERY_FREQUENCIES),
                  top_k: int = TOP_K, warmup: int = WARMUP_SECONDS,
                  horizon: int | None = None, step: int | None = None,
                  baseline: int = BASELINE_SECONDS,
                  progress: Callable[[str], None] | None = None) -> TrendTuningResult:
    """Backtest every frequency and recommend one (see the module docstring's rule)."""
    say = progress or (lambda _m: None)
    events = sorted(events, key=lambda e: e.timestamp)
    if len(events) < MIN_INTERACTIONS:
        raise TrendTuningError(f"only {len(events)} interactions; the backtest needs at "
                               f"least {MIN_INTERACTIONS} spread over several days")
    scores = []
    for f in frequencies:
        say(f"backtesting trend discovery every {f}")
        scores.append(backtest_frequency(events, f, top_k=top_k, warmup=warmup,
                                         horizon=horizon, step=step, baseline=baseline))
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
        common = sorted(set(best.per_day["day"]) & set(s.per_day["day"]))
        a = [best.per_day["ndcg_at_10"][best.per_day["day"].index(d)] for d in common]
        b = [s.per_day["ndcg_at_10"][s.per_day["day"].index(d)] for d in common]
        comparisons.append(paired_comparison("ndcg_at_10 (per day)", best.frequency,
                                             s.frequency, np.array(a), np.array(b)))
    days = math.ceil((events[-1].timestamp - events[0].timestamp) / DAY)
    return TrendTuningResult(scores, best.frequency, with_holm(comparisons), days,
                             [s.frequency for s in eligible])


def summary_rows(result: TrendTuningResult) -> list[dict[str, Any]]:
    return result.to_json()["table"]
